"""An estimate as text or HTML: the table, the chart, the formula and the notes.

The build prerenders these fragments into the page and the browser asks the same
functions for them after every change, so the two can never differ.
"""

from __future__ import annotations

from html import escape

from nnmem.estimate import Component, Estimate
from nnmem.scenario import LABELS, Mode, Precision, Scenario
from nnmem.units import human, percent, scaled

MB = 10**6
GB = 10**9


def describe(scenario: Scenario) -> str:
    """One line naming the scenario.

    >>> from nnmem.scenario import GenericModel
    >>> describe(Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128))
    'Training · 110M parameters · FP32 · Adam / AdamW · batch 32 · sequence 128'
    """
    millions = scaled(scenario.model.params, MB, 3).rstrip("0").rstrip(".")
    precision = LABELS[scenario.precision]
    parts = [LABELS[scenario.mode], f"{millions}M parameters", precision]
    if scenario.mode is Mode.TRAINING:
        if scenario.precision is not Precision.FP32:
            parts[-1] = f"{precision} mixed precision"
        parts.append(LABELS[scenario.optimizer])
    parts += [f"batch {scenario.batch_size:,}", f"sequence {scenario.seq_len:,}"]
    return " · ".join(parts)


def total_text(estimate: Estimate) -> str:
    """The total in the largest fitting decimal unit."""
    return human(estimate.total_bytes)


def total_detail(estimate: Estimate) -> str:
    """The total as an exact byte count."""
    return f"{estimate.total_bytes:,} bytes"


def _rows(estimate: Estimate) -> list[tuple[str, str, str, str, str]]:
    total = estimate.total_bytes
    rows = [
        (c.key, c.label, scaled(c.bytes, MB, 1), scaled(c.bytes, GB, 2), percent(c.bytes, total))
        for c in estimate.components
    ]
    rows.append(("total", "Total", scaled(total, MB, 1), scaled(total, GB, 2), "100.0%"))
    return rows


HEADER = ("Component", "Memory (MB)", "Memory (GB)", "% of total")


def table_html(estimate: Estimate) -> str:
    """The breakdown table: Component | Memory (MB) | Memory (GB) | % of total."""
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in HEADER)
    body, foot = [], ""
    for key, label, mb, gb, pct in _rows(estimate):
        cells = f'<th scope="row">{escape(label)}</th><td>{mb}</td><td>{gb}</td><td>{pct}</td>'
        row = f'<tr data-key="{key}">{cells}</tr>'
        if key == "total":
            foot = f"<tfoot>{row}</tfoot>"
        else:
            body.append(row)
    return (
        '<table class="breakdown"><caption>Where the memory goes '
        "(MB = 10<sup>6</sup> bytes, GB = 10<sup>9</sup> bytes)</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>{foot}</table>"
    )


def table_text(estimate: Estimate) -> str:
    """The breakdown table as aligned plain text."""
    rows = [HEADER, *((label, mb, gb, pct) for _, label, mb, gb, pct in _rows(estimate))]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(lines)


_CHART_WIDTH = 640
_LABEL_WIDTH = 150
_BAR_AREA = 300
_ROW = 34
_BAR = 20


def chart_svg(estimate: Estimate) -> str:
    """The breakdown as an inline SVG bar chart, one bar per component.

    Bars are scaled to the largest component; each is labelled with its size and share.
    Colours come from the page's CSS (``.bar-<key>``), so dark mode restyles them.
    """
    total = estimate.total_bytes
    largest = max(c.bytes for c in estimate.components) or 1
    rows = []
    for i, c in enumerate(estimate.components):
        top = i * _ROW + 6
        width = round(_BAR_AREA * c.bytes / largest, 1)
        value = f"{human(c.bytes)} · {percent(c.bytes, total)}"
        rows.append(
            f'<g class="row" data-key="{c.key}">'
            f'<text class="label" x="0" y="{top + 15}">{escape(c.label)}</text>'
            f'<rect class="bar bar-{c.key}" x="{_LABEL_WIDTH}" y="{top}" '
            f'width="{width:g}" height="{_BAR}" rx="3"/>'
            f'<text class="value" x="{_LABEL_WIDTH + width + 8:g}" y="{top + 15}">'
            f"{escape(value)}</text></g>"
        )
    height = len(estimate.components) * _ROW + 6
    summary = "; ".join(
        f"{c.label} {human(c.bytes)} ({percent(c.bytes, total)})" for c in estimate.components
    )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_CHART_WIDTH} {height}" role="img" '
        'aria-labelledby="chart-title chart-desc">'
        '<title id="chart-title">Memory breakdown by component</title>'
        f'<desc id="chart-desc">{escape(summary)}.</desc>'
        f"{''.join(rows)}</svg>"
    )


def _equation(c: Component) -> str:
    if c.bytes == 0:
        return "0"
    return f"{c.formula} = {c.substituted} = {human(c.bytes)}"


def formula_html(estimate: Estimate) -> str:
    """The formula for each component with the scenario's numbers substituted."""
    sums = " + ".join(human(c.bytes) for c in estimate.components)
    items = [
        '<div class="eq eq-total"><dt>Total</dt><dd>'
        f"<code>{escape(estimate.total_formula)}</code><br>"
        f"<code>= {escape(sums)} = {escape(human(estimate.total_bytes))}</code></dd></div>"
    ]
    for c in estimate.components:
        source = f'<p class="source">Source: {escape(c.source)}</p>' if c.source else ""
        items.append(
            f'<div class="eq" data-key="{c.key}"><dt>{escape(c.label)}</dt><dd>'
            f"<code>{escape(_equation(c))}</code>"
            f'<p class="why">{escape(c.note)}</p>{source}</dd></div>'
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
        "Formula",
        f"  Total = {estimate.total_formula}",
    ]
    width = max(len(c.label) for c in estimate.components)
    lines += [f"  {c.label.ljust(width)} = {_equation(c)}" for c in estimate.components]
    lines += ["", "Notes", *(f"  - {n}" for n in estimate.notes)]
    return "\n".join(lines)
