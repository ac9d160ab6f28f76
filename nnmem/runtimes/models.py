"""Models for the runtimes: the catalog's, and those in ``data/runtime_models.json``.

Weights as a checkpoint stores them:

- ``bf16``/``fp16``: 2 bytes per parameter.
- ``fp8`` (compressed-tensors FP8-dynamic, e.g. RedHatAI's Llama-3.3-70B-FP8): the
  linear layers of the decoder in 1 byte plus one fp32 scale per output channel;
  embeddings, norms and the LM head stay bf16.
- ``mxfp4`` (gpt-oss): MoE expert matrices at 17 bytes per 32 weights (16 bytes of
  E2M1 pairs + one E8M0 scale, OCP MX v1.0), the rest bf16.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from nnmem import catalog
from nnmem.runtimes.vllm import ServeModel


@cache
def runtime_models() -> dict[str, dict[str, Any]]:
    """The models of ``data/runtime_models.json`` by id.

    >>> sorted(runtime_models())
    ['gpt-oss-120b', 'gpt-oss-20b']
    """
    text = files("nnmem").joinpath("data", "runtime_models.json").read_text(encoding="utf-8")
    return {m["id"]: m for m in json.loads(text)["models"]}


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


def weights_bytes(model_id: str, fmt: str = "bf16") -> int:
    """Checkpoint bytes of a model in a storage format (see the module docstring)."""
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


def serve_model(model_id: str, fmt: str = "bf16") -> ServeModel:
    """The :class:`ServeModel` of a catalog or runtime model."""
    return ServeModel.from_config(config(model_id), weights_bytes(model_id, fmt))
