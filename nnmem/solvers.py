"""Questions about a memory budget: does it fit, how far can it grow, what to change.

Every answer comes from :func:`nnmem.estimate.estimate` itself, so it agrees with the
breakdown by construction. The batch size enters every term linearly, so the largest
batch follows from two estimates and is then checked; the sequence length (which
attention can make quadratic) and the GPU count are searched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.formats import LABELS as FORMAT_LABELS
from nnmem.formats import Format
from nnmem.models.architecture import Family, Transformer
from nnmem.scenario import (
    LABELS,
    Attention,
    Checkpointing,
    Finetune,
    KvDtype,
    LoraTargets,
    Mode,
    Optimizer,
    Precision,
    Runtime,
    Scenario,
    Sharding,
    pipeline_microbatches,
)

MAX_BATCH = 1_000_000
MAX_SEQ = 10_000_000
MAX_GPUS = 4096
LLAMA_CPP_MAX_DEVICES = 16  # GGML_CUDA_MAX_DEVICES, ggml/include/ggml-cuda.h


@dataclass(frozen=True)
class ContextLimit:
    """The longest sequence a model takes, and where the limit comes from."""

    tokens: int
    source: str
    rope: bool  # rotary positions: RoPE scaling can extend it

    def to_dict(self) -> dict[str, Any]:
        """The limit as JSON-ready data."""
        return {"tokens": self.tokens, "source": self.source, "rope": self.rope}


def _rope_factor(config: Any, positions: int) -> tuple[int, str]:
    """The context after RoPE scaling the config asks for, and how it was reached.

    transformers reads ``rope_scaling`` (``rope_parameters`` from version 5). A config
    whose ``original_max_position_embeddings`` equals ``max_position_embeddings`` asks to
    extend that context by ``factor`` (Qwen2.5's YaRN recipe); one whose original is
    smaller already states the extended context (Llama 3.1's ``llama3`` type).
    """
    if not isinstance(config, dict):
        return positions, ""
    rope = config.get("rope_scaling") or config.get("rope_parameters")
    if not isinstance(rope, dict):
        return positions, ""
    factor = rope.get("factor")
    original = rope.get("original_max_position_embeddings")
    kind = rope.get("rope_type") or rope.get("type") or "rope"
    if isinstance(factor, int | float) and factor > 1 and original == positions:
        return int(positions * factor), f"{kind} RoPE scaling by {factor:g}"
    return positions, ""


def context_limit(scenario: Scenario) -> ContextLimit | None:
    """The model's context: its learned position table, or ``max_position_embeddings``
    (scaled when the config asks for RoPE scaling); None when the model states none.

    >>> from nnmem.scenario import parse
    >>> context_limit(parse({"model": "preset", "preset": "llama-3-8b"})).tokens
    8192
    """
    model = scenario.model
    if not isinstance(model, Transformer):
        return None
    if model.learned_positions:
        return ContextLimit(model.learned_positions, "its learned position table", False)
    # multimodal configs (Llama 4) keep the decoder's fields under text_config
    inner = model.config.get("text_config")
    config = inner if isinstance(inner, Mapping) else model.config
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions < 1:
        return None
    tokens, how = _rope_factor(config, positions)
    source = f"max_position_embeddings = {positions:,}"
    return ContextLimit(tokens, f"{source}, with {how}" if how else source, True)


def total(scenario: Scenario, gpu: str | None = None) -> int:
    """Bytes the scenario needs on one GPU, overheads included."""
    return estimate(scenario, gpu).total_bytes


def _valid(scenario: Scenario, **changes: Any) -> Scenario | None:
    try:
        return replace(scenario, **changes)
    except NnmemError:
        return None


def budget_for(scenario: Scenario, usable: int) -> int:
    """What a verdict may fill on a GPU with ``usable`` bytes: all but the scenario's
    headroom (10% by default).

    >>> from nnmem.scenario import parse
    >>> budget_for(parse({"params_millions": 100}), 1000)
    900
    """
    share = 100 - Fraction(scenario.headroom_percent)
    return int(usable * share / 100)


def fits(scenario: Scenario, budget: int, gpu: str | None = None) -> bool:
    """Whether the scenario fits in ``budget`` bytes."""
    return total(scenario, gpu) <= budget


def max_batch(scenario: Scenario, budget: int, gpu: str | None = None) -> int:
    """The largest batch size that fits ``budget`` (0 when not even one sequence fits).

    Every term is an affine function of the batch size within a phase, so two estimates
    give each phase's line; the smallest solution is the answer but for the allocator's
    rounding and a change of peak phase, so it is then checked and corrected by a
    doubling search from it: a bounded number of estimates, whatever the budget.
    """

    # A pipeline cuts the batch into its micro-batches (torchtitan build_pipeline_schedule
    # refuses a batch they do not divide): it grows a micro-batch count at a time.
    unit = pipeline_microbatches(scenario) if scenario.pipelined else 1

    def ok(b: int) -> bool:
        return fits(replace(scenario, batch_size=b * unit), budget, gpu)

    one = replace(scenario, batch_size=unit)
    if total(one, gpu) > budget:
        return 0
    two = replace(scenario, batch_size=2 * unit)
    e1, e2 = estimate(one, gpu), estimate(two, gpu)
    best = MAX_BATCH
    overhead1 = e1.total_bytes - e1.tensor_peak_bytes
    overhead2 = e2.total_bytes - e2.tensor_peak_bytes
    for p1, p2 in zip(e1.phases, e2.phases, strict=True):
        # total(b) = phase(b) + overhead(b) for the phase that holds the peak.
        slope = (p2.bytes + overhead2) - (p1.bytes + overhead1)
        if slope <= 0:
            continue
        start = p1.bytes + overhead1
        best = min(best, 1 + (budget - start) // slope)
    highest = max(1, MAX_BATCH // unit)
    guess = max(1, min(best, highest))
    if ok(guess):
        return _grow(guess, highest, ok) * unit
    return _search(1, guess - 1, ok) * unit


def _grow(known: int, highest: int, ok: Callable[[int], bool]) -> int:
    """The largest n in [known, highest] with ok(n), given ok(known), for a monotone ok:
    steps of 1, 2, 4, … from ``known``, then a bisection of the last step."""
    low, step = known, 1
    while low < highest:
        probe = min(low + step, highest)
        if not ok(probe):
            high = probe - 1
            break
        low, step = probe, step * 2
    else:
        return low
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _search(lowest: int, highest: int, ok: Callable[[int], bool]) -> int:
    """The largest n in [lowest, highest] with ok(n), for a monotone ok; lowest - 1 if none."""
    if not ok(lowest):
        return lowest - 1
    low, high = lowest, lowest
    while high < highest and ok(min(high * 2, highest)):
        low = high = min(high * 2, highest)
        if high == highest:
            return high
    high = min(high * 2, highest)
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _first(lowest: int, highest: int, ok: Callable[[int], bool]) -> int | None:
    """The smallest n in [lowest, highest] with ok(n), for an ok that stays true once
    true; None if there is none."""
    high = lowest
    while not ok(high):
        if high >= highest:
            return None
        high = min(high * 2, highest)
    low = max(lowest, high // 2 + 1) if high > lowest else lowest
    while low < high:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid + 1
    return high


def max_seq_len(scenario: Scenario, budget: int, gpu: str | None = None) -> int:
    """The longest sequence that fits ``budget`` (0 when none does)."""
    if "seq_len" in scenario.inactive_fields():
        raise NnmemError.single("seq_len", "This model has no sequence length to grow.")
    limit = MAX_SEQ
    context = context_limit(scenario)
    if context is not None:
        # the prompt and the generated tokens share the model's context
        # (new_tokens counts only where it applies: a serving runtime's seq_len is the
        # whole context of a request)
        counted = scenario.mode is Mode.INFERENCE and "new_tokens" not in scenario.inactive_fields()
        generated = scenario.new_tokens if counted else 0
        limit = max(0, context.tokens - generated)
        if limit == 0:
            return 0

    # Sequence parallelism splits the tokens evenly over the tensor-parallel ranks
    # (scenario._memory_feature_checks): the sequence grows a rank count at a time.
    sp = "sequence_parallel" not in scenario.inactive_fields() and scenario.sequence_parallel
    unit = scenario.tensor_parallel if sp else 1
    # Context parallelism cuts the sequence into 2·cp chunks, each rank's share then split
    # by sequence parallelism (scenario._context_parallel_checks).
    cp = _cp(scenario)
    if cp > 1:
        unit = math.lcm(2 * cp, cp * unit)

    def ok(n: int) -> bool:
        trial = _valid(scenario, seq_len=n * unit)
        return trial is not None and fits(trial, budget, gpu)

    return max(0, _search(1, limit // unit, ok)) * unit


def _cp(scenario: Scenario) -> int:
    """The context-parallel degree a training step runs with: a replica spans its ranks."""
    read = "context_parallel" not in scenario.inactive_fields()
    return scenario.context_parallel if read and scenario.mode is Mode.TRAINING else 1


def tensor_parallel_degrees(scenario: Scenario) -> list[int]:
    """Tensor-parallel degrees above 1 the model allows: those that divide both the
    attention heads and the key/value heads (Megatron-LM splits heads across GPUs,
    Shoeybi et al. 2019, arXiv 1909.08053 §3), powers of two or not."""
    model = scenario.model
    if not isinstance(model, Transformer):
        return []
    heads = math.gcd(model.heads, model.kv_heads)
    return [d for d in range(2, min(heads, MAX_GPUS) + 1) if heads % d == 0]


def _training_plans(scenario: Scenario) -> list[Sharding]:
    """The sharding to try: the scenario's own if it shards, then ZeRO-3 / FSDP."""
    own = [scenario.sharding] if scenario.sharding not in (Sharding.NONE, Sharding.ZERO3) else []
    return [*own, Sharding.ZERO3]


def min_gpus(scenario: Scenario, budget: int, gpu: str | None = None) -> Scenario | None:
    """The fewest GPUs of ``budget`` bytes each that hold the scenario, and how.

    Training shards model states: with the scenario's ZeRO-1 or ZeRO-2 if it has one and
    that fits, else with ZeRO-3 / FSDP. Inference splits the model with tensor
    parallelism over the smallest degree that divides the attention and key/value heads
    and fits; llama.cpp splits its layers over up to 16 devices instead. ``None`` when
    nothing up to 4,096 GPUs works (:func:`too_large` says why).
    """
    if fits(scenario, budget, gpu):
        return scenario
    if scenario.mode is Mode.TRAINING:
        # each data-parallel replica spans the tensor-parallel and pipeline ranks
        group = scenario.tensor_parallel * (scenario.pipeline_parallel if scenario.pipelined else 1)
        group *= _cp(scenario)
        for sharding in _training_plans(scenario):

            def at(n: int, sharding: Sharding = sharding) -> Scenario | None:
                return _valid(scenario, num_gpus=n * group, sharding=sharding)

            def ok(n: int, at: Callable[[int], Scenario | None] = at) -> bool:
                trial = at(n)
                return trial is not None and fits(trial, budget, gpu)

            # from one: on a single GPU a ZeRO stage can already fit what plain data
            # parallelism cannot (ZeRO-Offload moves the optimizer to the CPU, DeepSpeed's
            # bf16 engine computes in 16-bit weights), as DeepSpeed runs on one GPU.
            n = _first(1, MAX_GPUS // group, ok)
            if n is not None:
                return at(n)
        return None
    if scenario.runtime.engine is Runtime.LLAMA_CPP:
        # llama.cpp splits whole layers across its devices (--split-mode layer, the
        # default; src/llama-model.cpp load_tensors), any number of them up to
        # GGML_CUDA_MAX_DEVICES = 16 (ggml/include/ggml-cuda.h); the heaviest device's
        # share only shrinks as devices are added.
        def split(n: int) -> Scenario | None:
            return _valid(scenario, num_gpus=n)

        def holds(n: int) -> bool:
            trial = split(n)
            return trial is not None and fits(trial, budget, gpu)

        n = _first(2, LLAMA_CPP_MAX_DEVICES, holds)
        return None if n is None else split(n)
    for degree in tensor_parallel_degrees(scenario):
        trial = _valid(scenario, tensor_parallel=degree, num_gpus=degree)
        if trial is not None and fits(trial, budget, gpu):
            return trial
    return None


def too_large(scenario: Scenario, gpu: str | None = None) -> tuple[str, int]:
    """When no number of GPUs holds the scenario: the largest component on each GPU at
    the widest split tried (ZeRO-3 over 4,096 GPUs, or the largest tensor-parallel
    degree), with its bytes: what is too large for one GPU."""
    widest: Scenario | None = scenario
    if scenario.mode is Mode.TRAINING:
        group = scenario.tensor_parallel * (scenario.pipeline_parallel if scenario.pipelined else 1)
        group *= _cp(scenario)
        widest = _valid(scenario, num_gpus=(MAX_GPUS // group) * group, sharding=Sharding.ZERO3)
    elif scenario.runtime.engine is Runtime.LLAMA_CPP:
        widest = _valid(scenario, num_gpus=LLAMA_CPP_MAX_DEVICES)
    elif degrees := tensor_parallel_degrees(scenario):
        widest = _valid(scenario, tensor_parallel=degrees[-1], num_gpus=degrees[-1])
    result = estimate(widest or scenario, gpu)
    largest = max(result.components, key=lambda c: c.bytes)
    return largest.label, largest.bytes


@dataclass(frozen=True)
class Suggestion:
    """One change to the scenario and what it saves."""

    key: str
    label: str
    changes: dict[str, Any]
    total_bytes: int
    saved_bytes: int
    fits: bool
    risk: str = "none"  # what it may cost in model quality: none, low, medium, high
    risk_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The suggestion as JSON-ready data."""
        return {
            "key": self.key,
            "label": self.label,
            "changes": self.changes,
            "total_bytes": self.total_bytes,
            "saved_bytes": self.saved_bytes,
            "fits": self.fits,
            "risk": self.risk,
            "risk_note": self.risk_note,
        }


RISK_ORDER = ("none", "low", "medium", "high")
# What each change may cost in quality, and why. Sources: Micikevicius et al. 2018 (mixed
# precision keeps fp32 master weights; arXiv 1710.03740 §3); Zamirai et al. 2020 and
# Kalamkar et al. 2019 (pure BF16 updates lose small steps unless rounded stochastically or
# compensated: arXiv 2010.06192, 1905.12322); Dettmers et al. 2022 (8-bit optimizers match
# 32-bit Adam: arXiv 2110.02861); Shazeer and Stern 2018 (Adafactor, arXiv 1804.04235 §7);
# Hu et al. 2021 (LoRA, arXiv 2106.09685); Dettmers et al. 2023 (QLoRA, arXiv 2305.14314);
# Frantar et al. 2022 and Lin et al. 2023 (GPTQ, AWQ: a small perplexity loss at 4 bits).
RISKS: dict[str, tuple[str, str]] = {
    "checkpointing": ("none", "exact: the forward pass is recomputed, about a third slower"),
    "accumulate": ("none", "exact: the same effective batch, more steps"),
    "sdpa": ("none", "the same result up to rounding, faster"),
    "zero1": ("none", "exact: the state is split, not changed"),
    "zero2": ("none", "exact: the state is split, not changed"),
    "zero3": ("none", "exact: the state is split, not changed"),
    "amp": ("low", "fp32 master weights keep the updates exact; 16-bit matmuls"),
    "adam8bit": ("low", "block-wise 8-bit moments; matches 32-bit Adam in published runs"),
    "kv-fp8": ("low", "keys and values rounded to FP8: a small accuracy loss"),
    "quantize-fp8": ("low", "FP8 weights: close to 16-bit"),
    "quantize-int8": ("low", "LLM.int8: close to 16-bit, slower"),
    "adafactor": ("medium", "factored second moment and no momentum: may need retuning"),
    "lora": ("medium", "trains low-rank adapters only: may fall short of full fine-tuning"),
    "quantize-awq": ("medium", "4-bit weights: a measurable loss on hard tasks"),
    "quantize-nf4_dq": ("medium", "4-bit weights: a measurable loss on hard tasks"),
    "quantize-q4_k_m": ("medium", "4-bit weights: a measurable loss on hard tasks"),
    "qlora": ("medium", "4-bit frozen base and adapters only"),
    "bf16": (
        "high",
        "no fp32 master weights: small updates round away in BF16, which can slow or stall "
        "convergence without stochastic rounding or Kahan summation",
    ),
    "shorter": ("high", "changes the job: shorter sequences than your data"),
    "batch": ("none", "exact per sequence; fewer sequences at once, lower throughput"),
    "checkpointing-batch": (
        "none",
        "exact: the same effective batch, the forward pass recomputed, more steps",
    ),
    "batch-accumulate": ("none", "exact: the same effective batch, more steps"),
}


def _candidates(s: Scenario) -> list[tuple[str, str, dict[str, Any]]]:
    """Changes that may lower the memory of ``s``, with their schema values."""
    model = s.model
    transformer = isinstance(model, Transformer)
    out: list[tuple[str, str, dict[str, Any]]] = []
    if s.mode is Mode.TRAINING:
        if s.checkpointing is not Checkpointing.FULL:
            out.append(
                ("checkpointing", "Turn on gradient checkpointing", {"checkpointing": "full"})
            )
        if s.precision is Precision.FP32:
            out.append(("amp", "Train in BF16 mixed precision", {"precision": "amp_bf16"}))
        if s.precision in (Precision.FP32, Precision.AMP_BF16, Precision.AMP_FP16):
            out.append(
                (
                    "bf16",
                    "Train in pure BF16 (weights, gradients and states)",
                    {"precision": "bf16"},
                )
            )
        if s.optimizer is Optimizer.ADAMW:
            out.append(("adam8bit", "Use 8-bit AdamW", {"optimizer": "adamw_8bit"}))
            out.append(("adafactor", "Use Adafactor", {"optimizer": "adafactor"}))
        if transformer and s.finetune is Finetune.FULL:
            out.append(
                (
                    "lora",
                    "Fine-tune with LoRA (rank 16, all linear layers)",
                    {
                        "finetune": "lora",
                        "lora_rank": 16,
                        "lora_targets": LoraTargets.ALL_LINEAR.value,
                    },
                )
            )
            out.append(
                (
                    "qlora",
                    "Fine-tune with QLoRA (4-bit NF4 base, rank 16)",
                    {
                        "finetune": "lora",
                        "lora_rank": 16,
                        "precision": "nf4_dq",
                        "lora_targets": LoraTargets.ALL_LINEAR.value,
                    },
                )
            )
        elif transformer and s.precision not in (Precision.NF4, Precision.NF4_DQ):
            out.append(
                ("qlora", "Quantize the LoRA base to 4-bit NF4 (QLoRA)", {"precision": "nf4_dq"})
            )
        if s.num_gpus > 1:
            for stage in (Sharding.ZERO1, Sharding.ZERO2, Sharding.ZERO3):
                if list(Sharding).index(stage) > list(Sharding).index(s.sharding):
                    out.append(
                        (stage.value, f"Shard with {LABELS[stage]}", {"sharding": stage.value})
                    )
        if s.batch_size > 1:
            half = s.batch_size // 2
            out.append(
                (
                    "accumulate",
                    f"Batch {half} with {s.grad_accum_steps * 2}× gradient "
                    "accumulation (same effective batch)",
                    {"batch_size": half, "grad_accum_steps": s.grad_accum_steps * 2},
                )
            )
    else:
        for fmt in (Format.FP8, Format.INT8, Format.AWQ, Format.NF4_DQ, Format.Q4_K_M):
            if s.precision.value in ("fp32", "fp16", "bf16"):
                out.append(
                    (
                        f"quantize-{fmt.value}",
                        f"Quantize the weights to {FORMAT_LABELS[fmt]}",
                        {"precision": fmt.value},
                    )
                )
        decoder = isinstance(model, Transformer) and model.family in (Family.DECODER, Family.MOE)
        if decoder and s.kv_cache_dtype is not KvDtype.FP8:
            out.append(("kv-fp8", "Store the KV cache in FP8", {"kv_cache_dtype": "fp8"}))
        if s.batch_size > 1:
            out.append(
                (
                    "batch",
                    f"Halve the batch to {s.batch_size // 2}",
                    {"batch_size": s.batch_size // 2},
                )
            )
    if transformer and s.attention is Attention.EAGER:
        out.append(
            (
                "sdpa",
                "Use memory-efficient attention (SDPA / FlashAttention)",
                {"attention": "sdpa"},
            )
        )
    if "seq_len" not in s.inactive_fields() and s.seq_len > 1:
        out.append(
            (
                "shorter",
                f"Halve the sequence length to {s.seq_len // 2:,}",
                {"seq_len": s.seq_len // 2},
            )
        )
    return out


def _fitting_batch(s: Scenario, budget: int, gpu: str | None) -> tuple[str, str, dict[str, Any]]:
    """The usual fixes together, as one change: gradient checkpointing on (where it is
    off) and the largest batch that then fits, with gradient accumulation keeping the
    effective batch (the Hugging Face Trainer's per_device_train_batch_size ×
    gradient_accumulation_steps). An empty key where no smaller batch fits, or the batch
    as set already does."""
    none: tuple[str, str, dict[str, Any]] = ("", "", {})
    if s.mode is not Mode.TRAINING or s.batch_size == 1 or s.pipelined:
        return none
    checkpointing = {} if s.checkpointing is Checkpointing.FULL else {"checkpointing": "full"}
    effective = s.batch_size * s.grad_accum_steps
    # A smaller batch needs two or more steps; the count, not its size, changes the memory
    # (DeepSpeed's accumulation buffer, stacks.py), so the largest batch is found with two.
    trial = _valid(
        s,
        checkpointing=Checkpointing.FULL,
        grad_accum_steps=max(2, s.grad_accum_steps),
    )
    largest = 0 if trial is None else max_batch(trial, budget, gpu)
    if not 0 < largest < s.batch_size:
        return none
    steps = -(-effective // largest)  # ceiling: at least the effective batch set
    same = (
        "same effective batch"
        if largest * steps == effective
        else f"effective batch {largest * steps:,}"
    )
    how = " with gradient checkpointing and" if checkpointing else " with"
    label = f"Batch {largest:,}{how} {steps}× gradient accumulation ({same})"
    changes = {**checkpointing, "batch_size": largest, "grad_accum_steps": steps}
    key = "checkpointing-batch" if checkpointing else "batch-accumulate"
    return key, label, changes


def _field_value(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def suggestions(scenario: Scenario, budget: int, gpu: str | None = None) -> list[Suggestion]:
    """Changes ranked by their risk to model quality, then by the memory they save; each
    says what it risks and whether the scenario then fits."""
    from nnmem.scenario import parse

    base = total(scenario, gpu)
    data = scenario.to_dict()
    result = []
    candidates = _candidates(scenario)
    if base > budget:
        together = _fitting_batch(scenario, budget, gpu)
        candidates += [together] if together[0] else []
    for key, label, changes in candidates:
        try:
            trial = parse({**data, **changes})
        except NnmemError:
            continue
        after = total(trial, gpu)
        if after < base:
            plain = {k: _field_value(v) for k, v in changes.items()}
            risk, note = RISKS.get(key, ("low", ""))
            result.append(
                Suggestion(key, label, plain, after, base - after, after <= budget, risk, note)
            )
    # Safest first, and among equally safe changes the largest saving first.
    return sorted(result, key=lambda x: (RISK_ORDER.index(x.risk), -x.saved_bytes, x.key))


@dataclass(frozen=True)
class Fit:
    """A scenario judged against one GPU: the verdict and every solver's answer."""

    gpu_id: str
    gpu_name: str
    budget: int  # what the scenario may fill: the usable bytes less the headroom
    need: int  # the scenario's total, as estimate(scenario, gpu_id) gives it
    max_batch: int
    max_seq_len: int | None  # None when the model has no sequence length
    plan: Scenario | None  # the fewest GPUs that hold it; the scenario itself when it fits
    suggestions: tuple[Suggestion, ...]
    context: ContextLimit | None = None  # the model's context, which caps max_seq_len
    warnings: tuple[str, ...] = ()  # what stops it running as set, fit or not
    runs: bool = True  # False when the card cannot run the chosen precision at all
    # When no plan holds it: the largest component on each GPU at the widest split, bytes.
    too_large: tuple[str, int] | None = None

    @property
    def fits(self) -> bool:
        """Whether the scenario fits as it is."""
        return self.need <= self.budget

    @property
    def headroom(self) -> int:
        """Bytes to spare (negative: bytes short)."""
        return self.budget - self.need

    def to_dict(self) -> dict[str, Any]:
        """The verdict and the solvers as JSON-ready data."""
        plan = None
        if self.plan is not None:
            plan = {
                "num_gpus": self.plan.num_gpus,
                "sharding": self.plan.sharding.value,
                "tensor_parallel": self.plan.tensor_parallel,
            }
        return {
            "gpu": self.gpu_id,
            "budget_bytes": self.budget,
            "usable_bytes": self.usable,
            "headroom_percent": self.headroom_percent,
            "need_bytes": self.need,
            "fits": self.fits,
            "headroom_bytes": self.headroom,
            "max_batch": self.max_batch,
            "max_seq_len": self.max_seq_len,
            "min_gpus": plan,
            "too_large": None
            if self.too_large is None
            else {"component": self.too_large[0], "bytes": self.too_large[1]},
            "suggestions": [s.to_dict() for s in self.suggestions],
            "context": None if self.context is None else self.context.to_dict(),
            "max_seq_len_capped": self.seq_len_capped,
            "warnings": list(self.warnings),
            "runs": self.runs,
        }

    @property
    def seq_len_capped(self) -> bool:
        """Whether the longest sequence is the model's context rather than the memory."""
        return (
            self.context is not None
            and self.max_seq_len is not None
            and self.max_seq_len >= self.context.tokens - self.generated
        )

    generated: int = 0  # tokens generated after the prompt, which share the context
    usable: int = 0  # the GPU's usable bytes (catalog.Gpu.usable_bytes), before headroom
    headroom_percent: float = 0.0  # the share of ``usable`` kept free


def judge(scenario: Scenario, gpu_id: str, always_suggest: bool = False) -> Fit:
    """Judge ``scenario`` on the catalog GPU ``gpu_id``: fit, limits, fewest GPUs, changes.

    Suggestions are worked out when it does not fit, or always with ``always_suggest``.

    >>> from nnmem.scenario import parse
    >>> fit = judge(parse({"model": "preset", "preset": "llama-3.1-8b", "mode": "inference",
    ...                    "precision": "bf16"}), "rtx-4090")
    >>> fit.fits, fit.max_batch  # 24 GiB usable, 10% of it kept free by default
    (True, 41)
    """
    from nnmem import catalog

    gpu = catalog.gpu(gpu_id)
    if gpu is None:
        raise NnmemError.single("gpu", f"GPU {gpu_id!r} is not in the catalog.")
    budget = budget_for(scenario, gpu.usable_bytes)
    need = total(scenario, gpu_id)
    longest = None
    if "seq_len" not in scenario.inactive_fields():
        longest = max_seq_len(scenario, budget, gpu_id)
    plan = scenario if need <= budget else min_gpus(scenario, budget, gpu_id)
    ideas = suggestions(scenario, budget, gpu_id) if need > budget or always_suggest else []
    context = context_limit(scenario)
    warnings, runs = format_warnings(scenario, gpu)
    generated = scenario.new_tokens if scenario.mode is Mode.INFERENCE else 0
    if context is not None and scenario.seq_len + generated > context.tokens:
        warnings.append(
            f"{scenario.seq_len + generated:,} tokens exceed the model's context of "
            f"{context.tokens:,} ({context.source})"
            + (": set RoPE scaling in its config.json to go further." if context.rope else ".")
        )
    cause = too_large(scenario, gpu_id) if plan is None else None
    return Fit(
        gpu.id,
        gpu.name,
        budget,
        need,
        max_batch(scenario, budget, gpu_id),
        longest,
        plan,
        tuple(ideas),
        context=context,
        warnings=tuple(warnings),
        runs=runs,
        too_large=cause,
        generated=generated,
        usable=gpu.usable_bytes,
        headroom_percent=float(scenario.headroom_percent),
    )


# The number format each precision computes in on the GPU (nnmem/data/gpus.json ``formats``).
COMPUTE_FORMAT = {
    Precision.AMP_BF16: "bf16",
    Precision.BF16: "bf16",
    Precision.AMP_FP16: "fp16",
    Precision.FP16: "fp16",
    Precision.FP8: "fp8",
}
# Formats whose kernels are written for CUDA and ROCm: bitsandbytes, GPTQ, AWQ.
CUDA_KERNELS = {
    Precision.INT8: "bitsandbytes",
    Precision.NF4: "bitsandbytes",
    Precision.NF4_DQ: "bitsandbytes",
    Precision.GPTQ: "GPTQ",
    Precision.AWQ: "AWQ",
}


def format_warnings(scenario: Scenario, gpu: Any) -> tuple[list[str], bool]:
    """What the card cannot do with the chosen precision, and whether it can run at all.

    >>> from nnmem import catalog
    >>> from nnmem.scenario import parse
    >>> s = parse({"model": "preset", "preset": "llama-3-8b", "precision": "amp_bf16"})
    >>> format_warnings(s, catalog.gpus()["t4"])[1]
    True
    >>> s = parse({"model": "preset", "preset": "llama-3-8b", "mode": "inference",
    ...            "precision": "fp8"})
    >>> format_warnings(s, catalog.gpus()["a100-sxm-80gb"])[1]
    False
    """
    warnings: list[str] = []
    runs = True
    needed = COMPUTE_FORMAT.get(scenario.precision)
    if needed and gpu.formats and not gpu.supports(needed):
        if needed == "bf16":
            warnings.append(
                f"The {gpu.name}, {gpu.architecture}, has no BF16 matrix units: BF16 runs "
                "emulated, many times slower. FP16 mixed precision is the 16-bit format it "
                "runs at speed."
            )
        else:
            runs = False
            warnings.append(
                f"The {gpu.name}, {gpu.architecture}, cannot compute in "
                f"{needed.upper()}: FP8 needs NVIDIA compute capability 8.9 or newer (Ada, "
                "Hopper, Blackwell) or AMD CDNA 3."
            )
    kernels = CUDA_KERNELS.get(scenario.precision)
    if kernels and gpu.vendor == "apple":
        warnings.append(
            f"{kernels} is built for CUDA and ROCm; on the {gpu.name} PyTorch runs through "
            "Metal (MPS), so check that your version supports it there, or use a GGUF "
            "format with llama.cpp, which runs on Metal."
        )
    return warnings, runs
