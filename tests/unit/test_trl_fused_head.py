"""TRL's fused LM head under the trl_sft stack (assembly._trl_fused_head_terms).

TRL 1.16's SFTTrainer patches the model with add_fused_lm_head (trl/trainer/
sft_trainer.py SFTTrainer.__init__) and its compute_loss takes the loss, the entropy and
the token accuracy from trl/kernels/chunked_logprob.py _ChunkedLogProbFunction, so no
(b, s, V) logits exist. Its forward allocates mm_buf = empty(min(N, 4096), 32768) in the
compute type, casts each token chunk and each vocabulary chunk of the weight to it, and
saves hidden, targets, log_z and the entropy; its backward allocates fp32 grad_hidden
(N, h) and grad_weight (V, h) and mm_buf again. N = b·(s − 1) = 254 here: add_fused_lm_head
scores hidden_states[:, :-1] against labels[:, 1:]. The figures below follow from those
shapes.
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem.estimate import estimate
from nnmem.models.transformer.assembly import _trl_fused_head_terms
from nnmem.models.transformer.context import context
from nnmem.result import Estimate
from nnmem.scenario import parse
from tests.unit.test_stack_defaults import SMALL_LLAMA as STACK_LLAMA

# The small Llama of benchmarks/stacks/common.py: b = 2, s = 128, h = 256, V = 4,096.
SMALL_LLAMA: dict[str, Any] = {**STACK_LLAMA, "packing": "off"}


def terms(result: Estimate, phase: str) -> dict[str, int]:
    """Bytes of each term of one phase, by label."""
    found: dict[str, int] = {}
    for p in result.phases:
        if p.name == phase:
            for t in p.terms:
                found[t.label] = found.get(t.label, 0) + t.bytes
    return found


def test_the_head_holds_no_logits_and_a_fixed_tile():
    result = estimate(parse({**SMALL_LLAMA, "stack": "trl_sft"}))  # amp_bf16, full
    loss = terms(result, "loss")
    # mm_buf: min(N, 4096) × 32768 × 2 B (bf16 under autocast) = 254 × 32768 × 2
    assert loss["TRL's tile buffer (mm_buf)"] == 254 * 32768 * 2 == 16_646_144
    # hidden[0:254].to(bf16): a token chunk, 254 × 256 × 2 B
    assert loss["a token chunk of the hidden states in the compute type"] == 130_048
    # weight[0:4096].to(bf16): the whole fp32 head, 4096 × 256 × 2 B
    assert loss["a vocabulary chunk of the head's weight in the compute type"] == 2_097_152
    # last_hidden_state, fp32, 2·128·256·4, and seven fp32 statistics per position, 7·254·4
    assert loss["backbone output and per-token statistics while the head runs"] == (262_144 + 7_112)
    # saved: the fp32 hidden copy 254·256·4 = 260,096, int64 targets 2,032, log_z and
    # entropy 2,032, the bool label mask 254
    assert loss["saved by TRL's fused LM head"] == 264_414
    assert not any(label.startswith(("logits", "log-softmax")) for label in loss)
    assert not any(label.startswith("logits") for label in terms(result, "forward"))


def test_backward_starts_with_fp32_gradients_and_the_tile_again():
    result = estimate(parse({**SMALL_LLAMA, "stack": "trl_sft"}))
    start = {}
    for p in result.phases:
        if p.name == "backward":
            start = {t.label: t.bytes for t in p.terms}
    assert start, "no backward phase"
    # fp32 grad_hidden 254·256·4 and the log-probabilities' gradient 254·4
    assert start["TRL's fused head backward"] == 260_096 + 1_016
    # fp32 grad_weight V·h·4, which stays fp32 for fp32 weights
    assert start["fp32 gradient of the head's weight (grad_weight)"] == 4096 * 256 * 4
    assert "grad_weight.to(weight.dtype)" not in start


def test_pure_bf16_returns_16bit_copies_and_casts_nothing():
    result = estimate(parse({**SMALL_LLAMA, "stack": "trl_sft", "precision": "bf16"}))
    loss = terms(result, "loss")
    assert loss["TRL's tile buffer (mm_buf)"] == 16_646_144
    assert "a token chunk of the hidden states in the compute type" not in loss
    assert "a vocabulary chunk of the head's weight in the compute type" not in loss
    # the saved hidden states are bf16: 254·256·2 + 2,032 + 2,032 + 254
    assert loss["saved by TRL's fused LM head"] == 130_048 + 4_318
    c = context(parse({**SMALL_LLAMA, "stack": "trl_sft", "precision": "bf16"}))
    _, _, _, grads = _trl_fused_head_terms(c, "s")
    by_label = {t.label: t.bytes for t in grads}
    # grad_hidden fp32 260,096 + grad of the log-probs 1,016 + its bf16 copy 130,048
    assert by_label["TRL's fused head backward"] == 260_096 + 1_016 + 130_048
    assert by_label["grad_weight.to(weight.dtype)"] == 4096 * 256 * 2


def test_lora_leaves_the_frozen_head_without_a_gradient():
    c_lora = {**SMALL_LLAMA, "stack": "trl_sft", "finetune": "lora"}
    _, _, _, grads = _trl_fused_head_terms(context(parse(c_lora)), "s")
    labels = {t.label for t in grads}
    assert "fp32 gradient of the head's weight (grad_weight)" not in labels
    assert "TRL's fused head backward" in labels


def test_tile_is_fixed_by_trl_not_by_the_vocabulary():
    # A Llama-3-sized head (V = 128,256, h = 4,096) on one layer, b = 1, s = 8,192, so
    # N = 8,191: the tile is 4,096 tokens × 32,768 columns × 2 B, and the weight chunk
    # 32,768 × 4,096 × 2.
    config = {
        **SMALL_LLAMA["config"],
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 1,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 8192,
    }
    s = {**SMALL_LLAMA, "config": config, "device": "cuda", "batch_size": 1, "seq_len": 8192}
    loss = terms(estimate(parse({**s, "stack": "trl_sft"})), "loss")
    assert loss["TRL's tile buffer (mm_buf)"] == 4096 * 32768 * 2 == 268_435_456
    assert loss["a vocabulary chunk of the head's weight in the compute type"] == 268_435_456
    assert loss["a token chunk of the hidden states in the compute type"] == 4096 * 4096 * 2
    # the same scenario under the HF Trainer holds the bf16 logits and their fp32 copy,
    # 8,192 × 128,256 × (2 + 4) B, which TRL's head never makes
    hf = terms(estimate(parse({**s, "stack": "hf_trainer", "precision": "amp_bf16"})), "loss")
    assert hf["logits and their fp32 copy"] == 8192 * 128256 * 6


def test_autocast_caches_no_head_copy_under_the_fused_head():
    # Under autocast the HF Trainer's lm_head call caches a bf16 copy of the head, V·h·2
    # = 2,097,152 B; TRL's head casts chunk by chunk outside the cache.
    same = {**SMALL_LLAMA, "precision": "amp_bf16", "checkpointing": "full"}
    trl = estimate(parse({**same, "stack": "trl_sft"}))
    hf = estimate(parse({**same, "stack": "hf_trainer"}))

    def copies(result: Estimate) -> int:
        forward = next(p for p in result.phases if p.name == "forward")
        return forward.by_key()["autocast_copies"]

    assert copies(hf) - copies(trl) == 4096 * 256 * 2


@pytest.mark.parametrize("loss", ["chunked", "cce", "fp32_logits"])
def test_another_loss_key_keeps_its_own_terms(loss: str):
    loss_terms = terms(estimate(parse({**SMALL_LLAMA, "stack": "trl_sft", "loss": loss})), "loss")
    assert "TRL's tile buffer (mm_buf)" not in loss_terms


def test_hf_trainer_keeps_the_standard_loss():
    loss = terms(estimate(parse({**SMALL_LLAMA, "stack": "hf_trainer"})), "loss")
    assert "TRL's tile buffer (mm_buf)" not in loss
    assert "log-softmax saved by the loss" in loss
