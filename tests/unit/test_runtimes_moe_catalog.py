"""The MoE models the runtimes price by their checkpoints (runtimes.models.runtime_models):
KV bytes per token per layer kind and checkpoint bytes, worked out by hand from each
published config.json (the fields are in data/models.json) and the
vLLM 0.34.0 / llama.cpp / transformers sources cited in nnmem.runtimes.kvspec and
nnmem.runtimes.models."""

from __future__ import annotations

import pytest

from nnmem.runtimes import kvspec, vllm
from nnmem.runtimes import llamacpp as lc
from nnmem.runtimes.models import config, serve_model, weights_bytes, weights_of

GIB = 2**30


def _kinds(model_id: str) -> dict[str, int]:
    spec = kvspec.from_config(config(model_id))
    out: dict[str, int] = {}
    for s in spec:
        out[s.kind] = out.get(s.kind, 0) + 1
    return out


# --- KV bytes per token, bf16 (2 bytes per element) ---------------------------------------


@pytest.mark.parametrize("model_id", ["deepseek-v3", "deepseek-r1", "kimi-k2"])
def test_mla_latent_per_token(model_id: str) -> None:
    spec = kvspec.from_config(config(model_id))
    # MLA: one latent of kv_lora_rank + qk_rope_head_dim = 512 + 64 = 576 elements per
    # layer, whatever the head count (128 for DeepSeek, 64 for Kimi K2)
    assert _kinds(model_id) == {"mla": 61}
    assert spec[0].elems_per_token == 576
    # 61 layers x 576 x 2 B = 70,272 B per token
    assert kvspec.bytes_per_token(spec, 2) == 61 * 576 * 2 == 70272


def test_glm_4_5_is_plain_gqa() -> None:
    spec = kvspec.from_config(config("glm-4.5"))
    # 92 layers x 8 KV heads x (128 + 128) = 2048 elements per layer
    assert _kinds("glm-4.5") == {"full": 92}
    assert spec[0].elems_per_token == 8 * (128 + 128) == 2048
    assert kvspec.bytes_per_token(spec, 2) == 92 * 2048 * 2 == 376832


def test_qwen3_next_every_fourth_layer_attends() -> None:
    spec = kvspec.from_config(config("qwen3-next-80b-a3b"))
    # full_attention_interval 4 over 48 layers: layers 3, 7, ..., 47 are full attention
    assert [i for i, s in enumerate(spec) if s.kind == "full"] == list(range(3, 48, 4))
    assert _kinds("qwen3-next-80b-a3b") == {"state": 36, "full": 12}
    # full: 2 KV heads x (256 + 256) = 1024 elements; 12 layers x 1024 x 2 B per token
    assert spec[3].elems_per_token == 1024
    assert kvspec.bytes_per_token(spec, 2) == 12 * 1024 * 2 == 24576
    # gated delta net state per sequence: conv (128 x 16 x 2 + 128 x 32) x (4 - 1) =
    # 24,576 elements, temporal 32 x 128 x 128 = 524,288 elements
    assert spec[0].state == ((24576, 2), (524288, 4))


@pytest.mark.parametrize("model_id", ["llama-4-scout", "llama-4-maverick"])
def test_llama_4_chunks_three_layers_in_four(model_id: str) -> None:
    spec = kvspec.from_config(config(model_id))
    # no_rope_layers [] -> int((i + 1) % 4 != 0): layers 3, 7, ..., 47 are global (NoPE)
    assert [i for i, s in enumerate(spec) if s.kind == "full"] == list(range(3, 48, 4))
    assert _kinds(model_id) == {"chunked": 36, "full": 12}
    assert {s.window for s in spec if s.kind == "chunked"} == {8192}
    # 8 KV heads x (128 + 128) = 2048 elements per layer, 4096 B at bf16
    assert spec[0].elems_per_token == 2048
    assert kvspec.bytes_per_token(spec, 2) == 48 * 4096
    # at 32,768 tokens the 36 chunked layers hold 8,192 of them
    per = kvspec.bytes_per_token(spec, 2, context=32768)
    assert per == 12 * 4096 + 36 * 4096 * 8192 / 32768 == 86016


# --- checkpoint bytes ----------------------------------------------------------------------


def test_deepseek_v3_block_fp8_bytes() -> None:
    """DeepSeek-V3: 61 layers, 3 dense, 58 MoE layers of 256 routed + 1 shared expert.

    Linear layers (out x in): q_a 1536x7168, q_b 24576x1536, kv_a 576x7168,
    kv_b 32768x512, o 7168x16384 per layer; dense gate/up 18432x7168, down 7168x18432;
    expert gate/up 2048x7168, down 7168x2048. FP8 scales: one float32 per 128x128 block.
    """
    attn = 1536 * 7168 + 24576 * 1536 + 576 * 7168 + 32768 * 512 + 7168 * 16384
    assert attn == 187105280
    dense = 3 * 7168 * 18432
    experts = 58 * 257 * 3 * 2048 * 7168
    linear = 61 * attn + 3 * dense + experts
    # blocks: q_a 12x56, q_b 192x12, kv_a cdiv(576,128)=5 x 56, kv_b 256x4, o 56x128
    attn_blocks = 12 * 56 + 192 * 12 + 5 * 56 + 256 * 4 + 56 * 128
    assert attn_blocks == 11448
    blocks = 61 * attn_blocks + 3 * 3 * 144 * 56 + 58 * 257 * 3 * 16 * 56
    # bf16: norms (q_a 1536 + kv_a 512 + 2 x 7168 per layer), router 256 x 7168 per MoE
    # layer, embedding and LM head 129280 x 7168 each, final norm; float32:
    # e_score_correction_bias, 256 per MoE layer
    other = 61 * (1536 + 512 + 2 * 7168) + 58 * 256 * 7168 + 2 * 129280 * 7168 + 7168
    fp32 = 58 * 256
    assert linear + other + fp32 == 671026419200  # the model card's 671B
    w = weights_of("deepseek-v3")
    assert w is not None
    assert w.params == 671026419200
    fp8 = linear + 4 * blocks + 2 * other + 4 * fp32
    assert fp8 == 673150611808
    assert weights_bytes("deepseek-v3", "fp8") == fp8
    assert weights_bytes("deepseek-r1", "fp8") == fp8
    assert weights_bytes("deepseek-v3", "bf16") == 2 * (linear + other) + 4 * fp32


def test_kimi_k2_block_fp8_bytes_match_its_tensor_list() -> None:
    """Kimi K2's checkpoint lists 1,026,470,731,056 stored values in 958.49 GiB."""
    # 64 heads: q_b 1536 -> 64 x 192, kv_b 512 -> 64 x 256, o 64 x 128 -> 7168
    attn = 7168 * 1536 + 1536 * 64 * 192 + 7168 * 576 + 512 * 64 * 256 + 64 * 128 * 7168
    dense = 3 * 7168 * 18432  # first_k_dense_replace 1
    experts = 60 * 385 * 3 * 7168 * 2048  # 384 routed + 1 shared in 60 MoE layers
    linear = 61 * attn + dense + experts
    # bf16: norms, router 384 x 7168 per MoE layer, embedding, LM head, final norm
    other = 61 * (1536 + 512 + 2 * 7168) + 60 * 384 * 7168 + 2 * 163840 * 7168 + 7168
    fp32 = 60 * 384  # e_score_correction_bias
    params = linear + other + fp32
    assert params == 1026408232448  # 1.03T
    # block scales: q_a 12x56, q_b 96x12, kv_a 5x56, kv_b 128x4, o 56x64 per layer;
    # dense 144x56 (x2) and 56x144; experts 16x56 (x2) and 56x16
    scales = 61 * (672 + 1152 + 280 + 512 + 3584) + 3 * 8064 + 60 * 385 * 3 * 896
    # the tensor list also holds 61 x 56 rotary inv_freq values
    assert params + scales + 61 * 56 == 1026470731056
    fp8 = linear + 4 * scales + 2 * other + 4 * fp32
    assert fp8 == 1029173249888  # 958.49 GiB
    assert weights_bytes("kimi-k2", "fp8") == fp8
    assert weights_bytes("kimi-k2", "bf16") == 2 * (linear + other) + 4 * fp32


def test_a_format_the_checkpoint_does_not_come_in_is_named() -> None:
    with pytest.raises(ValueError, match=r"format: 'glm-4\.5' comes in bf16, not 'fp8'"):
        weights_bytes("glm-4.5", "fp8")


def test_glm_4_5_bf16_bytes_with_float32_router() -> None:
    # q 5120 -> 96 x 128 and k, v 5120 -> 8 x 128 with biases, o without; q/k norms 128
    attn = 5120 * 12288 + 12288 + 2 * (5120 * 1024 + 1024) + 12288 * 5120 + 2 * 128
    dense = 3 * 5120 * 12288  # first_k_dense_replace 3
    experts = 161 * 3 * 5120 * 1536  # 160 routed + 1 shared, moe_intermediate_size 1536
    router = 160 * 5120 + 160  # weight and e_score_correction_bias, float32 in vLLM
    params = 92 * (attn + 2 * 5120) + 3 * dense + 89 * (experts + router)
    params += 2 * 151552 * 5120 + 5120
    assert params == 352797829024  # 355B less the MTP layer
    assert weights_bytes("glm-4.5", "bf16") == 2 * params + 2 * 89 * router


def test_qwen3_next_bf16_bytes() -> None:
    # gated delta net: in_proj_qkvz 2048 -> 2 x 2048 + 2 x 4096, in_proj_ba 2048 -> 64,
    # conv1d 8192 x 4, dt_bias and A_log 32 each, norm 128, out_proj 4096 -> 2048
    delta = 2048 * 12288 + 2048 * 64 + 8192 * 4 + 2 * 32 + 128 + 4096 * 2048
    assert delta == 33718464
    # attention: q 2048 -> 2 x 16 x 256 (with the output gate), k, v 2048 -> 512,
    # o 4096 -> 2048, q/k norms 256
    attn = 2048 * 8192 + 2 * 2048 * 512 + 4096 * 2048 + 2 * 256
    # every layer: router 512 x 2048, 512 experts and a shared expert of 512, its gate
    moe = 512 * 2048 + 513 * 3 * 2048 * 512 + 2048
    params = 36 * delta + 12 * attn + 48 * (moe + 2 * 2048) + 2 * 151936 * 2048 + 2048
    assert params == 79674391296  # 81.3B with the MTP block
    assert weights_bytes("qwen3-next-80b-a3b", "bf16") == 2 * params


def test_llama_4_bf16_bytes_with_the_vision_tower() -> None:
    # vision encoder (hidden 1408, 34 layers, fc 5632, 336 px images in 14 px patches):
    # class embedding, 577 positions, unfold conv 3 x 14 x 14 -> 1408, LayerNorms pre/post
    stem = 1408 + 577 * 1408 + 588 * 1408 + 4 * 1408
    # per layer: q/k/v/o with biases, fc1/fc2 with biases, two LayerNorms
    layer = 4 * (1408 * 1408 + 1408) + (1408 * 5632 + 5632) + (5632 * 1408 + 1408) + 4 * 1408
    assert layer == 23807872
    # pixel-shuffle MLP 5632 -> 4096 -> 4096, projector 4096 -> 5120, no biases
    vision = stem + 34 * layer + 5632 * 4096 + 4096 * 4096 + 4096 * 5120
    assert vision == 871932416
    attn = 2 * 5120 * 5120 + 2 * 5120 * 1024  # q, o 40 x 128; k, v 8 x 128
    head = 2 * 202048 * 5120 + 5120  # untied embedding and LM head, final norm
    # Scout: 48 MoE layers of 16 experts + 1 shared (intermediate 8192) and a router
    scout = 48 * (attn + 17 * 3 * 5120 * 8192 + 16 * 5120 + 2 * 5120) + head
    assert scout + vision == 108641793536  # the model card's 109B
    assert weights_bytes("llama-4-scout", "bf16") == 2 * (scout + vision)
    # Maverick: interleave_moe_layer_step 2 -> odd layers MoE (128 + 1 experts), even
    # layers a dense MLP of intermediate_size_mlp 16384
    moe = 129 * 3 * 5120 * 8192 + 128 * 5120
    maverick = 48 * (attn + 2 * 5120) + 24 * moe + 24 * 3 * 5120 * 16384 + head
    assert maverick + vision == 401583781376  # 400B
    assert weights_bytes("llama-4-maverick", "bf16") == 2 * (maverick + vision)


# --- vLLM ---------------------------------------------------------------------------------


def test_vllm_holds_the_absorbed_mla_matrices_besides_the_checkpoint() -> None:
    # W_UK_T and W_UV: 512 (kv_lora_rank) x 128 heads x (128 + 128) bf16 per layer, 61 layers
    absorbed = 61 * 512 * 128 * (128 + 128) * 2
    assert absorbed == 2046820352
    m = serve_model("deepseek-v3", "fp8")
    assert m.weights_bytes == 673150611808 + absorbed
    # sharded with the heads: an eighth per rank at TP 8
    s = vllm.Serve(gpu_memory_bytes=141 * GIB, max_model_len=32768, tensor_parallel_size=8)
    assert vllm.weights_per_gpu(m, s) == (673150611808 + absorbed) // 8
    # Kimi K2's 64 heads halve it
    assert serve_model("kimi-k2", "fp8").weights_bytes == 1029173249888 + absorbed // 2


def test_vllm_deepseek_v3_mla_pool_at_tp8() -> None:
    m = serve_model("deepseek-v3", "fp8")
    s = vllm.Serve(gpu_memory_bytes=141 * GIB, max_model_len=32768, tensor_parallel_size=8)
    # MLAAttentionSpec page: 64 tokens x 1 latent head x 576 x 2 B, not divided by TP
    assert vllm.page_bytes(m.kv[0], m, s) == 64 * 576 * 2 == 73728
    cap = vllm.capacity(m, s, 40 * GIB)
    # one group of all 61 layers: a block is 61 pages
    assert cap.bytes_per_block == 61 * 73728 == 4497408
    assert cap.num_blocks == 40 * GIB // 4497408 == 9549
    assert cap.blocks_per_request == 32768 // 64 == 512
    assert cap.max_concurrency == pytest.approx(9549 / 512)
    assert cap.tokens == int(9549 / 512 * 32768) == 611136


def test_vllm_llama_4_scout_chunked_groups() -> None:
    m = serve_model("llama-4-scout")
    s = vllm.Serve(gpu_memory_bytes=80 * GIB, max_model_len=131072)
    # 36 chunked and 12 full layers, one page size: groups of 12 layers, 3 chunked + 1 full
    gs = vllm.groups(m, s)
    assert sorted((g.kind, g.layers) for g in gs) == [("chunked", 12)] * 3 + [("full", 12)]
    # page: 64 tokens x 8 heads x 256 x 2 B = 262,144; a block is 12 pages (3 MiB)
    cap = vllm.capacity(m, s, 30 * GIB)
    assert cap.bytes_per_block == 12 * 262144
    assert cap.num_blocks == 30 * GIB // (12 * 262144) == 10240
    # 80 GiB H100 defaults: max_num_batched_tokens 8192, async scheduling -> 2 batches in
    # flight: chunked cdiv(min(8192 + 2 x 8192, 131072), 64) = 384 blocks per group,
    # full cdiv(131072, 64) = 2048
    assert cap.blocks_per_request == 3 * 384 + 2048 == 3200
    assert cap.max_concurrency == pytest.approx(3.2)
    assert cap.tokens == int(10240 / 3200 * 131072) == 419430


# --- llama.cpp ----------------------------------------------------------------------------


def test_llamacpp_llama_4_scout_chunked_layers_use_the_swa_cache() -> None:
    a = lc.GgufArch.from_config(config("llama-4-scout"))
    ctx = lc.Context(n_ctx=32768, flash_attn=True)
    k, v = lc.kv_bytes(a, ctx)
    # f16 row: 8 heads x 128 x 2 B = 2048 B per cell, for K and for V
    # 12 global layers: 32768 cells; 36 chunked layers: pad(min(32768, 8192 + 512), 256)
    # = 8704 cells (llama_kv_cache_iswa, n_swa = attention_chunk_size)
    assert k == v == 12 * 2048 * 32768 + 36 * 2048 * 8704
    assert k + v == 2894069760


def test_llamacpp_qwen3_next_recurrent_state_is_f32() -> None:
    a = lc.GgufArch.from_config(config("qwen3-next-80b-a3b"))
    k, v = lc.kv_bytes(a, lc.Context(n_ctx=4096, n_seq_max=2))
    # 12 attention layers: 2 heads x 256 x 2 B = 1024 B per cell, 4096 cells;
    # 36 delta-net layers, 2 sequences: r = 24,576 and s = 524,288 floats of 4 B
    assert k == 12 * 1024 * 4096 + 36 * 24576 * 4 * 2
    assert v == 12 * 1024 * 4096 + 36 * 524288 * 4 * 2


def test_vllm_qwen3_next_state_in_the_model_dtype() -> None:
    """vLLM 0.34 keeps the delta-net state in the model dtype (mamba_cache_dtype and
    mamba_ssm_cache_dtype "auto"), and TP divides its channels and value heads."""
    m = serve_model("qwen3-next-80b-a3b")
    state, full = m.kv[0], m.kv[3]
    s = vllm.Serve(gpu_memory_bytes=80 * GIB, max_model_len=131072)
    # (24,576 + 524,288) elements x 2 B
    assert vllm.state_bytes(state, m, s) == 1097728
    tp2 = vllm.Serve(gpu_memory_bytes=80 * GIB, max_model_len=131072, tensor_parallel_size=2)
    assert vllm.state_bytes(state, m, tp2) == (12288 + 262144) * 2
    # float32 temporal state on request: 24,576 x 2 + 524,288 x 4
    f32 = vllm.Serve(
        gpu_memory_bytes=80 * GIB, max_model_len=131072, mamba_ssm_cache_dtype="float32"
    )
    assert vllm.state_bytes(state, m, f32) == 2146304
    # attention block: 64 x cdiv(1,097,728, 64 x 2,048) = 64 x 9 = 576 tokens, so a page
    # of a full layer (2 heads x 512 x 2 B per token) and a padded state page match
    assert vllm.block_size(m, s) == 576
    assert vllm.page_bytes(full, m, s) == vllm.page_bytes(state, m, s) == 576 * 2048
    # 36 state + 12 full layers: groups of 12, a block is 12 pages
    cap = vllm.capacity(m, s, 20 * GIB)
    assert cap.bytes_per_block == 12 * 1179648
    assert cap.num_blocks == 1517
    # one request: cdiv(131072, 576) = 228 full blocks + 1 page per state group
    assert cap.blocks_per_request == 228 + 3
    assert cap.tokens == int(1517 / 231 * 131072) == 860762


def test_vllm_state_dtype_names_the_field() -> None:
    with pytest.raises(ValueError, match="mamba_ssm_cache_dtype: 'fp4'"):
        vllm.Serve(gpu_memory_bytes=GIB, max_model_len=8, mamba_ssm_cache_dtype="fp4")


def test_deepseek_r1_does_not_start_on_one_h100() -> None:
    """llm-d's E11 run of DeepSeek-R1 (FP8, TP 1) on an H100 (79.18 GiB, utilization 0.9)
    ran out of memory while loading: 627 GiB of weights against 71.26 GiB requested."""
    m = serve_model("deepseek-r1", "fp8")
    s = vllm.Serve(
        gpu_memory_bytes=int(79.18 * GIB), max_model_len=16000, gpu_memory_utilization=0.9
    )
    b = vllm.budget(m, s)
    assert b.weights == 673150611808 + 2046820352
    assert not vllm.starts(b, vllm.capacity(m, s, b.kv))
