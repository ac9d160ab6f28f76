"""The related tools' one entry point for the browser: ``call(tool, request) -> reply``.

Each tool is a form (its fields, with defaults) and a function from the form's values to
HTML fragments and the raw figures behind them. The build prerenders every tool with its
defaults through :func:`prerender`; the page's worker calls :func:`call` after each change.
Nothing here raises: bad input becomes ``{"ok": false, "errors": [{"field", "message"}]}``
naming the field, what is allowed and the value given.
"""

from __future__ import annotations

import json
from typing import Any

from nnmem.errors import NnmemError, plain_fatal
from nnmem.scenario import load_json
from nnmem.validation import shown
from nnmem.web.tools import (
    compression,
    gpu_guide,
    inference_latency,
    parameter_count,
    pytorch_memory,
    training_cost,
)
from nnmem.web.tools.common import Tool, Values

TOOLS: dict[str, Tool] = {
    "parameter-count": parameter_count.TOOL,
    "inference-latency": inference_latency.TOOL,
    "training-cost": training_cost.TOOL,
    "gpu-guide": gpu_guide.TOOL,
    "compression": compression.TOOL,
    "pytorch-memory": pytorch_memory.TOOL,
}


def _answer(tool: str, request: str) -> dict[str, Any]:
    if tool not in TOOLS:
        raise NnmemError.single(
            "tool", f"Tool must be one of {', '.join(TOOLS)} (got {shown(tool)})."
        )
    data = load_json(request, "fields", "The request")
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise NnmemError.single("fields", "The request must hold a fields object.")
    # A form sends strings; JSON numbers and flags are read as their JSON text.
    values = {
        str(k): "" if v is None else v if isinstance(v, str) else json.dumps(v)
        for k, v in data["fields"].items()
    }
    return {"ok": True, **TOOLS[tool].run(values)}


def call(tool: str, request: str) -> str:
    """Answer one request ``{"fields": {key: value}}`` for ``tool``; never raises.

    >>> reply = json.loads(call("training-cost", json.dumps({"fields": {
    ...     "params_billions": "7", "tokens_billions": "1000", "gpu": "h100-sxm-80gb",
    ...     "num_gpus": "8", "mfu": "50", "price_per_gpu_hour": "2"}})))
    >>> reply["values"]["flops"], reply["values"]["cost"]
    ('42000000000000000000000', '47166.6')
    >>> json.loads(call("training-cost", '{"fields": {"mfu": "0"}}'))["errors"][0]
    {'field': 'params_billions', 'message': 'Model size is required: enter a number of \
billions of parameters from 0.001 to 100,000.'}
    """
    try:
        return json.dumps(_answer(tool, request))
    except NnmemError as error:
        problems = [{"field": p.key, "message": p.message} for p in error.problems]
        return json.dumps({"ok": False, "errors": problems})
    except Exception as error:  # the page must get an answer, never a traceback
        return json.dumps({"ok": False, "errors": [], "fatal": plain_fatal(error)})


def defaults(tool: str) -> Values:
    """The tool's form values as the page is built."""
    return {f.key: f.default for f in TOOLS[tool].fields}


def prerender(tool: str) -> dict[str, Any]:
    """What the build puts in a tool's page: its form, defaults and default answer."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}: choose one of {', '.join(TOOLS)}")
    values = defaults(tool)
    reply = json.loads(call(tool, json.dumps({"fields": values})))
    if not reply["ok"]:
        raise ValueError(f"tool {tool} fails on its own defaults: {reply}")
    return {
        "name": tool,
        "fields": TOOLS[tool].fields,
        "values": values,
        "reply": reply,
        "live": TOOLS[tool].live,
    }
