"""The GPU catalog's number formats, units and usable memory, checked against the vendors.

Sources: NVIDIA's CUDA C++ Programming Guide, "Compute Capabilities" (BF16 tensor cores from
compute capability 8.0, FP8 from 8.9 and 9.0, FP4 from 10.0); the NVIDIA Ampere GA100 and Ada
and Hopper whitepapers; AMD's CDNA 2 and CDNA 3 whitepapers (BF16 matrix cores; FP8 from
CDNA 3); Intel's Xe2 (Arc B-series) specifications (XMX: FP16, BF16, INT8).
"""

import re

import pytest

from nnmem import catalog

GPUS = catalog.gpus()


@pytest.mark.parametrize(
    ("gpu_id", "bf16", "fp8"),
    [
        ("t4", False, False),  # Turing sm75: FP16 tensor cores only
        ("v100-sxm2-16gb", False, False),  # Volta sm70
        ("a100-sxm-80gb", True, False),  # Ampere sm80: BF16, no FP8
        ("rtx-3090", True, False),  # sm86
        ("rtx-4090", True, True),  # Ada sm89: FP8
        ("l4", True, True),
        ("h100-sxm-80gb", True, True),  # Hopper sm90
        ("b200-180gb", True, True),
        ("mi250x", True, False),  # CDNA 2
        ("mi300x", True, True),  # CDNA 3
        ("rx-7900-xtx", True, False),  # RDNA 3: WMMA in FP16/BF16, no FP8
        ("arc-b580", True, False),
    ],
)
def test_number_formats_follow_the_architecture(gpu_id: str, bf16: bool, fp8: bool) -> None:
    gpu = GPUS[gpu_id]
    assert gpu.supports("fp16")
    assert gpu.supports("bf16") is bf16
    assert gpu.supports("fp8") is fp8


def test_the_dense_rate_is_labelled_with_its_format() -> None:
    """A card without BF16 quotes an FP16 rate; every other rate is the BF16 one."""
    for gpu in GPUS.values():
        if gpu.fp16_tflops is None:
            assert gpu.tflops_format is None, gpu.id
        else:
            assert gpu.tflops_format == ("bf16" if gpu.supports("bf16") else "fp16"), gpu.id
    assert GPUS["t4"].tflops_format == "fp16"
    assert GPUS["v100-sxm2-32gb"].tflops_format == "fp16"


def test_fp8_needs_compute_capability_89() -> None:
    for gpu in GPUS.values():
        match = re.match(r"sm(\d+)", gpu.architecture)
        if match:
            assert gpu.supports("fp8") is (int(match.group(1)) >= 89), gpu.id
            assert gpu.supports("bf16") is (int(match.group(1)) >= 80), gpu.id


def test_mi250x_is_one_64_gb_gcd() -> None:
    """AMD MI250X datasheet: 128 GB on two GCDs that software sees as two GPUs."""
    gcd = GPUS["mi250x"]
    assert gcd.memory_bytes == 64 * 2**30
    assert gcd.bandwidth_bytes_per_s == 3_276_800_000_000 // 2
    assert gcd.fp16_tflops == 383 / 2


@pytest.mark.parametrize(
    ("gpu_id", "gib"),
    [
        ("rtx-4060", 8),
        ("rtx-4060-ti-8gb", 8),
        ("rtx-3060-ti", 8),
        ("rtx-3070", 8),
        ("rtx-4070", 12),
        ("rtx-5060-ti-16gb", 16),
        ("rtx-4090-laptop", 16),
        ("rx-7600", 8),
        ("rx-7800-xt", 16),
        ("arc-b580", 12),
    ],
)
def test_the_cards_most_people_own(gpu_id: str, gib: int) -> None:
    gpu = GPUS[gpu_id]
    assert gpu.memory_bytes == gib * 2**30
    assert gpu.bandwidth_bytes_per_s
    assert gpu.fp16_tflops
    assert gpu.source


def test_a_marketing_gb_is_a_gib() -> None:
    """Memory chips come in powers of two: a "24 GB" card holds 24 GiB."""
    for gpu in GPUS.values():
        size = int(re.match(r"(\d+) ?GB", gpu.memory_label).group(1))  # type: ignore[union-attr]
        assert gpu.memory_unit == "GiB"
        assert gpu.memory_bytes == size * 2**30, gpu.id


@pytest.mark.parametrize(
    ("gpu_id", "usable"),
    [
        ("rtx-4090", 24 * 2**30),  # no published reserve: the capacity
        ("t4", 15_360 * 2**20),  # nvidia-smi total with ECC on
        ("a10g", 24 * 2**30 * 15 // 16),  # ECC on by default: 1/16 taken
        ("h100-sxm-80gb", 81_559 * 2**20),  # nvidia-smi total
        ("m4-max-128gb", int(128 * 2**30 * 0.84)),  # macOS wired limit
    ],
)
def test_usable_memory(gpu_id: str, usable: int) -> None:
    assert GPUS[gpu_id].usable_bytes == usable
    assert GPUS[gpu_id].usable_basis
