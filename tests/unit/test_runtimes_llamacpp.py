"""llama.cpp buffers: values derived by hand from the llama.cpp source cited in
nnmem.runtimes.llamacpp and nnmem.runtimes.gguf_types."""

import pytest

from nnmem import catalog
from nnmem.runtimes import gguf_types as gt
from nnmem.runtimes import llamacpp as lc

LLAMA_1B = lc.GgufArch.from_config(catalog.models()["llama-3.2-1b"].config)
QWEN_05B = lc.GgufArch.from_config(catalog.models()["qwen2.5-0.5b"].config)
GEMMA_1B = lc.GgufArch.from_config(catalog.models()["gemma-3-1b"].config)


def test_block_sizes():
    # block_q4_K: 144 B per 256; block_q6_K: 210 B per 256; block_q8_0: 34 B per 32
    assert gt.row_bytes("Q4_K", 2048) == 8 * 144
    assert gt.row_bytes("Q6_K", 8192) == 32 * 210
    assert gt.row_bytes("Q8_0", 64) == 68
    assert gt.row_bytes("Q4_0", 64) == 36
    assert gt.bits_per_weight("IQ4_XS") == 4.25
    assert gt.bits_per_weight("NVFP4") == 4.5
    with pytest.raises(ValueError, match="not a multiple of the Q4_K block"):
        gt.row_bytes("Q4_K", 896)
    with pytest.raises(ValueError, match="unknown GGUF tensor type 'Q9_9'"):
        gt.row_bytes("Q9_9", 32)


def test_q4_k_m_mixture_for_llama_3_2_1b():
    types = {t.name: t.type for t in lc.quantized_tensors(LLAMA_1B, "Q4_K_M")}
    # use_more_bits(i, 16): i < 2, i >= 14, or (i - 2) % 3 == 2
    more = {0, 1, 4, 7, 10, 13, 14, 15}
    for i in range(16):
        want = "Q6_K" if i in more else "Q4_K"
        assert types[f"blk.{i}.attn_v.weight"] == want
        assert types[f"blk.{i}.ffn_down.weight"] == want
        assert types[f"blk.{i}.attn_q.weight"] == "Q4_K"
        assert types[f"blk.{i}.ffn_up.weight"] == "Q4_K"
        assert types[f"blk.{i}.attn_norm.weight"] == "F32"
    # tied embeddings are quantized as the output: Q6_K
    assert types["token_embd.weight"] == "Q6_K"


def test_fallback_when_rows_are_not_multiples_of_256():
    types = {t.name: t.type for t in lc.quantized_tensors(QWEN_05B, "Q4_K_M")}
    # 896 columns: Q4_K -> Q5_0, Q6_K -> Q8_0 (tensor_type_fallback); the tied
    # output with 896 % 256 != 0 goes straight to Q8_0
    assert types["blk.5.attn_q.weight"] == "Q5_0"
    assert types["blk.0.attn_v.weight"] == "Q8_0"
    # use_more_bits(5, 24): (5 - 3) % 3 == 2, so Q6_K -> Q8_0; layer 6 stays Q4_K -> Q5_0
    assert types["blk.5.attn_v.weight"] == "Q8_0"
    assert types["blk.6.attn_v.weight"] == "Q5_0"
    # ffn_down rows are 4864 = 19 x 256 wide, so Q6_K stays
    assert types["blk.0.ffn_down.weight"] == "Q6_K"
    assert types["token_embd.weight"] == "Q8_0"
    assert types["blk.0.attn_q.bias"] == "F32"


def test_kv_cache_f16_and_q8_0():
    ctx = lc.Context(n_ctx=4096)
    k, v = lc.kv_bytes(LLAMA_1B, ctx)
    # 16 layers x 4096 cells x 8 heads x 64 x 2 bytes
    assert k == v == 16 * 4096 * 512 * 2
    ctx8 = lc.Context(n_ctx=4096, type_k="q8_0", type_v="q8_0", flash_attn=True)
    k8, v8 = lc.kv_bytes(LLAMA_1B, ctx8)
    assert k8 == v8 == 16 * 4096 * (512 // 32 * 34)


def test_n_ctx_is_padded_and_split_per_stream():
    # 1000 -> 1024 cells
    assert lc.Context(n_ctx=1000).cells() == (1024, 1)
    # not unified: 8192 / 3 = 2730 -> 2816 per stream
    assert lc.Context(n_ctx=8192, n_seq_max=3, kv_unified=False).cells() == (2816, 3)


def test_gemma_3_sliding_layers_hold_window_plus_ubatch():
    ctx = lc.Context(n_ctx=16384)
    k, _ = lc.kv_bytes(GEMMA_1B, ctx)
    # 22 sliding layers x pad(512 + 512, 256) = 1024 cells, 4 global x 16384; row 256 x 2 B
    assert k == (22 * 1024 + 4 * 16384) * 512
    k2, _ = lc.kv_bytes(GEMMA_1B, lc.Context(n_ctx=16384, n_seq_max=4))
    # unified with 4 sequences: pad(512 * 4 + 512) = 2560 cells
    assert k2 == (22 * 2560 + 4 * 16384) * 512


def test_output_buffer_is_logits_for_each_sequence():
    assert lc.output_bytes(QWEN_05B, lc.Context()) == 151936 * 4
    assert lc.output_bytes(QWEN_05B, lc.Context(n_seq_max=2)) == 2 * 151936 * 4


def test_ngl_counts_the_output_layer():
    tensors = lc.quantized_tensors(LLAMA_1B, "Q4_K_M")
    ctx = lc.Context(n_ctx=4096)
    cpu_only = lc.place(LLAMA_1B, tensors, ctx, 0)
    assert cpu_only.gpu_bytes == [0]
    # -ngl 1 offloads only the output layer (here the tied token_embd duplicate)
    one = lc.place(LLAMA_1B, tensors, ctx, 1)
    embd = next(t for t in tensors if t.name == "token_embd.weight")
    assert one.parts["weights_gpu"] == [embd.bytes + lc._pad(4 * 2048, 32)]
    assert one.parts["kv_gpu"] == [0]
    # -ngl 17 = 16 layers + output: all KV on the GPU
    full = lc.place(LLAMA_1B, tensors, ctx, 17)
    assert full.parts["kv_cpu"] == 0
    assert full.parts["kv_gpu"] == [2 * 16 * 4096 * 512 * 2]


def test_two_gpu_split_is_by_layer():
    tensors = lc.quantized_tensors(LLAMA_1B, "Q8_0")
    p = lc.place(LLAMA_1B, tensors, lc.Context(n_ctx=4096), 17, [1.0, 1.0])
    # layer il goes to the first GPU whose cumulative split exceeds il / 17:
    # il = 0..8 (8/17 < 0.5) on GPU 0; 9..15 and the output on GPU 1
    per_layer_kv = 2 * 4096 * 512 * 2
    assert p.parts["kv_gpu"] == [9 * per_layer_kv, 7 * per_layer_kv]


def test_largest_ngl_and_longest_context():
    tensors = lc.quantized_tensors(LLAMA_1B, "Q4_K_M")
    ctx = lc.Context(n_ctx=4096)
    assert lc.largest_ngl(LLAMA_1B, tensors, ctx, [64 * 2**30]) == 17
    assert lc.largest_ngl(LLAMA_1B, tensors, ctx, [1]) == 0
    n = lc.longest_context(LLAMA_1B, tensors, ctx, [2 * 2**30], 17, 131072)
    assert n % 256 == 0
    assert 0 < n < 131072
    over = lc.Context(n_ctx=n + 256)
    assert lc.place(LLAMA_1B, tensors, over, 17).gpu_bytes[0] > 2 * 2**30


def test_command_line_and_ollama():
    ctx = lc.Context(n_ctx=8192, type_k="q8_0", type_v="q8_0", flash_attn=True)
    assert lc.command_line("m.gguf", ctx, 99) == (
        "llama-server -m m.gguf -c 8192 -ngl 99 -ctk q8_0 -ctv q8_0 -fa on"
    )
    o = lc.ollama_view(4096, 4)
    assert (o.n_ctx, o.n_seq_max) == (16384, 4)


def test_bad_context_is_named():
    with pytest.raises(ValueError, match="type_k: 'q3'"):
        lc.Context(type_k="q3")
    with pytest.raises(ValueError, match="needs flash attention"):
        lc.Context(type_v="q4_0")


def test_compute_buffer_peaks():
    # FA off, n_ctx 4096, n_ubatch 512: scores 4096 x 512 x 32 and mask 4096 x 512 in
    # f32, plus Q, attention output, K, V and residual (2*2048 + 2*512 + 2048) per token
    attn = 4 * 512 * 4096 * 33 + 4 * 512 * (2 * 2048 + 2 * 512 + 2048)
    assert lc.compute_buffer_bytes(LLAMA_1B, lc.Context(n_ctx=4096)) == attn
    # FA on: the output head sets the peak, logits 128256 + two 2048 rows per token
    fa = lc.Context(n_ctx=4096, flash_attn=True)
    assert lc.compute_buffer_bytes(LLAMA_1B, fa) == 4 * 512 * (128256 + 2 * 2048)
    # n_ubatch is capped by n_batch
    small = lc.Context(n_ctx=4096, n_batch=128, n_ubatch=512, flash_attn=True)
    assert lc.compute_buffer_bytes(LLAMA_1B, small) == 4 * 128 * (128256 + 2 * 2048)


def test_repack_counts_the_cpu_interleaved_types():
    tensors = lc.quantized_tensors(LLAMA_1B, "Q4_K_M")
    q4k = sum(t.bytes for t in tensors if t.type == "Q4_K")
    assert lc.cpu_repack_bytes(tensors) == q4k
    assert lc.cpu_repack_bytes(lc.quantized_tensors(LLAMA_1B, "Q8_0")) == 0


def test_recurrent_state_is_f32_per_sequence():
    from nnmem.runtimes.kvspec import LayerKV

    layer = LayerKV("state", state=((1000, 2), (4096, 4)))
    # r and s rows of 1000 and 4096 elements, f32, one row per sequence
    assert lc.kv_layer_bytes(layer, lc.Context(n_seq_max=3)) == (3 * 4000, 3 * 16384)


def test_moe_tensors_for_qwen3_30b_a3b():
    a = lc.GgufArch.from_config(catalog.models()["qwen3-30b-a3b"].config)
    ts = lc.f16_tensors(a)
    n = 0
    for t in ts:
        k = 1
        for d in t.shape:
            k *= d
        n += k
    # the stacked experts {2048, 768, 128} and the router {2048, 128} reproduce the
    # catalog's exact parameter count
    assert n == catalog.models()["qwen3-30b-a3b"].params
    q4 = {t.name: t.type for t in lc.quantized_tensors(a, "Q4_K_M")}
    assert q4["blk.0.ffn_gate_inp.weight"] == "F32"
    assert q4["blk.0.ffn_gate_exps.weight"] == "Q4_K"
    # ffn_down_exps follows use_more_bits(layer, 48): layer 0 yes, layer 6 no
    assert q4["blk.0.ffn_down_exps.weight"] == "Q6_K"
    assert q4["blk.6.ffn_down_exps.weight"] == "Q4_K"
    mx = {t.name: t.type for t in lc.quantized_tensors(a, "MXFP4_MOE")}
    # MXFP4_MOE: 3-D expert tensors in MXFP4, every other quantizable tensor Q8_0
    assert mx["blk.3.ffn_up_exps.weight"] == "MXFP4"
    assert mx["blk.3.attn_q.weight"] == "Q8_0"
    assert mx["output.weight"] == "Q8_0"
    assert mx["token_embd.weight"] == "Q8_0"
