"""nnmem against measured PyTorch memory, case by case, at fixed tolerances.

The measurements come from ``benchmarks/accuracy/measured.json`` (real PyTorch steps,
see that folder's README); no torch is needed here. Tolerances: weights, gradients,
optimizer state and KV cache within 0.5%; activations and the peak within 5%; the
median peak error over all cases at most 3%. Rows listed in ``known_gaps.json`` are
expected to miss (strict xfail: a row that starts passing must leave the list).
"""

from __future__ import annotations

import pytest

from benchmarks.accuracy.compare import (
    MEDIAN_PEAK_TOLERANCE,
    TABLE_JSON,
    TABLE_MD,
    TOLERANCE,
    Row,
    compare_all,
    compare_cuda,
    load_cases,
    load_known_gaps,
    markdown,
    median_peak_error,
    table_json,
)

ROWS = compare_all()
CUDA_ROWS = compare_cuda()
KNOWN_GAPS = load_known_gaps()


def row_param(row: Row) -> object:
    marks = []
    reason = KNOWN_GAPS.get(row.case, {}).get(row.metric)
    if reason is not None:
        marks.append(pytest.mark.xfail(reason=f"known gap: {reason}", strict=True))
    return pytest.param(row, id=f"{row.case}-{row.metric}", marks=marks)


def test_enough_measured_cases() -> None:
    cases = load_cases()
    assert len(cases) >= 30
    assert len({case["id"] for case in cases}) == len(cases)


@pytest.mark.parametrize("row", [row_param(r) for r in ROWS])
def test_estimate_within_tolerance(row: Row) -> None:
    assert row.estimated is not None, row.note
    assert row.within_tolerance, (
        f"{row.metric}: estimated {row.estimated:,} B, measured {row.measured:,} B "
        f"({row.error:+.2%}, tolerance ±{TOLERANCE[row.metric]:.1%})"
    )


def test_median_peak_error() -> None:
    """Every case must be expressible, and the median peak error at most 3%."""
    assert all(r.estimated is not None for r in ROWS if r.metric == "peak")
    median = median_peak_error(ROWS)
    assert median is not None
    assert median <= MEDIAN_PEAK_TOLERANCE


def test_known_gaps_name_real_rows() -> None:
    """A stale entry (a case or metric that no longer exists) would hide nothing."""
    rows = {(r.case, r.metric) for r in ROWS + CUDA_ROWS}
    listed = {(case, metric) for case, metrics in KNOWN_GAPS.items() for metric in metrics}
    assert listed <= rows, sorted(listed - rows)


def test_published_table_is_current() -> None:
    """accuracy.json and accuracy.md are what compare.py makes from today's nnmem."""
    assert TABLE_JSON.read_text(encoding="utf-8") == table_json(ROWS), (
        "run: python -m benchmarks.accuracy.compare --write"
    )
    assert TABLE_MD.read_text(encoding="utf-8") == markdown(ROWS, CUDA_ROWS)
