"""A model of PyTorch's CUDA caching allocator, replaying alloc/free events.

The rules follow ``c10/cuda/CUDACachingAllocator.cpp`` (``DeviceCachingAllocator``) and
the option parser in ``c10/core/AllocatorConfig.cpp`` of PyTorch 2.11, the release the
accuracy suite measured on an H200. Every block belongs to the stream it was allocated
on ("Allocations are associated with a stream. Once freed, blocks can be re-allocated on
the same stream, but not on any other stream", the file's opening comment): an event may
name its stream, and without one it is the current stream, as in a training step without
side streams (autograd's backward reuses the forward op's stream).

What the model reproduces:

* ``round_size``: every request is rounded up to 512 B (``kMinBlockSize``), or to a
  ``roundup_power2_divisions`` step where that option is set.
* ``get_pool``: requests of at most 1 MiB (``kSmallSize``) go to the small pool, larger
  ones to the large pool.
* ``get_allocation_size``: a new small segment is 2 MiB (``kSmallBuffer``); a large
  request below 10 MiB (``kMinLargeAlloc``) gets a 20 MiB segment (``kLargeBuffer``);
  larger requests get a segment rounded up to 2 MiB (``kRoundLarge``).
* ``get_free_block``: best fit, the smallest cached block of the request's stream that
  is large enough (``BlockComparatorSize`` orders a pool by stream, then size, then
  address; the search stops at the first block of another stream), ties going to the
  lower address, with the oversize rules of ``max_split_size_mb``: a request
  below it never takes a block at or above it, and a request at or above it takes a
  block only if the block is less than ``max_non_split_rounding_mb`` (default 20 MiB)
  larger.
* ``should_split``: a block from the small pool, or from an expandable segment, is split
  when at least 512 B would remain; a large block only when the request is below
  ``max_split_size`` and more than 1 MiB would remain.
* ``free_block`` / ``try_merge_blocks``: a freed block merges with free neighbours of
  its own segment.
* ``malloc``'s fall-backs when a new segment does not fit the device:
  ``release_available_cached_blocks`` (frees oversize cached blocks, only with
  ``max_split_size_mb``), then ``release_cached_blocks`` (frees every cached segment
  that is not split) and one retry; after that, out of memory.
* ``expandable_segments:True``: one segment per pool whose physical pages (2 MiB in the
  small pool, 20 MiB in the large one) are mapped at the lowest free address as needed
  (``find_expandable_block``, ``map_block``, ``try_allocate_expandable_block``), with the
  best-fit walk that treats a free block before unmapped space as being as large as it
  can grow. Each stream has its own expandable segments: ``find_expandable_block``
  walks ``pool->unmapped`` from ``lower_bound`` of the stream's key while
  ``(*it)->stream == stream``, and makes a new ``ExpandableSegment(device, stream, ...)``
  when none has room.

A block used on another stream (``record_stream``) returns to its pool only once that
stream's work is done (``insert_events``, ``process_events``); a timeline places such a
free where the other stream's use ends.

``allocated`` counts the sizes of blocks in use (``stats.allocated_bytes``, what
``torch.cuda.memory_allocated()`` reports) and ``reserved`` the mapped segments
(``stats.reserved_bytes``, ``torch.cuda.memory_reserved()``).

>>> result = replay([("alloc", 1, 4), ("alloc", 2, 3 * 2**20), ("free", 1), ("free", 2)])
>>> result.allocated_peak, result.reserved_peak
(3146240, 23068672)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .errors import NnmemError

# Constants of c10/cuda/CUDACachingAllocator.cpp.
K_MIN_BLOCK_SIZE = 512  # all sizes are rounded to at least 512 bytes
K_SMALL_SIZE = 1048576  # largest "small" allocation is 1 MiB
K_SMALL_BUFFER = 2097152  # "small" allocations are packed in 2 MiB blocks
K_LARGE_BUFFER = 20971520  # "large" allocations may be packed in 20 MiB blocks
K_MIN_LARGE_ALLOC = 10485760  # allocations between 1 and 10 MiB may use kLargeBuffer
K_ROUND_LARGE = 2097152  # round up large allocations to 2 MiB
# c10/core/AllocatorConfig.cpp: 16 power-of-two intervals starting at 1 MiB.
K_ROUNDUP_POWER2_INTERVALS = 16
K_ROUNDUP_POWER2_START_LOG2 = 20
MIB = 1024 * 1024
UNLIMITED = 2**64 - 1  # std::numeric_limits<size_t>::max(), the default max_split_size
# The H200 the accuracy suite measured: cudaMemGetInfo's total, 150,109,880,320 B.
H200_TOTAL_BYTES = 150109880320

Event = tuple[str, int] | tuple[str, int, int]


@dataclass(frozen=True)
class AllocatorConfig:
    """The caching allocator's options, as ``PYTORCH_CUDA_ALLOC_CONF`` sets them.

    >>> AllocatorConfig().max_split_size == UNLIMITED
    True
    """

    max_split_size: int = UNLIMITED
    max_non_split_rounding_size: int = K_LARGE_BUFFER
    roundup_power2_divisions: tuple[int, ...] = (0,) * K_ROUNDUP_POWER2_INTERVALS
    expandable_segments: bool = False

    def divisions_for(self, size: int) -> int:
        """``AllocatorConfig::roundup_power2_divisions(size)``: the interval's setting.

        >>> AllocatorConfig(roundup_power2_divisions=(4,) * 16).divisions_for(3 * MIB)
        4
        """
        log_size = size.bit_length() - 1
        index = max(log_size - K_ROUNDUP_POWER2_START_LOG2, 0)
        return self.roundup_power2_divisions[min(index, K_ROUNDUP_POWER2_INTERVALS - 1)]


def _bad(text: str, why: str) -> NnmemError:
    return NnmemError.single("alloc_conf", f"PYTORCH_CUDA_ALLOC_CONF {text!r}: {why}")


def _is_power_of_2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _whole(text: str, token: str, name: str) -> int:
    if not token.isdigit():
        raise _bad(text, f"{name} needs a whole number (got {token!r}).")
    return int(token)


def parse_alloc_conf(text: str) -> AllocatorConfig:
    """Read a ``PYTORCH_CUDA_ALLOC_CONF`` string (``AllocatorConfig::parseArgs``).

    Options that change where blocks go are modelled: ``max_split_size_mb``,
    ``max_non_split_rounding_mb``, ``roundup_power2_divisions`` (one number or the
    ``[256:1,512:2,>:8]`` list form, sizes in MiB) and ``expandable_segments``.
    ``backend:native`` and the options that only concern pinned host memory or locking
    are accepted and change nothing here.

    >>> parse_alloc_conf("max_split_size_mb:128").max_split_size // MIB
    128
    >>> parse_alloc_conf("expandable_segments:True").expandable_segments
    True
    >>> d = parse_alloc_conf("roundup_power2_divisions:[256:1,512:2]").roundup_power2_divisions
    >>> d[0], d[8], d[9], d[10]
    (1, 1, 2, 0)
    >>> parse_alloc_conf("max_split_size_mb:4")
    Traceback (most recent call last):
    ...
    nnmem.errors.NnmemError: PYTORCH_CUDA_ALLOC_CONF 'max_split_size_mb:4': \
max_split_size_mb must be at least 20 (got 4).
    """
    tokens = _lex(text)
    max_split = UNLIMITED
    non_split = K_LARGE_BUFFER
    divisions = [0] * K_ROUNDUP_POWER2_INTERVALS
    expandable = False
    i = 0

    def value_after_colon() -> str:
        nonlocal i
        if i + 2 >= len(tokens) + 1 or i + 1 >= len(tokens) or tokens[i + 1] != ":":
            raise _bad(text, f"{tokens[i]} needs ':' and a value.")
        if i + 2 >= len(tokens):
            raise _bad(text, f"{tokens[i]} needs a value after ':'.")
        i += 2
        return tokens[i]

    while i < len(tokens):
        key = tokens[i]
        if key in ("max_split_size_mb", "max_non_split_rounding_mb"):
            mb = _whole(text, value_after_colon(), key)
            # parseMaxSplitSize: at least kLargeBuffer / 1 MiB = 20.
            if mb < K_LARGE_BUFFER // MIB:
                raise _bad(text, f"{key} must be at least {K_LARGE_BUFFER // MIB} (got {mb}).")
            size = min(mb, UNLIMITED // MIB) * MIB
            if key == "max_split_size_mb":
                max_split = size
            else:
                non_split = size
        elif key == "roundup_power2_divisions":
            if i + 2 < len(tokens) and tokens[i + 1] == ":" and tokens[i + 2] == "[":
                i += 2
                i = _parse_division_list(text, tokens, i, divisions)
            else:
                value = _whole(text, value_after_colon(), key)
                if not _is_power_of_2(value):
                    raise _bad(text, f"{key} must be a power of 2 (got {value}).")
                divisions = [value] * K_ROUNDUP_POWER2_INTERVALS
        elif key == "expandable_segments":
            flag = value_after_colon()
            if flag not in ("True", "False"):
                raise _bad(text, f"expandable_segments must be True or False (got {flag!r}).")
            expandable = flag == "True"
        elif key == "backend":
            if value_after_colon() != "native":
                raise _bad(text, "only backend:native (the caching allocator) is modelled.")
        elif key in (
            "release_lock_on_cudamalloc",
            "pinned_use_cuda_host_register",
            "pinned_num_register_threads",
            "pinned_use_background_threads",
        ):
            value_after_colon()
        elif key == "garbage_collection_threshold":
            raise _bad(
                text,
                "garbage_collection_threshold acts only under a per-process memory "
                "fraction, which is not modelled.",
            )
        else:
            raise _bad(text, f"unknown option {key!r}.")
        i += 1
        if i < len(tokens):
            if tokens[i] != ",":
                raise _bad(text, f"expected ',' before {tokens[i]!r}.")
            i += 1
    return AllocatorConfig(
        max_split_size=max_split,
        max_non_split_rounding_size=non_split,
        roundup_power2_divisions=tuple(divisions),
        expandable_segments=expandable,
    )


def _lex(text: str) -> list[str]:
    """``AllocatorConfig::lexArgs``: split on , : [ ] and drop spaces."""
    tokens: list[str] = []
    buf: list[str] = []
    for char in text:
        if char in ",:[]":
            if buf:
                tokens.append("".join(buf))
                buf = []
            tokens.append(char)
        elif char != " ":
            buf.append(char)
    if buf:
        tokens.append("".join(buf))
    return tokens


def _parse_division_list(text: str, tokens: list[str], i: int, divisions: list[int]) -> int:
    """``parseRoundUpPower2Divisions``' list form; returns the index of ``]``."""
    first = True
    last_index = 0
    i += 1
    while i < len(tokens) and tokens[i] != "]":
        interval = tokens[i]
        if i + 2 >= len(tokens) or tokens[i + 1] != ":":
            raise _bad(text, f"roundup_power2_divisions entry {interval!r} needs ':value'.")
        value = _whole(text, tokens[i + 2], "roundup_power2_divisions")
        if value != 0 and not _is_power_of_2(value):
            raise _bad(text, f"roundup_power2_divisions must be 0 or a power of 2 (got {value}).")
        if interval == ">":
            for k in range(last_index, K_ROUNDUP_POWER2_INTERVALS):
                divisions[k] = value
        else:
            mb = _whole(text, interval, "roundup_power2_divisions interval")
            if not _is_power_of_2(mb):
                raise _bad(text, f"roundup_power2_divisions intervals must be powers of 2 ({mb}).")
            index = min(mb.bit_length() - 1, K_ROUNDUP_POWER2_INTERVALS - 1)
            if first:
                for k in range(index):
                    divisions[k] = value
                first = False
            divisions[index] = value
            last_index = index
        i += 3
        if i < len(tokens) and tokens[i] == ",":
            i += 1
    if i >= len(tokens):
        raise _bad(text, "roundup_power2_divisions list needs a closing ']'.")
    return i


def roundup_power2_next_division(size: int, divisions: int) -> int:
    """``roundup_power2_next_division``: the next of ``divisions`` steps between powers of 2.

    >>> roundup_power2_next_division(1200, 4)
    1280
    """
    if _is_power_of_2(size):
        return size
    power2_floor = 1 << (size.bit_length() - 1)
    step = power2_floor >> (divisions.bit_length() - 1)
    if step == 0:
        return power2_floor << 1
    floor = size & ~(step - 1)
    return size if floor == size else floor + step


def round_size(size: int, config: AllocatorConfig | None = None) -> int:
    """``round_size``: the block size a request of ``size`` bytes gets.

    >>> round_size(1), round_size(513), round_size(3 * MIB + 1)
    (512, 1024, 3146240)
    """
    if size < K_MIN_BLOCK_SIZE:
        return K_MIN_BLOCK_SIZE
    divisions = config.divisions_for(size) if config is not None else 0
    if divisions > 1 and size > K_MIN_BLOCK_SIZE * divisions:
        return roundup_power2_next_division(size, divisions)
    return -(-size // K_MIN_BLOCK_SIZE) * K_MIN_BLOCK_SIZE


def allocation_size(size: int) -> int:
    """``get_allocation_size``: the segment ``cudaMalloc`` gets for a rounded request.

    >>> allocation_size(512), allocation_size(2 * MIB), allocation_size(11 * MIB + 1)
    (2097152, 20971520, 12582912)
    """
    if size <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if size < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return K_ROUND_LARGE * (-(-size // K_ROUND_LARGE))


class OutOfMemory(Exception):
    """A request the device cannot hold, even after the cache was released."""


class _Block:
    __slots__ = ("allocated", "mapped", "next", "prev", "ptr", "requested", "segment", "size")

    def __init__(self, ptr: int, size: int, segment: _Segment, mapped: bool = True) -> None:
        self.ptr = ptr
        self.size = size
        self.segment = segment
        self.allocated = False
        self.mapped = mapped
        self.requested = 0
        self.prev: _Block | None = None
        self.next: _Block | None = None

    def is_split(self) -> bool:
        return self.prev is not None or self.next is not None


class _Segment:
    """A cudaMalloc'd segment, or an expandable segment's reserved address range."""

    __slots__ = ("expandable", "first", "head_ptr", "page", "small", "stream")

    def __init__(
        self, small: bool, expandable: bool, head_ptr: int, page: int, stream: int = 0
    ) -> None:
        self.small = small
        self.stream = stream
        self.expandable = expandable
        self.head_ptr = head_ptr
        self.page = page  # expandable: the physical page size (2 or 20 MiB)
        self.first: _Block | None = None  # the block at the lowest address


class _Pool:
    """The part of a BlockPool that holds one stream's blocks: free blocks ordered by
    (size, address), and unmapped ranges (``BlockComparatorSize`` compares the stream
    first, so a stream's blocks are a contiguous run of the pool's set)."""

    def __init__(self, small: bool, stream: int = 0) -> None:
        self.small = small
        self.stream = stream
        self.keys: list[tuple[int, int]] = []
        self.by_ptr: dict[int, _Block] = {}
        self.unmapped: dict[int, _Block] = {}

    def insert(self, block: _Block) -> None:
        bisect.insort(self.keys, (block.size, block.ptr))
        self.by_ptr[block.ptr] = block

    def erase(self, block: _Block) -> None:
        key = (block.size, block.ptr)
        index = bisect.bisect_left(self.keys, key)
        if index < len(self.keys) and self.keys[index] == key:
            del self.keys[index]
            del self.by_ptr[block.ptr]

    def contains(self, block: _Block) -> bool:
        return self.by_ptr.get(block.ptr) is block


@dataclass(frozen=True)
class SegmentInfo:
    """One segment as ``torch.cuda.memory_snapshot()`` lists it: size and its blocks."""

    address: int
    pool: Literal["small", "large"]
    expandable: bool
    total_size: int
    allocated_size: int
    blocks: tuple[tuple[int, bool], ...]  # (size, allocated) in address order


@dataclass
class ReplayResult:
    """What a replay produced: peaks, the state at the reserved peak, the timeline."""

    allocated_peak: int = 0
    reserved_peak: int = 0
    requested_peak: int = 0
    allocated_at_reserved_peak: int = 0
    reserved_peak_event: int = -1
    segments_at_reserved_peak: tuple[SegmentInfo, ...] = ()  # with snapshot_at
    segments_at_end: tuple[SegmentInfo, ...] = ()
    allocated_end: int = 0
    reserved_end: int = 0
    segment_allocs: int = 0
    alloc_retries: int = 0
    out_of_memory_at: int | None = None
    allocated: list[int] = field(default_factory=list)
    reserved: list[int] = field(default_factory=list)
    peaks_by_mark: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def fragmentation_at_peak(self) -> float:
        """Share of the reserved peak that was cached but unallocated at that moment."""
        if not self.reserved_peak:
            return 0.0
        return 1 - self.allocated_at_reserved_peak / self.reserved_peak


class CachingAllocator:
    """One device's ``DeviceCachingAllocator``; streams are numbered, 0 the current one.

    >>> a = CachingAllocator()
    >>> x = a.malloc(3 * MIB)   # below kMinLargeAlloc: a 20 MiB segment, split
    >>> y = a.malloc(3 * MIB)   # best fit: the 17 MiB remainder
    >>> a.reserved, a.allocated
    (20971520, 6291456)
    >>> a.free(x); a.free(y); a.allocated
    0
    >>> z = a.malloc(3 * MIB, stream=1)   # the cached block is stream 0's: a new segment
    >>> a.reserved
    41943040
    """

    def __init__(self, config: AllocatorConfig | None = None, capacity: int | None = None) -> None:
        self.config = config or AllocatorConfig()
        self._round_by_divisions = any(d > 1 for d in self.config.roundup_power2_divisions)
        self.capacity = capacity
        self.small = _Pool(small=True)
        self.large = _Pool(small=False)
        self._pools: dict[int, tuple[_Pool, _Pool]] = {0: (self.small, self.large)}
        self.allocated = 0
        self.reserved = 0
        self.requested = 0
        self.segment_allocs = 0
        self.alloc_retries = 0
        self._next_address = 1 << 40
        self._segments: list[_Segment] = []
        self._total = H200_TOTAL_BYTES if capacity is None else capacity

    # Public ---------------------------------------------------------------------

    def _pool(self, stream: int, small: bool) -> _Pool:
        pools = self._pools.get(stream)
        if pools is None:
            pools = self._pools[stream] = (_Pool(True, stream), _Pool(False, stream))
        return pools[0] if small else pools[1]

    def malloc(self, orig_size: int, stream: int = 0) -> _Block:
        """``DeviceCachingAllocator::malloc``: return the block that serves the request
        made on ``stream``."""
        if self._round_by_divisions:
            size = round_size(orig_size, self.config)
        elif orig_size < K_MIN_BLOCK_SIZE:
            size = K_MIN_BLOCK_SIZE
        else:
            size = -(-orig_size // K_MIN_BLOCK_SIZE) * K_MIN_BLOCK_SIZE
        pool = self._pool(stream, size <= K_SMALL_SIZE)
        alloc_size = allocation_size(size)
        block = self._get_free_block(pool, size)
        if block is None:
            block = self._alloc_block(pool, size, alloc_size)
            if block is None and self._release_available_cached_blocks(pool, size):
                block = self._alloc_block(pool, size, alloc_size)
            if block is None:
                self._release_cached_blocks()
                self.alloc_retries += 1
                block = self._alloc_block(pool, size, alloc_size)
            if block is None:
                raise OutOfMemory(f"cannot allocate {alloc_size} bytes")
        return self._alloc_found_block(pool, block, size, orig_size)

    def free(self, block: _Block) -> None:
        """``DeviceCachingAllocator::free`` then ``free_block``: back to the pool of the
        stream it was allocated on (``block->stream``)."""
        block.allocated = False
        self.allocated -= block.size
        self.requested -= block.requested
        pool = self._pool(block.segment.stream, block.segment.small)
        for neighbour in (block.prev, block.next):
            self._try_merge_blocks(block, neighbour, pool)
        pool.insert(block)

    def empty_cache(self) -> None:
        """``emptyCache``: ``release_cached_blocks``."""
        self._release_cached_blocks()

    def segments(self) -> tuple[SegmentInfo, ...]:
        """The mapped segments in address order, like ``torch.cuda.memory_snapshot()``."""
        heads: list[_Block] = []
        for segment in self._segments:
            walk = segment.first
            while walk is not None:
                if walk.mapped and (walk.prev is None or not walk.prev.mapped):
                    heads.append(walk)
                walk = walk.next
        out = []
        for head in sorted(heads, key=lambda b: b.ptr):
            blocks = []
            block: _Block | None = head
            while block is not None and block.mapped:
                blocks.append((block.size, block.allocated))
                block = block.next
            out.append(
                SegmentInfo(
                    address=head.ptr,
                    pool="small" if head.segment.small else "large",
                    expandable=head.segment.expandable,
                    total_size=sum(s for s, _ in blocks),
                    allocated_size=sum(s for s, a in blocks if a),
                    blocks=tuple(blocks),
                )
            )
        return tuple(out)

    # get_free_block -------------------------------------------------------------

    def _get_free_block(self, pool: _Pool, size: int) -> _Block | None:
        keys = pool.keys
        index = bisect.bisect_left(keys, (size, -1))
        if index == len(keys):
            return None
        block = pool.by_ptr[keys[index][1]]
        if block.segment.expandable:
            # Best fit over the size a block can grow to: a free block followed by
            # unmapped space counts as that much larger.
            def expandable_size(b: _Block) -> int:
                nxt = b.next
                return b.size + (nxt.size if nxt is not None and not nxt.mapped else 0)

            nxt_index = index + 1
            while block.segment.expandable and nxt_index < len(keys):
                candidate = pool.by_ptr[keys[nxt_index][1]]
                if expandable_size(candidate) >= expandable_size(block):
                    break
                block = candidate
                nxt_index += 1
        max_split = self.config.max_split_size
        # Do not return an oversized block for a large request.
        if size < max_split and block.size >= max_split:
            return None
        # Allow an oversized block to be rounded up, but within a limit.
        if size >= max_split and block.size >= size + self.config.max_non_split_rounding_size:
            return None
        pool.erase(block)
        return block

    def _should_split(self, block: _Block, size: int) -> bool:
        remaining = block.size - size
        if block.segment.small or self.config.expandable_segments:
            return remaining >= K_MIN_BLOCK_SIZE
        return size < self.config.max_split_size and remaining > K_SMALL_SIZE

    def _alloc_found_block(self, pool: _Pool, block: _Block, size: int, orig: int) -> _Block:
        if self._should_split(block, size):
            remaining = block
            block = _Block(remaining.ptr, size, remaining.segment)
            block.prev = remaining.prev
            if block.prev is not None:
                block.prev.next = block
            block.next = remaining
            remaining.prev = block
            remaining.ptr += size
            remaining.size -= size
            pool.insert(remaining)
            if block.prev is None:
                block.segment.first = block
        block.allocated = True
        block.requested = orig
        self.allocated += block.size
        self.requested += orig
        return block

    # Segments ---------------------------------------------------------------------

    def _fits_device(self, size: int) -> bool:
        return self.capacity is None or self.reserved + size <= self.capacity

    def _alloc_block(self, pool: _Pool, size: int, alloc_size: int) -> _Block | None:
        """``alloc_block``: a new segment from cudaMalloc, or mapped expandable pages."""
        if self.config.expandable_segments:
            return self._try_allocate_expandable_block(pool, size)
        if not self._fits_device(alloc_size):
            return None
        ptr = self._next_address
        # Leave a gap so that segments are never adjacent; they never merge anyway.
        self._next_address += alloc_size + K_LARGE_BUFFER
        segment = _Segment(pool.small, expandable=False, head_ptr=ptr, page=0, stream=pool.stream)
        block = _Block(ptr, alloc_size, segment)
        segment.first = block
        self._segments.append(segment)
        self.reserved += alloc_size
        self.segment_allocs += 1
        return block

    def _release_block(self, block: _Block, pool: _Pool) -> None:
        """``release_block``: cudaFree a whole cached segment."""
        pool.erase(block)
        self._segments.remove(block.segment)
        self.reserved -= block.size

    def _release_available_cached_blocks(self, pool: _Pool, size: int) -> bool:
        """Free oversize cached blocks, enough for ``size`` (only with max_split_size)."""
        max_split = self.config.max_split_size
        if max_split == UNLIMITED or self.config.expandable_segments:
            return False
        key = max(size, max_split)
        index = bisect.bisect_left(pool.keys, (key, -1))
        if index < len(pool.keys):
            self._release_block(pool.by_ptr[pool.keys[index][1]], pool)
            return True
        released = 0
        index -= 1
        while released < key and index >= 0:
            block = pool.by_ptr[pool.keys[index][1]]
            if block.size < max_split:
                break
            released += block.size
            self._release_block(block, pool)
            index -= 1
        return released >= key

    def _release_cached_blocks(self) -> None:
        """``release_cached_blocks``: free every cached segment that is not split, of
        every stream (``release_blocks(large_blocks)``, then the small pool)."""
        streams = sorted(self._pools)
        pools = [self._pools[s][1] for s in streams] + [self._pools[s][0] for s in streams]
        for pool in pools:
            to_unmap = []
            for _, ptr in list(pool.keys):
                block = pool.by_ptr[ptr]
                if block.segment.expandable:
                    to_unmap.append(block)
                elif not block.is_split():
                    self._release_block(block, pool)
            for block in to_unmap:
                self._unmap_block(block, pool)
                if block.prev is None and block.next is None and not block.mapped:
                    # release_expandable_segment: nothing of it is mapped any more.
                    del pool.unmapped[block.ptr]
                    self._segments.remove(block.segment)

    # Expandable segments --------------------------------------------------------

    def _new_expandable(self, pool: _Pool, size: int) -> _Block:
        page = K_SMALL_BUFFER if pool.small else K_LARGE_BUFFER
        # find_expandable_block: address space for 1 1/8 of the device's memory. With no
        # capacity given, the replay asks what a step would reserve, whatever the device:
        # the space then also holds the request, where a real device would be out of memory.
        total = self._total + self._total // 8
        if self.capacity is None:
            total = max(total, size)
        space = -(-total // page) * page
        ptr = -(-self._next_address // page) * page
        self._next_address = ptr + space + K_LARGE_BUFFER
        segment = _Segment(pool.small, expandable=True, head_ptr=ptr, page=page, stream=pool.stream)
        block = _Block(ptr, space, segment, mapped=False)
        segment.first = block
        self._segments.append(segment)
        pool.unmapped[ptr] = block
        return block

    def _find_expandable_block(self, pool: _Pool, size: int) -> _Block:
        def allocatable(b: _Block | None) -> bool:
            return b is not None and not b.allocated

        def has_space(b: _Block | None) -> bool:
            total = 0
            while total < size and b is not None and allocatable(b):
                total += b.size
                b = b.next
            return total >= size

        for ptr in sorted(pool.unmapped):
            candidate = pool.unmapped[ptr]
            if allocatable(candidate.prev) and candidate.prev is not None:
                candidate = candidate.prev
            if has_space(candidate):
                return candidate
        return self._new_expandable(pool, size)

    def _map_block(self, pool: _Pool, block: _Block, size: int) -> bool:
        segment = block.segment
        page = segment.page
        begin = (block.ptr - segment.head_ptr) // page
        end = -(-(block.ptr + size - segment.head_ptr) // page)
        mapped = (end - begin) * page
        if not self._fits_device(mapped):
            return False
        del pool.unmapped[block.ptr]
        block.mapped = True
        if mapped < block.size:
            rest = _Block(block.ptr + mapped, block.size - mapped, segment, mapped=False)
            rest.prev = block
            rest.next = block.next
            if block.next is not None:
                block.next.prev = rest
            block.next = rest
            pool.unmapped[rest.ptr] = rest
            block.size = mapped
        self._try_merge_blocks(block, block.prev, pool)
        self._try_merge_blocks(block, block.next, pool)
        pool.insert(block)
        self.reserved += mapped
        self.segment_allocs += 1
        return True

    def _try_allocate_expandable_block(self, pool: _Pool, size: int) -> _Block | None:
        candidate = self._find_expandable_block(pool, size)
        if not candidate.mapped and not self._map_block(pool, candidate, min(candidate.size, size)):
            return None
        while candidate.size < size:
            nxt = candidate.next
            if nxt is None:  # the request outgrows the segment's address space
                return None
            if not self._map_block(pool, nxt, min(size - candidate.size, nxt.size)):
                return None
            candidate = nxt
        pool.erase(candidate)
        return candidate

    def _unmap_block(self, block: _Block, pool: _Pool) -> None:
        """``unmap_block``: return the wholly free pages inside a free block."""
        segment = block.segment
        page = segment.page
        begin = -(-(block.ptr - segment.head_ptr) // page)
        end = (block.ptr + block.size - segment.head_ptr) // page
        if begin >= end:
            return
        pool.erase(block)
        start = segment.head_ptr + begin * page
        length = (end - begin) * page
        before = start - block.ptr
        if before > 0:
            head = _Block(block.ptr, before, segment)
            head.prev = block.prev
            if block.prev is not None:
                block.prev.next = head
            head.next = block
            block.prev = head
            pool.insert(head)
            if head.prev is None:
                segment.first = head
        after = block.size - before - length
        if after > 0:
            tail = _Block(start + length, after, segment)
            tail.prev = block
            tail.next = block.next
            if block.next is not None:
                block.next.prev = tail
            block.next = tail
            pool.insert(tail)
        block.ptr = start
        block.size = length
        block.mapped = False
        self._try_merge_blocks(block, block.prev, pool)
        self._try_merge_blocks(block, block.next, pool)
        pool.unmapped[block.ptr] = block
        self.reserved -= length

    # Merging --------------------------------------------------------------------

    def _try_merge_blocks(self, dst: _Block, src: _Block | None, pool: _Pool) -> int:
        """``try_merge_blocks``: absorb a free neighbour; return the bytes absorbed."""
        if src is None or src.allocated or dst.mapped != src.mapped:
            return 0
        if src.mapped:
            pool.erase(src)
        else:
            del pool.unmapped[src.ptr]
        if dst.prev is src:
            dst.ptr = src.ptr
            dst.prev = src.prev
            if dst.prev is not None:
                dst.prev.next = dst
            else:
                dst.segment.first = dst
        else:
            dst.next = src.next
            if dst.next is not None:
                dst.next.prev = dst
        dst.size += src.size
        return src.size


def replay(
    events: Iterable[Sequence[object]],
    config: AllocatorConfig | None = None,
    capacity: int | None = None,
    timeline: bool = False,
    snapshot_at: int | None = None,
) -> ReplayResult:
    """Replay ``("alloc", id, size)`` / ``("free", id)`` events; ``("mark", name)`` labels.

    An allocation made on a side stream names it after its component and label:
    ``("alloc", id, size, component, label, stream)``, the stream a number other than 0.

    A mark starts a named span; ``peaks_by_mark`` holds each span's allocated and
    reserved peaks. ``capacity`` is what the allocator may reserve (the device's memory
    less the CUDA context and other processes); without it, segments never fail. With
    ``timeline``, ``allocated`` and ``reserved`` hold the totals after every event.
    ``snapshot_at`` (an event index, e.g. a first replay's ``reserved_peak_event``)
    keeps the segment list right after that event in ``segments_at_reserved_peak``.
    Out of memory stops the replay and records the event's index.

    >>> r = replay([("alloc", 1, 25 * MIB), ("free", 1), ("alloc", 2, 13 * MIB)])
    >>> r.reserved_peak == 26 * MIB, r.allocated_end == 13 * MIB
    (True, True)
    """
    allocator = CachingAllocator(config, capacity)
    result = ReplayResult()
    live: dict[int, _Block] = {}
    mark: str | None = None
    mark_peaks = result.peaks_by_mark
    alloc_peak = reserved_peak = requested_peak = 0
    for index, event in enumerate(events):
        kind = event[0]
        if kind == "alloc":
            key = event[1]
            size = event[2]
            assert isinstance(key, int) and isinstance(size, int)
            stream = event[5] if len(event) > 5 else 0
            if not isinstance(stream, int) or stream < 0:
                raise NnmemError.single(
                    "events", f"event {index}: the stream must be a whole number (got {stream!r})."
                )
            try:
                live[key] = allocator.malloc(size, stream)
            except OutOfMemory:
                result.out_of_memory_at = index
                break
            if allocator.allocated > alloc_peak:
                alloc_peak = allocator.allocated
            if allocator.requested > requested_peak:
                requested_peak = allocator.requested
            if allocator.reserved > reserved_peak:
                reserved_peak = allocator.reserved
                result.allocated_at_reserved_peak = allocator.allocated
                result.reserved_peak_event = index
            if mark is not None:
                a, r = mark_peaks[mark]
                if allocator.allocated > a or allocator.reserved > r:
                    mark_peaks[mark] = (max(a, allocator.allocated), max(r, allocator.reserved))
        elif kind == "free":
            key = event[1]
            assert isinstance(key, int)
            allocator.free(live.pop(key))
        elif kind == "mark":
            mark = str(event[1])
            if mark not in mark_peaks:
                mark_peaks[mark] = (allocator.allocated, allocator.reserved)
        else:
            raise NnmemError.single("events", f"unknown event kind {kind!r} at index {index}.")
        if index == snapshot_at:
            result.segments_at_reserved_peak = allocator.segments()
        if timeline:
            result.allocated.append(allocator.allocated)
            result.reserved.append(allocator.reserved)
    result.allocated_peak = alloc_peak
    result.reserved_peak = reserved_peak
    result.requested_peak = requested_peak
    result.allocated_end = allocator.allocated
    result.reserved_end = allocator.reserved
    result.segments_at_end = allocator.segments()
    result.segment_allocs = allocator.segment_allocs
    result.alloc_retries = allocator.alloc_retries
    return result


def replay_needed(
    events: Sequence[Sequence[object]],
    config: AllocatorConfig | None = None,
    capacity: int | None = None,
    timeline: bool = False,
) -> ReplayResult:
    """The replay on a device whose allocator may reserve ``capacity`` bytes, where the
    step fits there once the allocator has freed its cache; a step that runs out of memory
    even so is replayed unbounded, which is what it would need (a replay cut at the
    failing request would show less than the step holds).

    >>> events = [("alloc", 0, 30 * MIB), ("alloc", 1, 30 * MIB)]
    >>> replay(events, capacity=40 * MIB).out_of_memory_at
    1
    >>> needed = replay_needed(events, capacity=40 * MIB)
    >>> needed.out_of_memory_at, needed.reserved_peak // MIB
    (None, 60)
    """
    result = replay(events, config, capacity, timeline)
    if capacity is not None and result.out_of_memory_at is not None:
        return replay(events, config, None, timeline)
    return result
