"""The caching-allocator model against values worked out by hand from its source.

Every expected value follows from the rules of ``c10/cuda/CUDACachingAllocator.cpp``
(PyTorch 2.11): ``round_size``, ``get_allocation_size``, ``get_free_block``,
``should_split``, ``free_block``/``try_merge_blocks``, ``alloc_block`` with
``release_available_cached_blocks`` and ``release_cached_blocks`` on failure, and the
expandable-segment path (``try_allocate_expandable_block``); and, for the options, of
``AllocatorConfig::parseArgs`` in ``c10/core/AllocatorConfig.cpp``.
"""

from __future__ import annotations

import pytest

from nnmem.allocator import (
    MIB,
    UNLIMITED,
    AllocatorConfig,
    CachingAllocator,
    allocation_size,
    parse_alloc_conf,
    replay,
    round_size,
    roundup_power2_next_division,
)
from nnmem.errors import NnmemError


def allocs(*sizes: int) -> list[tuple[str, int, int]]:
    """Allocation events with ids 0, 1, 2, ..."""
    return [("alloc", i, size) for i, size in enumerate(sizes)]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, 512),  # below kMinBlockSize: 512
        (1, 512),
        (512, 512),
        (513, 1024),  # next multiple of 512
        (3 * MIB + 1, 3 * MIB + 512),
    ],
)
def test_round_size_rounds_to_512(size: int, expected: int) -> None:
    assert round_size(size) == expected


def test_roundup_power2_divisions() -> None:
    """The source's own example: 1200 with 4 divisions lies in [1024, 2048) -> 1280."""
    assert roundup_power2_next_division(1200, 4) == 1280
    four = AllocatorConfig(roundup_power2_divisions=(4,) * 16)
    # 3 MiB + 1 lies in [2 MiB, 4 MiB); quarters of 2 MiB are 512 KiB apart -> 3.5 MiB.
    assert round_size(3 * MIB + 1, four) == 3 * MIB + 512 * 1024
    # A power of two stays itself.
    assert round_size(4 * MIB, four) == 4 * MIB
    # Only sizes above kMinBlockSize * divisions (2048 B) are rounded by divisions.
    assert round_size(1500, four) == 1536


@pytest.mark.parametrize(
    ("size", "segment"),
    [
        (512, 2 * MIB),  # small pool: kSmallBuffer
        (MIB, 2 * MIB),  # 1 MiB is still small (kSmallSize)
        (MIB + 512, 20 * MIB),  # large, below kMinLargeAlloc: kLargeBuffer
        (10 * MIB - 512, 20 * MIB),
        (10 * MIB, 10 * MIB),  # from kMinLargeAlloc on: rounded to kRoundLarge (2 MiB)
        (10 * MIB + 512, 12 * MIB),
    ],
)
def test_allocation_size(size: int, segment: int) -> None:
    assert allocation_size(size) == segment


def test_small_requests_pack_into_2_mib_segments() -> None:
    """4096 blocks of 512 B fill one 2 MiB segment exactly; the 4097th opens another."""
    result = replay(allocs(*[100] * 4096))
    assert (result.allocated_peak, result.reserved_peak) == (2 * MIB, 2 * MIB)
    result = replay(allocs(*[100] * 4097))
    assert result.reserved_peak == 4 * MIB


def test_requests_below_10_mib_share_a_20_mib_segment() -> None:
    """9 MiB + 9 MiB split one 20 MiB segment (11 MiB, then 2 MiB, remain: > 1 MiB)."""
    result = replay(allocs(9 * MIB, 9 * MIB))
    assert result.reserved_peak == 20 * MIB
    assert result.segments_at_end[0].blocks == ((9 * MIB, True), (9 * MIB, True), (2 * MIB, False))
    # The third no longer fits: a second segment.
    assert replay(allocs(9 * MIB, 9 * MIB, 9 * MIB)).reserved_peak == 40 * MIB


def test_large_block_is_not_split_when_1_mib_or_less_would_remain() -> None:
    """21 MiB gets a 22 MiB segment; the 1 MiB rest is not > kSmallSize, so the whole
    block is handed out and counted as allocated."""
    result = replay(allocs(21 * MIB))
    assert (result.allocated_peak, result.reserved_peak) == (22 * MIB, 22 * MIB)
    assert result.requested_peak == 21 * MIB


def test_best_fit_takes_the_smallest_block_that_fits() -> None:
    """Cached 30 and 40 MiB blocks: 25 MiB takes the 30 MiB one and splits off 5 MiB."""
    events = [*allocs(30 * MIB, 40 * MIB), ("free", 0), ("free", 1), ("alloc", 2, 25 * MIB)]
    result = replay(events)
    assert result.reserved_peak == 70 * MIB
    sizes = sorted(tuple(b for b in s.blocks) for s in result.segments_at_end)
    assert sizes == [((25 * MIB, True), (5 * MIB, False)), ((40 * MIB, False),)]


def test_freed_neighbours_merge() -> None:
    """Two 5 MiB blocks freed back into their 20 MiB segment merge with the 10 MiB rest,
    so an 18 MiB request needs no new segment."""
    events = [*allocs(5 * MIB, 5 * MIB), ("free", 1), ("free", 0), ("alloc", 2, 18 * MIB)]
    result = replay(events)
    assert result.reserved_peak == 20 * MIB
    assert result.segments_at_end[0].blocks == ((18 * MIB, True), (2 * MIB, False))


def fragmenting_events() -> list[tuple[str, int] | tuple[str, int, int]]:
    """A, B, C of 6 MiB in one segment; A and C freed; then 12 MiB."""
    return [*allocs(6 * MIB, 6 * MIB, 6 * MIB), ("free", 0), ("free", 2), ("alloc", 3, 12 * MIB)]


def test_fragmentation_forces_a_new_segment() -> None:
    """Free blocks of 6 MiB (A) and 8 MiB (C merged with the 2 MiB rest) cannot hold
    12 MiB: a new 12 MiB segment, 32 MiB reserved, 20 MiB of it allocated."""
    result = replay(fragmenting_events())
    assert result.reserved_peak == 32 * MIB
    assert result.allocated_end == 18 * MIB
    assert result.allocated_at_reserved_peak == 18 * MIB
    assert result.fragmentation_at_peak == pytest.approx(1 - 18 / 32)


def test_expandable_segments_map_20_mib_pages_at_the_end() -> None:
    """Same events with expandable_segments:True. A, B, C map one 20 MiB page; the
    12 MiB request starts in the free 8 MiB at the end of the mapped range and maps one
    more page for the other 4 MiB: 40 MiB reserved, one segment."""
    config = parse_alloc_conf("expandable_segments:True")
    result = replay(fragmenting_events(), config)
    assert result.reserved_peak == 40 * MIB
    assert len(result.segments_at_end) == 1
    blocks = result.segments_at_end[0].blocks
    assert blocks == (
        (6 * MIB, False),
        (6 * MIB, True),
        (12 * MIB, True),
        (16 * MIB, False),
    )


def test_expandable_segments_grow_where_a_new_segment_would_be_needed() -> None:
    """3 + 3 MiB map one 20 MiB page; 25 MiB more uses the 14 MiB free tail and maps
    one page more (40 MiB), where the plain allocator adds a 26 MiB segment (46 MiB)."""
    events = allocs(3 * MIB, 3 * MIB, 25 * MIB)
    assert replay(events, parse_alloc_conf("expandable_segments:True")).reserved_peak == 40 * MIB
    assert replay(events).reserved_peak == 46 * MIB


def test_max_split_size_keeps_small_requests_out_of_oversize_blocks() -> None:
    """max_split_size_mb:40. A cached 50 MiB block is oversize: a 30 MiB request may not
    take it (get_free_block), so it gets its own segment: 80 MiB. Without the option
    the 50 MiB block is split: 50 MiB."""
    events = [*allocs(50 * MIB), ("free", 0), ("alloc", 1, 30 * MIB)]
    assert replay(events, parse_alloc_conf("max_split_size_mb:40")).reserved_peak == 80 * MIB
    assert replay(events).reserved_peak == 50 * MIB


def test_oversize_request_takes_a_block_less_than_20_mib_larger_whole() -> None:
    """max_split_size_mb:40: a 45 MiB request takes a cached 50 MiB block (50 < 45 + 20)
    and does not split it (should_split: size >= max_split_size), so 50 MiB count as
    allocated. 41 MiB does not take a 62 MiB block (62 >= 41 + 20): new 42 MiB segment."""
    config = parse_alloc_conf("max_split_size_mb:40")
    result = replay([*allocs(50 * MIB), ("free", 0), ("alloc", 1, 45 * MIB)], config)
    assert (result.reserved_peak, result.allocated_end) == (50 * MIB, 50 * MIB)
    result = replay([*allocs(62 * MIB), ("free", 0), ("alloc", 1, 41 * MIB)], config)
    assert result.reserved_peak == 104 * MIB
    # max_non_split_rounding_mb widens that limit: 62 < 41 + 30.
    wider = parse_alloc_conf("max_split_size_mb:40,max_non_split_rounding_mb:30")
    result = replay([*allocs(62 * MIB), ("free", 0), ("alloc", 1, 41 * MIB)], wider)
    assert result.reserved_peak == 62 * MIB


def test_cache_is_released_and_retried_when_the_device_is_full() -> None:
    """Capacity 40 MiB: a cached 30 MiB segment cannot serve 35 MiB and a new 36 MiB
    segment does not fit beside it; release_cached_blocks frees it and the retry works."""
    events = [*allocs(30 * MIB), ("free", 0), ("alloc", 1, 35 * MIB)]
    allocator_result = replay(events, capacity=40 * MIB)
    assert allocator_result.out_of_memory_at is None
    assert allocator_result.alloc_retries == 1
    assert (allocator_result.reserved_peak, allocator_result.reserved_end) == (36 * MIB, 36 * MIB)
    # 30 MiB still in use: nothing to release, out of memory at event 2.
    full = replay([*allocs(30 * MIB), ("alloc", 1, 35 * MIB)], capacity=40 * MIB)
    assert full.out_of_memory_at == 1


def test_marks_and_timeline() -> None:
    """Each mark's span keeps its own peaks, starting from the totals at the mark."""
    events = [
        ("alloc", 0, 4 * MIB),
        ("mark", "step1"),
        ("alloc", 1, 4 * MIB),
        ("free", 1),
        ("mark", "step2"),
        ("free", 0),
    ]
    result = replay(events, timeline=True)
    assert result.peaks_by_mark == {"step1": (8 * MIB, 20 * MIB), "step2": (4 * MIB, 20 * MIB)}
    assert result.allocated == [4 * MIB, 4 * MIB, 8 * MIB, 4 * MIB, 4 * MIB, 0]
    assert result.reserved == [20 * MIB] * 6


def test_snapshot_at_the_reserved_peak() -> None:
    first = replay(fragmenting_events())
    again = replay(fragmenting_events(), snapshot_at=first.reserved_peak_event)
    assert [s.total_size for s in again.segments_at_reserved_peak] == [20 * MIB, 12 * MIB]


def test_empty_cache_returns_unsplit_segments() -> None:
    allocator = CachingAllocator()
    kept = allocator.malloc(3 * MIB)
    dropped = allocator.malloc(30 * MIB)
    allocator.free(dropped)
    allocator.empty_cache()
    assert allocator.reserved == 20 * MIB
    allocator.free(kept)
    allocator.empty_cache()
    assert allocator.reserved == 0


def test_parse_alloc_conf_reads_every_modelled_option() -> None:
    config = parse_alloc_conf(
        "max_split_size_mb:512, roundup_power2_divisions:[256:1,512:2,1024:4,>:8],"
        "expandable_segments:False,backend:native"
    )
    assert config.max_split_size == 512 * MIB
    assert config.expandable_segments is False
    # Indices are log2 of the MiB bound; '>' fills from the last named index onwards.
    assert config.roundup_power2_divisions == (1,) * 9 + (2,) + (8,) * 6
    assert parse_alloc_conf("").max_split_size == UNLIMITED
    assert parse_alloc_conf("roundup_power2_divisions:4").roundup_power2_divisions == (4,) * 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_split_size_mb:10", "max_split_size_mb must be at least 20 (got 10)."),
        ("max_split_size_mb:big", "max_split_size_mb needs a whole number (got 'big')."),
        ("expandable_segments:yes", "expandable_segments must be True or False (got 'yes')."),
        ("roundup_power2_divisions:3", "roundup_power2_divisions must be a power of 2 (got 3)."),
        ("backend:cudaMallocAsync", "only backend:native (the caching allocator) is modelled."),
        ("colour:blue", "unknown option 'colour'."),
        ("max_split_size_mb", "max_split_size_mb needs ':' and a value."),
    ],
)
def test_parse_alloc_conf_names_the_field(text: str, message: str) -> None:
    with pytest.raises(NnmemError) as caught:
        parse_alloc_conf(text)
    assert caught.value.field == "alloc_conf"
    assert str(caught.value) == f"PYTORCH_CUDA_ALLOC_CONF {text!r}: {message}"


def test_unknown_event_kind_names_the_field() -> None:
    with pytest.raises(NnmemError) as caught:
        replay([("grow", 1, 5)])
    assert caught.value.field == "events"


def test_an_expandable_segment_holds_a_request_beyond_the_device_when_no_capacity_is_set() -> None:
    """A step larger than the H200's 1 1/8 address space (a 1T-parameter model's 200 GiB
    tensor) still replays with no capacity: the segment's space grows to hold it, and
    20 MiB pages map exactly 200 GiB, then 5 GiB more. With an 80 GiB device it is out
    of memory at the first event, as ``try_allocate_expandable_block`` would fail."""
    conf = parse_alloc_conf("expandable_segments:True")
    big = replay([("alloc", 1, 200 * 2**30), ("alloc", 2, 5 * 2**30)], conf)
    assert big.reserved_peak == 205 * 2**30
    assert big.out_of_memory_at is None
    capped = replay([("alloc", 1, 200 * 2**30)], conf, capacity=80 * 2**30)
    assert capped.out_of_memory_at == 0
    assert capped.reserved_peak == 0
