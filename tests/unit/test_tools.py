"""The related tools' formulas, each against a value worked out by hand from its source."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest

from nnmem import catalog, tools
from nnmem.formats import Format
from nnmem.models.architecture import from_config
from nnmem.scenario import parse
from nnmem.web import handle
from nnmem.web.tools import TOOLS, defaults, prerender
from nnmem.web.tools.common import figure
from nnmem.web.tools.compression import weight_bytes
from nnmem.web.tools.parameter_count import module_counts

LLAMA_8B = from_config(catalog.models()["llama-3.1-8b"].config)
MIXTRAL = from_config(catalog.models()["mixtral-8x7b"].config)


def ask(tool: str, **changes: object) -> dict[str, Any]:
    reply = json.loads(handle(json.dumps({"page": tool, "fields": {**defaults(tool), **changes}})))
    assert isinstance(reply, dict)
    return reply


# --- training compute: Kaplan et al. 2020 §2.1, Hoffmann et al. 2022 §3 -----------------


@pytest.mark.parametrize(
    ("params", "tokens", "flops"),
    [
        (7 * 10**9, 10**12, 42 * 10**21),  # 6 × 7e9 × 1e12
        (70 * 10**9, 1_400 * 10**9, 588 * 10**21),  # Chinchilla's 70B on 1.4T tokens
        (124_439_808, 10**9, 746_638_848 * 10**9),  # GPT-2 small on 1B tokens
    ],
)
def test_training_flops_is_six_n_d(params: int, tokens: int, flops: int) -> None:
    """C = 6·N·D: 2N FLOPs per token forward and 4N backward (Kaplan et al. 2020 §2.1)."""
    assert tools.training_flops(params, tokens) == flops


def test_gpu_seconds_divides_by_the_achieved_rate() -> None:
    """4.2e22 FLOPs at 40% of an H100's 989.4 TFLOPS: 4.2e22 / 395.76e12 = 106,124,924.2 s."""
    seconds = tools.gpu_seconds(42 * 10**21, Fraction("989.4"), Fraction(2, 5))
    assert seconds == Fraction(42 * 10**21, 39576 * 10**10)
    assert round(seconds) == 106_124_924


def test_chinchilla_tokens_are_twenty_per_parameter() -> None:
    """Hoffmann et al. 2022 Table 3: 70B parameters want about 1.4T tokens."""
    assert tools.chinchilla_tokens(70 * 10**9) == 1_400 * 10**9


def test_training_cost_page_figures() -> None:
    """7B on 2T tokens, 64 H100 at 40% MFU, 2.50 an hour: 8.4e22 FLOPs;
    8.4e22 / (989.4e12 × 0.4) / 3600 = 58,958.3 GPU-hours; / 64 / 24 = 38.38 days;
    × 2.5 = 147,395.9."""
    values = ask("training-cost")["values"]
    assert values["flops"] == str(84 * 10**21)
    assert values["gpu_hours"] == "58958.3"
    assert values["days"] == "38.3843"
    assert values["cost"] == "147396"


@pytest.mark.parametrize(
    ("typed", "shown"),
    [("USD", "147,396 USD"), ("eur", "147,396 EUR"), ("€", "€147,396"), ("", "147,396")],
)
def test_training_cost_prints_its_currency(typed: str, shown: str) -> None:
    """The cost is printed in the price's currency: a code after it, a symbol before."""
    html = ask("training-cost", currency=typed)["html"]["result"]
    assert f'data-value="147396">{shown}</output>' in html


# --- throughput: Kaplan et al. 2020 Table 1; Pope et al. 2022 §2 ---------------------------


def test_matmul_params_drop_the_embedding_lookup() -> None:
    """Llama-3.1-8B: 8,030,261,248 − 128,256 × 4,096 = 7,504,924,672 (untied head kept);
    Mixtral-8x7B: 12,879,925,248 active − 32,000 × 4,096 = 12,748,853,248."""
    assert tools.matmul_params(LLAMA_8B) == 7_504_924_672
    assert tools.matmul_params(MIXTRAL) == 12_748_853_248


def test_prefill_flops_add_causal_attention() -> None:
    """1 × 1,024 tokens of Llama-3.1-8B: 2 × 7,504,924,672 × 1,024 for the matmuls plus
    2 × L(32) × d_attn(4,096) × 1,024 × 1,025 for QKᵀ and AV under the causal mask."""
    linear = 2 * 7_504_924_672 * 1024
    attention = 2 * 32 * 4096 * 1024 * 1025
    assert tools.prefill_flops(LLAMA_8B, 1, 1024) == linear + attention == 15_645_232_070_656
    assert tools.prefill_flops(LLAMA_8B, 4, 1024) == 4 * (linear + attention)


def test_decode_is_memory_bound_at_batch_one() -> None:
    """Llama-3.1-8B in BF16 on an H100 (3.35 TB/s at 75%), prompt 1,024, 256 new tokens.
    Weights 2 × 8,030,261,248 B; cache 2 · 32 layers · 8 heads · 128 · 2 B = 131,072 B per
    token; the 256 steps read 256 × W + 131,072 × (256 × 1,024 + 256 × 255 / 2) bytes."""
    scenario = parse(
        {"model": "preset", "preset": "llama-3.1-8b", "mode": "inference",
         "precision": "bf16", "batch_size": 1, "seq_len": 1280}
    )  # fmt: skip
    r = tools.throughput(
        scenario, 3_350 * 10**9, Fraction("989.4"), Fraction(3, 4), Fraction(1, 2), 1024, 256
    )
    assert r.weight_bytes == 16_060_522_496
    assert r.kv_bytes_per_token == 131_072
    reads = 256 * 16_060_522_496 + 131_072 * (256 * 1024 + 256 * 255 // 2)
    assert r.decode_memory_seconds == Fraction(reads) / (Fraction(3, 4) * 3_350 * 10**9)
    assert r.memory_bound
    assert r.decode_seconds == r.decode_memory_seconds
    # 4,150,131,687,424 B / 2.5125e12 B/s = 1.651794 s for 256 tokens: 154.983 tokens/s.
    assert reads == 4_150_131_687_424
    assert figure(r.tokens_per_second) == "154.983"
    assert r.prefill_seconds == Fraction(15_645_232_070_656) / (Fraction("989.4") * 10**12 / 2)


def test_large_batches_become_compute_bound() -> None:
    """At batch 1,024 the 2·N·b FLOPs per step outgrow the weight reads: the roofline
    switches to compute."""
    scenario = parse(
        {"model": "preset", "preset": "llama-3.2-1b", "mode": "inference",
         "precision": "bf16", "batch_size": 1024, "seq_len": 160}
    )  # fmt: skip
    r = tools.throughput(
        scenario, 3_350 * 10**9, Fraction("989.4"), Fraction(3, 4), Fraction(1, 2), 128, 32
    )
    assert not r.memory_bound
    assert r.decode_seconds == r.decode_compute_seconds > r.decode_memory_seconds


def test_weight_bytes_of_formats() -> None:
    """BF16 is 2 bytes per parameter; FP32 4; NF4 keeps embeddings and head in 16-bit."""
    params = 8_030_261_248
    assert weight_bytes("llama-3.1-8b", Format.BF16) == 2 * params
    assert weight_bytes("llama-3.1-8b", Format.FP32) == 4 * params
    assert weight_bytes("llama-3.1-8b", Format.NF4) < 2 * params * 4.5 / 16 + 2 * 2 * 525_336_576


# --- parameter count: the transformers classes' allocation (nnmem.architecture) -------------


def test_module_counts_split_attention_and_experts() -> None:
    """Mixtral-8x7B per module: W_q = 32 × 4,096², W_k = 32 × 4,096 × 1,024, experts =
    32 layers × 8 × 3 × 4,096 × 14,336, router 32 × 4,096 × 8; they sum to the total."""
    rows = module_counts(MIXTRAL)
    assert rows["Attention: query (W_q)"] == 32 * 4096 * 4096
    assert rows["Attention: key (W_k)"] == 32 * 4096 * 1024
    assert rows["MoE experts"] == 32 * 8 * 3 * 4096 * 14336
    assert rows["MoE router"] == 32 * 4096 * 8
    assert sum(rows.values()) == 46_702_792_704  # catalog count of Mixtral-8x7B


def test_parameter_count_from_fields_matches_the_catalog() -> None:
    """The default fields are Llama-3.1-8B's: 8,030,261,248 parameters."""
    assert ask("parameter-count")["values"]["total"] == "8030261248"
    moe = ask("parameter-count", num_local_experts="8", intermediate_size="14336",
              vocab_size="32000", num_hidden_layers="32")  # fmt: skip
    assert moe["values"]["total"] == "46702792704"
    assert moe["values"]["active"] == "12879925248"


def test_parameter_count_from_a_pasted_config() -> None:
    """GPT-2's config.json: 124,439,808, as GPT2LMHeadModel.num_parameters() reports."""
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
            "vocab_size": 50257, "n_positions": 1024}  # fmt: skip
    reply = ask("parameter-count", source="config", config=json.dumps(gpt2))
    assert reply["values"]["total"] == "124439808"


# --- pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_tool_prerenders_its_defaults(tool: str) -> None:
    rendered = prerender(tool)
    assert rendered["reply"]["ok"] is True
    assert any(rendered["reply"]["html"].values())


def test_gpu_guide_lists_every_gpu_with_sort_keys() -> None:
    html = prerender("gpu-guide")["reply"]["html"]["gpus"]
    assert html.count("<tr>") == len(catalog.gpus()) + 1
    assert html.count('aria-sort="none"') == 9


@pytest.mark.parametrize("preset", ["t5-small", "vit-base-patch16-224", "qwen3-30b-a3b"])
def test_parameter_count_of_a_catalog_model_is_its_published_count(preset: str) -> None:
    """Each catalog entry records the exact count its transformers class reports."""
    reply = ask("parameter-count", source="preset", preset=preset)
    assert reply["values"]["total"] == str(catalog.models()[preset].params)


def test_fp8_kv_cache_halves_the_cache_read_per_token() -> None:
    """2 · 32 layers · 8 KV heads · 128 · 1 byte = 65,536 B per token for Llama-3.1-8B."""
    scenario = parse(
        {"model": "preset", "preset": "llama-3.1-8b", "mode": "inference",
         "precision": "bf16", "kv_cache_dtype": "fp8", "seq_len": 1280}
    )  # fmt: skip
    r = tools.throughput(
        scenario, 3_350 * 10**9, Fraction("989.4"), Fraction(3, 4), Fraction(1, 2), 1024, 256
    )
    assert r.kv_bytes_per_token == 65_536


def test_moe_decode_reads_only_the_routed_experts() -> None:
    """Mixtral-8x7B in BF16: experts 32 × 8 × 3 × 4,096 × 14,336 × 2 B = 90,194,313,216 B
    of 93,405,585,408; at batch 1 a token skips 6 of 8 experts per layer (top-2), so a
    step reads 93,405,585,408 − 3/4 × 90,194,313,216 = 25,759,850,496 B."""
    scenario = parse(
        {"model": "preset", "preset": "mixtral-8x7b", "mode": "inference",
         "precision": "bf16", "seq_len": 1280}
    )  # fmt: skip
    assert tools.expert_weight_bytes(scenario, MIXTRAL) == 90_194_313_216
    r = tools.throughput(
        scenario, 4_800 * 10**9, Fraction("989.4"), Fraction(3, 4), Fraction(1, 2), 1024, 256
    )
    assert r.weight_bytes == 93_405_585_408
    assert r.step_weight_bytes == 25_759_850_496
