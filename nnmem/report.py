"""An estimate as text or HTML: the table, the chart, the phases, the formula, the notes.

The build prerenders these fragments into the page and the browser asks the same
functions for them after every change, so the two can never differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def total_detail(estimate: Estimate, binary: bool = False) -> str:
    """The total as an exact byte count, with the tensor peak and its phase."""
    peak = human(estimate.tensor_peak_bytes, binary)
    return (
        f"{estimate.total_bytes:,} bytes; tensors peak at {peak} "
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
    asides = {c.key: _elsewhere(estimate, c, binary) for c in estimate.components}
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


def _elsewhere(estimate: Estimate, c: Component, binary: bool = False) -> str | None:
    """Where a component not at its largest at the peak does reach its size."""
    if c.size <= c.bytes:
        return None
    phase = max(estimate.phases, key=lambda p: p.by_key().get(c.key, 0))
    return f"{human(c.size, binary)} in the {phase.label.lower()}"


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


# The charts are drawn in a 400-unit-wide viewBox with 14-unit text, so on a 390 px phone
# (about 350 px of chart) the text still renders at about 12 px. Colours come from the
# page's CSS classes; the presentation attributes are only the fallback (currentColor),
# so dark mode restyles everything.
_WIDTH = 400
_FONT = 14
_BAR_AREA = 250  # the widest bar; its value label follows it
_ROW = 46  # a label line, then the bar
_BAR = 18


def chart_svg(estimate: Estimate, binary: bool = False) -> str:
    """The breakdown at the peak as an inline SVG bar chart, one bar per component.

    Each component's label sits above its bar; bars are scaled to the largest component
    and followed by the size and share. Colours come from the page's CSS
    (``.bar-<key>``), so dark mode restyles them.
    """
    components = [c for c in estimate.components if c.bytes > 0]
    total = estimate.total_bytes
    largest = max((c.bytes for c in components), default=1) or 1
    rows = []
    for i, c in enumerate(components):
        top = i * _ROW + 4
        width = round(_BAR_AREA * c.bytes / largest, 1)
        bar_top = top + _FONT + 4
        value = f"{human(c.bytes, binary)} · {percent(c.bytes, total)}"
        rows.append(
            f'<g class="row" data-key="{c.key}">'
            f'<text class="label" x="0" y="{top + _FONT - 2}">{escape(c.label)}</text>'
            f'<rect class="bar bar-{c.key}" x="0" y="{bar_top}" '
            f'width="{width:g}" height="{_BAR}" rx="3"/>'
            f'<text class="value" x="{width + 6:g}" y="{bar_top + _BAR - 4}">'
            f"{escape(value)}</text></g>"
        )
    height = len(components) * _ROW + 4
    summary = "; ".join(
        f"{c.label} {human(c.bytes, binary)} ({percent(c.bytes, total)})" for c in components
    )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-labelledby="chart-title chart-desc" fill="currentColor" font-size="{_FONT}">'
        '<title id="chart-title">Memory at the peak, by component</title>'
        f'<desc id="chart-desc">{escape(summary)}.</desc>'
        f"{''.join(rows)}</svg>"
    )


_PLOT_HEIGHT = 270
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 12, 14, 50  # margins around the plot area
_AXIS_LABELS = {"batch_size": "Batch size", "seq_len": "Sequence length (tokens)"}


def _nice_step(span: float, ticks: int) -> float:
    """A 1, 2, 2.5 or 5 × 10^k step that cuts ``span`` into about ``ticks`` parts."""
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _tick_text(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _count_text(n: int) -> str:
    """An axis count, short enough for a phone.

    >>> [_count_text(n) for n in (512, 8_000, 60_000, 1_500_000)]
    ['512', '8,000', '60k', '1.5M']
    """
    if n >= 1_000_000:
        return f"{n / 1_000_000:g}M"
    if n >= 10_000:
        return f"{n / 1000:g}k"
    return f"{n:,}"


def plot_svg(
    estimates: Sequence[Estimate],
    axis: str,
    current: Estimate,
    capacity: int | None = None,
    gpu_name: str = "",
    binary: bool = False,
) -> str:
    """Total memory against the batch size or the sequence length, as an inline SVG.

    ``estimates`` are the same scenario at several values of ``axis`` (``batch_size`` or
    ``seq_len``); ``current`` is the one the user set, marked with a dot. ``capacity``
    (the GPU's usable bytes) is drawn as a labelled horizontal line.
    """
    points = sorted(
        {getattr(e.scenario, axis): e.total_bytes for e in [*estimates, current]}.items()
    )
    x_now, y_now = getattr(current.scenario, axis), current.total_bytes
    x_max = max(p[0] for p in points)
    y_top = max([p[1] for p in points] + [capacity or 0]) * 1.08 or 1
    big = 2**30 if binary else 10**9
    unit, size = ("GiB", big) if binary else ("GB", big)
    if y_top < big:
        unit, size = ("MiB", 2**20) if binary else ("MB", 10**6)
    step = _nice_step(y_top / size, 4)
    y_top = math.ceil(y_top / size / step) * step * size
    x_step = max(1, math.ceil(_nice_step(x_max - 1, 5))) if x_max > 1 else 1
    width, height = _WIDTH - _LEFT - _RIGHT, _PLOT_HEIGHT - _TOP - _BOTTOM

    def px(x: int) -> float:
        return _LEFT + (width * (x - 1) / (x_max - 1) if x_max > 1 else width / 2)

    def py(y: float) -> float:
        return _TOP + height - height * y / y_top

    parts = []
    y_ticks = round(y_top / size / step)
    for i in range(y_ticks + 1):
        y = py(i * step * size)
        parts.append(
            f'<line class="plot-grid" x1="{_LEFT}" x2="{_LEFT + width}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="currentColor" stroke-opacity="0.15"/>'
            f'<text class="plot-tick" x="{_LEFT - 6}" y="{y + 5:.1f}" text-anchor="end">'
            f"{_tick_text(i * step)}</text>"
        )
    xs = [1, *range(x_step, x_max + 1, x_step)] if x_step > 1 else list(range(1, x_max + 1))
    if len(xs) > 1 and px(xs[1]) - px(xs[0]) < 30:
        xs = xs[1:]  # 1 and the first step would overlap
    for x in xs:
        text = _count_text(x)
        # A label that would run past the right edge ends at it instead.
        at, anchor = f"{px(x):.1f}", "middle"
        if px(x) + 4.5 * len(text) > _WIDTH:
            at, anchor = f"{_WIDTH - 1}", "end"
        parts.append(
            f'<text class="plot-tick" x="{at}" y="{_TOP + height + 20}" '
            f'text-anchor="{anchor}">{text}</text>'
        )
    axis_label = _AXIS_LABELS.get(axis, axis)
    parts.append(
        f'<line class="plot-axis" x1="{_LEFT}" x2="{_LEFT + width}" y1="{_TOP + height}" '
        f'y2="{_TOP + height}" stroke="currentColor"/>'
        f'<text class="plot-label" x="{_LEFT + width / 2:.1f}" y="{_PLOT_HEIGHT - 6}" '
        f'text-anchor="middle">{escape(axis_label)}</text>'
        f'<text class="plot-label" transform="rotate(-90)" x="{-(_TOP + height / 2):.1f}" '
        f'y="16" text-anchor="middle">Memory ({unit})</text>'
    )
    labels = []  # drawn last, over the curve
    if capacity:
        y = py(capacity)
        label = f"{gpu_name}: {human(capacity, binary)} usable" if gpu_name else "GPU"
        # The label goes on the side of the line the curve's right end is not on; its
        # halo (stroke in the page's background colour, drawn under the fill) keeps it
        # readable where the curve crosses it.
        below = points[-1][1] > capacity and y + 20 < _TOP + height
        parts.append(
            f'<line class="plot-gpu" x1="{_LEFT}" x2="{_LEFT + width}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="currentColor" stroke-width="2" stroke-dasharray="6 4"/>'
        )
        labels.append(
            f'<text class="plot-gpu-label" x="{_LEFT + width}" '
            f'y="{y + 17 if below else y - 6:.1f}" text-anchor="end" font-size="13" '
            f'paint-order="stroke" stroke-width="4" stroke-linejoin="round">'
            f"{escape(label)}</text>"
        )
    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    parts.append(
        f'<polyline class="plot-line" points="{line}" fill="none" stroke="currentColor" '
        'stroke-width="2.5" stroke-linejoin="round"/>'
        f'<circle class="plot-point" cx="{px(x_now):.1f}" cy="{py(y_now):.1f}" r="5.5"/>'
    )
    name = axis_label.split(" (")[0].lower()
    desc = (
        f"Total memory from {human(points[0][1], binary)} at {name} {points[0][0]:,} to "
        f"{human(points[-1][1], binary)} at {name} {x_max:,}; the current {name}, "
        f"{x_now:,}, needs {human(y_now, binary)}."
    )
    if capacity:
        fitting = [x for x, y in points if y <= capacity]
        reach = (
            f"up to {max(fitting):,} of those plotted fit"
            if fitting
            else "none of those plotted fit"
        )
        desc += f" {gpu_name or 'The GPU'} has {human(capacity, binary)} usable: {reach}."
    return (
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_WIDTH} {_PLOT_HEIGHT}" role="img" '
        f'aria-labelledby="plot-svg-title plot-svg-desc" fill="currentColor" '
        f'font-size="{_FONT}"><title id="plot-svg-title">Memory against {escape(name)}</title>'
        f'<desc id="plot-svg-desc">{escape(desc)}</desc>'
        f"{''.join(parts)}{''.join(labels)}</svg>"
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


def _term_line(t: Term, binary: bool = False) -> str:
    if t.formula == t.substituted or not t.substituted:
        return f"{t.formula} = {human(t.bytes, binary)}"
    return f"{t.formula} = {t.substituted} = {human(t.bytes, binary)}"


def _component_note(c: Component, estimate: Estimate, binary: bool = False) -> str:
    aside = _elsewhere(estimate, c, binary)
    if aside is None:
        return ""
    peak = estimate.peak_phase.label.lower()
    return f"{human(c.bytes, binary)} at the peak ({peak}); {aside}."


def formula_html(estimate: Estimate, binary: bool = False) -> str:
    """Each component's terms: the formula, the user's numbers in it, and the source."""
    present = [c for c in estimate.components if c.bytes or c.size]
    sums = " + ".join(human(c.bytes, binary) for c in present if c.bytes)
    total = human(estimate.total_bytes, binary)
    items = [
        '<div class="eq eq-total"><dt>Total at the peak</dt><dd>'
        f"<code>{escape(estimate.total_formula)}</code><br>"
        f"<code>= {escape(sums)} = {escape(total)}</code></dd></div>"
    ]
    for c in present:
        lines = "".join(
            f'<li><span class="term-label">{escape(t.label)}</span>: '
            f"<code>{escape(_term_line(t, binary))}</code>"
            + (f'<span class="source">{escape(t.source)}</span>' if t.source else "")
            + "</li>"
            for t in c.terms
        )
        note = _component_note(c, estimate, binary)
        items.append(
            f'<div class="eq" data-key="{c.key}"><dt>{escape(c.label)} '
            f'<span class="eq-bytes">{escape(human(c.bytes, binary))}</span></dt><dd>'
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
