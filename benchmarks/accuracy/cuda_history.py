"""Record the caching allocator's own history of a few cases on a GPU; replay it.

For a GPU session. Each case runs in a process of its own (as ``measure.py --device
cuda`` does) with ``torch.cuda.memory._record_memory_history`` on from before the
model is built, and writes the allocator's event list and final snapshot to
``cuda_history/<case>[.expandable].json.gz``::

    python -m benchmarks.accuracy.cuda_history            # the default handful
    python -m benchmarks.accuracy.cuda_history --only resnet50 --expandable

Replaying the GPU's own ``alloc``/``free`` sequence through ``nnmem.allocator`` then
isolates the allocator model from the trace: the segments the model opens must be the
ones the GPU opened (``compare_history``; needs only nnmem)::

    .venv/bin/python -m benchmarks.accuracy.cuda_history --compare
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from nnmem.allocator import AllocatorConfig, parse_alloc_conf, replay

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "cuda_history"
# One case per open question of the trace replay (allocator_replay.md), plus a
# checkpointing case and one with expandable segments.
DEFAULT_CASES = (
    "resnet50.train.fp32.sgd-momentum.conv.b32.img224",
    "t5-base.train.amp-bf16.adafactor.eager.b8.s512.dec128",
    "llama-3.2-1b.train.amp-bf16.adamw.sdpa.b1.s2048",
    "llama-3.2-1b.train.bf16.adamw.sdpa.gc.b1.s2048",
    "bert-large.train.fp32.adamw.eager.b4.s512",
    "llama-2-7b.infer.bf16.sdpa.b1.ctx4096",
)
EXPANDABLE_CASE = "llama-3.2-1b.train.bf16.adamw.sdpa.gc.b1.s2048"


def record_one(case_id: str, output: Path) -> None:
    """In this process: record the allocator history of one CUDA case."""
    import torch

    from .measure import cuda_case, cuda_environment, quiet_libraries, select_cases

    quiet_libraries()
    case = next(c for c in select_cases(None, "cuda") if c.id.removesuffix(".cuda") == case_id)
    # Before the first CUDA allocation, so the history starts with the first segment.
    torch.cuda.memory._record_memory_history(enabled="all", context=None, stacks="python")
    process = cuda_environment()
    result = cuda_case(case)
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    keep = ("action", "addr", "size", "stream")
    entry = {
        "id": case_id,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
        "torch": torch.__version__,
        "cuda": {**result["cuda"], "process": process},
        "events": [[e.get(k) for k in keep] for e in snapshot["device_traces"][0]],
        "segments": [
            {
                "address": s["address"],
                "total_size": s["total_size"],
                "segment_type": s["segment_type"],
                "blocks": [[b["size"], b["state"]] for b in s["blocks"]],
            }
            for s in snapshot["segments"]
        ],
    }
    with gzip.open(output, "wt") as f:
        json.dump(entry, f, separators=(",", ":"))


def history_events(events: list[list[Any]]) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The GPU's alloc/free requests as replay events, and the sizes of its new segments.

    ``alloc`` and ``free_requested`` carry the caller's request (``requested_size``);
    ``segment_alloc``/``segment_map`` are the allocator's own decisions, kept to be
    compared with the model's.

    >>> ev, segs = history_events([["segment_alloc", 0, 2097152, 0], ["alloc", 0, 4, 0],
    ...                            ["free_requested", 0, 4, 0], ["free_completed", 0, 4, 0]])
    >>> ev, segs
    ([('alloc', 0, 4), ('free', 0)], [2097152])
    """
    out: list[tuple[Any, ...]] = []
    segments: list[int] = []
    ids: dict[int, int] = {}
    next_id = 0
    for action, addr, size, _stream in events:
        if action == "alloc":
            ids[addr] = next_id
            out.append(("alloc", next_id, size))
            next_id += 1
        elif action == "free_requested" and addr in ids:
            out.append(("free", ids.pop(addr)))
        elif action in ("segment_alloc", "segment_map"):
            segments.append(size)
    return out, segments


def compare_history(entry: dict[str, Any]) -> dict[str, Any]:
    """Replay the GPU's request sequence; compare segments and the reserved peak."""
    events, gpu_segments = history_events(entry["events"])
    config: AllocatorConfig = parse_alloc_conf(entry["alloc_conf"])
    result = replay(events, config)
    model_segments = sorted(s.total_size for s in result.segments_at_end)
    gpu_final = sorted(s["total_size"] for s in entry["segments"])
    return {
        "id": entry["id"],
        "alloc_conf": entry["alloc_conf"],
        "requests": sum(1 for e in events if e[0] == "alloc"),
        "gpu_segment_allocs": len(gpu_segments),
        "model_segment_allocs": result.segment_allocs,
        "gpu_reserved_bytes_allocated": sum(gpu_segments),
        "model_reserved_peak": result.reserved_peak,
        "final_segments_equal": model_segments == gpu_final,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="SUBSTRING")
    parser.add_argument("--expandable", action="store_true", help="only the expandable case")
    parser.add_argument("--compare", action="store_true", help="replay recorded histories")
    parser.add_argument("--one", metavar="ID", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        record_one(args.one, args.output)
        return 0
    if args.compare:
        for path in sorted(OUT_DIR.glob("*.json.gz")):
            with gzip.open(path, "rt") as f:
                print(json.dumps(compare_history(json.load(f))))
        return 0
    runs = [(c, "") for c in DEFAULT_CASES]
    runs.append((EXPANDABLE_CASE, "expandable_segments:True"))
    if args.expandable:
        runs = [r for r in runs if r[1]]
    if args.only:
        runs = [r for r in runs if any(part in r[0] for part in args.only)]
    OUT_DIR.mkdir(exist_ok=True)
    for case_id, conf in runs:
        name = case_id + (".expandable" if conf else "")
        with tempfile.TemporaryDirectory() as tmp:
            partial = Path(tmp) / "history.json.gz"
            env = {**os.environ, "PYTORCH_CUDA_ALLOC_CONF": conf}
            command = [sys.executable, "-m", "benchmarks.accuracy.cuda_history", "--one"]
            done = subprocess.run([*command, case_id, "--output", str(partial)], env=env)
            if done.returncode == 0:
                (OUT_DIR / f"{name}.json.gz").write_bytes(partial.read_bytes())
            print(f"{name}: {'ok' if done.returncode == 0 else 'FAILED'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
