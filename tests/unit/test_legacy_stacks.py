"""fsdp_qlora's and torchtune's allocations: transformers <= 4.45's fp32 logits, FSDP's
root unit, and LoRA adapters as torchtune's configs and fsdp_qlora set them. Values by
hand from the code each term cites."""

import pytest

from nnmem import estimate, parse
from nnmem.errors import NnmemError

# Llama 2 7B: vocab 32,000, h 4,096, 32 layers, MLP 11,008.
V, H, F, LAYERS = 32_000, 4_096, 11_008, 32
SEQ = 2_048
LORA_7B = {
    "mode": "training",
    "model": "preset",
    "preset": "llama-2-7b",
    "precision": "bf16",
    "batch_size": 1,
    "seq_len": SEQ,
    "finetune": "lora",
}


def _term(result, phase, label):
    (p,) = [p for p in result.phases if p.name == phase]
    return sum(t.bytes for t in p.terms if t.label == label)


def _phase(result, phase):
    return next(p.bytes for p in result.phases if p.name == phase)


def test_fp32_logits_are_held_with_the_log_softmax():
    # modeling_llama.py 4.37.2 line 1202: logits.float(), b·s·V fp32 values held by the
    # output; the log-softmax saves as many; nll_loss saves the int64 labels.
    r = estimate(parse({**LORA_7B, "loss": "fp32_logits"}))
    held = SEQ * V * 4
    assert held == 262_144_000
    saved = "fp32 logits and the log-softmax saved by the loss"
    assert _term(r, "backward", saved) == 2 * held + SEQ * 8 == 524_304_384
    # line 1207: the shifted contiguous copy lives at the loss.
    assert _term(r, "loss", "shifted fp32 copy of the logits") == held


def test_fp32_logits_hold_one_fp32_logits_more_than_transformers_5():
    # Backward starts with the saved log-softmax and two fp32 gradients in both; the
    # older model's returned fp32 logits are the difference.
    old = estimate(parse({**LORA_7B, "loss": "fp32_logits"}))
    new = estimate(parse(LORA_7B))
    assert _phase(old, "backward") - _phase(new, "backward") == SEQ * V * 4


def test_fsdp_root_unit_stays_gathered_through_forward_and_backward():
    # _post_forward_reshard: the root (embeddings, final norm, head) is not resharded.
    root = (2 * V * H + H) * 2
    assert root == 524_296_192
    r = estimate(parse({**LORA_7B, "num_gpus": 2, "sharding": "zero3"}))
    label = "unsharded root unit (embeddings, final norm, head)"
    for phase in ("forward", "loss", "backward"):
        assert _term(r, phase, label) == root
    assert _term(r, "optimizer_step", label) == 0


def test_no_root_unit_without_sharding_or_on_one_gpu():
    # NO_SHARD gathers nothing; FSDP over one GPU falls back to NO_SHARD.
    label = "unsharded root unit (embeddings, final norm, head)"
    whole = estimate(parse({**LORA_7B, "num_gpus": 2}))
    one = estimate(parse({**LORA_7B, "sharding": "zero3"}))
    assert _term(whole, "forward", label) == 0
    assert _term(one, "forward", label) == 0


def _lora_note(result):
    return next(n for n in result.notes if n.startswith("LoRA rank"))


def test_torchtune_targets_skip_k():
    # 3B_lora_single_device.yaml: q, v, output_proj and the MLP, rank 64. Llama 3.2 3B:
    # h 3,072, kv 1,024, MLP 8,192, 28 layers; r·(in + out) per adapter.
    per_layer = (3072 + 3072) + (3072 + 1024) + (3072 + 3072) + 3 * (3072 + 8192)
    n = 64 * per_layer * 28
    assert n == 89_915_392
    r = estimate(
        parse({**LORA_7B, "preset": "llama-3.2-3b", "lora_rank": 64, "lora_targets": "qvo_mlp"})
    )
    assert f"{n:,} trainable parameters" in _lora_note(r)


def test_fsdp_qlora_targets_skip_o():
    # train.py lora_target_modules "all": k, q, v, up, down, gate.
    n = 64 * (3 * (H + H) + 3 * (H + F)) * LAYERS
    assert n == 143_130_624
    r = estimate(parse({**LORA_7B, "lora_rank": 64, "lora_targets": "qkv_mlp"}))
    assert f"{n:,} trainable parameters" in _lora_note(r)


def test_model_dtype_adapters_halve_gradients_and_states():
    # rank 16 on q and v: 16·(4096 + 4096)·2 values a layer.
    n = 16 * (H + H) * 2 * LAYERS
    fp32 = estimate(parse(LORA_7B)).component_sizes()
    bf16 = estimate(parse({**LORA_7B, "lora_dtype": "model"})).component_sizes()
    assert fp32["gradients"] == 4 * n
    assert bf16["gradients"] == 2 * n
    assert fp32["optimizer_state"] == 2 * 4 * n
    assert bf16["optimizer_state"] == 2 * 2 * n


def test_model_dtype_is_fp32_under_amp():
    # An AMP model is built in fp32, so are its adapters.
    amp = {**LORA_7B, "precision": "amp_bf16"}
    a = estimate(parse({**amp, "lora_dtype": "model"})).component_sizes()
    b = estimate(parse(amp)).component_sizes()
    assert a["gradients"] == b["gradients"] == 4 * 16 * (H + H) * 2 * LAYERS


@pytest.mark.parametrize(
    ("key", "value", "label"),
    [
        ("lora_dtype", "fp16", "LoRA adapter type"),
        ("loss", "fp33", "Loss"),
        ("lora_targets", "qko", "LoRA targets"),
    ],
)
def test_bad_values_name_the_field(key, value, label):
    with pytest.raises(NnmemError, match=label):
        parse({**LORA_7B, key: value})


def test_model_dtype_adapters_save_the_shared_input_uncast():
    # peft casts each adapter's input to fp32 (two b·s·h fp32 copies for q and v); in the
    # model's type lora_a saves the normed hidden states q and v share, once, in bf16.
    # lora_B's input is b·s·r in the adapter's type. Per layer, rank 16:
    fp32 = 2 * SEQ * H * 4 + 2 * SEQ * 16 * 4
    bf16 = SEQ * H * 2 + 2 * SEQ * 16 * 2
    a = estimate(parse(LORA_7B)).saved_activation_bytes
    b = estimate(parse({**LORA_7B, "lora_dtype": "model"})).saved_activation_bytes
    assert a - b == LAYERS * (fp32 - bf16) == 1_614_807_040


def test_adapter_type_is_hidden_where_the_model_is_fp32():
    assert "lora_dtype" in parse({**LORA_7B, "precision": "amp_bf16"}).inactive_fields()
    assert "lora_dtype" not in parse(LORA_7B).inactive_fields()


def test_fp32_logits_is_the_standard_loss_for_a_masked_lm():
    # transformers 4.37 BertForMaskedLM takes CrossEntropyLoss of its prediction scores
    # with no .float(): the option changes nothing there, and says so.
    bert = {
        "mode": "training",
        "model": "preset",
        "preset": "bert-base-uncased",
        "precision": "amp_bf16",
        "batch_size": 8,
        "seq_len": 512,
    }
    old = estimate(parse({**bert, "loss": "fp32_logits"}))
    assert old.total_bytes == estimate(parse(bert)).total_bytes
    assert any("only a causal LM's logits" in n for n in old.notes)
