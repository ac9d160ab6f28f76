"""Models for the runtimes: the catalog's; those with a ``weights`` object are priced by
their published checkpoints.

Weights as a checkpoint stores them:

- ``bf16``/``fp16``: 2 bytes per parameter.
- ``fp8`` (compressed-tensors FP8-dynamic, e.g. RedHatAI's Llama-3.3-70B-FP8): the
  linear layers of the decoder in 1 byte plus one fp32 scale per output channel;
  embeddings, norms and the LM head stay bf16.
- ``mxfp4`` (gpt-oss): MoE expert matrices at 17 bytes per 32 weights (16 bytes of
  E2M1 pairs + one E8M0 scale, OCP MX v1.0), the rest bf16.
- ``fp8`` of a block-quantized checkpoint (DeepSeek-V3/R1: ``quantization_config``
  ``weight_block_size [128, 128]``): every linear layer of the decoder in 1 byte plus
  one float32 ``weight_scale_inv`` per 128 x 128 block (vLLM 0.34
  ``vllm/model_executor/layers/quantization/utils/fp8_utils.py``
  ``create_fp8_scale_parameter``: ``cdiv(out, 128) x cdiv(in, 128)`` float32 per linear
  layer, per expert in ``Fp8MoEMethod``); the rest bf16.

The MoE models with a ``weights`` object (DeepSeek-V3/R1, Kimi K2, GLM-4.5,
Qwen3-Next, Llama 4) are counted as vLLM loads them: the main model without its
multi-token-prediction layer, float32 where vLLM allocates float32 (:class:`Weights`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from nnmem import catalog
from nnmem.runtimes.vllm import ServeModel


@cache
def runtime_models() -> dict[str, dict[str, Any]]:
    """The catalog models the runtimes price by their published checkpoints (those with a
    ``weights`` object in ``data/models.json``), by id.

    >>> sorted(runtime_models())[:3]
    ['deepseek-r1', 'deepseek-v3', 'glm-4.5']
    """
    return {
        m.id: {
            "id": m.id,
            "name": m.name,
            "hf_id": m.hf_id or m.id,
            "config": m.config,
            "weights": m.weights,
        }
        for m in catalog.models().values()
        if m.weights is not None
    }


def config(model_id: str) -> dict[str, Any]:
    """The config.json fields of a catalog or runtime model."""
    if model_id in runtime_models():
        return dict(runtime_models()[model_id]["config"])
    cat = catalog.models()
    if model_id not in cat:
        raise ValueError(f"model: unknown id {model_id!r}")
    return dict(cat[model_id].config)


def moe_params(cfg: dict[str, Any]) -> tuple[int, int]:
    """(total parameters, expert-matrix parameters) of a gpt-oss style MoE.

    transformers ``GptOssForCausalLM``: per layer q/k/v/o with biases, attention
    sinks (one per head), a router ``hidden x experts`` with bias, experts
    ``gate_up_proj [E, h, 2f]`` + bias ``[E, 2f]`` and ``down_proj [E, f, h]`` + bias
    ``[E, h]``, two RMSNorms; untied embedding and LM head, final norm.

    >>> moe_params(config("gpt-oss-20b"))[0]   # the model card's 20.9B
    20914757184
    """
    h = int(cfg["hidden_size"])
    L = int(cfg["num_hidden_layers"])
    H, K = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"])
    hd, f = int(cfg["head_dim"]), int(cfg["intermediate_size"])
    E, V = int(cfg["num_local_experts"]), int(cfg["vocab_size"])
    attn = h * H * hd + H * hd + 2 * (h * K * hd + K * hd) + H * hd * h + h + H
    router = h * E + E
    experts = E * (h * 2 * f + f * h)
    expert_bias = E * (2 * f + h)
    per_layer = attn + router + experts + expert_bias + 2 * h
    total = L * per_layer + 2 * V * h + h
    return total, L * experts


def dense_linear_params(cfg: dict[str, Any]) -> int:
    """Parameters of a Llama-style decoder's linear layers (q, k, v, o, gate, up, down)."""
    h = int(cfg["hidden_size"])
    L = int(cfg["num_hidden_layers"])
    H = int(cfg["num_attention_heads"])
    K = int(cfg.get("num_key_value_heads") or H)
    hd = int(cfg.get("head_dim") or h // H)
    f = int(cfg["intermediate_size"])
    return L * (h * H * hd + 2 * h * K * hd + H * hd * h + 3 * h * f)


@dataclass(frozen=True)
class Weights:
    """A checkpoint's parameters by how they are stored.

    ``linear``: the decoder's linear layers as ``(out_features, in_features, count)``,
    the part a block-FP8 checkpoint quantizes; ``other``: embeddings, LM head, norms,
    routers and biases (bf16); ``fp32``: parameters held in float32.
    """

    linear: tuple[tuple[int, int, int], ...]
    other: int
    fp32: int = 0

    @property
    def params(self) -> int:
        return sum(o * i * n for o, i, n in self.linear) + self.other + self.fp32

    def bytes(self, fmt: str) -> int:
        """Bytes in ``bf16`` or block ``fp8`` (see the module docstring)."""
        lin = sum(o * i * n for o, i, n in self.linear)
        if fmt == "bf16":
            return 2 * (lin + self.other) + 4 * self.fp32
        if fmt == "fp8":
            scales = sum(-(-o // 128) * -(-i // 128) * n for o, i, n in self.linear)
            return lin + 4 * scales + 2 * self.other + 4 * self.fp32
        raise ValueError(f"format: {fmt!r} is not one of bf16, fp8")


def _mla_moe(c: dict[str, Any]) -> Weights:
    """DeepSeek-V3/R1 and Kimi K2 (``DeepseekV3ForCausalLM``).

    Per layer (transformers ``DeepseekV3Attention``, ``DeepseekV3MoE``): q_a
    ``h -> q_lora``, q_b ``q_lora -> H*(nope+rope)``, kv_a ``h -> kv_lora+rope``, kv_b
    ``kv_lora -> H*(nope+v)``, o ``H*v -> h``, norms ``q_lora + kv_lora + 2h``; the first
    ``first_k_dense_replace`` layers a SwiGLU MLP of ``intermediate_size``, the rest a
    router ``E x h`` (+ ``e_score_correction_bias`` of E, float32: vLLM
    ``deepseek_v2.py`` ``DeepseekV2MoE``), E routed and ``n_shared_experts`` shared
    SwiGLU experts of ``moe_intermediate_size``. Untied embedding and LM head, final norm.
    """
    h, L = int(c["hidden_size"]), int(c["num_hidden_layers"])
    H, V = int(c["num_attention_heads"]), int(c["vocab_size"])
    ql, kl = int(c["q_lora_rank"]), int(c["kv_lora_rank"])
    nope, rope, v = int(c["qk_nope_head_dim"]), int(c["qk_rope_head_dim"]), int(c["v_head_dim"])
    f, fe = int(c["intermediate_size"]), int(c["moe_intermediate_size"])
    E, S = int(c["n_routed_experts"]), int(c["n_shared_experts"])
    dense = int(c["first_k_dense_replace"])
    moe = L - dense
    attn = ((ql, h, L), (H * (nope + rope), ql, L), (kl + rope, h, L), (H * (nope + v), kl, L),
            (h, H * v, L))  # fmt: skip
    mlp = ((f, h, 2 * dense), (h, f, dense))
    experts = ((fe, h, 2 * moe * (E + S)), (h, fe, moe * (E + S)))
    other = L * (ql + kl + 2 * h) + moe * E * h + 2 * V * h + h
    return Weights(attn + mlp + experts, other, fp32=moe * E)


def _glm4_moe(c: dict[str, Any]) -> Weights:
    """GLM-4.5 (transformers ``Glm4MoeForCausalLM``): q/k/v with biases and o without,
    per-head q/k RMSNorm (``use_qk_norm``), two layer norms; ``first_k_dense_replace``
    dense SwiGLU layers, then a router ``E x h`` and its ``e_score_correction_bias``
    (both float32 in vLLM: ``glm4_moe.py`` ``Glm4MoE``), E routed and
    ``n_shared_experts`` shared experts. Untied embedding and LM head, final norm."""
    h, L = int(c["hidden_size"]), int(c["num_hidden_layers"])
    H, K, d = int(c["num_attention_heads"]), int(c["num_key_value_heads"]), int(c["head_dim"])
    V, f, fe = int(c["vocab_size"]), int(c["intermediate_size"]), int(c["moe_intermediate_size"])
    E, S = int(c["n_routed_experts"]), int(c["n_shared_experts"])
    dense = int(c["first_k_dense_replace"])
    moe = L - dense
    attn = ((H * d, h, L), (K * d, h, 2 * L), (h, H * d, L))
    mlp = ((f, h, 2 * dense), (h, f, dense))
    experts = ((fe, h, 2 * moe * (E + S)), (h, fe, moe * (E + S)))
    bias = H * d + 2 * K * d if c.get("attention_bias") else 0
    qk_norm = 2 * d if c.get("use_qk_norm") else 0
    other = L * (bias + qk_norm + 2 * h) + 2 * V * h + h
    return Weights(attn + mlp + experts, other, fp32=moe * (E * h + E))


def _qwen3_next(c: dict[str, Any]) -> Weights:
    """Qwen3-Next (transformers ``Qwen3NextForCausalLM``).

    Gated delta net layers (``Qwen3NextGatedDeltaNet``): ``in_proj_qkvz`` ``h -> 2k + 2v``
    and ``in_proj_ba`` ``h -> 2 v_heads`` (k = key heads x key dim, v = value heads x
    value dim), a depthwise conv1d of ``(2k + v) x kernel``, ``dt_bias`` and ``A_log`` of
    v_heads, a gated RMSNorm of the value head dim, ``out_proj`` ``v -> h``. Full
    attention layers (``Qwen3NextAttention``): q ``h -> 2*H*d`` (query and output gate),
    k and v ``h -> K*d``, o ``H*d -> h``, q/k norms of d. Every layer: a router ``E x h``,
    E experts and one shared expert (SwiGLU), a shared-expert gate ``h -> 1``, two norms.
    """
    h, L = int(c["hidden_size"]), int(c["num_hidden_layers"])
    H, K, d = int(c["num_attention_heads"]), int(c["num_key_value_heads"]), int(c["head_dim"])
    kh, vh = int(c["linear_num_key_heads"]), int(c["linear_num_value_heads"])
    k, vd = kh * int(c["linear_key_head_dim"]), int(c["linear_value_head_dim"])
    v = vh * vd
    kernel = int(c["linear_conv_kernel_dim"])
    V, E = int(c["vocab_size"]), int(c["num_experts"])
    fe, fs = int(c["moe_intermediate_size"]), int(c["shared_expert_intermediate_size"])
    if c.get("mlp_only_layers") or int(c.get("decoder_sparse_step", 1)) != 1:
        raise ValueError("config: Qwen3-Next with dense layers is not modelled")
    from nnmem.runtimes.kvspec import layer_types

    full = layer_types(c).count("full_attention")
    lin = L - full
    attn = ((2 * H * d, h, full), (K * d, h, 2 * full), (h, H * d, full))
    delta = ((2 * k + 2 * v, h, lin), (2 * vh, h, lin), (h, v, lin))
    experts = ((fe, h, 2 * L * E), (h, fe, L * E), (fs, h, 2 * L), (h, fs, L), (1, h, L))
    other = (
        lin * ((2 * k + v) * kernel + 2 * vh + vd)
        + full * 2 * d
        + L * (E * h + 2 * h)
        + 2 * V * h
        + h
    )
    return Weights(attn + delta + experts, other)


def _llama4_vision(v: dict[str, Any], text_hidden: int) -> int:
    """Parameters of Llama 4's vision encoder and projector (vLLM
    ``vllm/model_executor/models/mllama4.py``; transformers ``Llama4VisionModel``).

    A class embedding and ``(image/patch)^2 + 1`` positional embeddings of width h, the
    unfold convolution ``channels*patch^2 -> h`` without bias, LayerNorms (weight and
    bias) before and after; per layer q/k/v/o ``h -> h`` with biases, fc1 ``h -> f`` and
    fc2 ``f -> h`` with biases, two LayerNorms; the pixel-shuffle MLP ``f ->
    projector_input_dim -> projector_output_dim`` (biases if
    ``multi_modal_projector_bias``); the projector ``vision_output_dim -> text hidden``.
    """
    h, f, L = int(v["hidden_size"]), int(v["intermediate_size"]), int(v["num_hidden_layers"])
    p, ch = int(v["patch_size"]), int(v["num_channels"])
    patches = (int(v["image_size"]) // p) ** 2 + 1
    stem = h + patches * h + ch * p * p * h + 4 * h
    layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
    pin, pout = int(v["projector_input_dim"]), int(v["projector_output_dim"])
    adapter = f * pin + pin * pout
    if v.get("multi_modal_projector_bias"):
        adapter += pin + pout
    return stem + L * layer + adapter + int(v["vision_output_dim"]) * text_hidden


def _llama4(cfg: dict[str, Any]) -> Weights:
    """Llama 4 (transformers ``Llama4ForConditionalGeneration``). The text decoder
    (``Llama4TextModel``): q/k/v/o without bias (the QK norm is a weightless L2 norm);
    MoE layers every ``interleave_moe_layer_step`` (``moe_layers`` = step-1, 2*step-1,
    ...) with a router ``E x h``, E experts and one shared expert of
    ``intermediate_size``; the other layers a SwiGLU MLP of ``intermediate_size_mlp``;
    two norms per layer; untied embedding and LM head. The vision encoder and projector
    (:func:`_llama4_vision`) stay bf16 (vLLM builds them with ``quant_config=None``)."""
    c = cfg.get("text_config") or cfg
    h, L = int(c["hidden_size"]), int(c["num_hidden_layers"])
    H, K, d = int(c["num_attention_heads"]), int(c["num_key_value_heads"]), int(c["head_dim"])
    V, E = int(c["vocab_size"]), int(c["num_local_experts"])
    f, fm = int(c["intermediate_size"]), int(c["intermediate_size_mlp"])
    step = int(c.get("interleave_moe_layer_step", 1))
    moe = len(range(step - 1, L, step))
    dense = L - moe
    attn = ((H * d, h, L), (K * d, h, 2 * L), (h, H * d, L))
    experts = ((f, h, 2 * moe * (E + 1)), (h, f, moe * (E + 1)))
    mlp = ((fm, h, 2 * dense), (h, fm, dense))
    other = moe * E * h + L * 2 * h + 2 * V * h + h
    if isinstance(cfg.get("vision_config"), dict):
        other += _llama4_vision(cfg["vision_config"], h)
    return Weights(attn + experts + mlp, other)


WEIGHTS = {
    "deepseek_v3": _mla_moe,
    "kimi_k2": _mla_moe,
    "glm4_moe": _glm4_moe,
    "qwen3_next": _qwen3_next,
    "llama4": _llama4,
}


def weights_of(model_id: str) -> Weights | None:
    """The :class:`Weights` of a runtime MoE model, None for the others.

    >>> weights_of("deepseek-v3").params   # the model card's 671B
    671026419200
    """
    cfg = config(model_id)
    f = WEIGHTS.get(str(cfg.get("model_type")))
    return f(cfg) if f else None


def formats(model_id: str) -> tuple[str, ...]:
    """The storage formats a runtime model's checkpoints come in (``weights.formats``)."""
    if model_id in runtime_models():
        return tuple(runtime_models()[model_id]["weights"]["formats"])
    return ("bf16", "fp8")


def param_count(model_id: str) -> int:
    """Parameters of a catalog or runtime model (as :func:`weights_bytes` counts them)."""
    w = weights_of(model_id)
    if w is not None:
        return w.params
    cfg = config(model_id)
    if cfg.get("model_type") == "gpt_oss":
        return moe_params(cfg)[0]
    return catalog.models()[model_id].params


def weights_bytes(model_id: str, fmt: str = "bf16") -> int:
    """Checkpoint bytes of a model in a storage format (see the module docstring)."""
    w = weights_of(model_id)
    if w is not None:
        if fmt not in formats(model_id) and fmt != "bf16":
            raise ValueError(
                f"format: {model_id!r} comes in {', '.join(formats(model_id))}, not {fmt!r}"
            )
        return w.bytes(fmt)
    cfg = config(model_id)
    if cfg.get("model_type") == "gpt_oss":
        total, experts = moe_params(cfg)
        if fmt == "mxfp4":
            return experts * 17 // 32 + (total - experts) * 2
        return total * 2
    params = catalog.models()[model_id].params
    if fmt in ("bf16", "fp16"):
        return params * 2
    if fmt == "fp8":
        if cfg.get("num_local_experts") or cfg.get("num_experts"):
            raise ValueError(f"format: fp8 weights of the MoE {model_id!r} are not modelled")
        lin = dense_linear_params(cfg)
        L = int(cfg["num_hidden_layers"])
        h = int(cfg["hidden_size"])
        H = int(cfg["num_attention_heads"])
        K = int(cfg.get("num_key_value_heads") or H)
        hd = int(cfg.get("head_dim") or h // H)
        f = int(cfg["intermediate_size"])
        # one fp32 scale per output channel of every linear layer
        out_channels = L * (H * hd + 2 * K * hd + h + 2 * f + h)
        return lin + 4 * out_channels + (params - lin) * 2
    raise ValueError(f"format: {fmt!r} is not one of bf16, fp16, fp8, mxfp4")


def mla_absorbed_bytes(cfg: dict[str, Any]) -> int:
    """What vLLM adds to an MLA model's weights after loading.

    ``vllm/model_executor/layers/attention/mla_attention.py``
    ``MLAAttention.process_weights_after_loading`` splits the dequantized ``kv_b_proj``
    into ``W_UK_T`` and ``W_UV`` in the activation dtype and keeps both beside
    ``kv_b_proj`` (CUDA, outside the AMX and ROCm AITER paths): ``kv_lora_rank x heads x
    (qk_nope_head_dim + v_head_dim)`` elements per layer, sharded with the heads.
    """
    if not cfg.get("kv_lora_rank"):
        return 0
    L, H = int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
    per_head = int(cfg["qk_nope_head_dim"]) + int(cfg["v_head_dim"])
    return L * int(cfg["kv_lora_rank"]) * H * per_head * 2


def serve_model(model_id: str, fmt: str = "bf16") -> ServeModel:
    """The :class:`ServeModel` of a catalog or runtime model: its checkpoint bytes, plus
    the MLA matrices vLLM derives from them (:func:`mla_absorbed_bytes`)."""
    cfg = config(model_id)
    return ServeModel.from_config(cfg, weights_bytes(model_id, fmt) + mla_absorbed_bytes(cfg))
