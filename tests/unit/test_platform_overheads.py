"""The overheads follow the GPU's platform: CUDA, ROCm, Intel XPU or Apple's Metal.

Sources: PyTorch ``aten/src/ATen/cuda/CublasHandlePool.cpp`` (cuBLAS workspace
4096·1024·2 + 16·1024·8 B per handle before Hopper; on ROCm
``parseCUDABlasLtWorkspaceSize`` gives hipBLASLt 76 MiB); PyTorch's MPS backend runs on
Metal, which has no CUDA context and no cuBLAS.
"""

from __future__ import annotations

from nnmem import estimate, parse

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


def test_a_cpu_step_has_no_cuda_context_or_cublas_workspace() -> None:
    # On the CPU, PyTorch allocates through c10's CPUAllocator: no CUDA context, no cuBLAS
    # workspace. Llama 3.1 8B serving in bf16: weights 16,060,522,496 B, activations
    # 61,083,648 B, KV cache 67,108,864 B; the allocator reserve is 5% of their sum,
    # 16,188,715,008 B × 5% = 809,435,750 B. Before, the CPU total still carried the
    # 740 MiB CUDA context and an 8,519,680 B workspace.
    base = {"model": "preset", "preset": "llama-3.1-8b", "mode": "inference", "precision": "bf16"}
    cpu = estimate(parse({**base, "device": "cpu"}))
    assert [c.key for c in cpu.components if c.bytes] == [
        "weights",
        "activations",
        "kv_cache",
        "allocator_reserve",
    ]
    assert cpu.total_bytes == 16_060_522_496 + 61_083_648 + 67_108_864 + 809_435_750
    assert "cuda_context_mib" in parse({**base, "device": "cpu"}).inactive_fields()
