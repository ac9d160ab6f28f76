"""The one entry point the browser calls: JSON in, JSON out.

The page sends ``{"scenario": {<schema key>: <form value>, ...}}`` and gets back either
the estimate with its prerendered HTML fragments, or the problems, each naming the
field it belongs to. Nothing here raises: a bug becomes a plain message, never a
traceback on the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nnmem.errors import NnmemError
from nnmem.estimate import Estimate, estimate
from nnmem.fields import ChoiceSpec, NumberSpec
from nnmem.report import (
    chart_svg,
    describe,
    formula_html,
    notes_html,
    phases_html,
    table_html,
    total_detail,
    total_text,
)
from nnmem.scenario import (
    BATCH_SIZE,
    HIDDEN_SIZE,
    LABELS,
    MODE,
    NUM_LAYERS,
    OPTIMIZER,
    PARAMS,
    PRECISION,
    SEQ_LEN,
    Finetune,
    Mode,
    ModelKind,
    Precision,
    inactive_fields,
    parse,
)


def render(result: Estimate) -> dict[str, Any]:
    """The estimate as the page paints it: totals as text, the rest as HTML fragments."""
    return {
        "ok": True,
        "scenario": result.scenario.to_dict(),
        "description": describe(result.scenario),
        "total_bytes": result.total_bytes,
        "tensor_peak_bytes": result.tensor_peak_bytes,
        "peak_phase": result.peak_phase.name,
        "total_text": total_text(result),
        "total_detail": total_detail(result),
        "inactive": list(result.scenario.inactive_fields()),
        "html": {
            "table": table_html(result),
            "chart": chart_svg(result),
            "phases": phases_html(result),
            "formula": formula_html(result),
            "notes": notes_html(result),
        },
    }


def _inactive_for(fields: dict[str, Any]) -> list[str]:
    """Fields to hide even when the scenario is invalid, judged by its mode alone."""
    try:
        mode = Mode(str(fields.get("mode", "training")).strip().lower())
    except ValueError:
        return []
    off = inactive_fields(ModelKind.GENERIC, mode, None, Finetune.FULL, Precision.FP32)
    return [k for k in off if k in {f.key for f in FORM}]


def compute(request: str) -> str:
    """Answer one request from the page.

    >>> reply = json.loads(compute('{"scenario": {"params_millions": "7000", '
    ...     '"precision": "fp16", "mode": "inference", "hidden_size": "4096", '
    ...     '"num_layers": "32", "batch_size": "1", "seq_len": "512"}}'))
    >>> reply["peak_phase"], "optimizer" in reply["inactive"]
    ('prefill', True)
    >>> json.loads(compute('{"scenario": {"params_millions": "-1"}}'))["errors"]
    [{'field': 'params_millions', 'message': 'Model size must be a number of millions of \
parameters above 0 and at most 10,000,000 (got -1).'}]
    """
    fields: dict[str, Any] = {}
    try:
        data = json.loads(request)
        if not isinstance(data, dict) or not isinstance(data.get("scenario"), dict):
            raise NnmemError.single("scenario", "The request must hold a scenario object.")
        fields = data["scenario"]
        return json.dumps(render(estimate(parse(fields))))
    except NnmemError as error:
        problems = [{"field": p.field, "message": p.message} for p in error.problems]
        return json.dumps({"ok": False, "errors": problems, "inactive": _inactive_for(fields)})
    except Exception as error:  # the page must get an answer, never a traceback
        fatal = f"{type(error).__name__}: {error}"
        return json.dumps({"ok": False, "errors": [], "inactive": [], "fatal": fatal})


# The calculator form, described once for the build that renders it. Labels come from
# the schema specs, so the message next to a field names it exactly as its label does.
DEFAULT_SCENARIO: dict[str, Any] = {
    "model": "generic",
    "params_millions": 110,
    "hidden_size": 768,
    "num_layers": 12,
    "mode": "training",
    "precision": "fp32",
    "optimizer": "adamw",
    "batch_size": 32,
    "seq_len": 128,
}


@dataclass(frozen=True)
class FormField:
    """One control of the calculator form."""

    key: str
    label: str
    hint: str
    kind: str  # "number" or "choice"
    inputmode: str = ""
    unit: str = ""
    options: tuple[tuple[str, str], ...] = ()  # (value, label)


def _number(spec: NumberSpec, hint: str, unit: str = "") -> FormField:
    inputmode = "numeric" if spec.whole else "decimal"
    return FormField(spec.key, spec.label, hint, "number", inputmode, unit)


def _choice(spec: ChoiceSpec[Any], hint: str) -> FormField:
    options = tuple((member.value, LABELS[member]) for member in spec.enum)
    return FormField(spec.key, spec.label, hint, "choice", options=options)


FORM: tuple[FormField, ...] = (
    _number(PARAMS, "Parameters, in millions: 110 for BERT-base, 7000 for a 7B model.", "millions"),
    _number(HIDDEN_SIZE, "Width h of each layer (hidden_size in config.json)."),
    _number(NUM_LAYERS, "Transformer layers L (num_hidden_layers in config.json)."),
    _choice(MODE, "Training adds gradients, optimizer state and stored activations."),
    _choice(PRECISION, "How the weights are stored; AMP keeps fp32 weights, 16-bit compute."),
    _choice(OPTIMIZER, "Adam keeps two values per parameter, momentum SGD one, SGD none."),
    _number(BATCH_SIZE, "Sequences processed together in one step."),
    _number(SEQ_LEN, "Tokens per sequence.", "tokens"),
)
