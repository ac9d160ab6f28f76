"""The calculator page's answer: its fields in, the estimate as the page paints it out.

The page's fields (see :mod:`nnmem.web.form` for the controls) reach :func:`answer`
through :func:`nnmem.web.handle`; the reply holds the estimate with its HTML fragments,
the fit on the chosen GPU, and the problems, each naming the control it belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from nnmem import catalog
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.render.capacity import Card, capacity_svg, headline_html, legend_html
from nnmem.render.html import formula_html, notes_html, phases_html, runtime_html, table_html
from nnmem.render.markup import escape
from nnmem.render.text import describe, total_detail, total_label, total_text
from nnmem.result import Estimate
from nnmem.scenario import (
    LABELS,
    Mode,
    Runtime,
    Scenario,
)
from nnmem.units import fixed, human
from nnmem.web import start
from nnmem.web.form import (
    CHANGED,
    DEFAULT_FIELDS,
    FORM_SECTIONS,
    GPU_OPTIONS,
    PRESETS,
    VIEW_FIELDS,
    PlotAxis,
    Units,
    derived_shape,
    follow_edit,
    follow_note,
    gpu_groups,
    read,
    text_of,
    translate,
)
from nnmem.web.reply import reply

# The reply's second and third parts (the verdict, solvers, suggestions and plot; the step
# chart) import what they need when first asked: a visit waits for the first part, which
# needs none of it, so Python compiles less before the first answer.
if TYPE_CHECKING:
    from nnmem.solvers import Fit, Suggestion

__all__ = [
    "DEFAULT_FIELDS",
    "DEFAULT_SCENARIO",
    "FORM_SECTIONS",
    "GPU_OPTIONS",
    "PRESETS",
    "VIEW_FIELDS",
    "answer",
    "gpu_groups",
    "prerender",
]


def _apply(changes: Mapping[str, object]) -> str:
    """A suggestion's page-field changes as an attribute value, escaped."""
    plain = {k: _string(v) for k, v in changes.items()}
    return escape(json.dumps(plain, separators=(",", ":")), quote=True)


def _string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(getattr(value, "value", value))


def _button(label: str, changes: Mapping[str, object], text: str = "Apply") -> str:
    # data-label is what the page's status says was applied: the change, not the verb.
    return (
        f'<button type="button" class="apply" data-apply="{_apply(changes)}" '
        f'data-label="{escape(label)}" aria-label="{escape(text)}: {escape(label)}">'
        f"{escape(text)}</button>"
    )


def verdict_html(fit: Fit | None, binary: bool) -> str:
    """Fits with its headroom, or does not fit by how much, or a prompt to pick a GPU."""
    if fit is None:
        return '<p class="verdict" data-fit="none">Pick a GPU to see whether this fits.</p>'
    kept = ""
    if fit.headroom_percent:
        kept = f"; {escape(human(fit.budget, binary))} after keeping {fit.headroom_percent:g}% free"
    where = (
        f"{escape(fit.gpu_name)} ({escape(human(fit.usable or fit.budget, binary))} usable{kept})"
    )
    need = escape(human(fit.need, binary))
    # What stops the card running the scenario as set (a number format it lacks, a
    # sequence past the model's context), said after the memory verdict.
    warnings = "".join(f'<p class="verdict-warning">{escape(w)}</p>' for w in fit.warnings)
    runs = "" if fit.runs else ' data-runs="false"'
    if fit.fits:
        share = f"{fixed(Fraction(100 * fit.headroom, fit.budget), 0)}%" if fit.budget else "0%"
        head = (
            "<strong>Fits</strong>"
            if fit.runs
            else "<strong>Fits in memory, but cannot run</strong>"
        )
        return (
            f'<p class="verdict" data-fit="yes" data-headroom="{fit.headroom}"{runs}>'
            f"{head} on {where}: needs {need}, leaving "
            f"{escape(human(fit.headroom, binary))} ({share}) to spare.</p>{warnings}"
        )
    return (
        f'<p class="verdict" data-fit="no" data-headroom="{fit.headroom}"{runs}>'
        f"<strong>Does not fit</strong> on {where}: needs {need}, "
        f"{escape(human(-fit.headroom, binary))} more than the GPU has.</p>{warnings}"
    )


def card_short(card: Card | None, need: int, binary: bool) -> str:
    """:func:`verdict_short` from the card alone, for the reply's first part.

    >>> card_short(Card("RTX 4090", 24 * 2**30, 23_192_823_398), 4_794_973_004, False)
    'fits: 18.40 GB to spare'
    """
    if card is None:
        return ""
    if need > card.budget:
        return f"does not fit: {human(need - card.budget, binary)} over"
    if not card.runs:
        return "fits in memory, but cannot run"
    return f"fits: {human(card.budget - need, binary)} to spare"


def verdict_short(fit: Fit | None, binary: bool) -> str:
    """The verdict in a few words, for the bar that follows a phone's scrolling; empty
    without a GPU.

    >>> from nnmem.scenario import parse
    >>> from nnmem.solvers import judge
    >>> bert = parse(DEFAULT_SCENARIO)
    >>> verdict_short(judge(bert, "rtx-4090"), False)
    'fits: 18.40 GB to spare'
    >>> verdict_short(judge(replace(bert, batch_size=512), "rtx-4090"), False)
    'does not fit: 20.84 GB over'
    """
    if fit is None:
        return ""
    if not fit.fits:
        return f"does not fit: {human(-fit.headroom, binary)} over"
    if not fit.runs:
        return "fits in memory, but cannot run"
    return f"fits: {human(fit.headroom, binary)} to spare"


def _too_large(fit: Fit, binary: bool) -> str:
    """Why no number of GPUs holds the scenario, in plain words."""
    if fit.too_large is None:
        return "no number of these GPUs holds it"
    label, size = fit.too_large
    return (
        f"no number of these GPUs holds it: even split as far as it goes, the "
        f"{label.lower()} alone need {human(size, binary)} on each"
    )


def solvers_html(fit: Fit | None, scenario: Scenario, binary: bool = True) -> str:
    """The largest batch and the longest sequence that fit, and the fewest GPUs."""
    if fit is None:
        return (
            '<p class="solvers-none">Pick a GPU to see the largest batch and the longest '
            "sequence that fit, and how many GPUs it needs.</p>"
        )
    from nnmem.solvers import MAX_BATCH, MAX_SEQ

    rows = []

    def row(key: str, label: str, value: str, number: int | None, apply: str) -> None:
        data = f' data-value="{number}"' if number is not None else ""
        rows.append(
            f'<div data-solver="{key}"{data}><dt>{escape(label)}</dt><dd>{escape(value)}'
            + (f" {apply}" if apply else "")
            + "</dd></div>"
        )

    b = fit.max_batch
    capped = " (the largest this calculator tries)" if b >= MAX_BATCH else ""
    row(
        "max_batch",
        "Largest batch that fits",
        f"{b:,}{capped}" if b else "none: not even a batch of 1 fits",
        b,
        _button(f"batch size {b:,}", {"batch_size": b}, "Use")
        if b and b != scenario.batch_size
        else "",
    )
    n = fit.max_seq_len
    if n is not None:
        capped = " (the calculator's limit)" if n >= MAX_SEQ else ""
        if fit.seq_len_capped and fit.context is not None:
            capped = f" (the model's context, {fit.context.source}; the memory allows more)"
        row(
            "max_seq_len",
            "Longest sequence that fits",
            f"{n:,} tokens{capped}" if n else "none: not even 1 token fits",
            n,
            _button(f"sequence length {n:,}", {"seq_len": n}, "Use")
            if n and n != scenario.seq_len
            else "",
        )
    plan = fit.plan
    if plan is None:
        row(
            "min_gpus",
            "Fewest GPUs",
            _too_large(fit, binary),
            None,
            "",
        )
    elif plan == scenario:
        row("min_gpus", "Fewest GPUs", f"{plan.num_gpus:,}: it fits as set", plan.num_gpus, "")
    else:
        how = (
            LABELS[plan.sharding]
            if plan.mode is Mode.TRAINING
            else "llama.cpp's layer split"
            if plan.runtime.engine is Runtime.LLAMA_CPP
            else f"tensor parallel over {plan.tensor_parallel}"
        )
        changes = {
            "num_gpus": plan.num_gpus,
            "sharding": plan.sharding.value,
            "tensor_parallel": plan.tensor_parallel,
        }
        row(
            "min_gpus",
            "Fewest GPUs",
            f"{plan.num_gpus:,} with {how}",
            plan.num_gpus,
            _button(f"{plan.num_gpus:,} GPUs", changes, "Use"),
        )
    return f'<dl class="solvers">{"".join(rows)}</dl>'


def suggestions_html(
    ideas: list[Suggestion] | tuple[Suggestion, ...], fit: Fit | None, binary: bool
) -> str:
    """What to change, safest first and then largest saving, each with its risk to model
    quality and a button that applies it: only where the scenario does not fit the GPU
    chosen (empty where it fits or no GPU is chosen: nothing needs to change)."""
    if fit is None or fit.fits:
        return ""
    title = (
        '<h3 class="suggest-title">What to change to fit, safest first, then by the memory '
        "each change saves</h3>"
    )
    if not ideas:
        return (
            f'{title}<p class="suggestions-none">No change in the list lowers the memory '
            "further.</p>"
        )
    items = []
    for s in ideas:
        after = escape(human(s.total_bytes, binary))
        verdict = ", fits" if s.fits else ", still too big"
        items.append(
            f'<li data-key="{escape(s.key)}" data-saved="{s.saved_bytes}"'
            f' data-risk="{escape(s.risk)}" data-fits="{str(s.fits).lower()}">'
            f'<span class="label">{escape(s.label)}</span> '
            f'<span class="saving">saves {escape(human(s.saved_bytes, binary))}</span> '
            f'<span class="after">(then {after}{verdict})</span> '
            f'<span class="risk">quality risk {escape(s.risk)}: {escape(s.risk_note)}</span> '
            f"{_button(s.label, s.changes)}</li>"
        )
    return f'{title}<ol class="suggestions">{"".join(items)}</ol>'


def _card(scenario: Scenario, gpu_id: str | None) -> Card | None:
    """The chosen card as the capacity bar draws it: no more than a catalog look-up, so
    the bar comes with the total in the reply's first part."""
    gpu = catalog.gpu(gpu_id) if gpu_id else None
    if gpu is None:
        return None
    from nnmem.solvers import budget_for, format_warnings

    runs = format_warnings(scenario, gpu)[1]
    return Card(gpu.name, gpu.usable_bytes, budget_for(scenario, gpu.usable_bytes), runs)


def capacity_html(result: Estimate, card: Card | None, binary: bool) -> str:
    """The capacity bar, with a prompt to pick a card where none is chosen."""
    prompt = (
        '<p class="capacity-prompt">Pick a GPU under "Does it fit?" to see this against '
        "its memory.</p>"
        if card is None
        else ""
    )
    return (
        f'{prompt}<figure class="capacity-box">{capacity_svg(result, card, binary)}'
        f"<figcaption>{legend_html(result, card, binary)}</figcaption></figure>"
    )


_PLOT_POINTS = 24


def plot_axis_values(scenario: Scenario, axis: PlotAxis, fit: Fit | None) -> list[int]:
    """The x values to plot, from 1: to twice the largest that fits on the GPU, or to four
    times the current value."""
    from nnmem.solvers import MAX_BATCH, MAX_SEQ

    current = getattr(scenario, axis.value)
    limit = None
    if fit is not None:
        limit = fit.max_batch if axis is PlotAxis.BATCH_SIZE else fit.max_seq_len
    # Up to twice the limit, so the curve crosses the GPU's line; without a limit (no GPU,
    # or not even 1 fits) four times the current value.
    top = max(8, 2 * current, 2 * limit) if limit else max(8, 4 * current)
    ceiling = MAX_BATCH if axis is PlotAxis.BATCH_SIZE else MAX_SEQ
    model = scenario.model
    positions = getattr(model, "learned_positions", 0)
    if axis is PlotAxis.SEQ_LEN and positions:
        ceiling = positions
    top = max(1, min(top, ceiling))
    step = (top - 1) / (_PLOT_POINTS - 1)
    values = {1 + round(i * step) for i in range(_PLOT_POINTS)} | {min(current, top)}
    return sorted(values)


def _plot(
    scenario: Scenario,
    result: Estimate,
    axis: PlotAxis,
    fit: Fit | None,
    gpu_id: str | None,
    binary: bool,
) -> str:
    if axis is PlotAxis.SEQ_LEN and "seq_len" in scenario.inactive_fields():
        axis = PlotAxis.BATCH_SIZE  # a CNN or a ViT has no sequence length to vary
    from nnmem.render.svg import plot_svg

    points = []
    for x in plot_axis_values(scenario, axis, fit):
        if x == getattr(scenario, axis.value):
            points.append(result)
            continue
        try:
            changes: dict[str, Any] = {axis.value: x}
            points.append(estimate(replace(scenario, **changes), gpu_id))
        except NnmemError:
            continue
    capacity = None if fit is None else fit.budget
    name = "" if fit is None else fit.gpu_name
    note = ""
    if fit is not None and fit.headroom_percent:
        note = f"less {fit.headroom_percent:g}% headroom"
    return plot_svg(points, axis.value, result, capacity, name, binary, note)


# The reply comes in three parts, so the page can paint the total within a frame of the
# keystroke: FIRST holds what the estimate alone gives; REST what needs further estimates
# (the verdict and solvers, the ranked suggestions and the plot's points); CHART the
# step's timeline, replayed twice through the allocator model, which the page asks for
# only once its box is in view and the typing has paused (see calculator.js).
FIRST_PARTS = ("headline", "capacity", "table", "phases", "formula", "notes", "runtime")
REST_PARTS = ("plot", "verdict", "solvers", "suggestions")
CHART_PARTS = ("timeline",)
PARTS = ("all", "first", "rest", "chart")

# The last fields read and estimated: the later parts of a reply ask for the same fields
# as the first, so they reuse the reading and the estimate instead of repeating them.
_last: tuple[str, Any, Estimate | None] | None = None


def _reading(fields: Mapping[str, object]) -> tuple[Any, Estimate | None]:
    global _last
    key = json.dumps(fields, sort_keys=True, default=str)
    if _last is not None and _last[0] == key:
        return _last[1], _last[2]
    page = read(fields)
    result = None
    if not page.problems and page.scenario is not None:
        result = estimate(page.scenario, page.gpu or None)
    _last = (key, page, result)
    return page, result


def answer(fields: Mapping[str, object], part: str = "all") -> dict[str, Any]:
    """The reply to the calculator's fields: the estimate as the page paints it, the fit on
    the chosen GPU, or every problem against its control.

    ``part`` is ``"all"``, or ``"first"`` (the total, the breakdown and the formula),
    ``"rest"`` (the verdict, the solvers, the suggestions and the plot) and ``"chart"``
    (the step's timeline); the three parts together hold exactly what ``"all"`` does.

    >>> got = answer({**DEFAULT_FIELDS, "gpu": "rtx-4090", "units": "gib"})
    >>> got["ok"], got["total_text"], "optimizer" in got["inactive"]
    (True, '4.47 GiB', False)
    >>> first = answer({**DEFAULT_FIELDS, "gpu": "rtx-4090"}, "first")
    >>> rest = answer({**DEFAULT_FIELDS, "gpu": "rtx-4090"}, "rest")
    >>> sorted(first["html"]), "total_text" in rest
    (['capacity', 'formula', 'headline', 'notes', 'phases', 'runtime', 'table'], False)
    >>> sorted(rest["html"])
    ['plot', 'solvers', 'suggestions', 'verdict']
    >>> chart = answer({**DEFAULT_FIELDS, "gpu": "rtx-4090"}, "chart")
    >>> sorted(chart["html"]), sorted(chart["download"])
    (['timeline'], [])
    >>> answer({"params_millions": "-1"})["errors"]
    [{'field': 'params_millions', 'message': 'Model size must be a number of millions of \
parameters above 0 and at most 10,000,000, or a count with its unit such as 7B or 350M \
(got -1).'}]
    """
    if part not in PARTS:
        raise NnmemError.single("part", f"Part must be one of {', '.join(PARTS)}.")
    # The controls that follow an edit take their new values before the reading, and the
    # page writes them into the form: the start panel's boxes first (they set the model and
    # the GPU), then what follows a model or mode, then the intent's defaults for the model.
    typed = fields
    boxes, box_problems = start.follow_boxes(fields)
    edited = start.edited(fields) | set(boxes)
    given = {**fields, **boxes, CHANGED: ",".join(sorted(edited))}
    followed = follow_edit(given)
    intent = start.follow_intent({**given, **followed}, edited | set(followed))
    merged = {**boxes, **followed, **intent}
    changes = {k: v for k, v in merged.items() if v != text_of(fields, k)}
    fields = {**fields, **changes}
    note = start.intent_note(fields) if intent.keys() - {start.INTENT} else ""
    note = note or follow_note({**boxes, **followed}, typed)
    page, result = _reading(fields)
    scenario, gpu_id, axis, inactive, fill = (
        page.scenario,
        page.gpu,
        page.axis,
        page.inactive,
        page.fill,
    )
    binary = page.units is Units.GIB
    first, rest, chart = (part in ("all", name) for name in ("first", "rest", "chart"))
    extra: dict[str, Any] = {}
    if first:
        extra.update(set=changes, note=note)
    # A box whose text names nothing keeps it, beside its message, for the user to mend.
    refused = {problem.field for problem in box_problems}
    fill = {**fill, **{k: v for k, v in start.fill(fields).items() if k not in refused}}
    if box_problems or page.problems or scenario is None or result is None:
        problems = box_problems + page.problems
        return reply(False, problems, inactive=inactive, fill=fill, **extra)
    html: dict[str, str] = {}
    if first:
        card = _card(scenario, gpu_id)
        html.update(
            runtime=runtime_html(result, binary),
            table=table_html(result, binary, links=True),
            headline=headline_html(result, card, binary),
            capacity=capacity_html(result, card, binary),
            phases=phases_html(result, binary),
            formula=formula_html(result, binary),
            notes=notes_html(result),
        )
        description = describe(scenario)
        extra.update(
            description=description,
            summary=start.summary(fields, scenario, gpu_id, description),
            derived=derived_shape(fields, scenario),
            total_label=total_label(scenario),
            total_bytes=result.total_bytes,
            total_text=total_text(result, binary),
            total_detail=total_detail(result, binary),
            verdict_text=card_short(card, result.total_bytes, binary),
        )
    download: dict[str, Any] = {}
    if first:
        # The estimate's data holds the scenario's: the download gives it twice.
        data = result.to_dict()
        download.update(scenario=data["scenario"], estimate=data, gpu=_gpu_dict(gpu_id))
    if rest:
        from nnmem.solvers import judge

        fit = judge(scenario, gpu_id, always_suggest=True) if gpu_id else None
        ideas = fit.suggestions if fit is not None else ()
        html.update(
            plot=_plot(scenario, result, axis, fit, gpu_id or None, binary),
            verdict=verdict_html(fit, binary),
            solvers=solvers_html(fit, scenario, binary),
            suggestions=suggestions_html(ideas, fit, binary),
        )
        extra.update(verdict_text=verdict_short(fit, binary))
        download.update(
            verdict=None if fit is None else _verdict_dict(fit),
            solvers=None if fit is None else _solvers_dict(fit),
        )
    if chart:
        # The step chart's modules (the timeline, the allocator model, its drawing) ship in
        # the page's second bundle: the first two parts never import them.
        from nnmem.web.step_chart import step_chart_html

        html.update(timeline=step_chart_html(scenario, gpu_id or None, binary))
    if part == "all":
        order = (*FIRST_PARTS[:3], "plot", *REST_PARTS[1:], *CHART_PARTS, *FIRST_PARTS[3:])
        html = {name: html[name] for name in order}
        download = {k: download[k] for k in ("scenario", "estimate", "gpu", "verdict", "solvers")}
    return reply(True, inactive=inactive, fill=fill, html=html, **extra, download=download)


def _gpu_dict(gpu_id: str) -> dict[str, Any] | None:
    gpu = catalog.gpu(gpu_id) if gpu_id else None
    if gpu is None:
        return None
    return {
        "id": gpu.id,
        "name": gpu.name,
        "memory_bytes": gpu.memory_bytes,
        "usable_bytes": gpu.usable_bytes,
    }


def _verdict_dict(fit: Fit) -> dict[str, Any]:
    data = fit.to_dict()
    return {k: data[k] for k in ("fits", "budget_bytes", "need_bytes", "headroom_bytes")}


def _solvers_dict(fit: Fit) -> dict[str, Any]:
    data = fit.to_dict()
    return {k: data[k] for k in ("max_batch", "max_seq_len", "min_gpus", "suggestions")}


def prerender() -> dict[str, Any]:
    """The reply for ``DEFAULT_FIELDS``: what the build paints before Python loads."""
    prerendered: dict[str, Any] = json.loads(json.dumps(answer(DEFAULT_FIELDS)))
    return prerendered


# The default inputs in the schema's own terms (what DEFAULT_FIELDS describe), for the
# CLI-style callers and tests that speak the schema rather than the page's controls.
DEFAULT_SCENARIO: dict[str, Any] = translate(DEFAULT_FIELDS).data
