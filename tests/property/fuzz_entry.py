"""The web layer as the property suite sees it: every import of the page's and the tools'
entry points is here, so a move of those modules changes this file alone."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl

from nnmem.web import handle
from nnmem.web.calculator import DEFAULT_FIELDS
from nnmem.web.links import query_string
from nnmem.web.tools import TOOLS, defaults

TOOL_NAMES = tuple(TOOLS)


def tool_fields(tool: str) -> list[str]:
    """The names of a tool's controls."""
    return [f.key for f in TOOLS[tool].fields]


def compute(request: str) -> str:
    """The calculator's answer to a request, as the page's one door gives it."""
    return handle(request)


def call(tool: str, request: str) -> str:
    """A tool's answer to a request: the request goes to the door with its page named
    (a request that is not a JSON object goes as it is)."""
    try:
        data = json.loads(request)
    except (ValueError, RecursionError):
        return handle(request)
    if not isinstance(data, dict):
        return handle(request)
    return handle(json.dumps({**data, "page": tool}))


# The module (the package exports the function of the same name).
engine = importlib.import_module("nnmem.estimate")

__all__ = [
    "DEFAULT_FIELDS",
    "TOOL_NAMES",
    "call",
    "compute",
    "count_estimates",
    "defaults",
    "from_query_string",
    "handle",
    "query_string",
    "tool_fields",
]


def from_query_string(query: str) -> dict[str, str]:
    """The fields a link's query string gives the page (as URLSearchParams reads it)."""
    return dict(parse_qsl(query.removeprefix("?"), keep_blank_values=False))


@contextmanager
def count_estimates() -> Iterator[list[int]]:
    """Count the model builds (one per estimate) made inside the block: ``counter[0]``."""
    counter = [0]
    original = engine.builder

    def counting(scenario):  # type: ignore[no-untyped-def]
        counter[0] += 1
        return original(scenario)

    engine.builder = counting  # type: ignore[assignment]
    try:
        yield counter
    finally:
        engine.builder = original  # type: ignore[assignment]
