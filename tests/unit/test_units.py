"""Units and rounding at their boundaries (GB = 10^9 B, GiB = 2^30 B)."""

from __future__ import annotations

import pytest

from nnmem.units import human, percent, scaled


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
    ("part", "whole", "text"),
    [(1, 3, "33.3%"), (2, 3, "66.7%"), (1, 8, "12.5%"), (1, 1, "100.0%"), (0, 5, "0.0%")],
)
def test_percent(part: int, whole: int, text: str) -> None:
    assert percent(part, whole) == text
