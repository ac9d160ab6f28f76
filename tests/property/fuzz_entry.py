"""The web layer as the property suite sees it: every import of the page's and the tools'
entry points is here, so a move of those modules changes this file alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nnmem import engines
from nnmem.links import from_query_string, query_string
from nnmem.web import DEFAULT_FIELDS, compute
from nnmem.web_tools import TOOLS, call

TOOL_NAMES = tuple(TOOLS)

__all__ = [
    "DEFAULT_FIELDS",
    "TOOL_NAMES",
    "call",
    "compute",
    "count_estimates",
    "from_query_string",
    "query_string",
]


@contextmanager
def count_estimates() -> Iterator[list[int]]:
    """Count the model builds (one per estimate) made inside the block: ``counter[0]``."""
    counter = [0]
    original = engines.builder

    def counting(scenario):  # type: ignore[no-untyped-def]
        counter[0] += 1
        return original(scenario)

    engines.builder = counting  # type: ignore[assignment]
    try:
        yield counter
    finally:
        engines.builder = original  # type: ignore[assignment]
