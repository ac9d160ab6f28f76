"""An estimate as plain text: the model's name, the totals, the table, the whole report."""

from __future__ import annotations

from fractions import Fraction

from nnmem.models.architecture import Transformer
from nnmem.result import Estimate
from nnmem.scenario import (
    LABELS,
    Checkpointing,
    Finetune,
    GenericModel,
    Mode,
    ModelKind,
    Runtime,
    Scenario,
    Sharding,
)
from nnmem.terms import Term
from nnmem.units import human, percent, plain, scaled

MB = 10**6
GB = 10**9
GIB = 2**30
HEADER = ("Component", "Memory (MB)", "Memory (GB)", "% of total")


def model_name(scenario: Scenario) -> str:
    """A short name for the scenario's model.

    >>> model_name(Scenario(GenericModel(110_000_000, 768, 12)))
    '110M parameters'
    """
    m = scenario.model
    if isinstance(m, GenericModel):
        return f"{plain(Fraction(m.params, MB), 3)}M parameters"
    if scenario.kind is ModelKind.PRESET:
        from nnmem import catalog

        return catalog.models()[scenario.source["preset"]].name
    if isinstance(m, Transformer):
        return f"{m.model_type or m.family.value} transformer ({m.layers} layers, h = {m.hidden:,})"
    return f"{getattr(m, 'name', 'custom')} network"


def describe(scenario: Scenario) -> str:
    """One line naming the scenario.

    >>> describe(Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128))
    'Training · 110M parameters · FP32 · Adam / AdamW · batch 32 · sequence 128'
    """
    gpus = sharing_gpus(scenario)
    if scenario.mode is Mode.INFERENCE and scenario.runtime.engine is not Runtime.TRANSFORMERS:
        llama = scenario.runtime.engine is Runtime.LLAMA_CPP
        fmt = LABELS[scenario.gguf_type] if llama else LABELS[scenario.precision]
        served = [LABELS[scenario.mode], model_name(scenario), LABELS[scenario.runtime], fmt]
        served.append(f"{scenario.batch_size:,} × {scenario.seq_len:,} tokens")
        if gpus > 1:
            served.append(f"per GPU of {gpus}")
        return " · ".join(served)
    parts = [LABELS[scenario.mode], model_name(scenario), LABELS[scenario.precision]]
    if scenario.mode is Mode.TRAINING:
        parts.append(LABELS[scenario.optimizer])
        parts += _training_choices(scenario)
    parts.append(f"batch {scenario.batch_size:,}")
    if "seq_len" not in scenario.inactive_fields():
        parts.append(f"sequence {scenario.seq_len:,}")
    if gpus > 1:
        parts.append(f"per GPU of {gpus}")
    return " · ".join(parts)


_CHECKPOINTING = {
    Checkpointing.SELECTIVE: "selective checkpointing",
    Checkpointing.PER_OP: "per-op checkpointing",
    Checkpointing.EVERY_N: "checkpointing every n-th layer",
    Checkpointing.FULL: "full checkpointing",
}


def _training_choices(scenario: Scenario) -> list[str]:
    """The training settings that change the memory most, where they are on: adapters
    (QLoRA where the frozen base is quantized), checkpointing and sharding."""
    parts = []
    if scenario.finetune is Finetune.LORA:
        kind = "LoRA" if scenario.precision.trains_fully else "QLoRA"
        parts.append(f"{kind} rank {scenario.lora_rank:,}")
    if scenario.checkpointing is not Checkpointing.NONE:
        parts.append(_CHECKPOINTING[scenario.checkpointing])
    if scenario.sharding is not Sharding.NONE and scenario.num_gpus > 1:
        parts.append(LABELS[scenario.sharding].split(" (")[0])
    return parts


def sharing_gpus(scenario: Scenario) -> int:
    """The GPUs the run is split over, so that every figure is per GPU when more than one:
    llama.cpp splits layers over ``num_gpus``; vLLM tensor and pipeline parallel."""
    if scenario.mode is Mode.INFERENCE and scenario.runtime.engine is Runtime.VLLM:
        return scenario.tensor_parallel * scenario.pipeline_parallel
    return scenario.num_gpus


def total_label(scenario: Scenario) -> str:
    """The headline over the total: per GPU when the run is split over several.

    >>> total_label(Scenario(GenericModel(110_000_000, 768, 12), num_gpus=8))
    'Total estimated memory per GPU (of 8)'
    """
    gpus = sharing_gpus(scenario)
    return "Total estimated memory" + (f" per GPU (of {gpus:,})" if gpus > 1 else "")


def total_text(estimate: Estimate, binary: bool = False) -> str:
    """The total in the largest fitting unit."""
    return human(estimate.total_bytes, binary)


def total_detail(estimate: Estimate, binary: bool = False) -> str:
    """The total as an exact byte count, with the tensor peak and its phase."""
    peak = human(estimate.tensor_peak_bytes, binary)
    host = f"; host RAM {human(estimate.host_bytes, binary)}" if estimate.host else ""
    if estimate.nvme:
        host += f"; NVMe {human(estimate.nvme_bytes, binary)}"
    return (
        f"{estimate.total_bytes:,} bytes; tensors peak at {peak} "
        f"in the {estimate.peak_phase.label.lower()}{host}"
    )


def _rows(estimate: Estimate) -> list[tuple[str, str, int]]:
    return [(c.key, c.label, c.bytes) for c in estimate.components]


def table_text(estimate: Estimate) -> str:
    """The breakdown table as aligned plain text."""
    total = estimate.total_bytes
    rows = [
        HEADER,
        *(
            (label, scaled(n, MB, 1), scaled(n, GB, 2), percent(n, total))
            for _, label, n in _rows(estimate)
        ),
        ("Total", scaled(total, MB, 1), scaled(total, GB, 2), "100.0%"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        )
        for row in rows
    ]
    rule = "  ".join("-" * w for w in widths)
    out = [lines[0], rule, *lines[1:-1], rule, lines[-1]]
    if estimate.host:
        out.append(f"Host memory (CPU RAM), beside the GPU: {human(estimate.host_bytes)}")
    if estimate.nvme:
        out.append(f"NVMe swap files, beside the GPU: {human(estimate.nvme_bytes)}")
    return "\n".join(out)


# The charts are drawn in a 400-unit-wide viewBox with 14-unit text, so on a 390 px phone


def _term_line(t: Term, binary: bool = False) -> str:
    if t.formula == t.substituted or not t.substituted:
        return f"{t.formula} = {human(t.bytes, binary)}"
    return f"{t.formula} = {t.substituted} = {human(t.bytes, binary)}"


def text(estimate: Estimate) -> str:
    """The whole estimate as plain text, for the command line."""
    lines = [
        describe(estimate.scenario),
        "",
        f"Total estimated memory: {total_text(estimate)} ({total_detail(estimate)})",
        "",
        table_text(estimate),
        "",
        "Phases (tensor memory at each phase's peak)",
        *(
            f"  {p.label:15} {human(p.bytes):>11}"
            + ("  <- peak" if p is estimate.peak_phase else "")
            for p in estimate.phases
        ),
        "",
        f"Formula: total = {estimate.total_formula}",
    ]
    for c in estimate.components:
        if not c.terms:
            continue
        lines.append(f"  {c.label} = {human(c.bytes)}")
        lines += [f"    {t.label}: {_term_line(t)}" for t in c.terms]
    served = runtime_text(estimate)
    if served:
        lines += ["", served]
    if estimate.host:
        lines.append(f"  Host memory (CPU RAM) = {human(estimate.host_bytes)}")
        lines += [f"    {t.label}: {_term_line(t)}" for t in estimate.host]
    if estimate.nvme:
        lines.append(f"  NVMe swap files = {human(estimate.nvme_bytes)}")
        lines += [f"    {t.label}: {_term_line(t)}" for t in estimate.nvme]
    lines += ["", "Notes", *(f"  - {n}" for n in estimate.notes)]
    return "\n".join(lines)


# --- what only a serving runtime answers -----------------------------------------------------


def runtime_rows(estimate: Estimate, binary: bool = False) -> list[tuple[str, str, str]]:
    """The runtime's own figures as (key, label, value) rows; empty for transformers."""
    r = estimate.runtime
    if not r:
        return []
    rows: list[tuple[str, str, str]] = []
    if r["engine"] == "vllm":
        rows.append(
            (
                "requests",
                "Requests at once × context",
                f"{r['requests']:,} × {r['max_model_len']:,} tokens",
            )
        )
        rows.append(
            (
                "scheduler",
                "max_num_seqs / max_num_batched_tokens",
                f"{r['max_num_seqs']:,} / {r['max_num_batched_tokens']:,}",
            )
        )
        rows.append(
            (
                "blocks",
                "KV blocks per request",
                f"{r['blocks_per_request']:,} of {r['block_size']} tokens, "
                f"{human(r['bytes_per_block'], binary)} each",
            )
        )
        if r.get("starts") is not None:
            rows.append(
                (
                    "kv_tokens",
                    f"GPU KV cache size on {r['gpu']}",
                    f"{r['kv_tokens']:,} tokens ({r['num_blocks']:,} blocks, "
                    f"{human(max(r['kv_budget_bytes'], 0), binary)})",
                )
            )
            rows.append(
                (
                    "max_concurrency",
                    f"Maximum concurrency for {r['max_model_len']:,} tokens per request",
                    f"{r['max_concurrency']:.2f}x",
                )
            )
            rows.append(("starts", "Starts", "yes" if r["starts"] else r["failure"]))
        rows.append(("command", "Command", r["flags"]))
        return rows
    vram = ", ".join(human(b, binary) for b in r["vram_bytes"])
    rows.append(("file", f"{r['gguf_type']} GGUF file", human(r["file_bytes"], binary)))
    rows.append(("vram", "VRAM per GPU", vram))
    rows.append(("ram", "System RAM", human(r["ram_bytes"], binary)))
    rows.append(
        (
            "ngl",
            "GPU layers (-ngl)",
            f"{r['n_gpu_layers']} of {r['layers']} (the output layer counts)",
        )
    )
    if r.get("gpu"):
        rows.append(
            (
                "largest_ngl",
                f"Largest -ngl that fits {r['gpu']}",
                f"{r['largest_ngl']} of {r['layers']}",
            )
        )
        rows.append(
            (
                "longest_context",
                "Longest context per request that fits (at most the trained length)",
                f"{r['longest_context']:,} tokens at -ngl {r['n_gpu_layers']}",
            )
        )
    rows.append(("command", "llama.cpp", r["command"]))
    o = r["ollama"]
    rows.append(
        (
            "ollama",
            "Ollama",
            f"num_ctx {o['num_ctx']:,}, OLLAMA_NUM_PARALLEL={o['OLLAMA_NUM_PARALLEL']}",
        )
    )
    lm = r["lm_studio"]
    rows.append(
        (
            "lm_studio",
            "LM Studio",
            f"context length {lm['context_length']:,}, GPU offload {lm['gpu_offload']} layers",
        )
    )
    return rows


def runtime_text(estimate: Estimate) -> str:
    """The runtime's figures as text lines, with vLLM's context × concurrency table."""
    rows = runtime_rows(estimate)
    if not rows:
        return ""
    lines = ["Runtime", *(f"  {label}: {value}" for _, label, value in rows)]
    table = (estimate.runtime or {}).get("table")
    if table:
        lines.append("  Context × concurrency (requests that fit at each context)")
        lines += [f"    {row['context']:>8,} tokens  {row['concurrency']:>9.2f}x" for row in table]
    return "\n".join(lines)
