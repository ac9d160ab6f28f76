"""The overheads follow the GPU's platform: CUDA, ROCm, Intel XPU or Apple's Metal.

Sources: PyTorch ``aten/src/ATen/cuda/CublasHandlePool.cpp`` (cuBLAS workspace
4096·1024·2 + 16·1024·8 B per handle before Hopper; on ROCm
``parseCUDABlasLtWorkspaceSize`` gives hipBLASLt 76 MiB); PyTorch's MPS backend runs on
Metal, which has no CUDA context and no cuBLAS.
"""

from __future__ import annotations

from dataclasses import replace

from nnmem import estimate, parse
from nnmem.scenario import Device

SCENARIO = parse(
    {"model": "preset", "preset": "llama-3-8b", "mode": "inference", "precision": "bf16"}
)


def rows(gpu: str) -> dict[str, tuple[str, int]]:
    e = estimate(SCENARIO, gpu)
    return {
        c.key: (c.label, c.bytes)
        for c in e.components
        if c.key in ("cuda_context", "cublas_workspace")
    }


def test_apple_has_no_cuda_context_and_no_cublas_workspace() -> None:
    assert rows("m4-max-128gb") == {}
    notes = " ".join(estimate(SCENARIO, "m4-max-128gb").notes)
    assert "Metal" in notes
    assert "84%" in notes  # the wired share the catalog uses at 128 GB


def test_rocm_has_a_hip_context_and_a_hipblaslt_workspace() -> None:
    found = rows("mi300x")
    assert found["cublas_workspace"] == ("hipBLASLt workspace", 76 * 2**20)
    assert found["cuda_context"][0] == "HIP context"


def test_cuda_keeps_its_names() -> None:
    found = rows("a100-sxm-80gb")
    assert found["cublas_workspace"] == ("cuBLAS workspace", 4096 * 1024 * 2 + 16 * 1024 * 8)
    assert found["cuda_context"] == ("CUDA context", 740 * 2**20)


def test_the_cpu_has_no_cuda_context_and_no_cublas_workspace() -> None:
    """A step on the CPU (device cpu) runs no CUDA runtime and no cuBLAS: the total is
    the default 740 MiB context and one 8,519,680 B handle workspace below CUDA's."""
    cpu = estimate(replace(SCENARIO, device=Device.CPU))
    cuda = estimate(SCENARIO)
    assert not {"cuda_context", "cublas_workspace"} & {c.key for c in cpu.components}
    assert cuda.total_bytes - cpu.total_bytes == 740 * 2**20 + 4096 * 1024 * 2 + 16 * 1024 * 8
