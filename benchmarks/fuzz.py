"""The long property run: every invariant of tests/property over many random scenarios.

    .venv/bin/python benchmarks/fuzz.py                  # 20,000 scenarios per property
    .venv/bin/python benchmarks/fuzz.py --examples 500 --only sums,monotone
    .venv/bin/python benchmarks/fuzz.py --save failures.jsonl   # keep every failing scenario

Unlike the tests, a failing scenario does not stop the run: each property reports how
many scenarios it tried, how many broke it, the first few failures and its time. The
reply property also reports the slowest reply and the most estimates one reply built.
Exits 1 when any property failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "property"))

from hypothesis import HealthCheck, Phase, given, settings

import fuzz_checks as checks
from fuzz_entry import compute, count_estimates
from fuzz_strategies import gpu_ids, scenarios

PROGRESS = 1000  # print the counts every this many scenarios
PROPERTIES: dict[str, tuple[Callable[..., list[str]], bool]] = {
    "sums": (checks.sums, False),
    "monotone": (checks.monotone, False),
    "zero3_gpus": (checks.zero3_gpus, False),
    "precision_order": (checks.precision_order, False),
    "inactive": (checks.inactive, False),
    "round_trip": (checks.round_trip, False),
    "solvers": (checks.solvers, True),
    "reply_bound": (checks.reply_bound, True),
}


def run(name: str, examples: int, show: int, save: Path | None = None) -> tuple[int, int, float]:
    check, with_gpu = PROPERTIES[name]
    tried, broken, messages = [0], [0], []
    slowest = [0.0, ""]

    def record(data: dict[str, Any], gpu: str) -> None:
        tried[0] += 1
        start = time.perf_counter()
        found = check(data, gpu) if with_gpu else check(data)
        seconds = time.perf_counter() - start
        if seconds > slowest[0]:
            slowest[:] = [seconds, gpu]
        if found:
            broken[0] += 1
            messages.extend(found[:1])
            if save is not None:  # the whole scenario, which the printed message shortens
                line = {"property": name, "gpu": gpu, "scenario": data, "found": found}
                with save.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(line, sort_keys=True, default=str) + "\n")
        if tried[0] % PROGRESS == 0:  # so that a run cut short still tells its counts
            print(f"{name:16} {tried[0]:>7,} so far   {broken[0]:>6,} failed", flush=True)

    def body(data: dict[str, Any], gpu: str) -> None:
        record(data, gpu)

    strategies = (scenarios(), gpu_ids())
    test = settings(
        max_examples=examples,
        derandomize=False,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(given(*strategies)(body))
    start = time.perf_counter()
    test()
    seconds = time.perf_counter() - start
    print(
        f"{name:16} {tried[0]:>7,} scenarios  {broken[0]:>6,} failed  {seconds:8.1f} s"
        f"  (slowest {slowest[0] * 1000:.0f} ms)",
        flush=True,
    )
    for message in messages[:show]:
        print(f"    {message[:400]}")
    return tried[0], broken[0], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="scenarios per property")
    parser.add_argument("--only", default="", help="comma-separated property names")
    parser.add_argument("--show", type=int, default=3, help="failures to print per property")
    parser.add_argument("--save", type=Path, help="append every failing scenario here (JSON lines)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(PROPERTIES)
    unknown = set(names) - set(PROPERTIES)
    if unknown:
        parser.error(f"unknown properties {sorted(unknown)}: choose from {list(PROPERTIES)}")
    with count_estimates():  # warm the imports and caches before timing
        compute('{"fields": {}}')
    failed = 0
    for name in names:
        _, broken, _ = run(name, args.examples, args.show, args.save)
        failed += broken
    print(f"total failures: {failed:,}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
