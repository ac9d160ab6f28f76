"""A scenario as the calculator page's query string, so any text can link to it.

The page keeps its state in the URL with the schema's own keys as query parameters, so
the build (worked examples in the guide) and the page read and write the same names.
Only keys that apply to the scenario and differ from their defaults are written: from
the schema's defaults and from the calculator form's, since the page fills every control
a link leaves out with the form's own example value (batch 32, say, where the schema
says 1). A transformer given as a ``config.json`` object travels as JSON text, which
:func:`nnmem.scenario.parse` reads back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

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
    'model=preset&preset=llama-2-7b&mode=inference&precision=fp16&batch_size=1&seq_len=512'
    """
    from nnmem.web.form import DEFAULT_FIELDS

    compact = scenario.to_dict(compact=True)
    inactive = set(scenario.inactive_fields())
    pairs = [
        (key, _text(value))
        for key, value in scenario.to_dict().items()
        if value is not None
        and (
            key in compact
            or (key not in inactive and _text(value) != DEFAULT_FIELDS.get(key, _text(value)))
        )
    ]
    return urlencode(pairs)
