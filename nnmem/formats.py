"""Number formats: how many bits each stored value takes, scales and zeros included.

Quantized formats store the weights of the linear layers in a few bits plus per-group
scales (and zeros); the tensors they leave alone (embeddings, norms, biases and usually
the output head) stay in 16-bit. GGUF files quantize every tensor with a recipe of block
formats, so their published whole-file average already includes everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction


class Format(StrEnum):
    """How a weight (or a cached value) is stored."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"
    GPTQ = "gptq"
    AWQ = "awq"
    NF4 = "nf4"
    NF4_DQ = "nf4_dq"
    Q8_0 = "q8_0"
    Q6_K = "q6_k"
    Q5_K_M = "q5_k_m"
    Q4_K_M = "q4_k_m"
    Q4_0 = "q4_0"


# The one label of each weight format, used by the calculator, the CLI, the tool pages
# and the content.
LABELS: dict[Format, str] = {
    Format.FP32: "FP32",
    Format.FP16: "FP16",
    Format.BF16: "BF16",
    Format.FP8: "FP8 (E4M3)",
    Format.INT8: "INT8 (LLM.int8)",
    Format.INT4: "INT4 (plain)",
    Format.GPTQ: "GPTQ 4-bit",
    Format.AWQ: "AWQ 4-bit",
    Format.NF4: "NF4 (bitsandbytes 4-bit)",
    Format.NF4_DQ: "NF4 + double quantization",
    Format.Q8_0: "GGUF Q8_0",
    Format.Q6_K: "GGUF Q6_K",
    Format.Q5_K_M: "GGUF Q5_K_M",
    Format.Q4_K_M: "GGUF Q4_K_M",
    Format.Q4_0: "GGUF Q4_0",
}


@dataclass(frozen=True)
class FormatInfo:
    """What a format stores per weight and what it leaves in 16-bit."""

    # Bits per weight of the quantized tensors, overhead included; a function of the
    # group size for GPTQ/AWQ, so stored here for the default and computed in bits().
    bits: Fraction
    source: str
    grouped: bool = False  # GPTQ/AWQ: bits depend on the group size


BNB = "bitsandbytes: Dettmers et al. 2023, QLoRA, arXiv 2305.14314 §3"
GGML = "llama.cpp ggml/src/ggml-common.h block layouts; tools/quantize/README.md averages"

FORMATS: dict[Format, FormatInfo] = {
    Format.FP32: FormatInfo(Fraction(32), "IEEE 754 single precision"),
    Format.FP16: FormatInfo(Fraction(16), "IEEE 754 half precision"),
    Format.BF16: FormatInfo(Fraction(16), "bfloat16"),
    # One byte per weight; per-tensor or per-channel fp32 scales are a rounding error.
    Format.FP8: FormatInfo(Fraction(8), "FP8 weights with per-tensor scales (vLLM fp8)"),
    # LLM.int8: int8 weights plus one fp32 scale per output row, about 8.0 bits.
    Format.INT8: FormatInfo(
        Fraction(8),
        "bitsandbytes Linear8bitLt: int8 weight + fp32 row scale (Dettmers et al. 2022, "
        "arXiv 2208.07339)",
    ),
    Format.INT4: FormatInfo(Fraction(4), "4-bit weights, no scales counted"),
    # GPTQ QuantLinear: qweight 4 bits, fp16 scale and 4-bit zero per (group, column):
    # 4 + (16 + 4) / g bits; 4.156 at g = 128 (AutoGPTQ qlinear: qweight, qzeros, scales).
    Format.GPTQ: FormatInfo(
        Fraction(4) + Fraction(20, 128),
        "GPTQ QuantLinear layout (qweight, qzeros, scales, g_idx), Frantar et al. 2022, "
        "arXiv 2210.17323",
        grouped=True,
    ),
    Format.AWQ: FormatInfo(
        Fraction(4) + Fraction(20, 128),
        "AWQ GEMM layout (qweight, qzeros, fp16 scales per group), Lin et al. 2023, "
        "arXiv 2306.00978",
        grouped=True,
    ),
    # NF4: 4 bits + one fp32 absmax per 64 weights = 4.5 bits; double quantization
    # stores the absmax in 8 bits with an fp32 constant per 256 blocks: 4.127 bits.
    Format.NF4: FormatInfo(Fraction(4) + Fraction(32, 64), BNB),
    Format.NF4_DQ: FormatInfo(
        Fraction(4) + Fraction(8, 64) + Fraction(32, 64 * 256),
        BNB,
    ),
    # GGUF block formats (bytes per block of 32 or 256 weights) and, for the K-quant
    # mixtures, llama.cpp's published whole-file average for Llama-3.1-8B.
    Format.Q8_0: FormatInfo(Fraction(34 * 8, 32), GGML),
    Format.Q6_K: FormatInfo(Fraction(210 * 8, 256), GGML),
    Format.Q5_K_M: FormatInfo(Fraction(57036, 10000), GGML),
    Format.Q4_K_M: FormatInfo(Fraction(48944, 10000), GGML),
    Format.Q4_0: FormatInfo(Fraction(18 * 8, 32), GGML),
}

FLOAT_FORMATS = {Format.FP32: 4, Format.FP16: 2, Format.BF16: 2}


def bits(fmt: Format, group_size: int = 128) -> Fraction:
    """Bits per quantized weight, scales and zeros included.

    >>> float(bits(Format.GPTQ, 128)), float(bits(Format.NF4_DQ)), float(bits(Format.Q8_0))
    (4.15625, 4.126953125, 8.5)
    """
    info = FORMATS[fmt]
    if info.grouped:
        return Fraction(4) + Fraction(20, group_size)
    return info.bits


def is_float(fmt: Format) -> bool:
    """Whether the format is a plain floating-point type (no quantization)."""
    return fmt in FLOAT_FORMATS


def is_gguf(fmt: Format) -> bool:
    """Whether the format is a llama.cpp GGUF recipe (every tensor quantized)."""
    return fmt in {Format.Q8_0, Format.Q6_K, Format.Q5_K_M, Format.Q4_K_M, Format.Q4_0}
