"""A scenario served by vLLM or llama.cpp, as an :class:`~nnmem.result.Estimate`.

The calculator's ``runtime`` setting brings a scenario here (inference only). The
memory is one phase, ``serve``, whose terms come from :mod:`nnmem.runtimes.vllm` and
:mod:`nnmem.runtimes.llamacpp`, each citing the file and function that allocates it;
what only these engines answer (vLLM's KV capacity and concurrency, llama.cpp's largest
``-ngl``, the command lines) goes in :attr:`Estimate.runtime`.

In both, ``batch_size`` is the number of requests served at once and ``seq_len`` the
context of each: vLLM's ``--max-model-len``; llama.cpp's ``-c`` is ``seq_len x
batch_size``, shared by ``-np batch_size`` slots (Ollama: ``num_ctx = seq_len``,
``OLLAMA_NUM_PARALLEL = batch_size``).
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from functools import cache
from typing import Any

from nnmem import catalog
from nnmem.models.architecture import Transformer, parameter_counts
from nnmem.models.transformer.assembly import weight_terms
from nnmem.result import Estimate, Phase
from nnmem.runtimes import llamacpp as lc
from nnmem.runtimes import vllm
from nnmem.runtimes.models import moe_params
from nnmem.scenario import KvDtype, Precision, Runtime, Scenario
from nnmem.terms import Term

VLLM_SOURCE = "vLLM 0.34.0 "
LLAMA_SOURCE = "llama.cpp (as vendored in llama-cpp-python 0.3.36) "


def _gpu_bytes(gpu_id: str | None) -> tuple[int, str]:
    gpu = catalog.gpu(gpu_id or "")
    return (gpu.usable_bytes, gpu.name) if gpu is not None else (0, "")


def build(s: Scenario, gpu_id: str | None = None) -> Estimate:
    """The estimate of a served scenario (``runtime`` vllm, llama_cpp, ollama, lm_studio).

    >>> from nnmem import parse
    >>> s = parse({"model": "preset", "preset": "llama-3.1-8b", "mode": "inference",
    ...            "precision": "bf16", "runtime": "vllm", "seq_len": 16000})
    >>> e = build(s, "h100-sxm-80gb")
    >>> e.runtime["engine"], e.runtime["starts"]
    ('vllm', True)
    """
    assert isinstance(s.model, Transformer)
    if s.runtime.engine is Runtime.VLLM:
        return _vllm(s, gpu_id)
    return _llamacpp(s, gpu_id)


# --- vLLM ------------------------------------------------------------------------------------


def _vllm_kv_dtype(s: Scenario) -> str:
    return {
        KvDtype.AUTO: "auto",
        KvDtype.FP16: "float16",
        KvDtype.BF16: "bfloat16",
        KvDtype.FP8: "fp8",
    }.get(s.kv_cache_dtype, "auto")


def serve_settings(s: Scenario, gpu_bytes: int, name: str = "") -> vllm.Serve:
    """The ``vllm serve`` settings of a scenario on a card of ``gpu_bytes``."""
    return vllm.Serve(
        gpu_memory_bytes=gpu_bytes,
        max_model_len=s.seq_len,
        gpu_memory_utilization=float(s.gpu_memory_utilization),
        max_num_seqs=s.max_num_seqs,
        max_num_batched_tokens=s.max_num_batched_tokens,
        block_size=s.block_size,
        kv_cache_dtype=_vllm_kv_dtype(s),
        tensor_parallel_size=s.tensor_parallel,
        pipeline_parallel_size=s.pipeline_parallel,
        enforce_eager=s.enforce_eager,
        device_name=name,
    )


def _weights(s: Scenario, t: Transformer) -> list[Term]:
    cfg = dict(t.config)
    if cfg.get("model_type") == "gpt_oss" and s.precision is Precision.MXFP4:
        total, experts = moe_params(cfg)
        return [
            Term(
                "weights",
                "MXFP4 expert matrices",
                experts * 17 // 32,
                "P_experts × 17 B / 32",
                f"{experts:,} × 17 B / 32",
                "OCP MX v1.0: 32 E2M1 values (16 B) and one E8M0 scale per block",
            ),
            Term(
                "weights",
                "the rest in bf16",
                (total - experts) * 2,
                "(P − P_experts) × 2 B",
                f"{total - experts:,} × 2 B",
                "transformers GptOssForCausalLM: attention, router, norms, embeddings",
            ),
        ]
    return weight_terms(s, t, sum(parameter_counts(t).values()))


def named_config(t: Transformer) -> dict[str, Any]:
    """The model's config.json with its shape under the names the runtime modules read
    (a GPT-2 config says n_embd, n_layer, n_head)."""
    cfg = dict(t.config)
    shape = {
        "hidden_size": t.hidden,
        "num_hidden_layers": t.layers,
        "num_attention_heads": t.heads,
        "num_key_value_heads": t.kv_heads,
        "head_dim": t.head_dim,
        "intermediate_size": t.intermediate,
        "vocab_size": t.vocab,
    }
    inner = cfg.get("text_config")
    if isinstance(inner, dict):
        cfg["text_config"] = {**inner, **shape}
    else:
        cfg |= shape
    return cfg


def _vllm(s: Scenario, gpu_id: str | None) -> Estimate:
    t = s.model
    assert isinstance(t, Transformer)
    gpu_bytes, gpu_name = _gpu_bytes(gpu_id)
    whole = _weights(s, t)
    dtype_bytes = 4 if s.precision is Precision.FP32 else 2
    m = vllm.ServeModel.from_config(named_config(t), sum(x.bytes for x in whole), dtype_bytes)
    serve = serve_settings(s, gpu_bytes, gpu_name)
    ranks = s.tensor_parallel * s.pipeline_parallel
    weights = [
        x.scaled(Fraction(1, ranks), f"/ {ranks} (TP × PP)") if ranks > 1 else x for x in whole
    ]
    seqs, tokens = serve.defaults()
    sampler = int(vllm.SAMPLER_BYTES_PER_SEQ_VOCAB * seqs * m.vocab)
    forward = int(tokens * (3 * m.ffn / s.tensor_parallel + 2 * m.hidden) * m.dtype_bytes)
    activation = Term(
        "activations",
        "profile-run peak (sampler or dummy forward)",
        max(sampler, forward),
        "max(38.92 B × max_num_seqs × V, max_num_batched_tokens × (3f/TP + 2h) × dtype)",
        f"max(38.92 B × {seqs:,} × {m.vocab:,}, {tokens:,} × (3 × {m.ffn:,} / "
        f"{s.tensor_parallel} + 2 × {m.hidden:,}) × {m.dtype_bytes} B)",
        VLLM_SOURCE + "vllm/v1/worker/gpu_model_runner.py profile_run and "
        "_dummy_sampler_run; the 38.92 B per sequence × vocabulary entry is measured "
        "(Llama-3.1-8B at max_num_seqs 1024 logged 4.76 GiB), checked on five more models",
    )
    non_torch = Term(
        "non_torch",
        "CUDA context, NCCL and cuBLAS (non-torch memory)",
        vllm.non_torch(serve),
        "as vLLM logs it on an H100",
        f"{vllm.non_torch(serve) / 2**30:.2f} GiB at TP {'1' if s.tensor_parallel == 1 else '≥ 2'}",
        VLLM_SOURCE + "vllm/utils/mem_utils.py memory_profiling non_torch_increase; "
        "measured in llm-d's published start-up logs, not derived",
    )
    gs = vllm.groups(m, serve)
    per_request = sum(vllm.blocks_per_request(g, serve) for g in gs)
    per_block = max((g.layers * g.page_bytes for g in gs), default=0)
    blocks = math.ceil(s.batch_size * per_request)
    kv = Term(
        "kv_cache",
        f"KV blocks for {s.batch_size:,} request(s) of {s.seq_len:,} tokens",
        blocks * per_block,
        "b × blocks per request × bytes per block",
        f"{s.batch_size:,} × {per_request:,} × {per_block:,} B",
        VLLM_SOURCE + "vllm/v1/core/kv_cache_utils.py get_max_concurrency_for_kv_cache_config "
        "(blocks per request) and vllm/v1/core/kv_cache_planning.py "
        "get_kv_cache_config_from_groups (bytes per block: the largest group's pages); "
        "vllm/v1/kv_cache_interface.py page_size_bytes",
    )
    share_need = sum(x.bytes for x in (*weights, activation, non_torch, kv))
    util = Fraction(s.gpu_memory_utilization)
    total = math.ceil(share_need / util)
    reserve = Term(
        "outside_share",
        "left outside vLLM's share of the card",
        total - share_need,
        "need / gpu_memory_utilization − need",
        f"{share_need:,} B / {float(util):g} − {share_need:,} B",
        VLLM_SOURCE + "vllm/v1/worker/utils.py request_memory: vLLM takes "
        "ceil(total × gpu_memory_utilization) of the card, so the card must hold need / util",
    )
    phase = Phase(
        "serve", tuple(x for x in (*weights, activation, non_torch, kv, reserve) if x.bytes)
    )
    info: dict[str, Any] = {
        "engine": "vllm",
        "runtime": s.runtime.value,
        "max_model_len": s.seq_len,
        "requests": s.batch_size,
        "max_num_seqs": seqs,
        "max_num_batched_tokens": tokens,
        "block_size": vllm.block_size(m, serve),
        "blocks_per_request": per_request,
        "bytes_per_block": per_block,
        "kv_cache_bytes": kv.bytes,
        "gpu": gpu_name,
    }
    model_id = _model_id(s)
    if gpu_bytes:
        report = vllm.report(m, serve, model_id, contexts=_contexts(s.seq_len))
        b, cap = report.budget, report.capacity
        starts = vllm.starts(b, cap)
        failure = ""
        if not b.positive:
            failure = (
                "vLLM stops at start-up: no memory is left for the cache blocks "
                f"({b.kv / 2**30:.2f} GiB after the weights, the profile run and non-torch "
                "memory). Raise --gpu-memory-utilization, use more GPUs or a smaller format."
            )
        elif not starts:
            failure = (
                f"vLLM stops at start-up: {cap.num_blocks:,} blocks do not hold one request of "
                f"--max-model-len {s.seq_len:,} ({cap.blocks_per_request:,} blocks). Lower "
                "--max-model-len or free memory."
            )
        info |= {
            "requested_bytes": b.requested,
            "kv_budget_bytes": b.kv,
            "num_blocks": cap.num_blocks,
            "kv_tokens": cap.tokens,
            "max_concurrency": round(cap.max_concurrency, 2),
            "starts": starts,
            "failure": failure,
            "flags": report.flags,
            "table": [{"context": c, "concurrency": round(x[0], 2)} for c, x in report.table],
        }
    else:
        info |= {
            "starts": None,
            "flags": (
                f"vllm serve {model_id} --max-model-len {s.seq_len} --max-num-seqs "
                f"{max(s.batch_size, s.max_num_seqs or 0)} --kv-cache-memory {kv.bytes}"
                + (f" --tensor-parallel-size {s.tensor_parallel}" if s.tensor_parallel > 1 else "")
                + (
                    f" --pipeline-parallel-size {s.pipeline_parallel}"
                    if s.pipeline_parallel > 1
                    else ""
                )
                + (" --enforce-eager" if s.enforce_eager else "")
            ),
        }
    notes = (
        "vLLM: the profile-based KV sizing (--gpu-memory-utilization or --kv-cache-memory); "
        "0.34's extensible KV cache and CUDA-graph memory are not modelled.",
    )
    return Estimate(s, (phase,), (), notes, runtime=info)


def _contexts(seq_len: int) -> tuple[int, ...]:
    base = (4096, 8192, 16384, 32768, 65536, 131072)
    return tuple(sorted({*base, seq_len}))


def _model_id(s: Scenario) -> str:
    preset = s.source.get("preset")
    if isinstance(preset, str) and preset in catalog.models():
        return catalog.models()[preset].hf_id or preset
    return "MODEL"


# --- llama.cpp -------------------------------------------------------------------------------


@cache
def _gguf(config_json: str, ftype: str) -> tuple[lc.GgufArch, lc.LayerWeights, int]:
    a = lc.GgufArch.from_config(json.loads(config_json))
    ts = lc.f16_tensors(a) if ftype == "F16" else lc.quantized_tensors(a, ftype)
    return a, lc.LayerWeights.of(a, ts), lc.model_bytes(ts)


def gguf_of(t: Transformer, ftype: str) -> tuple[lc.GgufArch, lc.LayerWeights, int]:
    """The GGUF shape, its per-layer bytes and its whole size, for ``ftype`` (cached)."""
    return _gguf(json.dumps(named_config(t), sort_keys=True, default=str), ftype.upper())


def context_of(s: Scenario) -> lc.Context:
    """The llama.cpp context a scenario describes."""
    return lc.Context(
        n_ctx=s.seq_len * s.batch_size,
        n_ubatch=s.n_ubatch,
        type_k=s.type_k.value,
        type_v=s.type_v.value,
        flash_attn=s.flash_attn,
        n_seq_max=s.batch_size,
        kv_unified=True,
    )


def _llamacpp(s: Scenario, gpu_id: str | None) -> Estimate:
    t = s.model
    assert isinstance(t, Transformer)
    ftype = s.gguf_type.value.upper()
    a, lw, file_bytes = gguf_of(t, ftype)
    ctx = context_of(s)
    every = a.layers + 1
    ngl = every if s.n_gpu_layers is None else min(s.n_gpu_layers, every)
    split = [1.0] * s.num_gpus
    p = lc.place(a, lw, ctx, ngl, split)
    i = max(range(len(p.gpu_bytes)), key=lambda k: p.gpu_bytes[k])
    parts = p.parts
    comp = lc.compute_buffer_bytes(a, ctx)
    k, v = lc.kv_bytes(a, ctx)
    size, _ = ctx.cells()
    src_model = LLAMA_SOURCE + (
        "src/llama-quant.cpp llama_tensor_get_type (each tensor's type), "
        "ggml/src/ggml.c type_traits (bytes per block), 32-byte alignment (ggml/include/gguf.h); "
        "src/llama-model.cpp load_tensors: -ngl counts the output layer"
    )
    src_kv = LLAMA_SOURCE + (
        "src/llama-kv-cache.cpp llama_kv_cache: per layer K and V of "
        "n_embd_k_gqa × kv_size in type_k / type_v; n_ctx padded to 256 "
        "(src/llama-context.cpp); sliding-window layers hold pad(min(kv_size, "
        "n_swa·n_seq + n_ubatch), 256) cells (src/llama-kv-cache-iswa.cpp)"
    )
    src_comp = LLAMA_SOURCE + (
        "ggml/src/ggml-alloc.c graph allocator reserve for one n_ubatch micro-batch "
        "(src/llama-graph.cpp): the largest of the output head, attention and FFN; "
        "measured on the CPU backend (benchmarks/runtimes), the CUDA buffer was not measured"
    )
    on_gpu = any(p.gpu_bytes)
    where = "GPU" if on_gpu else "system RAM"
    layers_here = ngl if on_gpu else 0
    terms = [
        Term(
            "weights",
            f"{ftype} GGUF tensors in {where}",
            parts["weights_gpu"][i] if on_gpu else parts["weights_cpu"],
            "Σ tensor bytes of the offloaded layers (-ngl, output layer counted)",
            f"{layers_here} of {every} layers ({file_bytes:,} B in the whole file)",
            src_model,
        ),
        Term(
            "kv_cache",
            f"K ({s.type_k.value}) and V ({s.type_v.value}) cache",
            parts["kv_gpu"][i] if on_gpu else parts["kv_cpu"],
            "Σ layers (cells × (K row + V row))",
            f"{size:,} cells ({s.seq_len:,} × {s.batch_size} padded to 256); "
            f"whole cache K {k:,} B + V {v:,} B",
            src_kv,
        ),
        Term(
            "compute_buffer",
            "compute buffer (one n_ubatch micro-batch)",
            parts["compute_gpu"][i] if on_gpu else comp,
            "max(output head, attention, FFN) × 4 B",
            f"n_ubatch {ctx.ubatch}, flash attention {'on' if s.flash_attn else 'off'}",
            src_comp,
        ),
    ]
    if not on_gpu:
        terms.append(
            Term(
                "output_buffer",
                "output buffer (logits)",
                parts["output_cpu"],
                "V × n_seq_max × 4 B",
                f"{a.vocab:,} × {s.batch_size} × 4 B",
                LLAMA_SOURCE + "src/llama-context.cpp output_reserve",
            )
        )
    phase = Phase("serve", tuple(x for x in terms if x.bytes))
    command = lc.command_line(f"{_model_id(s).split('/')[-1]}-{ftype}.gguf", ctx, ngl)
    info: dict[str, Any] = {
        "engine": "llama_cpp",
        "runtime": s.runtime.value,
        "gguf_type": ftype,
        "file_bytes": file_bytes,
        "n_ctx": ctx.n_ctx,
        "n_parallel": s.batch_size,
        "n_gpu_layers": ngl,
        "layers": every,
        "vram_bytes": list(p.gpu_bytes),
        "ram_bytes": p.cpu_bytes,
        "command": command,
        "ollama": {"num_ctx": s.seq_len, "OLLAMA_NUM_PARALLEL": s.batch_size},
        "lm_studio": {"context_length": ctx.n_ctx, "gpu_offload": ngl},
        "gpu": "",
    }
    gpu_bytes, gpu_name = _gpu_bytes(gpu_id)
    if gpu_bytes:
        vram = [gpu_bytes] * s.num_gpus
        best = lc.largest_ngl(a, lw, ctx, vram, split)
        inner = t.config.get("text_config")  # Llama 4 nests the decoder's fields
        positions = (inner if isinstance(inner, dict) else t.config).get("max_position_embeddings")
        limit = int(positions or 131072) * s.batch_size
        longest = lc.longest_context(a, lw, ctx, vram, ngl, limit)
        info |= {
            "gpu": gpu_name,
            "largest_ngl": best,
            "longest_context": longest // s.batch_size,
        }
    notes = (
        "llama.cpp: the GPU's buffers are shown; the token embedding, the layers left on the "
        "CPU and the output buffer are in system RAM (see the runtime section).",
    )
    return Estimate(s, (phase,), (), notes, runtime=info)
