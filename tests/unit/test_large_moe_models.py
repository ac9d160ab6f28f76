"""DeepSeek-V3/R1, Kimi K2, GLM-4.5, Qwen3-Next, Llama 4, gpt-oss: parameters and caches.

Each expected value is worked out by hand in the comments from the model's config.json
(``nnmem/data/models.json``) and the transformers 5.25 modeling file that
allocates the tensors:

- ``modeling_deepseek_v3.py``: DeepseekV3Attention (q_a/q_b/kv_a/kv_b/o and two latent
  norms), DeepseekV3MLP for layers below first_k_dense_replace, DeepseekV3MoE (router
  ``E x h``; e_score_correction_bias is a buffer, not a parameter; routed experts; one
  ungated shared MLP of moe_intermediate_size x n_shared_experts);
- ``modeling_glm4_moe.py``: Glm4MoeAttention (q/k/v with bias, o without, q/k norms),
  Glm4MoeDecoderLayer, Glm4MoeMoE as DeepSeek's;
- ``modeling_qwen3_next.py``: Qwen3NextAttention (q_proj doubled for the output gate),
  Qwen3NextGatedDeltaNet, Qwen3NextSparseMoeBlock (shared expert with a gate h -> 1);
- ``modeling_llama4.py``: Llama4TextAttention (no bias, weightless QK norm),
  Llama4TextMoe (router without bias, experts, ungated shared MLP), dense MLPs of
  intermediate_size_mlp off the moe_layers, Llama4VisionModel and the projector;
- ``modeling_gpt_oss.py``: GptOssAttention (biases, one sink per head), GptOssTopKRouter
  (with bias), GptOssExperts (gate_up and down with biases).

``benchmarks/catalog/verify_params.py`` builds each class on the meta device and finds the
same totals (torch 2.13.0, transformers 5.25.0).
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem import estimate
from nnmem.models.architecture import (
    active_parameters,
    from_config,
    parameter_counts,
    parameter_tensors,
)
from nnmem.models.transformer import kv_cache_term
from nnmem.runtimes.models import config, param_count, runtime_models
from nnmem.scenario import parse

# DeepSeek-V3: h 7168, L 61, a 128, q_lora 1536, kv_lora 512, nope 128, rope 64, v 128,
# dense f 18432 (3 layers), 256 experts + 1 shared of 2048 (58 layers), vocab 129280.
#   attention: q_a 1536·7168 = 11,010,048, q_a_layernorm 1,536, q_b 128·192·1536 =
#     37,748,736, kv_a 576·7168 = 4,128,768, kv_a_layernorm 512, kv_b 128·256·512 =
#     16,777,216, o 7168·16384 = 117,440,512; sum 187,107,328; + norms 2·7168
#     = 187,121,664; x 61 = 11,414,421,504
#   dense MLP 3·7168·18432 = 396,361,728; x 3 = 1,189,085,184
#   MoE: router 256·7168 = 1,835,008, experts 256·3·7168·2048 = 11,274,289,152,
#     shared 3·7168·2048 = 44,040,192; sum 11,320,164,352; x 58 = 656,569,532,416
#   layers 669,173,039,104; embedding and head 2·129280·7168 = 1,853,358,080; norm 7,168
#   total 671,026,404,352; with the 58·256 = 14,848 float32 e_score_correction_bias
#   values the checkpoint stores, 671,026,419,200 (the main model's published total).
DEEPSEEK_V3 = 671_026_404_352
# Kimi K2: as DeepSeek-V3 with a 64, 384 experts, 1 dense layer, vocab 163840.
#   attention: 11,010,048 + 1,536 + 64·192·1536 (18,874,368) + 4,128,768 + 512
#     + 64·256·512 (8,388,608) + 7168·8192 (58,720,256) = 101,124,096; + 14,336 norms
#     = 101,138,432; x 61 = 6,169,444,352
#   dense 396,361,728 x 1; MoE: 384·7168 (2,752,512) + 384·44,040,192 (16,911,433,728)
#     + 44,040,192 = 16,958,226,432; x 60 = 1,017,493,585,920
#   layers 1,024,059,392,000; embedding and head 2·163840·7168 = 2,348,810,240; norm 7,168
#   total 1,026,408,209,408 (+ 60·384 = 23,040 bias buffers = 1,026,408,232,448, the
#   safetensors tensor list's parameters).
KIMI_K2 = 1_026_408_209_408
# GLM-4.5: h 5120, L 92, a 96, a_kv 8, d 128, dense f 12288 (3 layers), 160 experts + 1
# shared of 1536 (89 layers), vocab 151552, q/k/v bias, q/k norms.
#   attention: q 5120·12288 + 12288 = 62,926,848; k, v 2·(5120·1024 + 1024) = 10,487,808;
#     o 12288·5120 = 62,914,560; q/k norms 256; sum 136,329,472; + norms 10,240
#     = 136,339,712; x 92 = 12,543,253,504
#   dense 3·5120·12288 = 188,743,680; x 3 = 566,231,040
#   MoE: 160·5120 (819,200) + 160·3·5120·1536 (3,774,873,600) + 23,592,960
#     = 3,799,285,760; x 89 = 338,136,432,640
#   layers 351,245,917,184; embedding and head 2·151552·5120 = 1,551,892,480; norm 5,120
#   total 352,797,814,784 (the model card's 355B includes the MTP layer).
GLM_45 = 352_797_814_784
# Qwen3-Next-80B-A3B: h 2048, L 48 (12 full attention, 36 gated delta net), a 16,
# a_kv 2, d 256, 512 experts of 512 + a shared expert of 512, vocab 151936;
# k = 16·128 = 2048, v = 32·128 = 4096, conv kernel 4.
#   full attention: q 2048·(2·16·256) = 16,777,216, k, v 2·2048·512 = 2,097,152,
#     o 4096·2048 = 8,388,608, q/k norms 512; sum 27,263,488; x 12 = 327,161,856
#   delta net: in_proj_qkvz 12288·2048 = 25,165,824, in_proj_ba 64·2048 = 131,072,
#     conv1d 8192·4 = 32,768, dt_bias 32, A_log 32, norm 128, out_proj 2048·4096
#     = 8,388,608; sum 33,718,464; x 36 = 1,213,864,704
#   MoE: 512·2048 (1,048,576) + 512·3·2048·512 (1,610,612,736) + 3·2048·512 (3,145,728)
#     + gate 2048 = 1,614,809,088; + norms 4,096; x 48 = 77,511,032,832
#   layers 79,052,059,392; embedding and head 2·151936·2048 = 622,329,856; norm 2,048
#   total 79,674,391,296 (the model card's 80B).
QWEN3_NEXT = 79_674_391_296
# Llama 4 Scout: h 5120, L 48 all MoE (16 experts of 8192 + a shared one), a 40, a_kv 8,
# d 128, vocab 202048.
#   attention 2·5120·5120 + 2·5120·1024 = 62,914,560; + norms 10,240
#   MoE: 16·5120 (81,920) + 16·3·5120·8192 (2,013,265,920) + 125,829,120 = 2,139,176,960
#   layers 48·2,202,101,760 = 105,700,884,480; embedding and head 2·202048·5120
#   = 2,068,971,520; norm 5,120; text 107,769,861,120
#   vision (h 1408, f 5632, 34 layers, patch 14, image 336: 24² + 1 = 577 positions):
#     patch 1408·588 = 827,904, class 1,408, positions 577·1408 = 812,416, LayerNorms
#     pre/post 4·1408 = 5,632; per layer q/k/v/o 4·(1408² + 1408) = 7,935,488, fc1
#     1408·5632 + 5632 = 7,935,488, fc2 5632·1408 + 1408 = 7,931,264, LayerNorms 5,632:
#     23,807,872 x 34 = 809,467,648; adapter fc1 5632·4096 = 23,068,672, fc2 4096²
#     = 16,777,216; projector 4096·5120 = 20,971,520; vision 871,932,416
#   total 108,641,793,536 (the model card's 109B).
SCOUT = 108_641_793_536
SCOUT_VISION = 871_932_416
# Llama 4 Maverick: 128 experts, MoE every 2nd layer (24), the other 24 dense of 16384.
#   MoE: 128·5120 (655,360) + 128·125,829,120 (16,106,127,360) + 125,829,120
#     = 16,232,611,840; x 24 = 389,582,684,160
#   dense 3·5120·16384 = 251,658,240; x 24 = 6,039,797,760
#   attention and norms 48·62,924,800 = 3,020,390,400
#   layers 398,642,872,320; + 2,068,971,520 + 5,120 + vision 871,932,416
#   total 401,583,781,376 (the model card's 400B).
MAVERICK = 401_583_781_376
# gpt-oss-20b (modeling_gpt_oss.py): h 2880, L 24, a 64, a_kv 8, d 64, 32 experts of 2880,
# vocab 201088, attention_bias true.
#   attention: q 2880·4096 + 4096 = 11,800,576; k, v 2·(2880·512 + 512) = 2,950,144;
#     o 4096·2880 + 2880 = 11,799,360; sinks 64; sum 26,550,144
#   router 32·2880 + 32 = 92,192; experts 32·(3·2880·2880 + 3·2880) = 796,538,880 (gate_up
#     [E, h, 2f] + bias [E, 2f], down [E, f, h] + bias [E, h]); norms 5,760
#   layers 24·823,186,976 = 19,756,487,424; embedding and head 2·201088·2880
#   = 1,158,266,880; norm 2,880; total 20,914,757,184 (the model card's 21B)
GPT_OSS_20B = 20_914_757_184


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("deepseek-v3", DEEPSEEK_V3),
        ("deepseek-r1", DEEPSEEK_V3),
        ("kimi-k2", KIMI_K2),
        ("glm-4.5", GLM_45),
        ("qwen3-next-80b-a3b", QWEN3_NEXT),
        ("llama-4-scout", SCOUT),
        ("llama-4-maverick", MAVERICK),
        ("gpt-oss-20b", GPT_OSS_20B),
    ],
)
def test_parameters_as_transformers_allocates_them(model_id: str, expected: int) -> None:
    t = from_config(config(model_id))
    assert sum(parameter_counts(t).values()) == expected
    assert sum(p.elements for p in parameter_tensors(t)) == expected


@pytest.mark.parametrize(
    ("model_id", "buffers"),
    [
        ("deepseek-v3", 58 * 256),  # e_score_correction_bias of each MoE layer
        ("kimi-k2", 60 * 384),
        ("glm-4.5", 89 * 160),
        ("qwen3-next-80b-a3b", 0),
        ("llama-4-maverick", 0),
        ("gpt-oss-120b", 0),
    ],
)
def test_agrees_with_the_runtime_weights(model_id: str, buffers: int) -> None:
    """The runtimes count the checkpoint's tensors, buffers included (runtimes/models.py)."""
    total = sum(parameter_counts(from_config(config(model_id))).values())
    assert total + buffers == param_count(model_id)


def test_deepseek_v3_latent_attention_shapes() -> None:
    t = from_config(config("deepseek-v3"))
    shapes = {p.name: (p.shape, p.count) for p in parameter_tensors(t)}
    assert shapes["layers.*.attn.q_b_proj.weight"] == ((128 * 192, 1536), 61)
    assert shapes["layers.*.attn.kv_a_proj_with_mqa.weight"] == ((512 + 64, 7168), 61)
    assert shapes["layers.*.attn.kv_b_proj.weight"] == ((128 * (128 + 128), 512), 61)
    assert shapes["layers.*.attn.o_proj.weight"] == ((7168, 128 * 128), 61)
    assert shapes["layers.*.mlp.gate_proj.weight"] == ((18432, 7168), 3)
    # 58 MoE layers x 256 experts; the shared expert has no gate
    assert shapes["layers.*.experts.*.gate_proj.weight"] == ((2048, 7168), 58 * 256)
    assert shapes["layers.*.shared_expert.up_proj.weight"] == ((2048, 7168), 58)
    assert "layers.*.shared_expert_gate.weight" not in shapes


def test_active_parameters() -> None:
    """Total minus the unused experts of every MoE layer: DeepSeek-V3 58·(256 - 8)·
    44,040,192 = 633,474,121,728 unused, 37,552,282,624 active (model card: 37B);
    Llama 4 Maverick 24·127·125,829,120 = 383,527,157,760 unused."""
    assert active_parameters(from_config(config("deepseek-v3"))) == 37_552_282_624
    assert active_parameters(from_config(config("llama-4-maverick"))) == 18_056_623_616


def scenario(model_id: str, **settings: Any) -> Any:
    return parse(
        {
            "model": "transformer",
            "config": config(model_id),
            "mode": "inference",
            "precision": "bf16",
            **settings,
        }
    )


def test_mla_caches_the_latent() -> None:
    """DeepseekV3Attention caches kv_nope [b, 1, s, 512] and k_rot [b, 1, s, 64]:
    61 · 4 · 4096 · 576 · 2 B = 1,151,336,448 for 4 sequences of 4,096 tokens."""
    s = scenario("deepseek-v3", batch_size=4, seq_len=4096)
    term = kv_cache_term(s, from_config(config("deepseek-v3")), 4096, decoding=True)
    assert term.bytes == 61 * 4 * 4096 * 576 * 2 == 1_151_336_448


def test_gated_delta_net_keeps_a_fixed_state() -> None:
    """Qwen3-Next at 4,096 tokens, one sequence, bf16:
    12 attention layers: 2 · 12 · 2 · 4096 · 256 · 2 B = 100,663,296;
    36 conv states of (2·2048 + 4096) x 4 in bf16: 36 · 8192 · 4 · 2 B = 2,359,296;
    36 recurrent states of 32 x 128 x 128 in fp32: 36 · 524,288 · 4 B = 75,497,472;
    total 178,520,064. Doubling the tokens adds only the attention layers' share."""
    t = from_config(config("qwen3-next-80b-a3b"))
    s = scenario("qwen3-next-80b-a3b", seq_len=4096)
    assert kv_cache_term(s, t, 4096, decoding=True).bytes == 178_520_064
    assert kv_cache_term(s, t, 8192, decoding=True).bytes == 178_520_064 + 100_663_296


def test_chunked_layers_keep_one_chunk() -> None:
    """Llama 4 Scout: 36 of 48 layers are chunked (chunk 8192; every 4th layer is NoPE
    and global). At 16,384 tokens: 12 · 16384 + 36 · 8192 = 491,520 layer-tokens of
    2 · 8 · 128 · 2 B = 4,096 B, so 2,013,265,920 bytes (full layers everywhere would
    hold 48 · 16384 · 4096 = 3,221,225,472)."""
    t = from_config(config("llama-4-scout"))
    s = scenario("llama-4-scout", seq_len=16384)
    assert t.chunked_layers == 36
    assert kv_cache_term(s, t, 16384, decoding=True).bytes == 2_013_265_920


def test_vision_tower_is_a_module_of_its_own() -> None:
    counts = parameter_counts(from_config(config("llama-4-scout")))
    assert counts["vision"] == SCOUT_VISION


def test_estimates_say_what_is_approximate() -> None:
    notes = estimate(scenario("deepseek-v3", seq_len=1024)).notes
    assert any("latent attention" in n for n in notes)
    assert any("70,272 bytes per token" in n for n in notes)  # 61 · 576 · 2
    notes = estimate(scenario("qwen3-next-80b-a3b", seq_len=1024)).notes
    assert any("gated delta net" in n for n in notes)


def test_the_runtimes_find_the_presets() -> None:
    """Every catalog entry with a weights object is a runtime model, and only those."""
    assert sorted(runtime_models()) == [
        "deepseek-r1",
        "deepseek-v3",
        "glm-4.5",
        "gpt-oss-120b",
        "gpt-oss-20b",
        "kimi-k2",
        "llama-4-maverick",
        "llama-4-scout",
        "qwen3-next-80b-a3b",
    ]
    assert runtime_models()["kimi-k2"]["weights"]["formats"] == ["fp8", "bf16"]


def test_llama_4_context_limit_reads_the_text_config() -> None:
    """Llama 4 Scout's text_config states max_position_embeddings 10,485,760."""
    from nnmem import solvers

    s = parse({"model": "preset", "preset": "llama-4-scout", "mode": "inference"})
    limit = solvers.context_limit(s)
    assert limit is not None
    assert limit.tokens == 10_485_760


def test_tensor_parallel_splits_heads_not_latents_or_states() -> None:
    """At TP 2 the MLA latent stays whole on each rank (kv_a_proj_with_mqa is
    'mla_kv_a_proj' in DeepseekV3Config.base_model_tp_plan) and so do Qwen3-Next's
    delta-net states (in_proj 'colwise_gather_output'); its attention keys and values
    halve: 100,663,296 / 2 + 2,359,296 + 75,497,472 = 128,188,416."""
    two = {"tensor_parallel": 2, "num_gpus": 2}
    t = from_config(config("deepseek-v3"))
    s = scenario("deepseek-v3", batch_size=4, seq_len=4096, **two)
    assert kv_cache_term(s, t, 4096, decoding=True).bytes == 1_151_336_448
    t = from_config(config("qwen3-next-80b-a3b"))
    s = scenario("qwen3-next-80b-a3b", seq_len=4096, **two)
    assert kv_cache_term(s, t, 4096, decoding=True).bytes == 128_188_416


def test_llama_4_runs_every_token_through_every_expert() -> None:
    """Llama4TextMoe.forward repeats the hidden states for all E experts and
    Llama4TextExperts.forward multiplies them in one bmm, so the expert rows carry E
    tokens' worth per token, not num_experts_per_tok (1). Traced on a 4-layer Scout
    (CPU, FakeTensorMode, transformers 5.25, prompt 2,048): 2,589,098,016 bytes of prefill
    working set; the estimate 2,569,224,192."""
    from nnmem.models.transformer import context

    c = context(scenario("llama-4-scout", seq_len=2048))
    assert c.sizes["k"] == 16


def test_latent_attention_falls_back_to_math_sdpa_on_the_cpu() -> None:
    """The value head (128) differs from the query/key head (192): the CPU's fused SDPA
    kernel refuses it and the math kernel materializes the scores (traced:
    "sdpa_math_fallback"). On CUDA the estimate keeps the SDPA rows: PyTorch's
    memory-efficient kernel accepts a value head that differs (sdp_utils.cpp), which was
    not measured here."""
    from nnmem.models.transformer import context

    assert context(scenario("deepseek-v3", seq_len=2048, device="cpu")).eager
    assert not context(scenario("deepseek-v3", seq_len=2048, device="cuda")).eager


@pytest.mark.parametrize(
    ("model_id", "seq", "expected"),
    [
        # Llama 4 Scout, shared expert of 8192, bf16: gate output, activation and up
        # outputs, product: 4 · 512 · 8192 · 2 B = 33,554,432 per layer
        ("llama-4-scout", 512, 33_554_432),
        # Qwen3-Next, shared expert of 512 with a sigmoid gate: 4 · 256 · 512 · 2 B
        # = 1,048,576, the gate 256 · 2 B = 512, its product's other input 256 · 2048 · 2 B
        # = 1,048,576; 2,097,664 per layer
        ("qwen3-next-80b-a3b", 256, 2_097_664),
    ],
)
def test_shared_expert_saves_its_intermediates(model_id: str, seq: int, expected: int) -> None:
    """Training saves the shared expert's MLP intermediates in every MoE layer (traced
    4-layer Llama 4 Scout at 512 tokens: 3,644,530,700 bytes saved, estimated
    3,607,722,240 with these rows, 3,473,504,512 without)."""
    from nnmem.models.tensors import total_bytes
    from nnmem.models.transformer import context
    from nnmem.models.transformer.tables import _shared_expert_rows

    c = context(scenario(model_id, mode="training", seq_len=seq))
    assert total_bytes(_shared_expert_rows(c), c.sizes, c.widths) == expected


def test_tensor_parallelism_splits_the_shared_expert_rows() -> None:
    # The shared expert's MLP is column/row parallel like the routed experts' (Megatron
    # splits every MLP's intermediate width), so its saved rows halve at TP 2. Llama 4
    # Scout, LoRA on q and v, 1,024 tokens: the frozen down_proj saves no input, so each
    # of its 48 layers keeps the gate output and the act and up outputs, 3 x 1,024 x
    # 8,192 x 2 B; halved, that is 1,207,959,552 B less per rank than whole. The other
    # rows TP splits account for 19,936,839,168 B of the difference.
    def saved(tp: int) -> int:
        e = estimate(
            parse(
                {
                    "model": "preset",
                    "preset": "llama-4-scout",
                    "precision": "bf16",
                    "seq_len": 1024,
                    "tensor_parallel": tp,
                    "num_gpus": tp,
                    "finetune": "lora",
                }
            )
        )
        forward = next(p for p in e.phases if p.name == "forward")
        return next(t.bytes for t in forward.terms if t.label == "saved per layer")

    assert 3 * 1024 * 8192 * 2 * 48 // 2 == 1_207_959_552
    assert saved(1) - saved(2) == 19_936_839_168 + 1_207_959_552
