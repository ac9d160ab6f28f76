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

import base64
import json
import re
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from nnmem.errors import NnmemError
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


# --- the fragment: texts too long for a query, compressed -----------------------------------

# Characters a link's fragment may take: far above any real config.json or layer list
# compressed, and below what browsers and chat apps keep of an address. The page says so,
# with Download JSON as the way to share more, rather than writing a link that breaks.
MAX_FRAGMENT = 64_000


def pack(text: str) -> str:
    """Text as raw deflate (RFC 1951) in unpadded base64url (RFC 4648 §5): what the page's
    ``CompressionStream("deflate-raw")`` writes into a link's fragment.

    >>> pack("{}")
    'q64FAA'
    >>> unpack(pack('{"hidden_size": 4096}'))
    '{"hidden_size": 4096}'
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(text.encode()) + compressor.flush()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unpack(packed: str, field: str = "compare", what: str = "comparison") -> str:
    """The text :func:`pack` wrote, or the problem naming ``field``.

    >>> unpack("not packed!")
    Traceback (most recent call last):
    ...
    nnmem.errors.NnmemError: The link's comparison could not be read: it is not base64url \
text. Open the link as it was shared.
    """
    what = f"The link's {what} could not be read"
    again = "Open the link as it was shared."
    if len(packed) > MAX_FRAGMENT or not re.fullmatch(r"[A-Za-z0-9_-]*", packed):
        raise NnmemError.single(field, f"{what}: it is not base64url text. {again}")
    try:
        data = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
        inflater = zlib.decompressobj(-15)
        # A bomb stops at the textarea's limit instead of filling the memory.
        raw = inflater.decompress(data, 4 * MAX_FRAGMENT * 16)
        return raw.decode()
    except (ValueError, zlib.error) as error:
        raise NnmemError.single(field, f"{what}: {error}. {again}") from None
