"""The one shape of every answer a page gets, whichever page asks.

``{"ok", "errors", "inactive", "fill", "html", "values"}``: ``errors`` lists each problem
as ``{"field", "message"}`` with ``field`` the control its ``loc`` names; ``inactive``
the controls that do not apply; ``fill`` values nnmem writes into controls; ``html`` the
fragments to paint by name; ``values`` the figures behind them as exact text. A page may
add its own keys (the calculator's totals and download); a failure inside nnmem adds
``fatal``, a plain message instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nnmem.errors import Problem, plain_fatal

MAX_MESSAGE = 400  # characters: every echo is already cut short; this is the backstop


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def reply(
    ok: bool,
    errors: Iterable[Problem] = (),
    html: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    inactive: Iterable[str] = (),
    fill: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A reply in the one shape, JSON-ready.

    >>> reply(False, [Problem(("config", "hidden_size"), "Hidden size must be ...")])
    ... # doctest: +NORMALIZE_WHITESPACE
    {'ok': False, 'errors': [{'field': 'config', 'message': 'Hidden size must be ...'}],
     'inactive': [], 'fill': {}, 'html': {}, 'values': {}}
    """
    return {
        "ok": ok,
        "errors": [{"field": p.key, "message": _short(p.message)} for p in errors],
        "inactive": list(inactive),
        "fill": dict(fill or {}),
        "html": dict(html or {}),
        "values": dict(values or {}),
        **extra,
    }


def fatal(error: Exception) -> dict[str, Any]:
    """The reply for a failure inside nnmem: a plain message, never a traceback."""
    return reply(False, fatal=plain_fatal(error))
