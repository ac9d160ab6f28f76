"""Pipeline parallelism in training, against hand values from the schedules' code.

Sources: torchtitan torchtitan/parallelisms/pipelining_utils.py generate_split_points
(⌊L/stages⌋ layers to the first stage, one more to each middle stage while the remainder
lasts, the rest to the last; 2 stages per rank for a multi-stage schedule) and
build_pipeline_schedule (one micro-batch per stage by default; the batch must divide);
torch/distributed/pipelining/schedules.py (GPipe: every forward first; 1F1B: rank r warms
up with min(m, p − r) forwards; Interleaved1F1B: (v − 1)·p + 2·(p − 1 − r) warm-up
forwards, then one more before the first backward).

Llama 3.1 70B: L = 80, h = 8,192, V = 128,256. FSDP2 runs the forward in bf16, so a
checkpointed layer input is b·s·h × 2 B.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.models.architecture import parameter_counts
from nnmem.models.transformer.assembly import (
    activations,
    pipeline_buffer_terms,
    pipeline_rank,
    split_layers,
    stage_tensors,
)
from nnmem.models.transformer.context import context
from nnmem.scenario import Scenario, parse
from nnmem.solvers import max_batch
from nnmem.web.form import read

H, V, S = 8_192, 128_256, 2_048


def _70b(**settings: Any) -> Scenario:
    base = {
        "model": "preset",
        "preset": "llama-3.1-70b",
        "precision": "amp_bf16",
        "stack": "fsdp2",
        "batch_size": 8,
        "seq_len": S,
        "checkpointing": "full",
        "num_gpus": 8,
        "pipeline_parallel": 4,
    }
    return parse({**base, **settings})


def test_layers_split_as_torchtitan_cuts_them() -> None:
    assert split_layers(126, 8) == [15, 16, 16, 16, 16, 16, 16, 15]
    assert split_layers(126, 16) == [7, *[8] * 14, 7]
    assert split_layers(80, 4) == [20, 20, 20, 20]


@pytest.mark.parametrize(
    ("schedule", "rank", "in_flight", "saved_layers", "microbatch"),
    [
        # 1F1B, p = 4, m = 4 micro-batches of 2: rank r keeps min(4, 4 − r) forwards of
        # its 20 layers.
        ("1f1b", 0, 4, 80, 2),
        ("1f1b", 3, 1, 20, 2),
        # GPipe keeps all 4 on every rank.
        ("gpipe", 3, 4, 80, 2),
        # Interleaved, v = 2: 8 stages of 10 layers, m = 8 micro-batches of 1; rank 0 warms
        # up with (2 − 1)·4 + 2·3 = 10 forwards and runs one more: 11 × 10 layers.
        ("interleaved_1f1b", 0, 11, 110, 1),
        # rank 3: 4 + 0 + 1 = 5 forwards: 4 of stage 3, then 1 of stage 7 (the last).
        ("interleaved_1f1b", 3, 5, 50, 1),
    ],
)
def test_what_each_schedule_keeps_in_flight(
    schedule: str, rank: int, in_flight: int, saved_layers: int, microbatch: int
) -> None:
    s = _70b(pipeline_schedule=schedule)
    stage = pipeline_rank(s, context(s).t, rank)
    assert (stage.in_flight, stage.saved_layers, stage.microbatch) == (
        in_flight,
        saved_layers,
        microbatch,
    )


def test_the_first_rank_keeps_p_micro_batches_of_layer_inputs() -> None:
    """1F1B rank 0: 4 micro-batches × 20 layers × (2·2,048·8,192 × 2 B) = 5,368,709,120 B;
    the outside rows (final norm, head input) are the last stage's, not its own."""
    s = _70b()
    c = context(s)
    stage = pipeline_rank(s, c.t, 0)
    micro = replace(c, sizes={**c.sizes, "b": stage.microbatch})
    terms = {t.label: t.bytes for t in activations(micro, stage).terms}
    assert terms["saved checkpointed input"] == 80 * 2 * S * H * 2 == 5_368_709_120
    assert terms["embeddings, final norm and head inputs"] < 2**20  # position ids only


# One micro-batch's hidden states at a stage boundary, b·s·h × 2 B (bf16 under FSDP2):
# 4 micro-batches of 2 (1F1B), 8 of 1 (interleaved).
B2 = 2 * S * H * 2  # 67,108,864
B1 = 1 * S * H * 2  # 33,554,432


def _buffers(s: Scenario, rank: int) -> dict[str, int]:
    c = context(s)
    stage = pipeline_rank(s, c.t, rank)
    micro = replace(c, sizes={**c.sizes, "b": stage.microbatch})
    buffers, outputs = pipeline_buffer_terms(micro, stage)
    return {t.label: t.bytes for t in [*buffers, *outputs]}


RECV = "pipeline receive buffers of the micro-batches not in flight"
GRAD = "pipeline receive buffers for output gradients, one per micro-batch"
OUT = "stage outputs kept for backward"


@pytest.mark.parametrize(
    ("schedule", "rank", "expected"),
    [
        # torch 2.13 stage.py: PipelineStage._setup_forward_recv_info makes one buffer per
        # micro-batch on every stage but the first; _create_grad_recv_info one per
        # micro-batch on every stage but the last; forward_one_chunk's fwd_cache keeps each
        # waiting micro-batch's output. 1F1B rank 0 (stage 0, 4 forwards waiting): 4
        # gradient buffers and 4 outputs.
        ("1f1b", 0, {GRAD: 4 * B2, OUT: 4 * B2}),
        # rank 1 (3 waiting): the 4 − 3 receive buffers not holding a waiting layer input.
        ("1f1b", 1, {RECV: 1 * B2, GRAD: 4 * B2, OUT: 3 * B2}),
        # rank 3, the last stage: 4 − 1 receive buffers, no gradient buffer, and its
        # output (the logits) is the loss's.
        ("1f1b", 3, {RECV: 3 * B2}),
        # Interleaved rank 0 holds stages 0 and 4 of 8; its 11 forwards are 4 of stage 0,
        # 4 of stage 4, 3 of stage 0: stage 4 receives 8 − 4, both stages take gradients
        # (2 × 8), all 11 outputs wait.
        ("interleaved_1f1b", 0, {RECV: 4 * B1, GRAD: 16 * B1, OUT: 11 * B1}),
        # rank 3 holds stages 3 and 7 (the last); 4 forwards of stage 3, 1 of stage 7:
        # (8 − 4) + (8 − 1) receive buffers, 8 gradient buffers for stage 3, 4 outputs.
        ("interleaved_1f1b", 3, {RECV: 11 * B1, GRAD: 8 * B1, OUT: 4 * B1}),
    ],
)
def test_the_stage_buffers_torch_allocates(
    schedule: str, rank: int, expected: dict[str, int]
) -> None:
    assert _buffers(_70b(pipeline_schedule=schedule), rank) == expected


def test_the_buffers_follow_sequence_parallelism_and_offloading() -> None:
    """torchtitan's blocks return Shard(1) local tensors under sequence parallelism, so
    each buffer is b·(s/2)·h × 2 B at TP 2; offloading moves a waiting input's saved copy
    to the CPU while the stage's buffer stays, so rank 3 keeps all 4."""
    sp = _70b(num_gpus=8, tensor_parallel=2, sequence_parallel=True)
    assert _buffers(sp, 1) == {RECV: B2 // 2, GRAD: 4 * B2 // 2, OUT: 3 * B2 // 2}
    offload = _buffers(_70b(activation_offload=True), 3)
    assert offload == {"pipeline receive buffers, one per micro-batch": 4 * B2}


def test_the_receive_buffers_stay_through_the_step() -> None:
    """The heaviest rank here is the first (below): its 4 × 64 MiB gradient buffers are in
    every phase, the optimizer step's included, as they live from the first step on; its
    4 stage outputs wait through forward, and are gone by the optimizer step."""
    e = estimate(_70b())
    phases = {p.name: {t.label: t.bytes for t in p.terms} for p in e.phases}
    for labels in phases.values():
        assert labels[GRAD] == 4 * B2 == 268_435_456
    assert phases["forward"][OUT] == 4 * B2
    assert OUT not in phases["optimizer_step"]


def test_the_embedding_is_on_the_first_rank_and_the_head_on_the_last() -> None:
    s = _70b()
    t = context(s).t
    per_layer = sum(parameter_counts(t).values()) - 2 * V * H - H  # untied head, final norm
    per_layer //= 80

    def params(rank: int) -> int:
        tensors = stage_tensors(t, pipeline_rank(s, t, rank))
        return sum(x.numel * x.count for x in tensors)

    assert params(0) == V * H + 20 * per_layer
    assert params(1) == 20 * per_layer
    assert params(3) == 20 * per_layer + H + V * H


def test_the_estimate_is_the_heaviest_rank() -> None:
    """The first rank is the heaviest here. Without the pipeline's buffers its backward
    peak and the last rank's differ by 114,688 B (the last rank's eager loss over a
    micro-batch of 2, fp32 log-softmax and gradients, against the first rank's 3 extra
    micro-batches of layer inputs); the first rank's 4 gradient buffers and 4 stage
    outputs (8 × 64 MiB) outweigh the last rank's 3 receive buffers (3 × 64 MiB). Its FSDP2
    shard over the 2 GPUs left is its 20 layers and the embedding, in fp32."""
    s = _70b()
    e = estimate(s)
    assert any(n.startswith("Pipeline over 4 ranks (1F1B") and "rank 0" in n for n in e.notes)
    t = context(s).t
    held = sum(x.numel * x.count for x in stage_tensors(t, pipeline_rank(s, t, 0)))
    assert e.component("weights").bytes == held * 4 // 2


def test_a_stage_keeps_its_blocks_and_gradients_unsharded() -> None:
    """The pipeline stage runs every micro-batch's backward without gradient sync or
    reshard (torch pipelining stage.py), and torchtitan does not reshard its blocks after
    forward: the first rank keeps its 20 blocks gathered in bf16 and the unsharded
    gradients of all it holds, upcast to the fp32 reduce type (FSDPParam
    .to_accumulated_grad_if_needed), through backward."""
    s = _70b()
    e = estimate(s)
    t = context(s).t
    stage = pipeline_rank(s, t, 0)
    held = sum(x.numel * x.count for x in stage_tensors(t, stage))
    backward = {x.label: x.bytes for x in next(p for p in e.phases if p.name == "backward").terms}
    assert backward["unsharded gradients accumulated over the micro-batches"] == held * 4
    blocks = (held - V * H) * 2  # the root (the embedding) is counted apart
    assert backward["every block unsharded (not resharded after forward)"] == blocks
    assert "reshard_after_forward" in s.inactive_fields()


def test_fsdp_shards_over_the_gpus_left() -> None:
    assert _70b(num_gpus=16, tensor_parallel=2, pipeline_parallel=4).data_parallel == 2


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"stack": "plain"}, "pipeline_parallel"),
        ({"batch_size": 6}, "batch_size"),  # 4 micro-batches by default, left unset
        ({"pipeline_microbatches": 3}, "pipeline_microbatches"),
        ({"num_gpus": 6}, "pipeline_parallel"),
        (  # 2 × 64 stages for 80 layers
            {"pipeline_parallel": 64, "pipeline_schedule": "interleaved_1f1b", "num_gpus": 64},
            "pipeline_parallel",
        ),
    ],
)
def test_bad_pipelines_name_their_field(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(NnmemError) as caught:
        _70b(**settings)
    assert key in [p.key for p in caught.value.problems]


def test_the_pipeline_keys_apply_only_where_read() -> None:
    assert not {"pipeline_parallel", "pipeline_schedule"} & set(_70b().inactive_fields())
    flat = set(_70b(pipeline_parallel=1).inactive_fields())
    assert {"pipeline_schedule", "pipeline_microbatches"} <= flat
    assert "pipeline_parallel" not in flat
    served = parse({"model": "preset", "preset": "llama-3.1-70b", "mode": "inference"})
    assert "pipeline_parallel" in served.inactive_fields()


def test_round_trip_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    s = _70b(pipeline_schedule="gpipe", pipeline_microbatches=8)
    assert parse(s.to_dict(compact=True)) == s
    args = ["--preset", "llama-3.1-70b", "--precision", "amp_bf16", "--stack", "fsdp2"]
    args += ["--batch-size", "8", "--num-gpus", "8", "--pipeline-parallel-size", "4"]
    args += ["--pipeline-schedule", "gpipe", "--pipeline-microbatches", "8", "--json"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '"pipeline_schedule": "gpipe"' in out
    assert "micro-batches of 1" in out


def test_the_form_reads_them() -> None:
    fields = {
        "describe": "fields",
        "preset": "llama-3.1-70b",
        "precision": "amp_bf16",
        "stack": "fsdp2",
        "batch_size": "8",
        "num_gpus": "8",
        "pipeline_parallel": "4",
        "pipeline_schedule": "interleaved_1f1b",
    }
    reading = read(fields)
    assert reading.scenario is not None
    assert reading.scenario.pipeline_parallel == 4
    assert "pipeline_schedule" not in reading.inactive
    flat = read({**fields, "pipeline_parallel": "1"})
    assert "pipeline_schedule" in flat.inactive


def test_the_largest_batch_is_whole_micro_batches() -> None:
    """The batch grows 4 sequences (the 4 micro-batches) at a time; each is valid."""
    s = _70b()
    best = max_batch(s, 1000 * 2**30, "h100-sxm-80gb")
    assert best > 0
    assert best % 4 == 0
    parse({**s.to_dict(), "batch_size": best})
