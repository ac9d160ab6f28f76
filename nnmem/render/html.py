"""An estimate as HTML fragments: the table, the phases, the formula, the notes.

The build prerenders these fragments into the page and the browser asks the same
functions for them after every change, so the two can never differ."""

from __future__ import annotations

from nnmem.render.markup import escape
from nnmem.render.text import GB, GIB, MB, _rows, _term_line, runtime_rows
from nnmem.result import OVERHEADS, Component, Estimate
from nnmem.units import human, percent, scaled


def table_html(estimate: Estimate, binary: bool = False, links: bool = False) -> str:
    """The breakdown at the peak: Component | Memory (MB) | Memory (GB) | % of total.

    With ``links`` each component's name links to its paragraph on the page
    (``#what-<key>``: what it is)."""
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
        name = f'<a href="#what-{key}">{escape(label)}</a>' if links else escape(label)
        body.append(
            f'<tr data-key="{key}"{cls}><th scope="row">{name}{note}</th>'
            f"<td>{scaled(n, big[0], 1)}</td><td>{scaled(n, big[1], 2)}</td>"
            f"<td>{percent(n, total)}</td></tr>"
        )
    foot = (
        f'<tr data-key="total"><th scope="row">Total</th><td>{scaled(total, big[0], 1)}</td>'
        f"<td>{scaled(total, big[1], 2)}</td><td>100.0%</td></tr>"
    )
    if estimate.host:
        host = estimate.host_bytes
        foot += (
            '<tr data-key="host"><th scope="row">Host memory (CPU RAM), beside the GPU</th>'
            f"<td>{scaled(host, big[0], 1)}</td><td>{scaled(host, big[1], 2)}</td><td></td></tr>"
        )
    if estimate.nvme:
        disk = estimate.nvme_bytes
        foot += (
            '<tr data-key="nvme"><th scope="row">NVMe swap files, beside the GPU</th>'
            f"<td>{scaled(disk, big[0], 1)}</td><td>{scaled(disk, big[1], 2)}</td><td></td></tr>"
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
    from nnmem.result import COMPONENTS

    return ", ".join(
        f"{COMPONENTS[k].lower()} {human(n, binary)}" for k, n in parts.items() if n > 0
    )


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


def runtime_html(estimate: Estimate, binary: bool = False) -> str:
    """The serving runtime's own answers (vLLM, llama.cpp); empty for transformers."""
    rows = runtime_rows(estimate, binary)
    if not rows:
        return ""
    r = estimate.runtime or {}
    items = []
    for key, label, value in rows:
        shown = f"<code>{escape(value)}</code>" if key in ("command", "ollama") else escape(value)
        items.append(
            f'<div data-runtime="{escape(key)}"><dt>{escape(label)}</dt><dd>{shown}</dd></div>'
        )
    table = ""
    if r.get("table"):
        body = "".join(
            f'<tr><th scope="row">{row["context"]:,}</th><td>{row["concurrency"]:.2f}x</td></tr>'
            for row in r["table"]
        )
        table = (
            '<table class="runtime-table"><caption>Requests that fit at each context '
            '(vLLM\'s maximum concurrency)</caption><thead><tr><th scope="col">Context '
            '(tokens)</th><th scope="col">Concurrency</th></tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
    title = "vLLM" if r.get("engine") == "vllm" else "llama.cpp, Ollama and LM Studio"
    return (
        f'<section class="runtime" data-engine="{escape(str(r.get("engine")))}">'
        f"<h2>{escape(title)}</h2><dl>{''.join(items)}</dl>{table}</section>"
    )
