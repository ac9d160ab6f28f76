"""The calculator's and the guide's step chart (nnmem.web.step_chart): the events it
draws are the ones nnmem.timeline.replay_step replays, so its peaks are the model's."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from nnmem.allocator import parse_alloc_conf
from nnmem.estimate import allocator_config, estimate
from nnmem.render.timeline_svg import timeline_svg, trace_step
from nnmem.scenario import parse
from nnmem.timeline import replay_step, replayed_events
from nnmem.web import handle
from nnmem.web.calculator import DEFAULT_FIELDS, DEFAULT_SCENARIO
from nnmem.web.step_chart import NO_TIMELINE, NOT_CUDA, step_chart_html

LLAMA_TRAINING = {
    "model": "preset",
    "preset": "llama-3.2-1b",
    "precision": "amp_bf16",
    "batch_size": 2,
    "seq_len": 512,
}
LLAMA_INFERENCE = {**LLAMA_TRAINING, "mode": "inference", "precision": "bf16"}


@pytest.mark.parametrize(
    ("fields", "gpu"),
    [
        (DEFAULT_SCENARIO, None),
        (LLAMA_TRAINING, "h100-sxm-80gb"),
        (LLAMA_INFERENCE, "rtx-4090"),
    ],
)
def test_chart_peaks_are_replay_steps(fields: dict[str, object], gpu: str | None) -> None:
    """Same events, same allocator: the chart's peaks are replay_step's, as configured
    (what the total takes under allocator_replay) and with expandable_segments:True."""
    scenario = parse(fields)
    trace = trace_step(replayed_events(scenario, gpu), allocator_config(scenario))
    plain = replay_step(scenario, gpu)
    expandable = replay_step(scenario, gpu, parse_alloc_conf("expandable_segments:True"))
    assert trace.reserved_peak == plain.reserved_peak > 0
    assert trace.allocated_peak == plain.allocated_peak > 0
    assert trace.compared_peak == expandable.reserved_peak
    assert max(trace.reserved) == trace.reserved_peak  # downsampling kept it


def test_chart_follows_the_scenarios_allocator_options() -> None:
    """With allocator_replay and expandable_segments set, the chart's reserved line is
    the one the total takes (its reserve row is reserved peak − tensors − the two cuBLAS
    workspaces), and the dashed line is the step without expandable segments."""
    fields = {**LLAMA_TRAINING, "allocator_replay": True, "expandable_segments": True}
    scenario = parse(fields)
    html = step_chart_html(scenario, "h100-sxm-80gb")
    on = replay_step(scenario, "h100-sxm-80gb", parse_alloc_conf("expandable_segments:True"))
    off = replay_step(scenario, "h100-sxm-80gb")
    assert f'data-reserved-peak="{on.reserved_peak}"' in html
    assert f'data-compared-peak="{off.reserved_peak}"' in html
    assert "Reserved without expandable_segments" in html
    result = estimate(scenario, "h100-sxm-80gb")
    reserve = result.component("allocator_reserve").bytes
    workspaces = 2 * 8 * 4096 * 1024  # CublasHandlePool.cpp: 4096 KiB × 8 on an H100
    assert reserve == on.reserved_peak - result.tensor_peak_bytes - workspaces


def test_no_chart_off_the_cuda_allocator() -> None:
    on_cpu = parse({**DEFAULT_SCENARIO, "device": "cpu"})
    assert step_chart_html(on_cpu) == NOT_CUDA
    assert step_chart_html(parse(DEFAULT_SCENARIO), "m2-max-64gb") == NOT_CUDA


def test_training_draws_the_load_and_two_steps() -> None:
    events = replayed_events(parse(DEFAULT_SCENARIO))
    marks = [e[1] for e in events if e[0] == "mark"]
    step = ["forward", "loss", "backward", "optimizer_step"]
    assert marks == ["load", *step, *step]


def test_serving_runtime_says_why_there_is_no_chart() -> None:
    served = parse({**LLAMA_INFERENCE, "runtime": "vllm"})
    assert replayed_events(served) == []
    assert step_chart_html(served) == NO_TIMELINE


def test_reply_carries_the_chart_in_its_own_part() -> None:
    """The first two parts keep their speed: the chart comes on its own, in "chart",
    which the page asks for once the chart is in view."""

    def ask(part: str) -> dict[str, str]:
        request = {"fields": {**DEFAULT_FIELDS, "batch_size": "8"}, "part": part}
        html: dict[str, str] = json.loads(handle(json.dumps(request)))["html"]
        return html

    assert "timeline" not in ask("first")
    assert "timeline" not in ask("rest")
    chart = ask("chart")["timeline"]
    trace = trace_step(replayed_events(parse({**DEFAULT_SCENARIO, "batch_size": 8})))
    assert f'data-reserved-peak="{trace.reserved_peak}"' in chart
    assert re.search(r'<svg class="timeline"[^>]* role="img"', chart)


def test_example_chart_matches_golden(golden: Callable[[str, str], None]) -> None:
    trace = trace_step(replayed_events(parse(DEFAULT_SCENARIO)))
    golden("timeline_bert_base.svg", timeline_svg(trace))


def test_a_failed_replay_leaves_the_answer_standing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart is a view: a failure inside the replay becomes a sentence in its place,
    and the reply keeps its total."""
    from nnmem.web import step_chart

    def broken(*args: object) -> None:
        raise RuntimeError("segment table full")

    monkeypatch.setattr(step_chart, "trace_step", broken)
    monkeypatch.setattr(step_chart, "_last", None)  # no trace kept from another test
    reply = json.loads(handle(json.dumps({"fields": DEFAULT_FIELDS})))
    assert reply["ok"] is True
    assert reply["html"]["timeline"] == (
        '<p class="timeline-none">The allocator model could not replay this step '
        "(segment table full); the total above does not depend on it.</p>"
    )


def test_a_step_that_cannot_fit_the_card_is_charted_whole() -> None:
    """Llama 3.2 1B in AMP at batch 64 needs far more than an 8 GB card: bounded by the
    card, the replay would stop at the failing request and draw a flat line at the card's
    size; the chart draws the whole step instead, the unbounded replay's peaks."""
    scenario = parse({**LLAMA_TRAINING, "batch_size": 64})
    gpu = "rtx-4060"
    whole = replay_step(scenario, gpu, allocator_config(scenario))
    html = step_chart_html(scenario, gpu)
    assert whole.reserved_peak > 8 * 10**9
    assert f'data-reserved-peak="{whole.reserved_peak}"' in html
