"""The one entry point the browser calls: JSON in, JSON out.

The page sends ``{"fields": {<control name>: <string>, ...}}`` (see :mod:`nnmem.web.form`
for the controls) and gets back the estimate with its prerendered HTML fragments, the
fit on the chosen GPU, and the problems, each naming the control it belongs to.
Nothing here raises: a bug becomes a plain message, never a traceback on the page.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import replace
from html import escape
from typing import Any

from nnmem import catalog
from nnmem.errors import NnmemError, Problem, plain_fatal
from nnmem.estimate import estimate
from nnmem.render.html import formula_html, notes_html, phases_html, table_html
from nnmem.render.svg import chart_svg, plot_svg
from nnmem.render.text import describe, total_detail, total_text
from nnmem.result import Estimate
from nnmem.scenario import (
    FINETUNE,
    LABELS,
    MODE,
    PRECISION,
    SETTINGS,
    Finetune,
    Mode,
    ModelKind,
    Precision,
    Scenario,
    load_json,
    parse,
)
from nnmem.solvers import MAX_BATCH, MAX_SEQ, Fit, Suggestion, judge, suggestions
from nnmem.units import human
from nnmem.web.form import (
    DEFAULT_FIELDS,
    FORM_SECTIONS,
    GPU_OPTIONS,
    MODEL_FIELDS,
    PRESETS,
    VIEW_FIELDS,
    Describe,
    FormField,
    PlotAxis,
    Translation,
    Units,
    fill_values,
    gpu_groups,
    inactive_for,
    page_field,
    read_view,
    translate,
)

__all__ = [
    "DEFAULT_FIELDS",
    "DEFAULT_SCENARIO",
    "FORM_SECTIONS",
    "GPU_OPTIONS",
    "PRESETS",
    "VIEW_FIELDS",
    "FormField",
    "compute",
    "gpu_groups",
    "prerender",
]

_MODEL_CONTROLS = {key for keys in MODEL_FIELDS.values() for key in keys}
_MAX_MESSAGE = 400  # characters: every echo is already cut short; this is the backstop


# --- the page's request: {"fields": {...}} -------------------------------------------------


def _lenient(spec: Any, fields: Mapping[str, object], default: Any) -> Any:
    read = spec.read(str(fields.get(spec.key, default.value)))
    return default if isinstance(read, Problem) else read


def _model_only(t: Translation) -> tuple[ModelKind, object]:
    """The model alone, for hiding fields when some setting is wrong."""
    kind = ModelKind(t.data.get("model", "generic"))
    keys = {"model", "params_millions", "hidden_size", "num_layers", "config", "preset", "cnn"}
    try:
        scenario = parse({k: v for k, v in t.data.items() if k in keys})
    except NnmemError:
        return kind, None
    return scenario.kind, scenario.model


def _inactive(t: Translation, fields: Mapping[str, object], scenario: Scenario | None) -> list[str]:
    if scenario is not None:
        kind, model = scenario.kind, scenario.model
        mode, finetune, precision = scenario.mode, scenario.finetune, scenario.precision
    else:
        kind, model = _model_only(t)
        mode = _lenient(MODE, fields, Mode.TRAINING)
        finetune = _lenient(FINETUNE, fields, Finetune.FULL)
        precision = _lenient(PRECISION, fields, Precision.FP32)
    return inactive_for(t.describe, kind, mode, model, finetune, precision)


def _placed(problem: Problem, t: Translation) -> Problem:
    """The problem against the page control it belongs to, its message cut to size."""
    message = problem.message
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return Problem(page_field(problem, t), message, problem.input)


def _read(fields: Mapping[str, object]) -> tuple[Translation, Scenario | None, list[Problem]]:
    """The scenario the fields describe, or every problem, each against its control."""
    t = translate(fields)
    problems = list(t.problems)
    scenario = None
    try:
        scenario = parse(t.data)
    except NnmemError as error:
        # Once the translation found the model's problem, parse's view of it adds nothing.
        # (The preset search is in view in every mode but describes the model only in one.)
        model_known = any(
            p.field in _MODEL_CONTROLS and (p.field != "preset" or t.describe is Describe.FIELDS)
            for p in problems
        )
        taken = {p.field for p in problems}
        placed = (_placed(q, t) for q in error.problems)
        problems += [
            p
            for p in placed
            if p.field not in taken and not (model_known and p.field not in SETTINGS)
        ]
    if scenario is None and problems:
        # A bad value in a hidden setting must not block the estimate: drop those settings.
        hidden = set(_inactive(t, fields, None)) & set(SETTINGS)
        if all(p.field in hidden for p in problems):
            data = {k: v for k, v in t.data.items() if k not in hidden}
            with contextlib.suppress(NnmemError):
                scenario, problems = parse(data), []
        else:
            problems = [p for p in problems if p.field not in hidden]
    return t, scenario, problems


def _apply(changes: Mapping[str, object]) -> str:
    """A suggestion's page-field changes as an attribute value, escaped."""
    plain = {k: _string(v) for k, v in changes.items()}
    return escape(json.dumps(plain, separators=(",", ":")), quote=True)


def _string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(getattr(value, "value", value))


def _button(label: str, changes: Mapping[str, object], text: str = "Apply") -> str:
    return (
        f'<button type="button" class="apply" data-apply="{_apply(changes)}" '
        f'aria-label="{escape(text)}: {escape(label)}">{escape(text)}</button>'
    )


def verdict_html(fit: Fit | None, binary: bool) -> str:
    """Fits with its headroom, or does not fit by how much, or a prompt to pick a GPU."""
    if fit is None:
        return '<p class="verdict" data-fit="none">Pick a GPU to see whether this fits.</p>'
    where = f"{escape(fit.gpu_name)} ({escape(human(fit.budget, binary))} usable)"
    need = escape(human(fit.need, binary))
    if fit.fits:
        share = f"{100 * fit.headroom / fit.budget:.0f}%" if fit.budget else "0%"
        return (
            f'<p class="verdict" data-fit="yes" data-headroom="{fit.headroom}">'
            f"<strong>Fits</strong> on {where}: needs {need}, leaving "
            f"{escape(human(fit.headroom, binary))} ({share}) to spare.</p>"
        )
    return (
        f'<p class="verdict" data-fit="no" data-headroom="{fit.headroom}">'
        f"<strong>Does not fit</strong> on {where}: needs {need}, "
        f"{escape(human(-fit.headroom, binary))} more than the GPU has.</p>"
    )


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
        capped = " (the model's position limit or the calculator's)" if n >= MAX_SEQ else ""
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
    elif plan is scenario or plan.num_gpus == scenario.num_gpus:
        row("min_gpus", "Fewest GPUs", f"{plan.num_gpus:,}: it fits as set", plan.num_gpus, "")
    else:
        how = (
            LABELS[plan.sharding]
            if plan.mode is Mode.TRAINING
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
    """What to change, largest saving first, each with a button that applies it."""
    if not ideas:
        return '<p class="suggestions-none">No change in the list lowers the memory further.</p>'
    items = []
    for s in ideas:
        after = escape(human(s.total_bytes, binary))
        verdict = ""
        if fit is not None:
            verdict = ", fits" if s.fits else ", still too big"
        items.append(
            f'<li data-key="{escape(s.key)}" data-saved="{s.saved_bytes}"'
            + (f' data-fits="{str(s.fits).lower()}"' if fit is not None else "")
            + f'><span class="label">{escape(s.label)}</span> '
            f'<span class="saving">saves {escape(human(s.saved_bytes, binary))}</span> '
            f'<span class="after">(then {after}{verdict})</span> '
            f"{_button(s.label, s.changes)}</li>"
        )
    return f'<ol class="suggestions">{"".join(items)}</ol>'


_PLOT_POINTS = 24


def plot_axis_values(scenario: Scenario, axis: PlotAxis, fit: Fit | None) -> list[int]:
    """The x values to plot, from 1: to twice the largest that fits on the GPU, or to four
    times the current value."""
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
    return plot_svg(points, axis.value, result, capacity, name, binary)


def _answer(fields: Mapping[str, object]) -> dict[str, Any]:
    gpu_id, units, axis, view_problems = read_view(fields)
    binary = units is Units.GIB
    t, scenario, problems = _read(fields)
    problems += view_problems
    inactive = _inactive(t, fields, scenario)
    reply: dict[str, Any] = {
        "ok": False,
        "errors": [{"field": p.field, "message": p.message} for p in problems],
        "inactive": inactive,
        "fill": {},
    }
    if scenario is not None:
        reply["fill"] = fill_values(t, scenario.model)
    if "describe" not in fields:
        # A link in the schema's terms (model=preset, ...): show the mode it was read as.
        reply["fill"]["describe"] = t.describe.value
    if problems or scenario is None:
        return reply
    result = estimate(scenario, gpu_id or None)
    fit = judge(scenario, gpu_id, always_suggest=True) if gpu_id else None
    ideas: tuple[Suggestion, ...] | list[Suggestion]
    ideas = fit.suggestions if fit is not None else suggestions(scenario, 0)
    reply |= {
        "ok": True,
        "description": describe(scenario),
        "total_bytes": result.total_bytes,
        "total_text": total_text(result, binary),
        "total_detail": total_detail(result, binary),
        "html": {
            "table": table_html(result, binary),
            "chart": chart_svg(result, binary),
            "plot": _plot(scenario, result, axis, fit, gpu_id or None, binary),
            "verdict": verdict_html(fit, binary),
            "solvers": solvers_html(fit, scenario, binary),
            "suggestions": suggestions_html(ideas, fit, binary),
            "phases": phases_html(result, binary),
            "formula": formula_html(result, binary),
            "notes": notes_html(result),
        },
        "download": {
            "scenario": scenario.to_dict(),
            "estimate": result.to_dict(),
            "gpu": _gpu_dict(gpu_id),
            "verdict": None if fit is None else _verdict_dict(fit),
            "solvers": None if fit is None else _solvers_dict(fit),
        },
    }
    return reply


def _gpu_dict(gpu_id: str) -> dict[str, Any] | None:
    gpu = catalog.gpus().get(gpu_id) if gpu_id else None
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


def compute(request: str) -> str:
    """Answer one request from the page.

    >>> reply = json.loads(compute(json.dumps({"fields": {**DEFAULT_FIELDS,
    ...     "gpu": "rtx-4090", "units": "gib"}})))
    >>> reply["ok"], reply["total_text"], "optimizer" in reply["inactive"]
    (True, '4.47 GiB', False)
    >>> json.loads(compute('{"fields": {"params_millions": "-1"}}'))["errors"]
    [{'field': 'params_millions', 'message': 'Model size must be a number of millions of \
parameters above 0 and at most 10,000,000 (got -1).'}]
    """
    try:
        data = load_json(request, "fields", "The request")
        if isinstance(data, dict) and isinstance(data.get("fields"), dict):
            return json.dumps(_answer(data["fields"]))
        problem = {"field": "fields", "message": "The request must hold a fields object."}
        return json.dumps({"ok": False, "errors": [problem], "inactive": [], "fill": {}})
    except NnmemError as error:  # the request itself is not JSON
        fatal = error.problems[0].message
        return json.dumps({"ok": False, "errors": [], "inactive": [], "fill": {}, "fatal": fatal})
    except Exception as error:  # the page must get an answer, never a traceback
        fatal = plain_fatal(error)
        return json.dumps({"ok": False, "errors": [], "inactive": [], "fill": {}, "fatal": fatal})


def prerender() -> dict[str, Any]:
    """The reply for ``DEFAULT_FIELDS``: what the build paints before Python loads."""
    reply: dict[str, Any] = json.loads(compute(json.dumps({"fields": DEFAULT_FIELDS})))
    return reply


# The default inputs in the schema's own terms (what DEFAULT_FIELDS describe), for the
# CLI-style callers and tests that speak the schema rather than the page's controls.
DEFAULT_SCENARIO: dict[str, Any] = translate(DEFAULT_FIELDS).data
