"""The step-over-time chart (nnmem.render.timeline_svg) on hand-made events.

The allocator's figures follow ``c10/cuda/CUDACachingAllocator.cpp`` as nnmem.allocator
models it: a request of at most 1 MiB takes a 2 MiB small-pool segment; a larger one
below 10 MiB a 20 MiB segment; 10 MiB and above a segment of its own rounded to 2 MiB;
a cached block is reused best-fit and split when more than 1 MiB would remain. With
``expandable_segments:True`` each pool has one segment that maps pages (2 MiB small,
20 MiB large) as the end of it grows.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.etree import ElementTree

import pytest

from nnmem.allocator import parse_alloc_conf
from nnmem.errors import NnmemError
from nnmem.render.timeline_svg import (
    MAX_POINTS,
    keep_indices,
    saving_text,
    timeline_html,
    timeline_svg,
    trace_step,
)

MiB = 2**20
SVG = "{http://www.w3.org/2000/svg}"

# Forward: weights (3 MiB: a 20 MiB segment), layer 1's activations (18 MiB, more than
# the 17 MiB left: an 18 MiB segment), layer 2's (1 MiB: a 2 MiB small segment).
# Backward: a 3 MiB gradient split from the 17 MiB remainder, the activations freed.
# Optimizer step: a 30 MiB temporary that no cached block holds: a 30 MiB segment.
EVENTS: list[tuple[object, ...]] = [
    ("mark", "forward"),
    ("alloc", "w", 3 * MiB, "weights", "weights"),
    ("alloc", "a1", 18 * MiB, "activations", "layer 1"),
    ("alloc", "a2", 1 * MiB, "activations", "layer 2"),
    ("mark", "backward"),
    ("alloc", "g", 3 * MiB, "gradients", "layer 2 gradient"),
    ("free", "a2"),
    ("free", "a1"),
    ("mark", "optimizer_step"),
    ("alloc", "t", 30 * MiB, "temporaries", "foreach step"),
    ("free", "t"),
]
TRACE = trace_step(EVENTS)


def test_lines_follow_the_allocator_by_hand() -> None:
    """Reserved: 20, + 18, + 2 (small pool), then the 30 MiB segment: 70 MiB, kept after
    the free (the cache). Allocated: 3, 21, 22, 25, 24, 6, 36, 6 MiB."""
    assert TRACE.indices == tuple(range(11))
    assert [r // MiB for r in TRACE.reserved] == [0, 20, 38, 40, 40, 40, 40, 40, 40, 70, 70]
    assert [a // MiB for a in TRACE.allocated] == [0, 3, 21, 22, 22, 25, 24, 6, 6, 36, 6]
    assert TRACE.reserved_peak == 70 * MiB
    assert TRACE.allocated_peak == 36 * MiB


def test_expandable_segments_by_hand() -> None:
    """Expandable: the large pool maps 20 MiB pages as it grows: 3 MiB maps 20; 3 + 18 =
    21 MiB maps 40; the small pool maps 2; the gradient fits the mapped 40; the 30 MiB
    temporary goes after the gradient (24 + 30 = 54 MiB: 60 mapped), so 60 + 2 = 62 MiB
    at the peak, 8 MiB below the 70 of fixed segments."""
    assert [r // MiB for r in TRACE.compared] == [0, 20, 40, 42, 42, 42, 42, 42, 42, 62, 62]
    assert TRACE.compared_peak == 62 * MiB
    assert TRACE.saving == 8 * MiB
    assert saving_text(TRACE, binary=True) == (
        "expandable_segments:True would reserve 8.0 MiB less at the peak: 62.0 MiB "
        "instead of 70.0 MiB."
    )


def test_configured_expandable_compares_without_it() -> None:
    """Replayed as configured with expandable_segments:True, the reserved line is the
    62 MiB one and the dashed line the 70 MiB of fixed segments: the same 8 MiB."""
    trace = trace_step(EVENTS, parse_alloc_conf("expandable_segments:True"))
    assert (trace.reserved_peak, trace.compared_peak) == (62 * MiB, 70 * MiB)
    assert trace.saving == 8 * MiB
    assert saving_text(trace, binary=True) == (
        "expandable_segments:True reserves 8.0 MiB less at the peak than without it: "
        "62.0 MiB instead of 70.0 MiB."
    )
    assert "Reserved without expandable_segments" in timeline_html(trace)


def test_stacks_add_up_each_component() -> None:
    assert TRACE.components == ("weights", "gradients", "activations", "temporaries")
    assert TRACE.stacks[3] == (3 * MiB, 0, 19 * MiB, 0)
    assert TRACE.stacks[5] == (3 * MiB, 3 * MiB, 19 * MiB, 0)
    assert TRACE.stacks[9] == (3 * MiB, 3 * MiB, 0, 30 * MiB)
    assert TRACE.stacks[10] == (3 * MiB, 3 * MiB, 0, 0)


def test_peak_is_named_by_its_phase_and_allocation() -> None:
    assert TRACE.phases == (("forward", 0), ("backward", 4), ("optimizer_step", 8))
    assert (TRACE.peak_index, TRACE.peak_phase, TRACE.peak_label) == (
        9,
        "optimizer_step",
        "foreach step",
    )


def _svg() -> ElementTree.Element:
    return ElementTree.fromstring(timeline_svg(TRACE, binary=True))


def test_svg_places_the_peak_and_its_label() -> None:
    """The plot area is 338 units wide from x = 52 and 216 high down to y = 250; 11
    events, so event 9 starts at 52 + 338 × 9 / 11 = 328.5. The axis tops at 100 MiB
    (70 × 1.2 = 84 in steps of 20), so 70 MiB sits at 250 − 216 × 70 / 100 = 98.8."""
    root = _svg()
    assert root.get("role") == "img"
    assert root.findtext(f"{SVG}title") == "Memory over the step"
    desc = root.findtext(f"{SVG}desc") or ""
    assert "Reserved memory peaks at 70.0 MiB (optimizer step, foreach step)" in desc
    assert "8.0 MiB less" in desc
    dot = root.find(f"{SVG}circle[@class='tl-peak']")
    assert dot is not None
    assert (dot.get("cx"), dot.get("cy")) == ("328.5", "98.8")
    label = root.find(f"{SVG}text[@class='tl-peak-label']")
    assert label is not None
    assert [t.text for t in label] == ["Peak 70.0 MiB reserved", "optimizer step, foreach step"]


def test_svg_reserved_line_and_phase_bands() -> None:
    """Reserved steps: 0 MiB to event 1 (x = 82.7, y = 250 − 216 × 20 / 100 = 206.8), 38
    MiB at event 2 (113.5, 167.9), 40 at event 3 (144.2, 163.6), 70 at event 9 (98.8),
    held to the end.
    Phase lines at events 0, 4 and 8 (52, 174.9, 297.8); the backward band is shaded."""
    root = _svg()
    reserved = root.find(f"{SVG}path[@class='tl-reserved']")
    assert reserved is not None
    assert reserved.get("d") == "M52,250H82.7V206.8H113.5V167.9H144.2V163.6H328.5V98.8H390"
    lines = [e.get("x1") for e in root.iter(f"{SVG}line") if e.get("class") == "tl-phase"]
    assert lines == ["52", "174.9", "297.8"]
    band = root.find(f"{SVG}rect[@class='tl-band']")
    assert band is not None
    assert (band.get("x"), band.get("width")) == ("174.9", "122.9")
    labels = [e.text for e in root.iter(f"{SVG}text") if e.get("class") == "tl-phase-label"]
    # "Optimizer step" needs 14 × 13 × 0.6 + 6 = 115.2 units, more than its 92.2: "Opt"
    assert labels == ["Forward", "Backward", "Opt"]
    areas = [e.get("data-key") for e in root.iter(f"{SVG}path") if "tl-area" in e.get("class", "")]
    assert areas == ["temporaries", "activations", "gradients", "weights"]  # top first


def test_timeline_matches_golden(golden: Callable[[str, str], None]) -> None:
    golden("timeline_hand_events.svg", timeline_svg(TRACE, binary=True))
    golden("timeline_hand_events.html", timeline_html(TRACE))


def test_downsampling_keeps_every_bucket_max_and_the_peak() -> None:
    """20,000 events: 10,000 allocations of 2 to 9 KiB each freed at once (a sawtooth on
    the small pool) with one 50 MiB allocation at event 13,337; at most MAX_POINTS + 2
    moments are kept, and the drawn lines reach both peaks."""
    events: list[tuple[object, ...]] = [("mark", "forward")]
    for i in range(10_000):
        size = 50 * MiB if len(events) == 13_337 else (2 + i % 8) * 1024
        events += [("alloc", i, size, "activations", f"op {i}"), ("free", i)]
    trace = trace_step(events)
    assert trace.count == 20_001
    assert len(trace.indices) <= MAX_POINTS + 2
    assert 13_337 in trace.indices
    assert trace.peak_index == 13_337
    assert max(trace.reserved) == trace.reserved_peak == 50 * MiB + 2 * MiB
    assert max(trace.allocated) == trace.allocated_peak == 50 * MiB


def test_keep_indices_keeps_each_buckets_max() -> None:
    """1,020 values in 240 // 4 = 60 buckets of 17: a spike anywhere in each is kept."""
    values = [0] * 1020
    spikes = [17 * b + (b * 7) % 17 for b in range(60)]
    for i, at in enumerate(spikes):
        values[at] = 100 + i
    kept = keep_indices([values])
    assert set(spikes) <= set(kept)
    assert len(kept) <= MAX_POINTS + 2


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([("free", 1)], "event 0 frees 1, not live."),
        ([("alloc", 1, -5, "weights", "w")], "event 0: size must be bytes >= 0."),
        ([("resize", 1)], "event 0 is not an alloc, free or mark."),
    ],
)
def test_bad_events_name_the_field(events: list[tuple[object, ...]], message: str) -> None:
    with pytest.raises(NnmemError) as raised:
        trace_step(events)
    assert [(p.key, p.message) for p in raised.value.problems] == [("events", message)]
