"""The related tools, one module a page: each a form (its fields, with defaults) and a
function from the form's values to HTML fragments and the figures behind them.

The build prerenders every tool with its defaults through :func:`prerender`; the page
reaches :func:`answer` through :func:`nnmem.web.handle`, which turns a bad value into
a reply naming the field, what is allowed and the value given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nnmem.web.reply import reply
from nnmem.web.tools import (
    compression,
    gpu_guide,
    inference_latency,
    parameter_count,
    pytorch_memory,
    training_cost,
    what_fits,
)
from nnmem.web.tools.common import Tool, Values

TOOLS: dict[str, Tool] = {
    "parameter-count": parameter_count.TOOL,
    "inference-latency": inference_latency.TOOL,
    "training-cost": training_cost.TOOL,
    "gpu-guide": gpu_guide.TOOL,
    "compression": compression.TOOL,
    "pytorch-memory": pytorch_memory.TOOL,
    "what-fits": what_fits.TOOL,
}


def answer(tool: str, fields: Mapping[str, object]) -> dict[str, Any]:
    """The reply to ``tool``'s form values; bad values raise :class:`NnmemError`.

    >>> got = answer("training-cost", {"params_billions": "7", "tokens_billions": "1000",
    ...     "gpu": "h100-sxm-80gb", "num_gpus": "8", "mfu": "50", "price_per_gpu_hour": "2"})
    >>> got["values"]["flops"], got["values"]["cost"]
    ('42000000000000000000000', '47166.6')
    """
    # A form sends strings; JSON numbers and flags are read as their JSON text.
    values = {
        str(k): "" if v is None else v if isinstance(v, str) else json.dumps(v)
        for k, v in fields.items()
    }
    out = TOOLS[tool].run(values)
    return reply(True, html={"result": out["html"], **out.get("parts", {})}, values=out["values"])


def defaults(tool: str) -> Values:
    """The tool's form values as the page is built."""
    return {f.key: f.default for f in TOOLS[tool].fields}


def prerender(tool: str) -> dict[str, Any]:
    """What the build puts in a tool's page: its form, defaults and default answer."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}: choose one of {', '.join(TOOLS)}")
    values = defaults(tool)
    return {
        "name": tool,
        "fields": TOOLS[tool].fields,
        "values": values,
        "reply": json.loads(json.dumps(answer(tool, values))),
        "live": TOOLS[tool].live,
    }
