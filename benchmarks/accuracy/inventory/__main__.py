"""Run the inventory: ``python -m benchmarks.accuracy.inventory [--only KEY] [--write]``."""

from __future__ import annotations

import argparse
import sys

from benchmarks.accuracy import inventory
from benchmarks.accuracy.inventory.checks import build_report, load_measured, real_cpu_checks
from benchmarks.accuracy.inventory.instrumentation import run_setting
from benchmarks.accuracy.inventory.rendering import render, summary
from benchmarks.accuracy.inventory.settings import settings
from benchmarks.accuracy.inventory.symbols import REPORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(inventory.__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run settings whose key contains one of these")
    parser.add_argument("--write", action="store_true", help="rewrite inventory.md")
    parser.add_argument(
        "--real", action="store_true", help="also run each probe case with real CPU tensors"
    )
    args = parser.parse_args(argv)
    chosen = [s for s in settings() if not args.only or any(o in s.key for o in args.only)]
    measured = load_measured()
    reports = []
    for setting in chosen:
        rep = build_report(run_setting(setting), measured)
        if args.real:
            rep.real_cpu = real_cpu_checks(rep)
        reports.append(rep)
        print(summary(rep), flush=True)
    if args.write:
        REPORT.write_text(render(reports))
    return 0 if all(rep.ok for rep in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
