"""The invariants, each a function of a drawn scenario that returns what broke (an empty
list when the invariant holds), so the tests can assert it and the long run can count."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fuzz_entry import compute, count_estimates, from_query_string, query_string
from fuzz_strategies import ALTERNATES
from nnmem import Estimate, NnmemError, Scenario, estimate, parse
from nnmem.catalog import gpus
from nnmem.scenario import Mode, Runtime
from nnmem.solvers import MAX_BATCH, context_limit, max_batch, max_seq_len, min_gpus

Check = Callable[..., list[str]]

# A reply may build at most this many estimates, whatever the input: the page answers
# every keystroke, so its work must have a bound that does not grow with the budget.
MAX_ESTIMATES_PER_REPLY = 400
# And the wall-clock bound the long run reports against (a reply on a busy laptop core).
REPLY_SECONDS = 2.0


def _short(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return text if len(text) < 600 else text[:597] + "..."


def _try(data: dict[str, Any]) -> Scenario | None:
    try:
        return parse(data)
    except NnmemError:
        return None


def sums(data: dict[str, Any]) -> list[str]:
    """Integer, non-negative terms and components that add up to the total; the tensor
    peak at most the total."""
    e = estimate(parse(data))
    out = []
    for phase in e.phases:
        for term in phase.terms:
            if not isinstance(term.bytes, int) or term.bytes < 0:
                out.append(f"{phase.name}: term {term.label!r} is {term.bytes!r} B")
    for c in e.components:
        if not isinstance(c.bytes, int) or c.bytes < 0:
            out.append(f"component {c.key} is {c.bytes!r} B")
        if c.size < 0:
            out.append(f"component {c.key} size is {c.size!r} B")
    added = sum(c.bytes for c in e.components)
    if added != e.total_bytes:
        out.append(f"components add to {added:,} B, the total is {e.total_bytes:,} B")
    if e.tensor_peak_bytes > e.total_bytes:
        out.append(f"tensor peak {e.tensor_peak_bytes:,} B > total {e.total_bytes:,} B")
    return [f"{m} in {_short(data)}" for m in out]


def _total(data: dict[str, Any], **changes: object) -> int | None:
    s = _try({**data, **changes})
    return None if s is None else estimate(s).total_bytes


def monotone(data: dict[str, Any], step: int = 1) -> list[str]:
    """A larger batch, or a longer sequence where the model has one, never needs less."""
    s = parse(data)
    out = []
    for key in ("batch_size", "seq_len"):
        if key in s.inactive_fields():
            continue
        value = getattr(s, key)
        before, after = _total(data, **{key: value}), _total(data, **{key: value + step})
        if before is not None and after is not None and after < before:
            out.append(
                f"{key} {value} → {value + step}: total falls {before:,} → {after:,} B "
                f"in {_short(data)}"
            )
    return out


def zero3_gpus(data: dict[str, Any], more: int = 2) -> list[str]:
    """Under ZeRO-3, more GPUs never need more memory on each, from two data-parallel
    GPUs on. (On one,
    FSDP falls back to NO_SHARD and gathers nothing, which for a model whose largest
    layer outweighs half its states needs less than two shards plus a gathered layer.)"""
    s = parse(data)
    if s.mode is not Mode.TRAINING:
        return []
    tp = s.tensor_parallel
    base = {**data, "sharding": "zero3"}
    # ZeRO shards over the data-parallel ranks (GPUs ÷ tensor-parallel degree): two on.
    counts = sorted(n for n in {2 * tp, s.num_gpus, s.num_gpus * more} if n // tp >= 2)
    totals = [(n, _total(base, num_gpus=n)) for n in counts]
    out = []
    for (n1, t1), (n2, t2) in itertools.pairwise(totals):
        if t1 is not None and t2 is not None and t2 > t1:
            out.append(f"ZeRO-3 {n1} → {n2} GPUs: {t1:,} → {t2:,} B per GPU in {_short(data)}")
    return out


# Pairs (wider, narrower) of weight formats whose weights, and so inference totals, are
# ordered: each narrower one stores the same tensors in fewer bits (nnmem.formats). GGUF
# types quantize the embeddings too and the others do not, so the two families are ordered
# each in itself, below 16-bit.
BNB = {"int8", "nf4", "nf4_dq"}
NARROWER = (
    ("fp32", "bf16"),
    ("bf16", "fp8"),
    ("bf16", "int8"),
    *((wide, narrow) for wide in ("fp8", "int8") for narrow in ("int4", "gptq", "awq", "nf4")),
    ("nf4", "nf4_dq"),
    ("bf16", "q8_0"),
    ("q8_0", "q6_k"),
    ("q6_k", "q5_k_m"),
    ("q5_k_m", "q4_k_m"),
    ("q4_k_m", "q4_0"),
)


MODEL_STATES = ("weights", "gradients", "optimizer_state")


def precision_order(data: dict[str, Any]) -> list[str]:
    """Fewer stored bits never need more: at inference the weights and the total follow
    the formats' order; in training, fp32 needs at least pure 16-bit; bf16 and fp16 (and
    the two mixed precisions) need the same."""
    s = parse(data)
    out = []
    if s.mode is Mode.INFERENCE:
        runs: dict[str, tuple[int, int]] = {}
        for p in {p for pair in NARROWER for p in pair} | {"fp16"}:
            trial = _try({**data, "precision": p})
            if trial is not None:
                e = estimate(trial)
                runs[p] = (e.component_sizes().get("weights", 0), e.total_bytes)
        # bitsandbytes replaces only nn.Linear (transformers integrations/bitsandbytes.py,
        # replace_with_bnb_linear): a mixture of experts' fused 3-D expert parameters stay
        # 16-bit, so its bitsandbytes formats are not ordered against the others by bits.
        moe = getattr(getattr(s.model, "architecture", None), "experts", 0) or getattr(
            s.model, "experts", 0
        )
        for wide, narrow in NARROWER:
            if moe and (wide in BNB or narrow in BNB) and not (wide in BNB and narrow in BNB):
                continue
            if wide in runs and narrow in runs:
                (w1, t1), (w2, t2) = runs[wide], runs[narrow]
                if w2 > w1:
                    out.append(f"weights {wide} {w1:,} B < {narrow} {w2:,} B")
                # Below 16-bit, each format's dequantization temporaries differ, so only
                # the totals from the unquantized formats are ordered.
                if wide in ("fp32", "bf16") and t2 > t1:
                    out.append(f"total {wide} {t1:,} B < {narrow} {t2:,} B")
        if runs.get("bf16") != runs.get("fp16"):
            out.append(f"bf16 {runs.get('bf16')} ≠ fp16 {runs.get('fp16')}")
    else:
        # Activations need not follow: a 16-bit step adds fp32 upcasts (the loss's logits)
        # that an fp32 step does not make. The model states do follow.
        states = {}
        for p in ("fp32", "bf16", "fp16", "amp_bf16", "amp_fp16"):
            trial = _try({**data, "precision": p})
            if trial is not None:
                sizes = estimate(trial).component_sizes()
                states[p] = sum(sizes.get(k, 0) for k in MODEL_STATES)
        if "fp32" in states and "bf16" in states and states["bf16"] > states["fp32"]:
            out.append(f"model states fp32 {states['fp32']:,} B < bf16 {states['bf16']:,} B")
        if states.get("bf16") != states.get("fp16"):
            out.append(f"model states differ between bf16 and fp16: {states}")
        if states.get("amp_bf16") != states.get("amp_fp16"):
            out.append(f"model states differ between amp_bf16 and amp_fp16: {states}")
    return [f"{m} in {_short(data)}" for m in out]


def _comparable(e: Estimate) -> tuple[int, dict[str, int]]:
    return e.total_bytes, e.component_sizes()


def inactive(data: dict[str, Any]) -> list[str]:
    """A field the scenario says does not apply never changes the estimate."""
    s = parse(data)
    base = _comparable(estimate(s))
    out = []
    for key in s.inactive_fields():
        for value in ALTERNATES.get(key, ()):
            trial = _try({**data, key: value})
            if trial is None:
                continue
            if (after := _comparable(estimate(trial))) != base:
                out.append(
                    f"hidden {key}={value} changes the total {base[0]:,} → {after[0]:,} B "
                    f"in {_short(data)}"
                )
    return out


def round_trip(data: dict[str, Any]) -> list[str]:
    """parse(to_dict()) gives the same scenario and estimate, compact or not, through JSON
    text."""
    s = parse(data)
    base = _comparable(estimate(s))
    out = []
    ways = {
        "to_dict": lambda: json.loads(json.dumps(s.to_dict())),
        "to_dict(compact=True)": lambda: json.loads(json.dumps(s.to_dict(compact=True))),
    }
    for name, way in ways.items():
        back = _try(way())
        if back is None:
            out.append(f"{name} does not parse back")
            continue
        if name == "to_dict" and back != s:
            out.append(f"{name} reads back a different scenario")
        if name == "to_dict(compact=True)" and back.to_dict(compact=True) != way():
            out.append(f"{name} reads back a different compact scenario")
        if (after := _comparable(estimate(back))) != base:
            out.append(f"{name}: total {base[0]:,} → {after[0]:,} B")
    return [f"{m} in {_short(data)}" for m in out]


def solvers(data: dict[str, Any], gpu_id: str) -> list[str]:
    """Each solver's answer fits the GPU and one more step does not."""
    s = parse(data)
    budget = gpus()[gpu_id].usable_bytes
    out = []

    def fits(trial: Scenario) -> bool:
        return estimate(trial, gpu_id).total_bytes <= budget

    b = max_batch(s, budget, gpu_id)
    if b and not fits(replace(s, batch_size=b)):
        out.append(f"max_batch {b} does not fit {gpu_id}")
    if b < MAX_BATCH and fits(replace(s, batch_size=b + 1)):
        out.append(f"max_batch {b} but {b + 1} fits {gpu_id}")
    if "seq_len" not in s.inactive_fields():
        n = max_seq_len(s, budget, gpu_id)
        if n and not fits(replace(s, seq_len=n)):
            out.append(f"max_seq_len {n} does not fit {gpu_id}")
        model = s.model
        cap = getattr(model, "learned_positions", 0) or None  # the position table's rows
        context = context_limit(s)  # the solver stops at the model's context, on purpose
        generated = s.new_tokens if s.mode is Mode.INFERENCE else 0
        at_context = context is not None and n + generated >= context.tokens
        longer = _try({**data, "seq_len": n + 1}) if n != cap and not at_context else None
        if longer is not None and fits(longer):
            out.append(f"max_seq_len {n} but {n + 1} fits {gpu_id}")
    plan = min_gpus(s, budget, gpu_id)
    if fits(s):
        if plan != s:
            out.append(f"min_gpus changes a scenario that fits {gpu_id}")
    elif plan is not None and not fits(plan):
        out.append(f"min_gpus plan {plan.num_gpus} GPUs does not fit {gpu_id}")
    elif plan is not None and plan.mode is Mode.TRAINING:
        tp = plan.tensor_parallel
        fewer = _try({**plan.to_dict(), "num_gpus": plan.num_gpus - tp})
        if plan.num_gpus > tp and fewer is not None and fits(fewer):
            out.append(f"min_gpus {plan.num_gpus} but {fewer.num_gpus} fit {gpu_id}")
    elif plan is not None and plan.runtime.engine is Runtime.LLAMA_CPP:
        fewer = _try({**plan.to_dict(), "num_gpus": plan.num_gpus - 1})
        if plan.num_gpus > 2 and fewer is not None and fits(fewer):
            out.append(f"min_gpus {plan.num_gpus} but {fewer.num_gpus} fit {gpu_id}")
    elif plan is not None:
        for d in range(2, plan.tensor_parallel):
            fewer = _try({**plan.to_dict(), "tensor_parallel": d, "num_gpus": d})
            if fewer is not None and fits(fewer):
                out.append(f"min_gpus {plan.num_gpus} but {d} fit {gpu_id}")
                break
    return [f"{m} in {_short(data)}" for m in out]


def reply_bound(data: dict[str, Any], gpu_id: str) -> list[str]:
    """The calculator's whole reply (estimate, verdict, every solver, suggestions, plot)
    builds a bounded number of estimates, whatever the input; and the scenario's link
    opens the page on the same total (the page fills what a link leaves out with the
    form's defaults, so a link names every value that differs from them)."""
    s = parse(data)
    fields = {**from_query_string(query_string(s)), "gpu": gpu_id}
    request = json.dumps({"fields": fields})
    start = time.perf_counter()
    with count_estimates() as counter:
        reply = json.loads(compute(request))
    seconds = time.perf_counter() - start
    out = []
    if "fatal" in reply:
        out.append(f"fatal reply {reply['fatal']!r}")
    elif not reply["ok"]:
        out.append(f"the link gives errors {reply['errors']}")
    elif reply["total_bytes"] != (want := estimate(s, gpu_id).total_bytes):
        out.append(f"the link opens {reply['total_bytes']:,} B, the scenario is {want:,} B")
    if counter[0] > MAX_ESTIMATES_PER_REPLY:
        out.append(f"{counter[0]:,} estimates ({seconds:.2f} s) for one reply on {gpu_id}")
    return [f"{m} in {_short(fields)}" for m in out]


__all__ = [
    "MAX_ESTIMATES_PER_REPLY",
    "REPLY_SECONDS",
    "inactive",
    "monotone",
    "precision_order",
    "reply_bound",
    "round_trip",
    "solvers",
    "sums",
    "zero3_gpus",
]
