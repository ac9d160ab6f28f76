"""An estimate as plain text: the model's name, the totals, the table, the whole report."""

from __future__ import annotations

from fractions import Fraction

from nnmem.models.architecture import Transformer
from nnmem.result import Estimate
from nnmem.scenario import LABELS, GenericModel, Mode, ModelKind, Scenario
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
    parts = [LABELS[scenario.mode], model_name(scenario), LABELS[scenario.precision]]
    if scenario.mode is Mode.TRAINING:
        parts.append(LABELS[scenario.optimizer])
    parts.append(f"batch {scenario.batch_size:,}")
    if "seq_len" not in scenario.inactive_fields():
        parts.append(f"sequence {scenario.seq_len:,}")
    if scenario.num_gpus > 1:
        parts.append(f"per GPU of {scenario.num_gpus}")
    return " · ".join(parts)


def total_text(estimate: Estimate, binary: bool = False) -> str:
    """The total in the largest fitting unit."""
    return human(estimate.total_bytes, binary)


def total_detail(estimate: Estimate, binary: bool = False) -> str:
    """The total as an exact byte count, with the tensor peak and its phase."""
    peak = human(estimate.tensor_peak_bytes, binary)
    host = f"; host RAM {human(estimate.host_bytes, binary)}" if estimate.host else ""
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
    if estimate.host:
        lines.append(f"  Host memory (CPU RAM) = {human(estimate.host_bytes)}")
        lines += [f"    {t.label}: {_term_line(t)}" for t in estimate.host]
    lines += ["", "Notes", *(f"  - {n}" for n in estimate.notes)]
    return "\n".join(lines)
