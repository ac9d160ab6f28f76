"""A mixture of experts under bitsandbytes and LoRA, as transformers 5.x builds it.

transformers 5.24 ``integrations/bitsandbytes.py`` ``replace_with_bnb_linear`` converts
``nn.Linear`` and ``Conv1D`` only; ``modeling_mixtral.py`` stores each layer's experts as
two fused 3-D ``nn.Parameter`` (``MixtralExperts.gate_up_proj``, ``down_proj``) and the
router as a bare parameter (``MixtralTopKRouter.weight``). peft 0.21's all-linear
(``tuners_utils._maybe_include_all_linear_layers``) matches ``nn.Linear`` and ``Conv1D``.

Mixtral 8x7B, by hand: attention 32 · (2 · 4096² + 2 · 1024 · 4096) = 1,342,177,280;
experts 32 · 8 · 3 · 14,336 · 4,096 = 45,097,156,608; router 32 · 8 · 4,096 = 1,048,576;
embeddings, head and norms 2 · 32,000 · 4,096 + 65 · 4,096 = 262,410,240.
"""

from __future__ import annotations

from fractions import Fraction

from nnmem import estimate, parse

ATTENTION = 1_342_177_280
EXPERTS_AND_ROUTER = 45_097_156_608 + 1_048_576
OTHER = 262_410_240


def weights(**settings: object) -> int:
    scenario = parse({"model": "preset", "preset": "mixtral-8x7b", "mode": "inference", **settings})
    return estimate(scenario).component_sizes()["weights"]


def test_counts_add_up() -> None:
    assert ATTENTION + EXPERTS_AND_ROUTER + OTHER == 46_702_792_704


def test_nf4_leaves_the_experts_in_16_bit() -> None:
    """The attention takes NF4's bits per weight (nnmem.formats); the rest stays 16-bit."""
    from nnmem.formats import Format, bits

    nf4 = bits(Format.NF4)
    expected = Fraction(ATTENTION) * nf4 / 8 + (OTHER + EXPERTS_AND_ROUTER) * 2
    assert abs(weights(precision="nf4") - expected) < 1


def test_int8_leaves_the_experts_in_16_bit() -> None:
    from nnmem.formats import Format, bits

    expected = Fraction(ATTENTION) * bits(Format.INT8) / 8 + (OTHER + EXPERTS_AND_ROUTER) * 2
    assert abs(weights(precision="int8") - expected) < 1


def test_gptq_and_gguf_still_quantize_the_experts() -> None:
    assert weights(precision="gptq") < weights(precision="nf4") / 3
    assert weights(precision="q4_k_m") < weights(precision="nf4") / 3


def test_lora_on_all_linear_adapts_no_expert() -> None:
    """Rank 16 on q, k, v, o only: 16 · ((4096 + 4096) + 2 · (4096 + 1024) + (4096 + 4096))
    = 425,984 per layer, 13,631,488 in 32 layers."""
    scenario = parse(
        {
            "model": "preset",
            "preset": "mixtral-8x7b",
            "precision": "nf4_dq",
            "finetune": "lora",
            "lora_targets": "all_linear",
            "seq_len": 512,
        }
    )
    notes = " ".join(estimate(scenario).notes)
    assert "13,631,488 trainable parameters" in notes
    assert "adapts the attention only" in notes
    assert "stay in 16-bit" in notes
