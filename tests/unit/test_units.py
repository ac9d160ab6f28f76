"""Units and rounding at their boundaries (GB = 10^9 B, GiB = 2^30 B)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from nnmem.units import count, duration, fixed, human, percent, plain, scaled


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (0, "0 B"),
        (500, "500 B"),
        (949, "949 B"),
        (950, "1.0 kB"),  # 0.95 kB rounds to 1.0 kB, so kB is the unit
        (949_949, "949.9 kB"),
        (950_000, "1.0 MB"),  # 0.95 MB rounds to 1.0 MB
        (440_000_000, "440.0 MB"),
        (994_999_999, "995.0 MB"),
        (995_000_000, "1.00 GB"),
        (999_999_999, "1.00 GB"),
        (4_251_416_576, "4.25 GB"),
        (14_000_000_000, "14.00 GB"),
        (994_999_999_999, "995.00 GB"),
        (995_000_000_000, "1.00 TB"),
        (1_234_567_000_000_000, "1,234.57 TB"),
    ],
)
def test_human_decimal(n_bytes: int, text: str) -> None:
    assert human(n_bytes) == text


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (972, "972 B"),  # 0.949 KiB would read 0.9 KiB
        (973, "1.0 KiB"),
        (2**20, "1.0 MiB"),
        (14 * 2**30, "14.00 GiB"),
        (13_000_000_000, "12.11 GiB"),  # 13e9 / 2^30 = 12.107...
        (2**40, "1.00 TiB"),
    ],
)
def test_human_binary(n_bytes: int, text: str) -> None:
    assert human(n_bytes, binary=True) == text


def test_scaled_rounds_half_up_on_exact_integers() -> None:
    """0.125 GB and 0.135 GB are exact: half-up gives 0.13 and 0.14 on both Pythons."""
    assert scaled(125_000_000, 10**9, 2) == "0.13"
    assert scaled(135_000_000, 10**9, 2) == "0.14"
    assert scaled(2_491_416_576, 10**6, 1) == "2,491.4"


@pytest.mark.parametrize(
    ("n", "unit", "places", "text"),
    [
        (5, 2, 0, "3"),  # 2.5: a half rounds up
        (-5, 2, 0, "-3"),  # -2.5: away from zero, as Decimal's ROUND_HALF_UP
        (-1, 100, 1, "-0.0"),  # -0.01 keeps its sign, as Decimal keeps it
        (0, 7, 2, "0.00"),
        (1_234_567, 1, 0, "1,234,567"),
        (2, 3, 6, "0.666667"),
        # 10^29 + 1: more digits than Decimal's context holds (28)
        (10**30 + 5, 10, 0, "100,000,000,000,000,000,000,000,000,001"),
    ],
)
def test_scaled_on_integers(n: int, unit: int, places: int, text: str) -> None:
    assert scaled(n, unit, places) == text


def test_scaled_on_integers_is_decimals_half_up() -> None:
    """The integer arithmetic gives Decimal's text (ROUND_HALF_UP, separators) for every
    numerator from -300 to 300 over the units and places the page uses."""
    from decimal import ROUND_HALF_UP, Decimal

    for unit in (1, 2, 3, 7, 8, 10, 16, 100, 1000):
        for places in (0, 1, 2, 3):
            quantum = Decimal(1).scaleb(-places)
            for n in range(-300, 301):
                exact = (Decimal(n) / Decimal(unit)).quantize(quantum, rounding=ROUND_HALF_UP)
                assert scaled(n, unit, places) == f"{exact:,.{places}f}", (n, unit, places)


@pytest.mark.parametrize(
    ("part", "whole", "text"),
    [(1, 3, "33.3%"), (2, 3, "66.7%"), (1, 8, "12.5%"), (1, 1, "100.0%"), (0, 5, "0.0%")],
)
def test_percent(part: int, whole: int, text: str) -> None:
    assert percent(part, whole) == text


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (-1, "-1 B"),
        (-949, "-949 B"),
        (-950, "-1.0 kB"),  # the same boundary as +950
        (-994_999_999, "-995.0 MB"),
        (-995_000_000, "-1.00 GB"),
        (-4_251_416_576, "-4.25 GB"),
    ],
)
def test_human_negative_mirrors_positive(n_bytes: int, text: str) -> None:
    """A shortfall (need minus budget) reads in the same unit as the same surplus."""
    assert human(n_bytes) == text
    assert human(-n_bytes) == text.removeprefix("-")


@pytest.mark.parametrize(
    ("n", "kwargs", "text"),
    [
        (0, {}, "0.0M"),
        (949_999, {}, "0.9M"),  # 0.949999M: half-up on the exact integer
        (950_000, {}, "1.0M"),
        (999_949_999, {}, "999.9M"),
        (999_950_000, {}, "1.00B"),  # 999.95M would read 1,000.0M
        (999_499_999, {"million_places": 0}, "999M"),
        (999_500_000, {"million_places": 0}, "1.00B"),  # 999.5M would read 1,000M
        (8_030_261_248, {}, "8.03B"),
        (1_234_567_000_000, {}, "1,234.57B"),
        (6_738_415_616, {"words": True}, "6.74 billion"),
        (109_482_240, {"words": True}, "109.5 million"),
        (-2_500_000, {}, "-2.5M"),
        (-8_030_261_248, {"words": True}, "-8.03 billion"),
    ],
)
def test_count_boundaries(n: int, kwargs: dict[str, Any], text: str) -> None:
    assert count(n, **kwargs) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (Fraction(0), "0.0 ms"),
        (Fraction(99_995, 100_000_000), "1.0 ms"),  # 0.99995 ms rounds half-up
        (Fraction(999, 1000), "999.0 ms"),
        (Fraction(1), "1.00 s"),
        (Fraction(119_999, 1000), "120.00 s"),  # below 2 min, in seconds
        (Fraction(120), "2.0 min"),
        (Fraction(7199), "120.0 min"),
        (Fraction(7200), "2.0 h"),
        (Fraction(2 * 86400 - 1), "48.0 h"),
        (Fraction(2 * 86400), "2.0 days"),
        (Fraction(-90), "-90.00 s"),
    ],
)
def test_duration_boundaries(seconds: Fraction, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        (Fraction(1, 8), 2, "0.13"),  # exact half rounds up, not to even
        (Fraction(-1, 8), 2, "-0.13"),  # and away from zero below it
        (Fraction(5, 2), 0, "3"),
        (Fraction(-5, 2), 0, "-3"),
        (42 * 10**21, 0, "42,000,000,000,000,000,000,000"),
    ],
)
def test_fixed_rounds_half_up(value: Fraction | int, places: int, text: str) -> None:
    assert fixed(value, places) == text


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        (Fraction(9, 2), 2, "4.5"),
        (1024, 2, "1,024"),
        (0.5156, 2, "0.52"),
        (0.004, 2, "0"),
        (-0.004, 2, "0"),  # no "-0"
        (Fraction(-3, 2), 2, "-1.5"),
        (100, 0, "100"),  # trailing zeros of a whole number stay
    ],
)
def test_plain_drops_trailing_zeros(value: Fraction | int | float, places: int, text: str) -> None:
    assert plain(value, places) == text
