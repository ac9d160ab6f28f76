"""Time one page recalculation: ``nnmem.web.handle`` on the page's fields.

    .venv/bin/python benchmarks/page_speed.py

Prints the median of repeated runs, in milliseconds, for the default form and for
catalog models with a GPU chosen (which adds the verdict, the solvers, the ranked
suggestions and the plot's extra estimates).
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnmem.web import handle
from nnmem.web.calculator import DEFAULT_FIELDS

REQUESTS: dict[str, dict[str, str]] = {
    "default form (110M, no GPU)": {},
    "Llama 3.1 8B AMP training, H100": {
        "describe": "fields",
        "preset": "llama-3.1-8b",
        "precision": "amp_bf16",
        "batch_size": "4",
        "seq_len": "4096",
        "gpu": "h100-sxm-80gb",
    },
    "Llama 3.1 8B serving, RTX 4090": {
        "describe": "fields",
        "preset": "llama-3.1-8b",
        "mode": "inference",
        "precision": "bf16",
        "batch_size": "4",
        "seq_len": "4096",
        "gpu": "rtx-4090",
    },
    "same, plotted against sequence": {
        "describe": "fields",
        "preset": "llama-3.1-8b",
        "mode": "inference",
        "precision": "bf16",
        "batch_size": "4",
        "seq_len": "4096",
        "gpu": "rtx-4090",
        "plot": "seq_len",
    },
    "ResNet-50 training, T4": {
        "describe": "cnn",
        "cnn": "resnet50",
        "batch_size": "64",
        "gpu": "t4",
    },
}


def median_ms(request: str, repeat: int) -> float:
    """Median wall time of ``handle(request)`` over ``repeat`` runs, after a warm-up."""
    handle(request)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        handle(request)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    print(f"{platform.python_implementation()} {platform.python_version()} on {sys.platform}")
    print(f"{'request':36} {'compute':>9}   (ms, median of 21)")
    for name, fields in REQUESTS.items():
        request = json.dumps({"fields": {**DEFAULT_FIELDS, **fields}})
        print(f"{name:36} {median_ms(request, 21):9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
