"""Time the calculator's Compare: ``nnmem.web.handle`` on a ``compare`` request.

    .venv/bin/python benchmarks/compare_speed.py

Prints the median of repeated runs, in milliseconds: two pinned scenarios, the two ready
comparisons built from Llama 3.1 8B, and three scenarios read back from a link's
fragment. Each column is one estimate and one verdict, without the solvers.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from page_speed import median_ms  # the same timing as the calculator's benchmark

from nnmem.web import handle

LLAMA = {
    "describe": "fields",
    "preset": "llama-3.1-8b",
    "precision": "amp_bf16",
    "batch_size": "1",
    "seq_len": "2048",
    "gpu": "rtx-4090",
}
REQUESTS: dict[str, dict[str, Any]] = {
    "two pinned (example, batch 8 and 16)": {
        "scenarios": [{"batch_size": "8"}, {"batch_size": "16", "gpu": "rtx-4090"}]
    },
    "ready: full vs LoRA vs QLoRA, 8B": {"scenarios": [LLAMA], "ready": "finetune"},
    "ready: one 4090 vs two 3090s, 8B": {"scenarios": [LLAMA], "ready": "gpus"},
}


def ask(fields: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads(handle(json.dumps({"page": "compare", "fields": fields})))
    return reply


def main() -> int:
    print(f"{platform.python_implementation()} {platform.python_version()} on {sys.platform}")
    print(f"{'request':40} {'compute':>9}   (ms, median of 21)")
    requests = dict(REQUESTS)
    requests["three from a link's fragment"] = {
        "link": ask({"scenarios": [LLAMA], "ready": "finetune"})["link"]
    }
    for name, fields in requests.items():
        print(f"{name:40} {median_ms(json.dumps({'page': 'compare', 'fields': fields}), 21):9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
