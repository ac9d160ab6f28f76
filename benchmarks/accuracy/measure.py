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
import os
import platform
import subprocess
import sys
import tempfile
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
DEFAULT_CUDA_OUTPUT = HERE / "measured_cuda.json"
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


def nvidia_smi(*query: str) -> list[list[str]]:
    """Rows of ``nvidia-smi --query-...`` as lists of strings; [] where it is missing."""
    try:
        out = subprocess.run(
            ["nvidia-smi", *query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line]


def process_device_bytes() -> int | None:
    """This process's device memory as the driver counts it (nvidia-smi), if it can tell."""
    for pid, used in nvidia_smi("--query-compute-apps=pid,used_memory"):
        if pid == str(os.getpid()) and used.isdigit():
            return int(used) * 2**20
    return None


def cuda_device() -> dict[str, Any]:
    """The GPU and its driver, from nvidia-smi, without creating a CUDA context."""
    gpu = nvidia_smi("--query-gpu=name,driver_version,memory.total")
    if not gpu:
        return {}
    name, driver, total = gpu[0]
    return {"gpu": name, "driver": driver, "total_memory_mib": int(total)}


def cuda_environment() -> dict[str, Any]:
    """The GPU, its driver and the CUDA context's size, taken before any case runs.

    ``used_before_init_bytes`` is what the driver reports in use before this process
    touches the GPU; ``context_bytes`` is what ``cudaMemGetInfo`` shows in use once the
    CUDA context exists and one small tensor is allocated, minus the caching allocator's
    reserve and the memory already in use before: the context, its loaded modules and
    the driver's per-process state. Cases that load cuBLAS, cuDNN or attention kernels
    add their modules later (``process_overhead_bytes`` per case).
    """
    gpu = nvidia_smi("--query-gpu=name,driver_version,memory.total,memory.used")
    before = int(gpu[0][3]) * 2**20 if gpu and gpu[0][3].isdigit() else None
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "total_memory_bytes": total,
        "driver": gpu[0][1] if gpu else None,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "used_before_init_bytes": before,
        "used_after_init_bytes": total - free,
        "reserved_after_init_bytes": torch.cuda.memory_reserved(),
        "context_bytes": total - free - torch.cuda.memory_reserved() - (before or 0),
        "process_bytes_after_init": process_device_bytes(),
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


def run_cases(cases: list[Case], checkpoint: Any = None) -> list[dict[str, Any]]:
    """Run each case, printing progress to stderr.

    On a GPU a case that fails (out of memory, a kernel the build lacks) is reported
    on stderr and left out, and ``checkpoint(results)`` is called after every case so
    that a run cut short keeps what it measured.
    """
    results = []
    for index, case in enumerate(cases, 1):
        start = time.perf_counter()
        if case.device == "cuda":
            result = cuda_case_in_subprocess(case)
            if result is None:
                print(f"[{index}/{len(cases)}] {case.id}: FAILED", file=sys.stderr)
            else:
                results.append(result)
            if checkpoint is not None:
                checkpoint(results)
        else:
            results.append(run_case(case))
            gc.collect()
        print(
            f"[{index}/{len(cases)}] {case.id}: {time.perf_counter() - start:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return results


def cuda_case_in_subprocess(case: Case) -> dict[str, Any] | None:
    """Run one CUDA case in a fresh Python process and return its entry.

    A process of its own gives each case an empty caching allocator, no cuBLAS
    workspaces or tensors left by an earlier case, and a CUDA context holding only the
    kernels this case loads, so the driver's count for the process is this case's
    alone. A case that fails (out of memory, a device-side assert) ends only its own
    process; None is returned and its error is on stderr.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.json"
        command = [sys.executable, "-m", "benchmarks.accuracy.measure", "--one-cuda-case"]
        done = subprocess.run([*command, case.id, "--output", str(path)], check=False)
        if done.returncode != 0 or not path.exists():
            return None
        entry: dict[str, Any] = json.loads(path.read_text())
    return entry


def one_cuda_case(case_id: str, output: Path) -> int:
    """Measure one CUDA case in this process; write its entry with the environment."""
    matches = [c for c in select_cases(None, "cuda") if c.id == case_id]
    if not matches:
        print(f"no case {case_id!r}", file=sys.stderr)
        return 2
    process = cuda_environment()
    result = cuda_case(matches[0])
    result["cuda"]["process"] = process
    output.write_text(json.dumps(result))
    return 0


def cuda_case(case: Case) -> dict[str, Any]:
    """A real run on the GPU, with the driver's view of this process's memory."""
    result = run_case(case)
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    counters = result.setdefault("cuda", {})
    counters["used_at_end_bytes"] = total - free
    counters["reserved_at_end_bytes"] = torch.cuda.memory_reserved()
    counters["process_bytes_at_end"] = process_device_bytes()
    return result


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
    existing: dict[str, Any],
    results: list[dict[str, Any]],
    fake_vs_real: dict[str, Any] | None,
    cuda: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Replace re-measured cases (by id) and keep the rest, sorted by id."""
    by_id = {case["id"]: case for case in existing.get("cases", [])}
    by_id.update({case["id"]: case for case in results})
    document = {
        "schema_version": SCHEMA_VERSION,
        "units": "bytes",
        "environment": environment(),
        "fake_vs_real": fake_vs_real if fake_vs_real is not None else existing.get("fake_vs_real"),
        "cases": [by_id[key] for key in sorted(by_id)],
    }
    if cuda is not None:
        document["environment"]["cuda"] = cuda
    return document


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
    parser.add_argument("--one-cuda-case", metavar="ID", help=argparse.SUPPRESS)
    parser.add_argument(
        "--output",
        type=Path,
        help=f"default: {DEFAULT_OUTPUT.name}, or {DEFAULT_CUDA_OUTPUT.name} with --device cuda",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    if args.one_cuda_case:
        return one_cuda_case(args.one_cuda_case, args.output)
    cases = select_cases(args.only, args.device)
    if args.list:
        print("\n".join(case.id for case in cases))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda needs a CUDA build of torch and a GPU", file=sys.stderr)
        return 2
    output = args.output or (DEFAULT_CUDA_OUTPUT if args.device == "cuda" else DEFAULT_OUTPUT)
    existing = load(output)
    start = time.perf_counter()
    if args.device == "cuda":
        # Each case runs in its own process (cuda_case_in_subprocess); this one only
        # reads the GPU's name and driver, and never creates a CUDA context.
        cuda = cuda_device()
        results = run_cases(cases, lambda done: write(output, merge(existing, done, None, cuda)))
        write(output, merge(existing, results, None, cuda))
    else:
        results = [] if args.check_fake else run_cases(cases)
        full_cpu_run = not args.only
        fake_vs_real = check_fake_vs_real() if args.check_fake or full_cpu_run else None
        write(output, merge(existing, results, fake_vs_real))
    print(
        f"wrote {output} ({len(results)} cases) in {time.perf_counter() - start:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
