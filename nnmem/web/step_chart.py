"""The "Memory over the step" chart for a scenario: its events, replayed and drawn.

Used by the calculator (the ``timeline`` part of its reply) and by the PyTorch-memory
guide, so both draw the same picture from the same function.
"""

from __future__ import annotations

from nnmem import catalog, timeline
from nnmem.errors import NnmemError
from nnmem.estimate import allocator_config, replay_capacity
from nnmem.render.markup import escape
from nnmem.render.timeline_svg import StepTrace, timeline_html, trace_step
from nnmem.scenario import Device, Scenario

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


# The last scenario replayed: a change of view (units, the plot's axis) or the second
# part of a reply redraws its trace instead of replaying the step again.
_last: tuple[tuple[Scenario, str | None], StepTrace | None] | None = None


def _trace(scenario: Scenario, gpu_id: str | None) -> StepTrace | None:
    """The scenario's step replayed as the total's replay replays it
    (:func:`nnmem.timeline.replayed_events`), or None where it has no step (a serving
    runtime)."""
    global _last
    key = (scenario, gpu_id)
    if _last is None or _last[0] != key:
        events = timeline.replayed_events(scenario, gpu_id)
        config, capacity = allocator_config(scenario), replay_capacity(scenario, gpu_id)
        _last = (key, trace_step(events, config, capacity) if events else None)
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
