"""llama.cpp (and Ollama / LM Studio on it): the buffers a GGUF model allocates.

Every term follows the llama.cpp vendored in llama-cpp-python 0.3.36:

- **model**: the GGUF tensors, each of the type ``src/llama-quant.cpp`` picked for the
  file type (:mod:`nnmem.runtimes.gguf_types`); tensor data are aligned to
  ``GGUF_DEFAULT_ALIGNMENT`` = 32 bytes (``ggml/include/gguf.h``).
- **KV**: ``src/llama-kv-cache.cpp`` ``llama_kv_cache::llama_kv_cache`` makes, per
  layer, ``K = ggml_new_tensor_3d(type_k, n_embd_k_gqa, kv_size, n_stream)`` and the
  same for V. ``kv_size`` is ``n_ctx_seq``: ``n_ctx`` padded to 256, divided by
  ``n_seq_max`` and padded again when the cache is not unified
  (``src/llama-context.cpp`` ``llama_context::llama_context``). Sliding-window layers
  get ``GGML_PAD(min(kv_size, n_swa*(unified ? n_seq_max : 1) + n_ubatch), 256)``
  cells (``src/llama-kv-cache-iswa.cpp``).
- **output**: ``llama_context::output_reserve``: ``n_vocab * max(n_outputs,
  n_seq_max)`` float logits, reserved for ``n_seq_max`` outputs at start-up.
- **compute**: the graph allocator's reservation for one micro-batch of ``n_ubatch``
  tokens (``sched_reserve``); see :func:`compute_buffer_bytes`.
- **offload**: ``-ngl`` counts the output layer: layers ``il >= n_layer + 1 - ngl``
  go to the GPU, ``il = n_layer`` being the output (``src/llama-model.cpp``
  ``load_tensors``, ``i_gpu_start``); the token embedding always stays on the CPU.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from nnmem.runtimes import gguf_types as gt
from nnmem.runtimes.kvspec import WINDOWED, LayerKV, from_config

GGUF_ALIGNMENT = 32
MIB = 1024 * 1024

# -ctk / -ctv values (common/arg.cpp kv_cache_types) -> ggml type names.
KV_TYPES = {
    "f32": "F32",
    "f16": "F16",
    "bf16": "BF16",
    "q8_0": "Q8_0",
    "q4_0": "Q4_0",
    "q4_1": "Q4_1",
    "iq4_nl": "IQ4_NL",
    "q5_0": "Q5_0",
    "q5_1": "Q5_1",
}


def _pad(x: int, n: int) -> int:
    return (x + n - 1) // n * n


@dataclass(frozen=True)
class GgufArch:
    """The shape facts a GGUF's tensors and KV cache follow."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    tied: bool = True
    qkv_bias: bool = False
    arch: str = "llama"
    n_expert: int = 0
    n_expert_ffn: int = 0
    n_expert_used: int = 0
    kv: tuple[LayerKV, ...] = field(default=())

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> GgufArch:
        """From a Hugging Face ``config.json`` (Llama, Qwen2/3, Mistral, Gemma 2/3)."""
        c = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
        assert isinstance(c, dict)
        heads = int(c["num_attention_heads"])
        hidden = int(c["hidden_size"])
        mt = str(c.get("model_type", "llama"))
        arch = {"gemma3_text": "gemma3", "qwen3_moe": "qwen3moe", "mixtral": "llama"}.get(mt, mt)
        n_expert = int(c.get("num_local_experts") or c.get("num_experts") or 0)
        ffn = int(c["intermediate_size"])
        # Mixtral's intermediate_size is per expert; Qwen3-MoE names it
        # moe_intermediate_size (llama.cpp: expert_feed_forward_length)
        n_ff_exp = int(c.get("moe_intermediate_size") or ffn) if n_expert else 0
        return cls(
            hidden=hidden,
            layers=int(c["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(c.get("num_key_value_heads") or heads),
            head_dim=int(c.get("head_dim") or hidden // heads),
            ffn=ffn,
            vocab=int(c["vocab_size"]),
            tied=bool(c.get("tie_word_embeddings", mt.startswith("gemma"))),
            qkv_bias=mt == "qwen2",
            arch=arch,
            n_expert=n_expert,
            n_expert_ffn=n_ff_exp,
            n_expert_used=int(c.get("num_experts_per_tok") or 0),
            kv=tuple(from_config(cfg)),
        )

    @property
    def kv_layers(self) -> tuple[LayerKV, ...]:
        if self.kv:
            return self.kv
        d = self.head_dim
        return (LayerKV("full", self.kv_heads, d, d),) * self.layers


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]  # GGUF order, row length first
    type: str

    @property
    def bytes(self) -> int:
        return gt.tensor_bytes(self.type, self.shape)

    @property
    def layer(self) -> int | None:
        """The block index, or None for the input and output tensors."""
        if self.name.startswith("blk."):
            return int(self.name.split(".")[1])
        return None


def f16_tensors(a: GgufArch) -> list[Tensor]:
    """The tensors of an F16 GGUF of this shape, in the order llama.cpp's
    converters write them (per layer), 1-D norms and biases in F32.

    Names and shapes: ``src/llama-arch.cpp`` tensor names and the
    ``load_arch_tensors`` of ``src/models/llama.cpp``, ``qwen2.cpp``, ``gemma3.cpp``,
    ``qwen3moe.cpp``. MoE layers have a router ``ffn_gate_inp {n_embd, n_expert}``
    (F32: the converters keep it in f32) and stacked experts
    ``ffn_{gate,up}_exps {n_embd, n_ff_exp, n_expert}``, ``ffn_down_exps {n_ff_exp,
    n_embd, n_expert}``.
    """
    h, q, kv = a.hidden, a.heads * a.head_dim, a.kv_heads * a.head_dim
    out = [Tensor("token_embd.weight", (h, a.vocab), "F16")]
    for i in range(a.layers):
        p = f"blk.{i}."
        out.append(Tensor(p + "attn_norm.weight", (h,), "F32"))
        out.append(Tensor(p + "attn_q.weight", (h, q), "F16"))
        out.append(Tensor(p + "attn_k.weight", (h, kv), "F16"))
        out.append(Tensor(p + "attn_v.weight", (h, kv), "F16"))
        out.append(Tensor(p + "attn_output.weight", (q, h), "F16"))
        if a.qkv_bias:
            out += [
                Tensor(p + "attn_q.bias", (q,), "F32"),
                Tensor(p + "attn_k.bias", (kv,), "F32"),
                Tensor(p + "attn_v.bias", (kv,), "F32"),
            ]
        if a.arch in ("gemma3", "qwen3", "qwen3moe"):
            out.append(Tensor(p + "attn_q_norm.weight", (a.head_dim,), "F32"))
            out.append(Tensor(p + "attn_k_norm.weight", (a.head_dim,), "F32"))
        if a.arch in ("gemma2", "gemma3"):
            out.append(Tensor(p + "post_attention_norm.weight", (h,), "F32"))
            out.append(Tensor(p + "post_ffw_norm.weight", (h,), "F32"))
        out.append(Tensor(p + "ffn_norm.weight", (h,), "F32"))
        if a.n_expert:
            E, fe = a.n_expert, a.n_expert_ffn
            out.append(Tensor(p + "ffn_gate_inp.weight", (h, E), "F32"))
            out.append(Tensor(p + "ffn_gate_exps.weight", (h, fe, E), "F16"))
            out.append(Tensor(p + "ffn_up_exps.weight", (h, fe, E), "F16"))
            out.append(Tensor(p + "ffn_down_exps.weight", (fe, h, E), "F16"))
            continue
        out.append(Tensor(p + "ffn_gate.weight", (h, a.ffn), "F16"))
        out.append(Tensor(p + "ffn_up.weight", (h, a.ffn), "F16"))
        out.append(Tensor(p + "ffn_down.weight", (a.ffn, h), "F16"))
    out.append(Tensor("output_norm.weight", (h,), "F32"))
    if not a.tied:
        out.append(Tensor("output.weight", (h, a.vocab), "F16"))
    return out


def quantized_tensors(a: GgufArch, ftype: str) -> list[Tensor]:
    """The tensors after ``llama-quantize`` to ``ftype`` (no importance matrix).

    llama.cpp walks the tensors sorted by layer (``llama_model_quantize_impl``), so
    the per-layer counters advance in layer order.
    """
    src = f16_tensors(a)
    n_wv = sum(1 for t in src if gt._category(t.name) in ("ATTENTION_V", "ATTENTION_QKV"))
    qs = gt.QuantState(
        n_layer=a.layers,
        n_head=a.heads,
        n_head_kv=a.kv_heads,
        n_attention_wv=n_wv,
        n_expert=a.n_expert,
        tied_embeddings=a.tied,
        is_70b=a.layers == 80 and a.arch == "llama",
    )
    order = sorted(src, key=lambda t: -1 if t.layer is None else t.layer)
    types = {t.name: gt.quant_type(t.name, t.shape, t.type, ftype, qs) for t in order}
    return [Tensor(t.name, t.shape, types[t.name]) for t in src]


def model_bytes(tensors: list[Tensor]) -> int:
    """Bytes of the model buffer: every tensor's data padded to 32 bytes."""
    return sum(_pad(t.bytes, GGUF_ALIGNMENT) for t in tensors)


@dataclass(frozen=True)
class Context:
    """The llama.cpp context parameters that size its buffers."""

    n_ctx: int = 4096
    n_batch: int = 2048
    n_ubatch: int = 512
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = False
    n_seq_max: int = 1
    kv_unified: bool = True
    swa_full: bool = False

    def __post_init__(self) -> None:
        for f in ("type_k", "type_v"):
            v = getattr(self, f)
            if v not in KV_TYPES:
                raise ValueError(
                    f"{f}: {v!r} is not a llama.cpp cache type ({', '.join(KV_TYPES)})"
                )
        if self.type_v not in ("f16", "f32", "bf16") and not self.flash_attn:
            raise ValueError("type_v: a quantized V cache needs flash attention (-fa on)")
        if self.n_ctx < 1 or self.n_ubatch < 1 or self.n_seq_max < 1:
            raise ValueError("n_ctx, n_ubatch and n_seq_max must be at least 1")

    @property
    def ubatch(self) -> int:
        # llama_context: n_ubatch = min(n_batch, n_ubatch)
        return min(self.n_batch, self.n_ubatch)

    def cells(self) -> tuple[int, int]:
        """``(kv_size, n_stream)`` of the full-attention cache."""
        n_ctx = _pad(self.n_ctx, 256)
        if self.kv_unified:
            return n_ctx, 1
        return _pad(n_ctx // self.n_seq_max, 256), self.n_seq_max

    def swa_cells(self, n_swa: int) -> int:
        size, _ = self.cells()
        if self.swa_full:
            return size
        return _pad(
            min(size, n_swa * (self.n_seq_max if self.kv_unified else 1) + self.ubatch), 256
        )


def kv_layer_bytes(layer: LayerKV, ctx: Context) -> tuple[int, int]:
    """(K bytes, V bytes) of one layer's cache."""
    if layer.kind in ("shared",):
        return 0, 0
    if layer.kind == "state":
        # src/llama-memory-recurrent.cpp: per layer r (conv) and s (ssm) tensors of
        # n_embd_r / n_embd_s x one row per sequence, both GGML_TYPE_F32
        # (src/llama-model.cpp create_memory: recurrent_type_r/s); K holds r, V holds s.
        conv, ssm = ((*layer.state, (0, 0), (0, 0)))[:2]
        return conv[0] * 4 * ctx.n_seq_max, ssm[0] * 4 * ctx.n_seq_max
    size, n_stream = ctx.cells()
    if layer.kind in WINDOWED and layer.window:
        # chunked (Llama 4) layers share the SWA cache and its size with sliding ones
        size = ctx.swa_cells(layer.window)
    k_row = gt.row_bytes(KV_TYPES[ctx.type_k], layer.n_kv_heads * layer.head_dim_k)
    v_cols = layer.n_kv_heads * layer.head_dim_v
    v_row = gt.row_bytes(KV_TYPES[ctx.type_v], v_cols) if v_cols else 0
    return k_row * size * n_stream, v_row * size * n_stream


def kv_bytes(a: GgufArch, ctx: Context, layers: range | None = None) -> tuple[int, int]:
    """(K, V) bytes of the whole cache, or of the given layers."""
    k = v = 0
    for i, layer in enumerate(a.kv_layers):
        if layers is not None and i not in layers:
            continue
        lk, lv = kv_layer_bytes(layer, ctx)
        k += lk
        v += lv
    return k, v


def output_bytes(a: GgufArch, ctx: Context) -> int:
    """The host output buffer: float logits for ``n_seq_max`` outputs
    (``llama_context::output_reserve(params.n_seq_max)`` at start-up)."""
    return a.vocab * ctx.n_seq_max * 4


def compute_buffer_bytes(a: GgufArch, ctx: Context, backend: str = "cpu") -> int:
    """The compute buffer reserved for one micro-batch (``sched_reserve``).

    ggml's graph allocator (``ggml/src/ggml-alloc.c``) frees each intermediate once
    its last consumer ran and reuses the space, so the buffer is the peak of the
    tensors alive together somewhere in the graph; everything is f32. Three places
    set that peak (``src/llama-graph.cpp``; at reserve every token of the micro-batch
    produces output):

    - the output head: logits ``n_vocab x n_ubatch`` next to the final hidden state
      and its norm (``2 x n_embd x n_ubatch``);
    - attention without flash attention (``build_attn_mha``): the scores
      ``kq = n_kv x n_ubatch x n_head`` (softmax in place) and the mask
      ``n_kv x n_ubatch`` (``build_attn_inp_kq_mask``), ``n_kv`` being the cells of
      one stream, next to Q and the attention output (``n_head x head_dim`` each),
      K and V of the micro-batch and the residual (``n_embd``);
    - the feed-forward: gate and up (``2 x n_ff``) and two ``n_embd`` buffers.

    With flash attention (``ggml_flash_attn_ext``) no score matrix is stored.
    This is the CPU backend's graph, which is what was measured
    (``benchmarks/runtimes/measured_llamacpp.json``). The CUDA backend reserves the
    same graph; its buffer has not been measured here.
    """
    if backend not in ("cpu", "cuda"):
        raise ValueError(f"backend: {backend!r} is not cpu or cuda")
    ub = ctx.ubatch
    f = 4
    q = a.heads * a.head_dim
    kv = a.kv_heads * a.head_dim
    out_peak = f * ub * (a.vocab + 2 * a.hidden)
    around = f * ub * (2 * q + 2 * kv + a.hidden)
    attn = around
    if not ctx.flash_attn:
        layers = a.kv_layers
        size, _ = ctx.cells()
        if any(lay.kind == "full" for lay in layers):
            n_kv = size
        else:
            n_kv = max(ctx.swa_cells(lay.window or size) for lay in layers)
        attn += f * ub * n_kv * (a.heads + 1)
    width = a.n_expert_ffn * a.n_expert_used if a.n_expert else a.ffn
    ffn = f * ub * (2 * width + 2 * a.hidden)
    return max(out_peak, attn, ffn)


# ggml/src/ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type: on x86 the CPU
# backend copies these weight types into interleaved layouts (same bytes) in a
# CPU_REPACK buffer when ne[1] % 8 == 0; Q2_K only with AVX-512.
REPACK_X86 = {
    "avx2": ("Q4_0", "Q4_K", "IQ4_NL", "MXFP4"),
    "avx512": ("Q4_0", "Q4_K", "IQ4_NL", "MXFP4", "Q2_K"),
}


def cpu_repack_bytes(tensors: list[Tensor], isa: str = "avx512") -> int:
    """Bytes llama.cpp's CPU backend repacks (the ``CPU_REPACK`` model buffer).

    The token embedding is read with ``get_rows`` on the input layer and is not
    repacked.
    """
    kinds = REPACK_X86[isa]
    return sum(
        t.bytes
        for t in tensors
        if t.type in kinds
        and t.name != "token_embd.weight"
        and len(t.shape) > 1
        and t.shape[1] % 8 == 0
    )


@dataclass
class Placement:
    """Where each buffer lands for one ``-ngl`` value."""

    n_gpu_layers: int
    gpu_bytes: list[int]
    cpu_bytes: int
    parts: dict[str, Any]


@dataclass(frozen=True)
class LayerWeights:
    """The GGUF's bytes grouped as ``-ngl`` moves them: the input embedding, each
    block, and the output layer (final norm and head; a tied head duplicates the
    embedding on the output's device)."""

    embd: int
    blocks: tuple[int, ...]
    output: int
    tied: bool

    @classmethod
    def of(cls, a: GgufArch, tensors: list[Tensor]) -> LayerWeights:
        blocks = [0] * a.layers
        embd = out = 0
        for t in tensors:
            b = _pad(t.bytes, GGUF_ALIGNMENT)
            if t.name == "token_embd.weight":
                embd += b
            elif t.layer is None:
                out += b
            else:
                blocks[t.layer] += b
        return cls(embd, tuple(blocks), out + (embd if a.tied else 0), a.tied)


def place(
    a: GgufArch,
    tensors: list[Tensor] | LayerWeights,
    ctx: Context,
    n_gpu_layers: int,
    tensor_split: list[float] | None = None,
) -> Placement:
    """Split weights and KV between the GPU(s) and the CPU for ``-ngl``.

    ``src/llama-model.cpp`` ``load_tensors``: ``i_gpu_start = max(n_layer + 1 - ngl,
    0)``; layer ``il`` goes to GPU ``upper_bound(splits, (il - i_gpu_start) /
    act_gpu_layers)`` with ``splits`` the cumulative normalised ``--tensor-split``;
    ``il = n_layer`` is the output layer. The input embedding stays on the CPU
    (``dev_input``). The KV cache of a layer follows its layer (``offload_kqv``).
    Compute buffers: one per device used. The output buffer stays in host memory.
    """
    lw = tensors if isinstance(tensors, LayerWeights) else LayerWeights.of(a, tensors)
    kv = [sum(kv_layer_bytes(layer, ctx)) for layer in a.kv_layers]
    return _place(a, lw, kv, compute_buffer_bytes(a, ctx), output_bytes(a, ctx),
                  n_gpu_layers, tensor_split)  # fmt: skip


def _place(
    a: GgufArch,
    lw: LayerWeights,
    kv: list[int],
    comp: int,
    out: int,
    n_gpu_layers: int,
    tensor_split: list[float] | None,
) -> Placement:
    L = a.layers
    split = tensor_split or [1.0]
    cum, s = [], 0.0
    for x in split:
        s += x
        cum.append(s)
    cum = [c / s for c in cum]
    ngl = max(0, n_gpu_layers)
    start = max(L + 1 - ngl, 0)
    act = min(ngl, L + 1)

    def device(il: int) -> int | None:
        if il < start or il - start >= act:
            return None
        x = (il - start) / act
        # std::upper_bound over the cumulative split: the first device whose share ends
        # after x (the last one takes any rounding overshoot).
        return min(bisect.bisect_right(cum, x), len(cum) - 1)

    gpu = [0] * len(split)
    kv_gpu = [0] * len(split)
    cpu = lw.embd
    kv_cpu = 0
    for il in range(L):
        d = device(il)
        if d is None:
            cpu += lw.blocks[il]
            kv_cpu += kv[il]
        else:
            gpu[d] += lw.blocks[il]
            kv_gpu[d] += kv[il]
    d = device(L)
    if d is None:
        cpu += lw.output - (lw.embd if lw.tied else 0)
    else:
        gpu[d] += lw.output
    comp_gpu = [comp if (gpu[i] or kv_gpu[i]) else 0 for i in range(len(split))]
    gpu_total = [gpu[i] + kv_gpu[i] + comp_gpu[i] for i in range(len(split))]
    cpu_total = cpu + kv_cpu + out + (comp if ngl <= L else 0)
    return Placement(
        n_gpu_layers=ngl,
        gpu_bytes=gpu_total,
        cpu_bytes=cpu_total,
        parts={
            "weights_gpu": gpu,
            "weights_cpu": cpu,
            "kv_gpu": kv_gpu,
            "kv_cpu": kv_cpu,
            "compute_gpu": comp_gpu,
            "output_cpu": out,
        },
    )


def largest_ngl(
    a: GgufArch,
    tensors: list[Tensor] | LayerWeights,
    ctx: Context,
    vram: list[int],
    split: list[float] | None = None,
) -> int:
    """The largest ``-ngl`` whose GPU buffers fit ``vram`` (bytes per GPU)."""
    lw = tensors if isinstance(tensors, LayerWeights) else LayerWeights.of(a, tensors)
    kv = [sum(kv_layer_bytes(layer, ctx)) for layer in a.kv_layers]
    comp, out = compute_buffer_bytes(a, ctx), output_bytes(a, ctx)
    sp = split or [float(v) for v in vram]

    def fits(ngl: int) -> bool:
        p = _place(a, lw, kv, comp, out, ngl, sp)
        return all(g <= v for g, v in zip(p.gpu_bytes, vram, strict=True))

    if len(vram) == 1:
        # one GPU: its bytes only grow with -ngl, so bisect
        lo, hi = 0, a.layers + 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo
    # several GPUs: a device's share need not grow with -ngl, so try each from the top
    return next((n for n in range(a.layers + 1, -1, -1) if fits(n)), 0)


def longest_context(
    a: GgufArch,
    tensors: list[Tensor] | LayerWeights,
    ctx: Context,
    vram: list[int],
    n_gpu_layers: int,
    limit: int,
) -> int:
    """The longest ``n_ctx`` (multiple of 256, at most ``limit``) that fits ``vram``
    at ``-ngl``; 0 when even 256 does not."""
    lw = tensors if isinstance(tensors, LayerWeights) else LayerWeights.of(a, tensors)
    lo, hi = 0, limit // 256
    split = [float(v) for v in vram]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        c = Context(**{**ctx.__dict__, "n_ctx": mid * 256})
        p = place(a, lw, c, n_gpu_layers, split)
        if all(g <= v for g, v in zip(p.gpu_bytes, vram, strict=True)):
            lo = mid
        else:
            hi = mid - 1
    return lo * 256


def command_line(model_path: str, ctx: Context, n_gpu_layers: int) -> str:
    """The ``llama-server`` command for these settings (``common/arg.cpp`` flags)."""
    parts = ["llama-server", "-m", model_path, "-c", str(ctx.n_ctx), "-ngl", str(n_gpu_layers)]
    if ctx.n_ubatch != 512:
        parts += ["-ub", str(ctx.n_ubatch)]
    if ctx.type_k != "f16":
        parts += ["-ctk", ctx.type_k]
    if ctx.type_v != "f16":
        parts += ["-ctv", ctx.type_v]
    parts += ["-fa", "on" if ctx.flash_attn else "off"]
    if ctx.n_seq_max > 1:
        parts += ["-np", str(ctx.n_seq_max)]
    return " ".join(parts)


def ollama_view(num_ctx: int, num_parallel: int) -> Context:
    """Ollama's llama runner: ``num_ctx`` per request times ``OLLAMA_NUM_PARALLEL``
    slots is the context llama.cpp allocates (ollama ``server/sched.go`` scales
    ``NumCtx`` by ``numParallel``; the Ollama FAQ: memory "scales by
    OLLAMA_NUM_PARALLEL * OLLAMA_CONTEXT_LENGTH"), shared by the slots."""
    if num_ctx < 1 or num_parallel < 1:
        raise ValueError("num_ctx and OLLAMA_NUM_PARALLEL must be at least 1")
    return Context(n_ctx=num_ctx * num_parallel, n_seq_max=num_parallel, kv_unified=True)


def gib(x: float) -> float:
    return x / 2**30


def mib(x: float) -> float:
    return x / MIB


def ceil_div(a: int, b: int) -> int:
    return -(-a // b) if b else math.inf  # type: ignore[return-value]
