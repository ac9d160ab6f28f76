"""The estimator: ``estimate(scenario) -> Estimate``, integer bytes per component.

A training step is four phases (forward, loss, backward, optimizer step) and inference
two (prefill, decode). Each phase lists the terms live at its own peak; the estimate's
peak is the largest phase, and its components are that phase's terms grouped by kind.
On top of the tensors come the overheads ``nvidia-smi`` also counts: the caching
allocator's reserve, the cuBLAS workspaces and the CUDA context.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from nnmem.builders import builder
from nnmem.catalog import cublas_workspace_bytes
from nnmem.errors import NnmemError
from nnmem.result import Component, Estimate, Phase
from nnmem.scenario import Device, Mode, Runtime, Scenario
from nnmem.terms import Term, product

if TYPE_CHECKING:
    from nnmem.allocator import AllocatorConfig

CONTEXT_SOURCE = (
    "Measured (benchmarks/accuracy/measured_cuda.json): process memory outside PyTorch's "
    "pool was 615 MiB right after CUDA initialisation and 678-762 MiB (median 742) once "
    "cuBLAS, cuDNN and the attention kernels had loaded, in 32 runs on an NVIDIA H200 with "
    "torch 2.11 and CUDA 13.0; PyTorch PR #86509 gives 287 MB with lazy module loading "
    "before any library kernel loads. Other GPUs, drivers and libraries differ: editable"
)
CUBLAS_SOURCE = (
    "PyTorch aten/src/ATen/cuda/CublasHandlePool.cpp: one workspace per cuBLAS handle and "
    "stream, 4096·1024·2 + 16·1024·8 B (32 MiB on Hopper and newer); the backward pass "
    "runs on the autograd engine's own thread, so training holds two"
)
ALLOCATOR_SOURCE = (
    "PyTorch caching allocator: blocks rounded to 512 B and cached segments show in "
    "max_memory_reserved; measured reserve over allocated was 3-13% in Hugging Face's "
    "single-GPU guide (transformers docs perf_train_gpu_one, v4.21); editable"
)


# --- overheads outside the tensors ---------------------------------------------------------

HIPBLASLT_SOURCE = (
    "PyTorch aten/src/ATen/cuda/CublasHandlePool.cpp parseCUDABlasLtWorkspaceSize: on ROCm "
    "a 76 MiB hipBLASLt workspace (HIPBLASLT_WORKSPACE_SIZE changes it) per handle and "
    "stream; the hipBLAS workspace beside it is not counted"
)
HIP_CONTEXT_SOURCE = (
    "Not measured on ROCm: the HIP runtime and its loaded kernels take memory outside "
    "PyTorch's pool as CUDA's do, and the CUDA default stands in for it; editable"
)
XPU_CONTEXT_SOURCE = (
    "Not measured on Intel GPUs: the Level Zero runtime and oneDNN kernels take memory "
    "outside PyTorch's pool; the CUDA default stands in for it; editable"
)
PLATFORM_LABELS = {
    "amd": (("cuda_context", "HIP context"), ("cublas_workspace", "hipBLASLt workspace")),
    "intel": (("cuda_context", "XPU runtime context"),),
}


def _vendor(gpu_id: str | None) -> str:
    from nnmem import catalog

    gpu = catalog.gpu(gpu_id or "")
    return gpu.vendor if gpu is not None else "nvidia"


REPLAY_SOURCE = (
    "nnmem.timeline replays the step's allocations in PyTorch's order through a model of "
    "c10/cuda/CUDACachingAllocator.cpp (nnmem.allocator, PyTorch 2.11): the load, two "
    "training steps (the second finds the first one's cached segments) or prefill and "
    "decode, with the cuBLAS workspaces, on the GPU's memory less the CUDA context"
)


def allocator_config(scenario: Scenario) -> AllocatorConfig:
    """The caching allocator's options from the scenario, as PYTORCH_CUDA_ALLOC_CONF
    would set them."""
    # Imported here: only the replay needs the allocator model, and most estimates (the
    # page's first answer among them) are not replayed.
    from nnmem.allocator import parse_alloc_conf

    parts = [f"expandable_segments:{scenario.expandable_segments}"]
    if scenario.max_split_size_mb is not None:
        parts.append(f"max_split_size_mb:{scenario.max_split_size_mb}")
    if scenario.roundup_power2_divisions > 1:
        parts.append(f"roundup_power2_divisions:{scenario.roundup_power2_divisions}")
    return parse_alloc_conf(",".join(parts))


def _replayed(scenario: Scenario, gpu_id: str | None) -> bool:
    """Whether the reserve comes from the allocator replay: asked for, on a CUDA GPU,
    for a step nnmem has a timeline of."""
    return (
        scenario.allocator_replay
        and scenario.device is Device.CUDA
        and _vendor(gpu_id) == "nvidia"
        and (scenario.mode is Mode.TRAINING or scenario.runtime.engine is Runtime.TRANSFORMERS)
    )


def replay_capacity(scenario: Scenario, gpu_id: str | None) -> int | None:
    """What the caching allocator may reserve on the GPU: its usable memory less the CUDA
    context, which lies outside PyTorch's pool; None (unbounded) for a GPU the catalog
    does not know. A step that would reserve more makes the allocator free its cached
    segments and retry (CUDACachingAllocator.cpp ``malloc``: release_cached_blocks), so
    a reserved peak never passes the card.

    >>> from nnmem.scenario import GenericModel
    >>> scenario = Scenario(GenericModel(1_000_000, 64, 2), batch_size=1)
    >>> replay_capacity(scenario, "rtx-3090") == 24 * 2**30 - 740 * 2**20
    True
    >>> replay_capacity(scenario, None) is None
    True
    """
    from nnmem import catalog

    gpu = catalog.gpu(gpu_id or "")
    if gpu is None:
        return None
    return max(gpu.usable_bytes - scenario.cuda_context_mib * 2**20, 0)


def _replay_reserve(scenario: Scenario, tensor_peak: int, gpu_id: str | None) -> Term:
    """What the replayed allocator reserves above the tensors and cuBLAS workspaces, on
    the GPU's memory."""
    from nnmem.timeline import replay_step

    capacity = replay_capacity(scenario, gpu_id)
    result = replay_step(scenario, gpu_id, allocator_config(scenario), capacity)
    handles = 2 if scenario.mode is Mode.TRAINING else 1
    workspaces = handles * cublas_workspace_bytes(gpu_id)
    reserve = max(result.reserved_peak - tensor_peak - workspaces, 0)
    return Term(
        "allocator_reserve",
        "cached blocks and rounding, replayed",
        reserve,
        "reserved peak − tensor peak − cuBLAS workspaces",
        f"{result.reserved_peak:,} B − {tensor_peak:,} B − {workspaces:,} B",
        REPLAY_SOURCE,
    )


def overheads(scenario: Scenario, tensor_peak: int, gpu_id: str | None = None) -> list[Term]:
    """The allocator reserve, the BLAS workspaces and the runtime's context, as the GPU's
    platform has them: CUDA (the default), ROCm, Intel's XPU, or Apple's Metal, which
    has neither a CUDA context nor a cuBLAS workspace."""
    percent = Fraction(scenario.allocator_overhead_percent)
    reserve = Term(
        "allocator_reserve",
        "cached blocks and rounding",
        int(tensor_peak * percent / 100),
        f"{percent}% of the tensor peak",
        f"{percent}% × {tensor_peak:,} B",
        ALLOCATOR_SOURCE,
    )
    if _replayed(scenario, gpu_id):
        reserve = _replay_reserve(scenario, tensor_peak, gpu_id)
    if scenario.device is Device.CPU:
        # On the CPU, PyTorch allocates host memory through c10's CPUAllocator: there is
        # no CUDA context and no cuBLAS workspace (c10/core/CPUAllocator.cpp).
        return [t for t in (reserve,) if t.bytes]
    vendor = _vendor(gpu_id)
    if vendor == "apple":
        # PyTorch's MPS backend: Metal, with no CUDA context and no cuBLAS workspace.
        return [t for t in (reserve,) if t.bytes]
    each = cublas_workspace_bytes(gpu_id)
    handles = 2 if scenario.mode is Mode.TRAINING else 1
    workspace = product(
        "cublas_workspace",
        "cuBLAS workspace per handle",
        [("handles", handles)],
        each,
        CUBLAS_SOURCE,
    )
    if vendor == "amd":
        workspace = product(
            "cublas_workspace",
            "hipBLASLt workspace per handle",
            [("handles", handles)],
            76 * 2**20,
            HIPBLASLT_SOURCE,
        )
    context_label, context_source = {
        "amd": ("HIP context and loaded kernels (not measured)", HIP_CONTEXT_SOURCE),
        "intel": ("XPU runtime context (not measured)", XPU_CONTEXT_SOURCE),
    }.get(vendor, ("CUDA context and loaded kernels", CONTEXT_SOURCE))
    context = product(
        "cuda_context",
        context_label,
        [("MiB", scenario.cuda_context_mib)],
        2**20,
        context_source,
    )
    kept = (reserve, context) if vendor == "intel" else (reserve, workspace, context)
    return [t for t in kept if t.bytes]


def estimate(scenario: Scenario, gpu_id: str | None = None) -> Estimate:
    """Estimate the memory ``scenario`` needs on one GPU.

    BERT-base training in fp32 with Adam, batch 32, sequence 128: weights, gradients and
    optimizer state are 4 + 4 + 8 bytes per parameter.

    >>> from nnmem.scenario import GenericModel
    >>> e = estimate(Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128))
    >>> {k: e.component_sizes()[k] for k in ("weights", "gradients", "optimizer_state")}
    {'weights': 440000000, 'gradients': 440000000, 'optimizer_state': 880000000}
    """
    if scenario.mode is Mode.INFERENCE and scenario.runtime.engine is not Runtime.TRANSFORMERS:
        from nnmem.runtimes import serve

        return serve.build(scenario, gpu_id)
    built = builder(scenario)(scenario)
    phases = built.phases
    if not phases:
        raise NnmemError.single("model", "This model gives no memory to estimate.")
    peak = max(p.bytes for p in phases)
    return Estimate(
        scenario=scenario,
        phases=tuple(phases),
        overheads=tuple(overheads(scenario, peak, gpu_id)),
        notes=tuple(built.notes) + _platform_notes(gpu_id),
        saved_activation_bytes=built.saved_activation_bytes,
        host=built.host,
        nvme=built.nvme,
        overhead_labels=PLATFORM_LABELS.get(_vendor(gpu_id), ()),
    )


def _platform_notes(gpu_id: str | None) -> tuple[str, ...]:
    """What the GPU's platform changes in the overheads, in words."""
    from nnmem import catalog

    gpu = catalog.gpu(gpu_id or "")
    if gpu is None:
        return ()
    if gpu.vendor == "apple":
        return (
            "Apple silicon: PyTorch runs through Metal (MPS), with no CUDA context and no "
            f"cuBLAS workspace. The GPU may use {gpu.usable_basis}.",
        )
    if gpu.vendor == "amd":
        return (
            "ROCm: a HIP context instead of CUDA's (not measured: the context setting stands "
            "in) and PyTorch's 76 MiB hipBLASLt workspace per handle.",
        )
    if gpu.vendor == "intel":
        return (
            "Intel XPU: the runtime's context is not measured (the context setting stands "
            "in); oneDNN's workspaces are not counted.",
        )
    return ()


# The result types live in nnmem.result; importing them from here keeps working.
__all__ = ["Component", "Estimate", "Phase", "estimate", "overheads"]
