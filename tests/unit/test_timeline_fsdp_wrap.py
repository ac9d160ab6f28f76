"""FSDP (v1) wrapping a CPU-loaded model with sync_module_states, in the timeline.

The model is the 16-layer Llama of ``test_timeline.py`` (hidden 2048, MLP 8192, 8 KV
heads of 64, vocabulary 128,256, untied head), in bf16, LoRA rank 16 on q, k, v and o
(nnmem's default targets), sharded
over 2 GPUs. A layer holds 2 × 2048² (q, o) + 2 × 2048 × 512 (k, v) + 3 × 2048 × 8192
(MLP) + 2 × 2048 (norms) = 60,821,504 parameters: 121,643,008 B whole in bf16, a
60,821,504 B shard. The root unit holds the embeddings and the head (128,256 × 2048 =
262,668,288 each) and the final norm (2048): 525,338,624 parameters, 1,050,677,248 B.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem.allocator import replay
from nnmem.cli import main
from nnmem.estimate import estimate
from nnmem.scenario import parse
from nnmem.timeline import BROADCAST_BUCKET, _buckets, span_peaks, step_events
from nnmem.web import handle
from nnmem.web.form import DEFAULT_FIELDS
from tests.unit.test_timeline import _unit

LAYER = 60_821_504 * 2
ROOT = 525_338_624 * 2
TABLE = 128_256 * 2048 * 2  # the embeddings' (and the head's) whole bytes
WRAPPED = {
    "finetune": "lora",
    "lora_rank": 16,
    "precision": "bf16",
    "sharding": "zero3",
    "num_gpus": 2,
    "sync_module_states": True,
}


def _wrap_events(extra: dict[str, Any] | None = None) -> list[tuple[object, ...]]:
    events = step_events(_unit(WRAPPED | (extra or {})), "h200-sxm")
    marks = [i for i, e in enumerate(events) if e[0] == "mark"]
    assert [events[i][1] for i in marks[:2]] == ["wrap", "load"]
    return events[marks[0] : marks[1]]


def _allocs(events: list[tuple[object, ...]], label: str) -> list[int]:
    return [int(str(e[2])) for e in events if e[0] == "alloc" and e[4] == label]


def test_a_layer_is_moved_broadcast_flattened_and_sharded() -> None:
    """_move_module_to_device puts the layer's 9 tensors on the GPU whole; one broadcast
    bucket holds them all (121,643,008 B < 250 MiB); torch.cat makes the whole flat
    parameter; _get_shard clones rank 0's half; then the flat and the moved tensors die."""
    events = _wrap_events()
    moved = _allocs(events, "layer 0 moved to the GPU")
    assert sorted(moved) == sorted(
        [2048 * 2048 * 2] * 2 + [2048 * 512 * 2] * 2 + [2048 * 8192 * 2] * 3 + [2048 * 2] * 2
    )
    assert sum(moved) == LAYER
    assert _allocs(events, "layer 0 broadcast bucket") == [LAYER]
    assert _allocs(events, "layer 0 flat_param") == [LAYER]
    assert _allocs(events, "layer 0 flat_param shard") == [LAYER // 2]
    # Only the shard outlives its unit's wrap.
    keys = {e[1]: e[4] for e in events if e[0] == "alloc" and str(e[4]).startswith("layer 0 ")}
    freed = {e[1] for e in events if e[0] == "free"}
    kept = {keys[k] for k in keys if k not in freed}
    assert kept == {"layer 0 adapters flat_param shard", "layer 0 flat_param shard"}


def test_the_root_unit_is_wrapped_last_in_two_buckets() -> None:
    """The root's embeddings (525,336,576 B) fill a bucket alone; the final norm and the
    head make the second; both are in flight at once (comm.cpp keeps two)."""
    events = _wrap_events()
    labels = [str(e[4]) for e in events if e[0] == "alloc"]
    assert labels[-1] == "root flat_param shard"
    assert _allocs(events, "root broadcast bucket") == [TABLE, 2048 * 2 + TABLE]
    assert _allocs(events, "root flat_param") == [ROOT]
    assert _allocs(events, "root flat_param shard") == [ROOT // 2]
    # At the root's shard: the moved root (ROOT), its flat (ROOT) and shard (ROOT / 2),
    # every layer's shard and its adapters' shard (16 layers × r 16 × (in + out) of q,
    # k, v, o: 4096 + 2560 + 2560 + 4096, in bf16, halved); the buckets are gone.
    peak = max(span_peaks(events).values())
    adapters = 16 * 16 * (4096 + 2560 + 2560 + 4096) * 2 // 2
    assert peak == 2 * ROOT + ROOT // 2 + 16 * LAYER // 2 + adapters


def test_broadcast_buckets_close_once_they_hold_250_mib() -> None:
    """A Llama-2-70B layer in bf16: q, k, v, o (134,217,728 + 2 × 16,777,216 +
    134,217,728 B) close the first bucket at 301,989,888 B; each MLP matrix (469,762,048 B)
    fills one alone; the two norms (2 × 16,384 B) are the last."""
    q, kv, mlp = 8192 * 8192 * 2, 8192 * 1024 * 2, 8192 * 28_672 * 2
    sizes = [q, kv, kv, q, mlp, mlp, mlp, 16_384, 16_384]
    assert _buckets(sizes, BROADCAST_BUCKET) == [301_989_888, mlp, mlp, mlp, 32_768]


def test_at_most_two_broadcast_buckets_are_in_flight() -> None:
    """Llama-2-70B: a layer's five buckets are never more than two alive."""
    scenario = parse(
        {
            "model": "preset",
            "preset": "llama-2-70b",
            "precision": "nf4_dq",
            "finetune": "lora",
            "sharding": "zero3",
            "num_gpus": 2,
            "sync_module_states": True,
            "batch_size": 1,
            "seq_len": 128,
        }
    )
    live, most = set(), 0
    for e in step_events(scenario, "rtx-3090"):
        if e[0] == "alloc" and "broadcast" in str(e[4]):
            live.add(e[1])
            most = max(most, len(live))
        elif e[0] == "free":
            live.discard(e[1])
    assert most == 2


def test_the_step_keeps_its_peaks_and_the_cache_of_the_wrap() -> None:
    """The wrap changes where the shards come from, not what any phase holds; the
    allocator's cache after it (whole-layer and root-sized segments) is what the load
    starts from, so the replay reserves at least the wrap's peak, 2 × ROOT plus the
    layers' shards."""
    scenario = _unit(WRAPPED)
    events = step_events(scenario, "h200-sxm")
    peaks = span_peaks(events)
    phases = estimate(scenario, "h200-sxm").phases
    assert {p.name: peaks[p.name] for p in phases} == {p.name: p.bytes for p in phases}
    result = replay(events)
    assert result.peaks_by_mark["load"][1] >= 2 * ROOT + 16 * LAYER // 2


def test_cpu_offload_sends_each_shard_to_the_host() -> None:
    """Under CPUOffload(offload_params=True) the shard is made on the GPU and moved to
    the CPU at once (handle.flat_param_to): nothing of the wrap stays allocated."""
    events = _wrap_events({"cpu_offload": True})
    assert _allocs(events, "root flat_param") == [ROOT]
    born = {e[1] for e in events if e[0] == "alloc"}
    assert born == {e[1] for e in events if e[0] == "free"}


def test_without_the_setting_or_outside_fsdp_v1_nothing_is_wrapped() -> None:
    """Default off (FSDP's own default), and read only where FSDP (v1) shards: FSDP2,
    DeepSpeed and an unsharded run write the same events with it set."""
    plain = {k: v for k, v in WRAPPED.items() if k != "sync_module_states"}
    assert step_events(_unit(plain), "h200-sxm") == step_events(
        _unit(WRAPPED | {"sync_module_states": False}), "h200-sxm"
    )
    for other in (
        {"stack": "fsdp2", "num_gpus": 8, "precision": "amp_bf16"},
        {"stack": "deepspeed", "sharding": "zero3", "num_gpus": 8},
        {"finetune": "lora", "sharding": "none"},
        {"finetune": "lora", "sharding": "zero3", "num_gpus": 1},
    ):
        scenario = _unit(other | {"sync_module_states": True})
        events = step_events(scenario, "h200-sxm")
        assert ("mark", "wrap") not in events, other
        assert events == step_events(_unit(other), "h200-sxm"), other


def test_the_cli_and_the_page_read_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    """--sync-module-states moves the replayed reserve of a QLoRA run over 2 GPUs; the
    page shows the control only where FSDP (v1) shards."""
    args = ["--preset", "llama-2-7b", "--precision", "nf4_dq", "--set", "finetune=lora"]
    args += ["--sharding", "zero3", "--num-gpus", "2", "--seq-len", "512", "--json"]
    args += ["--set", "allocator_replay=true", "--gpu", "rtx-3090"]
    totals = []
    for flag in ("false", "true"):
        assert main([*args, "--sync-module-states", flag]) == 0
        totals.append(json.loads(capsys.readouterr().out)["total_bytes"])
    assert totals[0] != totals[1]

    def hidden(fields: dict[str, str]) -> set[str]:
        reply = json.loads(handle(json.dumps({"fields": {**DEFAULT_FIELDS, **fields}})))
        return set(reply["inactive"])

    assert "sync_module_states" in hidden({})
    assert "sync_module_states" in hidden({"stack": "fsdp2", "num_gpus": "2"})
    lora = {"describe": "fields", "preset": "llama-2-7b", "finetune": "lora"}
    lora |= {"sharding": "zero3", "num_gpus": "2"}
    assert "sync_module_states" not in hidden(lora)
