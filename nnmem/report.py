"""An estimate as text or HTML: the table, the chart, the phases, the formula, the notes.

The build prerenders these fragments into the page and the browser asks the same
functions for them after every change, so the two can never differ.
"""

from __future__ import annotations

from html import escape

from nnmem.architecture import Transformer
from nnmem.estimate import OVERHEADS, Component, Estimate
from nnmem.scenario import LABELS, GenericModel, Mode, ModelKind, Scenario
from nnmem.terms import Term
from nnmem.units import human, percent, scaled

MB = 10**6
GB = 10**9
GIB = 2**30
HEADER = ("Component", "Memory (MB)", "Memory (GB)", "% of total")


def _millions(n: int) -> str:
    return scaled(n, MB, 3).rstrip("0").rstrip(".")


def model_name(scenario: Scenario) -> str:
    """A short name for the scenario's model.

    >>> model_name(Scenario(GenericModel(110_000_000, 768, 12)))
    '110M parameters'
    """
    m = scenario.model
    if isinstance(m, GenericModel):
        return f"{_millions(m.params)}M parameters"
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


def total_detail(estimate: Estimate) -> str:
    """The total as an exact byte count, with the tensor peak and its phase."""
    return (
        f"{estimate.total_bytes:,} bytes; tensors peak at {human(estimate.tensor_peak_bytes)} "
        f"in the {estimate.peak_phase.label.lower()}"
    )


def _rows(estimate: Estimate) -> list[tuple[str, str, int]]:
    return [(c.key, c.label, c.bytes) for c in estimate.components]


def table_html(estimate: Estimate, binary: bool = False) -> str:
    """The breakdown at the peak: Component | Memory (MB) | Memory (GB) | % of total."""
    unit, big = (("MiB", "GiB"), (2**20, GIB)) if binary else (("MB", "GB"), (MB, GB))
    head = "".join(
        f'<th scope="col">{escape(h)}</th>'
        for h in ("Component", f"Memory ({unit[0]})", f"Memory ({unit[1]})", "% of total")
    )
    total = estimate.total_bytes
    body = []
    asides = {c.key: _elsewhere(estimate, c) for c in estimate.components}
    for key, label, n in _rows(estimate):
        cls = ' class="overhead"' if key in OVERHEADS else ""
        aside = asides.get(key)
        note = f' <span class="aside">{escape(aside)}</span>' if aside else ""
        body.append(
            f'<tr data-key="{key}"{cls}><th scope="row">{escape(label)}{note}</th>'
            f"<td>{scaled(n, big[0], 1)}</td><td>{scaled(n, big[1], 2)}</td>"
            f"<td>{percent(n, total)}</td></tr>"
        )
    foot = (
        f'<tr data-key="total"><th scope="row">Total</th><td>{scaled(total, big[0], 1)}</td>'
        f"<td>{scaled(total, big[1], 2)}</td><td>100.0%</td></tr>"
    )
    caption = f"What is in memory at the peak ({escape(estimate.peak_phase.label.lower())})" + (
        ", in binary units (MiB = 2<sup>20</sup> B)"
        if binary
        else ", in decimal units (MB = 10<sup>6</sup> B)"
    )
    return (
        f'<table class="breakdown"><caption>{caption}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
        f"<tfoot>{foot}</tfoot></table>"
    )


def _elsewhere(estimate: Estimate, c: Component) -> str | None:
    """Where a component not at its largest at the peak does reach its size."""
    if c.size <= c.bytes:
        return None
    phase = max(estimate.phases, key=lambda p: p.by_key().get(c.key, 0))
    return f"{human(c.size)} in the {phase.label.lower()}"


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
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


_CHART_WIDTH = 640
_LABEL_WIDTH = 170
_BAR_AREA = 290
_ROW = 34
_BAR = 20


def chart_svg(estimate: Estimate, binary: bool = False) -> str:
    """The breakdown at the peak as an inline SVG bar chart, one bar per component.

    Bars are scaled to the largest component; each is labelled with its size and share.
    Colours come from the page's CSS (``.bar-<key>``), so dark mode restyles them.
    """
    components = [c for c in estimate.components if c.bytes > 0]
    total = estimate.total_bytes
    largest = max((c.bytes for c in components), default=1) or 1
    rows = []
    for i, c in enumerate(components):
        top = i * _ROW + 6
        width = round(_BAR_AREA * c.bytes / largest, 1)
        value = f"{human(c.bytes, binary)} · {percent(c.bytes, total)}"
        rows.append(
            f'<g class="row" data-key="{c.key}">'
            f'<text class="label" x="0" y="{top + 15}">{escape(c.label)}</text>'
            f'<rect class="bar bar-{c.key}" x="{_LABEL_WIDTH}" y="{top}" '
            f'width="{width:g}" height="{_BAR}" rx="3"/>'
            f'<text class="value" x="{_LABEL_WIDTH + width + 8:g}" y="{top + 15}">'
            f"{escape(value)}</text></g>"
        )
    height = len(components) * _ROW + 6
    summary = "; ".join(
        f"{c.label} {human(c.bytes, binary)} ({percent(c.bytes, total)})" for c in components
    )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_CHART_WIDTH} {height}" role="img" '
        'aria-labelledby="chart-title chart-desc">'
        '<title id="chart-title">Memory at the peak, by component</title>'
        f'<desc id="chart-desc">{escape(summary)}.</desc>'
        f"{''.join(rows)}</svg>"
    )


def phases_html(estimate: Estimate, binary: bool = False) -> str:
    """The live memory at each phase's peak, the largest marked."""
    peak = estimate.peak_phase.name
    marks = {p.name: ' class="peak"' if p.name == peak else "" for p in estimate.phases}
    rows = "".join(
        f'<tr data-phase="{p.name}"{marks[p.name]}>'
        f'<th scope="row">{escape(p.label)}</th><td>{escape(human(p.bytes, binary))}</td>'
        f"<td>{escape(_phase_parts(p.by_key(), binary))}</td></tr>"
        for p in estimate.phases
    )
    return (
        '<table class="phases"><caption>Tensor memory at the peak of each phase '
        '(overheads not included)</caption><thead><tr><th scope="col">Phase</th>'
        '<th scope="col">Live tensors</th><th scope="col">Made of</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _phase_parts(parts: dict[str, int], binary: bool) -> str:
    from nnmem.estimate import COMPONENTS

    return ", ".join(
        f"{COMPONENTS[k].lower()} {human(n, binary)}" for k, n in parts.items() if n > 0
    )


def _term_line(t: Term) -> str:
    if t.formula == t.substituted or not t.substituted:
        return f"{t.formula} = {human(t.bytes)}"
    return f"{t.formula} = {t.substituted} = {human(t.bytes)}"


def _component_note(c: Component, estimate: Estimate) -> str:
    aside = _elsewhere(estimate, c)
    if aside is None:
        return ""
    return f"{human(c.bytes)} at the peak ({estimate.peak_phase.label.lower()}); {aside}."


def formula_html(estimate: Estimate) -> str:
    """Each component's terms: the formula, the user's numbers in it, and the source."""
    present = [c for c in estimate.components if c.bytes or c.size]
    sums = " + ".join(human(c.bytes) for c in present if c.bytes)
    items = [
        '<div class="eq eq-total"><dt>Total at the peak</dt><dd>'
        f"<code>{escape(estimate.total_formula)}</code><br>"
        f"<code>= {escape(sums)} = {escape(human(estimate.total_bytes))}</code></dd></div>"
    ]
    for c in present:
        lines = "".join(
            f'<li><span class="term-label">{escape(t.label)}</span>: '
            f"<code>{escape(_term_line(t))}</code>"
            + (f'<span class="source">{escape(t.source)}</span>' if t.source else "")
            + "</li>"
            for t in c.terms
        )
        note = _component_note(c, estimate)
        items.append(
            f'<div class="eq" data-key="{c.key}"><dt>{escape(c.label)} '
            f'<span class="eq-bytes">{escape(human(c.bytes))}</span></dt><dd>'
            + (f'<p class="why">{escape(note)}</p>' if note else "")
            + (f"<ul>{lines}</ul>" if lines else "")
            + "</dd></div>"
        )
    return f'<dl class="formula">{"".join(items)}</dl>'


def notes_html(estimate: Estimate) -> str:
    """The estimate's assumptions and exclusions as a list."""
    return "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in estimate.notes) + "</ul>"


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
    lines += ["", "Notes", *(f"  - {n}" for n in estimate.notes)]
    return "\n".join(lines)
