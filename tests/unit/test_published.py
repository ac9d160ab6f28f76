"""Published measurements, each from the source its test names, that a scenario can express.

Each case states its source, what was measured, and the tolerance its setup allows:
``torch.cuda.max_memory_allocated`` figures compare with the tensor peak; ``nvidia-smi``
figures with the total, using the CUDA context the source itself measured.
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem import parse
from nnmem.estimate import estimate

GIB = 2**30
MIB = 2**20

STARCODER = {  # bigcode/octocoder: GPTBigCode, multi-query attention, 15.5B parameters
    "model_type": "gpt_bigcode",
    "n_embd": 6144,
    "n_layer": 40,
    "n_head": 48,
    "n_inner": 24576,
    "vocab_size": 49152,
    "n_positions": 8192,
    "multi_query": True,
    "architectures": ["GPTBigCodeForCausalLM"],
}
LLAMA_2_7B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}
BERT_LARGE_CLS = {
    "model_type": "bert",
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "architectures": ["BertForSequenceClassification"],
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}


def tensor_peak(config: dict[str, Any], **settings: Any) -> int:
    return estimate(parse({"model": "transformer", "config": config, **settings})).tensor_peak_bytes


@pytest.mark.parametrize(
    ("precision", "measured_gib", "tolerance"),
    [
        # The weights dominate a short generation; within 1% with bf16.
        ("bf16", 29.03, 0.01),
        # LLM.int8 keeps int8 weights with fp32 row scales, 16-bit outliers unmodeled.
        ("int8", 15.22, 0.05),
    ],
)
def test_octocoder_generation(precision: str, measured_gib: float, tolerance: float) -> None:
    """Hugging Face "Optimizing LLMs for speed and memory"
    (docs/source/en/llm_tutorial_optimization.md): octocoder, short prompt, 60 new
    tokens, max_memory_allocated on an A100."""
    got = tensor_peak(STARCODER, mode="inference", precision=precision, seq_len=64, new_tokens=60)
    assert got / GIB == pytest.approx(measured_gib, rel=tolerance)


def test_litgpt_llama_2_7b_generation() -> None:
    """LitGPT resource tables: Llama 2 7B bf16 inference, 13.52 GB (decimal) of
    max_memory_allocated on an A100 40GB; the weights alone are 13.48 GB."""
    got = tensor_peak(LLAMA_2_7B, mode="inference", precision="bf16", seq_len=64, new_tokens=50)
    assert got / 1e9 == pytest.approx(13.52, rel=0.01)


@pytest.mark.parametrize(("precision", "measured_gb"), [("nf4", 4.57), ("nf4_dq", 4.26)])
def test_litgpt_llama_2_7b_4bit_generation(precision: str, measured_gb: float) -> None:
    """LitGPT resource tables: bitsandbytes 4-bit inference, 4.57 GB (NF4) and 4.26 GB
    (NF4 with double quantization). The estimate counts the 4-bit linear layers, 16-bit
    embeddings and head, and one dequantized weight; bitsandbytes' other buffers are not modeled, so
    the tolerance is 7%."""
    got = tensor_peak(LLAMA_2_7B, mode="inference", precision=precision, seq_len=64, new_tokens=50)
    assert got / 1e9 == pytest.approx(measured_gb, rel=0.07)


def test_litgpt_llama_2_7b_lora() -> None:
    """LitGPT resource tables: LoRA r = 8 on q and v, micro-batch 1 on Alpaca (longest sample 1,304
    tokens), bf16, 21.30 GB. LitGPT's own model code, so 5%."""
    got = tensor_peak(
        LLAMA_2_7B,
        precision="bf16",
        seq_len=1304,
        finetune="lora",
        lora_rank=8,
        lora_targets="qv",
        lora_dropout=0.05,
    )
    assert got / 1e9 == pytest.approx(21.30, rel=0.05)


@pytest.mark.parametrize(
    ("settings", "measured_mib"),
    [
        ({"batch_size": 1, "grad_accum_steps": 4}, 8681),
        ({"batch_size": 1, "grad_accum_steps": 4, "checkpointing": "full"}, 6775),
        (
            {
                "batch_size": 1,
                "grad_accum_steps": 4,
                "checkpointing": "full",
                "precision": "amp_fp16",
            },
            7275,
        ),
        (
            {
                "batch_size": 1,
                "grad_accum_steps": 4,
                "checkpointing": "full",
                "precision": "amp_fp16",
                "optimizer": "adafactor",
            },
            4847,
        ),
        (
            {
                "batch_size": 1,
                "grad_accum_steps": 4,
                "checkpointing": "full",
                "precision": "amp_fp16",
                "optimizer": "adamw_8bit",
            },
            5363,
        ),
    ],
)
def test_hf_bert_large_on_a_v100(settings: dict[str, Any], measured_mib: int) -> None:
    """Hugging Face's single-GPU training guide (transformers v4.21): bert-large
    sequence classification, sequence 512, nvidia-smi "used" on a V100 16 GB, whose CUDA
    context the guide measured at 1,343 MiB. nvidia-smi also shows the allocator's cache,
    which our 5% default only approximates: 5%."""
    scenario = parse(
        {
            "model": "transformer",
            "config": BERT_LARGE_CLS,
            "seq_len": 512,
            "attention": "eager",
            "cuda_context_mib": 1343,
            "optimizer_impl": "for_loop",
            **settings,
        }
    )
    assert estimate(scenario).total_bytes / MIB == pytest.approx(measured_mib, rel=0.05)


def test_vllm_opt_13b_kv_cache_per_token() -> None:
    """vLLM paper (Kwon et al. 2023, arXiv 2309.06180 §3): OPT-13B needs 800 KB of
    KV cache per token: 2 × 5120 × 40 × 2 B = 819,200 B."""
    opt = {
        "model_type": "opt",
        "hidden_size": 5120,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "intermediate_size": 20480,
        "vocab_size": 50272,
    }
    result = estimate(
        parse(
            {
                "model": "transformer",
                "config": opt,
                "mode": "inference",
                "precision": "fp16",
                "seq_len": 1000,
            }
        )
    )
    assert result.phases[0].by_key()["kv_cache"] == 819_200 * 1000


@pytest.mark.parametrize(
    ("precision", "measured_gib"),
    [("q4_k_m", 4.58), ("q8_0", 7.95)],
)
def test_llama_cpp_file_sizes(precision: str, measured_gib: float) -> None:
    """llama.cpp tools/quantize/README.md: Llama-3.1-8B GGUF files, Q4_K_M
    4.58 GiB, Q8_0 7.95 GiB (the weights the runtime maps into memory)."""
    weights = estimate(
        parse(
            {
                "model": "preset",
                "preset": "llama-3.1-8b",
                "mode": "inference",
                "precision": precision,
            }
        )
    ).component_sizes()["weights"]
    assert weights / GIB == pytest.approx(measured_gib, abs=0.005)
