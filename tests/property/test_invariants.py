"""Invariants every estimate and every solver answer must hold, over random valid
scenarios from the whole schema (tests/property/fuzz_strategies.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given

import fuzz_checks as checks
from fuzz_strategies import gpu_ids, scenarios


@given(scenarios())
def test_components_are_whole_non_negative_and_add_up(data: dict[str, Any]) -> None:
    assert checks.sums(data) == []


@given(scenarios())
def test_more_batch_or_sequence_never_needs_less(data: dict[str, Any]) -> None:
    assert checks.monotone(data) == []


@given(scenarios())
def test_more_zero3_gpus_never_need_more_each(data: dict[str, Any]) -> None:
    assert checks.zero3_gpus(data) == []


@given(scenarios())
def test_fewer_bits_never_need_more(data: dict[str, Any]) -> None:
    assert checks.precision_order(data) == []


@given(scenarios())
def test_a_field_that_does_not_apply_changes_nothing(data: dict[str, Any]) -> None:
    assert checks.inactive(data) == []


@given(scenarios())
def test_to_dict_parses_back_to_the_same_estimate(data: dict[str, Any]) -> None:
    assert checks.round_trip(data) == []


@given(scenarios(), gpu_ids())
def test_solver_answers_fit_and_one_more_step_does_not(data: dict[str, Any], gpu: str) -> None:
    assert checks.solvers(data, gpu) == []


@given(scenarios(), gpu_ids())
def test_every_reply_builds_a_bounded_number_of_estimates(data: dict[str, Any], gpu: str) -> None:
    assert checks.reply_bound(data, gpu) == []
