"""The compression page (prerendered): weight bytes in each format."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from nnmem import catalog
from nnmem.estimate import estimate
from nnmem.formats import LABELS, Format, bits
from nnmem.render.markup import escape
from nnmem.units import fixed, human
from nnmem.web.tools.common import Tool, Values, preset_scenario, table_html

# --- compression (prerendered) ------------------------------------------------------------

COMPRESSION_PRESETS = ("llama-3.1-8b", "qwen2.5-32b", "llama-3.1-70b")
COMPRESSION_FORMATS = (
    Format.FP32, Format.BF16, Format.FP8, Format.INT8, Format.GPTQ, Format.AWQ,
    Format.NF4, Format.NF4_DQ, Format.Q8_0, Format.Q6_K, Format.Q5_K_M, Format.Q4_K_M,
    Format.Q4_0,
)  # fmt: skip


def weight_bytes(preset: str, fmt: Format) -> int:
    """The weights of a catalog model stored in ``fmt``, as the calculator counts them."""
    scenario = preset_scenario(
        preset, mode="inference", precision=fmt.value, batch_size=1, seq_len=1
    )
    return estimate(scenario).component("weights").bytes


def compression(values: Values) -> dict[str, Any]:
    """The memory of each weight format for a few catalog models, and a distillation pair."""
    del values
    models = catalog.models()
    head = ("Format", "Bits per weight", *(models[p].name for p in COMPRESSION_PRESETS))
    base = {p: weight_bytes(p, Format.BF16) for p in COMPRESSION_PRESETS}
    rows = []
    for fmt in COMPRESSION_FORMATS:
        cells = []
        for p in COMPRESSION_PRESETS:
            size = weight_bytes(p, fmt)
            cells.append(
                f"{human(size)} <small>({fixed(Fraction(size * 100, base[p]), 0)}% of BF16)</small>"
            )
        rows.append((escape(LABELS[fmt]), f"{float(bits(fmt)):.3g}", *cells))
    formats = table_html(
        head,
        rows,
        "Weight memory by format (GPU formats keep the embeddings, the output layer and the "
        "norms in 16-bit; GGUF quantizes the embeddings and the output layer too and keeps "
        "the 1-D norms in F32)",
    )
    train = {"mode": "training", "precision": "amp_bf16", "batch_size": 32, "seq_len": 128}
    pair = []
    for p in ("bert-base-uncased", "distilbert-base-uncased"):
        e = estimate(preset_scenario(p, **train))
        pair.append((escape(models[p].name), f"{models[p].params:,}", human(e.total_bytes)))
    distill = table_html(
        ("Model", "Parameters", "Training memory (AMP, AdamW, batch 32 × 128)"),
        pair,
        "A distilled student against its teacher",
    )
    return {"html": "", "values": {}, "parts": {"formats": formats, "distillation": distill}}


TOOL = Tool((), compression, live=False)
