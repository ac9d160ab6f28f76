"""The solvers respect the model's context and the card's number formats.

Contexts: each model's ``config.json`` (``max_position_embeddings``; ``rope_scaling`` as
transformers' ``modeling_rope_utils.py`` reads it). Formats: NVIDIA's compute
capabilities (BF16 from 8.0, FP8 from 8.9), as recorded in ``nnmem/data/gpus.json``.
"""

from __future__ import annotations

from typing import Any

from nnmem import parse
from nnmem.solvers import context_limit, judge, max_seq_len

QWEN_YARN = {
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}


def llama3(**settings: Any) -> Any:
    return parse({"model": "preset", "preset": "llama-3-8b", **settings})


def test_longest_sequence_is_capped_at_the_models_context() -> None:
    """Llama 3 8B: max_position_embeddings 8,192. An H200 could hold 508,661 tokens."""
    fit = judge(llama3(mode="inference", precision="bf16"), "h200-sxm-141gb")
    assert fit.max_seq_len == 8192
    assert fit.seq_len_capped
    assert fit.context is not None
    assert "max_position_embeddings" in fit.context.source
    assert fit.to_dict()["max_seq_len_capped"] is True


def test_generated_tokens_share_the_context() -> None:
    scenario = llama3(mode="inference", precision="bf16", new_tokens=1000)
    assert max_seq_len(scenario, 141 * 2**30) == 8192 - 1000


def test_memory_still_decides_below_the_context() -> None:
    fit = judge(llama3(precision="amp_bf16", checkpointing="full"), "rtx-4090")
    assert fit.max_seq_len is not None
    assert fit.max_seq_len < 8192
    assert not fit.seq_len_capped


def test_rope_scaling_extends_the_context() -> None:
    """Qwen2.5's YaRN recipe: factor 4 over an original 32,768 equal to
    max_position_embeddings gives 131,072 tokens."""
    plain = parse({"model": "transformer", "config": QWEN_YARN})
    assert context_limit(plain).tokens == 32768  # type: ignore[union-attr]
    scaled = {
        **QWEN_YARN,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    }
    limit = context_limit(parse({"model": "transformer", "config": scaled}))
    assert limit is not None
    assert limit.tokens == 131072
    assert "yarn" in limit.source


def test_a_stated_extended_context_is_not_scaled_twice() -> None:
    """Llama 3.1 states 131,072 with rope_type llama3 over an original 8,192."""
    limit = context_limit(parse({"model": "preset", "preset": "llama-3.1-8b"}))
    assert limit is not None
    assert limit.tokens == 131072


def test_a_sequence_past_the_context_is_flagged() -> None:
    fit = judge(llama3(mode="inference", precision="bf16", seq_len=16384), "h200-sxm-141gb")
    assert any("exceed the model's context of 8,192" in w for w in fit.warnings)


def test_fp8_cannot_run_before_compute_capability_89() -> None:
    fit = judge(llama3(mode="inference", precision="fp8"), "a100-sxm-80gb")
    assert fit.fits
    assert not fit.runs
    assert any("FP8" in w for w in fit.warnings)
    assert judge(llama3(mode="inference", precision="fp8"), "h100-sxm-80gb").runs


def test_bf16_on_a_t4_runs_emulated_with_a_warning() -> None:
    fit = judge(llama3(mode="inference", precision="bf16", seq_len=512), "t4")
    assert fit.runs
    assert any("no BF16" in w for w in fit.warnings)
    assert not judge(llama3(mode="inference", precision="fp16", seq_len=512), "t4").warnings


def test_suggestions_state_their_quality_risk() -> None:
    fit = judge(llama3(precision="fp32", seq_len=1024), "rtx-4090")
    assert fit.suggestions
    for s in fit.suggestions:
        assert s.risk in ("none", "low", "medium", "high")
        assert s.risk_note
    keys = [s.key for s in fit.suggestions]
    if "bf16" in keys:
        assert fit.suggestions[keys.index("bf16")].risk == "high"


def test_headroom_is_one_setting_the_verdict_and_solvers_share() -> None:
    """Default 10%: an RTX 4090's 24 GiB leaves 21.6 GiB to fill."""
    from nnmem.solvers import budget_for, max_batch

    scenario = llama3(mode="inference", precision="bf16", seq_len=4096)
    fit = judge(scenario, "rtx-4090")
    assert fit.usable == 24 * 2**30
    assert fit.budget == budget_for(scenario, 24 * 2**30) == int(24 * 2**30 * 0.9)
    assert fit.fits == (fit.need <= fit.budget)
    assert fit.max_batch == max_batch(scenario, fit.budget, "rtx-4090")
    none = judge(
        llama3(mode="inference", precision="bf16", seq_len=4096, headroom_percent=0), "rtx-4090"
    )
    assert none.budget == 24 * 2**30
    assert none.max_batch >= fit.max_batch
    assert fit.to_dict()["headroom_percent"] == 10


def test_gpu_names_use_the_marketing_size_and_real_units() -> None:
    from nnmem import catalog
    from nnmem.web.form import gpu_label

    assert gpu_label(catalog.gpus()["rtx-4090"]) == "NVIDIA GeForce RTX 4090 · 24 GB"
    # 128 GiB x 0.84 = 107.52 GiB, in GiB, not "108 GB"
    assert gpu_label(catalog.gpus()["m4-max-128gb"]).endswith(
        "· 128 GB, 107.5 GiB usable by the GPU"
    )


def test_the_precision_menu_offers_gguf_for_inference_only() -> None:
    from nnmem.scenario import Precision
    from nnmem.web.form import precision_groups

    groups = precision_groups()
    seen = [value for _, _, options in groups for value, _ in options]
    assert sorted(seen) == sorted(p.value for p in Precision)
    training = {value for _, trains, options in groups if trains for value, _ in options}
    assert "q4_k_m" not in training
    assert "gptq" not in training
    assert {"fp32", "amp_bf16", "bf16", "nf4_dq", "int8"} <= training


def test_selective_checkpointing_with_sdpa_says_why_it_saves_nothing() -> None:
    from nnmem import estimate

    plain = llama3(precision="amp_bf16", seq_len=1024)
    selective = llama3(precision="amp_bf16", seq_len=1024, checkpointing="selective")
    assert estimate(selective).total_bytes == estimate(plain).total_bytes
    assert any("saves nothing" in n for n in estimate(selective).notes)
