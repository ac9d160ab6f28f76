"""Measure what PyTorch training and inference steps allocate; write measured.json.

Usage (from the repository root, inside the accuracy venv):

    python -m benchmarks.accuracy.measure                  # every case + fake-vs-real
    python -m benchmarks.accuracy.measure --only llama-2   # rerun matching cases
    python -m benchmarks.accuracy.measure --check-fake     # only the fake-vs-real check
    python -m benchmarks.accuracy.measure --device cuda --only gpt2-small

Partial runs update the matching entries of an existing measured.json and keep the
rest. The output is deterministic: sorted keys, cases sorted by id, no timestamps.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import transformers

from .cases import FAKE_VS_REAL_CASES, Case, all_cases
from .runner import run_case

SCHEMA_VERSION = 1
HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "measured.json"
# A fake and a real run must agree within this fraction on every compared figure.
FAKE_REAL_TOLERANCE = 0.01


def environment() -> dict[str, str]:
    """Versions that decide the measured numbers."""
    import peft

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def select_cases(only: list[str] | None, device: str) -> list[Case]:
    """All cases, or those whose id contains one of the ``only`` substrings.

    For CUDA, every case becomes a real-tensor run on the GPU with its own id.
    """
    cases = all_cases()
    if device == "cuda":
        cases = [replace(c, device="cuda", fake=False) for c in cases]
    if only:
        cases = [c for c in cases if any(part in c.id for part in only)]
    return cases


def run_cases(cases: list[Case]) -> list[dict[str, Any]]:
    """Run each case, printing progress to stderr."""
    results = []
    for index, case in enumerate(cases, 1):
        start = time.perf_counter()
        results.append(run_case(case))
        gc.collect()
        if case.device == "cuda":
            # Start each case from an empty caching allocator, so reserved bytes
            # belong to this case only.
            torch.cuda.empty_cache()
        print(
            f"[{index}/{len(cases)}] {case.id}: {time.perf_counter() - start:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return results


# Fake versus real -------------------------------------------------------------------


def compared_figures(result: dict[str, Any]) -> dict[str, int]:
    """The figures that a fake and a real run of the same case must share."""
    figures = {
        "peak_bytes": result["peak"]["bytes"],
        "step1_peak_bytes": result["step1"]["bytes"],
        "gradient_bytes": result["gradients"]["bytes"],
        "optimizer_state_bytes": result["optimizer"]["state_bytes"],
        "saved_activation_bytes": result["saved_for_backward"]["activation_bytes"],
        "autocast_weight_copy_bytes": result["saved_for_backward"]["autocast_weight_copy_bytes"],
        "parameter_bytes": result["parameters"]["bytes"],
    }
    for phase, stats in result["peak"]["phases"].items():
        figures[f"phase_peak_bytes.{phase}"] = stats["peak_bytes"]
    for name, nbytes in result["peak"]["categories"].items():
        figures[f"category_at_peak.{name}"] = nbytes
    if result["checkpointing"]:
        figures["checkpointed_input_bytes"] = result["checkpointing"]["checkpointed_input_bytes"]
    return figures


def compare(fake: dict[str, int], real: dict[str, int]) -> dict[str, Any]:
    """Per-figure fake and real values and their relative difference."""
    rows = {}
    worst = 0.0
    for key in sorted(fake):
        diff = abs(fake[key] - real[key]) / max(abs(real[key]), 1)
        worst = max(worst, diff)
        rows[key] = {"fake": fake[key], "real": real[key], "relative_difference": round(diff, 6)}
    return {
        "figures": rows,
        "max_relative_difference": round(worst, 6),
        "within_tolerance": worst <= FAKE_REAL_TOLERANCE,
    }


def check_fake_vs_real() -> dict[str, Any]:
    """Run each small case with real tensors and fake ones and compare every figure.

    The real run also profiles the CPU allocator during step 2, so the tracker's peak
    can be compared with what the allocator itself counted.
    """
    records = []
    for case in FAKE_VS_REAL_CASES:
        start = time.perf_counter()
        fake = run_case(replace(case, fake=True))
        real = run_case(replace(case, fake=False), profile_allocator=True)
        gc.collect()
        allocator = real["allocator"]
        tracker_phases = allocator["tracker_phase_peak_above_start_bytes"]
        tracker = max(tracker_phases.values())
        records.append(
            {
                "id": case.id,
                "description": case.description() | {"fake": None},
                "comparison": compare(compared_figures(fake), compared_figures(real)),
                "allocator_profile": {
                    "allocator_peak_above_start_bytes": allocator["peak_above_start_bytes"],
                    "tracker_peak_above_start_bytes": tracker,
                    "difference_bytes": allocator["peak_above_start_bytes"] - tracker,
                    "allocator_phase_peak_above_start_bytes": allocator[
                        "phase_peak_above_start_bytes"
                    ],
                    "tracker_phase_peak_above_start_bytes": tracker_phases,
                },
            }
        )
        print(
            f"[fake-vs-real] {case.id}: {time.perf_counter() - start:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return {
        "tolerance": FAKE_REAL_TOLERANCE,
        "cases": records,
        "all_within_tolerance": all(r["comparison"]["within_tolerance"] for r in records),
    }


# Output ------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    """The existing measured.json, or an empty skeleton."""
    if path.exists():
        return json.loads(path.read_text())
    return {"cases": [], "fake_vs_real": None}


def merge(
    existing: dict[str, Any], results: list[dict[str, Any]], fake_vs_real: dict[str, Any] | None
) -> dict[str, Any]:
    """Replace re-measured cases (by id) and keep the rest, sorted by id."""
    by_id = {case["id"]: case for case in existing.get("cases", [])}
    by_id.update({case["id"]: case for case in results})
    return {
        "schema_version": SCHEMA_VERSION,
        "units": "bytes",
        "environment": environment(),
        "fake_vs_real": fake_vs_real if fake_vs_real is not None else existing.get("fake_vs_real"),
        "cases": [by_id[key] for key in sorted(by_id)],
    }


def write(path: Path, document: dict[str, Any]) -> None:
    """Write JSON with stable key order and a trailing newline."""
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


def quiet_libraries() -> None:
    """Silence transformers' advisory logging and deprecation warnings on stderr."""
    transformers.logging.set_verbosity_error()
    logging.getLogger("torch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        metavar="SUBSTRING",
        help="run only cases whose id contains SUBSTRING (repeatable)",
    )
    parser.add_argument(
        "--check-fake", action="store_true", help="run only the fake-vs-real comparison"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cpu: fake-tensor runs (default); cuda: real runs on a GPU",
    )
    parser.add_argument("--list", action="store_true", help="print the case ids and exit")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda needs a CUDA build of torch and a GPU", file=sys.stderr)
        return 2
    cases = select_cases(args.only, args.device)
    if args.list:
        print("\n".join(case.id for case in cases))
        return 0
    start = time.perf_counter()
    results = [] if args.check_fake else run_cases(cases)
    full_cpu_run = not args.only and args.device == "cpu"
    fake_vs_real = check_fake_vs_real() if args.check_fake or full_cpu_run else None
    write(args.output, merge(load(args.output), results, fake_vs_real))
    print(
        f"wrote {args.output} ({len(results)} cases) in {time.perf_counter() - start:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
