"""The caching-allocator model's streams against values worked out by hand.

``c10/cuda/CUDACachingAllocator.cpp``: "Allocations are associated with a stream. Once
freed, blocks can be re-allocated on the same stream, but not on any other stream."
``get_free_block`` searches the pool from the request's stream key and stops at another
stream's block; ``find_expandable_block`` walks only the stream's unmapped ranges and
makes a new ``ExpandableSegment(device, stream, ...)`` when none has room;
``release_cached_blocks`` frees the cached segments of every stream.
"""

from __future__ import annotations

import pytest

from nnmem.allocator import MIB, CachingAllocator, parse_alloc_conf, replay
from nnmem.errors import NnmemError


def on(stream: int, key: int, size: int) -> tuple[str, int, int, str, str, int]:
    """An allocation on ``stream``, as a timeline writes it."""
    return ("alloc", key, size, "gradients", f"block {key}", stream)


def test_a_block_freed_on_one_stream_is_not_reused_by_another() -> None:
    """30 MiB freed on stream 0, then 30 MiB on stream 2: the cached segment is stream
    0's, so a second 30 MiB segment is made (60 MiB). On stream 0 the request takes the
    cached one (30 MiB)."""
    freed = [("alloc", 0, 30 * MIB), ("free", 0)]
    assert replay([*freed, on(2, 1, 30 * MIB)]).reserved_peak == 60 * MIB
    assert replay([*freed, ("alloc", 1, 30 * MIB)]).reserved_peak == 30 * MIB


def test_a_stream_reuses_its_own_freed_block() -> None:
    """On stream 1: 30 MiB freed, then 20 MiB takes that block (best fit within the
    stream), split: 30 MiB reserved, one segment."""
    result = replay([on(1, 0, 30 * MIB), ("free", 0), on(1, 1, 20 * MIB)])
    assert result.reserved_peak == 30 * MIB
    assert [s.blocks for s in result.segments_at_end] == [((20 * MIB, True), (10 * MIB, False))]


def test_small_requests_of_two_streams_pack_into_separate_2_mib_segments() -> None:
    """512 B on stream 0 and 512 B on stream 1: each stream's small pool gets its own
    2 MiB segment (kSmallBuffer): 4 MiB."""
    assert replay([("alloc", 0, 512), on(1, 1, 512)]).reserved_peak == 4 * MIB


def test_expandable_segments_are_per_stream() -> None:
    """expandable_segments:True. 30 MiB on stream 0 maps two 20 MiB pages (40 MiB); freed,
    the pages stay mapped. 30 MiB on stream 1 cannot grow into stream 0's segment: its
    own segment maps two pages more (80 MiB). On stream 0 the same request reuses them."""
    config = parse_alloc_conf("expandable_segments:True")
    freed = [("alloc", 0, 30 * MIB), ("free", 0)]
    result = replay([*freed, on(1, 1, 30 * MIB)], config)
    assert result.reserved_peak == 80 * MIB
    assert len(result.segments_at_end) == 2
    assert replay([*freed, ("alloc", 1, 30 * MIB)], config).reserved_peak == 40 * MIB


def test_release_cached_blocks_frees_every_streams_segments() -> None:
    """emptyCache after a 30 MiB block freed on stream 2 and 3 MiB live on stream 0 (in a
    20 MiB segment): stream 2's whole 30 MiB segment goes, stream 0's split one stays."""
    allocator = CachingAllocator()
    allocator.free(allocator.malloc(30 * MIB, stream=2))
    allocator.malloc(3 * MIB)
    assert allocator.reserved == 50 * MIB
    allocator.empty_cache()
    assert allocator.reserved == 20 * MIB


def test_a_stream_that_is_not_a_whole_number_names_the_field() -> None:
    with pytest.raises(
        NnmemError, match=r"the stream must be a whole number \(got 'rs'\)"
    ) as caught:
        replay([("alloc", 0, 512, "gradients", "g", "rs")])
    assert caught.value.field == "events"
