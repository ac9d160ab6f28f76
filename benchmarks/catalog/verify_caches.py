"""Compare nnmem's inference cache with what transformers keeps, byte for byte.

Builds small DeepSeek-V3 (latent attention), Qwen3-Next (gated delta net), Llama 4
(chunked attention) and gpt-oss (sliding window) models in bf16 on the CPU, runs a prompt
of 8 and of 40 tokens and one decode step with the default DynamicCache, and sums the
storages the cache keeps alive; nnmem's ``kv_cache_term`` for the same config and tokens
must equal it. Needs torch and transformers; from the repository root:

    python benchmarks/catalog/verify_caches.py

Last run: torch 2.13.0 (CPU), transformers 5.25.0; all 8 cases match.
"""

from __future__ import annotations

import sys

import torch
import transformers

from nnmem.models.architecture import from_config
from nnmem.models.transformer import kv_cache_term
from nnmem.scenario import parse

SMALL = {
    "deepseek_v3": {
        "hidden_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "intermediate_size": 512,
        "moe_intermediate_size": 64,
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "num_experts_per_tok": 2,
        "first_k_dense_replace": 1,
        "q_lora_rank": 96,
        "kv_lora_rank": 64,
        "qk_nope_head_dim": 32,
        "qk_rope_head_dim": 16,
        "v_head_dim": 32,
        "vocab_size": 1000,
        "n_group": 1,
        "topk_group": 1,
    },
    "qwen3_next": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "intermediate_size": 512,
        "moe_intermediate_size": 64,
        "shared_expert_intermediate_size": 64,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 32,
        "linear_value_head_dim": 32,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "vocab_size": 1000,
    },
    "llama4_text": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "intermediate_size": 128,
        "intermediate_size_mlp": 512,
        "num_local_experts": 4,
        "num_experts_per_tok": 1,
        "attention_chunk_size": 16,
        "vocab_size": 1000,
        "interleave_moe_layer_step": 1,
    },
    "gpt_oss": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "intermediate_size": 128,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "sliding_window": 16,
        "vocab_size": 1000,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
    },
}
CLASS = {
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "qwen3_next": "Qwen3NextForCausalLM",
    "llama4_text": "Llama4ForCausalLM",
    "gpt_oss": "GptOssForCausalLM",
}


def cache_bytes(cache: object) -> int:
    """Bytes of the storages the cache keeps alive (a sliding layer's keys are a view of
    the concatenated tensor, whose whole storage stays allocated)."""
    seen: set[int] = set()
    total = 0
    for layer in getattr(cache, "layers", []):
        tensors = [getattr(layer, n, None) for n in ("keys", "values")]
        for n in ("conv_states", "recurrent_states"):
            tensors += list((getattr(layer, n, None) or {}).values())
        for t in tensors:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
    return total


def main() -> int:
    torch.manual_seed(0)
    bad = 0
    for model_type, fields in SMALL.items():
        config = transformers.AutoConfig.for_model(model_type, **fields)
        model = getattr(transformers, CLASS[model_type])(config).to(torch.bfloat16).eval()
        for prompt in (8, 40):
            ids = torch.randint(0, 1000, (2, prompt))
            with torch.no_grad():
                out = model(ids, use_cache=True)
                out = model(ids[:, -1:], past_key_values=out.past_key_values, use_cache=True)
            measured = cache_bytes(out.past_key_values)
            cfg = {"model_type": model_type, **fields}
            s = parse(
                {
                    "model": "transformer",
                    "config": cfg,
                    "mode": "inference",
                    "precision": "bf16",
                    "batch_size": 2,
                    "seq_len": prompt,
                }
            )
            t = from_config(cfg)
            nn = kv_cache_term(s, t, prompt + 1, decoding=True).bytes
            ok = nn == measured
            bad += not ok
            print(
                f"{model_type:12} tokens {prompt + 1:3}  transformers {measured:>9,}  "
                f"nnmem {nn:>9,}  {'yes' if ok else 'NO'}"
            )
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
