"""A scenario as the calculator page's query string, so any text can link to it.

The page keeps its state in the URL with the schema's own keys as query parameters, so
the build (worked examples in the guide) and the page read and write the same names.
Only keys that differ from their defaults and apply to the scenario are written; a
transformer given as a ``config.json`` object travels as JSON text, which
:func:`nnmem.scenario.parse` reads back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from nnmem.scenario import Scenario


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def query_string(scenario: Scenario) -> str:
    """The scenario as ``key=value&...`` in schema order, defaults left out.

    >>> from nnmem.scenario import parse
    >>> query_string(parse({"model": "preset", "preset": "llama-2-7b",
    ...                     "mode": "inference", "precision": "fp16"}))
    'model=preset&preset=llama-2-7b&mode=inference&precision=fp16'
    """
    data = scenario.to_dict(compact=True)
    return urlencode([(key, _text(value)) for key, value in data.items() if value is not None])


def from_query_string(query: str) -> dict[str, str]:
    """The schema fields a query string holds, ready for :func:`nnmem.scenario.parse`.

    >>> from_query_string("?model=preset&preset=gpt2&batch_size=8")
    {'model': 'preset', 'preset': 'gpt2', 'batch_size': '8'}
    """
    return dict(parse_qsl(query.removeprefix("?"), keep_blank_values=False))
