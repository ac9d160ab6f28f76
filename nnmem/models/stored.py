"""The weights as a checkpoint stores them: the exact bytes its headers state.

A quantized checkpoint packs its weights in ways an average bits-per-weight figure only
approximates: GPTQ and AWQ pack eight 4-bit values into an int32 with per-group scales
and zeros, bitsandbytes 4-bit adds absmax blocks (and a second quantization of them),
FP8 adds per-tensor or per-block scales, MXFP4 stores 32-value blocks with a shared
exponent, and a GGUF recipe mixes several block types. When the scenario carries
``checkpoint_bytes`` (read from the safetensors headers or the GGUF tensor infos), a
quantized precision's weights term is those bytes, one term per dtype or part.
"""

from __future__ import annotations

from nnmem.formats import is_float
from nnmem.scenario import Scenario
from nnmem.terms import Term

STORED_SOURCE = (
    "the checkpoint's own headers: safetensors data_offsets (safetensors tensor.rs) or "
    "GGUF tensor infos with ggml's block sizes (ggml.c type_traits); weights load as "
    "stored, since quantized formats are not converted on load"
)


def stored_weight_terms(s: Scenario) -> list[Term] | None:
    """One weights term per stored dtype or part, or None when the scenario has no
    checkpoint bytes or its precision is a float format (then P × width is exact).

    >>> from nnmem.scenario import GenericModel, Mode, Precision
    >>> s = Scenario(GenericModel(8_000_000_000, 4096, 32), Mode.INFERENCE, Precision.GPTQ,
    ...              checkpoint_bytes=(("quantized weights", 4_000_000_000),))
    >>> [(t.label, t.bytes, t.substituted) for t in stored_weight_terms(s)]
    [('quantized weights as stored in the checkpoint', 4000000000, '4,000,000,000 B')]
    """
    if not s.checkpoint_bytes or is_float(s.precision.weight_format):
        return None
    return [
        Term(
            "weights",
            f"{name} as stored in the checkpoint",
            count,
            f"stored bytes ({name})",
            f"{count:,} B",
            STORED_SOURCE,
        )
        for name, count in s.checkpoint_bytes
    ]
