"""The PyTorch-memory page (prerendered): what each memory counter includes."""

from __future__ import annotations

from typing import Any

from nnmem.estimate import estimate
from nnmem.render.markup import escape
from nnmem.scenario import parse
from nnmem.units import human
from nnmem.web.step_chart import step_chart_html
from nnmem.web.tools.common import Tool, Values, figure_html, table_html

# --- PyTorch memory (prerendered) ---------------------------------------------------------

PYTORCH_EXAMPLE: dict[str, object] = {
    "model": "preset",
    "preset": "llama-3.2-1b",
    "mode": "training",
    "precision": "amp_bf16",
    "optimizer": "adamw",
    "batch_size": 4,
    "seq_len": 1024,
}
# Which counter sees each component (nnmem.result.IN_ALLOCATED and IN_RESERVED say why).
COUNTERS = {
    "weights": "memory_allocated, from model.to('cuda')",
    "gradients": "memory_allocated, from backward until zero_grad(set_to_none=True)",
    "optimizer_state": "memory_allocated, from the first optimizer.step()",
    "activations": "memory_allocated, from the forward pass until backward frees them",
    "temporaries": "memory_allocated, briefly: only max_memory_allocated sees them",
    "kv_cache": "memory_allocated, growing with every generated token",
    "allocator_reserve": "memory_reserved − memory_allocated: cached blocks, fragmentation",
    "cublas_workspace": "memory_allocated: allocated through the caching allocator and kept",
    "cuda_context": "only nvidia-smi and mem_get_info: outside PyTorch's allocator",
}


def pytorch_memory(values: Values) -> dict[str, Any]:
    """An example estimate with each component mapped to the counter that sees it, and
    its steps drawn over time, as the calculator draws them."""
    del values
    scenario = parse(PYTORCH_EXAMPLE)
    e = estimate(scenario)
    rows = [
        (escape(c.label), human(c.bytes), escape(COUNTERS.get(c.key, "")))
        for c in e.components
        if c.bytes
    ]
    allocated, reserved = e.allocated_bytes, e.reserved_bytes
    table = table_html(
        ("nnmem component", "Size", "Where PyTorch reports it"),
        rows,
        "Llama-3.2-1B, AMP BF16 training with AdamW, batch 4 × 1,024 tokens",
    )
    figures = [
        figure_html(
            "allocated",
            "≈ torch.cuda.max_memory_allocated()",
            allocated,
            human(allocated),
        ),
        figure_html("reserved", "≈ torch.cuda.max_memory_reserved()", reserved, human(reserved)),
        figure_html("nvidia_smi", "≈ nvidia-smi", e.total_bytes, human(e.total_bytes)),
    ]
    example = f'<dl class="figures">{"".join(figures)}</dl>{table}'
    timeline = step_chart_html(scenario, id_prefix="guide-timeline")
    return {"html": "", "values": {}, "parts": {"example": example, "timeline": timeline}}


TOOL = Tool((), pytorch_memory, live=False)
