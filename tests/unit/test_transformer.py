"""Transformer training and inference memory, against the tensor-by-tensor inventory.

Each expected value is written from the rows of ``benchmarks/accuracy/inventory.md``
(live-tensor traces of PyTorch 2.13 and transformers 5.24, which list every tensor a
step saves) or from the papers and framework code each test names; the arithmetic is in
each docstring.
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem import parse
from nnmem.estimate import estimate
from nnmem.models.transformer import activations, context
from nnmem.result import Estimate

GPT2: dict[str, Any] = {
    "model_type": "gpt2",
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "vocab_size": 50257,
    "n_positions": 1024,
    "architectures": ["GPT2LMHeadModel"],
    "activation_function": "gelu_new",
}
LLAMA_1B: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}
LLAMA_2_7B: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}
LLAMA_3_8B: dict[str, Any] = {
    **LLAMA_2_7B,
    "intermediate_size": 14336,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}


def run(config: dict[str, Any], **settings: Any) -> Estimate:
    return estimate(parse({"model": "transformer", "config": config, **settings}))


def formulas(config: dict[str, Any], **settings: Any) -> list[str]:
    s = parse({"model": "transformer", "config": config, **settings})
    return [t.formula for t in activations(context(s)).terms]


def test_gpt2_fp32_eager_on_the_cpu_matches_the_measurement() -> None:
    """inventory §1: per layer 12·b·a·s² + 40·b·s·h + 20·b·s·f + 16·b·s, outside
    12·b·s·h + 4·b·s·V + 16·b·s + 8·s + 4. At b = 4, s = 512: 4,507,873,284 B measured;
    the estimate leaves out the loss's 4-byte scalar."""
    result = run(GPT2, batch_size=4, seq_len=512, attention="eager", device="cpu")
    assert result.saved_activation_bytes == 4_507_873_280


def test_gpt2_on_cuda_keeps_one_byte_dropout_masks() -> None:
    """CUDA's fused native_dropout keeps a bool mask where the CPU keeps fp32 noise: the
    attention mask drops from 4 to 1 byte (12 → 9 per b·a·s²) and each of the two
    per-layer masks and the embedding mask from 4 to 1 byte per b·s·h."""
    assert formulas(GPT2, batch_size=4, seq_len=512, attention="eager") == [
        "L × (9·b·a·s² + 12·b·a·s·d + 18·b·s·h + 4·b·s·q + 20·b·s·f + 16·b·s) B",
        "(9·b·s·h + 8·b·s + 8·s) B",
    ]
    cpu = formulas(GPT2, batch_size=4, seq_len=512, attention="eager", device="cpu")
    assert cpu[0] == "L × (12·b·a·s² + 12·b·a·s·d + 24·b·s·h + 4·b·s·q + 20·b·s·f + 16·b·s) B"


def test_gpt2_autocast_copies() -> None:
    """inventory §3: autocast keeps 8·L·h² + 4·L·h·f + 2·h·V bytes of 16-bit weight
    copies: 8·12·768² + 4·12·768·3072 + 2·768·50257 = 247,064,064."""
    result = run(GPT2, batch_size=4, seq_len=512, precision="amp_bf16")
    assert result.component_sizes()["autocast_copies"] == 247_064_064


def test_llama_bf16_sdpa_layer() -> None:
    """inventory §13: q, the output, k and v, an fp32 log-sum-exp; two RMSNorms each
    keep the fp32 upcast (4), the rsqrt (4 per token) and the normed output (2); the
    q/k/v and gate/up inputs (2 each); SiLU's input, its output and up's output, and
    the product (2 each)."""
    assert formulas(LLAMA_1B, batch_size=1, seq_len=2048, precision="bf16") == [
        "L × (4·b·a·s·d + 4·b·a_kv·s·d + 4·b·a·s + 16·b·s·h + 8·b·s·f + 8·b·s) B",
        "(8·b·s·h + 4·b·s + 4·s·d) B",
    ]


def test_llama_eager_materializes_scores() -> None:
    """inventory §15: 6·b·a·s² (fp32 softmax 4 + bf16 probabilities 2); q (2) and k, v
    repeated to every head by repeat_kv (2 × 2) give 6·b·a·s·d; the merged heads for
    o_proj 2·b·s·(a·d). Together the inventory's 8·b·a·s·d."""
    rows = formulas(LLAMA_1B, batch_size=1, seq_len=2048, precision="bf16", attention="eager")
    assert rows[0] == "L × (6·b·a·s² + 6·b·a·s·d + 16·b·s·h + 2·b·s·q + 8·b·s·f + 8·b·s) B"


def test_llama_amp_saves_a_cast_per_projection() -> None:
    """inventory §16: under autocast q, k and v each cast their input (3 × 2·b·s·h), gate
    and up too (2 × 2·b·s·h), and the norms keep fp32 outputs: 26·b·s·h."""
    assert formulas(LLAMA_1B, batch_size=1, seq_len=2048, precision="amp_bf16")[0] == (
        "L × (4·b·a·s·d + 4·b·a_kv·s·d + 4·b·a·s + 26·b·s·h + 8·b·s·f + 8·b·s) B"
    )


def test_checkpointing_keeps_only_layer_inputs() -> None:
    """inventory §17: each checkpointed layer keeps its bf16 input, 2·b·s·h."""
    assert (
        formulas(LLAMA_1B, batch_size=1, seq_len=2048, precision="bf16", checkpointing="full")[0]
        == "L × (2·b·s·h) B"
    )


def test_lora_on_attention_saves_fp32_adapter_inputs() -> None:
    """inventory §28 (r on q, k, v, o; lora_dropout 0.05; CPU): the frozen base saves no
    projection inputs and no normed outputs; each adapter keeps an fp32 dropout mask and
    its fp32 input (8 per b·s·in) and lora_B's input (4·b·s·r)."""
    rows = formulas(
        LLAMA_1B,
        batch_size=1,
        seq_len=2048,
        precision="bf16",
        finetune="lora",
        lora_targets="attention",
        lora_dropout=0.05,
        device="cpu",
    )
    assert rows[0] == (
        "L × (4·b·a·s·d + 4·b·a_kv·s·d + 4·b·a·s + 32·b·s·h + 8·b·s·q + 6·b·s·f + 16·b·s·r"
        " + 8·b·s) B"
    )


def test_lora_trains_only_the_adapters() -> None:
    """LoRA r = 8 on q and v of Llama-2-7B: 32 × 2 × 8 × (4096 + 4096) = 4,194,304
    trainable parameters (LitGPT's resource table), in fp32: 16 MiB of gradients and
    32 MiB of Adam state; the bf16 base stays 2 bytes per parameter."""
    result = run(
        LLAMA_2_7B,
        batch_size=1,
        seq_len=1304,
        precision="bf16",
        finetune="lora",
        lora_rank=8,
        lora_targets="qv",
    )
    sizes = result.component_sizes()
    assert sizes["gradients"] == 4_194_304 * 4
    assert sizes["optimizer_state"] == 4_194_304 * 8
    assert sizes["weights"] == 6_738_415_616 * 2 + 4_194_304 * 4


def test_loss_of_a_128k_vocabulary() -> None:
    """transformers upcasts causal-LM logits to fp32 and cross_entropy saves an fp32
    log-softmax: 4·b·s·V = 2048 × 128,256 × 4 = 1,050,673,152 B; backward starts with two
    fp32 logits gradients of the same size (inventory §13, backward peak 12·b·s·V)."""
    result = run(LLAMA_1B, batch_size=1, seq_len=2048, precision="bf16")
    loss = next(p for p in result.phases if p.name == "loss").by_key()
    backward = next(p for p in result.phases if p.name == "backward").by_key()
    # logits (bf16, 2) + their fp32 copy (4) + the saved log-softmax (4), labels 8·b·s
    assert loss["logits"] == 2048 * 128256 * 10 + 2048 * 8
    assert backward["temporaries"] == 2 * 2048 * 128256 * 4


def test_kv_cache_is_gqa_aware() -> None:
    """transformers DynamicCache (cache_utils.py): a key and a value of a_kv · d per token
    and layer, 2 · L · a_kv · d · bytes per token. Llama-3-8B: 2·32·8·128·2 =
    128 KiB per token; Llama-2-7B (every head its own K and V): 512 KiB."""
    for config, per_token in ((LLAMA_3_8B, 131_072), (LLAMA_2_7B, 524_288)):
        result = run(config, mode="inference", precision="bf16", seq_len=8192)
        prefill = next(p for p in result.phases if p.name == "prefill").by_key()
        assert prefill["kv_cache"] == per_token * 8192


def test_fp8_kv_cache_halves_it() -> None:
    result = run(LLAMA_3_8B, mode="inference", precision="bf16", seq_len=8192, kv_cache_dtype="fp8")
    assert result.phases[0].by_key()["kv_cache"] == 65_536 * 8192


@pytest.mark.parametrize(
    ("precision", "weights"),
    [
        # Llama-3-8B (config.json): linear layers 6,979,321,856 parameters; embedding
        # and untied head 1,050,673,152 (+ 266,240 norm weights) stay in 16-bit.
        ("gptq", 6_979_321_856 * 133 // 256 + 1_050_939_392 * 2),  # 4 + 20/128 bits
        ("nf4", 6_979_321_856 * 9 // 16 + 1_050_939_392 * 2),  # 4.5 bits
        ("int8", 6_979_321_856 + 1_050_939_392 * 2),  # 8 bits
        # GGUF: llama.cpp's whole-file average for Llama-3.1-8B, 4.8944 bits per weight
        ("q4_k_m", 8_030_261_248 * 48944 // 80000 + 1),
    ],
)
def test_quantized_weights(precision: str, weights: int) -> None:
    result = run(LLAMA_3_8B, mode="inference", precision=precision, seq_len=16)
    assert result.component_sizes()["weights"] == weights


def test_gptq_group_size_sets_the_scale_overhead() -> None:
    """GPTQ at group 32: 4 + 20/32 = 4.625 bits per linear weight."""
    result = run(LLAMA_3_8B, mode="inference", precision="gptq", group_size=32, seq_len=16)
    assert result.component_sizes()["weights"] == 6_979_321_856 * 37 // 64 + 1_050_939_392 * 2


def test_inference_peak_is_the_mlp_of_the_last_layer() -> None:
    """inventory §19 (real cases): W + KV + 8·b·s·h + 6·b·s·f + 4·s·d + 8·b·s at the MLP:
    Llama-2-7B, b = 1, s = 4096: 406,913,024 B of working set (406,913,032 measured, the
    difference being the token ids' position buffer)."""
    result = run(LLAMA_2_7B, mode="inference", precision="bf16", seq_len=4096)
    prefill = next(p for p in result.phases if p.name == "prefill").by_key()
    assert prefill["activations"] == 8 * 4096 * 4096 + 6 * 4096 * 11008 + 4 * 4096 * 128 + 8 * 4096


def test_sliding_window_cache_is_trimmed_after_prefill() -> None:
    """inventory §24: Mistral keeps the whole prompt after prefill and only the window
    (4,096 tokens) from the first decode step."""
    mistral = {**LLAMA_3_8B, "model_type": "mistral", "vocab_size": 32000, "sliding_window": 4096}
    result = run(mistral, mode="inference", precision="bf16", seq_len=8192, new_tokens=1)
    prefill, decode = (p.by_key() for p in result.phases)
    assert prefill["kv_cache"] == 131_072 * 8192
    assert decode["kv_cache"] == 131_072 * 4096


def test_window_mask_appears_when_the_prompt_reaches_the_window() -> None:
    """transformers builds Mistral's s×s bool window mask once the keys reach the window
    (masking_utils.py: the mask is skipped only while kv_length < window), so a 4,096-token
    prompt holds it and a 4,095-token one does not. At the MLP moment (inventory §19, §24):
    8·b·s·h + 6·b·s·f + 4·s·d + 8·b·s, plus s² bytes of mask at s = W. Measured for
    Mistral-7B at s = 4,096: 505,479,432 B; this gives 505,446,400 (the rest is 8·L + 8·s
    + 8 bytes of small buffers)."""
    mistral = {**LLAMA_3_8B, "model_type": "mistral", "vocab_size": 32000, "sliding_window": 4096}

    def working(s: int) -> int:
        result = run(mistral, mode="inference", precision="bf16", seq_len=s, new_tokens=1)
        return next(p for p in result.phases if p.name == "prefill").by_key()["activations"]

    def mlp(s: int) -> int:
        return 8 * s * 4096 + 6 * s * 14336 + 4 * s * 128 + 8 * s

    assert working(4095) == mlp(4095)
    assert working(4096) == mlp(4096) + 4096 * 4096


def test_tensor_parallel_splits_weights_and_heads() -> None:
    one = run(LLAMA_3_8B, mode="inference", precision="bf16", seq_len=1024)
    two = run(
        LLAMA_3_8B, mode="inference", precision="bf16", seq_len=1024, tensor_parallel=2, num_gpus=2
    )
    assert two.component_sizes()["weights"] == one.component_sizes()["weights"] // 2
    assert two.phases[0].by_key()["kv_cache"] == one.phases[0].by_key()["kv_cache"] // 2


def test_zero3_shards_model_states_per_gpu() -> None:
    """ZeRO-3 (Rajbhandari et al. §5): weights, gradients and optimizer state ÷ N, plus
    the gathered weights and gradients of one layer (DeepSpeed's estimator)."""
    one = run(LLAMA_3_8B, precision="bf16", seq_len=1024).component_sizes()
    eight = run(
        LLAMA_3_8B, precision="bf16", seq_len=1024, num_gpus=8, sharding="zero3"
    ).component_sizes()
    layer = 4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336 + 2 * 4096
    assert eight["optimizer_state"] == one["optimizer_state"] // 8
    assert eight["gradients"] == one["gradients"] // 8
    assert eight["weights"] == one["weights"] // 8 + layer * 2 * 2
