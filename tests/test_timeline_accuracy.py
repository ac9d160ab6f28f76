"""Every accuracy case's timeline (nnmem.timeline.step_events) reaches each phase's
bytes to the byte, in its mark's span: the CUDA runs of measured_cuda.json and the CPU
runs of measured.json."""

from __future__ import annotations

import pytest

from benchmarks.accuracy import compare
from nnmem.estimate import estimate
from nnmem.scenario import Scenario, parse
from nnmem.timeline import span_peaks, step_events


def _accuracy_scenarios() -> list[tuple[str, Scenario]]:
    out = []
    for case in [
        *compare.load_cases(compare.MEASURED_CUDA),
        *compare.load_cases(compare.MEASURED),
    ]:
        try:
            out.append((case["id"], parse(compare.scenario_for(case))))
        except compare.Unsupported:
            continue
    return out


@pytest.mark.parametrize(("case", "scenario"), _accuracy_scenarios(), ids=lambda x: str(x)[:70])
def test_accuracy_case_peaks(case: str, scenario: Scenario) -> None:
    """Each phase's live peak along the events is the estimate's phase bytes."""
    gpu = compare.CUDA_GPU_ID if case.endswith(".cuda") else None
    peaks = span_peaks(step_events(scenario, gpu))
    phases = estimate(scenario, gpu).phases
    assert len(phases) > 1
    assert {p.name: peaks[p.name] for p in phases} == {p.name: p.bytes for p in phases}
