"""Every accuracy case's timeline (nnmem.timeline.step_events) reaches each phase's
bytes to the byte, in its mark's span: the CUDA runs of measured_cuda.json and the CPU
runs of measured.json."""

from __future__ import annotations

import pytest

from benchmarks.accuracy import compare, timeline_replay
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


# The replayed timeline's device total against what the H200 held (measured_cuda.json,
# ``python -m benchmarks.accuracy.timeline_replay``): within 5%, except these, each held
# to its own figure.
WIDER = {
    # −6.0%: the run builds the model on the GPU (``_from_config`` under
    # ``torch.device``), so post_init makes the untied lm_head weight (501 MiB) before
    # tie_weights frees it, and the segment stays cached; the timeline loads the model as
    # from_pretrained does, tied from the start.
    "llama-3.2-1b.infer.bf16.sdpa.b1.ctx2048": 0.065,
    # −6.8% and −13.2%: cuDNN's workspaces, and the input gradients in flight through
    # backward, which the timeline holds as one piece.
    "resnet50.train.amp-bf16.sgd-momentum.conv.b32.img224": 0.075,
    "resnet50.train.fp32.sgd-momentum.conv.b32.img224": 0.14,
}


@pytest.mark.parametrize(
    "case", compare.load_cases(compare.MEASURED_CUDA), ids=lambda c: c["id"].removesuffix(".cuda")
)
def test_replayed_device_total(case: dict[str, object]) -> None:
    """The replayed reserved peak + context is within its bound of the GPU's total."""
    row = timeline_replay.compare_case(case)
    assert abs(row["total_error"]) <= WIDER.get(row["id"], timeline_replay.WITHIN)
