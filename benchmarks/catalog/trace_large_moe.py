"""Trace 4-layer DeepSeek-V3, Llama 4 Scout and Qwen3-Next models with the accuracy
suite's tracker and compare each figure with nnmem's estimate.

The models keep the real widths of ``nnmem/data/models.json`` with 4 layers (DeepSeek-V3:
1 dense, 3 MoE; Qwen3-Next: 16 experts instead of 512, run on real tensors because the
gated delta rule's torch fallback does not run under FakeTensorMode). Cases: bf16 SDPA
inference, prefill 2,048 tokens (DeepSeek-V3, Llama 4) and bf16 AdamW training at 512
tokens (256 for Qwen3-Next). Needs torch and transformers (the figures cited in
``nnmem/models/transformer/cache.py`` are from torch 2.13.0 CPU, transformers 5.25.0);
from the repository root:

    python -m benchmarks.catalog.trace_large_moe
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from benchmarks.accuracy import compare, runner
from benchmarks.accuracy import models as accuracy_models
from benchmarks.accuracy.cases import Case, Model, _infer, _train
from nnmem.runtimes.models import config

FAMILIES = {
    "deepseek_v3": "DeepseekV3Config",
    "qwen3_next": "Qwen3NextConfig",
    "llama4_text": "Llama4TextConfig",
}
DROP = {"architectures", "torch_dtype", "model_type", "quantization_config"}


def _fields(cfg: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in DROP} | changes


def cases() -> list[Case]:
    deepseek = _fields(
        config("deepseek-v3"),
        num_hidden_layers=4,
        first_k_dense_replace=1,
        n_group=8,
        topk_group=4,
    )
    for key in ("num_nextn_predict_layers", "topk_method", "moe_layer_freq"):
        deepseek.pop(key, None)
    scout = _fields(config("llama-4-scout")["text_config"], num_hidden_layers=4)
    qwen = _fields(config("qwen3-next-80b-a3b"), num_hidden_layers=4, num_experts=16)
    ds = Model("deepseek-v3-4l", "deepseek_v3", "DeepseekV3ForCausalLM", deepseek, "causal_lm")
    l4 = Model("llama4-scout-4l", "llama4_text", "Llama4ForCausalLM", scout, "causal_lm")
    qn = Model("qwen3-next-4l-16e", "qwen3_next", "Qwen3NextForCausalLM", qwen, "causal_lm")
    return [
        _infer(ds, 1, 2048),
        _train(ds, "bf16", 1, 512, attn_implementation="sdpa"),
        _infer(l4, 1, 2048),
        _train(l4, "bf16", 1, 512, attn_implementation="sdpa"),
        replace(_train(qn, "bf16", 1, 256, attn_implementation="sdpa"), fake=False),
    ]


def main() -> int:
    for family, config_class in FAMILIES.items():
        accuracy_models.FAMILIES[family] = accuracy_models.Family(config_class, "tokens", "lm_head")
        compare._MODEL_TYPE[family] = family
    for case in cases():
        for row in compare.compare_case(runner.run_case(case)):
            error = (row.estimated - row.measured) / row.measured if row.estimated else None
            shown = f"{error:+.1%}" if error is not None else row.note
            print(
                f"{row.case:48} {row.metric:16} {row.measured:>16,} "
                f"{row.estimated or 0:>16,} {shown}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
