"""nnmem.stacks against the CPU runs in benchmarks/stacks/measured_stacks.json and
against DeepSpeed's own model-state estimators (their numbers recorded in the same file).

The runs use one small Llama (vocabulary 4,096, hidden 256, MLP 688, 4 layers, 4 heads,
2 KV heads, untied head), batch 2 × 128 tokens, over 2 gloo processes where distributed.
Its sizes, by hand:

- a layer: attention 2·256² + 2·128·256 = 196,608, MLP 3·256·688 = 528,384, two norms
  512: 725,504;
- the root: embedding and head 2·4,096·256 = 2,097,152, final norm 256: 2,097,408;
- Ψ = 4·725,504 + 2,097,408 = 4,999,424; the largest tensor 1,048,576;
- tensors under DeepSpeed's 1e5 persistence threshold: q, k, v, o (65,536, 32,768,
  32,768, 65,536) per layer and 9 norms: 788,736 values;
- what a 4-bit load leaves in 16-bit: the root and the 8 layer norms, 2,099,456.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nnmem import stacks
from nnmem.stacks import ModelSizes

DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "stacks" / "measured_stacks.json"
MEASURED: dict[str, Any] = json.loads(DATA.read_text())["cases"]

PSI = 4_999_424
SIZES = ModelSizes(
    params=PSI,
    unit_params=725_504,
    root_params=2_097_408,
    largest_tensor=1_048_576,
    persistent_params=788_736,
    unquantized_params=2_099_456,
    units=4,
)
# torch.optim keeps a 4-byte step counter per parameter tensor: 39 tensors here.
STEP_COUNTERS = 39 * 4
# Live at every step beside the model states: the step counters, the rotary inv_freq
# buffers (2 × 32 fp32) and the batch's token ids (2 × 128 int64).
OTHER = STEP_COUNTERS + 256 + 2_048
# FSDP2 also keeps a few bytes of its own per rank (measured: 40).
SHARD_PADDING = 40


def rank0(case: str) -> dict[str, Any]:
    return MEASURED[case]["ranks"][0]


def phase(case: str, name: str) -> dict[str, int]:
    return rank0(case)["phases"][name]


def forward_activations(case: str) -> int:
    """Bytes forward and loss add over the step's start (activations, logits, loss)."""
    p = phase(case, "forward")
    return p["peak_bytes"] - p["start_bytes"]


def test_sizes_match_the_run():
    assert MEASURED["plain.adamw_foreach"]["param_numel"] == PSI
    fsdp = MEASURED["fsdp2.reshard_true"]
    assert (fsdp["layer_numel"], fsdp["root_numel"]) == (725_504, 2_097_408)


# --- plain loop: AdamW's step --------------------------------------------------------------


@pytest.mark.parametrize(
    ("impl", "tolerance"),
    # the for-loop step also holds a 1 KiB scalar temporary beside its two copies
    [("foreach", 0), ("fused", 0), ("for_loop", 1024)],
)
def test_adamw_step_temporaries(impl: str, tolerance: int):
    p = phase(f"plain.adamw_{impl}", "optimizer_step")
    modelled = stacks.adamw_step_temporaries(impl, PSI, 4, SIZES.largest_tensor).bytes
    assert abs((p["peak_bytes"] - p["start_bytes"]) - modelled) <= tolerance


def test_plain_model_states():
    s = stacks.plain(SIZES)
    assert phase("plain.adamw_foreach", "forward")["start_bytes"] == (
        s.gpu_bytes("forward") + OTHER
    )
    assert phase("plain.adamw_foreach", "optimizer_step")["peak_bytes"] == (
        s.gpu_bytes("optimizer_step") + OTHER
    )


# --- DDP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("view", [False, True])
def test_ddp_bucket_copy(view: bool):
    case = f"ddp.bucket_view_{str(view).lower()}"
    s = stacks.ddp(SIZES, gradient_as_bucket_view=view)
    for rank in MEASURED[case]["ranks"]:
        assert rank["ddp_constructor_bytes"] == s.by_key("forward")["comm_buffers"] == 4 * PSI
        assert rank["phases"]["forward"]["start_bytes"] == s.gpu_bytes("forward") + OTHER
        assert rank["phases"]["optimizer_step"]["peak_bytes"] == (
            s.gpu_bytes("optimizer_step") + OTHER
        )


# --- FSDP2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reshard", [True, False])
def test_fsdp2_sharded_states_and_gathered_blocks(reshard: bool):
    case = f"fsdp2.reshard_{str(reshard).lower()}"
    # CPU collectives are synchronous: no block is gathered ahead.
    s = stacks.fsdp2(SIZES, gpus=2, reshard_after_forward=reshard, prefetch_units=0)
    r = rank0(case)
    # sharded fp32 parameters and AdamW states (each rank's step counters too)
    assert (
        r["phases"]["forward"]["start_bytes"]
        == s.gpu_bytes("forward") - sum(t.bytes for t in s.gathered) + OTHER + SHARD_PADDING
    )
    # what forward holds beyond the plain loop's activations: the gathered parameters
    gathered = forward_activations(case) - forward_activations("plain.adamw_foreach")
    assert gathered == s.by_key("forward")["gathered_weights"]
    assert r["after_backward"]["grads"] == s.by_key("optimizer_step")["gradients"]
    assert r["phases"]["optimizer_step"]["peak_bytes"] == (
        s.gpu_bytes("optimizer_step") + OTHER + SHARD_PADDING
    )


def test_fsdp2_mixed_precision_keeps_fp32_shards():
    s = stacks.fsdp2(SIZES, gpus=2, compute_bytes=2, reduce_bytes=4, prefetch_units=0)
    r = rank0("fsdp2.mixed_bf16_reduce_fp32")
    assert r["param_bytes"] == s.by_key("forward")["weights"] == 2 * PSI
    assert r["optimizer_state_bytes"] == s.by_key("forward")["optimizer_state"] + STEP_COUNTERS
    # the unsharded root and the kept all-gather output in bf16, beyond the activations
    # of the same model computed in pure bf16
    gathered = forward_activations("fsdp2.mixed_bf16_reduce_fp32") - forward_activations(
        "plain.bf16_adamw_foreach"
    )
    assert gathered == s.by_key("forward")["gathered_weights"] == (2_097_408 + 725_504) * 2


def test_fsdp2_cpu_offload_runs_and_holds_the_same_bytes_on_a_cpu():
    # Host and device are one memory here: the offloaded run holds what the plain one
    # does, so only the split (not checkable on a CPU) differs.
    offload, plain = rank0("fsdp2.cpu_offload"), rank0("fsdp2.reshard_true")
    assert offload["phases"] == plain["phases"]


# --- HF Trainer and TRL ---------------------------------------------------------------------


def test_hf_trainer_defaults_to_fused_adamw():
    r = MEASURED["hf_trainer.defaults"]
    # Trainer's step peaks where the plain loop does with the same batch (fp32, no
    # checkpointing): its default adds no memory of its own.
    plain = max(p["peak_bytes"] for p in rank0("plain.adamw_fused")["phases"].values())
    assert r["peak_bytes"] == pytest.approx(plain, rel=0.005)
    assert (r["optim"], r["fused"], r["gradient_checkpointing"]) == (
        "adamw_torch_fused",
        True,
        False,
    )
    assert r["optimizer_state_bytes"] == 8 * PSI + STEP_COUNTERS


def test_trl_sft_defaults():
    r = MEASURED["trl_sft.defaults"]
    assert (r["optim"], r["fused"], r["gradient_checkpointing"], r["bf16"]) == (
        "adamw_torch_fused",
        True,
        True,
        True,
    )
    assert r["sft_defaults"]["packing"] is False
    assert r["sft_defaults"]["padding_free"] is False
    assert r["sft_defaults"]["loss_type"] == "nll"


# --- peft ----------------------------------------------------------------------------------


def test_prepare_model_for_kbit_training_casts():
    r = MEASURED["peft.kbit_casts"]
    term = stacks.kbit_fp32_casts(SIZES)
    assert r["unquantized_numel"] == r["fp32_numel_after"] == SIZES.unquantized_params
    assert r["live_after"] - r["live_before"] == term.bytes == 2 * 2_099_456


# --- DeepSpeed on its CPU accelerator --------------------------------------------------------


@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_zero12_buffers(stage: int):
    r = rank0(f"deepspeed.zero{stage}")
    assert r["ran"], r.get("error")
    s = stacks.zero(SIZES, stage=stage, gpus=2)
    found = r["structures"]
    assert found["bit16_groups_flat"] == s.by_key("forward")["weights"] == 2 * PSI
    assert found["single_partition_of_fp32_groups"] + found["adam_state"] == (
        s.by_key("forward")["optimizer_state"] + STEP_COUNTERS // 39
    )
    # Backward adds the 16-bit gradient partition and, for a moment, the 1 GB bucket.
    grads = r["after_backward"] - r["phases"]["forward"]["start_bytes"]
    assert grads == pytest.approx(s.by_key("optimizer_step")["gradients"], rel=0.03)
    bucket = r["phases"]["backward"]["peak_bytes"] - r["phases"]["forward"]["start_bytes"]
    assert bucket == pytest.approx(s.by_key("backward")["comm_buffers"], rel=0.07)


@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_zero12_keeps_a_second_16bit_copy(stage: int):
    """Measured, and in neither DeepSpeed's estimator nor nnmem: with bf16 on the CPU
    accelerator, the 16-bit tensors ``module.bfloat16()`` made stay referenced after
    ``bit16_groups_flat`` takes their place, one more 2Ψ."""
    r = rank0(f"deepspeed.zero{stage}")
    s = stacks.zero(SIZES, stage=stage, gpus=2)
    extra = r["phases"]["forward"]["start_bytes"] - s.gpu_bytes("forward")
    assert extra == pytest.approx(2 * PSI, rel=0.001)


def test_deepspeed_zero3_states_and_gathered_parameters():
    r = rank0("deepspeed.zero3")
    assert r["ran"], r.get("error")
    s = stacks.zero(SIZES, stage=3, gpus=2)
    found = r["structures"]
    assert found["fp16_partitioned_groups_flat"] == PSI
    assert found["grad_partitions_flat_buffer"] == PSI
    assert found["module_parameters"] == 2 * SIZES.persistent_params
    start = r["phases"]["forward"]["start_bytes"]
    # the model states, the token ids (2,048 B) and a few bytes of scalars
    assert start - (s.gpu_bytes("forward") - s.by_key("forward")["gathered_weights"]) == (
        pytest.approx(2_048, abs=64)
    )
    # Same forward as ZeRO-1 (bf16): the difference is the gathered parameters, here
    # every non-persistent one (the model is within the prefetch and reuse windows).
    gathered = forward_activations("deepspeed.zero3") - forward_activations("deepspeed.zero1")
    assert gathered == s.by_key("forward")["gathered_weights"] == 2 * (PSI - 788_736)


# --- DeepSpeed's estimators --------------------------------------------------------------------


ROWS = MEASURED["deepspeed.estimators"]["rows"]


def _sizes(row: dict[str, Any], persistent: int = 0) -> ModelSizes:
    largest = row.get("largest_layer_params", 0)
    return ModelSizes(row["params"], 0, 0, largest, persistent_params=persistent)


@pytest.mark.parametrize("row", [r for r in ROWS if r["stage"] == 2], ids=str)
def test_zero2_matches_deepspeeds_estimate(row: dict[str, Any]):
    s = stacks.zero(
        _sizes(row),
        stage=2,
        gpus=row["gpus"],
        reduce_bucket_size=0,
        offload_optimizer=row["cpu_offload"],
    )
    # estimate_zero2_model_states_mem_needs: 2Ψ + 18Ψ/N on the GPU, or 2Ψ with offload;
    # nnmem's step phase holds the same (2Ψ/N gradients, 12Ψ/N states, 4Ψ/N fp32 grads).
    assert s.gpu_bytes("optimizer_step") == pytest.approx(row["gpu_bytes"], abs=row["gpus"])
    if row["cpu_offload"]:
        # DeepSpeed: Ψ · max(4·N, 16) · 1.5 for the node; nnmem: 16Ψ/N per rank, N ranks,
        # without DeepSpeed's 1.5 buffer factor.
        node = s.cpu_bytes * row["gpus"]
        assert row["cpu_bytes"] == pytest.approx(
            max(4 * row["gpus"], 16) / 16 * 1.5 * node, rel=1e-6
        )


@pytest.mark.parametrize("row", [r for r in ROWS if r["stage"] == 3], ids=str)
def test_zero3_against_deepspeeds_estimate(row: dict[str, Any]):
    n = row["gpus"]
    s = stacks.zero(
        _sizes(row),
        stage=3,
        gpus=n,
        reduce_bucket_size=0,
        offload_optimizer=row["cpu_offload"],
        offload_param=row.get("cpu_offload_params", False),
    )
    sharded = s.gpu_bytes("optimizer_step")
    largest = row["largest_layer_bytes"]  # DeepSpeed's 4 B × the largest layer
    if not row["cpu_offload"]:
        # DeepSpeed: 18Ψ/N; nnmem adds the 16-bit grad_partitions_flat_buffer, 2Ψ/N,
        # which the ZeRO-3 run above holds from the first step on, and counts the fp32
        # gradient of one optimizer sub-group at a time (stage3.py _release_sub_group
        # frees each before the next), where the estimator counts the whole 4Ψ/N.
        psi_n = row["params"] / n
        fp32_grad = 4 * min(psi_n, stacks.DS_SUB_GROUP)
        assert row["gpu_bytes"] - largest == pytest.approx(
            sharded - 2 * psi_n - fp32_grad + 4 * psi_n, abs=n
        )
    elif row["cpu_offload_params"]:
        assert row["gpu_bytes"] == largest
        assert sharded == 0
        # DeepSpeed: 18Ψ · 1.5 on the host; nnmem: 12 + 4 + 2 (parameters) + 2 (16-bit
        # gradients) per parameter.
        assert row["cpu_bytes"] == pytest.approx(1.5 * 18 / 20 * s.cpu_bytes * n, rel=1e-6)
    else:
        assert row["gpu_bytes"] - largest == pytest.approx(sharded, abs=n)


# --- the rows the accuracy page shows ---------------------------------------------------------


def test_fsdp2_cpu_offload_host_holds_shards_gradients_state_and_step():
    # One memory on a CPU: at the step's peak the host holds the fp32 shard (4Ψ/2), its
    # AdamW m and v (8Ψ/2), the sharded gradients (4Ψ/2) and the foreach step's copy of
    # the shard (4Ψ/2): 10Ψ, nothing on the device.
    s = stacks.fsdp2(SIZES, gpus=2, cpu_offload=True, prefetch_units=0)
    peak = phase("fsdp2.cpu_offload", "optimizer_step")["peak_bytes"]
    assert peak - OTHER - SHARD_PADDING == s.cpu_bytes == 10 * PSI == 49_994_240
    assert s.gpu_bytes("optimizer_step") == 0


def _small_llama(**settings: Any) -> int:
    from content_helpers import SMALL_LLAMA
    from nnmem.estimate import estimate
    from nnmem.scenario import parse

    return estimate(parse(SMALL_LLAMA | settings)).tensor_peak_bytes


def test_hf_trainer_run_peaks_where_the_hf_trainer_stack_does():
    # The run's rows are 127 tokens (a word-level tokenizer without special tokens), all
    # of one length, so no padding mask: nnmem 93,898,024 B; the run also holds the
    # batch's attention_mask and a separate labels tensor (2 × 2 × 127 × 8 = 4,064 B),
    # the step counters (156 B), rotary buffers (256 B) and a few Trainer scalars.
    nnmem = _small_llama(stack="hf_trainer", seq_len=127, packing="off")
    assert nnmem == 93_898_024
    assert MEASURED["hf_trainer.defaults"]["peak_bytes"] - nnmem == 10_600


def test_trl_run_peaks_in_trls_fused_head():
    # nnmem's trl_sft stack with TRL's defaults (bf16 autocast over fp32 weights,
    # checkpointing, fused AdamW) at the run's 128 tokens, with TRL's fused LM head; the
    # run peaks 28.6 MB above it, in the head's backward, where the CPU's torch-ops folds
    # hold fp32 tiles that nnmem does not count (benchmarks/stacks/trl_fused_head.py).
    nnmem = _small_llama(stack="trl_sft", seq_len=128, packing="off")
    assert MEASURED["trl_sft.defaults"]["peak_bytes"] == 115_410_320
    assert nnmem == 86_840_486


def test_trl_fused_head_matches_the_run_without_the_cpu_folds():
    # benchmarks/stacks/trl_fused_head.py --stub-folds: the same run with the CPU-only
    # fold helpers stubbed. nnmem's loss phase is the head's forward (the backbone,
    # the 254 × 32,768 bf16 tile, the bf16 casts of the hidden states and the head, the
    # saved fp32 hidden states); backward's start adds the fp32 gradients of the hidden
    # states and the head. Both within 12.5 kB: the batch tensors and counters of the run.
    from content_helpers import SMALL_LLAMA
    from nnmem.estimate import estimate
    from nnmem.scenario import parse

    figures = json.loads(DATA.with_name("trl_fused_head.json").read_text(encoding="utf-8"))
    stubbed, defaults = figures["stub_folds"], figures["defaults"]
    assert defaults["backward_peak"] == MEASURED["trl_sft.defaults"]["peak_bytes"]
    e = estimate(parse(SMALL_LLAMA | {"stack": "trl_sft", "seq_len": 128, "packing": "off"}))
    by_phase = {p.name: p.bytes for p in e.phases}
    assert by_phase["loss"] == 86_840_486
    assert by_phase["backward"] == 85_226_710
    assert stubbed["forward_peak"] - by_phase["loss"] == 10_684
    assert stubbed["backward_peak"] - by_phase["backward"] == 12_474
    # the CPU folds: 11,432,920 B in forward, 30,171,136 B in backward
    assert defaults["forward_peak"] - stubbed["forward_peak"] == 11_432_920
    assert defaults["backward_peak"] - stubbed["backward_peak"] == 30_171_136


def test_accuracy_page_rows():
    from content_helpers import deepspeed_estimator_rows, stack_runs

    runs = {r["run"] for r in stack_runs()}
    assert {
        "HF Trainer, default TrainingArguments",
        "TRL SFTTrainer, default SFTConfig",
        "FSDP2, CPUOffloadPolicy",
    } <= runs
    ds = deepspeed_estimator_rows(8)
    assert len(ds) == 15  # 3 models × (ZeRO-2, ZeRO-2 offload, ZeRO-3 and its 2 offloads)
    off = [r for r in ds if r["error"] != 0.0]
    assert [(r["model"], r["stage"], r["offload"]) for r in off] == [
        ("small-llama", 3, "none"),
        ("llama-3.1-8b", 3, "none"),
        ("llama-3.1-70b", 3, "none"),
    ]
