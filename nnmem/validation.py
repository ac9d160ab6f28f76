"""Reading typed values from JSON or form strings, with messages that name the field.

A field spec states a key, the label users see and what is allowed; reading a raw value
gives the typed value or a :class:`~nnmem.errors.Problem` whose message names the field,
says what is allowed and echoes what was given: ``Batch size must be a whole number from
1 to 1,000,000 (got 0).``
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Generic, TypeVar

from nnmem.errors import NnmemError, Problem

E = TypeVar("E", bound=StrEnum)

_GROUPED_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")
_MAX_ECHO = 24
_MAX_TEXT = 64
_KNOWN_TEXTS = 256


K = TypeVar("K")
V = TypeVar("V")


def _remembered(known: dict[K, V], key: K, make: Callable[[K], V]) -> V:
    """``make(key)``, kept in ``known``, which is emptied once it holds _KNOWN_TEXTS."""
    found = known.get(key)
    if found is None:
        if len(known) >= _KNOWN_TEXTS:
            known.clear()
        found = known[key] = make(key)
    return found


def shown(raw: object) -> str:
    """The bad value as a message echoes it: numbers bare, text quoted, both cut short.

    >>> shown("abc"), shown(" 2.5 "), shown(True), shown("x" * 40)
    ('"abc"', '2.5', 'true', '"xxxxxxxxxxxxxxxxxxxxxxx…"')
    """
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        text, quoted = repr(raw), False
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            quoted = not Decimal(text).is_finite()
        except InvalidOperation:
            quoted = True
    else:  # JSON true, null, lists and objects, as JSON writes them
        text, quoted = json.dumps(raw, default=str), False
    if len(text) > _MAX_ECHO:
        text = text[: _MAX_ECHO - 1] + "…"
    return f'"{text}"' if quoted else text


def _missing(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


@dataclass(frozen=True)
class NumberSpec:
    """A numeric key with its label and allowed range."""

    key: str
    label: str
    low: Decimal
    high: Decimal
    whole: bool
    allowed: str
    # Unit letters the text may end with ("7B"), each with what it multiplies by.
    suffixes: tuple[tuple[str, Decimal], ...] = ()

    def bad(self, raw: object) -> Problem:
        """The problem for a value outside what is allowed."""
        return Problem(self.key, f"{self.label} must be {self.allowed} (got {shown(raw)}).", raw)

    def read(self, raw: object) -> Decimal | Problem:
        """A JSON number or numeric string as a Decimal in range, or what is wrong."""
        if type(raw) is not str:
            return self._read(raw)
        # A page's fields are text, and each request repeats all but the one being typed:
        # the answers (immutable) are kept by text, a few hundred at most.
        return _remembered(self._known, raw, self._read)

    @cached_property
    def _known(self) -> dict[str, Decimal | Problem]:
        return {}

    def _read(self, raw: object) -> Decimal | Problem:
        if _missing(raw):
            return Problem(self.key, f"{self.label} is required: enter {self.allowed}.")
        if isinstance(raw, bool):
            return self.bad(raw)
        if isinstance(raw, int):
            number = Decimal(raw)
        elif isinstance(raw, float):
            if not math.isfinite(raw):
                return self.bad(raw)
            # repr is the shortest decimal that round-trips, so 124.439808 stays exact.
            number = Decimal(repr(raw))
        elif isinstance(raw, str) and len(raw) <= _MAX_TEXT:
            text, scale = self._unit(raw.strip())
            if _GROUPED_THOUSANDS.fullmatch(text):
                text = text.replace(",", "")
            try:
                number = Decimal(text) * scale
            except InvalidOperation:
                return self.bad(raw)
        else:
            return self.bad(raw)
        return self.check(number, raw)

    def _unit(self, text: str) -> tuple[str, Decimal]:
        """The number's text and the scale its unit letter gives ("7 B": "7", 1000)."""
        if len(text) > 1 and text[-1].isalpha():
            scale = dict(self.suffixes).get(text[-1].lower())
            if scale is not None:
                return text[:-1].rstrip(), scale
        return text, Decimal(1)

    def check(self, value: Decimal | int, raw: object = None) -> Decimal | Problem:
        """``value`` if it is in range, else the problem, echoing ``raw`` if given."""
        if raw is not None or type(value) is not int:
            return self._check(value, raw)
        # Every scenario checks its settings again, and the solvers build dozens that
        # differ in one: a whole number's answer is kept (immutable) as a text's is.
        return _remembered(self._checked, value, lambda whole: self._check(whole, None))

    @cached_property
    def _checked(self) -> dict[int, Decimal | Problem]:
        return {}

    def _check(self, value: Decimal | int, raw: object) -> Decimal | Problem:
        number = Decimal(value)
        if not number.is_finite():
            return self.bad(value if raw is None else raw)
        if (self.whole and number != number.to_integral_value()) or not (
            self.low <= number <= self.high
        ):
            return self.bad(value if raw is None else raw)
        return number


def whole(key: str, label: str, high: int, low: int = 1) -> NumberSpec:
    """A whole-number spec from ``low`` to ``high``."""
    allowed = f"a whole number from {low:,} to {high:,}"
    return NumberSpec(key, label, Decimal(low), Decimal(high), True, allowed)


@dataclass(frozen=True)
class ChoiceSpec(Generic[E]):
    """A key that takes one of an enum's values (case and spaces ignored)."""

    key: str
    label: str
    enum: type[E]
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def allowed(self) -> str:
        """The values, listed."""
        return "one of " + ", ".join(m.value for m in self.enum)

    @cached_property
    def _members(self) -> dict[str, E]:
        return {member.value: member for member in self.enum}

    @cached_property
    def _aliases(self) -> dict[str, str]:
        return dict(self.aliases)

    @cached_property
    def _texts(self) -> dict[str, E]:
        return {}

    def read(self, raw: object) -> E | Problem:
        """The enum member ``raw`` names, or what is wrong."""
        if _missing(raw):
            return Problem(self.key, f"{self.label} is required: choose {self.allowed}.")
        if isinstance(raw, str):
            member = self._texts.get(raw)
            if member is None:
                text = raw.strip().lower()
                member = self._members.get(self._aliases.get(text, text))
                if member is not None and len(self._texts) < _KNOWN_TEXTS:
                    self._texts[raw] = member  # the same text names the same member
            if member is not None:
                return member
        return Problem(self.key, f"{self.label} must be {self.allowed} (got {shown(raw)}).", raw)


@dataclass(frozen=True)
class FlagSpec:
    """A true/false key; forms send "true"/"false" or "on"/"off"."""

    key: str
    label: str

    def read(self, raw: object) -> bool | Problem:
        """The flag, or what is wrong."""
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in {"true", "on", "yes", "1"}:
            return True
        if isinstance(raw, str) and raw.strip().lower() in {"false", "off", "no", "0", ""}:
            return False
        return Problem(self.key, f"{self.label} must be true or false (got {shown(raw)}).", raw)


def raise_if(*problems: Problem | None) -> None:
    """Raise one NnmemError carrying every problem given, if any."""
    found = [p for p in problems if p is not None]
    if found:
        raise NnmemError(found)


# JSON nesting deeper than this is refused before parsing: CPython's parser recurses once
# per level, and inside Pyodide a deep enough file exhausts the JavaScript stack (a fatal
# error, not a RecursionError). Headers, indexes and configs nest three or four levels.
MAX_JSON_DEPTH = 64
# Six brackets a tensor ({"shape": [...], "data_offsets": [...]}): room for a million.
MAX_BRACKETS = 8_000_000
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_PAIR = re.compile(r"\[\]|\{\}")


def json_depth(text: str, stop: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``text`` nests arrays and objects, strings aside; counting stops past
    ``stop``.

    Innermost ``[]`` and ``{}`` pairs are removed a level at a time by the regular
    expression engine, so a long, shallow header costs a few passes; what is left after
    ``stop`` levels is walked until it nests past ``stop``.

    >>> json_depth('{"a": [1, {"b": "[[["}]}'), json_depth("[" * 10_000 + "]" * 10_000)
    (3, 66)
    >>> json_depth("[" * 64 + "]" * 64), json_depth("[" * 100 + "]" * 100) > 64
    (64, True)
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if len(brackets) > MAX_BRACKETS:
        return stop + 1  # not worth walking: no checkpoint file is shaped like this
    removed = 0  # levels of innermost pairs removed so far
    while removed <= stop:
        if not brackets:
            return removed
        inner = _PAIR.sub("", brackets)
        if inner == brackets:
            break  # unbalanced: walk what is left
        brackets = inner
        removed += 1
    depth = peak = 0
    for c in brackets:
        depth = depth + 1 if c in "[{" else max(depth - 1, 0)
        peak = max(peak, depth)
        if removed + peak > stop:
            break
    return removed + peak


def too_deep(text: str, field: str, label: str) -> Problem | None:
    """The problem with JSON text that nests deeper than 64 levels (or holds more than
    8,000,000 brackets), or None: such text is refused before it is parsed.

    >>> too_deep("[" * 100 + "]" * 100, "config", "Config").message
    'Config is not valid JSON: it is nested too deeply.'
    >>> too_deep('{"a": [1]}', "config", "Config") is None
    True
    """
    if json_depth(text) <= MAX_JSON_DEPTH:
        return None
    return Problem(field, f"{label} is not valid JSON: it is nested too deeply.")
