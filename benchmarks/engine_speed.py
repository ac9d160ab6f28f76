"""Time the estimator: per estimate and per solver call, for typical scenarios.

    .venv/bin/python benchmarks/engine_speed.py          # CPython
    node benchmarks/engine_speed_pyodide.mjs             # the same, inside Pyodide

Prints the median of repeated runs, in milliseconds. Targets: under 1 ms per estimate
and under 20 ms per solver call in CPython.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnmem import parse
from nnmem.estimate import estimate
from nnmem.solvers import max_batch, max_seq_len, min_gpus, suggestions

GIB = 2**30
SCENARIOS: dict[str, dict[str, Any]] = {
    "BERT-base, parameter count": {
        "params_millions": 110,
        "hidden_size": 768,
        "num_layers": 12,
        "batch_size": 32,
        "seq_len": 128,
    },
    "Llama 3.1 8B, AMP training": {
        "model": "preset",
        "preset": "llama-3.1-8b",
        "precision": "amp_bf16",
        "seq_len": 4096,
    },
    "Llama 3.1 8B, QLoRA": {
        "model": "preset",
        "preset": "llama-3.1-8b",
        "finetune": "lora",
        "precision": "nf4_dq",
        "checkpointing": "full",
        "seq_len": 2048,
    },
    "Qwen3-30B-A3B (MoE), bf16": {
        "model": "preset",
        "preset": "qwen3-30b-a3b",
        "precision": "bf16",
        "seq_len": 2048,
    },
    "Llama 3.1 70B, inference": {
        "model": "preset",
        "preset": "llama-3.1-70b",
        "mode": "inference",
        "precision": "bf16",
        "seq_len": 8192,
    },
    "ResNet-50, training": {"model": "cnn", "cnn": "resnet50", "batch_size": 64},
}


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    print(f"{platform.python_implementation()} {platform.python_version()} on {sys.platform}")
    print(
        f"{'scenario':30} {'estimate':>9} {'max batch':>10} {'max seq':>9} "
        f"{'min GPUs':>9} {'suggest':>9}   (ms, median)"
    )
    for name, data in SCENARIOS.items():
        scenario = parse(data)
        budget = 24 * GIB
        row = [median_ms(lambda s=scenario: estimate(parse(s.to_dict())), 50)]
        row.append(median_ms(lambda s=scenario, b=budget: max_batch(s, b), 5))
        seq = "seq_len" not in scenario.inactive_fields()
        row.append(median_ms(lambda s=scenario, b=budget: max_seq_len(s, b), 5) if seq else 0.0)
        row.append(median_ms(lambda s=scenario, b=budget: min_gpus(s, b), 3))
        row.append(median_ms(lambda s=scenario, b=budget: suggestions(s, b), 3))
        print(f"{name:30} " + " ".join(f"{v:9.2f}" if v else f"{'-':>9}" for v in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
