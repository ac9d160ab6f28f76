"""The step over time as SVG: memory after every allocation and free, as the allocator sees it.

The events are the step in execution order, as :func:`nnmem.timeline.step_events` gives
them: ``("mark", phase)`` where a phase starts, ``("alloc", key, size, component, label)``
and ``("free", key)``. :func:`trace_step` replays them through the caching-allocator model
(:mod:`nnmem.allocator`) twice, as configured and with ``expandable_segments`` switched, and
keeps a bounded number of moments; :func:`timeline_svg` draws them: the live tensors
stacked by component, the allocated and reserved lines over them, the phases as bands and
the reserved peak labelled with its phase and the allocation that reached it.

A 3 MiB request gets a 20 MiB segment; 18 MiB, more than its 17 MiB remainder, a
segment of its own (``get_allocation_size``):

>>> MiB = 2**20
>>> trace = trace_step([
...     ("mark", "forward"),
...     ("alloc", "w", 3 * MiB, "weights", "weights"),
...     ("alloc", "a", 18 * MiB, "activations", "layer 1"),
...     ("mark", "backward"),
...     ("free", "a"),
... ])
>>> trace.reserved_peak // MiB, trace.allocated_peak // MiB, trace.peak_label
(38, 21, 'layer 1')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from nnmem.allocator import AllocatorConfig, replay_needed
from nnmem.errors import NnmemError
from nnmem.render.markup import escape
from nnmem.render.svg import _nice_step, _tick_text, label_box
from nnmem.result import COMPONENTS, PHASE_LABELS
from nnmem.units import human

# A phone shows the 400-unit viewBox about 350 px wide, so the text stays near 12 px, as
# in the other charts (nnmem.render.svg).
_WIDTH = 400
_HEIGHT = 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 10, 34, 30  # the phase names sit in the top margin
_FONT = 13
_LABEL_LINE = 15
# At most this many moments are drawn. Each bucket of the step keeps the moments where
# each line is highest (and where the allocated line is lowest), so every peak that is
# the highest of its stretch is drawn and the reserved peak never drops out.
MAX_POINTS = 240
_PER_BUCKET = 4
_MORE_LABELS = {"load": "Loading", "wrap": "FSDP wrap"}
_SHORT = {
    "wrap": "Wrap",
    "load": "Load",
    "forward": "Fwd",
    "backward": "Bwd",
    "optimizer_step": "Opt",
    "prefill": "Pre",
    "decode": "Dec",
}


def phase_label(name: str) -> str:
    """A phase's display name: ``Backward``, ``Optimizer step``."""
    return PHASE_LABELS.get(name) or _MORE_LABELS.get(name) or name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class StepTrace:
    """The step replayed: the moments to draw and what they show.

    ``indices`` are the kept events (in order, the first always 0); ``allocated``,
    ``reserved`` and ``compared`` are the allocator's totals after each kept event
    (``compared``: replayed with ``expandable_segments`` the other way from the
    configured ``expandable``), ``stacks`` the live
    tensor bytes per component in ``components`` after it. ``phases`` are (name, first
    event) pairs.
    """

    count: int
    indices: tuple[int, ...]
    components: tuple[str, ...]
    stacks: tuple[tuple[int, ...], ...]
    allocated: tuple[int, ...]
    reserved: tuple[int, ...]
    compared: tuple[int, ...]
    phases: tuple[tuple[str, int], ...]
    allocated_peak: int
    reserved_peak: int
    compared_peak: int
    peak_index: int  # the event after which reserved first reaches its peak
    peak_phase: str
    peak_label: str
    expandable: bool = False  # the configured setting; ``compared`` has the other

    @property
    def saving(self) -> int:
        """What ``expandable_segments:True`` saves at the reserved peak (negative: costs)."""
        if self.expandable:
            return self.compared_peak - self.reserved_peak
        return self.reserved_peak - self.compared_peak


def keep_indices(series: Sequence[Sequence[int]], max_points: int = MAX_POINTS) -> list[int]:
    """The moments to draw: all of them, or per bucket each series' highest (first on a
    tie) and the first series' lowest, with the first and last moment.

    >>> keep_indices([[0, 5, 1, 1, 7, 2, 0, 3]], 8)
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> keep_indices([[0, 5, 1, 1, 7, 2, 0, 3, 9, 4]], 8)  # two buckets of five
    [0, 4, 6, 8, 9]
    """
    n = len(series[0]) if series else 0
    if n <= max_points:
        return list(range(n))
    buckets = max(1, max_points // _PER_BUCKET)
    size = math.ceil(n / buckets)
    kept = {0, n - 1}
    for start in range(0, n, size):
        stop = min(n, start + size)
        for k, values in enumerate(series):
            window = values[start:stop]
            top = max(window)
            kept.add(start + window.index(top))
            if k == 0:
                kept.add(start + window.index(min(window)))
    return sorted(kept)


def _plain_events(
    events: Iterable[Sequence[object]],
) -> tuple[list[tuple[object, ...]], list[str]]:
    """The events with whole-number keys, as the allocator model takes them, and each
    event's label ("" but for an alloc)."""
    numbers: dict[object, int] = {}
    plain: list[tuple[object, ...]] = []
    labels: list[str] = []
    for index, event in enumerate(events):
        kind = event[0] if event else None
        if kind == "alloc" and len(event) >= 3:
            key, size = event[1], event[2]
            if not isinstance(size, int) or size < 0:
                raise NnmemError.single("events", f"event {index}: size must be bytes >= 0.")
            numbers[key] = index  # unique: a freed key may come back
            plain.append(("alloc", index, size, *event[3:]))
            labels.append(str(event[4]) if len(event) > 4 else "")
        elif kind == "free" and len(event) >= 2:
            if event[1] not in numbers:
                raise NnmemError.single("events", f"event {index} frees {event[1]!r}, not live.")
            plain.append(("free", numbers.pop(event[1])))
            labels.append("")
        elif kind == "mark" and len(event) >= 2:
            plain.append(("mark", str(event[1])))
            labels.append("")
        else:
            raise NnmemError.single("events", f"event {index} is not an alloc, free or mark.")
    return plain, labels


def trace_step(
    events: Iterable[Sequence[object]],
    config: AllocatorConfig | None = None,
    capacity: int | None = None,
    max_points: int = MAX_POINTS,
) -> StepTrace:
    """Replay the step's events as configured and with ``expandable_segments`` the other
    way (on where it is off, off where it is on), on a device whose allocator may reserve
    at most ``capacity`` bytes (unbounded when None), as the total's replay does.

    Reserved memory comes from :func:`nnmem.allocator.replay`; the stacks add up the
    sizes each component's allocations asked for, so the gap between their top and the
    allocated line is the 512-byte rounding and the unsplit remainders of blocks.
    """
    plain, labels = _plain_events(events)
    config = config or AllocatorConfig()
    first = replay_needed(plain, config, capacity, timeline=True)
    flipped = replace(config, expandable_segments=not config.expandable_segments)
    other = replay_needed(plain, flipped, capacity, timeline=True)
    n = len(plain)
    kept = keep_indices([first.reserved, first.allocated, other.reserved], max_points)
    keys = {str(e[3]) if len(e) > 3 else "temporaries" for e in plain if e[0] == "alloc"}
    components = tuple(k for k in (*COMPONENTS, *sorted(keys - COMPONENTS.keys())) if k in keys)
    slot = {k: i for i, k in enumerate(components)}
    live = [0] * len(components)
    owner: dict[object, tuple[int, int]] = {}
    stacks = []
    phases: list[tuple[str, int]] = []
    want = iter(kept)
    next_kept = next(want, -1)
    phase = ""
    peak_phase = ""
    for index, event in enumerate(plain):
        if event[0] == "alloc":
            size = event[2]
            assert isinstance(size, int)
            where = slot[str(event[3]) if len(event) > 3 else "temporaries"]
            owner[event[1]] = (where, size)
            live[where] += size
        elif event[0] == "free":
            where, size = owner.pop(event[1])
            live[where] -= size
        else:
            phase = str(event[1])
            if not phases or phases[-1][0] != phase:
                phases.append((phase, index))
        if index == first.reserved_peak_event:
            peak_phase = phase
        if index == next_kept:
            stacks.append(tuple(live))
            next_kept = next(want, -1)
    peak = max(first.reserved_peak_event, 0)
    return StepTrace(
        count=n,
        indices=tuple(kept),
        components=components,
        stacks=tuple(stacks),
        allocated=tuple(first.allocated[i] for i in kept),
        reserved=tuple(first.reserved[i] for i in kept),
        compared=tuple(other.reserved[i] for i in kept),
        phases=tuple(phases),
        allocated_peak=first.allocated_peak,
        reserved_peak=first.reserved_peak,
        compared_peak=other.reserved_peak,
        peak_index=peak,
        peak_phase=peak_phase,
        peak_label=labels[peak] if labels else "",
        expandable=config.expandable_segments,
    )


def saving_text(trace: StepTrace, binary: bool = False) -> str:
    """What ``expandable_segments:True`` changes at the reserved peak, in one sentence.

    A freed 25 MiB block (a 26 MiB segment) cannot hold 30 MiB, so a second segment
    comes; an expandable segment maps 20 MiB pages, and the 40 MiB the first request
    mapped hold the second.

    >>> MiB = 2**20
    >>> events = [("alloc", 1, 25 * MiB), ("free", 1), ("alloc", 2, 30 * MiB)]
    >>> saving_text(trace_step(events), binary=True)
    'expandable_segments:True would reserve 16.0 MiB less at the peak: 40.0 MiB instead \
of 56.0 MiB.'
    """
    on, off = trace.reserved_peak, trace.compared_peak
    if not trace.expandable:
        on, off = off, on
    verb, than = ("reserves", " than without it") if trace.expandable else ("would reserve", "")
    if trace.saving == 0:
        return f"expandable_segments:True {verb} the same at the peak{than}, {human(on, binary)}."
    how = "less" if trace.saving > 0 else "more"
    return (
        f"expandable_segments:True {verb} {human(abs(trace.saving), binary)} {how} at the "
        f"peak{than}: {human(on, binary)} instead of {human(off, binary)}."
    )


def _num(value: float) -> str:
    return f"{round(value, 1):g}"


def _step_path(xs: Sequence[float], ys: Sequence[float], end: float, base: float | None) -> str:
    """A step line through (xs, ys), each value held until the next x and the last until
    ``end``; closed down to ``base`` as an area when one is given. Unchanged values add
    nothing, so a flat component costs a few characters."""
    parts = [f"M{_num(xs[0])},{_num(base if base is not None else ys[0])}"]
    if base is not None:
        parts.append(f"V{_num(ys[0])}")
    last = _num(ys[0])
    for x, y in zip(xs[1:], ys[1:], strict=True):
        text = _num(y)
        if text != last:
            parts.append(f"H{_num(x)}V{text}")
            last = text
    parts.append(f"H{_num(end)}")
    if base is not None:
        parts.append(f"V{_num(base)}Z")
    return "".join(parts)


def timeline_svg(trace: StepTrace, binary: bool = False, id_prefix: str = "timeline") -> str:
    """The step as an inline SVG: stacked components, allocated and reserved lines, the
    ``expandable_segments:True`` reserved line dashed (class ``tl-expandable``, which the
    page shows or hides), phase bands and the reserved peak labelled.

    Colours come from the page's CSS: the components reuse the breakdown chart's
    ``bar-<key>`` classes, so both charts give a component the same colour in light and
    dark mode.
    """
    width, height = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    base = _TOP + height
    n = max(trace.count, 1)
    big = 2**30 if binary else 10**9
    unit, size = ("GiB", big) if binary else ("GB", big)
    y_max = max(trace.reserved_peak, trace.compared_peak, trace.allocated_peak, 1)
    if y_max < big:
        unit, size = ("MiB", 2**20) if binary else ("MB", 10**6)
    # A fifth above the peak: room for its two-line label over the reserved line, which
    # stays at the peak from there on (the cache keeps what it reserved).
    step = _nice_step(y_max * 1.2 / size, 5)
    y_top = math.ceil(y_max * 1.2 / size / step) * step * size

    def px(i: int) -> float:
        return _LEFT + width * i / n

    def py(value: float) -> float:
        return base - height * value / y_top

    parts: list[str] = []
    for k, (name, start) in enumerate(trace.phases):
        stop = trace.phases[k + 1][1] if k + 1 < len(trace.phases) else n
        x0, x1 = px(start), px(stop)
        label = phase_label(name)
        if k % 2:
            parts.append(
                f'<rect class="tl-band" x="{_num(x0)}" y="{_TOP}" width="{_num(x1 - x0)}" '
                f'height="{height}" fill="currentColor" fill-opacity="0.07"/>'
            )
        parts.append(
            f'<line class="tl-phase" x1="{_num(x0)}" x2="{_num(x0)}" y1="{_TOP - 16}" '
            f'y2="{base}" stroke="currentColor" stroke-opacity="0.35"/>'
        )
        # The name where it fits between this phase's start and the next one's, or its
        # short form (the <desc> names every phase in full).
        for text in (label, _SHORT.get(name, "")):
            if text and len(text) * _FONT * 0.6 + 6 <= x1 - x0:
                parts.append(
                    f'<text class="tl-phase-label" x="{_num(x0 + 3)}" y="{_TOP - 5}">'
                    f"{escape(text)}</text>"
                )
                break
    ticks = round(y_top / size / step)
    for i in range(ticks + 1):
        y = py(i * step * size)
        parts.append(
            f'<line class="plot-grid" x1="{_LEFT}" x2="{_LEFT + width}" y1="{_num(y)}" '
            f'y2="{_num(y)}" stroke="currentColor" stroke-opacity="0.15"/>'
            f'<text class="plot-tick" x="{_LEFT - 5}" y="{_num(y + 4)}" text-anchor="end">'
            f"{_tick_text(i * step)}</text>"
        )
    xs = [px(i) for i in trace.indices]
    end = px(n)
    cumulative = [0] * len(trace.stacks)
    tops: list[list[int]] = []
    for c in range(len(trace.components)):
        cumulative = [s + stack[c] for s, stack in zip(cumulative, trace.stacks, strict=True)]
        tops.append(cumulative)
    # Drawn from the top of the stack down, each area to the baseline: the band a
    # component shows is what the one below it does not cover.
    for key, top in reversed(list(zip(trace.components, tops, strict=True))):
        if xs and any(top):
            parts.append(
                f'<path class="tl-area bar bar-{escape(key)}" data-key="{escape(key)}" '
                f'd="{_step_path(xs, [py(v) for v in top], end, base)}"/>'
            )
    if xs:
        for name, values, extra in (
            ("tl-allocated", trace.allocated, 'stroke-width="1.5"'),
            ("tl-expandable", trace.compared, 'stroke-width="2" stroke-dasharray="5 3"'),
            ("tl-reserved", trace.reserved, 'stroke-width="2.5"'),
        ):
            parts.append(
                f'<path class="{name}" d="{_step_path(xs, [py(v) for v in values], end, None)}" '
                f'fill="none" stroke="currentColor" {extra}/>'
            )
    parts.append(
        f'<line class="plot-axis" x1="{_LEFT}" x2="{_LEFT + width}" y1="{base}" y2="{base}" '
        'stroke="currentColor"/>'
        f'<text class="plot-label" x="{_num(_LEFT + width / 2)}" y="{_HEIGHT - 8}" '
        'text-anchor="middle">Allocations and frees, in the order the step runs them</text>'
        f'<text class="plot-label" transform="rotate(-90)" x="{_num(-(_TOP + height / 2))}" '
        f'y="14" text-anchor="middle">Memory ({unit})</text>'
    )
    parts.append(_peak_marker(trace, px(trace.peak_index), py(trace.reserved_peak), binary))
    return (
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-labelledby="{id_prefix}-title {id_prefix}-desc" fill="currentColor" '
        f'font-size="{_FONT}"><title id="{id_prefix}-title">Memory over the step</title>'
        f'<desc id="{id_prefix}-desc">{escape(describe_trace(trace, binary))}</desc>'
        f"{''.join(parts)}</svg>"
    )


def _peak_words(trace: StepTrace) -> str:
    """Where the reserved peak falls: ``backward, layer 3 gradient``."""
    phase = phase_label(trace.peak_phase).lower() if trace.peak_phase else ""
    return ", ".join(w for w in (phase, trace.peak_label) if w)


def _peak_marker(trace: StepTrace, x: float, y: float, binary: bool) -> str:
    """The dot on the reserved peak and its two-line label, kept inside the plot."""
    lines = [f"Peak {human(trace.reserved_peak, binary)} reserved"]
    # The allocation's name up to its gloss ("foreach step: one copy of ..."), cut to
    # the plot's width; the <desc> holds it whole.
    if words := _peak_words(trace).split(": ")[0]:
        lines.append(words[:40] + ("…" if len(words) > 40 else ""))
    first = max(_TOP + _FONT, y - 8 - _LABEL_LINE * (len(lines) - 1))
    anchor = "end" if x > _LEFT + (_WIDTH - _LEFT - _RIGHT) / 2 else "start"
    at = x - 6 if anchor == "end" else x + 6
    box = label_box(lines, at, first, anchor)
    if box[0] < _LEFT:
        at, anchor = float(_LEFT + 2), "start"
    elif box[2] > _WIDTH - _RIGHT:
        at, anchor = float(_WIDTH - _RIGHT - 2), "end"
    spans = "".join(
        f'<tspan x="{_num(at)}" y="{_num(first + i * _LABEL_LINE)}">{escape(text)}</tspan>'
        for i, text in enumerate(lines)
    )
    return (
        f'<circle class="tl-peak" cx="{_num(x)}" cy="{_num(y)}" r="4.5"/>'
        f'<text class="tl-peak-label" x="{_num(at)}" y="{_num(first)}" text-anchor="{anchor}" '
        f'paint-order="stroke" stroke-width="4" stroke-linejoin="round">{spans}</text>'
    )


def describe_trace(trace: StepTrace, binary: bool = False) -> str:
    """The chart in words, for its ``<desc>``."""
    phases = ", ".join(phase_label(name).lower() for name, _ in trace.phases)
    where = _peak_words(trace)
    text = (
        f"Reserved memory peaks at {human(trace.reserved_peak, binary)}"
        + (f" ({where})" if where else "")
        + f"; allocated memory peaks at {human(trace.allocated_peak, binary)}."
    )
    if phases:
        text += f" Phases in order: {phases}."
    labels = [COMPONENTS.get(k, k) for k in trace.components]
    if labels:
        text += f" Stacked under the lines: {', '.join(labels).lower()}."
    return f"{text} {saving_text(trace, binary)}"


def _swatch(cls: str, line: bool = False) -> str:
    """A legend's colour sample, painted by the same CSS classes as the chart."""
    dashes = ' stroke-dasharray="5 3"' if "expandable" in cls else ""
    shape = (
        f'<line class="{cls}" x1="1" x2="17" y1="6" y2="6" stroke="currentColor" '
        f'stroke-width="2.5"{dashes}/>'
        if line
        else f'<rect class="{cls}" x="1" y="1" width="16" height="10" rx="2"/>'
    )
    return (
        '<svg class="tl-swatch" viewBox="0 0 18 12" width="18" height="12" '
        f'aria-hidden="true" fill="currentColor">{shape}</svg>'
    )


def timeline_html(trace: StepTrace, binary: bool = False, id_prefix: str = "timeline") -> str:
    """The chart with its legend and the ``expandable_segments`` sentence.

    The figure carries the peaks as data attributes (bytes) for scripts and tests; the
    dashed line and the sentence have the class ``tl-expandable``, which the calculator
    shows only while its toggle is on.
    """
    items = [
        f"<li>{_swatch(f'bar bar-{escape(k)}')}{escape(COMPONENTS.get(k, k))}</li>"
        for k in trace.components
    ]
    items += [
        f"<li>{_swatch('tl-allocated', True)}Allocated (memory_allocated)</li>",
        f"<li>{_swatch('tl-reserved', True)}Reserved (memory_reserved)</li>",
        f'<li class="tl-expandable">{_swatch("tl-expandable", True)}'
        + (
            "Reserved without expandable_segments"
            if trace.expandable
            else "Reserved with expandable_segments:True"
        )
        + "</li>",
    ]
    return (
        f'<figure class="timeline-figure" data-reserved-peak="{trace.reserved_peak}" '
        f'data-allocated-peak="{trace.allocated_peak}" '
        f'data-compared-peak="{trace.compared_peak}" data-events="{trace.count}">'
        f"{timeline_svg(trace, binary, id_prefix)}"
        f'<figcaption><ul class="tl-legend">{"".join(items)}</ul></figcaption></figure>'
        f'<p class="tl-saving tl-expandable" data-saving="{trace.saving}">'
        f"{escape(saving_text(trace, binary))}</p>"
    )
