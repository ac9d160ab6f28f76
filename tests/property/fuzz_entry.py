"""The web layer as the property suite sees it: every import of the page's and the tools'
entry points is here, so a move of those modules changes this file alone."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl

from nnmem.web import handle
from nnmem.web.calculator import DEFAULT_FIELDS, compute
from nnmem.web.links import query_string
from nnmem.web.tools import TOOLS, call

TOOL_NAMES = tuple(TOOLS)
# The module (the package exports the function of the same name).
engine = importlib.import_module("nnmem.estimate")

__all__ = [
    "DEFAULT_FIELDS",
    "TOOL_NAMES",
    "call",
    "compute",
    "count_estimates",
    "from_query_string",
    "handle",
    "query_string",
]


def from_query_string(query: str) -> dict[str, str]:
    """The fields a link's query string gives the page (as URLSearchParams reads it)."""
    return dict(parse_qsl(query.removeprefix("?"), keep_blank_values=False))


@contextmanager
def count_estimates() -> Iterator[list[int]]:
    """Count the model builds (one per estimate) made inside the block: ``counter[0]``."""
    counter = [0]
    original = engine._builder

    def counting(scenario):  # type: ignore[no-untyped-def]
        counter[0] += 1
        return original(scenario)

    engine._builder = counting  # type: ignore[assignment]
    try:
        yield counter
    finally:
        engine._builder = original  # type: ignore[assignment]
