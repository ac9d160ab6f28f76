"""Where the loop calls optimizer.zero_grad() decides whether gradients live through the
forward pass (torch/optim/optimizer.py Optimizer.zero_grad: set_to_none=True frees them,
False fills them with zeros and keeps them).

Llama 3.2 1B in BF16 mixed precision: fp32 gradients, 4 · 1,235,814,400 = 4,943,257,600 B.
"""

from __future__ import annotations

from typing import Any

from nnmem import estimate, parse

GRADS = 4 * 1_235_814_400


def phases(**settings: Any) -> dict[str, int]:
    scenario = parse(
        {
            "model": "preset",
            "preset": "llama-3.2-1b",
            "precision": "amp_bf16",
            "batch_size": 4,
            "seq_len": 1024,
            **settings,
        }
    )
    return {p.name: p.bytes for p in estimate(scenario).phases}


def test_zero_grad_before_backward_keeps_the_gradients_through_the_forward_pass() -> None:
    first = phases()
    late = phases(zero_grad="before_backward")
    assert late["forward"] - first["forward"] == GRADS
    assert late["loss"] - first["loss"] == GRADS
    assert late["backward"] == first["backward"]  # freed just before backward
    assert late["optimizer_step"] == first["optimizer_step"]


def test_set_to_zero_never_frees_them() -> None:
    first = phases()
    never = phases(zero_grad="set_to_zero")
    assert never["forward"] - first["forward"] == GRADS
    assert never["backward"] - first["backward"] == GRADS


def test_zero_grad_does_not_apply_to_inference() -> None:
    scenario = parse({"model": "preset", "preset": "llama-3.2-1b", "mode": "inference"})
    assert "zero_grad" in scenario.inactive_fields()
