"""The "what fits my GPU" tool: the catalog ranked by the largest model and best format
that run on the chosen cards, with the command that launches each
(:func:`nnmem.runtimes.fit.what_fits`)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

from nnmem import catalog
from nnmem.render.markup import escape
from nnmem.runtimes import fit
from nnmem.units import count, human
from nnmem.validation import whole
from nnmem.web.fields import Field
from nnmem.web.form import gpu_label
from nnmem.web.tools import common
from nnmem.web.tools.common import Tool, Values

WF_GPUS = whole("num_gpus", "Number of GPUs", 64)
WF_RAM = common.decimal(
    "ram_gb", "System RAM", "0", "4096", "a number of GB of system RAM from 0 to 4,096"
)
WF_CONTEXT = whole("context", "Context per request", 1_048_576)
WF_USERS = whole("users", "Concurrent users", 1_024)
RUNTIMES = (
    ("llama_cpp", "llama.cpp, Ollama or LM Studio (GGUF)"),
    ("vllm", "vLLM (safetensors, BF16 or FP8)"),
)
WHERE = {
    "gpu": "on the GPU",
    "gpu+ram": "GPU and system RAM",
    "ram": "system RAM only",
}
SHOWN = 40  # rows in the ranking; the rest are counted


def _gpu_options() -> tuple[tuple[str, str], ...]:
    return tuple((g.id, gpu_label(g)) for g in catalog.gpus().values() if g.kind != "apple")


def what_fits(values: Values) -> dict[str, Any]:
    """The ranking for the form's cards, runtime, context and users."""
    v = common.read_all(
        gpu=common.choice("gpu", "GPU", _gpu_options(), values),
        gpus=common.number(WF_GPUS, values),
        runtime=common.choice("runtime", "Runtime", RUNTIMES, values),
        ram=common.number(WF_RAM, values),
        context=common.number(WF_CONTEXT, values),
        users=common.number(WF_USERS, values),
    )
    gpu = catalog.gpus()[v["gpu"]]
    gpus, context, users = int(v["gpus"]), int(v["context"]), int(v["users"])
    llama = v["runtime"] == "llama_cpp"
    ram = int(Decimal(v["ram"]) * 10**9) if llama else 0
    vram = [gpu.usable_bytes] * gpus
    ranked = fit.what_fits(vram, v["runtime"], context, users, ram)
    fits = [f for f in ranked if f.fits != "no"]
    rows = []
    for f in fits[:SHOWN]:
        memory = human(f.gpu_bytes) + (f" + {human(f.ram_bytes)} RAM" if f.ram_bytes else "")
        rows.append(
            (
                f'<span data-model="{escape(f.model_id)}">{escape(f.name)}</span>',
                escape(count(f.params, million_places=0)),
                escape(f.fmt),
                escape(WHERE.get(f.fits, f.fits)),
                escape(memory),
                escape(f.detail),
                f"<code>{escape(f.command)}</code>",
            )
        )
    cards = f"{gpus} × {gpu.name}" if gpus > 1 else gpu.name
    best = fits[0] if fits else None
    headline = (
        common.figure_html(
            "best",
            "Largest that fits",
            best.params,
            f"{escape(best.name)} in {escape(best.fmt)} ({escape(WHERE[best.fits])})",
        )
        if best
        else common.figure_html("best", "Largest that fits", 0, "nothing in the catalog")
    )
    count_html = common.figure_html(
        "count", "Catalog models that run", len(fits), f"{len(fits)} of {len(ranked)}"
    )
    table = (
        common.table_html(
            ("Model", "Parameters", "Format", "Where", "Memory", "Detail", "Launch command"),
            rows,
            f"What runs on {cards} at {context:,} tokens × {users} user(s), largest first",
        )
        if rows
        else "<p>No catalog model fits these cards at this context.</p>"
    )
    more = len(fits) - len(rows)
    tail = f"<p>{more} smaller models also fit.</p>" if more > 0 else ""
    steps = [
        (
            "llama.cpp: each model is tried from F16 down to Q2_K with -c context × users "
            "shared by -np users slots and flash attention on; it fits on the GPU when every "
            "layer and the output (-ngl layers + 1) do, else with the largest -ngl whose rest "
            "fits the system RAM. Ollama: num_ctx = the context, OLLAMA_NUM_PARALLEL = users."
            if llama
            else "vLLM: each model is tried in BF16 then FP8 (dense models) with "
            "--max-model-len = the context and tensor parallelism over the cards; it fits "
            "when vLLM starts and its maximum concurrency reaches the users."
        ),
        "The memory of each row and its terms are the calculator's, with the runtime chosen "
        "there; the accuracy page lists how they compare with measured runs.",
    ]
    html = f'<dl class="figures">{headline}{count_html}</dl>{table}{tail}' + common.list_html(steps)
    return {
        "html": html,
        "values": {
            "best": common.figure(best.params if best else 0),
            "best_model": best.model_id if best else "",
            "best_format": best.fmt if best else "",
            "count": str(len(fits)),
            "share": common.figure(Fraction(len(fits), max(len(ranked), 1))),
        },
    }


TOOL = Tool(
    (
        Field(
            "gpu",
            "GPU",
            "The card; its memory comes from nnmem's GPU catalog.",
            "choice",
            "rtx-4090",
            options=_gpu_options(),
        ),
        Field(
            "num_gpus", "Number of GPUs", "Cards of this kind.", "number", "1", inputmode="numeric"
        ),
        Field(
            "runtime",
            "Runtime",
            "llama.cpp (and Ollama, LM Studio) runs GGUF files and can spill layers into "
            "system RAM; vLLM serves many users from the GPU alone.",
            "choice",
            "llama_cpp",
            options=RUNTIMES,
        ),
        Field(
            "ram_gb",
            "System RAM",
            "Memory for the layers left on the CPU (llama.cpp -ngl).",
            "number",
            "32",
            "GB",
            when="runtime=llama_cpp",
        ),
        Field(
            "context",
            "Context per request",
            "Tokens each request holds: prompt and answer.",
            "number",
            "8192",
            "tokens",
            inputmode="numeric",
        ),
        Field(
            "users",
            "Concurrent users",
            "Requests served at once, each with its own context.",
            "number",
            "1",
            inputmode="numeric",
        ),
    ),
    what_fits,
)
