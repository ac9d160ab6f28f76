"""Terms: byte counts that carry their own formula, numbers and source.

A term's bytes are computed from the very factors its formula shows, so an explanation
can never disagree with its number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache


@dataclass(frozen=True)
class Term:
    """Some bytes, the component they belong to, and how they were worked out.

    ``formula`` uses symbols (``L × s × b × h × 34 B``); ``substituted`` is the same
    expression with the scenario's numbers.
    """

    key: str
    label: str
    bytes: int
    formula: str
    substituted: str
    source: str = ""

    def scaled(self, factor: Fraction, note: str) -> Term:
        """This term multiplied by ``factor`` (a sharding or parallel divisor), noted."""
        return Term(
            self.key,
            self.label,
            math.ceil(self.bytes * factor),
            f"{self.formula} {note}",
            f"{self.substituted} {note}",
            self.source,
        )


# Formulas repeat the same few byte sizes (4 B, 2 B, 0.5 B...) in every estimate.
@lru_cache(maxsize=256)
def bytes_text(size: Fraction | int) -> str:
    """A byte size as a formula shows it: ``4 B``, ``0.5 B``, ``4.127 B``."""
    size = Fraction(size)
    if size.denominator == 1:
        return f"{size.numerator:,} B"
    return f"{float(size):.6g} B"


def product(
    key: str,
    label: str,
    factors: Sequence[tuple[str, int]],
    bytes_each: Fraction | int,
    source: str = "",
) -> Term:
    """A term equal to the product of named factors times a byte size.

    >>> product("weights", "fp32 weights", [("P", 110_000_000)], 4).substituted
    '110,000,000 × 4 B'
    """
    count = math.prod(value for _, value in factors)
    size = Fraction(bytes_each)
    return Term(
        key=key,
        label=label,
        bytes=math.ceil(count * size),
        formula=" × ".join([*(symbol for symbol, _ in factors), bytes_text(size)]),
        substituted=" × ".join([*(f"{value:,}" for _, value in factors), bytes_text(size)]),
        source=source,
    )


def polynomial(
    key: str,
    label: str,
    common: Sequence[tuple[str, int]],
    parts: Sequence[tuple[str, int, Fraction | int]],
    source: str = "",
) -> Term:
    """``common × (c1·x1 + c2·x2 + …) B``: a shared product times a sum of weighted parts.

    Each part is (symbol, value, bytes per unit); a part with an empty symbol is a bare
    constant. Used for per-layer activation formulas such as
    ``L × s × b × (34·h + 5·a·s) B``.

    >>> t = polynomial("activations", "per layer", [("L", 2), ("s·b", 10)],
    ...                [("h", 8, 34), ("a·s", 3, 5)])
    >>> t.formula, t.substituted, t.bytes
    ('L × s·b × (34·h + 5·a·s) B', '2 × 10 × (34·8 + 5·3) B', 5740)
    """
    count = math.prod(value for _, value in common)
    # Whole numbers multiply as ints (far cheaper than Fractions, to the same value).
    total = sum(
        value * weight
        if type(value) is int and type(weight) is int
        else Fraction(value) * Fraction(weight)
        for _, value, weight in parts
    )

    def show(values: bool) -> str:
        pieces = []
        for symbol, value, weight in parts:
            factor = f"{value:,}" if values else symbol
            pieces.append(
                _coefficient(weight) if not symbol else f"{_coefficient(weight)}·{factor}"
            )
        return " + ".join(pieces)

    head = " × ".join(symbol for symbol, _ in common)
    head_values = " × ".join(f"{value:,}" for _, value in common)
    return Term(
        key=key,
        label=label,
        bytes=math.ceil(count * total),
        formula=f"{head} × ({show(False)}) B" if head else f"({show(False)}) B",
        substituted=f"{head_values} × ({show(True)}) B" if head else f"({show(True)}) B",
        source=source,
    )


@lru_cache(maxsize=1024)
def _coefficient(weight: Fraction | int) -> str:
    w = Fraction(weight)
    return str(w.numerator) if w.denominator == 1 else f"{float(w):g}"


def fixed(key: str, label: str, n_bytes: int, formula: str, source: str = "") -> Term:
    """A term whose size is a constant or computed elsewhere."""
    return Term(key, label, n_bytes, formula, f"{n_bytes:,} B", source)
