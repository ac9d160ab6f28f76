"""A file the calculator's Download JSON wrote, read back into the calculator's fields.

The file is ``{"scenario", "estimate", "gpu", "verdict", "solvers"}`` (see
:func:`nnmem.web.calculator.answer`'s ``download``). Its ``scenario`` is the schema's own
dict, which :func:`nnmem.scenario.parse` reads and checks; the reply's ``fields`` hold
every calculator control, so the page restores the scenario exactly, on the same GPU.
The CLI's ``--json`` output holds the same ``scenario`` (and no GPU), so it imports too.
Each problem names the place in the file it comes from (``scenario.batch_size``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from nnmem import catalog
from nnmem.errors import NnmemError, Problem
from nnmem.scenario import load_json, parse
from nnmem.validation import shown
from nnmem.web.form import DEFAULT_FIELDS, read
from nnmem.web.links import query_string
from nnmem.web.reply import reply

MAX_FILE = 2_000_000  # characters: a download with a pasted config is a few hundred thousand
FILE = "file"  # the field every problem is reported under: the page's Import JSON control


def _problem(message: str) -> NnmemError:
    return NnmemError.single(FILE, message)


def _gpu(data: Mapping[str, Any]) -> str:
    """The GPU the file was judged on, as the page's picker names it, or ""."""
    gpu = data.get("gpu")
    if gpu is None:
        return ""
    if not isinstance(gpu, Mapping) or not isinstance(gpu.get("id"), str):
        raise _problem(f'The file\'s "gpu" must be an object with an "id" (got {shown(gpu)}).')
    if catalog.gpu(gpu["id"]) is None:
        raise _problem(f"The file's gpu.id {shown(gpu['id'])} is not in the catalog.")
    return str(gpu["id"])


def fields_of(text: str) -> dict[str, str]:
    """Every calculator control's value for the file's scenario, or the problems.

    >>> fields = fields_of('{"scenario": {"model": "generic", "params_millions": 7000,'
    ...                    ' "mode": "inference"}, "gpu": {"id": "rtx-4090"}}')
    >>> fields["describe"], fields["params_millions"], fields["mode"], fields["gpu"]
    ('simple', '7000', 'inference', 'rtx-4090')
    >>> fields_of('{"scenario": {"model": "generic", "params_millions": 7000, "batch_size": 0}}')
    Traceback (most recent call last):
    ...
    nnmem.errors.NnmemError: The file's scenario.batch_size: Batch size must be a whole \
number from 1 to 1,000,000 (got 0).
    """
    if len(text) > MAX_FILE:
        raise _problem(f"The file is too long: at most {MAX_FILE:,} characters.")
    try:
        data = load_json(text, FILE, "The file")
    except NnmemError as error:
        raise _problem(error.problems[0].message) from None
    if not isinstance(data, dict) or not isinstance(data.get("scenario"), dict):
        raise _problem(
            'The file is not one Download JSON wrote: it needs a "scenario" object '
            '(with "model", "mode" and the other settings).'
        )
    try:
        scenario = parse(data["scenario"])
    except NnmemError as error:
        raise NnmemError(
            Problem(FILE, f"The file's scenario.{p.field}: {p.message}") for p in error.problems
        ) from None
    fields = {**DEFAULT_FIELDS, **dict(parse_qsl(query_string(scenario)))}
    fields.pop("describe")
    described = read(fields).fill.get("describe", "")
    model = fields.pop("model", "")
    fields = {**fields, "describe": described or model, "gpu": _gpu(data)}
    return fields


def answer(fields: Mapping[str, object]) -> dict[str, Any]:
    """The reply to the page's Import JSON: ``fields`` to set, or each problem against
    ``file``."""
    text = fields.get("text")
    if not isinstance(text, str):
        raise _problem("The file must be text: choose the .json file Download JSON saved.")
    restored = fields_of(text)
    return reply(True, fields=restored)
