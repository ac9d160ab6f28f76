"""A per-layer KV cache spec, read from a Hugging Face ``config.json``.

One :class:`LayerKV` per decoder layer says what that layer keeps per token (or per
sequence, for recurrent state). The runtimes price it their own way: vLLM in pages
of ``block_size`` tokens (``vllm/v1/kv_cache_interface.py``), llama.cpp in cells of
``n_ctx`` (``src/llama-kv-cache.cpp``), transformers as a dynamic cache.

Kinds:

- ``full``: K and V for every token, ``n_kv_heads * (head_dim_k + head_dim_v)``
  elements per token (vLLM ``AttentionSpec.state_content_size_bytes``).
- ``sliding``: the same per token, for at most ``window`` tokens (vLLM
  ``SlidingWindowSpec``; llama.cpp ``llama_kv_cache_iswa``).
- ``chunked``: the same per token, for the tokens of the current chunk of ``window``
  tokens (Llama 4 local attention, ``attention_chunk_size``): vLLM
  ``ChunkedLocalAttentionSpec.max_admission_blocks_per_request`` sizes it as
  ``cdiv(min(chunk + in-flight tokens, max_model_len), block_size)`` blocks;
  llama.cpp keeps it in the SWA cache of ``llama_kv_cache_iswa`` (``LLAMA_SWA_TYPE_CHUNKED``,
  same cell count as a sliding window of ``n_swa = chunk``).
- ``mla``: one latent of ``kv_lora_rank + qk_rope_head_dim`` elements per token,
  shared by all heads (DeepSeek-V2 paper, arXiv 2405.04434, section 2.1; vLLM
  ``MLAAttentionSpec``: ``num_kv_heads=1``, ``head_size_v=0``).
- ``shared``: reads another layer's cache and stores nothing (Gemma 3n / Gemma 4
  ``num_kv_shared_layers``).
- ``state``: a fixed-size recurrent state per sequence (Mamba, gated delta net),
  ``state_elems`` elements of ``state_bytes`` each, independent of context.

>>> spec = from_config({"num_hidden_layers": 32, "num_attention_heads": 32,
...     "num_key_value_heads": 8, "hidden_size": 4096})
>>> len(spec), spec[0].kind, spec[0].elems_per_token
(32, 'full', 2048)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("full", "sliding", "chunked", "mla", "shared", "state")
# kinds that cache K/V (or a latent) per token
PER_TOKEN = ("full", "sliding", "chunked", "mla")
# kinds that hold at most ``window`` tokens
WINDOWED = ("sliding", "chunked")


@dataclass(frozen=True)
class LayerKV:
    """What one layer caches."""

    kind: str
    n_kv_heads: int = 0
    head_dim_k: int = 0
    head_dim_v: int = 0
    window: int | None = None
    # recurrent state, per sequence: a list of (elements, bytes per element)
    state: tuple[tuple[int, int], ...] = ()

    @property
    def elems_per_token(self) -> int:
        """Cached elements per token of this layer (K and V together)."""
        if self.kind in PER_TOKEN:
            return self.n_kv_heads * (self.head_dim_k + self.head_dim_v)
        return 0

    @property
    def state_bytes(self) -> int:
        """Bytes of recurrent state per sequence (``state`` layers)."""
        return sum(n * b for n, b in self.state)

    def bytes_per_token(self, dtype_bytes: float) -> float:
        """Bytes per cached token of this layer at ``dtype_bytes`` per element."""
        return self.elems_per_token * dtype_bytes


def _get(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    return default


def _text(cfg: dict[str, Any]) -> dict[str, Any]:
    # multimodal configs keep the decoder under text_config
    tc = cfg.get("text_config")
    if isinstance(tc, dict) and "num_hidden_layers" in tc:
        return tc
    return cfg


def layer_types(cfg: dict[str, Any]) -> list[str]:
    """Each layer's attention type as the config states it, or as the model's
    modelling code derives it.

    - ``layer_types`` (transformers >= 4.53 configs: Gemma 2/3, gpt-oss, Qwen3-Next,
      Qwen2/3 with ``use_sliding_window``) is used as given.
    - Gemma 3 ``sliding_window_pattern`` N: every N-th layer is global
      (transformers ``Gemma3TextConfig``: ``(i + 1) % pattern != 0`` is sliding).
    - Gemma 2: even layers slide (``Gemma2DecoderLayer``: ``not bool(layer_idx % 2)``).
    - Mistral v0.1 ``sliding_window`` on every layer (``MistralAttention``).
    - Qwen2/Qwen3 ``sliding_window`` counts only with ``use_sliding_window``.
    - Qwen3-Next ``full_attention_interval`` N: every N-th layer is full attention, the
      rest gated delta net (transformers ``Qwen3NextConfig``: ``"linear_attention" if
      bool((i + 1) % interval) else "full_attention"``).
    - Llama 4 ``no_rope_layers``: RoPE layers (1) use chunked local attention, NoPE
      layers (0) attend globally (vLLM ``vllm/model_executor/models/llama4.py``
      ``Llama4Attention``: ``use_chunked_local_attn = not self.nope and
      config.attention_chunk_size``). An empty list means the default of transformers
      ``Llama4TextConfig``: ``int((i + 1) % no_rope_layer_interval != 0)``, interval 4.
    """
    c = _text(cfg)
    L = int(_get(c, "num_hidden_layers", "n_layer", "num_layers"))
    lt = c.get("layer_types")
    if isinstance(lt, list) and len(lt) == L:
        return [str(t) for t in lt]
    mt = str(c.get("model_type", ""))
    sw = c.get("sliding_window")
    if mt == "qwen3_next":
        n = int(c.get("full_attention_interval", 4))
        return ["linear_attention" if (i + 1) % n else "full_attention" for i in range(L)]
    if mt == "llama4_text" and c.get("attention_chunk_size"):
        rope = c.get("no_rope_layers") or [
            int((i + 1) % int(c.get("no_rope_layer_interval", 4)) != 0) for i in range(L)
        ]
        return ["chunked_attention" if r else "full_attention" for r in rope]
    if mt.startswith("gemma3"):
        pattern = int(c.get("sliding_window_pattern", 6))
        return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(L)]
    if mt == "gemma2":
        return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L)]
    if mt.startswith("qwen") and not c.get("use_sliding_window", False):
        sw = None
    if sw:
        return ["sliding_attention"] * L
    return ["full_attention"] * L


def from_config(cfg: dict[str, Any]) -> list[LayerKV]:
    """The per-layer KV spec of a decoder from its ``config.json``."""
    c = _text(cfg)
    L = int(_get(c, "num_hidden_layers", "n_layer", "num_layers"))
    heads = int(_get(c, "num_attention_heads", "n_head"))
    hidden = int(_get(c, "hidden_size", "n_embd", "d_model"))
    kv_heads = int(_get(c, "num_key_value_heads", default=heads))
    head_dim = int(_get(c, "head_dim", default=hidden // heads))
    if c.get("kv_lora_rank"):
        # DeepSeek-V2/V3, Kimi K2: MLA latent (kv_lora_rank) + decoupled RoPE key
        latent = int(c["kv_lora_rank"]) + int(c.get("qk_rope_head_dim", 64))
        return [LayerKV("mla", 1, latent, 0)] * L
    window = _get(c, "sliding_window")
    types = layer_types(cfg)
    # Gemma 4 style: per-layer head dims for global layers
    g_head = _get(c, "global_head_dim", default=head_dim)
    g_kv = _get(c, "num_global_key_value_heads", default=kv_heads)
    shared_from = L - int(c.get("num_kv_shared_layers") or 0)
    out: list[LayerKV] = []
    for i, t in enumerate(types):
        if i >= shared_from:
            out.append(LayerKV("shared"))
        elif t in ("sliding_attention", "chunked_attention"):
            w = window if t == "sliding_attention" else c.get("attention_chunk_size")
            if w is None:
                raise ValueError(f"config: layer {i} is {t} but no window size is given")
            kind = "sliding" if t == "sliding_attention" else "chunked"
            out.append(LayerKV(kind, kv_heads, head_dim, head_dim, window=int(w)))
        elif t in ("linear_attention", "mamba", "mamba2"):
            out.append(LayerKV("state", state=_linear_state(c, t)))
        else:
            out.append(LayerKV("full", int(g_kv), int(g_head), int(g_head)))
    return out


def _linear_state(c: dict[str, Any], t: str) -> tuple[tuple[int, int], ...]:
    """Recurrent state of one linear-attention / Mamba layer, per sequence.

    Gated delta net (Qwen3-Next): vLLM ``MambaStateShapeCalculator.
    gated_delta_net_state_shape`` (``vllm/model_executor/layers/mamba/mamba_utils.py``):
    conv state ``(k_dim*k_heads*2 + v_dim*v_heads) x (kernel - 1)`` and a temporal
    state ``v_heads x v_dim x k_dim``. The bytes per element given here are
    transformers': the conv state in the model dtype, the temporal state as
    ``torch_chunk_gated_delta_rule`` returns it, float32 (``modeling_qwen3_next.py``).
    vLLM prices the elements in its own state dtypes (``nnmem.runtimes.vllm.state_bytes``)
    and llama.cpp in float32 (``nnmem.runtimes.llamacpp.kv_layer_bytes``).
    Mamba-2: ``mamba2_state_shape``: conv ``(intermediate + 2*groups*state) x
    (kernel - 1)`` and temporal ``heads x head_dim x state``.
    """
    dt_bytes = 2
    if t == "linear_attention":
        kh = int(c["linear_num_key_heads"])
        vh = int(c["linear_num_value_heads"])
        kd = int(c["linear_key_head_dim"])
        vd = int(c["linear_value_head_dim"])
        kernel = int(c.get("linear_conv_kernel_dim", 4))
        conv = (kd * kh * 2 + vd * vh) * (kernel - 1)
        return ((conv, dt_bytes), (vh * vd * kd, 4))
    inter = int(c.get("mamba_expand", 2)) * int(c["hidden_size"])
    groups = int(c.get("mamba_n_groups", c.get("n_groups", 1)))
    state = int(c.get("mamba_d_state", c.get("state_size", 128)))
    kernel = int(c.get("mamba_d_conv", c.get("conv_kernel", 4)))
    nh = int(c.get("mamba_n_heads", c.get("mamba_num_heads", inter // 64)))
    hd = int(c.get("mamba_head_dim", inter // nh))
    conv = (inter + 2 * groups * state) * (kernel - 1)
    return ((conv, dt_bytes), (nh * hd * state, 4))


def bytes_per_token(spec: list[LayerKV], dtype_bytes: float, context: int | None = None) -> float:
    """Average KV bytes per token of context over all layers.

    Sliding and chunked layers hold ``min(context, window)`` tokens; with no
    ``context`` they count in full. Recurrent state is not per token and is left out.

    >>> s = from_config({"num_hidden_layers": 32, "num_attention_heads": 32,
    ...     "num_key_value_heads": 8, "hidden_size": 4096})
    >>> bytes_per_token(s, 2)   # Llama-3-8B: 2*32*8*128*2 = 128 KiB
    131072.0
    """
    total = 0.0
    for layer in spec:
        per = layer.bytes_per_token(dtype_bytes)
        if layer.kind in WINDOWED and context and layer.window:
            per *= min(context, layer.window) / context
        total += per
    return total
