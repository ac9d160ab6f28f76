"""The "Memory over the step" chart for a scenario: its events, replayed and drawn.

Used by the calculator (the ``timeline`` part of its reply) and by the PyTorch-memory
guide, so both draw the same picture from the same function.
"""

from __future__ import annotations

from html import escape

from nnmem import catalog, timeline
from nnmem.errors import NnmemError
from nnmem.estimate import allocator_config
from nnmem.render.timeline_svg import StepTrace, timeline_html, trace_step
from nnmem.scenario import Device, Mode, Scenario

NO_TIMELINE = (
    '<p class="timeline-none">vLLM and llama.cpp plan their memory once, when they start, '
    "rather than allocating it op by op: there is no step to draw. Pick transformers as "
    "the runtime to see one.</p>"
)
NOT_CUDA = (
    '<p class="timeline-none">The step is replayed through PyTorch\'s CUDA caching '
    "allocator (the same on ROCm), which the CPU and Apple's and Intel's GPUs do not "
    "use.</p>"
)


def step_chart_events(scenario: Scenario, gpu_id: str | None = None) -> list[timeline.Event]:
    """The events :func:`nnmem.timeline.replay_step` replays, so the chart's reserved
    peak is the model's: the load, then two training steps (the second finds the first
    one's cached segments, as every later step does) or one inference pass, with the
    cuBLAS workspaces; none for a serving runtime's static plan.

    >>> from nnmem.scenario import GenericModel
    >>> events = step_chart_events(Scenario(GenericModel(1_000_000, 64, 2), batch_size=1))
    >>> [e[1] for e in events if e[0] == "mark"][:3]
    ['load', 'forward', 'loss']
    >>> [e[3] for e in events if e[0] == "alloc"][:3]
    ['weights', 'cublas_workspace', 'activations']
    """
    phases = timeline._phases(scenario)
    if not phases:
        return []
    steps = 2 if scenario.mode is Mode.TRAINING else 1
    events = timeline._walk(scenario, phases, steps)
    return timeline.with_workspaces(events, timeline.cublas_workspace_bytes(gpu_id))


# The last scenario replayed: a change of view (units, the plot's axis) or the second
# part of a reply redraws its trace instead of replaying the step again.
_last: tuple[tuple[Scenario, str | None], StepTrace | None] | None = None


def _trace(scenario: Scenario, gpu_id: str | None) -> StepTrace | None:
    """The scenario's step replayed, or None where it has no step (a serving runtime)."""
    global _last
    key = (scenario, gpu_id)
    if _last is None or _last[0] != key:
        events = step_chart_events(scenario, gpu_id)
        _last = (key, trace_step(events, allocator_config(scenario)) if events else None)
    return _last[1]


def step_chart_html(
    scenario: Scenario,
    gpu_id: str | None = None,
    binary: bool = False,
    id_prefix: str = "timeline",
) -> str:
    """The chart, its legend and the ``expandable_segments`` sentence, or why there is none.

    The replay takes the scenario's allocator options (``expandable_segments``,
    ``max_split_size_mb``, ``roundup_power2_divisions``); the dashed line has
    ``expandable_segments`` the other way.
    """
    gpu = catalog.gpu(gpu_id or "")
    if scenario.device is not Device.CUDA or (gpu and gpu.vendor not in ("nvidia", "amd")):
        return NOT_CUDA
    try:
        trace = _trace(scenario, gpu_id)
        if trace is None:
            return NO_TIMELINE
    except NnmemError as error:
        message = "; ".join(p.message for p in error.problems)
        return f'<p class="timeline-none">No timeline for this scenario: {escape(message)}</p>'
    except Exception as error:  # the chart is a view: the rest of the answer still stands
        why = " ".join(str(error).split())[:200]
        return (
            '<p class="timeline-none">The allocator model could not replay this step'
            f"{f' ({escape(why)})' if why else ''}; the total above does not depend on it.</p>"
        )
    return timeline_html(trace, binary, id_prefix)
