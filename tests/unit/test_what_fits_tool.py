"""The "what fits my GPU" tool page: its ranking against the calculator's own estimate."""

from __future__ import annotations

import json
from typing import Any

from nnmem import catalog, estimate, parse
from nnmem.runtimes import fit
from nnmem.web import handle
from nnmem.web.tools import defaults


def ask(**changes: str) -> dict[str, Any]:
    fields = {**defaults("what-fits"), **changes}
    reply: dict[str, Any] = json.loads(handle(json.dumps({"page": "what-fits", "fields": fields})))
    return reply


def test_first_model_is_the_largest_that_fits_on_the_gpu() -> None:
    reply = ask(gpu="rtx-4090", runtime="llama_cpp", ram_gb="0", context="8192", users="1")
    assert reply["ok"] is True
    card = catalog.gpus()["rtx-4090"].usable_bytes
    ranked = fit.what_fits([card], "llama_cpp", 8192, 1, 0)
    on_gpu = [f for f in ranked if f.fits == "gpu"]
    assert reply["values"]["best_model"] == max(on_gpu, key=lambda f: f.params).model_id
    assert reply["values"]["count"] == str(len(on_gpu))
    # every row's GPU memory is within the card
    assert all(f.gpu_bytes <= card for f in on_gpu)


def test_ranking_agrees_with_the_calculator_for_the_best_model() -> None:
    # The calculator, with llama.cpp at the ranking's format and all layers on the GPU,
    # fits the same card.
    reply = ask(gpu="rtx-4090", runtime="llama_cpp", ram_gb="0", context="8192", users="1")
    best, fmt = reply["values"]["best_model"], reply["values"]["best_format"]
    s = parse({"model": "preset", "preset": best, "mode": "inference", "runtime": "llama_cpp",
               "gguf_type": fmt.lower(), "seq_len": 8192})  # fmt: skip
    assert estimate(s).total_bytes <= catalog.gpus()["rtx-4090"].usable_bytes


def test_vllm_needs_the_users_concurrency() -> None:
    one = ask(gpu="h100-sxm-80gb", runtime="vllm", context="32768", users="1")
    many = ask(gpu="h100-sxm-80gb", runtime="vllm", context="32768", users="64")
    assert int(many["values"]["count"]) < int(one["values"]["count"])
    assert "vllm serve" in one["html"]["result"]


def test_bad_values_name_their_field() -> None:
    reply = ask(users="0", context="x")
    assert reply["ok"] is False
    assert {e["field"] for e in reply["errors"]} == {"users", "context"}
