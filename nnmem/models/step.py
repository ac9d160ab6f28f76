"""What every model's builder shares: the step's states, its phases and what it returns.

Each builder returns a :class:`Built`: the phases with the terms live at each phase's
peak, notes for the reader and the bytes saved for backward. Training steps share one
composition (:func:`training_phases`); what differs between a parameter count, a
transformer and a CNN is what each saves and holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from nnmem import stacks
from nnmem.optimizers import Trainable, optimizer_memory
from nnmem.result import Phase, phases_of
from nnmem.scenario import (
    LABELS,
    Device,
    Finetune,
    FsdpDtype,
    Optimizer,
    OptimizerImpl,
    Precision,
    Scenario,
    Sharding,
    Stack,
    ZeroGrad,
    paged_applies,
)
from nnmem.terms import Term, fixed, product

HF_ANATOMY = (
    "Hugging Face Transformers docs, “Model training anatomy” "
    "(docs/source/en/model_memory_anatomy.md)"
)
KORTHIKANTI = (
    "Korthikanti et al. 2022, arXiv 2205.05198 §4.1 Eq. 1, without the s×s attention "
    "scores that memory-efficient attention never stores (Dao et al. 2022, arXiv "
    "2205.14135 §3.1)"
)
ZERO = "Rajbhandari et al. 2020, ZeRO, arXiv 1910.02054 §5"


@dataclass(frozen=True)
class Built:
    """What a builder gives the estimator: the phases of the step, notes, saved bytes."""

    phases: list[Phase]
    notes: list[str]
    saved_activation_bytes: int = 0
    host: tuple[Term, ...] = ()  # host (CPU) memory the stack keeps beside the GPU
    nvme: tuple[Term, ...] = ()  # swap files on NVMe (DeepSpeed's offload device nvme)


@dataclass
class Step:
    """What one training step holds, term by term, before it is split into phases."""

    weights: list[Term] = field(default_factory=list)
    casts: list[Term] = field(default_factory=list)
    gradients: list[Term] = field(default_factory=list)
    optimizer_state: list[Term] = field(default_factory=list)
    optimizer_step: list[Term] = field(default_factory=list)
    saved: list[Term] = field(default_factory=list)
    loss_saved: list[Term] = field(default_factory=list)
    forward_extra: list[Term] = field(default_factory=list)
    loss_extra: list[Term] = field(default_factory=list)
    backward_extra: list[Term] = field(default_factory=list)
    gathered: list[Term] = field(default_factory=list)  # all-gathered weights (fwd, bwd)
    in_backward: list[Term] = field(default_factory=list)  # buckets, re-gathered blocks
    accumulating: bool = False  # gradients stay between micro-batches
    grads_in_forward: bool = False  # the last step's gradients live through the forward


def apply_states(step: Step, st: States) -> Step:
    """``step`` with the stack's model states in it."""
    step.weights, step.gradients = st.weights, st.gradients
    step.optimizer_state, step.optimizer_step = st.state, st.step
    step.gathered, step.in_backward = st.gathered, st.backward
    if not st.autocast:
        step.casts = []
    return step


def training_phases(step: Step) -> list[Phase]:
    """Forward, loss, backward and optimizer step from what the step holds.

    Gradients are freed after every optimizer step (``zero_grad(set_to_none=True)``, the
    default since PyTorch 2.0), so they exist only from backward to the step, unless
    gradients accumulate over several micro-batches.
    """
    states = [*step.weights, *step.optimizer_state]
    kept = step.accumulating or step.grads_in_forward
    held = [*states, *step.casts, *(step.gradients if kept else []), *step.gathered]
    held_back = [
        *states,
        *step.casts,
        *(step.gradients if step.accumulating else []),
        *step.gathered,
        *step.in_backward,
    ]
    return phases_of(
        ("forward", [*held, *step.saved, *step.forward_extra]),
        ("loss", [*held, *step.saved, *step.loss_saved, *step.loss_extra]),
        ("backward", [*held_back, *step.saved, *step.loss_saved, *step.backward_extra]),
        ("optimizer_step", [*states, *step.gradients, *step.optimizer_step]),
    )


def gradients_held(s: Scenario) -> tuple[bool, bool]:
    """Whether gradients are alive (through the forward pass and loss, at the start of the
    backward pass), from where ``zero_grad`` runs and from gradient accumulation."""
    accumulating = s.grad_accum_steps > 1
    if s.zero_grad is ZeroGrad.SET_TO_ZERO:
        return True, True
    if s.zero_grad is ZeroGrad.BEFORE_BACKWARD:
        return True, accumulating
    return accumulating, accumulating


def param_bytes(precision: Precision) -> int:
    """Bytes per trained weight (and gradient) under a training precision."""
    return 2 if precision in (Precision.BF16, Precision.FP16) else 4


@dataclass
class States:
    """The model states of a step as the scenario's training stack holds them.

    ``gathered`` live through forward and backward (weights a sharded stack all-gathers),
    ``backward`` only in backward (gradient buckets, blocks gathered again); ``host`` is
    CPU memory. ``autocast`` is False where the stack computes in 16-bit weights of its
    own (FSDP2's MixedPrecisionPolicy, DeepSpeed's bf16/fp16), so autocast makes no copies.
    """

    weights: list[Term]
    gradients: list[Term]
    state: list[Term]
    step: list[Term]
    notes: list[str]
    gathered: list[Term] = field(default_factory=list)
    backward: list[Term] = field(default_factory=list)
    host: list[Term] = field(default_factory=list)
    nvme: list[Term] = field(default_factory=list)  # swap files on an NVMe drive
    autocast: bool = True
    stacked: bool = False  # taken from nnmem.stacks (a sharding stack)
    in_backward: bool = False  # the optimizer steps inside backward (stepped_in_backward)


def sizes_of(
    tensors: Sequence[Trainable], layers: int, persistence: int = stacks.DS_PERSISTENCE
) -> stacks.ModelSizes:
    """Sizes for :mod:`nnmem.stacks` from a list without names (a parameter count, a
    CNN): the layers split the parameters evenly, nothing outside them."""
    params = sum(t.elements for t in tensors)
    return stacks.ModelSizes(
        params=params,
        unit_params=params // max(layers, 1),
        root_params=0,
        largest_tensor=max((t.numel for t in tensors), default=0),
        persistent_params=sum(t.elements for t in tensors if t.numel < persistence),
        unquantized_params=0,
        units=layers,
    )


def zero_applies(s: Scenario) -> bool:
    """Whether DeepSpeed ZeRO holds the model states: the deepspeed stack, or a ZeRO
    stage asked of a single-process stack (the Trainer's DeepSpeed integration). ZeRO-1
    and ZeRO-2 take any step there (LoRA, any optimizer: :func:`nnmem.stacks.zero`), and
    so does ZeRO-3 under hf_trainer and trl_sft (``--deepspeed`` with stage 3: a frozen
    base partitioned too, :data:`nnmem.stacks.DS_ZERO3_FROZEN`). The plain loop's zero3
    with LoRA or another optimizer stays FSDP's FULL_SHARD, the reading the published
    torchtune and fsdp_qlora points (E7, E13) are encoded with."""
    if s.stack is Stack.DEEPSPEED:
        return True
    single = s.stack in (Stack.PLAIN, Stack.HF_TRAINER, Stack.TRL_SFT)
    if not single or s.sharding is Sharding.NONE:
        return False
    return s.sharding is not Sharding.ZERO3 or stackable(s) or s.stack is not Stack.PLAIN


def computes_in_16bit(s: Scenario) -> bool:
    """Whether the stack runs the step in 16-bit weights of its own, with no autocast, so
    every activation (the residual stream too) is 16-bit: FSDP2's
    ``MixedPrecisionPolicy(param_dtype=bf16)`` all-gathers 16-bit parameters and casts the
    forward inputs (torch/distributed/fsdp/_fully_shard/_fsdp_api.py MixedPrecisionPolicy,
    cast_forward_inputs=True; torchtitan torchtitan/distributed/utils.py maybe_enable_amp
    enters no autocast when FSDP is on), and DeepSpeed's bf16 or fp16 mode casts the
    module itself (deepspeed/runtime/engine.py DeepSpeedEngine._configure_distributed_model,
    module.bfloat16() or module.half())."""
    if s.stack is Stack.FSDP2 and s.fsdp_param_dtype is not FsdpDtype.AUTO:
        return s.fsdp_param_dtype is not FsdpDtype.FP32
    return s.precision.is_amp and (s.stack is Stack.FSDP2 or zero_applies(s))


def fsdp_computes_in_fp32(s: Scenario) -> bool:
    """Whether FSDP2 gathers pure 16-bit weights as fp32 (``fsdp_param_dtype: fp32``
    without autocast), so the forward computes in fp32."""
    return (
        s.stack is Stack.FSDP2
        and s.fsdp_param_dtype is FsdpDtype.FP32
        and not s.precision.is_amp
        and s.precision is not Precision.FP32
    )


_FSDP_BYTES = {FsdpDtype.FP32: 4, FsdpDtype.BF16: 2, FsdpDtype.FP16: 2}


def fsdp_dtypes(s: Scenario, stored: int) -> tuple[int, int | None]:
    """The bytes of FSDP2's param_dtype and reduce_dtype (None: the param dtype's) over
    parameters stored at ``stored`` bytes.

    PyTorch torch/distributed/fsdp/_fully_shard/_fsdp_api.py MixedPrecisionPolicy:
    param_dtype is the unsharded parameters' type (_fsdp_param.py
    FSDPParam.init_dtype_attrs, init_unsharded_param: ``self.param_dtype or
    self.orig_dtype``) and the forward's (cast_forward_inputs); reduce_dtype the
    reduce-scatter input's (_fsdp_collectives.py foreach_reduce: ``reduce_dtype or
    grad_dtype``), the sharded gradient going back to the stored type; each is clamped to
    None where it casts nothing (init_dtype_attrs).

    ``auto`` param: 16-bit under an AMP precision (torchtitan's mixed_precision_param
    bf16), else the stored type. ``auto`` reduce: fp32 where the parameters are gathered
    narrower than they are stored (torchtitan's mixed_precision_reduce float32), else the
    param dtype, MixedPrecisionPolicy's default.
    """
    amp = s.precision.is_amp
    param = _FSDP_BYTES.get(s.fsdp_param_dtype, 2 if amp else stored)
    reduce = _FSDP_BYTES.get(s.fsdp_reduce_dtype)
    if reduce is None and param < stored:
        reduce = 4
    return param, None if reduce == param else reduce


def stackable(s: Scenario) -> bool:
    """Whether :mod:`nnmem.stacks` models this step: full fine-tuning with AdamW."""
    return s.finetune is Finetune.FULL and s.optimizer is Optimizer.ADAMW


def effective_impl(s: Scenario) -> OptimizerImpl:
    """The AdamW kernel the stack runs: the Trainer's default ``optim`` is
    ``adamw_torch_fused`` (transformers training_args.py, torch >= 2.8)."""
    if s.stack in (Stack.HF_TRAINER, Stack.TRL_SFT) and s.optimizer is Optimizer.ADAMW:
        return OptimizerImpl.FUSED
    return s.optimizer_impl


def model_states(
    s: Scenario,
    tensors: Sequence[Trainable],
    frozen_bytes: int = 0,
    sizes: stacks.ModelSizes | None = None,
) -> States:
    """Weights, gradients, optimizer state and step temporaries, as the stack holds them.

    ``tensors`` are the trainable tensors at their stored width; ``frozen_bytes`` are the
    bytes of weights that are not trained (a LoRA base); ``sizes`` the model's sizes for
    the sharding stacks (from ``tensors`` when not given).
    """
    depth = getattr(s.model, "num_layers", None) or getattr(s.model, "layers", None)
    layers = depth if isinstance(depth, int) and depth > 0 else 1
    sizes = sizes or sizes_of(tensors, layers, s.stage3_param_persistence_threshold)
    dp = s.data_parallel
    width = tensors[0].bytes_per_value if tensors else 4
    impl = effective_impl(s).value
    if s.stack is Stack.FSDP2:
        # MixedPrecisionPolicy: by default torchtitan's, bf16 params reduced in fp32
        # (torchtitan/config/job_config.py mixed_precision_param, mixed_precision_reduce).
        param_dtype, reduce_dtype = fsdp_dtypes(s, width)
        fs = stacks.fsdp2(
            sizes,
            gpus=dp,
            param_bytes=width,
            compute_bytes=param_dtype,
            reduce_bytes=reduce_dtype,
            # torchtitan apply_fsdp does not reshard a pipeline stage's blocks after
            # forward, and the stage keeps them unsharded through backward, gradients
            # accumulating unsharded over the micro-batches (stacks.FSDP2_PIPELINE_GRAD).
            reshard_after_forward=s.reshard_after_forward and not s.pipelined,
            cpu_offload=s.cpu_offload,
            impl=impl,
            accumulate_unsharded=s.pipelined,
        )
        # autocast runs over gathered weights FSDP did not cast (an fp32 param_dtype)
        return _from_stack(fs, autocast=s.precision.is_amp and not computes_in_16bit(s))
    if zero_applies(s):
        low = 2 if s.precision.compute_bytes == 2 else 4
        stage = {Sharding.ZERO1: 1, Sharding.ZERO2: 2, Sharding.ZERO3: 3}[s.sharding]
        trainable, frozen, client = _zero_partial(s, tensors, frozen_bytes, dp)
        zs = stacks.zero(
            sizes,
            stage=stage,
            gpus=dp,
            low_bytes=low,
            reduce_bucket_size=s.reduce_bucket_size,
            prefetch_bucket_size=s.stage3_prefetch_bucket_size,
            max_live_parameters=s.stage3_max_live_parameters,
            overlap_comm=stage == 3,  # DeepSpeed's default turns it on for stage 3 only
            offload_optimizer=s.offload_optimizer,
            offload_param=s.offload_param and stage == 3,
            optimizer_device=s.offload_optimizer_device.value if s.offload_optimizer else "cpu",
            param_device=s.offload_param_device.value if s.offload_param and stage == 3 else "cpu",
            grad_accum_steps=s.grad_accum_steps,
            trainable=trainable,
            frozen=frozen,
            client_optimizer=client,
        )
        return _from_stack(zs, autocast=False)
    states = _legacy_states(s, tensors, frozen_bytes, impl)
    if (
        s.paged_optimizer
        and s.device is Device.CUDA
        and paged_applies(s.stack, s.sharding, s.optimizer)
    ):
        states = paged_states(s, tensors, states)
    if s.stack is Stack.DDP:
        p_train = sum(t.elements for t in tensors)
        dd = stacks.ddp(
            stacks.ModelSizes(p_train, 0, 0, 0),
            width,
            gradient_as_bucket_view=s.gradient_as_bucket_view,
        )
        bucket = [t for t in dd.states if t.key == "comm_buffers"]
        states.state = [*states.state, *bucket]
        if s.gradient_as_bucket_view:
            # param.grad are views of the bucket: no gradient memory of their own.
            states.gradients = []
        states.notes += [f"PyTorch DDP across {dp} GPUs; figures are per GPU.", *dd.notes]
    return states


def _zero_partial(
    s: Scenario, tensors: Sequence[Trainable], frozen_bytes: int, dp: int
) -> tuple[int | None, Term | None, tuple[Term, Term] | None]:
    """What :func:`nnmem.stacks.zero` needs beyond full fine-tuning with AdamW: the
    trained count Ψ_t and the frozen weights (LoRA), and the client optimizer's state and
    step over one rank's flat fp32 partition of ⌈Ψ_t/N⌉ values (another optimizer)."""
    trainable: int | None = None
    frozen: Term | None = None
    client: tuple[Term, Term] | None = None
    psi = sum(t.elements for t in tensors)
    if s.finetune is not Finetune.FULL:
        trainable = psi
        frozen = Term(
            "weights",
            "frozen base weights (no gradient, master or state)",
            frozen_bytes,
            "base weights at their format",
            f"{frozen_bytes:,} B",
            stacks.DS_TRAINABLE,
        )
    if s.optimizer is not Optimizer.ADAMW:
        # stage_1_and_2.py: partition_size = len(bit16_groups_flat) // world size, the flat
        # group padded to a multiple of the world size first.
        partition = Trainable((-(-psi // dp),), 4)
        opt = optimizer_memory(s.optimizer, s.optimizer_impl, [partition])
        client = (opt.state, opt.step)
    return trainable, frozen, client


BNB_PAGED = (
    "bitsandbytes optim/optimizer.py Optimizer8bit.get_state_buffer: state1 and state2 of a "
    "parameter of 100,000 values or more come from functional.py get_paged "
    "(cudaMallocManaged through cget_managed_ptr), outside PyTorch's caching allocator; "
    "smaller ones and the 8-bit absmax blocks (init_state) are ordinary CUDA tensors. "
    "PagedAdamW keeps 32-bit states (optim_bits=32) whatever the weights' type; the "
    "kernels update in place"
)
PAGED_MIN = 100_000  # get_state_buffer: p.numel() < 1e5 is not paged


def paged_states(s: Scenario, tensors: Sequence[Trainable], states: States) -> States:
    """``states`` with bitsandbytes' paged optimizer: the states of large parameters in
    unified memory, shown beside the GPU figure (PyTorch's counters never see them, and
    the driver pages them to the CPU when the GPU runs short), the rest on the GPU."""
    big = [t for t in tensors if t.numel >= PAGED_MIN]
    small = [t for t in tensors if t.numel < PAGED_MIN]
    if s.optimizer is Optimizer.ADAMW:
        on_gpu = sum(8 * t.elements for t in small)
        paged = sum(8 * t.elements for t in big)
        what, rule = "two fp32 moments", "8 B per value"
        kept = "two fp32 moments of the parameters under 100,000 values"
        how = "Σ 8 B per value under 100,000 values"
    else:
        on_gpu = optimizer_memory(s.optimizer, OptimizerImpl.FUSED, small).state.bytes
        on_gpu += sum(8 * -(-t.numel // 256) * t.count for t in big)
        paged = sum(2 * t.elements for t in big)
        what, rule = "two 8-bit moments", "2 B per value"
        kept = "8-bit states under 100,000 values and every fp32 absmax"
        how = "Σ 2·n + 8·⌈n/256⌉ B under 100,000 values (fp32 under 4,096), 8·⌈n/256⌉ B above"
    n_big = sum(t.elements for t in big)
    states.state = [fixed("optimizer_state", kept, on_gpu, how, BNB_PAGED)]
    states.step = []
    states.host = [
        *states.host,
        Term(
            "optimizer_state",
            f"paged {what} in unified memory (on the GPU while it has room, paged to the CPU "
            "when it runs short; not in PyTorch's counters)",
            paged,
            f"P_paged × {rule}",
            f"{n_big:,} × {rule}",
            BNB_PAGED,
        ),
    ]
    states.notes = [
        *states.notes,
        "Paged optimizer: bitsandbytes keeps the states of parameters of 100,000 values or "
        "more in unified memory, outside PyTorch's pool; they are shown beside the GPU "
        "figure, which counts what PyTorch allocates.",
    ]
    return states


TORCHTUNE_IN_BWD = (
    "torchtune torchtune/modules/optim.py OptimizerInBackward and training/memory.py "
    "register_optim_in_bwd_hooks: one optimizer per parameter, stepped by "
    "register_post_accumulate_grad_hook, whose zero_grad() frees the gradient at once "
    "(torch.distributed.optim._apply_optimizer_in_backward does the same)"
)


def stepped_in_backward(s: Scenario, tensors: Sequence[Trainable], states: States) -> States:
    """``states`` with the optimizer stepped inside backward, parameter by parameter.

    Each gradient is stepped and freed as soon as it is accumulated, so the largest
    parameter's gradient is the most alive at once, and each step's temporaries are that
    one tensor's (an optimizer over a single parameter); there is no step after backward
    with every gradient alive.
    """
    largest = max(tensors, key=lambda t: t.numel, default=None)
    if largest is None:
        return states
    one = Trainable(largest.shape, largest.bytes_per_value, 1)
    gradient = product(
        "gradients",
        "gradient of the largest parameter, stepped and freed in backward",
        [("P_largest", one.numel)],
        one.bytes_per_value,
        TORCHTUNE_IN_BWD,
    )
    step = optimizer_memory(s.optimizer, effective_impl(s), [one]).step
    step = replace(step, label=f"{step.label.split(':')[0]}, of the largest parameter alone")
    if not states.step:  # a step with no temporaries of its own (bitsandbytes' paged kernels)
        step = replace(step, bytes=0)
    note = (
        "Optimizer in backward: each parameter is stepped and its gradient freed as soon "
        "as backward makes it, so at most the largest gradient is alive and no step runs "
        "after backward."
    )
    states.gradients = [gradient]
    states.step = [step] if step.bytes else []
    states.notes = [*states.notes, note]
    states.in_backward = True
    return states


def _from_stack(st: stacks.StackStates, autocast: bool) -> States:
    weights = [t for t in st.states if t.key == "weights"]
    rest = [t for t in st.states if t.key != "weights"]
    return States(
        weights=weights,
        gradients=list(st.gradients),
        state=rest,
        step=list(st.step),
        notes=list(st.notes),
        gathered=list(st.gathered),
        backward=list(st.backward),
        host=list(st.cpu),
        nvme=list(st.nvme),
        autocast=autocast,
        stacked=True,
    )


def _legacy_states(
    s: Scenario, tensors: Sequence[Trainable], frozen_bytes: int, impl: str
) -> States:
    """One process's states, whole; with ``sharding: zero3`` on a step :mod:`nnmem.stacks`
    does not model (LoRA, optimizers other than AdamW) divided over the GPUs as FSDP's
    FULL_SHARD divides them. (ZeRO-1 and ZeRO-2 with such a step are DeepSpeed's, in
    :func:`nnmem.stacks.zero` with a frozen base or a client optimizer.)"""
    notes: list[str] = []
    n_params = sum(t.elements for t in tensors)
    width = tensors[0].bytes_per_value if tensors else 4
    precision = LABELS[s.precision]
    weights = [product("weights", f"{precision} weights", [("P", n_params)], width, HF_ANATOMY)]
    if frozen_bytes:
        weights = [
            Term(
                "weights",
                "frozen base weights",
                frozen_bytes,
                "base weights at their format",
                f"{frozen_bytes:,} B",
                HF_ANATOMY,
            ),
            product("weights", "trainable weights", [("P_train", n_params)], width, HF_ANATOMY),
        ]
    gradients = [
        product(
            "gradients",
            "one gradient per trainable weight",
            [("P_train", n_params)],
            width,
            HF_ANATOMY,
        )
    ]
    opt = optimizer_memory(s.optimizer, OptimizerImpl(impl), tensors)
    state = [opt.state] if opt.state.bytes else []
    step_terms = [opt.step]
    single = s.stack in (Stack.PLAIN, Stack.HF_TRAINER, Stack.TRL_SFT)
    sharded = s.sharding is Sharding.ZERO3 and single
    # FSDP shards over the data-parallel ranks: with tensor parallelism each rank already
    # holds 1/t of the model (applied by the caller), so the shard is 1/(N / t) of that.
    n = s.data_parallel if sharded else 1
    if n > 1:
        # torch/distributed/fsdp FULL_SHARD (ShardingStrategy): each rank keeps 1/N of the
        # flat parameters, of their gradients and of the optimizer state over them.
        shard = Fraction(1, n)
        note = f"÷ {n} data-parallel GPUs"
        state = [t.scaled(shard, note) for t in state]
        step_terms = [t.scaled(shard, note) for t in step_terms]
        gradients = [t.scaled(shard, note) for t in gradients]
        weights = [t.scaled(shard, note) for t in weights]
        notes.append(
            f"{LABELS[s.sharding]} across {n} data-parallel GPUs ({ZERO}); figures are per GPU."
        )
    host: list[Term] = []
    if s.cpu_offload and sharded:
        # torch/distributed/fsdp/api.py CPUOffload(offload_params=True): the sharded
        # flat parameters live on the CPU and are copied in for each unit's all-gather
        # (_flat_param.py FlatParamHandle), gradients are offloaded after the
        # reduce-scatter and the optimizer steps on the CPU.
        host = [*weights, *gradients, *state]
        weights, gradients, state, step_terms = [], [], [], []
        notes.append(
            "FSDP CPU offload: the parameter shards, their gradients, the optimizer state "
            "and its step live on the CPU; the GPU holds the gathered layers."
        )
    return States(weights, gradients, state, step_terms, notes, host=host)
