"""Run the training-stack cases and write ``benchmarks/stacks/measured_stacks.json``.

``python -m benchmarks.stacks.measure [--only NAME ...]`` from the repository root; a
partial run replaces the matching entries and keeps the others. Sorted keys, no
timestamps.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.stacks import runs
from benchmarks.stacks.common import BATCH, LLAMA_CONFIG, SEQ

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "measured_stacks.json"

CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "plain.adamw_foreach": lambda: runs.plain("foreach"),
    "plain.adamw_fused": lambda: runs.plain("fused"),
    "plain.adamw_for_loop": lambda: runs.plain("for_loop"),
    # pure bf16: the activations FSDP2 with a bf16 MixedPrecisionPolicy computes with
    "plain.bf16_adamw_foreach": lambda: runs.plain("foreach", torch.bfloat16),
    "ddp.bucket_view_false": lambda: runs.ddp(False, 29611),
    "ddp.bucket_view_true": lambda: runs.ddp(True, 29612),
    "fsdp2.reshard_true": lambda: runs.fsdp2({"reshard_after_forward": True}, 29613),
    "fsdp2.reshard_false": lambda: runs.fsdp2({"reshard_after_forward": False}, 29614),
    "fsdp2.mixed_bf16_reduce_fp32": lambda: runs.fsdp2(
        {"reshard_after_forward": True, "mixed_precision": True}, 29615
    ),
    "fsdp2.cpu_offload": lambda: runs.fsdp2(
        {"reshard_after_forward": True, "cpu_offload": True}, 29616
    ),
    "hf_trainer.defaults": runs.hf_trainer,
    "trl_sft.defaults": runs.trl_sft,
    "peft.kbit_casts": runs.kbit_casts,
    "deepspeed.zero1": lambda: runs.deepspeed_try(1, 29621),
    "deepspeed.zero2": lambda: runs.deepspeed_try(2, 29622),
    "deepspeed.zero3": lambda: runs.deepspeed_try(3, 29623),
    "deepspeed.estimators": runs.deepspeed_estimators,
}


def versions() -> dict[str, str]:
    """Versions of everything that shapes the figures."""
    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "trl", "deepspeed", "datasets"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="run the cases whose name contains one of these")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    document: dict[str, Any] = {"cases": {}}
    if OUTPUT.exists():
        document = json.loads(OUTPUT.read_text())
    for name, run in CASES.items():
        if args.only and not any(part in name for part in args.only):
            continue
        print(f"running {name}", file=sys.stderr, flush=True)
        document["cases"][name] = run()
    document["versions"] = versions()
    document["model"] = {"family": "llama", "config": LLAMA_CONFIG, "batch": BATCH, "seq": SEQ}
    document["device"] = "cpu"
    OUTPUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
