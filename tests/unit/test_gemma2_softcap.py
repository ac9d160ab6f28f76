"""Gemma 2's logit softcapping, as transformers 5.24 runs it.

``modeling_gemma2.py``: ``eager_attention_forward`` computes scores / softcap, tanh,
× softcap, and ``Gemma2ForCausalLM.forward`` does the same to the logits with
``final_logit_softcapping``; ``Gemma2PreTrainedModel._supports_sdpa`` is False, so the model
runs eager attention. ``tanh`` saves its output for backward (derivatives.yaml). A
saved-tensor trace of a two-layer Gemma2ForCausalLM (hidden 64, 2 heads of 32, 1 KV head,
vocabulary 1,000, batch 2 × 16 tokens, eager) with and without softcapping differs by
exactly one (2, 16, 1000) tensor and two (2, 2, 16, 16) tensors, in the model's dtype
(fp32 and bf16 alike): that is what these tests hold the estimate to.
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem import estimate, parse

TINY = {
    "model_type": "gemma2",
    "vocab_size": 1000,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_position_embeddings": 64,
    "sliding_window": 4096,
    "query_pre_attn_scalar": 32,
    "hidden_activation": "gelu_pytorch_tanh",
    "architectures": ["Gemma2ForCausalLM"],
    "tie_word_embeddings": True,
    "attention_dropout": 0.0,
}
CAPS = {"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}


def run(config: dict[str, Any], precision: str) -> Any:
    return estimate(
        parse(
            {
                "model": "transformer",
                "config": config,
                "precision": precision,
                "batch_size": 2,
                "seq_len": 16,
                "attention": "eager",
            }
        )
    )


def sizes(e: Any) -> dict[str, int]:
    return e.component_sizes()


@pytest.mark.parametrize(("precision", "width"), [("fp32", 4), ("bf16", 2)])
def test_softcapping_saves_one_tanh_output_per_layer_and_one_for_the_logits(
    precision: str, width: int
) -> None:
    capped = run({**TINY, **CAPS}, precision)
    plain = run(TINY, precision)
    scores = 2 * 2 * 2 * 16 * 16 * width  # L · b · a · s · s
    logits = 2 * 16 * 1000 * width  # b · s · V
    # everything saved for backward: the scores' tanh in each layer and the logits' tanh
    assert capped.saved_activation_bytes - plain.saved_activation_bytes == scores + logits
    assert sizes(capped)["activations"] - sizes(plain)["activations"] == scores
    forward = {p.name: p for p in capped.phases}["forward"].by_key()
    forward_plain = {p.name: p for p in plain.phases}["forward"].by_key()
    assert forward["logits"] - forward_plain["logits"] == logits
    assert any("softcapping" in n.lower() for n in capped.notes)


def test_gemma_2_runs_eager_attention_even_when_sdpa_is_asked() -> None:
    """transformers refuses SDPA for Gemma 2: the s × s scores are stored regardless."""
    sdpa = estimate(
        parse({"model": "preset", "preset": "gemma-2-2b", "precision": "amp_bf16", "seq_len": 2048})
    )
    eager = estimate(
        parse(
            {
                "model": "preset",
                "preset": "gemma-2-2b",
                "precision": "amp_bf16",
                "seq_len": 2048,
                "attention": "eager",
            }
        )
    )
    assert sdpa.total_bytes == eager.total_bytes
    assert any("refuses SDPA" in n for n in sdpa.notes)
