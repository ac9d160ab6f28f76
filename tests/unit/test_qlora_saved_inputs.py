"""A bitsandbytes 4-bit or 8-bit base under LoRA keeps the inputs of its linear layers.

bitsandbytes ``bitsandbytes/autograd/_functions.py`` ``MatMul4Bit.forward`` sets
``ctx.tensors = (A, B)``, and ``MatMul8bitLt.forward`` ``ctx.tensors = (CAt, subA, A)``,
whenever A or B needs a gradient. Under LoRA the hidden states carry the adapters'
gradients, so each quantized projection keeps its input A, which a frozen
16-bit ``nn.Linear`` would not (its backward needs only the weight). Llama's
projections read three tensors: the normed hidden (q, k and v; gate and up) and the
gated product (down); o_proj reads the SDPA output, which SDPA saves anyway.

By hand, bf16 activations, batch 1 × 512 tokens, 32 layers:
Llama 2 7B: 32 × 2 B × 512 × (2 × 4,096 + 11,008) = 629,145,600 B;
Mixtral 8x7B, whose experts stay 16-bit: 32 × 2 B × 512 × 4,096 = 134,217,728 B.
"""

from __future__ import annotations

import pytest

from nnmem import estimate, parse


def saved(preset: str, precision: str) -> int:
    e = estimate(
        parse(
            {
                "model": "preset",
                "preset": preset,
                "precision": precision,
                "finetune": "lora",
                "lora_targets": "qv",
                "batch_size": 1,
                "seq_len": 512,
            }
        )
    )
    loss = next(p for p in e.phases if p.name == "loss")
    return sum(t.bytes for t in loss.terms if t.key == "activations")


@pytest.mark.parametrize(
    ("preset", "extra"), [("llama-2-7b", 629_145_600), ("mixtral-8x7b", 134_217_728)]
)
@pytest.mark.parametrize("precision", ["nf4", "nf4_dq", "int8"])
def test_quantized_layers_keep_their_inputs(preset: str, extra: int, precision: str) -> None:
    assert saved(preset, precision) - saved(preset, "bf16") == extra
