"""Time the what-fits answer for every model it ranks, one model at a time (prints
seconds per model and the slowest).

.venv/bin/python -m benchmarks.runtimes.fit_per_model

Each case is run cold (the per-model GGUF tensor lists not yet built, as on the page's
first answer) and warm (cached, as on every later one; the best of three passes per
model, since the machine may be shared). The vLLM ranking covers
the catalog decoders and the MoE models priced by their checkpoints (the catalog
entries with a ``weights`` object); llama.cpp
covers the catalog decoders whose GGUF tensor lists nnmem writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from nnmem import catalog
from nnmem.runtimes import fit

GIB = 2**30


def _cases() -> list[tuple[str, list[int], int, int, int]]:
    gpus = catalog.gpus()
    return [
        ("llama_cpp", [gpus["rtx-4090"].usable_bytes], 8192, 1, 64 * GIB),
        ("llama_cpp", [gpus["rtx-3090"].usable_bytes] * 2, 32768, 4, 128 * GIB),
        ("vllm", [gpus["h100-sxm-80gb"].usable_bytes], 16384, 8, 0),
        ("vllm", [gpus["h200-sxm-141gb"].usable_bytes] * 8, 32768, 16, 0),
    ]


def _one_pass(
    runtime: str, vram: list[int], ctx: int, users: int, ram: int
) -> list[tuple[float, str, str]]:
    """(seconds, model id, verdict) of each model in one what-fits answer."""
    calls: list[tuple[str, Callable[[], fit.Fit]]]
    if runtime == "vllm":
        calls = [(m.id, partial(fit.vllm_fit, m, vram, ctx, users)) for m in fit.vllm_candidates()]
    else:
        calls = [
            (m.id, partial(fit.llamacpp_fit, m, vram, ram, ctx, users))
            for m in fit.llamacpp_candidates()
        ]
    out = []
    for mid, call in calls:
        t = time.perf_counter()
        f = call()
        out.append((time.perf_counter() - t, mid, f"{f.fmt} {f.fits}"))
    return out


def main() -> None:
    slowest: tuple[float, str, str] = (0.0, "", "")
    for runtime, vram, ctx, users, ram in _cases():
        for run in ("cold", "warm"):
            if run == "cold":
                fit._weights.cache_clear()
            t = time.perf_counter()
            rows = _one_pass(runtime, vram, ctx, users, ram)
            total = time.perf_counter() - t
            if run == "warm":
                for _ in range(2):
                    again = _one_pass(runtime, vram, ctx, users, ram)
                    rows = [min(a, b) for a, b in zip(rows, again, strict=True)]
                    total = min(total, sum(r[0] for r in again))
            rows.sort(reverse=True)
            head = ", ".join(f"{mid} {s * 1000:.1f} ms ({v})" for s, mid, v in rows[:3])
            print(
                f"{runtime:9} {len(vram)}x{vram[0] / GIB:5.1f} GiB ctx {ctx:6} users {users:3}"
                f" {run}: {len(rows)} models in {total:6.3f} s; slowest {head}"
            )
            if rows[0][0] > slowest[0]:
                slowest = (rows[0][0], rows[0][1], f"{runtime} {run}")
        if runtime == "vllm":
            new = {m.id for m in fit.vllm_candidates()} - {m.id for m in fit.llamacpp_candidates()}
            print("  runtime models: " + ", ".join(f"{mid} {v}" for _, mid, v in sorted(
                (r for r in rows if r[1] in new), key=lambda r: r[1])))  # fmt: skip
    print(f"slowest model: {slowest[1]} {slowest[0] * 1000:.1f} ms ({slowest[2]})")


if __name__ == "__main__":
    main()
