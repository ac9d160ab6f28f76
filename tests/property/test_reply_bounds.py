"""The worst cases for a reply's work: a budget far larger than the scenario, where a
search that steps one batch at a time used to build thousands of estimates. Each whole
reply (verdict, solvers, suggestions, plot) must build at most
``MAX_ESTIMATES_PER_REPLY``; benchmarks/fuzz.py prints the times."""

from __future__ import annotations

import json

import pytest

from fuzz_checks import MAX_ESTIMATES_PER_REPLY
from fuzz_entry import DEFAULT_FIELDS, compute, count_estimates

TINY_CNN = json.dumps(
    {
        "input": [1, 8, 8],
        "layers": [
            {"type": "conv2d", "out_channels": 1, "kernel": 1},
            {"type": "flatten"},
            {"type": "linear", "out_features": 1},
        ],
    }
)
WORST = {
    "tiny CNN on a T4": {"describe": "cnn", "cnn": TINY_CNN, "gpu": "t4", "batch_size": "1"},
    "1M parameters, 100% allocator overhead, RTX 4090": {
        "params_millions": "1",
        "hidden_size": "",
        "num_layers": "",
        "allocator_overhead_percent": "100",
        "gpu": "rtx-4090",
        "batch_size": "1",
        "seq_len": "1",
    },
    "1M parameters on a 512 GB Apple card": {
        "params_millions": "1",
        "gpu": "m3-ultra-512gb",
        "batch_size": "1",
        "seq_len": "1",
        "cuda_context_mib": "0",
        "allocator_overhead_percent": "0",
    },
    "bert-base at sequence 1 on a 12 GB card": {
        "describe": "fields",
        "preset": "bert-base-uncased",
        "gpu": "rtx-3060-12gb",
        "seq_len": "1",
        "batch_size": "1",
        "optimizer": "sgd",
    },
    "an inference that fits nowhere": {
        "describe": "fields",
        "preset": "llama-3.1-405b",
        "mode": "inference",
        "precision": "fp32",
        "gpu": "t4",
    },
}


@pytest.mark.parametrize("fields", WORST.values(), ids=WORST.keys())
def test_the_worst_replies_build_a_bounded_number_of_estimates(fields: dict[str, str]) -> None:
    request = json.dumps({"fields": {**DEFAULT_FIELDS, **fields}})
    with count_estimates() as built:
        reply = json.loads(compute(request))
    assert reply["ok"], reply["errors"]
    assert 1 <= built[0] <= MAX_ESTIMATES_PER_REPLY
