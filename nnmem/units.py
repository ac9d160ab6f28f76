"""Byte counts as text. Estimates stay integer bytes; units exist only here.

Decimal units (kB, MB, GB, TB = 10^3, 10^6, 10^9, 10^12 bytes) are the default, as GPU
vendors and ``torch.cuda.mem_get_info`` users quote them; binary units (KiB, MiB, GiB,
TiB = 2^10 ...) are what ``nvidia-smi`` prints. Rounding is half-up on the exact integer,
so CPython and Pyodide agree to the last digit.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_DECIMAL_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
_BINARY_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def scaled(n_bytes: int, unit_size: int, places: int) -> str:
    """Format ``n_bytes / unit_size`` with ``places`` decimals and thousands separators.

    >>> scaled(440_000_000, 10**6, 1)
    '440.0'
    >>> scaled(2_491_416_576, 10**9, 2)
    '2.49'
    """
    quantum = Decimal(1).scaleb(-places)
    value = (Decimal(n_bytes) / Decimal(unit_size)).quantize(quantum, rounding=ROUND_HALF_UP)
    return f"{value:,.{places}f}"


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
    """
    units = _BINARY_UNITS if binary else _DECIMAL_UNITS
    for index, (name, size) in enumerate(units):
        places = 2 if index < 2 else 1
        # Pick the unit by the rounded value, so 999,999,999 B reads 1.00 GB, not 1,000.0 MB.
        if Decimal(n_bytes) / Decimal(size) >= Decimal("1") - Decimal("0.5").scaleb(-places):
            return f"{scaled(n_bytes, size, places)} {name}"
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
