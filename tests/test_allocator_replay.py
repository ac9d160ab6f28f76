"""Recorded traces replayed through nnmem's allocator model, against the H200 runs.

``benchmarks/accuracy/traces/`` holds the order of storage births and deaths of every
CUDA accuracy case, recorded on the CPU (``benchmarks/accuracy/traces.py``). Replayed
through ``nnmem.allocator`` (``benchmarks/accuracy/allocator_replay.py``), each gives
the reserved and allocated peaks of step 2 (or the decode step), compared here with
``max_memory_reserved()`` and ``max_memory_allocated()`` measured on the GPU.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import pytest

from benchmarks.accuracy import allocator_replay

# Reserved peaks must be within 1% of the GPU's, allocated peaks within 0.5%, except the
# cases below, each with the bound it is held to and the measured reason it misses.
RESERVED_TOLERANCE = 0.01
ALLOCATED_TOLERANCE = 0.005
KNOWN_MISSES: dict[str, tuple[float, float, str]] = {
    # case: (reserved bound, allocated bound, why)
    "resnet50.train.fp32.sgd-momentum.conv.b32.img224": (
        0.09,
        0.005,
        "cuDNN convolution workspaces: taken from the caching allocator inside each "
        "convolution and freed after it, their sizes chosen by cuDNN's heuristics on the "
        "GPU; not in a CPU trace. Allocated matches, reserved is short.",
    ),
    "resnet50.train.amp-bf16.sgd-momentum.conv.b32.img224": (
        0.07,
        0.005,
        "cuDNN convolution workspaces, as for the fp32 case.",
    ),
    "t5-base.train.amp-bf16.adafactor.eager.b8.s512.dec128": (
        0.055,
        0.02,
        "the trace's forward holds 144 MiB (one fp32 d_model tensor per encoder layer and "
        "token) less than the GPU's tracker saw: a CUDA autocast difference not yet "
        "reproduced on the CPU.",
    ),
    "llama-3.2-1b.train.amp-bf16.adamw.sdpa.b1.s2048": (
        0.035,
        0.005,
        "the trace's live peak equals the GPU tracker's, but the replay reserves 3% more.",
    ),
    "llama-2-7b.infer.bf16.sdpa.b1.ctx4096": (
        0.03,
        0.005,
        "the decode step reserves 486 MiB more on the GPU than in the replay.",
    ),
    "bert-large.train.fp32.adamw.eager.b4.s512": (
        0.02,
        0.005,
        "the replay reserves 156 MiB more than the GPU.",
    ),
    "bert-large.train.fp32.adafactor.eager.b4.s512": (
        0.025,
        0.007,
        "the replay reserves 214 MiB less than the GPU.",
    ),
}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return allocator_replay.compare_all()


def test_every_cuda_case_has_a_trace(report: dict[str, Any]) -> None:
    measured = json.loads(allocator_replay.CUDA_MEASUREMENTS.read_text())["cases"]
    assert len(report["cases"]) == len(measured) == 32


def test_published_replay_is_current(report: dict[str, Any]) -> None:
    """allocator_replay.json and .md are what the traces and the model give today."""
    published = json.loads(allocator_replay.OUTPUT_JSON.read_text())
    assert published == json.loads(json.dumps(report))
    assert allocator_replay.OUTPUT_MD.read_text() == allocator_replay.markdown(report)


def rows() -> list[str]:
    data = json.loads(allocator_replay.OUTPUT_JSON.read_text())
    return [row["id"] for row in data["cases"]]


@pytest.mark.parametrize("case_id", rows())
def test_replayed_peaks_match_the_gpu(report: dict[str, Any], case_id: str) -> None:
    row = next(r for r in report["cases"] if r["id"] == case_id)
    reserved_bound, allocated_bound, _ = KNOWN_MISSES.get(
        case_id, (RESERVED_TOLERANCE, ALLOCATED_TOLERANCE, "")
    )
    assert abs(row["reserved_error"]) <= reserved_bound, row["spans"]
    assert abs(row["allocated_error"]) <= allocated_bound, row["spans"]


@pytest.mark.parametrize("case_id", sorted(KNOWN_MISSES))
def test_known_misses_still_miss(report: dict[str, Any], case_id: str) -> None:
    """A case that comes within the general tolerance must leave KNOWN_MISSES."""
    row = next(r for r in report["cases"] if r["id"] == case_id)
    assert (
        abs(row["reserved_error"]) > RESERVED_TOLERANCE
        or abs(row["allocated_error"]) > ALLOCATED_TOLERANCE
    )


def test_median_and_largest_reserved_error(report: dict[str, Any]) -> None:
    errors = [abs(r["reserved_error"]) for r in report["cases"]]
    assert statistics.median(errors) <= 0.005
    assert max(errors) <= 0.09


def test_gpu_history_replays_to_the_gpu_segments() -> None:
    """A history as ``_snapshot()["device_traces"]`` gives it: the GPU opened one 20 MiB
    segment for two 3 MiB requests; the model, replaying the requests, does the same."""
    from benchmarks.accuracy import cuda_history

    mib = 2**20
    events = [
        ["segment_alloc", 1000, 20 * mib, 0],
        ["alloc", 1000, 3 * mib, 0],
        ["alloc", 1000 + 3 * mib, 3 * mib, 0],
        ["free_requested", 1000, 3 * mib, 0],
        ["free_completed", 1000, 3 * mib, 0],
    ]
    entry = {
        "id": "synthetic",
        "alloc_conf": "",
        "events": events,
        "segments": [{"total_size": 20 * mib}],
    }
    row = cuda_history.compare_history(entry)
    assert row["requests"] == 2
    assert (row["gpu_segment_allocs"], row["model_segment_allocs"]) == (1, 1)
    assert row["model_reserved_peak"] == row["gpu_reserved_bytes_allocated"] == 20 * mib
    assert row["final_segments_equal"]


def test_accuracy_page_table_shows_every_replayed_case() -> None:
    # The accuracy page's table (content_helpers.allocator_replay_table) has one row per
    # case, with the reserved error of the published replay: ResNet-50 fp32 is -8.82%.
    import content_helpers

    html = content_helpers.allocator_replay_table("replay")
    assert html.count("<tr data-replay-case=") == 32
    row = html.split('data-replay-case="resnet50.train.fp32.sgd-momentum.conv.b32.img224"')[1]
    row = row.split("</tr>")[0]
    assert "-8.82%" in row
