"""What fits: the catalog ranked by the largest model and best format that run.

For llama.cpp each model is tried from F16 down to Q2_K (``LLAMACPP_FORMATS``) with the
context ``context x users`` shared by ``users`` sequences (as ``-np`` / Ollama's
parallel slots allocate it) and flash attention on; a model fits fully when every layer
and the output go to the GPU(s) (``-ngl n_layer+1``), partly when the rest fits in
system RAM. For vLLM each model is tried in bf16 then fp8 with ``max_model_len =
context`` and must reach a concurrency of ``users``; several cards run as tensor
parallel ranks. vLLM also ranks the MoE models priced by their checkpoints
(:func:`~nnmem.runtimes.models.runtime_models`: gpt-oss, DeepSeek-V3/R1, Kimi K2,
GLM-4.5, Qwen3-Next and Llama 4) in the formats their checkpoints come in; llama.cpp
does not, as their GGUF tensor lists are not written.

>>> from nnmem import catalog
>>> r = what_fits([catalog.gpus()["rtx-4090"].memory_bytes], "llama_cpp", 8192, 1)
>>> r[0].fits in ("gpu", "gpu+ram")
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from nnmem import catalog
from nnmem.runtimes import llamacpp as lc
from nnmem.runtimes import vllm
from nnmem.runtimes.models import formats, param_count, runtime_models, serve_model

# Model types whose GGUF tensor list nnmem.runtimes.llamacpp.f16_tensors writes.
GGUF_MODEL_TYPES = (
    "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "qwen3_moe", "mixtral",
)  # fmt: skip
LLAMACPP_FORMATS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
VLLM_FORMATS = ("bf16", "fp8", "mxfp4")


@dataclass(frozen=True)
class Fit:
    model_id: str
    name: str
    params: int
    fmt: str
    fits: str  # "gpu", "gpu+ram", "ram" (CPU only) or "no"
    gpu_bytes: int
    ram_bytes: int
    detail: str
    command: str


@cache
def _weights(model_id: str, ftype: str) -> tuple[lc.GgufArch, lc.LayerWeights]:
    a = lc.GgufArch.from_config(catalog.models()[model_id].config)
    ts = lc.f16_tensors(a) if ftype == "F16" else lc.quantized_tensors(a, ftype)
    return a, lc.LayerWeights.of(a, ts)


def llamacpp_candidates() -> list[catalog.ModelEntry]:
    """The catalog decoders whose GGUF tensor list :mod:`~nnmem.runtimes.llamacpp` writes."""
    return [
        m
        for m in catalog.models().values()
        if m.architecture in ("decoder", "moe") and m.config.get("model_type") in GGUF_MODEL_TYPES
    ]


def llamacpp_fit(m: catalog.ModelEntry, vram: list[int], ram: int, context: int, users: int) -> Fit:
    """The first of ``LLAMACPP_FORMATS`` that runs fully on the GPU(s), else the first
    that runs with the remainder in ``ram``."""
    ctx = lc.Context(n_ctx=context * users, n_seq_max=users, flash_attn=True)
    best: Fit | None = None
    for ft in LLAMACPP_FORMATS:
        a, tensors = _weights(m.id, ft)
        full = lc.place(a, tensors, ctx, a.layers + 1, [float(v) for v in vram])
        path = f"{m.id}-{ft}.gguf"
        if all(g <= v for g, v in zip(full.gpu_bytes, vram, strict=True)):
            return Fit(
                m.id, m.name, m.params, ft, "gpu", sum(full.gpu_bytes), full.cpu_bytes,
                f"-ngl {a.layers + 1} (all {a.layers} layers and the output)",
                lc.command_line(path, lc.Context(n_ctx=context * users, n_seq_max=users,
                                                 flash_attn=True), a.layers + 1),
            )  # fmt: skip
        if best is None and ram:
            ngl = lc.largest_ngl(a, tensors, ctx, vram)
            p = lc.place(a, tensors, ctx, ngl, [float(v) for v in vram])
            if p.cpu_bytes <= ram:
                where = "gpu+ram" if ngl else "ram"
                best = Fit(
                    m.id, m.name, m.params, ft, where, sum(p.gpu_bytes), p.cpu_bytes,
                    f"-ngl {ngl} of {a.layers + 1}; the rest in system RAM",
                    lc.command_line(path, ctx, ngl),
                )  # fmt: skip
    return best or Fit(m.id, m.name, m.params, "-", "no", 0, 0, "does not fit", "")


@dataclass(frozen=True)
class Candidate:
    """A model the vLLM ranking tries, in the formats it may be served in."""

    id: str
    name: str
    hf_id: str
    params: int
    formats: tuple[str, ...]


@cache
def vllm_candidates() -> tuple[Candidate, ...]:
    """The catalog decoders (bf16, and fp8 when dense) and the runtime models."""
    out = [
        Candidate(m.id, m.name, m.hf_id or m.id, m.params,
                  ("bf16",) if m.architecture == "moe" else VLLM_FORMATS[:2])
        for m in llamacpp_candidates()
    ]  # fmt: skip
    for mid, r in runtime_models().items():
        fmts = tuple(f for f in VLLM_FORMATS if f in formats(mid))
        out.append(Candidate(mid, r["name"], r["hf_id"], param_count(mid), fmts))
    return tuple(out)


def vllm_fit(m: Candidate, vram: list[int], context: int, users: int) -> Fit:
    """The first of ``m.formats`` that vLLM serves to ``users`` at ``context``."""
    tp = len(vram)
    for fmt in m.formats:
        sm = serve_model(m.id, fmt)
        s = vllm.Serve(
            gpu_memory_bytes=min(vram),
            max_model_len=context,
            tensor_parallel_size=tp,
            max_num_seqs=max(users, 1),
            kv_cache_dtype="auto",
        )
        r = vllm.report(sm, s, m.hf_id, contexts=())
        if vllm.starts(r.budget, r.capacity) and r.capacity.max_concurrency >= users:
            return Fit(
                m.id, m.name, m.params, fmt, "gpu", r.budget.requested, 0,
                f"{r.capacity.tokens:,} KV tokens, {r.capacity.max_concurrency:.1f}x "
                f"concurrency at {context:,}",
                r.flags,
            )  # fmt: skip
    return Fit(m.id, m.name, m.params, "-", "no", 0, 0, "does not fit", "")


def what_fits(
    vram: list[int], runtime: str, context: int, users: int = 1, ram: int = 0
) -> list[Fit]:
    """Every catalog decoder the runtime can run on these cards, best first: fully on
    the GPU before partly in RAM, then by parameter count, then by format (the list
    order of ``LLAMACPP_FORMATS`` / ``VLLM_FORMATS``)."""
    if not vram or any(v <= 0 for v in vram):
        raise ValueError("gpus: give at least one card with memory")
    if context < 1 or users < 1:
        raise ValueError("context and users must be at least 1")
    if runtime == "llama_cpp":
        out = [llamacpp_fit(m, vram, ram, context, users) for m in llamacpp_candidates()]
        order: tuple[str, ...] = LLAMACPP_FORMATS
    elif runtime == "vllm":
        out = [vllm_fit(m, vram, context, users) for m in vllm_candidates()]
        order = VLLM_FORMATS
    else:
        raise ValueError(f"runtime: {runtime!r} is not llama_cpp or vllm")
    rank = {"gpu": 0, "gpu+ram": 1, "ram": 2, "no": 3}
    return sorted(
        out,
        key=lambda f: (rank[f.fits], -f.params, order.index(f.fmt) if f.fmt in order else 99),
    )
