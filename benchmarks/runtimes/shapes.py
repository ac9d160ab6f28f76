"""The model shapes the llama.cpp measurements write as GGUF files (random weights).

Each shape is the published ``config.json`` of a real model, cut to the fields that
fix tensor shapes. ``layers`` may be set lower than the real depth to keep files small;
the per-layer figures are what the accuracy tests compare.
"""

from __future__ import annotations

SHAPES: dict[str, dict[str, object]] = {
    # meta-llama/Llama-3.2-1B config.json (tied embeddings).
    "llama-3.2-1b": {
        "arch": "llama",
        "hidden": 2048,
        "layers": 16,
        "heads": 32,
        "kv_heads": 8,
        "head_dim": 64,
        "ffn": 8192,
        "vocab": 128256,
        "tied": True,
        "qkv_bias": False,
        "ctx_train": 131072,
    },
    # Qwen/Qwen2.5-0.5B config.json (tied embeddings, q/k/v biases; 896 is not a
    # multiple of 256, so the k-quants fall back for the 896-wide rows).
    "qwen2.5-0.5b": {
        "arch": "qwen2",
        "hidden": 896,
        "layers": 24,
        "heads": 14,
        "kv_heads": 2,
        "head_dim": 64,
        "ffn": 4864,
        "vocab": 151936,
        "tied": True,
        "qkv_bias": True,
        "ctx_train": 32768,
    },
    # google/gemma-3-1b-it config.json: sliding window 512, every 6th layer global,
    # head_dim 256, q/k norms, post-norms; tied embeddings.
    "gemma-3-1b": {
        "arch": "gemma3",
        "hidden": 1152,
        "layers": 26,
        "heads": 4,
        "kv_heads": 1,
        "head_dim": 256,
        "ffn": 6912,
        "vocab": 262144,
        "tied": True,
        "qkv_bias": False,
        "ctx_train": 32768,
        "sliding_window": 512,
    },
    # Qwen/Qwen3-30B-A3B config.json, cut to its first 2 of 48 layers (128 experts of
    # 768, 8 used, untied head, q/k norms): the MoE tensors and MXFP4_MOE.
    "qwen3-30b-a3b-2l": {
        "arch": "qwen3moe",
        "catalog": "qwen3-30b-a3b",
        "hidden": 2048,
        "layers": 2,
        "heads": 32,
        "kv_heads": 4,
        "head_dim": 128,
        "ffn": 6144,
        "vocab": 151936,
        "tied": False,
        "qkv_bias": False,
        "ctx_train": 40960,
        "experts": 128,
        "experts_used": 8,
        "expert_ffn": 768,
    },
}
