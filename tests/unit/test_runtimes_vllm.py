"""vLLM block pool and budget: values derived by hand from the vLLM 0.34.0 source
cited in nnmem.runtimes.vllm."""

import math

import pytest

from nnmem.runtimes import vllm
from nnmem.runtimes.models import config, serve_model, weights_bytes

GIB = 2**30


def _serve(**kw):
    base = {"gpu_memory_bytes": 80 * GIB, "max_model_len": 16000, "block_size": 16}
    return vllm.Serve(**{**base, **kw})


def test_page_and_capacity_for_llama_3_1_8b():
    m = serve_model("llama-3.1-8b")
    s = _serve()
    # page: 16 tokens x 8 heads x (128 + 128) x 2 bytes = 65536; 32 layers per block
    assert vllm.page_bytes(m.kv[0], m, s) == 65536
    cap = vllm.capacity(m, s, 50 * GIB)
    assert cap.bytes_per_block == 32 * 65536
    assert cap.num_blocks == 50 * GIB // (32 * 65536)  # 25600
    assert cap.blocks_per_request == 1000  # cdiv(16000, 16)
    assert cap.max_concurrency == pytest.approx(25.6)
    assert cap.tokens == int(25.6 * 16000)


def test_fp8_halves_the_page_and_tp_divides_kv_heads():
    m = serve_model("llama-3.1-8b")
    assert vllm.page_bytes(m.kv[0], m, _serve(kv_cache_dtype="fp8")) == 32768
    assert vllm.page_bytes(m.kv[0], m, _serve(tensor_parallel_size=2)) == 32768
    # 16 ranks > 8 KV heads: one replicated head per rank
    assert vllm.page_bytes(m.kv[0], m, _serve(tensor_parallel_size=16)) == 16 * 256 * 2


def test_gpt_oss_groups_and_sliding_blocks():
    m = serve_model("gpt-oss-20b", "mxfp4")
    s = _serve(block_size=16)
    gs = vllm.groups(m, s)
    # 12 sliding + 12 full layers: two groups of 12
    assert sorted((g.kind, g.layers) for g in gs) == [("full", 12), ("sliding", 12)]
    sw = next(g for g in gs if g.kind == "sliding")
    # window 128, in flight (1 + 1) x 8192 tokens (async scheduling, H100 default):
    # cdiv(min(127 + 16384, 16000), 16) + 1 = 1001
    assert vllm.blocks_per_request(sw, s) == 1001
    short = _serve(max_num_batched_tokens=512)
    # cdiv(127 + 1024, 16) + 1 = 73
    assert vllm.blocks_per_request(sw, short) == 73


def test_budget_arithmetic_and_start_up_failure():
    m = serve_model("llama-3.1-8b")
    s = _serve(gpu_memory_utilization=0.9, activation_bytes=5 * GIB, non_torch_bytes=GIB // 8)
    b = vllm.budget(m, s)
    assert b.requested == math.ceil(80 * GIB * 0.9)
    assert b.weights == 8030261248 * 2
    assert b.kv == b.requested - b.weights - 5 * GIB - GIB // 8
    tight = _serve(gpu_memory_bytes=16 * GIB, gpu_memory_utilization=0.9)
    bt = vllm.budget(m, tight)
    assert not bt.positive
    assert not vllm.starts(bt, vllm.capacity(m, tight, bt.kv))


def test_kv_cache_memory_overrides_the_profile():
    m = serve_model("llama-3.1-8b")
    b = vllm.budget(m, _serve(kv_cache_memory_bytes=10 * GIB))
    assert b.kv == 10 * GIB


def test_defaults_follow_the_card():
    assert _serve().defaults() == (1024, 8192)
    assert _serve(gpu_memory_bytes=180 * GIB).defaults() == (1024, 16384)
    assert _serve(gpu_memory_bytes=24 * GIB).defaults() == (256, 2048)
    assert _serve(device_name="NVIDIA A100-SXM4-80GB").defaults() == (256, 2048)


def test_weights_by_format():
    # gpt-oss-20b: 19,110,297,600 expert weights at 17/32 B, 1,804,459,584 others in bf16
    assert weights_bytes("gpt-oss-20b", "mxfp4") == 19110297600 * 17 // 32 + 1804459584 * 2
    cfg = config("llama-3.1-8b")
    assert cfg["num_key_value_heads"] == 8
    with pytest.raises(ValueError, match="format: 'int3'"):
        weights_bytes("llama-3.1-8b", "int3")


def test_report_flags_and_table():
    m = serve_model("qwen3-0.6b")
    r = vllm.report(m, _serve(gpu_memory_utilization=0.9), "Qwen/Qwen3-0.6B", contexts=(4096, 8192))
    assert r.flags.startswith("vllm serve Qwen/Qwen3-0.6B --max-model-len 16000")
    assert "--kv-cache-memory" in r.flags
    c4, c8 = r.table[0][1][0], r.table[1][1][0]
    assert c4 == pytest.approx(2 * c8)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="kv_cache_dtype: 'int4'"):
        _serve(kv_cache_dtype="int4")
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        _serve(gpu_memory_utilization=1.5)


def test_hybrid_state_layers_enlarge_the_attention_block():
    from nnmem.runtimes.kvspec import LayerKV

    full = LayerKV("full", 2, 256, 256)  # 2 x 512 x 2 = 2048 bytes per token
    state = LayerKV("state", state=((24576, 2), (524288, 4)))
    m = vllm.ServeModel(
        kv=(state, state, state, full), vocab=1000, hidden=2048, ffn=4096, weights_bytes=0
    )
    # conv in the model dtype, temporal state in float32: 2,146,304 bytes
    s = _serve(block_size=64, mamba_ssm_cache_dtype="float32")
    assert vllm.state_bytes(state, m, s) == 24576 * 2 + 524288 * 4
    # 64 * cdiv(2146304, 64 * 2048) = 64 * 17 = 1088 tokens per block
    assert vllm.block_size(m, s) == 1088
    assert vllm.page_bytes(full, m, s) == 1088 * 2048
    assert vllm.page_bytes(state, m, s) == 1088 * 2048  # padded to the attention page
    gs = vllm.groups(m, s)
    assert sorted((g.kind, g.layers) for g in gs) == [
        ("full", 1),
        ("state", 1),
        ("state", 1),
        ("state", 1),
    ]
    # one request: cdiv(16000, 1088) = 15 blocks of the full group + 1 per state group
    assert sum(vllm.blocks_per_request(g, s) for g in gs) == 15 + 3


def test_mla_page_is_one_latent():
    from nnmem.runtimes.kvspec import LayerKV

    mla = LayerKV("mla", 1, 576, 0)
    m = vllm.ServeModel(kv=(mla,) * 61, vocab=129280, hidden=7168, ffn=18432, weights_bytes=0)
    # 16 tokens x 576 x 2 bytes, and TP does not divide it
    assert vllm.page_bytes(mla, m, _serve()) == 16 * 576 * 2
    assert vllm.page_bytes(mla, m, _serve(tensor_parallel_size=8)) == 16 * 576 * 2


def test_fp8_moe_is_refused_by_name():
    with pytest.raises(ValueError, match="format: fp8 weights of the MoE 'mixtral-8x7b'"):
        weights_bytes("mixtral-8x7b", "fp8")
