"""The browser's face of nnmem: the calculator page and the tool pages.

Nothing in the engine imports this package; it turns the page's form strings into a
scenario, and an estimate into the HTML fragments and figures the page paints.
"""

from __future__ import annotations

import json
from typing import Any

from nnmem.errors import NnmemError
from nnmem.scenario import load_json
from nnmem.validation import shown
from nnmem.web import calculator
from nnmem.web.reply import fatal, reply

CALCULATOR = "calculator"
CHECKPOINT = "checkpoint"  # the calculator's model reader: headers in, controls to fill out
COMPARE = "compare"  # the calculator's pinned scenarios side by side
SAVED = "saved"  # the calculator's Import JSON: a downloaded file back into the controls


def pages() -> tuple[str, ...]:
    """Every page that asks. The model reader, the comparison, Import JSON and the tools
    are imported on their first request: the calculator's first answer, which a visit
    waits for, needs none of them."""
    from nnmem.web import tools

    return (CALCULATOR, CHECKPOINT, COMPARE, SAVED, *tools.TOOLS)


def _read(request: str) -> tuple[str, dict[str, Any], str]:
    """The page asking, its fields and the part of the reply, or the problem with the
    request."""
    data = load_json(request, "fields", "The request")
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise NnmemError.single("fields", "The request must hold a fields object.")
    page = data.get("page", CALCULATOR)
    if page not in (CALCULATOR, CHECKPOINT) and page not in pages():
        raise NnmemError.single(
            "page", f"Page must be one of {', '.join(pages())} (got {shown(page)})."
        )
    part = data.get("part", "all")
    if page == CALCULATOR and part not in calculator.PARTS:
        raise NnmemError.single(
            "part", f"Part must be one of {', '.join(calculator.PARTS)} (got {shown(part)})."
        )
    return page, data["fields"], part


def handle(request: str) -> str:
    """Answer one request from a page, ``{"page": ..., "fields": {...}}``; never raises.

    ``page`` is ``"calculator"`` (the default), ``"checkpoint"`` (a checkpoint's headers,
    see :mod:`nnmem.web.checkpoint`), ``"compare"`` (pinned scenarios side by side, see
    :mod:`nnmem.web.compare`), ``"saved"`` (a Download JSON file read back, see
    :mod:`nnmem.web.saved`) or a tool's name; every answer has the shape
    :mod:`nnmem.web.reply` describes. The calculator's ``part`` (``"all"``, the default, or
    ``"first"``, ``"rest"`` and ``"chart"``) splits its reply in three, see
    :func:`nnmem.web.calculator.answer`.

    >>> answer = json.loads(handle('{"page": "training-cost", "fields": {"mfu": "0"}}'))
    >>> answer["ok"], answer["errors"][0]["field"]
    (False, 'params_billions')
    >>> json.loads(handle("not json"))["errors"]
    [{'field': 'fields', 'message': 'The request is not valid JSON: Expecting value at line 1, \
column 1.'}]
    >>> json.loads(handle("[]"))["errors"]
    [{'field': 'fields', 'message': 'The request must hold a fields object.'}]
    """
    try:
        page, fields, part = _read(request)
        if page == CALCULATOR:
            answer = calculator.answer(fields, part)
        elif page == CHECKPOINT:
            from nnmem.web import checkpoint

            answer = checkpoint.answer(fields)
        elif page == COMPARE:
            from nnmem.web import compare

            answer = compare.answer(fields)
        elif page == SAVED:
            from nnmem.web import saved

            answer = saved.answer(fields)
        else:
            from nnmem.web import tools

            answer = tools.answer(page, fields)
    except NnmemError as error:
        answer = reply(False, error.problems)
    except Exception as error:  # the page must get an answer, never a traceback
        answer = fatal(error)
    return json.dumps(answer)
