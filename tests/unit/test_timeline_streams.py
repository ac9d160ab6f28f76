"""FSDP2's buffers in the timeline, each on the stream ``_fsdp_collectives.py`` uses.

The model is the 16-layer Llama of ``test_timeline.py`` (hidden 2048, MLP 8192, 8 KV
heads of 64): a block holds 2 × 2048² (q, o) + 2 × 2048 × 512 (k, v) + 3 × 2048 × 8192
(MLP) + 2 × 2048 (norms) = 60,821,504 parameters. Under ``amp_bf16`` FSDP2 gathers them
in bf16 (2 B) and keeps fp32 sharded gradients (4 B) over 8 ranks.
"""

from __future__ import annotations

from nnmem.allocator import replay
from nnmem.timeline import (
    FSDP2_ALL_GATHER_STREAM,
    FSDP2_REDUCE_SCATTER_STREAM,
    step_events,
)
from tests.unit.test_timeline import UNIT, _unit

BLOCK = 60_821_504


def _on(stream: int, name: str) -> list[tuple[object, ...]]:
    events = step_events(_unit(UNIT[name]), "h200-sxm")
    return [e for e in events if e[0] == "alloc" and len(e) > 5 and e[5] == stream]


def test_all_gather_outputs_are_on_the_copy_in_stream() -> None:
    """foreach_all_gather allocates one flat output per group on all_gather_copy_in_stream:
    forward's kept output once, and backward's prefetched group once per block (16),
    each 60,821,504 × 2 B."""
    gathered = _on(FSDP2_ALL_GATHER_STREAM, "fsdp2")
    assert {e[2] for e in gathered} == {BLOCK * 2}
    assert len(gathered) == 1 + 16
    assert sum("kept for the next group" in str(e[4]) for e in gathered) == 1


def test_sharded_gradients_are_one_reduce_scatter_output_per_group() -> None:
    """foreach_reduce allocates one reduce_output per group on reduce_scatter_stream and
    each sharded gradient is a view of it: one block per layer, 60,821,504 × 4 B / 8."""
    grads = _on(FSDP2_REDUCE_SCATTER_STREAM, "fsdp2")
    per_layer = [e for e in grads if str(e[4]).startswith("layer ")]
    assert len(per_layer) == 16
    assert {e[2] for e in per_layer} == {BLOCK * 4 // 8}


def test_single_stream_stacks_name_no_stream() -> None:
    """A plain loop, DDP and DeepSpeed write five-field allocations only."""
    for name in ("full", "ddp", "zero3_deepspeed"):
        events = step_events(_unit(UNIT[name]), "h200-sxm")
        assert all(len(e) == 5 for e in events if e[0] == "alloc"), name


def test_streams_change_where_blocks_go_not_what_is_allocated() -> None:
    """Replayed with and without its streams, the step allocates the same bytes at its
    peak (every request is rounded and split alike); only the reserved figure moves."""
    events = step_events(_unit(UNIT["fsdp2"]), "h200-sxm")
    one_stream = [e[:5] if e[0] == "alloc" else e for e in events]
    assert replay(events).allocated_peak == replay(one_stream).allocated_peak
    assert replay(events).reserved_peak != replay(one_stream).reserved_peak
