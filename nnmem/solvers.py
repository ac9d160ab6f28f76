"""Questions about a memory budget: does it fit, how far can it grow, what to change.

Every answer comes from :func:`nnmem.estimate.estimate` itself, so it agrees with the
breakdown by construction. The batch size enters every term linearly, so the largest
batch follows from two estimates and is then checked; the sequence length (which
attention can make quadratic) and the GPU count are searched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
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
    Scenario,
    Sharding,
)

MAX_BATCH = 1_000_000
MAX_SEQ = 10_000_000
MAX_GPUS = 4096


def total(scenario: Scenario, gpu: str | None = None) -> int:
    """Bytes the scenario needs on one GPU, overheads included."""
    return estimate(scenario, gpu).total_bytes


def _valid(scenario: Scenario, **changes: Any) -> Scenario | None:
    try:
        return replace(scenario, **changes)
    except NnmemError:
        return None


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

    def ok(b: int) -> bool:
        return fits(replace(scenario, batch_size=b), budget, gpu)

    one = replace(scenario, batch_size=1)
    if total(one, gpu) > budget:
        return 0
    two = replace(scenario, batch_size=2)
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
    guess = max(1, min(best, MAX_BATCH))
    if ok(guess):
        return _grow(guess, MAX_BATCH, ok)
    return _search(1, guess - 1, ok)


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
    model = scenario.model
    if isinstance(model, Transformer) and model.learned_positions:
        limit = model.learned_positions  # a learned position table caps the length

    def ok(n: int) -> bool:
        trial = _valid(scenario, seq_len=n)
        return trial is not None and fits(trial, budget, gpu)

    return max(0, _search(1, limit, ok))


def _degrees(scenario: Scenario) -> list[int]:
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
    and fits. ``None`` when nothing up to 4,096 GPUs works (:func:`too_large` says why).
    """
    if fits(scenario, budget, gpu):
        return scenario
    if scenario.mode is Mode.TRAINING:
        for sharding in _training_plans(scenario):

            def at(n: int, sharding: Sharding = sharding) -> Scenario | None:
                return _valid(scenario, num_gpus=n * scenario.tensor_parallel, sharding=sharding)

            def ok(n: int, at: Callable[[int], Scenario | None] = at) -> bool:
                trial = at(n)
                return trial is not None and fits(trial, budget, gpu)

            n = _first(2, MAX_GPUS // scenario.tensor_parallel, ok)
            if n is not None:
                return at(n)
        return None
    for degree in _degrees(scenario):
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
        widest = _valid(
            scenario,
            num_gpus=(MAX_GPUS // scenario.tensor_parallel) * scenario.tensor_parallel,
            sharding=Sharding.ZERO3,
        )
    elif degrees := _degrees(scenario):
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

    def to_dict(self) -> dict[str, Any]:
        """The suggestion as JSON-ready data."""
        return {
            "key": self.key,
            "label": self.label,
            "changes": self.changes,
            "total_bytes": self.total_bytes,
            "saved_bytes": self.saved_bytes,
            "fits": self.fits,
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


def _field_value(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def suggestions(scenario: Scenario, budget: int, gpu: str | None = None) -> list[Suggestion]:
    """Changes ranked by the memory they save, largest first; each says if it then fits."""
    from nnmem.scenario import parse

    base = total(scenario, gpu)
    data = scenario.to_dict()
    result = []
    for key, label, changes in _candidates(scenario):
        try:
            trial = parse({**data, **changes})
        except NnmemError:
            continue
        after = total(trial, gpu)
        if after < base:
            plain = {k: _field_value(v) for k, v in changes.items()}
            result.append(Suggestion(key, label, plain, after, base - after, after <= budget))
    return sorted(result, key=lambda x: (-x.saved_bytes, x.key))


@dataclass(frozen=True)
class Fit:
    """A scenario judged against one GPU: the verdict and every solver's answer."""

    gpu_id: str
    gpu_name: str
    budget: int  # usable bytes on the GPU
    need: int  # the scenario's total, as estimate(scenario, gpu_id) gives it
    max_batch: int
    max_seq_len: int | None  # None when the model has no sequence length
    plan: Scenario | None  # the fewest GPUs that hold it; the scenario itself when it fits
    suggestions: tuple[Suggestion, ...]
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
        }


def judge(scenario: Scenario, gpu_id: str, always_suggest: bool = False) -> Fit:
    """Judge ``scenario`` on the catalog GPU ``gpu_id``: fit, limits, fewest GPUs, changes.

    Suggestions are worked out when it does not fit, or always with ``always_suggest``.

    >>> from nnmem.scenario import parse
    >>> fit = judge(parse({"model": "preset", "preset": "llama-3.1-8b", "mode": "inference",
    ...                    "precision": "bf16"}), "rtx-4090")
    >>> fit.fits, fit.max_batch
    (True, 60)
    """
    from nnmem import catalog

    gpu = catalog.gpus().get(gpu_id)
    if gpu is None:
        raise NnmemError.single("gpu", f"GPU {gpu_id!r} is not in the catalog.")
    budget = gpu.usable_bytes
    need = total(scenario, gpu_id)
    longest = None
    if "seq_len" not in scenario.inactive_fields():
        longest = max_seq_len(scenario, budget, gpu_id)
    plan = scenario if need <= budget else min_gpus(scenario, budget, gpu_id)
    ideas = suggestions(scenario, budget, gpu_id) if need > budget or always_suggest else []
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
        cause,
    )
