"""The training-stack options of the schema, each against values derived by hand.

The model is a bare count of Ψ = 10⁹ parameters, width 1,024, 8 layers, so every
model-state term is a round number: one FSDP unit is Ψ/8 = 1.25·10⁸ parameters.
Sources: nnmem/stacks.py (each term names the framework file and function).
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest

from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.result import Estimate
from nnmem.scenario import SETTINGS, STACK_KEYS, parse
from nnmem.web import handle
from nnmem.web.form import DEFAULT_FIELDS

PSI = 10**9
BILLION = {"params_millions": 1000, "hidden_size": 1024, "num_layers": 8, "seq_len": 128}


def run(**settings: Any) -> Estimate:
    return estimate(parse({**BILLION, **settings}))


def phase(e: Estimate, name: str) -> dict[str, int]:
    return next(p for p in e.phases if p.name == name).by_key()


def test_plain_loop_is_the_default() -> None:
    assert SETTINGS["stack"].value == "plain"
    assert run().to_dict() == run(stack="plain").to_dict()


def test_fused_adamw_has_no_step_temporaries() -> None:
    """torch._fused_adamw_ updates in place; foreach makes one P-sized copy (fp32: 4Ψ)."""
    foreach = phase(run(), "optimizer_step")
    fused = phase(run(optimizer_impl="fused"), "optimizer_step")
    assert foreach["temporaries"] == 4 * PSI
    assert "temporaries" not in fused
    assert sum(fused.values()) == 16 * PSI  # 4 + 4 + 8 bytes per parameter


def test_trainer_stacks_run_fused_adamw_whatever_optimizer_impl_says() -> None:
    """transformers training_args.py: the default optim is adamw_torch_fused."""
    for stack in ("hf_trainer", "trl_sft"):
        # fp32 without checkpointing, which trl_sft would default away from
        e = run(stack=stack, optimizer_impl="foreach", precision="fp32", checkpointing="none")
        assert e.to_dict()["phases"] == run(optimizer_impl="fused").to_dict()["phases"]
        assert "optimizer_impl" in e.scenario.inactive_fields()


def test_ddp_holds_a_bucket_copy_of_every_gradient() -> None:
    """reducer.cpp: buckets cover every gradient (4Ψ in fp32); with the default
    gradient_as_bucket_view=False param.grad is a second copy."""
    twice = phase(run(stack="ddp", num_gpus=2), "optimizer_step")
    assert twice["comm_buffers"] == 4 * PSI
    assert twice["gradients"] == 4 * PSI
    assert sum(twice.values()) == (4 + 8 + 4 + 4 + 4) * PSI  # + foreach temporaries
    view = phase(run(stack="ddp", num_gpus=2, gradient_as_bucket_view=True), "optimizer_step")
    assert "gradients" not in view
    assert view["comm_buffers"] == 4 * PSI


def test_zero1_shards_the_fp32_master_as_deepspeed_does() -> None:
    """stage_1_and_2.py: 2Ψ bf16 weights, 12Ψ/N master + m + v, 2Ψ/N gradient
    partition, the fp32 gradient partition 4Ψ/N in the step, the 5e8-value bucket."""
    e = run(stack="deepspeed", sharding="zero1", num_gpus=8, precision="amp_bf16")
    step = phase(e, "optimizer_step")
    assert step == {
        "weights": 2 * PSI,
        "optimizer_state": 12 * PSI // 8,
        "gradients": 2 * PSI // 8,
        "temporaries": 4 * PSI // 8,
    }
    assert phase(e, "backward")["comm_buffers"] == 2 * 500_000_000
    assert "autocast_copies" not in e.component_sizes()  # DeepSpeed's bf16 weights


def test_a_zero_stage_with_the_plain_loop_means_deepspeed() -> None:
    """The Trainer's DeepSpeed integration: the same states as the deepspeed stack."""
    ds = run(stack="deepspeed", sharding="zero2", num_gpus=4, precision="amp_bf16")
    plain = run(sharding="zero2", num_gpus=4, precision="amp_bf16")
    assert plain.to_dict()["phases"] == ds.to_dict()["phases"]


def test_reduce_bucket_size_sets_the_bucket() -> None:
    e = run(sharding="zero2", num_gpus=4, precision="amp_bf16", reduce_bucket_size=2 * 10**8)
    assert phase(e, "backward")["comm_buffers"] == 2 * 2 * 10**8


def test_offload_optimizer_moves_master_and_gradients_to_the_host() -> None:
    """ZeRO-2 offload: master, m, v (12Ψ/N) and the fp32 gradient (4Ψ/N) on the host;
    the GPU keeps the 16-bit weights only (gradients are copied out bucket by bucket)."""
    e = run(sharding="zero2", num_gpus=8, precision="amp_bf16", offload_optimizer=True)
    assert e.host_bytes == (12 + 4) * PSI // 8
    assert phase(e, "optimizer_step") == {"weights": 2 * PSI}
    assert e.to_dict()["host_bytes"] == 2 * PSI
    assert "host_bytes" not in run().to_dict()


def test_zero3_offload_param_keeps_the_partitions_on_the_host() -> None:
    """stage3.py: with both offloads the host holds master, m, v, the fp32 gradient,
    and the 16-bit gradient and parameter partitions: (12 + 4 + 2 + 2)Ψ/N."""
    e = run(
        sharding="zero3",
        num_gpus=8,
        precision="amp_bf16",
        offload_optimizer=True,
        offload_param=True,
    )
    assert e.host_bytes == 20 * PSI // 8
    assert "optimizer_state" not in e.component_sizes()


def test_fsdp2_shards_and_gathers_one_unit_at_a_time() -> None:
    """fully_shard with a bf16 MixedPrecisionPolicy over fp32 shards on 4 ranks: 4Ψ/4
    weights, 8Ψ/4 m and v, 4Ψ/4 gradients; forward keeps the last unit's all-gather
    output (Ψ/8 × 2 B); backward gathers the current and the prefetched unit on top,
    and holds one unit's unsharded gradients in the fp32 reduce type."""
    e = run(stack="fsdp2", num_gpus=4, precision="amp_bf16")
    unit = PSI // 8
    assert phase(e, "forward")["gathered_weights"] == unit * 2
    assert phase(e, "backward")["gathered_weights"] == unit * 2 + 2 * unit * 2
    assert phase(e, "backward")["gradients"] == unit * 4
    step = phase(e, "optimizer_step")
    assert step["weights"] == PSI
    assert step["optimizer_state"] == 2 * PSI
    assert step["gradients"] == PSI
    assert "autocast_copies" not in e.component_sizes()


def test_fsdp2_without_reshard_keeps_every_unit() -> None:
    e = run(stack="fsdp2", num_gpus=4, precision="amp_bf16", reshard_after_forward=False)
    unit = PSI // 8
    assert phase(e, "forward")["gathered_weights"] == 8 * unit * 2 + unit * 2


def test_fsdp2_cpu_offload_moves_shards_gradients_and_state_to_the_host() -> None:
    e = run(stack="fsdp2", num_gpus=4, precision="amp_bf16", cpu_offload=True)
    # fp32 shards, m and v, gradients, and the foreach step's copy of the shard
    assert e.host_bytes == (4 + 8 + 4 + 4) * PSI // 4
    assert "optimizer_state" not in e.component_sizes()


def test_qlora_on_the_trainer_casts_16_bit_weights_to_fp32() -> None:
    """peft prepare_model_for_kbit_training: Llama 3 8B's embeddings and head
    (2 × 128,256 × 4,096) and 65 norms of 4,096 go from 2 to 4 bytes: +2.1 GB."""
    base = {"model": "preset", "preset": "llama-3-8b", "finetune": "lora", "precision": "nf4"}
    plain = estimate(parse(base)).component_sizes()["weights"]
    trainer = estimate(parse({**base, "stack": "hf_trainer"})).component_sizes()["weights"]
    assert trainer - plain == 2 * (2 * 128_256 * 4096 + 65 * 4096)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"stack": "hf_trainer"},
        {"stack": "ddp", "num_gpus": 4},
        {"stack": "fsdp2", "num_gpus": 4, "precision": "amp_bf16"},
        {"stack": "deepspeed", "sharding": "zero1", "num_gpus": 4},
        {"stack": "deepspeed", "sharding": "zero3", "num_gpus": 4},
        {"sharding": "zero3", "num_gpus": 4, "optimizer": "sgd_momentum"},
        {"sharding": "zero2", "num_gpus": 4, "optimizer": "sgd_momentum"},
        {"sharding": "zero1", "num_gpus": 4, "optimizer": "adamw_8bit", "precision": "amp_bf16"},
        {"sharding": "zero3", "num_gpus": 4, "optimizer": "adamw_8bit", "precision": "amp_bf16"},
        {"mode": "inference", "precision": "bf16"},
    ],
)
def test_hidden_fields_do_not_change_the_estimate(settings: dict[str, Any]) -> None:
    """Every key the scenario calls inactive, set away from its default, changes nothing."""
    others = {
        "gradient_as_bucket_view": True,
        "reshard_after_forward": False,
        "cpu_offload": True,
        "offload_param": True,
        "offload_optimizer": True,
        "reduce_bucket_size": 12345,
        "stage3_prefetch_bucket_size": 0,
        "stage3_max_live_parameters": 1000,
        "stage3_param_persistence_threshold": 10**9,
        "torch_compile": True,
        "context_parallel": 2,
        "optimizer_impl": "for_loop",
        "sharding": "zero2",
        "stack": "ddp",
    }
    e = run(**settings)
    off = set(e.scenario.inactive_fields())
    for key, value in others.items():
        if key in off:
            changed = run(**settings, **{key: value})
            assert changed.to_dict()["phases"] == e.to_dict()["phases"], key
            assert changed.host_bytes == e.host_bytes, key


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ({}, set()),
        ({"stack": "ddp"}, {"stack", "gradient_as_bucket_view"}),
        (
            {"stack": "fsdp2"},
            {
                "stack",
                "reshard_after_forward",
                "cpu_offload",
                "fsdp_param_dtype",
                "fsdp_reduce_dtype",
            },
        ),
        ({"stack": "deepspeed", "sharding": "zero2"}, {"stack", "reduce_bucket_size"}),
        ({"sharding": "zero2", "optimizer": "sgd_momentum"}, {"stack", "reduce_bucket_size"}),
        (
            {"stack": "deepspeed", "sharding": "zero3"},
            {
                "stack",
                "reduce_bucket_size",
                "offload_param",
                "stage3_prefetch_bucket_size",
                "stage3_max_live_parameters",
                "stage3_param_persistence_threshold",
            },
        ),
    ],
)
def test_each_stack_shows_its_own_options(settings: dict[str, Any], shown: set[str]) -> None:
    off = set(parse({**BILLION, **settings}).inactive_fields())
    assert {k for k in STACK_KEYS if k not in off} == shown | {"stack"}


def test_stack_problems_name_the_field() -> None:
    with pytest.raises(NnmemError) as error:
        parse({**BILLION, "stack": "deepspeed"})
    assert error.value.problems[0].key == "sharding"
    assert "zero1, zero2 or zero3" in error.value.problems[0].message
    lora = {"model": "preset", "preset": "llama-3-8b", "finetune": "lora", "stack": "fsdp2"}
    with pytest.raises(NnmemError) as error:
        parse(lora)
    assert error.value.problems[0].key == "stack"
    with pytest.raises(NnmemError) as error:
        parse({**BILLION, "stack": "megatron"})
    assert "Training stack" in str(error.value)


def test_the_page_hides_stack_options_that_do_not_apply() -> None:
    def hidden(fields: dict[str, str]) -> set[str]:
        reply = json.loads(handle(json.dumps({"fields": {**DEFAULT_FIELDS, **fields}})))
        return set(reply["inactive"])

    plain = hidden({})
    assert {"gradient_as_bucket_view", "reshard_after_forward", "offload_param"} <= plain
    assert "offload_optimizer" in plain
    ddp = hidden({"stack": "ddp", "num_gpus": "2"})
    assert "gradient_as_bucket_view" not in ddp
    assert "sharding" in ddp
    ds = hidden({"stack": "deepspeed", "sharding": "zero3", "num_gpus": "8"})
    assert not {"offload_param", "offload_optimizer", "reduce_bucket_size"} & ds


def test_per_op_selective_checkpointing_keeps_torchtitans_save_list() -> None:
    """torchtitan's per-op SAC on a Llama 3 8B block in bf16 keeps, per token: the
    block input (h), the q, v, gate and down outputs (q + kv + f + h) and the attention
    output (a·d) at 2 B, and the log-sum-exp (a) at 4 B: 2·31,744 + 4·32 = 63,616 B."""
    e = estimate(
        parse(
            {
                "model": "preset",
                "preset": "llama-3-8b",
                "precision": "bf16",
                "seq_len": 1024,
                "checkpointing": "per_op",
            }
        )
    )
    forward = next(p for p in e.phases if p.name == "forward")
    saved = next(t for t in forward.terms if "per-op" in t.label)
    assert saved.bytes == 32 * 1024 * (2 * (4096 + 4096 + 1024 + 14336 + 4096 + 4096) + 4 * 32)
    assert "torchtitan" in saved.source


def test_per_op_on_a_parameter_count() -> None:
    """The GPT shape keeps 9·h values per token and layer (input, q, v, up 4h, down,
    attention output): 8 layers × 128 tokens × 9 × 1,024 × 4 B in fp32."""
    e = run(checkpointing="per_op")
    assert e.component_sizes()["activations"] == 8 * 128 * 9 * 1024 * 4


def test_every_nth_layer_checkpointing() -> None:
    """torchtitan layer SAC with n = 4 on Llama 3 8B (32 layers): ⌊32/4⌋ = 8 layers keep
    only their 2-byte input (1,024 × 4,096 × 2 B each), the other 24 everything a layer
    saves without checkpointing (a quarter of the 'none' figure times 3)."""
    base = {"model": "preset", "preset": "llama-3-8b", "precision": "bf16", "seq_len": 1024}

    def saved(**more: Any) -> dict[str, int]:
        e = estimate(parse({**base, **more}))
        forward = next(p for p in e.phases if p.name == "forward")
        return {t.label: t.bytes for t in forward.terms if t.key == "activations"}

    per_layer = saved()["saved per layer"] // 32
    got = saved(checkpointing="every_n", checkpoint_every=4)
    assert got["saved by the 24 layers not checkpointed"] == 24 * per_layer
    assert got["checkpointed input of every 4th layer"] == 8 * 1024 * 4096 * 2


def test_every_nth_layer_on_a_parameter_count() -> None:
    """n = 2 on 8 GPT-shaped layers in fp32: 4 layers keep 4·s·b·h, 4 keep 66·s·b·h."""
    e = run(checkpointing="every_n")
    assert e.component_sizes()["activations"] == 4 * 128 * 1024 * 4 + 4 * 128 * 1024 * 66


def test_checkpoint_every_shows_only_with_every_n() -> None:
    assert "checkpoint_every" in parse(BILLION).inactive_fields()
    shown = parse({**BILLION, "checkpointing": "every_n"}).inactive_fields()
    assert "checkpoint_every" not in shown
    assert run(checkpoint_every=3).to_dict()["phases"] == run().to_dict()["phases"]


LLAMA_8B = {"model": "preset", "preset": "llama-3.1-8b", "precision": "amp_bf16"}


def _term(e: Estimate, phase_name: str, label: str) -> int:
    found = next(p for p in e.phases if p.name == phase_name)
    return sum(t.bytes for t in found.terms if t.label == label)


@pytest.mark.parametrize(
    ("stack", "width"),
    [("plain", 4), ("fsdp2", 2), ("deepspeed", 2)],
)
def test_stacks_that_cast_the_model_keep_16_bit_layer_inputs(stack: str, width: int) -> None:
    """Autocast leaves the residual stream in fp32; FSDP2's MixedPrecisionPolicy and
    DeepSpeed's bf16 mode run the forward in bf16 weights with no autocast, so the input
    each checkpointed layer keeps is bf16: 32 layers × 2 × 1,024 × 4,096 × width."""
    extra = {"sharding": "zero3"} if stack == "deepspeed" else {}
    e = estimate(
        parse(
            {
                **LLAMA_8B,
                "stack": stack,
                "num_gpus": 8,
                "batch_size": 2,
                "seq_len": 1024,
                "checkpointing": "full",
                **extra,
            }
        )
    )
    kept = _term(e, "loss", "saved checkpointed input")
    assert kept == 32 * 2 * 1024 * 4096 * width


def test_tensor_parallel_splits_the_blocks_fsdp2_gathers_in_backward() -> None:
    """FSDP2 over tensor-parallel DTensors gathers each rank's 1/t of a block: the
    current and the prefetched Llama 3.1 8B block, 2 × 218,112,000 × 2 B ÷ 2."""
    e = estimate(parse({**LLAMA_8B, "stack": "fsdp2", "num_gpus": 8, "tensor_parallel": 2}))
    gathered = _term(e, "backward", "unsharded current block and 1 prefetched")
    assert gathered == 2 * 218_112_000 * 2 // 2


LORA_FSDP = {
    "model": "preset",
    "preset": "llama-2-7b",
    "finetune": "lora",
    "num_gpus": 2,
    "sharding": "zero3",
    "checkpointing": "full",
}
# Llama 2 7B, one decoder layer: 4 · 4096² + 3 · 4096 · 11008 + 2 · 4096 = 202,383,360.
LLAMA2_LAYER = 202_383_360


@pytest.mark.parametrize(
    ("precision", "per_value"),
    [("bf16", Fraction(2)), ("nf4_dq", Fraction(2113, 4096))],  # NF4 with quantized scales
)
def test_fsdp_gathers_a_frozen_base_in_its_stored_format(
    precision: str, per_value: Fraction
) -> None:
    """torch/distributed/fsdp/_flat_param.py FlatParamHandle.unshard: a unit is gathered
    in its stored dtype, with no gradient for a frozen weight; BACKWARD_PRE gathers the
    next unit ahead: 2 × 202,383,360 × bytes per value."""
    e = estimate(parse({**LORA_FSDP, "precision": precision}))
    kept = _term(e, "loss", "gathered frozen layers, current and prefetched")
    assert kept == int(2 * LLAMA2_LAYER * per_value)


def test_fsdp_cpu_offload_of_a_lora_run_keeps_only_the_gathered_layers() -> None:
    """FSDP CPUOffload(offload_params=True): the shards (the 4-bit base, the adapters),
    their gradients and AdamW's state go to the host; the GPU holds the gathered layers.
    Host: (3,865,591,808 B of NF4 base + 8,388,608 adapter values × (4 + 4 + 8) B) ÷ 2."""
    on_gpu = estimate(parse({**LORA_FSDP, "precision": "nf4_dq"}))
    offload = estimate(parse({**LORA_FSDP, "precision": "nf4_dq", "cpu_offload": True}))
    assert "cpu_offload" not in offload.scenario.inactive_fields()
    labels = [t.label for t in offload.component("weights").terms]
    assert labels == ["gathered frozen layers, current and prefetched"]
    moved = (
        sum(on_gpu.component_sizes()[k] for k in ("weights", "gradients", "optimizer_state"))
        - offload.component_sizes()["weights"]
    )
    assert sum(t.bytes for t in offload.host) == moved == 1_999_904_768


# Llama 3.1 8B (P = 8,030,261,248): LoRA r = 16 on q (4,096 → 4,096) and v (4,096 →
# 1,024, 8 KV heads of 128) in 32 layers: A is (16, in), B is (out, 16), so per layer
# 16·4,096 + 4,096·16 + 16·4,096 + 1,024·16 = 212,992 and Ψ_t = 32 × 212,992.
LLAMA31_P = 8_030_261_248
LORA_PSI = 32 * (16 * 4096 + 4096 * 16 + 16 * 4096 + 1024 * 16)
LORA_ZERO = {
    "model": "preset",
    "preset": "llama-3.1-8b",
    "finetune": "lora",
    "lora_rank": 16,
    "lora_targets": "qv",
    "precision": "amp_bf16",
    "stack": "hf_trainer",
    "sharding": "zero2",
    "num_gpus": 4,
    "seq_len": 1024,
}


def test_zero2_with_lora_partitions_only_the_trained_parameters() -> None:
    """HF Trainer + DeepSpeed ZeRO-2 + LoRA on 4 GPUs (stage_1_and_2.py
    DeepSpeedZeroOptimizer.__init__ groups only requires_grad parameters; engine.py
    _cast_module_mixed_precision casts the fp32 base to bf16): the frozen base 2P whole
    and the adapters' 16-bit group 2Ψ_t on every GPU; the fp32 master, m and v 12Ψ_t/4;
    the gradient partition 2Ψ_t/4; the fp32 gradient 4Ψ_t/4 in the step; the full
    5·10⁸-value bf16 reduce bucket in backward."""
    assert LORA_PSI == 6_815_744
    e = estimate(parse(LORA_ZERO))
    assert phase(e, "optimizer_step") == {
        "weights": 2 * LLAMA31_P + 2 * LORA_PSI,
        "optimizer_state": 12 * LORA_PSI // 4,
        "gradients": 2 * LORA_PSI // 4,
        "temporaries": 4 * LORA_PSI // 4,
    }
    assert 2 * LLAMA31_P + 2 * LORA_PSI == 16_074_153_984
    assert phase(e, "backward")["comm_buffers"] == 2 * 500_000_000
    assert "autocast_copies" not in e.component_sizes()
    assert e.host_bytes == 0
    # The same DeepSpeed states whichever stack drives it.
    for stack in ("plain", "trl_sft", "deepspeed"):
        other = estimate(parse({**LORA_ZERO, "stack": stack}))
        assert phase(other, "optimizer_step") == phase(e, "optimizer_step"), stack


def test_zero1_with_lora_keeps_whole_gradients_while_accumulating() -> None:
    """Stage 1 reduces at the accumulation boundary (stage_1_and_2.py reduce_gradients),
    so over 2 micro-steps each GPU keeps the whole 16-bit gradient 2Ψ_t."""
    e = estimate(parse({**LORA_ZERO, "sharding": "zero1", "grad_accum_steps": 2}))
    assert phase(e, "optimizer_step")["gradients"] == 2 * LORA_PSI == 13_631_488
    assert phase(e, "optimizer_step")["optimizer_state"] == 12 * LORA_PSI // 4


def test_zero2_offload_with_lora_moves_the_adapters_master_and_state() -> None:
    """offload_optimizer: master, m, v (12Ψ_t/4) and the fp32 gradient (4Ψ_t/4) on the
    host; the GPU keeps the frozen base and the adapters' 16-bit group."""
    e = estimate(parse({**LORA_ZERO, "offload_optimizer": True}))
    assert e.host_bytes == 16 * LORA_PSI // 4 == 27_262_976
    assert phase(e, "optimizer_step") == {"weights": 16_074_153_984}


def test_qlora_under_zero2_keeps_the_4bit_base_and_undoes_the_fp32_casts() -> None:
    """engine.py _cast_module_mixed_precision casts float16/bfloat16/float32 parameters
    to bf16: Params4bit's uint8 storage stays, prepare_model_for_kbit_training's fp32
    embeddings, norms and head go back to 16-bit, and the fp32 adapters (4Ψ_t without
    ZeRO) become a 2Ψ_t group."""
    qlora = {**LORA_ZERO, "precision": "nf4"}
    unsharded = {**qlora, "sharding": "none", "stack": "plain"}
    base = estimate(parse(unsharded)).component_sizes()["weights"] - 4 * LORA_PSI
    zero2 = estimate(parse(qlora))
    assert phase(zero2, "optimizer_step")["weights"] == base + 2 * LORA_PSI
    assert phase(zero2, "optimizer_step")["optimizer_state"] == 12 * LORA_PSI // 4


@pytest.mark.parametrize(
    ("settings", "state", "temporaries"),
    [
        # bitsandbytes' uint8 m and v with an fp32 absmax per 256 values over the
        # partition n = Ψ/4 = 2.5·10⁸ (⌈n/256⌉ = 976,563); fused kernels, no temporaries.
        ({"optimizer": "adamw_8bit"}, 4 * PSI // 4 + 2 * PSI // 4 + 8 * 976_563, 0),
        # torch SGD's momentum over the partition, the foreach step's one copy of it.
        ({"optimizer": "sgd_momentum", "stack": "hf_trainer"}, 8 * PSI // 4, 4 * PSI // 4),
        # Adafactor cannot factor a 1-D partition: a full fp32 second moment, and two fp32
        # copies of the (fp32) partition in its step.
        ({"optimizer": "adafactor", "sharding": "zero1"}, 8 * PSI // 4, 8 * PSI // 4),
    ],
)
def test_zero12_runs_a_client_optimizer_over_the_fp32_partition(
    settings: dict[str, Any], state: int, temporaries: int
) -> None:
    """engine.py _configure_optimizer takes the client optimizer as basic_optimizer;
    stage_1_and_2.py points its param_groups at single_partition_of_fp32_groups, so its
    state is one flat fp32 tensor of Ψ/4 values beside the master 4Ψ/4."""
    e = run(**{"sharding": "zero2", "num_gpus": 4, "precision": "amp_bf16", **settings})
    step = phase(e, "optimizer_step")
    assert step["weights"] == 2 * PSI
    assert step["optimizer_state"] == state
    assert step["gradients"] == 2 * PSI // 4
    assert step["temporaries"] == 4 * PSI // 4 + temporaries


def test_client_optimizer_offload_puts_its_state_on_the_host() -> None:
    """8-bit AdamW with offload_optimizer: master, the 8-bit states and the fp32 gradient
    partition in host RAM; the GPU keeps the 16-bit weights."""
    e = run(
        sharding="zero2",
        num_gpus=4,
        precision="amp_bf16",
        optimizer="adamw_8bit",
        offload_optimizer=True,
    )
    assert e.host_bytes == 4 * PSI // 4 + 2 * PSI // 4 + 8 * 976_563 + 4 * PSI // 4
    assert phase(e, "optimizer_step") == {"weights": 2 * PSI}


# Llama 3.1 8B under ZeRO-3: the norms (2·32 + 1 of 4,096 values) and every adapter
# matrix (16·4,096, 4,096·16, 1,024·16 values, all under 10⁵) are below the persistence
# threshold, so kept whole: 65 · 4,096 + Ψ_t = 7,081,984 values.
LORA_SMALL = 65 * 4096 + LORA_PSI


def test_deepspeed_zero3_with_lora_partitions_the_frozen_base_too() -> None:
    """DeepSpeed ZeRO-3 + LoRA on 4 GPUs: partition_parameters.py Init partitions every
    parameter, the bf16-cast frozen base 2P/4 as well as the adapters 2Ψ_t/4 (engine.py
    _cast_module_mixed_precision); stage3.py __init__ builds the fp32 partitions from
    requires_grad parameters only: master, m and v 12Ψ_t/4, the gradient partition
    2Ψ_t/4, the fp32 gradient 4Ψ_t/4 in the step. The gathered window is the model's:
    max_live_parameters (10⁹) × 2 B, below the embedding's 525,336,576 + 5·10⁷ + 5·10⁸."""
    e = estimate(parse({**LORA_ZERO, "stack": "deepspeed", "sharding": "zero3"}))
    weights = {t.label: t.bytes for t in e.component("weights").terms}
    assert weights == {
        "frozen base partitions": 2 * LLAMA31_P // 4,
        "2-byte trainable parameters": 2 * LORA_PSI // 4,
        "small parameters kept whole (persistence threshold)": 2 * LORA_SMALL,
    }
    assert (2 * LLAMA31_P // 4, 2 * LORA_PSI // 4) == (4_015_130_624, 3_407_872)
    assert 2 * LORA_SMALL == 14_163_968
    step = phase(e, "optimizer_step")
    assert step["optimizer_state"] == 12 * LORA_PSI // 4 == 20_447_232
    assert step["gradients"] == 2 * LORA_PSI // 4
    assert step["temporaries"] == 4 * LORA_PSI // 4
    assert phase(e, "forward")["gathered_weights"] == 2 * 10**9
    assert "offload_optimizer" not in e.scenario.inactive_fields()


def test_trainer_zero3_with_lora_is_deepspeed_and_the_plain_loop_stays_fsdp() -> None:
    """sharding on hf_trainer and trl_sft is their DeepSpeed integration, so ZeRO-3 + LoRA
    holds the same states as the deepspeed stack (the frozen base 2P/4 partitioned, no
    FSDP flat parameters) and reads DeepSpeed's keys; the plain loop keeps FSDP's
    FULL_SHARD reading, which offloads with cpu_offload instead."""
    z3 = {**LORA_ZERO, "sharding": "zero3"}
    ds = phase(estimate(parse({**z3, "stack": "deepspeed"})), "optimizer_step")
    for stack in ("hf_trainer", "trl_sft"):
        e = estimate(parse({**z3, "stack": stack}))
        assert phase(e, "optimizer_step") == ds, stack
        off = e.scenario.inactive_fields()
        assert "offload_param" not in off
        assert "offload_optimizer" not in off
        assert "cpu_offload" in off
    plain = parse({**z3, "stack": "plain"})
    assert "cpu_offload" not in plain.inactive_fields()
    assert "offload_optimizer" in plain.inactive_fields()
    weights = {t.label for t in estimate(plain).component("weights").terms}
    assert "frozen base partitions" not in weights


def test_deepspeed_zero3_offload_with_lora_moves_the_trained_partitions() -> None:
    """offload_optimizer under ZeRO-3: master, m, v 12Ψ_t/4, the fp32 gradient 4Ψ_t/4 and
    the 16-bit gradient partitions 2Ψ_t/4 on the host; offload_param adds every 16-bit
    partition, the frozen base 2P/4 and the adapters 2Ψ_t/4."""
    z3 = {**LORA_ZERO, "stack": "deepspeed", "sharding": "zero3", "offload_optimizer": True}
    e = estimate(parse(z3))
    assert e.host_bytes == 18 * LORA_PSI // 4 == 30_670_848
    both = estimate(parse({**z3, "offload_param": True}))
    assert both.host_bytes == 18 * LORA_PSI // 4 + 2 * LLAMA31_P // 4 + 2 * LORA_PSI // 4


@pytest.mark.parametrize(
    ("optimizer", "state", "temporaries"),
    [
        # bitsandbytes' uint8 m and v with an fp32 absmax per 256 values over ⌈Ψ/4⌉.
        ("adamw_8bit", 4 * PSI // 4 + 2 * PSI // 4 + 8 * 976_563, 4 * PSI // 4),
        # torch SGD's momentum over the partition and the foreach step's copy of it.
        ("sgd_momentum", 8 * PSI // 4, 8 * PSI // 4),
    ],
)
def test_deepspeed_zero3_runs_a_client_optimizer_over_the_fp32_partition(
    optimizer: str, state: int, temporaries: int
) -> None:
    """stage3.py _optimizer_step points the client optimizer at this rank's flat fp32
    partition: its own state over Ψ/4 values beside the master 4Ψ/4; 16-bit parameters
    and gradients 2Ψ/4 each."""
    e = run(
        sharding="zero3", num_gpus=4, precision="amp_bf16", optimizer=optimizer, stack="deepspeed"
    )
    step = phase(e, "optimizer_step")
    assert step["optimizer_state"] == state
    assert step["temporaries"] == temporaries
    assert step["gradients"] == 2 * PSI // 4
    labels = {t.label: t.bytes for t in e.component("weights").terms}
    assert labels["2-byte parameters"] == 2 * PSI // 4


def test_deepspeed_zero3_with_qlora_is_refused_naming_sharding() -> None:
    with pytest.raises(NnmemError) as error:
        parse({**LORA_ZERO, "stack": "deepspeed", "sharding": "zero3", "precision": "nf4"})
    problem = error.value.problems[0]
    assert problem.key == "sharding"
    assert "bnb_4bit_quant_storage" in problem.message
    assert "set sharding to zero1 or zero2" in problem.message


def test_a_sharded_step_the_stacks_do_not_model_offloads_as_fsdp_does() -> None:
    """SGD with momentum under sharding zero3 is FSDP's FULL_SHARD: with
    CPUOffload(offload_params=True) the host holds the fp32 parameter shard, its gradient
    and the momentum, (4 + 4 + 4)Ψ/4 on 4 GPUs, and nothing of them stays on the GPU.
    FSDP has no optimizer-only offload, so offload_optimizer is hidden and changes nothing
    (it had dropped the state alone, with no host memory, keeping weights and gradients)."""
    base = {"optimizer": "sgd_momentum", "sharding": "zero3", "num_gpus": 4}
    e = run(**base, cpu_offload=True)
    assert e.host_bytes == 12 * PSI // 4
    assert not {"weights", "gradients", "optimizer_state"} & set(phase(e, "optimizer_step"))
    s = parse({**BILLION, **base})
    assert "offload_optimizer" in s.inactive_fields()
    assert "cpu_offload" not in s.inactive_fields()
    plain = run(**base)
    assert plain.host_bytes == 0
    assert phase(plain, "optimizer_step")["optimizer_state"] == 4 * PSI // 4
    offload = run(**base, offload_optimizer=True)
    assert offload.to_dict()["phases"] == plain.to_dict()["phases"]
    assert offload.host_bytes == 0


def test_fsdp_offload_of_an_8bit_step_holds_its_states_on_the_host() -> None:
    """Llama 3.1 8B (P = 8,030,261,248), AMP, 8-bit AdamW, zero3 (FSDP) on 4 GPUs with
    CPUOffload: the host holds the fp32 weights and gradients, 4P/4 each, and bitsandbytes'
    two uint8 moments with an fp32 absmax per 256 values (every tensor is a multiple of
    4,096 values, so none stays 32-bit), (2 + 8/256)P/4 = 65P/128."""
    p = 8_030_261_248
    e = estimate(
        parse(
            {
                "model": "preset",
                "preset": "llama-3.1-8b",
                "precision": "amp_bf16",
                "optimizer": "adamw_8bit",
                "sharding": "zero3",
                "num_gpus": 4,
                "seq_len": 1024,
                "cpu_offload": True,
            }
        )
    )
    assert e.host_bytes == p + p + 65 * p // 128 == 20_138_389_536


def test_zero12_with_a_client_optimizer_reads_offload_optimizer_and_its_impl() -> None:
    """DeepSpeed's offload_optimizer applies to a LoRA or non-AdamW step under ZeRO-1/2;
    the client optimizer runs its own kernel, so optimizer_impl is read too."""
    off = parse({**BILLION, "sharding": "zero2", "optimizer": "sgd_momentum"}).inactive_fields()
    assert "offload_optimizer" not in off
    assert "optimizer_impl" not in off
    lora = parse({**LORA_ZERO, "stack": "plain"}).inactive_fields()
    assert "offload_optimizer" not in lora
    assert "cpu_offload" in lora
