"""Replay the recorded traces through nnmem's allocator model; compare with the GPU.

Each trace in ``traces/`` (written by ``traces.py``) is the order in which a CUDA
accuracy case's storages are born and die. Replayed through ``nnmem.allocator``, it
gives the allocator's reserved and allocated peaks for each span between two peak
resets (training: step 1 and step 2; inference: prefill and decode), which are compared
with ``max_memory_reserved()`` and ``max_memory_allocated()`` in ``measured_cuda.json``.

Needs only nnmem (no torch)::

    .venv/bin/python -m benchmarks.accuracy.allocator_replay           # print the table
    .venv/bin/python -m benchmarks.accuracy.allocator_replay --write   # allocator_replay.json/.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nnmem.allocator import ReplayResult, replay

HERE = Path(__file__).resolve().parent
TRACE_DIR = HERE / "traces"
CUDA_MEASUREMENTS = HERE / "measured_cuda.json"
OUTPUT_JSON = HERE / "allocator_replay.json"
OUTPUT_MD = HERE / "allocator_replay.md"

MIB = 2**20
# aten/src/ATen/cuda/CublasHandlePool.cpp, parseChosenWorkspaceSize: on compute
# capability 9.0 (the H200) the default cuBLAS workspace is 4096 KiB x 8 = 32 MiB.
# getNewWorkspace() takes it from the caching allocator, once per (handle, stream), and
# keeps it; handles are thread-local, so the forward (the Python thread) and the
# backward (autograd's device thread) each get one. cuBLASLt shares it
# (TORCH_CUBLASLT_UNIFIED_WORKSPACE defaults to on in getCUDABlasLtWorkspaceSize).
CUBLAS_WORKSPACE_BYTES = 4096 * 1024 * 8
CUBLAS_OPS = {"mm", "addmm", "bmm", "baddbmm", "_grouped_mm"}
# measure.py's cuda_environment() makes torch.zeros(1, device="cuda") before the case:
# a 4-byte request that leaves one 2 MiB small-pool segment cached.
INIT_TENSOR_BYTES = 4
SPAN_NAMES = {"training": ("step1", "step2"), "inference": ("prefill", "decode")}


def load_trace(case_id: str) -> dict[str, Any]:
    """One case's trace entry (id, storages, peak_bytes, trace)."""
    with gzip.open(TRACE_DIR / f"{case_id}.json.gz", "rt") as f:
        entry: dict[str, Any] = json.load(f)
    return entry


def events(trace: list[int | str], spans: tuple[str, str]) -> Iterator[tuple[Any, ...]]:
    """Turn a trace into ``nnmem.allocator.replay`` events, adding what CUDA adds.

    Adds the init tensor of the measuring process and one cuBLAS workspace the first
    time a cuBLAS op runs on each thread (backward on autograd's thread, everything
    else on the Python thread). Allocation ids are the trace's storage ids; the added
    allocations take negative ids.
    """
    yield ("alloc", -1, INIT_TENSOR_BYTES)
    yield ("free", -1)
    next_id = 0
    workspaces: set[str] = set()
    phase = "setup"
    reset = 0
    for item in trace:
        if isinstance(item, int):
            if item >= 0:
                yield ("alloc", next_id, item)
                next_id += 1
            else:
                yield ("free", -item - 1)
        elif item.startswith("phase:"):
            phase = item[6:]
        elif item.startswith("reset:"):
            yield ("mark", spans[min(reset, len(spans) - 1)])
            reset += 1
        elif item.startswith("op:") and item[3:] in CUBLAS_OPS:
            thread = "autograd" if phase == "backward" else "main"
            if thread not in workspaces:
                workspaces.add(thread)
                yield ("alloc", -2 - len(workspaces), CUBLAS_WORKSPACE_BYTES)


def live_peak(trace: list[int | str]) -> int:
    """The trace's own live-byte peak from the first peak reset on (before rounding).

    That is what the GPU run's tracker measured (``peak.bytes`` in measured_cuda.json):
    the steps, not the model's construction.
    """
    sizes: list[int] = []
    live = peak = 0
    measuring = False
    for item in trace:
        if isinstance(item, int):
            if item >= 0:
                sizes.append(item)
                live += item
                if measuring:
                    peak = max(peak, live)
            else:
                live -= sizes[-item - 1]
        elif item.startswith("reset:"):
            measuring = True
            peak = max(peak, live)
    return peak


def measured_cases() -> list[dict[str, Any]]:
    """The CUDA cases that have a trace."""
    data = json.loads(CUDA_MEASUREMENTS.read_text())
    out = []
    for case in data["cases"]:
        base = case["id"].removesuffix(".cuda")
        if (TRACE_DIR / f"{base}.json.gz").exists():
            out.append(case)
    return out


def error(estimated: int, measured: int) -> float:
    """Relative error of ``estimated`` against ``measured``."""
    return (estimated - measured) / measured


def compare_case(case: dict[str, Any]) -> dict[str, Any]:
    """Replay one case's trace and compare each span with the GPU's counters."""
    base = case["id"].removesuffix(".cuda")
    entry = load_trace(base)
    mode = case["description"]["mode"]
    spans = SPAN_NAMES[mode]
    result: ReplayResult = replay(events(entry["trace"], spans))
    cuda = case["cuda"]
    row: dict[str, Any] = {
        "id": base,
        "events": len(entry["trace"]),
        "storages": entry["storages"],
        "trace_live_peak_bytes": live_peak(entry["trace"]),
        "cuda_tracker_peak_bytes": case["peak"]["bytes"],
        "segments_at_end": len(result.segments_at_end),
        "fragmentation_at_reserved_peak": round(result.fragmentation_at_peak, 4),
        "spans": {},
    }
    for span in spans:
        allocated, reserved = result.peaks_by_mark[span]
        got = cuda[span]
        row["spans"][span] = {
            "reserved": reserved,
            "max_memory_reserved": got["max_memory_reserved"],
            "reserved_error": round(error(reserved, got["max_memory_reserved"]), 5),
            "allocated": allocated,
            "max_memory_allocated": got["max_memory_allocated"],
            "allocated_error": round(error(allocated, got["max_memory_allocated"]), 5),
        }
    row["compared_span"] = spans[-1]
    last = row["spans"][spans[-1]]
    row["reserved_error"] = last["reserved_error"]
    row["allocated_error"] = last["allocated_error"]
    return row


def compare_all() -> dict[str, Any]:
    """Every case's comparison, with the median and largest absolute errors."""
    rows = [compare_case(case) for case in measured_cases()]
    reserved = [abs(r["reserved_error"]) for r in rows]
    allocated = [abs(r["allocated_error"]) for r in rows]
    return {
        "cases": rows,
        "summary": {
            "cases": len(rows),
            "reserved_abs_error_median": round(statistics.median(reserved), 5),
            "reserved_abs_error_max": round(max(reserved), 5),
            "allocated_abs_error_median": round(statistics.median(allocated), 5),
            "allocated_abs_error_max": round(max(allocated), 5),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    lines = [
        "# Allocator replay of the recorded traces against the H200 runs",
        "",
        "Written by `python -m benchmarks.accuracy.allocator_replay --write`. Each trace",
        "(`traces/`) is replayed through `nnmem.allocator`; the peaks of the last span (step 2,",
        "or the decode step) are compared with `max_memory_reserved()` and",
        "`max_memory_allocated()` of the same span on the GPU (`measured_cuda.json`).",
        "",
        "| case | trace peak vs GPU tracker | allocated: replay / GPU (MiB) | error "
        "| reserved: replay / GPU (MiB) | error |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["cases"]:
        span = row["spans"][row["compared_span"]]
        trace_gap = row["trace_live_peak_bytes"] - row["cuda_tracker_peak_bytes"]
        lines.append(
            f"| `{row['id']}` | {trace_gap / MIB:+.1f} MiB "
            f"| {span['allocated'] / MIB:.1f} / {span['max_memory_allocated'] / MIB:.1f} "
            f"| {span['allocated_error']:+.2%} "
            f"| {span['reserved'] / MIB:.1f} / {span['max_memory_reserved'] / MIB:.1f} "
            f"| {span['reserved_error']:+.2%} |"
        )
    s = report["summary"]
    lines += [
        "",
        f"{s['cases']} cases. Reserved: median |error| {s['reserved_abs_error_median']:.2%}, "
        f"max {s['reserved_abs_error_max']:.2%}. Allocated: median "
        f"{s['allocated_abs_error_median']:.2%}, max {s['allocated_abs_error_max']:.2%}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the .json and .md")
    args = parser.parse_args(argv)
    report = compare_all()
    text = markdown(report)
    if args.write:
        OUTPUT_JSON.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        OUTPUT_MD.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
