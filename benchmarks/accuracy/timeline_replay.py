"""Replay nnmem's own timeline of each CUDA accuracy case through the allocator model.

Where ``allocator_replay.py`` replays the storages a real step allocated, this replays
the events nnmem's engine predicts (``nnmem.timeline.replay_step``: weights and
optimizer state, two training steps or prefill and decode, the cuBLAS workspaces), and
compares with the H200 runs in ``measured_cuda.json``:

* reserved: the replay's reserved peak against ``max_memory_reserved()`` (training: step
  2; inference: the larger of prefill and decode);
* device total: reserved peak + the CUDA context setting, against the device memory the
  process used (``compare.measured_values``' ``device_total``), beside today's total
  (tensor peak + a flat allocator reserve + cuBLAS workspaces + context).

Needs only nnmem::

    .venv/bin/python -m benchmarks.accuracy.timeline_replay
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from benchmarks.accuracy import compare
from nnmem.estimate import estimate
from nnmem.scenario import parse
from nnmem.timeline import replay_step

MIB = 2**20
WITHIN = 0.05


def error(estimated: int, measured: int) -> float:
    """Relative error of ``estimated`` against ``measured``."""
    return (estimated - measured) / measured


def compare_case(case: dict[str, Any]) -> dict[str, Any]:
    """One case: the replay's reserved peak and device total against the GPU's."""
    scenario = parse(compare.scenario_for(case))
    measured = compare.measured_values(case)
    start = time.perf_counter()
    result = replay_step(scenario, compare.CUDA_GPU_ID)
    ms = (time.perf_counter() - start) * 1000
    flat = estimate(scenario, compare.CUDA_GPU_ID)
    context = scenario.cuda_context_mib * MIB
    total = result.reserved_peak + context
    return {
        "id": case["id"].removesuffix(".cuda"),
        "reserved": result.reserved_peak,
        "measured_reserved": measured["reserved_peak"],
        "reserved_error": error(result.reserved_peak, measured["reserved_peak"]),
        "total": total,
        "measured_total": measured["device_total"],
        "total_error": error(total, measured["device_total"]),
        "flat_total_error": error(flat.total_bytes, measured["device_total"]),
        "fragmentation": result.fragmentation_at_peak,
        "ms": ms,
    }


def summary(rows: list[dict[str, Any]], key: str) -> str:
    """Median and largest absolute error of ``key``, and how many are within 5%."""
    errors = [abs(r[key]) for r in rows]
    within = sum(e <= WITHIN for e in errors)
    return (
        f"median {statistics.median(errors):.2%}, max {max(errors):.2%}, "
        f"{within} of {len(rows)} within {WITHIN:.0%}"
    )


def main() -> int:
    rows = [compare_case(case) for case in compare.load_cases(compare.MEASURED_CUDA)]
    print(
        f"{'case':62} {'reserved MiB':>15} {'error':>7} {'total MiB':>15} {'error':>7} "
        f"{'flat 5%':>7} {'frag':>5} {'ms':>5}"
    )
    for r in rows:
        print(
            f"{r['id']:62} {r['reserved'] / MIB:7.0f}/{r['measured_reserved'] / MIB:<7.0f} "
            f"{r['reserved_error']:+7.2%} "
            f"{r['total'] / MIB:7.0f}/{r['measured_total'] / MIB:<7.0f} "
            f"{r['total_error']:+7.2%} {r['flat_total_error']:+7.2%} "
            f"{r['fragmentation']:5.1%} {r['ms']:5.1f}"
        )
    print()
    print(f"reserved, replayed timeline: {summary(rows, 'reserved_error')}")
    print(f"device total, replayed timeline: {summary(rows, 'total_error')}")
    print(f"device total, flat reserve: {summary(rows, 'flat_total_error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
