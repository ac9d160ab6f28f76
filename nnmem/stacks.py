"""Model states per GPU as each training stack really holds them.

A plain PyTorch loop keeps one copy of everything: weights, gradients, optimizer state.
The stacks people train with keep other copies, in other types, sharded by other rules.
Each function here takes the model's sizes and the stack's settings and returns a
:class:`StackStates`: the terms one GPU holds at each phase of a step, and what the host
holds beside it, every term citing the file and function that allocates it.

Terms use :class:`~nnmem.terms.Term`, so the estimate's phases can take them as they are.
Besides the estimate's component keys (``weights``, ``gradients``, ``optimizer_state``,
``temporaries``) two keys are new: ``gathered_weights`` (parameters a sharded stack
all-gathers for compute) and ``comm_buffers`` (gradient buckets).

>>> sizes = ModelSizes(params=1_000, unit_params=200, root_params=200, largest_tensor=100)
>>> z1 = zero(sizes, stage=1, gpus=4)
>>> [(t.key, t.bytes) for t in z1.states]
[('weights', 2000), ('optimizer_state', 3000)]
>>> z1.by_key("backward")["comm_buffers"]
1000000000
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Protocol

from nnmem.terms import Term, fixed, polynomial, product

# --- sources ----------------------------------------------------------------------------

TORCH_ADAMW = (
    "PyTorch torch/optim/adamw.py (adam.py _init_group): exp_avg and exp_avg_sq, "
    "zeros_like(param, memory_format=torch.preserve_format), plus a scalar step per tensor"
)
TORCH_FOREACH = (
    "PyTorch torch/optim/adam.py _multi_tensor_adam: torch._foreach_* ops make one "
    "parameter-sized intermediate list (measured: benchmarks/stacks, one copy of P)"
)
TORCH_FUSED = (
    "PyTorch torch/optim/adam.py _fused_adam: torch._fused_adamw_ updates params, m and v "
    "in place (measured: benchmarks/stacks, no temporaries)"
)
TORCH_FOR_LOOP = (
    "PyTorch torch/optim/adam.py _single_tensor_adam: per-tensor ops, two temporaries the "
    "size of the tensor being updated (measured: benchmarks/stacks, 2 × the largest)"
)
DDP_BUCKETS = (
    "PyTorch torch/csrc/distributed/c10d/reducer.cpp Reducer::initialize_buckets: one flat "
    "tensor per bucket covering every gradient (bucket_cap_mb 25, first bucket 1 MiB, "
    "torch/nn/parallel/distributed.py); gradient_as_bucket_view=False copies each "
    "param.grad into it, True makes param.grad a view of it"
)
FSDP2_SHARD = (
    "PyTorch torch/distributed/fsdp/_fully_shard/_fsdp_param.py FSDPParam._init_sharded_param: "
    "each parameter chunked on dim 0 across the mesh, padded to equal shards"
)
FSDP2_UNSHARD = (
    "PyTorch _fully_shard/_fsdp_param.py FSDPParam.init_unsharded_param / alloc_storage "
    "(param_dtype of MixedPrecisionPolicy); _fsdp_param_group.py FSDPParamGroup.reshard "
    "frees them after forward when reshard_after_forward; the root group is never "
    "resharded after forward (_fsdp_state.py FSDPState._lazy_init)"
)
FSDP2_AG_STATE = (
    "PyTorch _fully_shard/_fsdp_param_group.py FSDPParamGroup.wait_for_unshard: in forward "
    "the all-gather output is kept in comm_ctx.all_gather_state until the next group's "
    "all-gather (one unit's flat buffer more)"
)
FSDP2_GRAD = (
    "PyTorch _fully_shard/_fsdp_collectives.py foreach_reduce: unsharded gradients cast to "
    "reduce_dtype and reduce-scattered into sharded gradients of the parameter's dtype"
)
FSDP2_PIPELINE_GRAD = (
    "PyTorch torch/distributed/pipelining/stage.py backward_maybe_with_nosync: a stage's "
    "FSDP module runs each micro-batch's backward with set_requires_gradient_sync(False) "
    "and set_reshard_after_backward(False) until the last; _fully_shard/_fsdp_param.py "
    "FSDPParam.to_accumulated_grad_if_needed keeps each unsharded gradient, upcast to "
    "reduce_dtype, as unsharded_accumulated_grad until the reduce-scatter after the last"
)
FSDP2_OFFLOAD = (
    "PyTorch _fully_shard/_fsdp_api.py CPUOffloadPolicy: sharded parameters, gradients and "
    "optimizer state on the CPU; the step runs on the CPU"
)
DS_ZERO12 = (
    "DeepSpeed deepspeed/runtime/zero/stage_1_and_2.py DeepSpeedZeroOptimizer.__init__: "
    "bit16_groups_flat (16-bit parameters, whole on every rank) and "
    "single_partition_of_fp32_groups (fp32 master, 1/N); Adam's m and v on that partition"
)
DS_ZERO12_GRADS = (
    "DeepSpeed stage_1_and_2.py: stage 1 keeps whole 16-bit param.grad and reduces at the "
    "boundary (reduce_gradients); stage 2 (partition_gradients) reduces each bucket and "
    "keeps only this rank's 1/N (averaged_gradients)"
)
DS_FP32_GRAD = (
    "DeepSpeed stage_1_and_2.py DeepSpeedZeroOptimizer.step: flat_grad_partition.to(fp32) "
    "becomes single_partition_of_fp32_groups.grad; stage3.py "
    "_prepare_fp32_grad_for_sub_group does the same per sub_group_size (1e9) elements"
)
DS_IPG = (
    "DeepSpeed stage_1_and_2.py DeepSpeedZeroOptimizer.setup_buckets (each backward; a "
    "second buffer with overlap_comm) / stage3.py DeepSpeedZeroOptimizer_Stage3.__init__ "
    "(once): torch.empty(reduce_bucket_size) per gradient dtype (zero/config.py: "
    "reduce_bucket_size 5e8 elements, contiguous_gradients true)"
)
DS_ZERO3 = (
    "DeepSpeed deepspeed/runtime/zero/stage3.py DeepSpeedZeroOptimizer_Stage3: 16-bit "
    "parameter partitions (partition_parameters.py), grad_partitions_flat_buffer (16-bit "
    "gradients, 1/N), fp32 partitions with Adam's m and v"
)
DS_ZERO3_GATHER = (
    "DeepSpeed zero/partitioned_param_coordinator.py PartitionedParameterCoordinator."
    "fetch_sub_module: the current module's parameters plus prefetch up to "
    "stage3_prefetch_bucket_size (5e7), never more than stage3_max_live_parameters (1e9) "
    "available; parameters under stage3_param_persistence_threshold (1e5) stay whole"
)
DS_OFFLOAD = (
    "DeepSpeed offload_optimizer device cpu (stage_1_and_2.py / stage3.py with "
    "DeepSpeedCPUAdam): fp32 master, m, v and the fp32 gradient partition live in host "
    "memory and the step runs there; offload_param (stage 3) keeps the 16-bit partitions "
    "on the host too"
)
DS_TRAINABLE = (
    "DeepSpeed stage_1_and_2.py DeepSpeedZeroOptimizer.__init__: bit16_groups take only the "
    "parameters is_optimized_parameter accepts (runtime/utils.py: requires_grad and numel > "
    "0), so the flat 16-bit group, the fp32 partition, the gradient partitions and the "
    "buckets cover the trainable parameters; frozen ones stay ordinary module parameters "
    "with no master, gradient or state"
)
DS_CLIENT_OPT3 = (
    "DeepSpeed runtime/engine.py DeepSpeedEngine._configure_optimizer: a client optimizer "
    "becomes basic_optimizer; stage3.py DeepSpeedZeroOptimizer_Stage3._optimizer_step sets "
    "param_groups[i]['params'] = [fp32_partitioned_groups_flat[sub_group_id]] and steps, "
    "so its state is that of this rank's flat fp32 partition, one tensor per sub-group "
    "(sub_group_size, 1e9 values; taken here as one tensor of the partition)"
)
DS_ZERO3_FROZEN = (
    "DeepSpeed runtime/zero/partition_parameters.py Init._convert_to_deepspeed_param and "
    "_partition_param partition every parameter of the module, requires_grad or not "
    "(stage3.py DeepSpeedZeRoOffload converts those zero.Init did not); stage3.py "
    "DeepSpeedZeroOptimizer_Stage3.__init__ builds fp16_groups and the fp32 partitions "
    "from _get_trainable_parameter_groups, which keeps only is_optimized_parameter "
    "(requires_grad) parameters, so frozen ones are 16-bit partitions gathered per module "
    "with no gradient, master or state"
)
DS_CLIENT_OPT = (
    "DeepSpeed runtime/engine.py DeepSpeedEngine._configure_optimizer: a client (torch or "
    "bitsandbytes) optimizer becomes basic_optimizer (zero_allow_untested_optimizer); "
    "stage_1_and_2.py DeepSpeedZeroOptimizer.__init__ sets each param_group's params to "
    "[single_partition_of_fp32_groups[i]], so its state is that of one flat fp32 tensor "
    "of this rank's partition"
)
DS_NVME_OPTIMIZER = (
    "DeepSpeed stage3.py DeepSpeedZeroOptimizer_Stage3._create_fp32_partitions: with "
    "offload_optimizer device nvme (swap_optimizer) a sub-group of 1 MiB or more "
    "(_swappable_optimizer_subgroup) keeps its fp32 master, m and v in swap files "
    "(swap_tensor/optimizer_utils.py OptimizerSwapper), and "
    "_swap_out_offload_fp32_gradients writes its fp32 gradients there too"
)
DS_NVME_GRAD_COPIES = (
    "DeepSpeed stage3.py DeepSpeedZeroOptimizer_Stage3.partition_grads: at the "
    "accumulation boundary each reduced bucket's gradient partitions are cast to fp32 on "
    "the GPU (_offload_grad_partition_at_boundary: grad_buffer.to(fp32), kept in "
    "offload_fp32_gradients for a swappable sub-group) until "
    "_swap_out_offload_fp32_gradients writes them to NVMe"
)
DS_NVME_OPTIMIZER_BUFFERS = (
    "DeepSpeed swap_tensor/optimizer_utils.py OptimizerSwapper.__init__: a "
    "SwapBufferManager of offload_optimizer.buffer_count (4) page-locked fp32 tensors "
    "(swap_tensor/utils.py SwapBufferManager.__init__, new_cpu_locked_tensor), each the "
    "largest sub-group's partition, io-aligned (largest_numel, stage3.py "
    "_configure_tensor_swapping); partitioned_optimizer_swapper.py "
    "swap_in_optimizer_state reads the master, m, v and gradient of the sub-group being "
    "stepped into them"
)
DS_NVME_PARAM = (
    "DeepSpeed zero/partition_parameters.py Init._partition_param: with offload_param "
    "device nvme each 16-bit partition of 1 MiB or more is written to a swap file "
    "(swap_tensor/partitioned_param_swapper.py AsyncPartitionedParameterSwapper."
    "swap_out_and_release)"
)
DS_NVME_PARAM_BUFFERS = (
    "DeepSpeed swap_tensor/partitioned_param_swapper.py AsyncPartitionedParameterSwapper."
    "_configure_aio: offload_param.buffer_count (5) page-locked buffers of buffer_size "
    "(1e8) elements, io-aligned, in the model's dtype, through which every partition "
    "read from NVMe passes"
)
DS_NVME_PARAM_CPU = (
    "DeepSpeed stage3.py DeepSpeedZeroOptimizer_Stage3._create_param_groups_fp16_flat_"
    "cpu_memory: a pinned flat buffer of min(partition, offload_param.max_in_cpu 1e9) "
    "elements per parameter group; _move_to_flat_buffer swaps each sub-group that fits in "
    "it back from NVMe for good"
)
DS_NVME_PARAM_RESERVE = (
    "DeepSpeed stage3.py _create_fp16_partitions_with_defragmentation: with a sub-group "
    "left on NVMe, AsyncPartitionedParameterSwapper.reserve_partitioned_swap_space pins "
    "the io-aligned ds_numel of the largest sub-group's parameters, which is each "
    "parameter's whole size (partition_parameters.py: param.ds_numel = param.numel()), "
    "to write the updated 16-bit partitions back after the step"
)
PEFT_KBIT = (
    "peft src/peft/utils/other.py prepare_model_for_kbit_training: every fp16/bf16 "
    "parameter that is not a Params4bit (embeddings, norms, the unquantized LM head) is "
    "cast with param.data.to(torch.float32)"
)

# DeepSpeed's defaults (deepspeed/runtime/zero/config.py DeepSpeedZeroConfig).
DS_REDUCE_BUCKET = 500_000_000
# allgather_bucket_size adds no memory, so no term reads it: after the step, stages 1-2
# gather the updated 16-bit partitions straight into bit16_groups_flat
# (stage_1_and_2.py DeepSpeedZeroOptimizer.step -> runtime/utils.py all_gather_dp_groups:
# all_gather_into_tensor(group_flat, this rank's partition) where the backend has it;
# otherwise dist.all_gather over narrow() views of the same flat buffer, the bucket size
# only setting how many such calls run). Stage 3 gathers with its own prefetch bucket.
DS_ALLGATHER_BUCKET = 500_000_000
DS_ALLGATHER = (
    "DeepSpeed runtime/utils.py all_gather_dp_groups (called by stage_1_and_2.py "
    "DeepSpeedZeroOptimizer.step): the updated 16-bit partitions are all-gathered in place "
    "into bit16_groups_flat; allgather_bucket_size only splits the fallback all_gather into "
    "views of that buffer, allocating nothing"
)
DS_PREFETCH_BUCKET = 50_000_000
DS_MAX_LIVE = 1_000_000_000
DS_PERSISTENCE = 100_000
DS_MAX_REUSE = 1_000_000_000
DS_SUB_GROUP = 1_000_000_000  # sub_group_size

# DeepSpeed's NVMe offload (ZeRO-Infinity), its defaults: deepspeed/runtime/zero/
# offload_config.py DeepSpeedZeroOffloadParamConfig (buffer_count 5, buffer_size 1e8
# elements, max_in_cpu 1e9 elements) and DeepSpeedZeroOffloadOptimizerConfig (buffer_count
# 4: "Adam optimizer has 4 states (parameter, gradient, momentum, and variance)");
# swap_tensor/constants.py aio block_size 1 MiB and intra_op_parallelism 1;
# swap_tensor/utils.py AIO_ALIGNED_BYTES 1024 and MIN_AIO_BYTES 1 MiB. A tensor is swapped
# only if it holds max(MIN_AIO_BYTES, block_size) bytes or more (swappable_tensor,
# OptimizerSwapper.is_swappable_tensor), and every swap buffer is rounded up to whole
# AIO_ALIGNED_BYTES × intra_op_parallelism (_io_aligned_numel).
DS_PARAM_BUFFER_COUNT = 5
DS_PARAM_BUFFER_SIZE = 100_000_000
DS_MAX_IN_CPU = 1_000_000_000
DS_OPTIMIZER_BUFFER_COUNT = 4
DS_AIO_ALIGNED_BYTES = 1024
DS_MIN_AIO_BYTES = 1 << 20
OFFLOAD_DEVICES = ("cpu", "nvme")


class NamedTensor(Protocol):
    """What :meth:`ModelSizes.from_tensors` reads from a parameter tensor description."""

    @property
    def name(self) -> str: ...  # "layers.*.q.weight": a star repeats per layer

    @property
    def count(self) -> int: ...  # how many identical tensors

    @property
    def numel(self) -> int: ...  # the element count of one tensor


@dataclass(frozen=True)
class ModelSizes:
    """The parameter counts a stack's memory depends on.

    ``unit_params`` is one repeated block (a decoder layer: one FSDP unit, one ZeRO-3
    module); ``root_params`` what is outside the blocks (embeddings, final norm, head);
    ``largest_tensor`` the largest single parameter; ``persistent_params`` the elements
    in tensors under DeepSpeed's persistence threshold; ``unquantized_params`` the
    elements a 4-bit or 8-bit load leaves in 16-bit (everything but the linear weights
    inside the blocks).
    """

    params: int
    unit_params: int
    root_params: int
    largest_tensor: int
    persistent_params: int = 0
    unquantized_params: int = 0
    units: int = field(default=0)
    # Elements of one block's linear weights that FSDP2 all-gathers in float8 (torchao's
    # enable_fsdp_float8_all_gather, nnmem.models.transformer.float8); 0: none.
    float8_unit_params: int = 0

    @classmethod
    def from_tensors(
        cls,
        tensors: Iterable[NamedTensor],
        layers: int,
        persistence_threshold: int = DS_PERSISTENCE,
    ) -> ModelSizes:
        """Sizes from a tensor list (names with ``*`` repeat per layer), as
        ``nnmem``'s architecture lists them.

        >>> from types import SimpleNamespace as T
        >>> ts = [T(name="embed.weight", numel=40, count=1),
        ...       T(name="layers.*.q.weight", numel=16, count=2),
        ...       T(name="layers.*.norm.weight", numel=4, count=2)]
        >>> s = ModelSizes.from_tensors(ts, layers=2, persistence_threshold=10)
        >>> s.params, s.unit_params, s.root_params, s.persistent_params, s.unquantized_params
        (80, 20, 40, 8, 48)
        """
        tensors = list(tensors)
        params = sum(t.numel * t.count for t in tensors)
        in_layers = sum(t.numel * t.count for t in tensors if "*" in t.name)
        quantized = sum(
            t.numel * t.count
            for t in tensors
            if "*" in t.name and t.name.endswith("weight") and "norm" not in t.name
        )
        return cls(
            params=params,
            unit_params=in_layers // max(layers, 1),
            root_params=params - in_layers,
            largest_tensor=max((t.numel for t in tensors), default=0),
            persistent_params=sum(
                t.numel * t.count for t in tensors if t.numel < persistence_threshold
            ),
            unquantized_params=params - quantized,
            units=layers,
        )


@dataclass(frozen=True)
class StackStates:
    """What one GPU (and its host) holds for the model states under a stack.

    ``states`` live through the whole step; ``gradients`` from backward until
    ``zero_grad``; ``gathered`` only while forward and backward run; ``backward`` only
    in backward (buckets a stack allocates there); ``step`` only inside
    ``optimizer.step()``; ``cpu`` is host memory; ``nvme`` what a stack keeps in swap
    files on an NVMe drive (DeepSpeed's offload device ``nvme``).
    """

    stack: str
    states: tuple[Term, ...]
    gradients: tuple[Term, ...] = ()
    gathered: tuple[Term, ...] = ()
    backward: tuple[Term, ...] = ()
    step: tuple[Term, ...] = ()
    cpu: tuple[Term, ...] = ()
    notes: tuple[str, ...] = ()
    nvme: tuple[Term, ...] = ()

    def phase_terms(self, phase: str) -> tuple[Term, ...]:
        """The terms live at a phase: ``forward``, ``backward`` or ``optimizer_step``."""
        if phase == "forward":
            return self.states + self.gathered
        if phase == "backward":
            return self.states + self.gathered + self.gradients + self.backward
        if phase == "optimizer_step":
            return self.states + self.gradients + self.step
        raise ValueError(f"unknown phase {phase!r}")

    def gpu_bytes(self, phase: str) -> int:
        """GPU bytes of the model states at ``phase``."""
        return sum(t.bytes for t in self.phase_terms(phase))

    @property
    def peak_bytes(self) -> int:
        """The most the model states take on the GPU in any phase (activations apart)."""
        return max(self.gpu_bytes(p) for p in ("forward", "backward", "optimizer_step"))

    @property
    def cpu_bytes(self) -> int:
        """Host memory."""
        return sum(t.bytes for t in self.cpu)

    @property
    def nvme_bytes(self) -> int:
        """Bytes in swap files on NVMe."""
        return sum(t.bytes for t in self.nvme)

    def by_key(self, phase: str) -> dict[str, int]:
        """GPU bytes per component key at ``phase``."""
        totals: dict[str, int] = {}
        for t in self.phase_terms(phase):
            totals[t.key] = totals.get(t.key, 0) + t.bytes
        return totals


def _split(term: Term, n: int) -> Term:
    return term.scaled(Fraction(1, n), f"÷ {n} ranks") if n > 1 else term


def _sourced(term: Term, source: str, label: str | None = None) -> Term:
    """``term`` with ``source`` added to its own (and, given, a new label)."""
    return replace(term, label=label or term.label, source=f"{term.source}; {source}")


def _aio_aligned(numel: int, element_bytes: int) -> int:
    """``numel`` rounded up to whole AIO_ALIGNED_BYTES, as DeepSpeed's swappers size each
    swap buffer (swap_tensor/partitioned_param_swapper.py and optimizer_utils.py
    ``_io_aligned_numel``, numel_alignment = 1024 B ÷ the element size).

    >>> _aio_aligned(100_000_000, 2), _aio_aligned(1_000_000_000, 4)
    (100000256, 1000000000)
    """
    align = max(DS_AIO_ALIGNED_BYTES // element_bytes, 1)
    return -(-numel // align) * align


# --- the optimizer step -----------------------------------------------------------------


def adamw_step_temporaries(impl: str, trainable: int, width: int, largest: int) -> Term:
    """Temporaries of AdamW's ``step()``: ``fused``, ``foreach`` or ``for_loop``.

    >>> adamw_step_temporaries("foreach", 1_000, 4, 100).bytes
    4000
    >>> adamw_step_temporaries("fused", 1_000, 4, 100).bytes
    0
    >>> adamw_step_temporaries("for_loop", 1_000, 4, 100).bytes
    800
    """
    if impl == "fused":
        return fixed("temporaries", "fused AdamW updates in place", 0, "0", TORCH_FUSED)
    if impl == "foreach":
        return product(
            "temporaries",
            "foreach AdamW: one copy of the trainable parameters",
            [("P_train", trainable)],
            width,
            TORCH_FOREACH,
        )
    if impl == "for_loop":
        return product(
            "temporaries",
            "for-loop AdamW: two copies of the largest tensor",
            [("2", 2), ("P_largest", largest)],
            width,
            TORCH_FOR_LOOP,
        )
    raise ValueError(f"unknown AdamW implementation {impl!r}")


def _adamw_state(elements: int, width: int, note: str = "") -> Term:
    return product(
        "optimizer_state",
        f"AdamW m and v{note}",
        [("2", 2), ("P", elements)],
        width,
        TORCH_ADAMW,
    )


# --- plain loop and DDP -------------------------------------------------------------------


def plain(sizes: ModelSizes, width: int = 4, impl: str = "foreach") -> StackStates:
    """One process, ``torch.optim.AdamW``: weights, gradients, m and v at ``width`` bytes.

    >>> s = plain(ModelSizes(1_000, 200, 200, 100), impl="fused")
    >>> s.gpu_bytes("optimizer_step")
    16000
    """
    p = [("P", sizes.params)]
    return StackStates(
        stack="plain",
        states=(
            product("weights", "weights", p, width, TORCH_ADAMW),
            _adamw_state(sizes.params, width),
        ),
        gradients=(product("gradients", "param.grad", p, width, TORCH_ADAMW),),
        step=(adamw_step_temporaries(impl, sizes.params, width, sizes.largest_tensor),),
    )


def ddp(
    sizes: ModelSizes,
    width: int = 4,
    gradient_as_bucket_view: bool = False,
    impl: str = "foreach",
) -> StackStates:
    """PyTorch ``DistributedDataParallel``: every rank whole, plus the gradient buckets.

    The buckets are allocated when DDP wraps the model and live as long as it does. With
    the default ``gradient_as_bucket_view=False`` each gradient also exists as its own
    ``param.grad``, so gradients are held twice from backward to ``zero_grad``.

    >>> s = ddp(ModelSizes(1_000, 200, 200, 100))
    >>> s.by_key("optimizer_step")["comm_buffers"], s.by_key("optimizer_step")["gradients"]
    (4000, 4000)
    >>> ddp(ModelSizes(1_000, 200, 200, 100), gradient_as_bucket_view=True).gradients
    ()
    """
    base = plain(sizes, width, impl)
    bucket = product(
        "comm_buffers", "DDP gradient buckets", [("P_train", sizes.params)], width, DDP_BUCKETS
    )
    gradients = () if gradient_as_bucket_view else base.gradients
    note = (
        "gradient_as_bucket_view=True: param.grad are views of the buckets"
        if gradient_as_bucket_view
        else "gradient_as_bucket_view=False: gradients are held twice, in param.grad and "
        "in the buckets"
    )
    return StackStates(
        stack="ddp",
        states=(*base.states, bucket),
        gradients=gradients,
        step=base.step,
        notes=(note,),
    )


# --- FSDP2 ------------------------------------------------------------------------------


def _blocks(
    label: str, blocks: int, sizes: ModelSizes, compute: int, source: str, symbol: str = "blocks"
) -> Term:
    """``blocks`` blocks' all-gathered parameters: ``compute`` bytes each, but the linear
    weights FSDP2 gathers in float8 (``sizes.float8_unit_params``), 1 byte each: torchao
    torchao/float8/fsdp_utils.py WeightWithDynamicFloat8CastTensor.fsdp_pre_all_gather
    casts the local shard to float8 and FSDP2 all-gathers that data."""
    f8 = sizes.float8_unit_params
    common = [(symbol, blocks)] if symbol else []
    if not f8:
        factors = [*common, ("P_block", sizes.unit_params)]
        return product("gathered_weights", label, factors, compute, source)
    # The buffers follow FSDP2's code (``source``, which the timeline reads them by).
    parts = [("P_f8", f8, 1), ("P_rest", sizes.unit_params - f8, compute)]
    return polynomial("gathered_weights", label, common, parts, source)


def fsdp2(
    sizes: ModelSizes,
    gpus: int,
    param_bytes: int = 4,
    compute_bytes: int | None = None,
    reduce_bytes: int | None = None,
    reshard_after_forward: bool = True,
    cpu_offload: bool = False,
    prefetch_units: int = 1,
    impl: str = "foreach",
    accumulate_unsharded: bool = False,
) -> StackStates:
    """FSDP2 ``fully_shard`` on every block and on the root.

    ``param_bytes`` is the stored (sharded) type, ``compute_bytes`` the
    ``MixedPrecisionPolicy.param_dtype`` (default: the stored type), ``reduce_bytes`` its
    ``reduce_dtype``. At forward's peak (the loss) a GPU holds the root unsharded and
    the last block's all-gather output (kept until the next all-gather); backward
    gathers each block again with ``prefetch_units`` more ahead (1 on a GPU, where the
    all-gather stream runs ahead; 0 on a CPU, where collectives are synchronous), and
    holds one block's unsharded gradients. Without ``reshard_after_forward`` every
    block stays unsharded from its forward to its backward. With
    ``accumulate_unsharded`` (a pipeline stage over several micro-batches) every
    parameter's unsharded gradient is kept, in the reduce type, through backward.

    >>> s = fsdp2(ModelSizes(1_000, 200, 200, 100, units=4), gpus=2, prefetch_units=0)
    >>> s.by_key("forward")
    {'weights': 2000, 'optimizer_state': 4000, 'gathered_weights': 1600}
    """
    compute = compute_bytes or param_bytes
    n = gpus
    shard = [("P", sizes.params)]
    weights = _split(product("weights", "sharded parameters", shard, param_bytes, FSDP2_SHARD), n)
    state = _split(_adamw_state(sizes.params, param_bytes, " of the shard"), n)
    grads = _split(product("gradients", "sharded gradients", shard, param_bytes, FSDP2_GRAD), n)
    root = product(
        "gathered_weights",
        "unsharded root (embeddings, final norm, head)",
        [("P_root", sizes.root_params)],
        compute,
        FSDP2_UNSHARD,
    )
    kept = _blocks(
        "all-gather output kept for the next group", 1, sizes, compute, FSDP2_AG_STATE, symbol=""
    )
    reduce = reduce_bytes or compute
    unsharded_grads = product(
        "gradients",
        "one block's unsharded gradients before reduce-scatter",
        [("P_block", sizes.unit_params)],
        reduce,
        FSDP2_GRAD,
    )
    if reshard_after_forward:
        # Forward's peak comes at the loss: every block resharded, the root and the last
        # all-gather output kept. Backward gathers each block again, with prefetch.
        gathered: tuple[Term, ...] = (root, kept)
        label = "unsharded current block" + (
            f" and {prefetch_units} prefetched" if prefetch_units else ""
        )
        backward: tuple[Term, ...] = (
            _blocks(label, 1 + prefetch_units, sizes, compute, FSDP2_UNSHARD),
            unsharded_grads,
        )
    else:
        every = _blocks(
            "every block unsharded (not resharded after forward)",
            max(sizes.units, 1),
            sizes,
            compute,
            FSDP2_UNSHARD,
        )
        gathered, backward = (root, every, kept), (unsharded_grads,)
    if accumulate_unsharded:
        accumulated = product(
            "gradients",
            "unsharded gradients accumulated over the micro-batches",
            [("P", sizes.params)],
            reduce,
            FSDP2_PIPELINE_GRAD,
        )
        backward = (*(t for t in backward if t is not unsharded_grads), accumulated)
    notes = [f"FSDP2 across {n} ranks; figures are per rank."]
    if sizes.float8_unit_params:
        notes.append(
            f"FP8 all-gather: each block's {sizes.float8_unit_params:,} linear weights are "
            "gathered in float8, 1 byte each (torchao enable_fsdp_float8_all_gather); norms "
            "and the root in 16-bit."
        )
    if reduce_bytes and reduce_bytes != compute:
        when = "after the last micro-batch" if accumulate_unsharded else "one block at a time"
        notes.append(f"Gradients are reduce-scattered in {reduce_bytes}-byte values, {when}.")
    step = (adamw_step_temporaries(impl, math.ceil(sizes.params / n), param_bytes, 0),)
    if cpu_offload:
        # The step runs on the host's shards, so its temporaries are host memory too
        # (measured: benchmarks/stacks fsdp2.cpu_offload, foreach AdamW, Ψ/N × 4 B).
        cpu = (weights, state, grads, *step)
        notes.append("CPUOffloadPolicy: shards, gradients and the optimizer step on the CPU.")
        return StackStates(
            "fsdp2", states=(), gathered=gathered, backward=backward, cpu=cpu, notes=tuple(notes)
        )
    return StackStates(
        "fsdp2",
        states=(weights, state),
        gradients=(grads,),
        gathered=gathered,
        backward=backward,
        step=step,
        notes=tuple(notes),
    )


# --- DeepSpeed ZeRO ---------------------------------------------------------------------------


def zero(
    sizes: ModelSizes,
    stage: int,
    gpus: int,
    low_bytes: int = 2,
    reduce_bucket_size: int = DS_REDUCE_BUCKET,
    overlap_comm: bool = False,
    prefetch_bucket_size: int = DS_PREFETCH_BUCKET,
    max_live_parameters: int = DS_MAX_LIVE,
    max_reuse_distance: int = DS_MAX_REUSE,
    offload_optimizer: bool = False,
    offload_param: bool = False,
    grad_accum_steps: int = 1,
    trainable: int | None = None,
    frozen: Term | None = None,
    client_optimizer: tuple[Term, Term] | None = None,
    optimizer_device: str = "cpu",
    param_device: str = "cpu",
) -> StackStates:
    """DeepSpeed ZeRO stage 1, 2 or 3 with 16-bit training (bf16 or fp16) and Adam.

    Per GPU: 16-bit parameters (whole for stages 1-2, 1/N for 3), the fp32 master with
    m and v, 12 B per parameter ÷ N, which DeepSpeed counts as optimizer state, and this
    rank's 16-bit gradient partition after backward (stage 1 keeps whole gradients only
    while it accumulates over micro-steps). ``optimizer.step()`` adds an fp32 copy of the
    gradient partition. The reduce bucket has its full configured size whatever the
    model's: stages 1-2 allocate it in each backward, stage 3 once at start.
    ``overlap_comm`` doubles the stage 1-2 bucket (DeepSpeed's default turns it on for
    stage 3, whose one bucket per dtype is allocated in ``__init__``). The all-gather of
    the updated 16-bit parameters after the step writes into ``bit16_groups_flat`` in
    place, so ``allgather_bucket_size`` adds nothing (``DS_ALLGATHER``).

    A step that trains part of the model (LoRA) or runs another optimizer: ``trainable``
    is then the trained parameter count Ψ_t (the 16-bit group, master, gradients and state
    cover only those, :data:`DS_TRAINABLE`), ``frozen`` the frozen weights, held whole by
    stages 1-2 and partitioned ÷ N by stage 3 (:data:`DS_ZERO3_FROZEN`; ``sizes`` then
    describes every parameter, for the gathered window and the persistent ones), and
    ``client_optimizer`` the state and step temporaries of the optimizer over one flat
    fp32 partition of ⌈Ψ_t/N⌉ values (:data:`DS_CLIENT_OPT`, :data:`DS_CLIENT_OPT3`),
    which replace Adam's m and v.

    ``optimizer_device`` and ``param_device`` are the offloads' ``device`` (``cpu`` or
    ``nvme``, ZeRO-3 only: stage_1_and_2.py has no swapper). On NVMe
    (:func:`_nvme_optimizer`, :func:`_nvme_params`) the offloaded tensors go to swap
    files, and host RAM keeps the page-locked swap buffers they pass through.

    >>> s = zero(ModelSizes(1_000, 200, 200, 100), stage=2, gpus=4, reduce_bucket_size=0)
    >>> s.by_key("optimizer_step")
    {'weights': 2000, 'optimizer_state': 3000, 'gradients': 500, 'temporaries': 1000}
    >>> base = fixed("weights", "frozen base", 5000, "5,000 B")
    >>> lora = zero(ModelSizes(1_000, 200, 200, 100), stage=2, gpus=4, reduce_bucket_size=0,
    ...             trainable=100, frozen=base)
    >>> lora.by_key("optimizer_step")
    {'weights': 5200, 'optimizer_state': 300, 'gradients': 50, 'temporaries': 100}
    >>> z3 = zero(ModelSizes(1_000, 200, 200, 100), stage=3, gpus=4, reduce_bucket_size=0,
    ...           prefetch_bucket_size=0, max_reuse_distance=0, trainable=100, frozen=base)
    >>> z3.by_key("optimizer_step")["weights"]  # (5,000 + 2 × 100) ÷ 4
    1300
    """
    if stage not in (1, 2, 3):
        raise ValueError("stage must be 1, 2 or 3")
    if offload_param and stage != 3:
        raise ValueError("offload_param needs stage 3")
    for name, device, on in (
        ("offload_optimizer", optimizer_device, offload_optimizer),
        ("offload_param", param_device, offload_param),
    ):
        if device not in OFFLOAD_DEVICES:
            raise ValueError(f"{name} device must be cpu or nvme")
        if device == "nvme" and not on:
            raise ValueError(f"{name} device nvme needs {name} on")
    if optimizer_device == "nvme" and stage != 3:
        raise ValueError("offload_optimizer device nvme needs stage 3")
    n = gpus
    p = [("P", sizes.params)] if trainable is None else [("P_train", trainable)]
    psi = sizes.params if trainable is None else trainable
    notes = [f"DeepSpeed ZeRO-{stage} across {n} ranks; figures are per rank."]
    if trainable is not None:
        notes.append(
            f"Only the {psi:,} trainable parameters enter ZeRO's 16-bit group, fp32 master, "
            "gradients and optimizer state; the frozen weights stay whole on every rank."
            if stage < 3
            else "gradients and optimizer state; the frozen weights are partitioned and "
            "gathered with the rest."
        )
    source = DS_ZERO3 if stage == 3 else DS_ZERO12
    if trainable is not None:
        source = f"{source}; {DS_TRAINABLE}"
    label = "trainable " if trainable is not None else ""
    weights = product("weights", f"{low_bytes}-byte {label}parameters", p, low_bytes, source)
    gathered: tuple[Term, ...] = ()
    persistent: tuple[Term, ...] = ()
    if stage == 3:
        weights = _split(weights, n)
        if frozen is not None:
            # zero.Init / _convert_to_deepspeed_param partition every parameter, frozen
            # ones too (DS_ZERO3_FROZEN); ``sizes`` then describes the whole model.
            frozen = _sourced(_split(frozen, n), DS_ZERO3_FROZEN, "frozen base partitions")
        small = sizes.persistent_params
        if small:
            # Measured (benchmarks/stacks): a persistent parameter is whole on every rank
            # besides its partition.
            persistent = (
                product(
                    "weights",
                    "small parameters kept whole (persistence threshold)",
                    [("P_small", small)],
                    low_bytes,
                    DS_ZERO3_GATHER,
                ),
            )
        live = min(
            max_live_parameters,
            sizes.params - small,
            # DeepSpeed gathers one module's own parameters at a time (a Linear, an
            # Embedding; the largest is the largest tensor), prefetches up to the bucket,
            # and keeps what is reused within max_reuse_distance (at the turn from forward
            # to backward, the last modules: about half the distance each way).
            sizes.largest_tensor + prefetch_bucket_size + max_reuse_distance // 2,
        )
        gathered = (
            product(
                "gathered_weights",
                "gathered modules, prefetch and reuse window",
                [("P_live", live)],
                low_bytes,
                DS_ZERO3_GATHER,
            ),
        )
    grads = product("gradients", f"{low_bytes}-byte gradients", p, low_bytes, DS_ZERO12_GRADS)
    if stage >= 2 or grad_accum_steps == 1:
        grads = _split(grads, n)
    master = _split(
        product(
            "optimizer_state",
            "fp32 master, m and v (DeepSpeed's optimizer state)",
            [("3", 3), *p],
            4,
            source,
        ),
        n,
    )
    masters: tuple[Term, ...] = (master,)
    opt_step: tuple[Term, ...] = ()
    if client_optimizer is not None:
        # The fp32 master partition (single_partition_of_fp32_groups) and the client
        # optimizer's own state over it, instead of Adam's m and v.
        own_state, own_step = client_optimizer
        master = _split(product("optimizer_state", "fp32 master partition", p, 4, source), n)
        over = f"{source}; {DS_CLIENT_OPT3 if stage == 3 else DS_CLIENT_OPT}"
        masters = (master,)
        if own_state.bytes:
            masters = (master, replace(own_state, source=f"{own_state.source}; {over}"))
        if own_step.bytes:
            opt_step = (replace(own_step, source=f"{own_step.source}; {over}"),)
    fp32_grad = _split(
        product("temporaries", "fp32 gradient partition for the step", p, 4, DS_FP32_GRAD), n
    )
    if stage == 3 and not offload_optimizer and math.ceil(psi / n) > DS_SUB_GROUP:
        # stage3.py step(): _prepare_sub_group makes one sub-group's fp32 gradient and
        # _release_sub_group frees it (grad = None) before the next.
        fp32_grad = product(
            "temporaries",
            "fp32 gradient of one optimizer sub-group (sub_group_size)",
            [("sub_group_size", DS_SUB_GROUP)],
            4,
            DS_FP32_GRAD,
        )
    buffers = 2 if overlap_comm and stage < 3 else 1
    bucket = product(
        "comm_buffers",
        "reduce bucket" + ("s (overlap_comm)" if buffers == 2 else ""),
        [("buffers", buffers), ("reduce_bucket_size", reduce_bucket_size)],
        low_bytes,
        DS_IPG,
    )
    cpu: tuple[Term, ...] = ()
    kept = (frozen,) if frozen is not None else ()
    states: tuple[Term, ...] = (*kept, weights, *persistent, *masters)
    step: tuple[Term, ...] = (fp32_grad, *opt_step)
    gradients: tuple[Term, ...] = (grads,)
    if stage == 3:
        # grad_partitions_flat_buffer is allocated once, in __init__ (measured: live
        # from the first forward on).
        states, gradients = (*states, grads), ()
    nvme: tuple[Term, ...] = ()
    swap_buffers: tuple[Term, ...] = ()
    nvme_copies: tuple[Term, ...] = ()
    if offload_optimizer:
        # The fp32 master, m, v and the fp32 gradient partition go to the host. Stage 2
        # copies each reduced bucket straight into the fp32 gradient there
        # (async_inplace_copy_grad_to_fp32_buffer_from_gpu); stage 3 keeps its 16-bit
        # grad_partitions_flat_buffer on the host as well.
        cpu = (*masters, fp32_grad, *opt_step)
        note = (
            "offload_optimizer: master weights, m, v, fp32 gradients and the step on the CPU."
            if client_optimizer is None
            else "offload_optimizer: master weights, the optimizer's state, fp32 gradients and "
            "the step on the CPU (a client optimizer there needs zero_force_ds_cpu_optimizer: "
            "false, runtime/engine.py _configure_optimizer)."
        )
        if optimizer_device == "nvme":
            cpu, nvme, swap_buffers, note = _nvme_optimizer(masters, fp32_grad, psi, n)
            if nvme:
                # One bucket's partitions, in fp32 on the GPU, between reduce and swap-out.
                copies = product(
                    "temporaries",
                    "fp32 copies of one bucket's gradient partitions (NVMe swap-out)",
                    [("bucket", min(reduce_bucket_size, psi))],
                    4,
                    DS_NVME_GRAD_COPIES,
                )
                nvme_copies = (_split(copies, n),)
        states, step = (*kept, weights, *persistent), ()
        if stage == 2:
            gradients = ()
        if stage == 3:
            cpu = (*cpu, grads)
        notes.append(note)
    if offload_param:
        states = persistent
        if param_device == "nvme":
            if frozen is not None:
                raise ValueError("offload_param device nvme is modelled for full fine-tuning")
            kept_cpu, on_nvme, pinned, more = _nvme_params(weights, sizes, n, low_bytes)
            cpu, nvme = (*cpu, *kept_cpu), (*nvme, *on_nvme)
            swap_buffers = (*swap_buffers, *pinned)
            notes += more
        else:
            cpu = (*cpu, *kept, weights)
            notes.append("offload_param: the 16-bit parameter partitions live on the CPU.")
    backward: tuple[Term, ...] = ()
    if bucket.bytes:
        if stage == 3:
            states = (*states, bucket)
        else:
            backward = (bucket,)
    backward = (*backward, *nvme_copies)
    if offload_optimizer:
        cpu = tuple(_sourced(t, DS_OFFLOAD) for t in cpu)
    return StackStates(
        f"zero{stage}",
        states=states,
        gradients=gradients,
        gathered=gathered,
        backward=backward,
        step=step,
        cpu=(*cpu, *swap_buffers),
        notes=tuple(notes),
        nvme=nvme,
    )


def _nvme_optimizer(
    masters: tuple[Term, ...], fp32_grad: Term, psi: int, n: int
) -> tuple[tuple[Term, ...], tuple[Term, ...], tuple[Term, ...], str]:
    """ZeRO-3 ``offload_optimizer`` with ``device: nvme``: (what stays in host RAM, what
    the swap files hold, the page-locked swap buffers, a note).

    The fp32 master, m, v and the fp32 gradients of a swappable sub-group go to NVMe
    (:data:`DS_NVME_OPTIMIZER`); the optimizer swapper's buffer pool,
    ``buffer_count`` × the largest sub-group, stays pinned in host RAM
    (:data:`DS_NVME_OPTIMIZER_BUFFERS`). The 16-bit gradient partitions
    (grad_partitions_flat_buffer) stay on the host, as with ``cpu`` (the caller's term).
    The largest sub-group is taken as ``min(⌈Ψ/N⌉, sub_group_size)``: DeepSpeed closes a
    sub-group at the first parameter that brings it to ``sub_group_size`` or more
    (stage3.py ``_create_fp16_sub_groups``), so it can be one tensor's partition larger.

    >>> m = (fixed("optimizer_state", "master, m, v", 12_000, "12 B × P"),)
    >>> g = fixed("temporaries", "fp32 gradient", 4_000, "4 B × P")
    >>> cpu, disk, pool, _ = _nvme_optimizer(m, g, 1_024_000, 1)
    >>> [t.bytes for t in disk], pool[0].bytes
    ([12000, 4000], 16384000)
    """
    largest = min(math.ceil(psi / n), DS_SUB_GROUP)
    aligned = _aio_aligned(largest, 4)
    pool = product(
        "optimizer_state",
        "optimizer swap buffers (pinned; NVMe offload)",
        [("buffer_count", DS_OPTIMIZER_BUFFER_COUNT), ("sub_group", aligned)],
        4,
        DS_NVME_OPTIMIZER_BUFFERS,
    )
    if largest * 4 < DS_MIN_AIO_BYTES:
        # Under 1 MiB the sub-group is not swappable: it stays in host RAM, as with cpu.
        note = (
            "offload_optimizer device nvme: the fp32 partition is under 1 MiB, so DeepSpeed "
            "keeps it in host RAM (not swappable)."
        )
        return (*masters, fp32_grad), (), (pool,), note
    disk = tuple(_sourced(t, DS_NVME_OPTIMIZER) for t in (*masters, fp32_grad))
    note = (
        "offload_optimizer device nvme: fp32 master, m, v and fp32 gradients in swap files "
        f"on NVMe; host RAM keeps {DS_OPTIMIZER_BUFFER_COUNT} pinned swap buffers of the "
        f"largest sub-group ({largest:,} values; DeepSpeed's sub_group_size sets it) and "
        "the 16-bit gradients. The step runs on the CPU, one sub-group at a time."
    )
    return (), disk, (pool,), note


def _nvme_params(
    weights: Term, sizes: ModelSizes, n: int, low_bytes: int
) -> tuple[tuple[Term, ...], tuple[Term, ...], tuple[Term, ...], list[str]]:
    """ZeRO-3 ``offload_param`` with ``device: nvme``: (16-bit partitions kept in host
    RAM, what the swap files hold, the page-locked buffers, notes).

    ``zero.Init`` writes every 16-bit partition to NVMe (:data:`DS_NVME_PARAM`). Stage 3
    then pins a flat buffer of ``min(⌈Ψ/N⌉, max_in_cpu)`` elements and brings back into it
    the sub-groups that fit (:data:`DS_NVME_PARAM_CPU`): with ⌈Ψ/N⌉ ≤ max_in_cpu, all of
    them, so training reads the host copy; beyond it, with the defaults (sub_group_size =
    max_in_cpu = 1e9, a sub-group closing at the parameter that reaches the size), none
    fits, the buffer stays empty and a write-back buffer of the largest sub-group's
    parameters at their whole size is pinned too (:data:`DS_NVME_PARAM_RESERVE`; the
    largest sub-group taken as N × min(⌈Ψ/N⌉, sub_group_size) whole elements). The
    parameter swapper's buffers (``buffer_count`` × ``buffer_size``) are pinned either
    way (:data:`DS_NVME_PARAM_BUFFERS`).

    >>> w = fixed("weights", "16-bit parameters", 2_000_000, "2 B × P")
    >>> kept, disk, bufs, _ = _nvme_params(w, ModelSizes(1_000_000, 0, 0, 0), 1, 2)
    >>> [t.bytes for t in kept], [t.bytes for t in disk], [t.bytes for t in bufs]
    ([2000000], [2000000], [1000002560])
    >>> kept, disk, bufs, _ = _nvme_params(w, ModelSizes(4 * 10**9, 0, 0, 0), 2, 2)
    >>> kept, [t.bytes for t in bufs][1:]
    ((), [2000000000, 4000000000])
    """
    part = math.ceil(sizes.params / n)
    disk = (_sourced(weights, DS_NVME_PARAM, "16-bit parameter partitions (swap files)"),)
    buffers = (
        product(
            "weights",
            "parameter swap buffers (pinned; NVMe offload)",
            [
                ("buffer_count", DS_PARAM_BUFFER_COUNT),
                ("buffer_size", _aio_aligned(DS_PARAM_BUFFER_SIZE, low_bytes)),
            ],
            low_bytes,
            DS_NVME_PARAM_BUFFERS,
        ),
    )
    notes: list[str] = []
    if math.ceil(sizes.largest_tensor / n) > DS_PARAM_BUFFER_SIZE:
        notes.append(
            f"offload_param device nvme: the largest tensor's partition "
            f"({math.ceil(sizes.largest_tensor / n):,} values) exceeds buffer_size "
            f"({DS_PARAM_BUFFER_SIZE:,}): DeepSpeed's swapper asserts it fits "
            "(partitioned_param_swapper.py get_buffer); raise offload_param.buffer_size."
        )
    if part <= DS_MAX_IN_CPU:
        kept = (
            _sourced(
                weights,
                DS_NVME_PARAM_CPU,
                "16-bit parameter partitions, read back from NVMe (max_in_cpu)",
            ),
        )
        notes.append(
            "offload_param device nvme: zero.Init writes the 16-bit partitions to NVMe; "
            f"they are within max_in_cpu ({DS_MAX_IN_CPU:,} values), so stage 3 reads them "
            "back into pinned host RAM for training, beside the parameter swap buffers."
        )
        return kept, disk, buffers, notes
    empty = product(
        "weights",
        "pinned flat buffer of max_in_cpu values (left empty)",
        [("max_in_cpu", DS_MAX_IN_CPU)],
        low_bytes,
        DS_NVME_PARAM_CPU,
    )
    reserve = product(
        "weights",
        "write-back buffer: the largest sub-group's parameters at their whole size",
        [("N", n), ("sub_group_size", min(part, DS_SUB_GROUP))],
        low_bytes,
        DS_NVME_PARAM_RESERVE,
    )
    notes.append(
        "offload_param device nvme: the 16-bit partitions live on NVMe (more than "
        f"max_in_cpu, {DS_MAX_IN_CPU:,} values, per rank); host RAM keeps the parameter "
        "swap buffers, the flat buffer of max_in_cpu values and the write-back buffer, "
        "which DeepSpeed sizes by the largest sub-group's whole parameters."
    )
    return (), disk, (*buffers, empty, reserve), notes


# --- peft QLoRA ---------------------------------------------------------------------------


def kbit_fp32_casts(sizes: ModelSizes, stored_bytes: int = 2) -> Term:
    """Extra bytes ``prepare_model_for_kbit_training`` adds by casting the 16-bit
    parameters a 4-bit or 8-bit load left alone to fp32.

    >>> kbit_fp32_casts(ModelSizes(1_000, 200, 200, 100, unquantized_params=300)).bytes
    600
    """
    return product(
        "weights",
        "16-bit parameters cast to fp32 by prepare_model_for_kbit_training",
        [("P_unquantized", sizes.unquantized_params)],
        4 - stored_bytes,
        PEFT_KBIT,
    )
