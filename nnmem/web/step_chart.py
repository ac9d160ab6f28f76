"""The "Memory over the step" chart for a scenario: its events, replayed and drawn.

Used by the calculator (the ``timeline`` part of its reply) and by the PyTorch-memory
guide, so both draw the same picture from the same function.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from html import escape

from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.render.timeline_svg import timeline_html, trace_step
from nnmem.result import Estimate
from nnmem.scenario import Runtime, Scenario
from nnmem.terms import Term


def phase_events(result: Estimate) -> list[tuple[object, ...]]:
    """PHASE-LEVEL STAND-IN for the step's op-by-op timeline: each phase of ``result`` as
    one mark, then a free for each term of the phase before that this one no longer holds
    and an alloc for each term it adds (one alloc per term), so the live total at each
    mark's end is that phase's peak to the byte.

    >>> from nnmem.scenario import parse
    >>> events = phase_events(estimate(parse({"params_millions": 10, "mode": "inference"})))
    >>> [e[0] for e in events], events[1][3]
    (['mark', 'alloc', 'alloc'], 'weights')
    """
    events: list[tuple[object, ...]] = []
    live: Counter[Term] = Counter()
    keys: dict[Term, list[int]] = {}
    made = 0
    for phase in result.phases:
        events.append(("mark", phase.name))
        wanted = Counter(phase.terms)
        for term, count in (live - wanted).items():
            for _ in range(count):
                events.append(("free", keys[term].pop()))
        for term, count in (wanted - live).items():
            for _ in range(count):
                keys.setdefault(term, []).append(made)
                events.append(("alloc", made, term.bytes, term.key, term.label))
                made += 1
        live = wanted
    return events


def step_events_of(scenario: Scenario, gpu_id: str | None = None) -> Sequence[Sequence[object]]:
    """The scenario's step as alloc, free and mark events."""
    return phase_events(estimate(scenario, gpu_id))


def step_chart_html(
    scenario: Scenario,
    gpu_id: str | None = None,
    binary: bool = False,
    id_prefix: str = "timeline",
) -> str:
    """The chart, its legend and the ``expandable_segments`` sentence, or why there is none."""
    if scenario.runtime.engine is not Runtime.TRANSFORMERS:
        return (
            '<p class="timeline-none">The step is drawn for PyTorch runs (training, and '
            "inference with transformers); vLLM and llama.cpp manage their memory "
            "themselves.</p>"
        )
    try:
        trace = trace_step(step_events_of(scenario, gpu_id))
    except NnmemError as error:
        message = "; ".join(p.message for p in error.problems)
        return f'<p class="timeline-none">No timeline for this scenario: {escape(message)}</p>'
    return timeline_html(trace, binary, id_prefix)
