"""Model states per stack (nnmem.stacks), against values worked out by hand.

Llama 3.1 8B: Ψ = 8,030,261,248 parameters; embeddings and the untied head are
128,256 × 4,096 each; 65 RMSNorm weights of 4,096 (two per layer, one final).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nnmem import stacks
from nnmem.stacks import ModelSizes
from nnmem.terms import Term

PSI = 8_030_261_248
EMBED = 128_256 * 4_096  # 525,336,576
LAYER = (PSI - 2 * EMBED - 4_096) // 32  # one decoder layer: 218,112,000
LLAMA3_8B = ModelSizes(
    params=PSI,
    unit_params=LAYER,
    root_params=2 * EMBED + 4_096,
    largest_tensor=EMBED,
    persistent_params=65 * 4_096,
    unquantized_params=2 * EMBED + 65 * 4_096,
    units=32,
)


def test_layer_size_is_llama_3_8b():
    # attention 4096·4096·2 + 4096·1024·2 = 41,943,040; MLP 3·4096·14336 = 176,160,768;
    # two norms 8,192.
    assert LAYER == 41_943_040 + 176_160_768 + 8_192


def test_zero1_holds_whole_16bit_params_and_a_partition_of_the_rest():
    s = stacks.zero(LLAMA3_8B, stage=1, gpus=8)
    step = s.by_key("optimizer_step")
    assert step["weights"] == 2 * PSI == 16_060_522_496
    assert step["gradients"] == 2 * PSI // 8  # reduced at the boundary of every step
    assert step["optimizer_state"] == 12 * PSI // 8 == 12_045_391_872
    assert step["temporaries"] == 4 * PSI // 8 == 4_015_130_624
    # one reduce bucket of 5e8 two-byte values, in backward only
    assert "comm_buffers" not in step
    assert s.by_key("backward")["comm_buffers"] == 1_000_000_000
    accumulating = stacks.zero(LLAMA3_8B, stage=1, gpus=8, grad_accum_steps=4)
    assert accumulating.by_key("optimizer_step")["gradients"] == 2 * PSI
    doubled = stacks.zero(LLAMA3_8B, stage=1, gpus=8, overlap_comm=True)
    assert doubled.by_key("backward")["comm_buffers"] == 2_000_000_000


def test_zero2_model_states_equal_deepspeeds_estimate():
    # estimate_zero2_model_states_mem_needs: 2Ψ + 18Ψ/N without offload.
    s = stacks.zero(ModelSizes(10**9, 10**7, 10**8, 10**7), stage=2, gpus=4, reduce_bucket_size=0)
    assert s.gpu_bytes("optimizer_step") == 2 * 10**9 + 18 * 10**9 // 4 == 6_500_000_000


def test_zero2_offload_keeps_only_16bit_params_and_bucket_on_gpu():
    s = stacks.zero(ModelSizes(10**9, 10**7, 10**8, 10**7), stage=2, gpus=4, offload_optimizer=True)
    assert s.gpu_bytes("optimizer_step") == 2 * 10**9
    assert s.gpu_bytes("backward") == 2 * 10**9 + 10**9  # the reduce bucket
    # fp32 master, m, v (12 B) and fp32 gradient (4 B) per parameter, 1/4 per rank
    assert s.cpu_bytes == 16 * 10**9 // 4 == 4_000_000_000


def test_zero3_shards_everything_and_gathers_a_layer_plus_prefetch():
    s = stacks.zero(LLAMA3_8B, stage=3, gpus=8)
    forward = s.by_key("forward")
    # 16-bit partitions, and the 65 norm vectors (under 1e5 values) whole on each rank
    assert forward["weights"] == 2 * PSI // 8 + 65 * 4_096 * 2 == 2_008_097_792
    # the largest module (the 525M embedding or head), the 5e7 prefetch bucket and half
    # the 1e9 reuse distance exceed max_live_parameters: 1e9 16-bit values
    assert forward["gathered_weights"] == 2_000_000_000
    # one reduce bucket, allocated at start
    assert forward["comm_buffers"] == 500_000_000 * 2


def test_zero3_with_both_offloads_leaves_gathered_params_and_buckets():
    s = stacks.zero(LLAMA3_8B, stage=3, gpus=8, offload_optimizer=True, offload_param=True)
    small = 65 * 4_096 * 2
    assert s.gpu_bytes("optimizer_step") == 1_000_000_000 + small
    assert s.gpu_bytes("forward") == 1_000_000_000 + small + 2_000_000_000
    # fp32 master, m, v and gradient (16 B), 16-bit gradients and parameters (4 B), ÷ 8
    assert s.cpu_bytes == 16 * PSI // 8 + 2 * PSI // 8 + 2 * PSI // 8


def test_max_live_parameters_caps_the_gathered_params():
    s = stacks.zero(LLAMA3_8B, stage=3, gpus=8, max_live_parameters=100_000_000)
    assert s.by_key("forward")["gathered_weights"] == 200_000_000
    # no reuse window: the largest module and the prefetch bucket
    s = stacks.zero(LLAMA3_8B, stage=3, gpus=8, max_reuse_distance=0)
    assert s.by_key("forward")["gathered_weights"] == 2 * (EMBED + 50_000_000)


def test_ddp_bucket_copy():
    sizes = ModelSizes(5_000_000, 700_000, 2_000_000, 1_000_000)
    copy = stacks.ddp(sizes)
    view = stacks.ddp(sizes, gradient_as_bucket_view=True)
    # weights 20 MB + m, v 40 MB + buckets 20 MB all the time; grads 20 MB more without views
    assert copy.gpu_bytes("forward") == view.gpu_bytes("forward") == 80_000_000
    assert copy.gpu_bytes("optimizer_step") == 80_000_000 + 20_000_000 + 20_000_000
    assert view.gpu_bytes("optimizer_step") == 80_000_000 + 20_000_000
    assert stacks.plain(sizes).gpu_bytes("optimizer_step") == 100_000_000


def test_fsdp2_gathered_units():
    sizes = ModelSizes(5_000_000, 700_000, 2_000_000, 1_000_000, units=4)
    s = stacks.fsdp2(sizes, gpus=2, prefetch_units=1)
    # forward's peak: root 2M + the kept all-gather output 0.7M, fp32
    assert s.by_key("forward")["gathered_weights"] == (2_000_000 + 700_000) * 4
    # backward: + current and prefetched block 1.4M, + one block's gradients 0.7M
    backward = s.by_key("backward")
    assert backward["gathered_weights"] == (2_000_000 + 700_000 + 1_400_000) * 4
    assert backward["gradients"] == (2_500_000 + 700_000) * 4
    assert s.by_key("forward")["weights"] == 10_000_000
    assert s.by_key("optimizer_step")["temporaries"] == 10_000_000  # foreach, the shard
    full = stacks.fsdp2(sizes, gpus=2, reshard_after_forward=False, compute_bytes=2)
    # bf16 MixedPrecisionPolicy: root + 4 blocks + the kept output, two bytes each
    assert full.by_key("forward")["gathered_weights"] == (2_000_000 + 4 * 700_000 + 700_000) * 2
    mixed = stacks.fsdp2(sizes, gpus=2, compute_bytes=2, reduce_bytes=4)
    assert mixed.by_key("backward")["gradients"] == 2_500_000 * 4 + 700_000 * 4


def test_fsdp2_cpu_offload_moves_shards_and_step_to_the_host():
    sizes = ModelSizes(5_000_000, 700_000, 2_000_000, 1_000_000, units=4)
    s = stacks.fsdp2(sizes, gpus=2, cpu_offload=True, prefetch_units=0)
    assert s.gpu_bytes("optimizer_step") == 0
    assert s.gpu_bytes("forward") == (2_000_000 + 700_000) * 4
    # shards, m and v, gradients and the foreach step's copy of the shard, Ψ/N each
    assert s.cpu_bytes == (1 + 2 + 1 + 1) * 2_500_000 * 4


@pytest.mark.parametrize(("impl", "expected"), [("fused", 0), ("foreach", 40), ("for_loop", 24)])
def test_adamw_step_temporaries(impl, expected):
    assert stacks.adamw_step_temporaries(impl, 10, 4, 3).bytes == expected


def test_kbit_casts_add_two_gigabytes_for_llama_3_8b():
    term = stacks.kbit_fp32_casts(LLAMA3_8B)
    # embeddings + head + 65 norms = 1,050,939,392 values, 2 more bytes each
    assert term.bytes == 2_101_878_784
    assert "prepare_model_for_kbit_training" in term.source


def test_sizes_from_a_tensor_list():
    t = SimpleNamespace
    tensors = [
        t(name="embed.weight", numel=128_256 * 4_096, count=1),
        t(name="layers.*.attn.q_proj.weight", numel=4_096 * 4_096, count=32),
        t(name="layers.*.attn.k_proj.weight", numel=1_024 * 4_096, count=32),
        t(name="layers.*.attn.v_proj.weight", numel=1_024 * 4_096, count=32),
        t(name="layers.*.attn.o_proj.weight", numel=4_096 * 4_096, count=32),
        t(name="layers.*.mlp.gate_proj.weight", numel=14_336 * 4_096, count=32),
        t(name="layers.*.mlp.up_proj.weight", numel=14_336 * 4_096, count=32),
        t(name="layers.*.mlp.down_proj.weight", numel=4_096 * 14_336, count=32),
        t(name="layers.*.norm0.weight", numel=4_096, count=32),
        t(name="layers.*.norm1.weight", numel=4_096, count=32),
        t(name="final_norm.weight", numel=4_096, count=1),
        t(name="lm_head.weight", numel=128_256 * 4_096, count=1),
    ]
    assert ModelSizes.from_tensors(tensors, layers=32) == LLAMA3_8B


def test_bad_stage_and_offload_are_named():
    sizes = ModelSizes(1_000, 100, 100, 100)
    with pytest.raises(ValueError, match="stage"):
        stacks.zero(sizes, stage=4, gpus=2)
    with pytest.raises(ValueError, match="offload_param"):
        stacks.zero(sizes, stage=2, gpus=2, offload_param=True)
    with pytest.raises(ValueError, match="AdamW implementation"):
        stacks.adamw_step_temporaries("fast", 1, 4, 1)


def test_zero3_step_makes_one_sub_group_of_fp32_gradients_at_a_time():
    """stage3.py: _prepare_sub_group gives one sub-group (sub_group_size, 1e9 values) its
    fp32 gradient and _release_sub_group frees it before the next: Llama 3.1 8B on one
    GPU (8.03e9 values in the partition) holds 4 GB of fp32 gradients at the step, not 32."""
    s = stacks.zero(LLAMA3_8B, stage=3, gpus=1)
    assert s.by_key("optimizer_step")["temporaries"] == 4 * 10**9
    # Below one sub-group the whole partition is one: 8.03e9 / 16 values, 4 B each.
    s16 = stacks.zero(LLAMA3_8B, stage=3, gpus=16)
    assert s16.by_key("optimizer_step")["temporaries"] == 4 * LLAMA3_8B.params // 16


def _zero_lora_parts(optimizer: str, psi: int) -> tuple[Term, tuple[Term, Term] | None]:
    """benchmarks/stacks/zero_lora.py's frozen base (1,975,552 parameters in bf16) and,
    for a client optimizer other than AdamW, its state and step over the Ψ_t/2 adapter
    elements of one rank, as stacks.zero takes them."""
    from nnmem.optimizers import Trainable, optimizer_memory
    from nnmem.scenario import Optimizer, OptimizerImpl
    from nnmem.terms import fixed

    frozen = fixed("weights", "frozen base", 3_951_104, "3,951,104 B")
    if optimizer == "adamw":
        return frozen, None
    opt = optimizer_memory(Optimizer(optimizer), OptimizerImpl.FUSED, [Trainable((psi // 2,), 4)])
    return frozen, (opt.state, opt.step)


@pytest.mark.parametrize(
    ("optimizer", "measured_state"),
    [("adamw", 57_344), ("sgd_momentum", 28_672)],
)
@pytest.mark.parametrize("stage", [1, 2])
def test_zero12_with_lora_matches_deepspeed_on_the_cpu(
    stage: int, optimizer: str, measured_state: int
) -> None:
    """benchmarks/stacks/zero_lora.py (DeepSpeed 0.19.8, peft LoRA r = 8 on q and v of a
    2-layer Llama, a torch client optimizer, bf16, 2 ranks): Ψ_t = 14,336 adapter values
    and 1,975,552 frozen, all bf16 after deepspeed.initialize (3,951,104 B); per rank
    bit16_groups_flat 28,672 B, the fp32 partition 28,672 B, the optimizer's tensor state
    57,344 B (AdamW) or 28,672 B (SGD's momentum)."""
    psi = 14_336
    frozen, client = _zero_lora_parts(optimizer, psi)
    s = stacks.zero(
        ModelSizes(psi, psi // 2, 0, 4096),
        stage=stage,
        gpus=2,
        reduce_bucket_size=0,
        trainable=psi,
        frozen=frozen,
        client_optimizer=client,
    )
    held = s.by_key("forward")
    assert held["weights"] == 3_951_104 + 28_672
    assert held["optimizer_state"] == 28_672 + measured_state


@pytest.mark.parametrize(
    ("optimizer", "measured_state"),
    [("adamw", 57_344), ("sgd_momentum", 28_672)],
)
def test_zero3_with_lora_matches_deepspeed_on_the_cpu(optimizer: str, measured_state: int) -> None:
    """benchmarks/stacks/zero_lora.py with stage 3 (DeepSpeed 0.19.8, the same 2-layer
    Llama, LoRA r = 8 on q and v, 2 ranks, bf16): every parameter partitioned, the frozen
    ones' ds_tensor 1,975,552 B per rank (2 × 1,975,552 ÷ 2) and the adapters' 14,336 B
    (2Ψ_t ÷ 2); fp32_partitioned_groups_flat 28,672 B (4Ψ_t ÷ 2); the optimizer's tensor
    state 57,344 B (AdamW) or 28,672 B (SGD's momentum)."""
    psi = 14_336
    frozen, client = _zero_lora_parts(optimizer, psi)
    s = stacks.zero(
        # persistent_params 0: the partitions alone, as ds_tensor holds them.
        ModelSizes(psi + 1_975_552, 0, 0, 262_144, persistent_params=0),
        stage=3,
        gpus=2,
        reduce_bucket_size=0,
        prefetch_bucket_size=0,
        max_reuse_distance=0,
        trainable=psi,
        frozen=frozen,
        client_optimizer=client,
    )
    weights = {t.label: t.bytes for t in s.states if t.key == "weights"}
    assert weights == {"frozen base partitions": 1_975_552, "2-byte trainable parameters": 14_336}
    held = s.by_key("forward")
    assert held["optimizer_state"] == 28_672 + measured_state
