"""Two or three scenarios side by side, component by component: the calculator's Compare.

The page pins scenarios as their calculator fields; :func:`answer` estimates each one as
the calculator does (:func:`nnmem.web.form.read`, then :func:`nnmem.estimate.estimate`
on its GPU) and returns one table whose rows are the components and whose columns are
the scenarios, each with its one-line summary, total, how many GPUs its figures are per,
its verdict on its own GPU and its difference from the first column. It also returns each
scenario in its compact form (only the fields that differ from the page's defaults and
apply) and that list packed for the link's fragment, so a comparison can be shared.

A ready comparison (``ready``) builds its scenarios from the first one: the same model
fine-tuned in full, with LoRA and with QLoRA, or run on one RTX 4090 and on two RTX 3090s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nnmem import catalog
from nnmem.errors import NnmemError, Problem
from nnmem.estimate import estimate
from nnmem.render.markup import escape
from nnmem.render.text import describe, sharing_gpus, total_text
from nnmem.result import Estimate
from nnmem.scenario import (
    CHECKPOINT_BYTES,
    Checkpointing,
    Finetune,
    Mode,
    Precision,
    Runtime,
    Scenario,
    Sharding,
)
from nnmem.solvers import budget_for, format_warnings, tensor_parallel_degrees
from nnmem.units import human
from nnmem.validation import shown
from nnmem.web.form import CHANGED, CONFIG_BY_NAME, DEFAULT_FIELDS, FIELDS, Units, read
from nnmem.web.links import MAX_FRAGMENT, pack, unpack
from nnmem.web.reply import reply

MAX_SCENARIOS = 3
NAMES = "ABC"  # each column's letter, as the table's header and the remove button say
# Page fields that change how the answer is shown, not the scenario: never pinned.
VIEW_ONLY = ("units", "plot", CHANGED, "model_id")
# What a pinned scenario may hold: the form's controls, the checkpoint's stored bytes a
# model read fills in, and the view's (dropped).
PINNABLE = {*FIELDS, CHECKPOINT_BYTES, *VIEW_ONLY}


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fields(given: object, index: int) -> dict[str, str]:
    """One pinned scenario's fields over the page's defaults, or the problem."""
    where = f"Scenario {NAMES[index]}"
    if not isinstance(given, Mapping):
        raise NnmemError.single(
            "scenarios", f"{where} must be an object of calculator fields (got {shown(given)})."
        )
    unknown = sorted(str(k) for k in given if k not in PINNABLE)
    if unknown:
        raise NnmemError.single(
            "scenarios",
            f"{where} names fields the calculator does not have: {', '.join(unknown[:5])}.",
        )
    if any(isinstance(v, Mapping | list) for v in given.values()):
        raise NnmemError.single("scenarios", f"{where} must hold text values only.")
    return {
        **DEFAULT_FIELDS,
        **{str(k): _text(v) for k, v in given.items() if k not in VIEW_ONLY},
    }


def compact(fields: Mapping[str, str]) -> dict[str, str]:
    """The fields that differ from the page's defaults and apply to the scenario, less the
    values nnmem fills in itself (a preset's architecture): what a link must hold.

    >>> compact({**DEFAULT_FIELDS, "batch_size": "4", "optimizer": "sgd"})
    {'optimizer': 'sgd', 'batch_size': '4'}
    >>> llama = {**DEFAULT_FIELDS, "describe": "fields", "preset": "llama-3.1-8b",
    ...          "cfg_hidden_size": "4096", "cfg_num_hidden_layers": "32"}
    >>> compact(llama), compact({**llama, "cfg_num_hidden_layers": "16"})
    ... # doctest: +NORMALIZE_WHITESPACE
    ({'describe': 'fields', 'preset': 'llama-3.1-8b'},
     {'describe': 'fields', 'preset': 'llama-3.1-8b', 'cfg_num_hidden_layers': '16'})
    """
    inactive = read(fields).inactive
    # The architecture fields as the preset or config alone fills them: an edit differs.
    base = read({k: "" if k in CONFIG_BY_NAME else v for k, v in fields.items()}).fill
    skip = {*inactive, *VIEW_ONLY}
    return {
        k: v
        for k, v in fields.items()
        if k not in skip
        and v != DEFAULT_FIELDS.get(k, "")
        and not (k in CONFIG_BY_NAME and base.get(k) == v)
    }


# --- ready comparisons -------------------------------------------------------------------


def _finetunes(fields: Mapping[str, str]) -> list[dict[str, str]]:
    """The model trained in full, with LoRA and with QLoRA, each with full gradient
    checkpointing (the QLoRA recipe's, peft's ``prepare_model_for_kbit_training``; Dettmers
    et al. 2023, §3), so that the columns differ by the method alone. The full and LoRA
    columns keep a precision that trains, else BF16 autocast; QLoRA's base is NF4."""
    precision = fields.get("precision", "")
    trains = precision in {p.value for p in Precision if p.trains_fully}
    train = precision if trains else Precision.AMP_BF16.value
    common = {"mode": Mode.TRAINING.value, "checkpointing": Checkpointing.FULL.value}
    return [
        {**fields, **common, "finetune": Finetune.FULL.value, "precision": train},
        {**fields, **common, "finetune": Finetune.LORA.value, "precision": train},
        {**fields, **common, "finetune": Finetune.LORA.value, "precision": Precision.NF4.value},
    ]


def _two_gpus(fields: Mapping[str, str], scenario: Scenario | None) -> dict[str, str]:
    """The scenario split over two GPUs the way the fewest-GPUs solver splits it
    (:func:`nnmem.solvers.min_gpus`): training shards with ZeRO-3 / FSDP unless it shards
    already; llama.cpp splits layers; other inference runs tensor parallel over 2 where the
    heads divide by 2."""
    two = {"num_gpus": "2"}
    if scenario is None:
        return two
    if scenario.mode is Mode.TRAINING:
        if scenario.sharding is Sharding.NONE:
            two["sharding"] = Sharding.ZERO3.value
    elif scenario.runtime.engine is not Runtime.LLAMA_CPP and 2 in tensor_parallel_degrees(
        scenario
    ):
        two["tensor_parallel"] = "2"
    return two


def _gpus(fields: Mapping[str, str]) -> list[dict[str, str]]:
    """One RTX 4090 against two RTX 3090s: 24 GB each, the 3090s cheaper used."""
    one = {"num_gpus": "1", "tensor_parallel": "1", "sharding": Sharding.NONE.value}
    single = {**fields, **one, "gpu": "rtx-4090", "gpu_gb": ""}
    scenario = read(single).scenario
    return [single, {**single, "gpu": "rtx-3090", **_two_gpus(single, scenario)}]


READY = {
    "finetune": ("Full fine-tune vs LoRA vs QLoRA of this model", _finetunes),
    "gpus": ("One RTX 4090 vs two RTX 3090s", _gpus),
}


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One pinned scenario, estimated, or the problems that stop it."""

    fields: dict[str, str]
    scenario: Scenario | None
    result: Estimate | None
    gpu: str
    problems: tuple[Problem, ...]


def column(fields: dict[str, str]) -> Column:
    """Estimate one scenario exactly as the calculator does for the same fields."""
    reading = read(fields)
    if reading.problems or reading.scenario is None:
        return Column(fields, None, None, reading.gpu, tuple(reading.problems))
    try:
        result = estimate(reading.scenario, reading.gpu or None)
    except NnmemError as error:
        return Column(fields, reading.scenario, None, reading.gpu, error.problems)
    return Column(fields, reading.scenario, result, reading.gpu, ())


def _signed(n: int, binary: bool) -> str:
    """A difference with its sign: "+1.20 GB", "−350.0 MB", "same"."""
    if n == 0:
        return "same"
    return ("+" if n > 0 else "−") + human(abs(n), binary)


def verdict(col: Column, binary: bool) -> tuple[str, str]:
    """The fit on the column's GPU in a few words, and yes/no/none, as the calculator's
    verdict counts it: the total on the card against its usable memory less the headroom
    kept free (:func:`nnmem.solvers.budget_for`)."""
    gpu = catalog.gpu(col.gpu) if col.gpu else None
    if gpu is None or col.scenario is None or col.result is None:
        return "No GPU chosen", "none"
    budget = budget_for(col.scenario, gpu.usable_bytes)
    headroom = budget - col.result.total_bytes
    if headroom < 0:
        return f"{gpu.name}: does not fit, {human(-headroom, binary)} over", "no"
    if not format_warnings(col.scenario, gpu)[1]:
        return f"{gpu.name}: fits in memory, but cannot run", "no"
    return f"{gpu.name}: fits, {human(headroom, binary)} to spare", "yes"


def _rows(columns: list[Column]) -> list[tuple[str, str]]:
    """Every component key with its label, in the order the columns first list them."""
    seen: dict[str, str] = {}
    for col in columns:
        for c in col.result.components if col.result else ():
            seen.setdefault(c.key, c.label)
    return list(seen.items())


def _cell(n: int | None, first: int | None, lead: bool, binary: bool) -> str:
    if n is None:
        return "<td>—</td>"
    diff = ""
    if not lead and first is not None:
        diff = f' <span class="diff">({escape(_signed(n - first, binary))})</span>'
    return f'<td data-bytes="{n}">{escape(human(n, binary))}{diff}</td>'


def table_html(columns: list[Column], binary: bool) -> str:
    """Rows are components, columns scenarios; each cell after the first column carries
    its difference from the first."""
    firsts = [c for c in columns if c.result is not None]
    base = firsts[0].result if firsts and columns[0].result is not None else None
    base_by = {c.key: c.bytes for c in base.components} if base else {}
    head = ['<th scope="col" class="corner">Component</th>']
    summary = ['<th scope="row">Scenario</th>']
    totals = ['<th scope="row">Total</th>']
    per = ['<th scope="row">Counted per</th>']
    fits = ['<th scope="row">Verdict</th>']
    peaks = ['<th scope="row">Peak during</th>']
    for i, col in enumerate(columns):
        name = NAMES[i]
        head.append(
            f'<th scope="col" data-column="{i}"><span class="compare-name">{name}</span> '
            f'<button type="button" class="compare-remove" data-remove="{i}" '
            f'aria-label="Remove scenario {name}">Remove</button></th>'
        )
        if col.scenario is None or col.result is None:
            problem = " ".join(p.message for p in col.problems) or "It could not be estimated."
            summary.append(
                f'<td class="compare-problem" data-column="{i}">Fix this scenario: '
                f"{escape(problem)}</td>"
            )
            totals.append("<td>—</td>")
            per.append("<td>—</td>")
            fits.append("<td>—</td>")
            peaks.append("<td>—</td>")
            continue
        summary.append(f'<td class="compare-summary">{escape(describe(col.scenario))}</td>')
        first_total = base.total_bytes if base else None
        totals.append(
            _cell(col.result.total_bytes, first_total, i == 0 or base is None, binary).replace(
                "<td", f'<td class="compare-total" data-column="{i}"', 1
            )
        )
        gpus = sharing_gpus(col.scenario)
        per.append(f"<td>{'one GPU' if gpus == 1 else f'each of {gpus:,} GPUs'}</td>")
        text, fit = verdict(col, binary)
        fits.append(f'<td class="compare-verdict" data-fit="{fit}">{escape(text)}</td>')
        # A component freed by the peak reads 0 B: the phase says when the peak is.
        peaks.append(f"<td>{escape(col.result.peak_phase.label.lower())}</td>")
    body = []
    for key, label in _rows(columns):
        cells = []
        for i, col in enumerate(columns):
            by = {c.key: c.bytes for c in col.result.components} if col.result else None
            n = None if by is None else by.get(key, 0)
            cells.append(_cell(n, base_by.get(key, 0) if base else None, i == 0, binary))
        row = f'<th scope="row">{escape(label)}</th>{"".join(cells)}'
        body.append(f'<tr data-key="{escape(key)}">{row}</tr>')
    # The note sits outside the table, so that on a phone it wraps in the box's width
    # instead of scrolling away with the columns.
    note = (
        '<p class="compare-caption">Totals and verdicts first, then each component at the '
        "scenario's peak; after the first column, each figure is followed by its difference "
        "from the first.</p>"
    )
    head_rows = "".join(
        f"<tr{attrs}>{''.join(cells)}</tr>"
        for attrs, cells in (
            ("", summary),
            (' data-key="total" class="compare-total-row"', totals),
            ("", fits),
            ("", per),
            ("", peaks),
        )
    )
    return (
        f'{note}<table class="compare-table"><caption class="visually-hidden">Scenarios '
        f"side by side</caption><thead><tr>{''.join(head)}</tr></thead>"
        f'<tbody class="compare-head">{head_rows}</tbody><tbody>{"".join(body)}</tbody></table>'
    )


def _values(columns: list[Column], binary: bool) -> list[dict[str, Any]]:
    """Each column's figures as data: what the table shows, for tests and the page."""
    base = columns[0].result if columns and columns[0].result else None
    out = []
    for col in columns:
        if col.result is None or col.scenario is None:
            out.append({"ok": False, "errors": [p.message for p in col.problems]})
            continue
        total = col.result.total_bytes
        out.append(
            {
                "ok": True,
                "description": describe(col.scenario),
                "total_bytes": total,
                "total_text": total_text(col.result, binary),
                "diff_bytes": None if base is None else total - base.total_bytes,
                "gpus": sharing_gpus(col.scenario),
                "verdict": verdict(col, binary)[0],
                "components": {c.key: c.bytes for c in col.result.components},
            }
        )
    return out


def _scenarios(fields: Mapping[str, object]) -> list[object]:
    """The pinned scenarios: given as a list, or packed in the link's fragment."""
    link = fields.get("link")
    if isinstance(link, str) and link:
        text = unpack(link)
        try:
            given = json.loads(text)
        except ValueError:
            raise NnmemError.single(
                "compare", "The link's comparison could not be read: it is not JSON."
            ) from None
    else:
        given = fields.get("scenarios", [])
    if not isinstance(given, list):
        raise NnmemError.single(
            "scenarios", f"Scenarios must be a list of calculator fields (got {shown(given)})."
        )
    if len(given) > MAX_SCENARIOS:
        raise NnmemError.single(
            "scenarios",
            f"Compare holds at most {MAX_SCENARIOS} scenarios (got {len(given)}): remove one "
            "before adding another.",
        )
    return given


def answer(fields: Mapping[str, object]) -> dict[str, Any]:
    """The comparison of the pinned scenarios (``scenarios``, a list of calculator fields,
    or ``link``, the fragment's packed list), or of a ready one (``ready``, built from the
    first scenario given): the table, each column's figures, and the compact scenarios
    with their packed form for the link.

    >>> got = answer({"scenarios": [{"batch_size": "8"}, {"batch_size": "16"}]})
    >>> [c["total_text"] for c in got["columns"]], got["states"][1]
    (['3.10 GB', '3.49 GB'], {'batch_size': '16'})
    >>> answer({"scenarios": [{}], "ready": "gpus"})["states"]  # doctest: +NORMALIZE_WHITESPACE
    [{'gpu': 'rtx-4090'}, {'num_gpus': '2', 'sharding': 'zero3', 'gpu': 'rtx-3090'}]
    >>> answer({"scenarios": [{"batch_size": "0"}]})["columns"][0]["ok"]
    False
    """
    given = _scenarios(fields)
    units = str(fields.get("units") or Units.GB.value)
    binary = units == Units.GIB.value
    scenarios = [_fields(g, i) for i, g in enumerate(given)]
    ready = str(fields.get("ready") or "")
    if ready:
        if ready not in READY:
            raise NnmemError.single(
                "ready", f"Ready comparison must be one of {', '.join(READY)} (got {shown(ready)})."
            )
        base = scenarios[0] if scenarios else dict(DEFAULT_FIELDS)
        scenarios = READY[ready][1](base)
    columns = [column(s) for s in scenarios]
    states = [compact(s) for s in scenarios]
    packed = pack(json.dumps(states, separators=(",", ":"))) if states else ""
    too_long = len(packed) > MAX_FRAGMENT
    note = (
        f"This comparison is too long for a link ({len(packed):,} characters packed; a link "
        f"holds at most {MAX_FRAGMENT:,}): use Download JSON on each scenario to share it."
        if too_long
        else ""
    )
    html = {"compare": table_html(columns, binary) if columns else ""}
    return reply(
        True,
        html=html,
        columns=_values(columns, binary),
        states=states,
        link="" if too_long else packed,
        note=note,
    )
