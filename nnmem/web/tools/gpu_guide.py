"""The GPU guide (prerendered): which GPU each size of model needs."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from nnmem import catalog, solvers
from nnmem.estimate import estimate
from nnmem.render.markup import escape
from nnmem.units import count, fixed, human, scaled
from nnmem.web.tools.common import Tool, Values, preset_scenario, table_html

# --- GPU guide (prerendered) --------------------------------------------------------------


GUIDE_SETTINGS: dict[str, tuple[str, dict[str, object]]] = {
    "serve_bf16": (
        "Serves in BF16",
        {"mode": "inference", "precision": "bf16", "batch_size": 1, "seq_len": 4096},
    ),
    "serve_int4": (
        "Serves in 4-bit (AWQ)",
        {"mode": "inference", "precision": "awq", "batch_size": 1, "seq_len": 4096},
    ),
    "train_full": (
        "Trains fully (AMP + AdamW)",
        {
            "mode": "training",
            "precision": "amp_bf16",
            "optimizer": "adamw",
            "batch_size": 1,
            "seq_len": 2048,
            "checkpointing": "full",
        },
    ),
    "qlora": (
        "Fine-tunes with QLoRA",
        {
            "mode": "training",
            "precision": "nf4_dq",
            "finetune": "lora",
            "lora_rank": 16,
            "lora_targets": "all_linear",
            "batch_size": 1,
            "seq_len": 2048,
            "checkpointing": "full",
        },
    ),
}


def size_class_table() -> dict[int, dict[str, str | None]]:
    """For each distinct usable GPU memory, the largest catalog LLM for each job.

    The estimates run without a GPU id (so with the pre-Hopper cuBLAS workspace, 8.5 MB),
    once per model and job; a class then takes the largest model whose total fits the
    usable memory less the headroom the calculator's verdict keeps (the same setting).
    """
    totals: dict[str, list[tuple[int, str]]] = {}
    models = catalog.models()
    for job, (_, settings) in GUIDE_SETTINGS.items():
        totals[job] = [
            (estimate(preset_scenario(m.id, **settings)).total_bytes, m.id)
            for m in models.values()
            if m.architecture in ("decoder", "moe")
        ]
    default = preset_scenario("llama-3-8b")
    classes: dict[int, dict[str, str | None]] = {}
    for usable in sorted({g.usable_bytes for g in catalog.gpus().values()}):
        budget = solvers.budget_for(default, usable)
        row: dict[str, str | None] = {}
        for job, fitting in totals.items():
            ok = [(models[i].params, i) for size, i in fitting if size <= budget]
            row[job] = max(ok)[1] if ok else None
        classes[usable] = row
    return classes


def headroom_percent() -> str:
    """The headroom the guide keeps, as the calculator's default sets it."""
    return f"{preset_scenario('llama-3-8b').headroom_percent:g}%"


def _model_cell(model_id: str | None) -> tuple[str, str]:
    """The cell's text and its sort key (parameters)."""
    if model_id is None:
        return "none", "0"
    m = catalog.models()[model_id]
    return f"{escape(m.name)} <small>({count(m.params)})</small>", str(m.params)


def gpu_guide(values: Values) -> dict[str, Any]:
    """The GPU catalog as a sortable table, and what each memory size can run."""
    del values
    classes = size_class_table()
    head = (
        "GPU",
        "Type",
        "Usable memory (GiB)",
        "Bandwidth (GB/s)",
        "Dense 16-bit TFLOPS",
        *(label for label, _ in GUIDE_SETTINGS.values()),
    )
    numeric = {2, 3, 4, 5, 6, 7, 8}
    th = "".join(
        f'<th scope="col" data-type="{"number" if i in numeric else "text"}" aria-sort="none">'
        '<button type="button" class="sort">'
        f"{escape(h)}</button></th>"
        for i, h in enumerate(head)
    )
    body = []
    for g in catalog.gpus().values():
        usable = g.usable_bytes
        cells = [
            (escape(g.name), g.name),
            (escape(g.kind), g.kind),
            (
                scaled(usable, 2**30, 1)
                + (
                    f" <small>of {g.memory_bytes // 2**30:,} GB</small>"
                    if usable != g.memory_bytes
                    else ""
                ),
                str(usable),
            ),
            (
                fixed(Fraction(g.bandwidth_bytes_per_s or 0, 10**9), 0),
                str(g.bandwidth_bytes_per_s or 0),
            ),
            (
                f"{g.fp16_tflops:,} {(g.tflops_format or '').upper()}" if g.fp16_tflops else "–",
                str(g.fp16_tflops or 0),
            ),
            *(_model_cell(classes[usable][job]) for job in GUIDE_SETTINGS),
        ]
        body.append(
            "<tr>" + "".join(f'<td data-sort="{escape(k)}">{t}</td>' for t, k in cells) + "</tr>"
        )
    gpu_table = (
        '<div class="table-scroll" tabindex="0" role="region" aria-label="GPU catalog">'
        '<table class="tool-table sortable" id="gpu-table">'
        "<caption>GPUs in nnmem's catalog; choose a column heading to sort</caption>"
        f"<thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
    class_rows = []
    for budget, row in classes.items():
        names = [g.name for g in catalog.gpus().values() if g.usable_bytes == budget]
        class_rows.append(
            (
                f"<strong>{human(budget, True)}</strong><br>"
                f"<small>{escape(', '.join(names))}</small>",
                *(_model_cell(row[job])[0] for job in GUIDE_SETTINGS),
            )
        )
    class_table = table_html(
        ("Usable memory", *(label for label, _ in GUIDE_SETTINGS.values())),
        class_rows,
        "The largest catalog language model for each job, by memory size",
    )
    return {"html": "", "values": {}, "parts": {"gpus": gpu_table, "sizes": class_table}}


TOOL = Tool((), gpu_guide, live=False)
