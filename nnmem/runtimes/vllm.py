"""vLLM (V1 engine): the KV budget, the KV pool in blocks, and the concurrency it buys.

Read from the vLLM 0.34.0 wheel. Every term names the file and function:

- **budget**: ``vllm/v1/worker/utils.py`` ``request_memory``:
  ``requested = ceil(total * gpu_memory_utilization)``.
- **KV memory**: ``vllm/v1/worker/gpu_worker.py`` ``Worker.determine_available_memory``:
  ``requested - non_kv_cache_memory - cudagraph_memory_estimate``, where
  ``vllm/utils/mem_utils.py`` ``memory_profiling`` makes ``non_kv_cache_memory`` the
  weights, the non-torch increase (CUDA context, NCCL) and the torch peak of the
  profile run (``GPUModelRunner.profile_run``: a dummy forward of
  ``max_num_batched_tokens`` tokens, then ``_dummy_sampler_run`` on
  ``max_num_seqs`` rows). ``kv_cache_memory_bytes`` (``--kv-cache-memory``) replaces
  the whole computation. CUDA-graph memory is subtracted only when
  ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` profiles it (default since v0.21).
- **pages**: ``vllm/v1/kv_cache_interface.py``: ``AttentionSpec.page_size_bytes`` =
  ``block_size * num_kv_heads * (head_size + head_size_v) * dtype bytes``;
  ``MLAAttentionSpec``: one latent head, no V; ``MambaSpec``: the state itself.
- **groups and blocks**: ``vllm/v1/core/kv_cache_planning.py``
  ``_get_kv_cache_groups_uniform_page_size`` (layers of one type split into groups of
  the smallest type's layer count) and ``get_kv_cache_config_from_groups``
  (``num_blocks = available // bytes_per_block``, ``bytes_per_block`` = the largest
  group's pages).
- **capacity and concurrency**: ``vllm/v1/core/kv_cache_utils.py``
  ``get_max_concurrency_for_kv_cache_config`` (``num_blocks`` over the blocks one
  request at ``max_model_len`` needs, summed over groups) and
  ``get_kv_cache_capacity`` (``tokens = int(concurrency * max_model_len)``), logged by
  ``update_kv_cache_capacity`` as "GPU KV cache size: N tokens, Maximum concurrency
  for M tokens per request: X.XXx".
- **TP**: ``vllm/model_executor/layers/linear.py`` ``QKVParallelLinear``: KV heads are
  divided by TP, or replicated to one per rank when TP >= KV heads; MLA latents are
  not divided; recurrent states are (``vllm/model_executor/layers/mamba/mamba_utils.py``
  ``MambaStateShapeCalculator``: the conv channels and the value heads over TP).
- **recurrent state dtype**: ``MambaStateDtypeCalculator._mamba_state_dtype``: the conv
  state in ``mamba_cache_dtype``, the temporal state in ``mamba_ssm_cache_dtype``, both
  ``"auto"`` by default (``vllm/config/cache.py``): the model dtype, and the conv
  state's dtype. Qwen3-Next (``qwen3_next.py``
  ``get_mamba_state_dtype_from_config``) follows that default, so its delta-net state is
  bf16 in vLLM where transformers and llama.cpp keep it in float32.

Not modelled: the extensible KV cache that 0.34 enables by default on CUDA and ROCm
(``CacheConfig.enable_extensible_kv_cache``, ``vllm/v1/worker/extensible_kv_cache.py``),
which sizes the pool from memory measured free after CUDA-graph capture, with
``gpu_memory_utilization`` defaulting to 1.0. It stays off when ``--kv-cache-memory``
is given or it is disabled explicitly; then the profile-based sizing below applies,
as it did in the releases before it (the llm-d logs the tests reproduce).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nnmem.runtimes.kvspec import PER_TOKEN, WINDOWED, LayerKV, from_config

GIB = 2**30

# vllm/config/cache.py CacheConfig.DEFAULT_BLOCK_SIZE (0.34.0); 16 in releases before
# the 64-token default.
DEFAULT_BLOCK_SIZE = 64
# vllm/config/cache.py CacheConfig.DEFAULT_GPU_MEMORY_UTILIZATION (0.34.0).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92

# Bytes per KV element: vllm/utils/torch_utils.py STR_DTYPE_TO_TORCH_DTYPE and
# get_dtype_size; "auto" is the model dtype.
KV_DTYPE_BYTES = {"auto": None, "bfloat16": 2, "float16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
# --mamba-cache-dtype / --mamba-ssm-cache-dtype (vllm/config/cache.py MambaDType).
MAMBA_DTYPE_BYTES = {"auto": None, "float32": 4, "float16": 2, "bfloat16": 2}

# Non-torch memory after profiling (CUDA context, NCCL, cuBLAS workspaces), as vLLM
# logs it on an H100 (llm-d empirical-vllm-memory-results.md): 0.13 GiB at TP=1
# (0.14 in two runs), 0.55 GiB per GPU at TP=2. Measured, not derived.
NON_TORCH_BYTES_MEASURED = {1: int(0.13 * GIB), 2: int(0.55 * GIB)}

# Profile-run torch peak per (sequence x vocabulary entry) of the sampler run, in bytes,
# as logged by vLLM on an H100 with max_num_seqs = 1024 (llm-d
# empirical-vllm-memory-results.md): Llama-3.1-8B 4.76 GiB / (1024 x 128256) = 38.92.
# The other rows of that table are the check (tests/test_accuracy_runtimes.py).
# The 0.34 sampler (vllm/v1/worker/gpu/model_runner.py _dummy_sampler_run) runs the
# logits in the model dtype, then a warm-up pass "that pays for the fp32 logits
# pipeline"; the count of fp32 [max_num_seqs, vocab] buffers alive at its peak is
# not derivable from the source alone, hence the measured figure.
SAMPLER_BYTES_PER_SEQ_VOCAB = 4.76 * GIB / (1024 * 128256)


@dataclass(frozen=True)
class ServeModel:
    """What vLLM needs to know about a model."""

    kv: tuple[LayerKV, ...]
    vocab: int
    hidden: int
    ffn: int
    weights_bytes: int  # the checkpoint as loaded (all ranks together)
    dtype_bytes: int = 2
    replicated_bytes: int = 0  # weights every TP rank holds in full

    @classmethod
    def from_config(
        cls, cfg: dict[str, Any], weights_bytes: int, dtype_bytes: int = 2
    ) -> ServeModel:
        c = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
        assert isinstance(c, dict)
        return cls(
            kv=tuple(from_config(cfg)),
            vocab=int(c["vocab_size"]),
            hidden=int(c["hidden_size"]),
            ffn=int(c.get("intermediate_size") or 4 * int(c["hidden_size"])),
            weights_bytes=weights_bytes,
            dtype_bytes=dtype_bytes,
        )


@dataclass(frozen=True)
class Serve:
    """``vllm serve`` settings that size memory."""

    gpu_memory_bytes: int
    max_model_len: int
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    block_size: int = DEFAULT_BLOCK_SIZE
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    enforce_eager: bool = False
    cudagraph_bytes: int = 0
    non_torch_bytes: int | None = None
    kv_cache_memory_bytes: int | None = None
    activation_bytes: int | None = None
    async_scheduling: bool = True
    device_name: str = ""
    mamba_cache_dtype: str = "auto"
    mamba_ssm_cache_dtype: str = "auto"

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        if self.kv_cache_dtype not in KV_DTYPE_BYTES:
            raise ValueError(
                f"kv_cache_dtype: {self.kv_cache_dtype!r} is not one of {', '.join(KV_DTYPE_BYTES)}"
            )
        for f in ("mamba_cache_dtype", "mamba_ssm_cache_dtype"):
            if getattr(self, f) not in MAMBA_DTYPE_BYTES:
                raise ValueError(
                    f"{f}: {getattr(self, f)!r} is not one of {', '.join(MAMBA_DTYPE_BYTES)}"
                )
        if self.max_model_len < 1 or self.block_size < 1:
            raise ValueError("max_model_len and block_size must be at least 1")
        if self.tensor_parallel_size < 1 or self.pipeline_parallel_size < 1:
            raise ValueError("tensor_parallel_size and pipeline_parallel_size must be at least 1")

    def defaults(self) -> tuple[int, int]:
        """(max_num_seqs, max_num_batched_tokens) for ``vllm serve``:
        ``vllm/engine/arg_utils.py`` ``_set_default_max_num_seqs_and_batched_tokens_args``
        (OPENAI_API_SERVER): >= 160 GiB cards 1024 / 16384; >= 70 GiB (not an A100,
        not a GB10) 1024 / 8192; others 256 / 2048."""
        name = self.device_name.lower()
        if self.gpu_memory_bytes >= 160 * GIB:
            d = (1024, 16384)
        elif self.gpu_memory_bytes >= 70 * GIB and "a100" not in name and "gb10" not in name:
            d = (1024, 8192)
        else:
            d = (256, 2048)
        return (self.max_num_seqs or d[0], self.max_num_batched_tokens or d[1])


def requested_bytes(s: Serve) -> int:
    """``request_memory``: ``ceil(total * gpu_memory_utilization)``."""
    return math.ceil(s.gpu_memory_bytes * s.gpu_memory_utilization)


def weights_per_gpu(m: ServeModel, s: Serve) -> int:
    """Weights on one rank: the sharded part divided by TP x PP, the replicated part whole."""
    shard = (m.weights_bytes - m.replicated_bytes) / (
        s.tensor_parallel_size * s.pipeline_parallel_size
    )
    return int(shard + m.replicated_bytes)


def activation_peak(m: ServeModel, s: Serve) -> int:
    """The torch peak of the profile run above what stays allocated.

    The larger of the sampler run (``max_num_seqs`` rows of logits through the
    sampler, measured per sequence x vocabulary entry) and the dummy forward over
    ``max_num_batched_tokens`` tokens (per token: the gate/up output ``2 * ffn``, the
    activated ``ffn`` and two hidden-size buffers in the model dtype, per TP rank).
    """
    if s.activation_bytes is not None:
        return s.activation_bytes
    seqs, tokens = s.defaults()
    sampler = SAMPLER_BYTES_PER_SEQ_VOCAB * seqs * m.vocab
    forward = tokens * (3 * m.ffn / s.tensor_parallel_size + 2 * m.hidden) * m.dtype_bytes
    return int(max(sampler, forward))


def non_torch(s: Serve) -> int:
    if s.non_torch_bytes is not None:
        return s.non_torch_bytes
    return NON_TORCH_BYTES_MEASURED[1 if s.tensor_parallel_size == 1 else 2]


@dataclass
class Budget:
    requested: int
    weights: int
    activation: int
    non_torch: int
    cudagraph: int
    kv: int

    @property
    def positive(self) -> bool:
        """vLLM refuses to start when no memory is left for the cache blocks
        (``vllm/v1/core/kv_cache_planning.py`` ``_check_enough_kv_cache_memory``:
        "No available memory for the cache blocks"), and when the blocks left do
        not hold one request of ``max_model_len`` (same function: "To serve at
        least one request with the model's max seq len"); see :func:`starts`."""
        return self.kv > 0


def budget(m: ServeModel, s: Serve, weights: int | None = None) -> Budget:
    """The per-GPU KV budget (``determine_available_memory``)."""
    w = weights_per_gpu(m, s) if weights is None else weights
    act = activation_peak(m, s)
    nt = non_torch(s)
    cg = 0 if s.enforce_eager else s.cudagraph_bytes
    req = requested_bytes(s)
    kv = s.kv_cache_memory_bytes if s.kv_cache_memory_bytes is not None else req - w - act - nt - cg
    return Budget(req, w, act, nt, cg, kv)


@dataclass(frozen=True)
class Group:
    kind: str
    layers: int  # layers in the group (padded layers included)
    page_bytes: int  # one layer's page
    window: int | None = None
    block_size: int = 0


def _kv_dtype_bytes(m: ServeModel, s: Serve) -> int:
    b = KV_DTYPE_BYTES[s.kv_cache_dtype]
    return m.dtype_bytes if b is None else b


def _token_bytes(layer: LayerKV, m: ServeModel, s: Serve) -> int:
    """One attention layer's bytes per token on one rank."""
    db = _kv_dtype_bytes(m, s)
    if layer.kind == "mla":
        # MLAAttentionSpec: num_kv_heads=1, head_size = kv_lora_rank + rope dim, no V
        return layer.head_dim_k * db
    tp = s.tensor_parallel_size
    heads = layer.n_kv_heads // tp if layer.n_kv_heads >= tp else 1
    return heads * (layer.head_dim_k + layer.head_dim_v) * db


def state_bytes(layer: LayerKV, m: ServeModel, s: Serve) -> int:
    """One recurrent layer's state per sequence on one rank: the conv and temporal
    elements of :attr:`LayerKV.state` in vLLM's state dtypes, divided by TP (see the
    module docstring)."""
    conv_b = MAMBA_DTYPE_BYTES[s.mamba_cache_dtype] or m.dtype_bytes
    ssm_b = MAMBA_DTYPE_BYTES[s.mamba_ssm_cache_dtype] or conv_b
    conv, ssm = (*layer.state, (0, 0), (0, 0))[:2]
    tp = s.tensor_parallel_size
    return conv[0] // tp * conv_b + ssm[0] // tp * ssm_b


def block_size(m: ServeModel, s: Serve) -> int:
    """The attention block size after hybrid alignment.

    ``vllm/platforms/interface.py`` ``_align_hybrid_block_size``: with Mamba or
    linear-attention layers, the attention block grows to
    ``align * cdiv(mamba_page, align * attn_page_per_token)`` tokens so one attention
    page holds a whole state, and the state page is padded to the attention page
    (``mamba_page_size_padded``). ``align`` is taken as the configured block size.
    """
    states = [state_bytes(lay, m, s) for lay in m.kv if lay.kind == "state"]
    attn = [_token_bytes(lay, m, s) for lay in m.kv if lay.kind in PER_TOKEN]
    if not states or not attn:
        return s.block_size
    per_token = max(attn)
    need = s.block_size * -(-max(states) // (s.block_size * per_token))
    return max(s.block_size, need)


def page_bytes(layer: LayerKV, m: ServeModel, s: Serve) -> int:
    """One layer's page of ``block_size`` tokens on one rank (``page_size_bytes``)."""
    bs = block_size(m, s)
    if layer.kind == "state":
        attn = [_token_bytes(x, m, s) for x in m.kv if x.kind in PER_TOKEN]
        # MambaSpec.page_size_bytes: the state, padded to the attention page
        own = state_bytes(layer, m, s)
        return max(own, bs * max(attn)) if attn else own
    return bs * _token_bytes(layer, m, s)


def groups(m: ServeModel, s: Serve) -> list[Group]:
    """KV cache groups of one PP stage, as ``_get_kv_cache_groups_uniform_page_size``
    forms them: layers bucketed by spec; group size = the smallest bucket, or the
    largest when that is under 1.5x the smallest; each bucket padded to whole groups."""
    layers = [lay for lay in m.kv if lay.kind != "shared"]
    per_stage = math.ceil(len(layers) / s.pipeline_parallel_size)
    layers = layers[:per_stage]
    buckets: dict[tuple[str, int, int | None], int] = {}
    for lay in layers:
        key = (lay.kind, page_bytes(lay, m, s), lay.window if lay.kind in WINDOWED else None)
        buckets[key] = buckets.get(key, 0) + 1
    if not buckets:
        return []
    lo, hi = min(buckets.values()), max(buckets.values())
    size = hi if hi < lo * 1.5 else lo
    bs = block_size(m, s)
    out = []
    for (kind, page, window), n in buckets.items():
        for _ in range(math.ceil(n / size)):
            out.append(Group(kind, size, page, window, bs))
    return out


def blocks_per_request(g: Group, s: Serve) -> int:
    """``cdiv(max_memory_usage_bytes, page_size_bytes)`` of one group's spec.

    Full attention: ``cdiv(max_model_len, block_size)`` (``FullAttentionSpec``).
    Sliding window: ``cdiv(min(window - 1 + in_flight, max_model_len), block_size) + 1``
    (``SlidingWindowSpec.max_admission_blocks_per_request``), ``in_flight`` =
    ``max_concurrent_batches * max_num_batched_tokens`` (``VllmConfig.
    max_in_flight_tokens``; PP + 1 batches with async scheduling).
    Chunked local attention: ``cdiv(min(chunk + in_flight, max_model_len), block_size)``
    (``ChunkedLocalAttentionSpec.max_admission_blocks_per_request``); the hybrid KV cache
    manager keeps such groups by default (``VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE``
    = 1, ``vllm/config/vllm.py``). With ``--disable-hybrid-kv-cache-manager`` they are
    promoted to full attention (``kv_cache_planning.py`` ``_promote_local_kv_cache_specs``),
    which is not modelled.
    Mamba state: one page (``MambaSpec.max_memory_usage_bytes``, cache mode "none").
    """
    if g.kind == "state":
        return 1
    bs = g.block_size or s.block_size
    if g.kind == "chunked" and g.window:
        _, tokens = s.defaults()
        batches = s.pipeline_parallel_size + (1 if s.async_scheduling else 0)
        return -(-min(g.window + batches * tokens, s.max_model_len) // bs)
    if g.kind == "sliding" and g.window:
        _, tokens = s.defaults()
        batches = s.pipeline_parallel_size + (1 if s.async_scheduling else 0)
        n = min(g.window - 1 + batches * tokens, s.max_model_len)
        return -(-n // bs) + 1
    return -(-s.max_model_len // bs)


@dataclass
class Capacity:
    num_blocks: int
    bytes_per_block: int
    blocks_per_request: int
    tokens: int
    max_concurrency: float
    groups: list[Group] = field(default_factory=list)


def capacity(m: ServeModel, s: Serve, kv_bytes: int) -> Capacity:
    """The KV pool that ``kv_bytes`` buys, and what vLLM logs about it."""
    gs = groups(m, s)
    if not gs:
        return Capacity(1, 0, 0, 0, 0.0, gs)
    bpb = max(g.layers * g.page_bytes for g in gs)
    n = max(0, kv_bytes) // bpb
    per_req = sum(blocks_per_request(g, s) for g in gs)
    conc = n / per_req
    return Capacity(n, bpb, per_req, int(conc * s.max_model_len), conc, gs)


def starts(b: Budget, cap: Capacity) -> bool:
    """Whether vLLM starts: a positive KV budget holding one full-length request."""
    return b.positive and cap.max_concurrency >= 1


@dataclass
class Report:
    budget: Budget
    capacity: Capacity
    flags: str
    table: list[tuple[int, list[float]]]


def report(
    m: ServeModel,
    s: Serve,
    model_id: str = "MODEL",
    contexts: tuple[int, ...] = (4096, 8192, 16384, 32768, 65536, 131072),
) -> Report:
    """Budget, capacity, the ``vllm serve`` flags, and a context x concurrency table
    (requests that fit at each context length, vLLM's own concurrency figure)."""
    b = budget(m, s)
    cap = capacity(m, s, b.kv)
    seqs, tokens = s.defaults()
    flags = (
        f"vllm serve {model_id} --max-model-len {s.max_model_len} "
        f"--gpu-memory-utilization {s.gpu_memory_utilization} --max-num-seqs {seqs} "
        f"--max-num-batched-tokens {tokens}"
    )
    if s.tensor_parallel_size > 1:
        flags += f" --tensor-parallel-size {s.tensor_parallel_size}"
    if s.pipeline_parallel_size > 1:
        flags += f" --pipeline-parallel-size {s.pipeline_parallel_size}"
    if s.kv_cache_dtype != "auto":
        flags += f" --kv-cache-dtype {s.kv_cache_dtype}"
    if s.enforce_eager:
        flags += " --enforce-eager"
    if b.kv > 0:
        flags += f" --kv-cache-memory {b.kv}"
    table = []
    for ctx in contexts:
        row = Serve(**{**s.__dict__, "max_model_len": ctx})
        table.append((ctx, [capacity(m, row, b.kv).max_concurrency]))
    return Report(b, cap, flags, table)
