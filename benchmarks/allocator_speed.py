"""Time the caching-allocator replay on the recorded accuracy traces.

    .venv/bin/python benchmarks/allocator_speed.py

Prints, for every trace in ``benchmarks/accuracy/traces/``, its events and the median
replay time (of 7 runs) in CPython, largest first, and the rate in events per
millisecond. A step's replay must fit the page's recalculation budget; this says how
many events that allows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.accuracy import allocator_replay
from nnmem.allocator import replay


def best_ms(events: list[tuple[object, ...]], repeat: int = 7) -> float:
    """Fastest wall time of ``replay(events)`` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        replay(events)
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def main() -> int:
    rows = []
    for path in sorted(allocator_replay.TRACE_DIR.glob("*.json.gz")):
        case_id = path.name.removesuffix(".json.gz")
        entry = allocator_replay.load_trace(case_id)
        spans = ("step1", "step2") if "train" in case_id or "lora" in case_id else ("a", "b")
        events = list(allocator_replay.events(entry["trace"], spans))
        rows.append((len(events), case_id, best_ms(events), path.stat().st_size))
    rows.sort(reverse=True)
    print(f"{'trace':58} {'events':>7} {'KiB':>5} {'ms':>7} {'events/ms':>10}")
    for count, case_id, ms, size in rows:
        print(f"{case_id:58} {count:7d} {size / 1024:5.0f} {ms:7.2f} {count / ms:10.0f}")
    total_events = sum(r[0] for r in rows)
    total_ms = sum(r[2] for r in rows)
    total_kib = sum(r[3] for r in rows) / 1024
    rate = total_events / total_ms
    print(f"{'all':58} {total_events:7d} {total_kib:5.0f} {total_ms:7.2f} {rate:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
