"""Byte counts, counts, times and plain numbers as text. Estimates stay integer bytes
and exact fractions; units and rounding exist only here.

Decimal units (kB, MB, GB, TB = 10^3, 10^6, 10^9, 10^12 bytes) are the default, as GPU
vendors and ``torch.cuda.mem_get_info`` users quote them; binary units (KiB, MiB, GiB,
TiB = 2^10 ...) are what ``nvidia-smi`` prints. Rounding is half-up on the exact integer,
so CPython and Pyodide agree to the last digit.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import lru_cache

_DECIMAL_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
_BINARY_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


@lru_cache(maxsize=4096)  # an answer formats the same sizes as the answer before it, mostly
def scaled(n_bytes: int, unit_size: int, places: int) -> str:
    """Format ``n_bytes / unit_size`` with ``places`` decimals and thousands separators.

    >>> scaled(440_000_000, 10**6, 1)
    '440.0'
    >>> scaled(2_491_416_576, 10**9, 2)
    '2.49'
    """
    if isinstance(n_bytes, int) and isinstance(unit_size, int) and unit_size > 0 and places >= 0:
        return _scaled_int(n_bytes, unit_size, places)
    quantum = Decimal(1).scaleb(-places)
    value = (Decimal(n_bytes) / Decimal(unit_size)).quantize(quantum, rounding=ROUND_HALF_UP)
    return f"{value:,.{places}f}"


def _scaled_int(n: int, unit_size: int, places: int) -> str:
    """:func:`scaled` of integers in integer arithmetic, the same text to the last digit
    (Decimal's ROUND_HALF_UP rounds a half away from zero, so a negative count is the
    positive one with its sign; -0.0 keeps its sign, as Decimal keeps it): the page's
    import formats about eighty sizes and counts for its menus, and an answer's table as
    many again, where each Decimal division, quantize and format costs about 60 µs in
    Pyodide."""
    if n < 0:
        return f"-{_scaled_int(-n, unit_size, places)}"
    scale = 10**places
    # n / unit_size to `places` decimals, half up: floor((2 n 10^p + unit) / (2 unit)).
    whole, frac = divmod((2 * n * scale + unit_size) // (2 * unit_size), scale)
    return f"{whole:,}.{frac:0{places}d}" if places else f"{whole:,}"


def human(n_bytes: int, binary: bool = False) -> str:
    """Format a byte count in the largest unit that keeps it at least 1, to 3 significant-ish
    places: two decimals for GB and above, one for MB and below.

    >>> human(4_251_416_576)
    '4.25 GB'
    >>> human(999_999_999)
    '1.00 GB'
    >>> human(14 * 2**30, binary=True)
    '14.00 GiB'
    >>> human(512)
    '512 B'
    >>> human(-4_251_416_576)
    '-4.25 GB'
    """
    if n_bytes < 0:
        return f"-{human(-n_bytes, binary)}"
    if isinstance(n_bytes, int):
        return _human_int(n_bytes, binary)
    units = _BINARY_UNITS if binary else _DECIMAL_UNITS
    for index, (name, size) in enumerate(units):
        places = 2 if index < 2 else 1
        # Pick the unit by the rounded value, so 999,999,999 B reads 1.00 GB, not 1,000.0 MB.
        if Decimal(n_bytes) / Decimal(size) >= Decimal("1") - Decimal("0.5").scaleb(-places):
            return f"{scaled(n_bytes, size, places)} {name}"
    return f"{n_bytes:,} B"


@lru_cache(maxsize=4096)
def _human_int(n_bytes: int, binary: bool) -> str:
    """:func:`human` for a count of 0 or more in integer arithmetic, the same text to the
    last digit: an answer formats about sixty sizes, most of them the answer before's too,
    and Decimal arithmetic costs several times more in Pyodide."""
    units = _BINARY_UNITS if binary else _DECIMAL_UNITS
    for index, (name, size) in enumerate(units):
        places = 2 if index < 2 else 1
        scale = 10**places
        # n / size >= 1 - 0.5 / 10^places: the unit picked by the rounded value.
        if 2 * n_bytes * scale >= size * (2 * scale - 1):
            return f"{_scaled_int(n_bytes, size, places)} {name}"
    return f"{n_bytes:,} B"


def percent(part: int, whole: int) -> str:
    """Format ``part`` as a percentage of ``whole`` with one decimal.

    >>> percent(440, 4251)
    '10.4%'
    >>> percent(0, 0)
    '0.0%'
    """
    if whole == 0:
        return "0.0%"
    return f"{scaled(part * 100, whole, 1)}%"


def fixed(value: Fraction | int, places: int) -> str:
    """An exact number with ``places`` decimals, rounded half-up, with separators.

    >>> fixed(Fraction(2, 3), 1), fixed(Fraction(-5, 2), 0), fixed(1234567, 0)
    ('0.7', '-3', '1,234,567')
    """
    exact = Fraction(value)
    return scaled(exact.numerator, exact.denominator, places)


def plain(value: Fraction | int | float, places: int = 2, separators: bool = True) -> str:
    """A number to at most ``places`` decimals, trailing zeros dropped: ``4.5``, ``1,024``.

    >>> plain(Fraction(9, 2)), plain(1024), plain(0.5156), plain(8_030.261248, 6, False)
    ('4.5', '1,024', '0.52', '8030.261248')
    >>> plain(-0.004), plain(Fraction(-3, 2))
    ('0', '-1.5')
    """
    exact = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    text = fixed(exact, places)
    if not separators:
        text = text.replace(",", "")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def count(n: int, words: bool = False, million_places: int = 1) -> str:
    """A count of parameters or tokens: ``8.03B`` or ``110.0M``, ``8.03 billion`` in words.

    >>> count(8_030_261_248), count(109_482_240), count(109_482_240, million_places=0)
    ('8.03B', '109.5M', '109M')
    >>> count(6_738_415_616, words=True), count(-2_500_000)
    ('6.74 billion', '-2.5M')
    """
    if n < 0:
        return f"-{count(-n, words, million_places)}"
    # Pick the unit by the rounded value, so 999,999,999 reads 1.00B, not 1,000.0M.
    # n / 10^6 >= 1000 - 0.5 / 10^places, in integers: 2 n 10^places >= (2000 10^places - 1) 10^6.
    scale = 10**million_places
    if 2 * n * scale >= (2000 * scale - 1) * 10**6:
        value, unit = scaled(n, 10**9, 2), (" billion" if words else "B")
    else:
        value, unit = scaled(n, 10**6, million_places), (" million" if words else "M")
    return f"{value}{unit}"


def duration(seconds: Fraction | int) -> str:
    """A time in the unit that reads best: ms below 1 s, s up to 2 min, min up to 2 h,
    h up to 2 days, then days.

    >>> duration(Fraction(1, 8)), duration(90), duration(600), duration(7200), duration(10**6)
    ('125.0 ms', '90.00 s', '10.0 min', '2.0 h', '11.6 days')
    """
    s = Fraction(seconds)
    if s < 0:
        return f"-{duration(-s)}"
    if s < 1:
        return f"{fixed(s * 1000, 1)} ms"
    if s < 120:
        return f"{fixed(s, 2)} s"
    if s < 7200:
        return f"{fixed(s / 60, 1)} min"
    if s < 2 * 86400:
        return f"{fixed(s / 3600, 1)} h"
    return f"{fixed(s / 86400, 1)} days"
