"""Per-layer KV spec: values derived by hand from the published configs."""

import pytest

from nnmem import catalog
from nnmem.runtimes import kvspec
from nnmem.runtimes.models import config


def test_llama_3_1_8b_is_uniform_gqa():
    spec = kvspec.from_config(catalog.models()["llama-3.1-8b"].config)
    # 32 layers x 8 KV heads x (128 + 128) = 2048 elements per layer per token
    assert len(spec) == 32
    assert {s.kind for s in spec} == {"full"}
    assert kvspec.bytes_per_token(spec, 2) == 32 * 2048 * 2  # 128 KiB


def test_gemma_3_1b_every_sixth_layer_is_global():
    spec = kvspec.from_config(catalog.models()["gemma-3-1b"].config)
    globals_ = [i for i, s in enumerate(spec) if s.kind == "full"]
    # sliding_window_pattern 6: layers 5, 11, 17, 23 are global out of 26
    assert globals_ == [5, 11, 17, 23]
    assert all(s.window == 512 for s in spec if s.kind == "sliding")
    # 1 KV head x (256 + 256)
    assert spec[0].elems_per_token == 512


def test_gemma_3_sliding_layers_cap_per_token_bytes_at_long_context():
    spec = kvspec.from_config(catalog.models()["gemma-3-1b"].config)
    # at 32768 tokens: 4 global layers in full, 22 sliding layers hold 512 tokens
    per = kvspec.bytes_per_token(spec, 2, context=32768)
    assert per == pytest.approx(4 * 512 * 2 + 22 * 512 * 2 * 512 / 32768)


def test_gemma_2_alternates_starting_with_sliding():
    spec = kvspec.from_config(catalog.models()["gemma-2-2b"].config)
    assert [s.kind for s in spec[:4]] == ["sliding", "full", "sliding", "full"]
    assert spec[0].window == 4096


def test_mistral_v0_1_slides_everywhere_and_qwen_only_when_enabled():
    mistral = kvspec.from_config(catalog.models()["mistral-7b-v0.1"].config)
    assert {s.kind for s in mistral} == {"sliding"}
    qwen = kvspec.from_config({**catalog.models()["qwen3-0.6b"].config, "sliding_window": 4096})
    assert {s.kind for s in qwen} == {"full"}


def test_gpt_oss_alternates_128_token_windows():
    spec = kvspec.from_config(config("gpt-oss-20b"))
    assert [s.kind for s in spec].count("sliding") == 12
    assert spec[0].kind == "sliding"
    assert spec[0].window == 128
    assert spec[1].kind == "full"
    # 8 KV heads x (64 + 64)
    assert spec[1].elems_per_token == 1024


def test_mla_latent_for_deepseek_v3():
    cfg = {
        "num_hidden_layers": 61,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "hidden_size": 7168,
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
    }
    spec = kvspec.from_config(cfg)
    # (512 + 64) elements per layer, one latent for all heads
    assert kvspec.bytes_per_token(spec, 2) == 61 * 576 * 2


def test_shared_kv_layers_store_nothing():
    cfg = {
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "hidden_size": 512,
        "num_kv_shared_layers": 2,
    }
    spec = kvspec.from_config(cfg)
    assert [s.kind for s in spec] == ["full", "full", "shared", "shared"]
    assert kvspec.bytes_per_token(spec, 2) == 2 * 2 * 128 * 2


def test_gated_delta_net_state_for_qwen3_next_shape():
    cfg = {
        "num_hidden_layers": 4,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "hidden_size": 2048,
        "head_dim": 256,
        "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 32,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4,
    }
    spec = kvspec.from_config(cfg)
    assert [s.kind for s in spec] == ["state", "state", "state", "full"]
    # conv: (128*16*2 + 128*32) x 3 in bf16; temporal: 32 x 128 x 128 in fp32
    assert spec[0].state_bytes == (128 * 16 * 2 + 128 * 32) * 3 * 2 + 32 * 128 * 128 * 4
    assert kvspec.bytes_per_token(spec, 2) == 2 * 512 * 2


def test_missing_window_is_named():
    cfg = {"num_hidden_layers": 1, "num_attention_heads": 1, "hidden_size": 8}
    with pytest.raises(ValueError, match="layer 0 is sliding_attention"):
        kvspec.from_config({**cfg, "layer_types": ["sliding_attention"]})
