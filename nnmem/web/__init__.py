"""The browser's face of nnmem: the calculator page and the tool pages.

Nothing in the engine imports this package; it turns the page's form strings into a
scenario, and an estimate into the HTML fragments and figures the page paints.
"""

from __future__ import annotations

from nnmem.errors import NnmemError
from nnmem.scenario import load_json
from nnmem.web import calculator, tools

CALCULATOR = "calculator"


def handle(request: str) -> str:
    """Answer one request from a page, ``{"page": ..., "fields": {...}}``; never raises.

    ``page`` is ``"calculator"`` (the default) or a tool's name.

    >>> import json
    >>> reply = json.loads(handle('{"page": "training-cost", "fields": {"mfu": "0"}}'))
    >>> reply["ok"], reply["errors"][0]["field"]
    (False, 'params_billions')
    """
    try:
        data = load_json(request, "page", "The request")
    except NnmemError:
        data = None  # the calculator answers it with the reason
    page = data.get("page", CALCULATOR) if isinstance(data, dict) else CALCULATOR
    if page == CALCULATOR:
        return calculator.compute(request)
    return tools.call(str(page), request)
