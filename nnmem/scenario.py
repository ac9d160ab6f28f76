"""What a user describes: the scenario, its options, and how it is read from JSON.

The scenario schema is flat and string-friendly, so the same keys serve a JSON file, the
command line, the browser form and the URL query string. Every key but the model's is
optional; ``SCHEMA`` lists them with their defaults, and ``docs`` in the README shows
them as a table. Numbers may be JSON numbers or numeric strings (a form sends strings).
Every bad value is reported at once, each against its key, by one
:class:`~nnmem.errors.NnmemError`.

The model is described in one of four ways (``model``):

- ``generic``: ``params_millions`` with ``hidden_size`` and ``num_layers``;
- ``transformer``: ``config``, a Hugging Face ``config.json`` (object or JSON text);
- ``preset``: ``preset``, the id of a catalog model (``nnmem/data/models.json``);
- ``cnn``: ``cnn``, a built-in network name or a layer list (see :mod:`nnmem.models.cnn`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any

from nnmem import catalog
from nnmem.errors import NnmemError, Problem
from nnmem.formats import LABELS as FORMAT_LABELS
from nnmem.formats import Format, is_float, is_gguf
from nnmem.models.architecture import Family, Transformer, from_config
from nnmem.validation import (
    ChoiceSpec,
    FlagSpec,
    NumberSpec,
    raise_if,
    shown,
    whole,
)


class ModelKind(StrEnum):
    """How the model is described."""

    GENERIC = "generic"
    TRANSFORMER = "transformer"
    PRESET = "preset"
    CNN = "cnn"


class Mode(StrEnum):
    """Whether the step trains (forward, backward, optimizer) or only runs forward."""

    TRAINING = "training"
    INFERENCE = "inference"


class Precision(StrEnum):
    """How the weights are stored, and for training how the compute runs.

    ``fp32``, ``fp16`` and ``bf16`` keep everything in that type (pure 16-bit training
    keeps 16-bit gradients and optimizer states too). ``amp_fp16`` and ``amp_bf16`` are
    mixed precision as PyTorch's autocast does it: fp32 weights, gradients and optimizer
    states, with matmuls and their saved inputs in 16-bit. The others are inference
    formats (see :mod:`nnmem.formats`); nf4, nf4_dq and int8 also hold the frozen base of
    a LoRA fine-tune (QLoRA).
    """

    FP32 = "fp32"
    AMP_BF16 = "amp_bf16"
    AMP_FP16 = "amp_fp16"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"
    GPTQ = "gptq"
    AWQ = "awq"
    NF4 = "nf4"
    NF4_DQ = "nf4_dq"
    Q8_0 = "q8_0"
    Q6_K = "q6_k"
    Q5_K_M = "q5_k_m"
    Q4_K_M = "q4_k_m"
    Q4_0 = "q4_0"
    MXFP4 = "mxfp4"
    NVFP4 = "nvfp4"

    @property
    def is_amp(self) -> bool:
        """Mixed precision: fp32 weights with 16-bit compute."""
        return self in (Precision.AMP_BF16, Precision.AMP_FP16)

    @property
    def weight_format(self) -> Format:
        """How the weights are stored."""
        return Format.FP32 if self.is_amp else Format(self.value)

    @property
    def compute_bytes(self) -> int:
        """Bytes per activation value: 4 for fp32, else 2 (quantized weights are
        dequantized to 16-bit for the matmuls)."""
        return 4 if self is Precision.FP32 else 2

    @property
    def trains_fully(self) -> bool:
        """Whether every weight can be trained in this format."""
        return self in (
            Precision.FP32,
            Precision.AMP_BF16,
            Precision.AMP_FP16,
            Precision.BF16,
            Precision.FP16,
        )

    @property
    def lora_base(self) -> bool:
        """Whether a frozen LoRA base can be held in this format (QLoRA and 8-bit LoRA)."""
        return self.trains_fully or self in (Precision.NF4, Precision.NF4_DQ, Precision.INT8)


class Optimizer(StrEnum):
    """The training optimizer."""

    SGD = "sgd"
    SGD_MOMENTUM = "sgd_momentum"
    ADAMW = "adamw"
    ADAMW_8BIT = "adamw_8bit"
    ADAFACTOR = "adafactor"
    LION = "lion"


class OptimizerImpl(StrEnum):
    """How PyTorch runs the step: one multi-tensor kernel (the CUDA default) or a loop."""

    FOREACH = "foreach"
    FUSED = "fused"
    FOR_LOOP = "for_loop"


class ZeroGrad(StrEnum):
    """Where the training loop frees (or zeroes) the last step's gradients.

    ``optimizer.zero_grad()`` frees them with ``set_to_none=True``, PyTorch's default
    since 2.0 (torch/optim/optimizer.py ``Optimizer.zero_grad``). Called before the
    forward pass (or right after ``optimizer.step()``), no gradient lives through the
    forward pass; called after it, just before ``loss.backward()``, the last step's
    gradients live through the forward pass and the loss. ``set_to_none=False`` fills
    them with zeros instead, so they are never freed.
    """

    BEFORE_FORWARD = "before_forward"
    BEFORE_BACKWARD = "before_backward"
    SET_TO_ZERO = "set_to_zero"


class Checkpointing(StrEnum):
    """Gradient (activation) checkpointing."""

    NONE = "none"
    SELECTIVE = "selective"
    PER_OP = "per_op"
    EVERY_N = "every_n"
    FULL = "full"


class Loss(StrEnum):
    """How a language model's training loss meets the logits: the plain cross-entropy over
    all of them, torchtune's chunked output loss, which upcasts one chunk at a time, Liger's
    fused linear cross-entropy, which makes them a chunk at a time, Apple's Cut
    Cross-Entropy, which keeps them in on-chip memory only, or the plain cross-entropy
    under torch.compile (torchtitan's compiled loss), which stores no fp32 copy, or the
    cross-entropy of transformers up to 4.45, whose causal LM returns its logits in fp32
    and shifts a copy of them."""

    STANDARD = "standard"
    CHUNKED = "chunked"
    FUSED_LINEAR = "fused_linear"
    CCE = "cce"
    COMPILED = "compiled"
    FP32_LOGITS = "fp32_logits"


class Packing(StrEnum):
    """How a language model's training batch is laid out, and the attention mask that
    follows: ``auto`` is ``padded`` for the HF Trainer and TRL stacks and ``off`` for the
    others; ``off`` is the batch × seq_len as given, every row full (no mask); ``padded``
    rows padded to seq_len (transformers' collators), which makes SDPA take a mask;
    ``packed`` whole rows of concatenated examples (TRL ``packing_strategy="wrapped"``,
    torchtune ``dataset.packed=True``); ``padding_free`` the batch flattened into one
    row with position_ids and no mask (TRL ``padding_free``, which its default ``bfd``
    packing implies; transformers ``DataCollatorWithFlattening``)."""

    AUTO = "auto"
    OFF = "off"
    PADDED = "padded"
    PACKED = "packed"
    PADDING_FREE = "padding_free"


class PipelineSchedule(StrEnum):
    """How a pipeline runs its micro-batches (torch.distributed.pipelining schedules, as
    torchtitan's pipeline_parallel_schedule names them)."""

    ONE_F_ONE_B = "1f1b"
    INTERLEAVED_1F1B = "interleaved_1f1b"
    GPIPE = "gpipe"


class Attention(StrEnum):
    """Attention kernel: memory-efficient/flash (no s×s scores kept) or eager."""

    SDPA = "sdpa"
    EAGER = "eager"


class Finetune(StrEnum):
    """Train every weight, or only low-rank adapters on a frozen base."""

    FULL = "full"
    LORA = "lora"


class LoraTargets(StrEnum):
    """Which linear layers get adapters: besides peft's sets, torchtune's LoRA configs
    (q, v, the output projection and the MLP) and fsdp_qlora's "all" (every projection
    but the output one)."""

    QV = "qv"
    ATTENTION = "attention"
    ALL_LINEAR = "all_linear"
    QVO_MLP = "qvo_mlp"
    QKV_MLP = "qkv_mlp"


class LoraDtype(StrEnum):
    """The type LoRA adapters are kept in: fp32 (peft casts them up,
    autocast_adapter_dtype=True), or the type the model is built in (torchtune builds
    them under set_default_dtype; fsdp_qlora's pure bf16)."""

    FP32 = "fp32"
    MODEL = "model"


class Stack(StrEnum):
    """The training code whose allocations the model states follow (``nnmem.stacks``)."""

    PLAIN = "plain"
    HF_TRAINER = "hf_trainer"
    TRL_SFT = "trl_sft"
    DDP = "ddp"
    FSDP2 = "fsdp2"
    DEEPSPEED = "deepspeed"


class FsdpDtype(StrEnum):
    """A dtype of FSDP2's ``MixedPrecisionPolicy`` (torch/distributed/fsdp/_fully_shard/
    _fsdp_api.py): ``auto`` follows ``precision`` (an AMP precision all-gathers 16-bit
    parameters and reduces in fp32, torchtitan's default policy; otherwise the stored type
    throughout), or a type named outright."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Float8Training(StrEnum):
    """FP8 training of the linear layers (nnmem.models.transformer.float8): off, torchao's
    ``convert_to_float8_training`` (Float8Linear, as torchtitan's float8 converter applies
    it), or NVIDIA Transformer Engine's ``te.Linear`` under ``fp8_autocast``."""

    OFF = "off"
    TORCHAO = "torchao"
    TRANSFORMER_ENGINE = "transformer_engine"


class Sharding(StrEnum):
    """Data-parallel sharding of model states (ZeRO stages; FSDP full shard = ZeRO-3)."""

    NONE = "none"
    ZERO1 = "zero1"
    ZERO2 = "zero2"
    ZERO3 = "zero3"


class OffloadDevice(StrEnum):
    """Where a DeepSpeed offload puts its tensors, as ``zero_optimization.offload_optimizer``
    and ``offload_param`` spell ``device`` (deepspeed/runtime/zero/offload_config.py
    OffloadDeviceEnum): host RAM, or swap files on an NVMe drive (ZeRO-Infinity)."""

    CPU = "cpu"
    NVME = "nvme"


class Device(StrEnum):
    """Where the step runs: a CUDA GPU, or the CPU (host memory)."""

    CUDA = "cuda"
    CPU = "cpu"


class KvDtype(StrEnum):
    """Storage of the KV cache; ``auto`` follows the compute type."""

    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"

    def bytes_for(self, precision: Precision) -> int:
        """Bytes per cached value under ``precision``."""
        if self is KvDtype.AUTO:
            return precision.compute_bytes
        return {KvDtype.FP32: 4, KvDtype.FP16: 2, KvDtype.BF16: 2, KvDtype.FP8: 1}[self]


class Logits(StrEnum):
    """At inference: logits for the last position only (as ``generate`` asks) or all."""

    LAST = "last"
    ALL = "all"


class Runtime(StrEnum):
    """What serves the model at inference: transformers ``generate`` (the default), vLLM,
    or llama.cpp; Ollama and LM Studio run llama.cpp and differ only in how they name
    its settings."""

    TRANSFORMERS = "transformers"
    VLLM = "vllm"
    LLAMA_CPP = "llama_cpp"
    OLLAMA = "ollama"
    LM_STUDIO = "lm_studio"

    @property
    def engine(self) -> Runtime:
        """The engine underneath: llama.cpp for its presets."""
        return Runtime.LLAMA_CPP if self in (Runtime.OLLAMA, Runtime.LM_STUDIO) else self


class GgufType(StrEnum):
    """A llama.cpp GGUF file type (``llama-quantize`` names; src/llama-quant.cpp)."""

    F32 = "f32"
    BF16 = "bf16"
    F16 = "f16"
    Q8_0 = "q8_0"
    Q6_K = "q6_k"
    Q5_K_M = "q5_k_m"
    Q5_K_S = "q5_k_s"
    Q4_K_M = "q4_k_m"
    Q4_K_S = "q4_k_s"
    Q4_0 = "q4_0"
    Q3_K_M = "q3_k_m"
    Q3_K_S = "q3_k_s"
    Q2_K = "q2_k"
    MXFP4_MOE = "mxfp4_moe"


class CacheType(StrEnum):
    """A llama.cpp KV cache type (``-ctk`` / ``-ctv``; common/arg.cpp kv_cache_types)."""

    F32 = "f32"
    F16 = "f16"
    BF16 = "bf16"
    Q8_0 = "q8_0"
    Q5_1 = "q5_1"
    Q5_0 = "q5_0"
    Q4_1 = "q4_1"
    Q4_0 = "q4_0"
    IQ4_NL = "iq4_nl"


# One label table per option type: equal values of two types (Checkpointing.NONE and
# Sharding.NONE are both "none") keep their own labels.
OPTION_LABELS: dict[type[StrEnum], dict[Any, str]] = {
    ModelKind: {
        ModelKind.GENERIC: "Parameter count",
        ModelKind.TRANSFORMER: "Transformer architecture",
        ModelKind.PRESET: "Catalog model",
        ModelKind.CNN: "Convolutional network",
    },
    Mode: {
        Mode.TRAINING: "Training",
        Mode.INFERENCE: "Inference",
    },
    Precision: {
        Precision.AMP_BF16: "BF16 mixed precision (AMP)",
        Precision.AMP_FP16: "FP16 mixed precision (AMP)",
        # Every other precision stores its weights in the format of the same name.
        **{Precision(fmt.value): text for fmt, text in FORMAT_LABELS.items()},
    },
    Optimizer: {
        Optimizer.SGD: "SGD",
        Optimizer.SGD_MOMENTUM: "SGD with momentum",
        Optimizer.ADAMW: "Adam / AdamW",
        Optimizer.ADAMW_8BIT: "8-bit AdamW (bitsandbytes)",
        Optimizer.ADAFACTOR: "Adafactor",
        Optimizer.LION: "Lion",
    },
    OptimizerImpl: {
        OptimizerImpl.FOREACH: "foreach (multi-tensor, the CUDA default)",
        OptimizerImpl.FUSED: "fused (one kernel, in place)",
        OptimizerImpl.FOR_LOOP: "for-loop (one tensor at a time)",
    },
    ZeroGrad: {
        ZeroGrad.BEFORE_FORWARD: "before the forward pass (or after the step)",
        ZeroGrad.BEFORE_BACKWARD: "after the forward pass, before backward",
        ZeroGrad.SET_TO_ZERO: "set_to_none=False (gradients never freed)",
    },
    Checkpointing: {
        Checkpointing.NONE: "None",
        Checkpointing.SELECTIVE: "Selective (attention recomputed)",
        Checkpointing.PER_OP: "Per-op selective (torchtitan: matmul and attention outputs kept)",
        Checkpointing.EVERY_N: "Every n-th layer (torchtitan layer SAC)",
        Checkpointing.FULL: "Full (every layer recomputed)",
    },
    Loss: {
        Loss.STANDARD: "Cross-entropy over all the logits",
        Loss.CHUNKED: "Chunked cross-entropy (torchtune CEWithChunkedOutputLoss)",
        Loss.FUSED_LINEAR: "Fused linear cross-entropy (Liger)",
        Loss.CCE: "Cut Cross-Entropy (Apple CCE)",
        Loss.COMPILED: "Compiled cross-entropy (torchtitan)",
        Loss.FP32_LOGITS: "Cross-entropy on fp32 logits (transformers 4.45 and older)",
    },
    Packing: {
        Packing.AUTO: "Auto (padded for HF Trainer and TRL, off otherwise)",
        Packing.OFF: "Off: full rows as given",
        Packing.PADDED: "Padded rows (an attention mask)",
        Packing.PACKED: "Packed rows (TRL wrapped, torchtune packed)",
        Packing.PADDING_FREE: "Padding-free: one flattened row (TRL, FlashAttention)",
    },
    PipelineSchedule: {
        PipelineSchedule.ONE_F_ONE_B: "1F1B",
        PipelineSchedule.INTERLEAVED_1F1B: "Interleaved 1F1B (2 stages per GPU)",
        PipelineSchedule.GPIPE: "GPipe (all micro-batches, then backward)",
    },
    Attention: {
        Attention.SDPA: "Memory-efficient / flash (SDPA)",
        Attention.EAGER: "Eager (scores materialized)",
    },
    Finetune: {
        Finetune.FULL: "Full fine-tuning",
        Finetune.LORA: "LoRA adapters",
    },
    LoraTargets: {
        LoraTargets.QV: "q and v projections",
        LoraTargets.ATTENTION: "q, k, v and o projections",
        LoraTargets.ALL_LINEAR: "all linear layers",
        LoraTargets.QVO_MLP: "q, v, o and the MLP (torchtune)",
        LoraTargets.QKV_MLP: "q, k, v and the MLP (fsdp_qlora)",
    },
    LoraDtype: {
        LoraDtype.FP32: "fp32 (peft)",
        LoraDtype.MODEL: "the model's type (torchtune, pure bf16)",
    },
    Stack: {
        Stack.PLAIN: "Plain PyTorch loop",
        Stack.HF_TRAINER: "Hugging Face Trainer",
        Stack.TRL_SFT: "TRL SFTTrainer",
        Stack.DDP: "PyTorch DDP",
        Stack.FSDP2: "PyTorch FSDP2 (fully_shard)",
        Stack.DEEPSPEED: "DeepSpeed ZeRO",
    },
    FsdpDtype: {
        FsdpDtype.AUTO: "Auto (from precision)",
        FsdpDtype.FP32: "FP32",
        FsdpDtype.BF16: "BF16",
        FsdpDtype.FP16: "FP16",
    },
    Float8Training: {
        Float8Training.OFF: "Off (16-bit matmuls)",
        Float8Training.TORCHAO: "torchao float8 (Float8Linear, torchtitan)",
        Float8Training.TRANSFORMER_ENGINE: "Transformer Engine (te.Linear, fp8_autocast)",
    },
    Sharding: {
        Sharding.NONE: "None (each GPU holds everything)",
        Sharding.ZERO1: "ZeRO-1 (optimizer state sharded)",
        Sharding.ZERO2: "ZeRO-2 (+ gradients sharded)",
        Sharding.ZERO3: "ZeRO-3 / FSDP (+ weights sharded)",
    },
    KvDtype: {
        KvDtype.AUTO: "Same as compute",
        KvDtype.FP32: "FP32",
        KvDtype.FP16: "FP16",
        KvDtype.BF16: "BF16",
        KvDtype.FP8: "FP8",
    },
    Logits: {
        Logits.LAST: "Last position (generate)",
        Logits.ALL: "Every position",
    },
    OffloadDevice: {
        OffloadDevice.CPU: "CPU (host RAM)",
        OffloadDevice.NVME: "NVMe (swap files)",
    },
    Device: {
        Device.CUDA: "CUDA GPU",
        Device.CPU: "CPU (host memory)",
    },
    Runtime: {
        Runtime.TRANSFORMERS: "transformers (generate)",
        Runtime.VLLM: "vLLM",
        Runtime.LLAMA_CPP: "llama.cpp",
        Runtime.OLLAMA: "Ollama (llama.cpp)",
        Runtime.LM_STUDIO: "LM Studio (llama.cpp)",
    },
    GgufType: {t: t.value.upper() for t in GgufType},
    CacheType: {t: t.value for t in CacheType},
}


class Labels:
    """The label of any option, looked up in its own type's table: ``LABELS[member]``.

    >>> LABELS[Checkpointing.NONE], LABELS[Sharding.NONE]
    ('None', 'None (each GPU holds everything)')
    >>> Mode.TRAINING in LABELS, LABELS.get(Mode.TRAINING)
    (True, 'Training')
    """

    def __getitem__(self, member: StrEnum) -> str:
        return OPTION_LABELS[type(member)][member]

    def __contains__(self, member: object) -> bool:
        return isinstance(member, StrEnum) and member in OPTION_LABELS.get(type(member), {})

    def get(self, member: StrEnum, default: str | None = None) -> str | None:
        """The label, or ``default`` for a value no option type holds."""
        return OPTION_LABELS.get(type(member), {}).get(member, default)

    def items(self) -> Iterator[tuple[StrEnum, str]]:
        """Every option with its label, type by type."""
        for table in OPTION_LABELS.values():
            yield from table.items()


LABELS = Labels()


# --- the models ----------------------------------------------------------------------------

MILLION = Decimal(10**6)


@dataclass(frozen=True)
class GenericModel:
    """A model known by its parameter count, with width and depth for activations.

    ``derived`` names the shape fields that were not given but worked out from ``params``.

    >>> GenericModel(params=110_000_000, hidden_size=768, num_layers=12).params
    110000000
    """

    params: int
    hidden_size: int
    num_layers: int
    derived: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        raise_if(
            _problem(PARAMS.check(Decimal(self.params) / MILLION)),
            _problem(HIDDEN_SIZE.check(self.hidden_size)),
            _problem(NUM_LAYERS.check(self.num_layers)),
        )

    @classmethod
    def from_params(
        cls, params: int, hidden_size: int | None = None, num_layers: int | None = None
    ) -> GenericModel:
        """Fill in a typical width and/or depth for ``params`` parameters.

        A transformer layer holds about ``12·h²`` parameters (Kaplan et al. 2020,
        arXiv 2001.08361 §2.1: ``N ≈ 12·n_layer·d_model²``), and GPT-3-style models keep
        ``h ≈ 128·L`` (Brown et al. 2020, arXiv 2005.14165 Table 2.1: 175B has
        h = 12,288, L = 96). With neither given, both relations fix the shape; with one
        given, the first relation gives the other.

        >>> GenericModel.from_params(7_000_000_000)  # doctest: +NORMALIZE_WHITESPACE
        GenericModel(params=7000000000, hidden_size=4204, num_layers=33,
                     derived=('hidden_size', 'num_layers'))
        >>> GenericModel.from_params(110_000_000, hidden_size=768).num_layers
        16
        """
        derived = []
        if num_layers is None:
            derived.append("num_layers")
            if hidden_size is None:
                num_layers = round((params / (12 * 128**2)) ** (1 / 3))
            else:
                num_layers = round(params / (12 * hidden_size**2))
            num_layers = min(max(1, num_layers), int(NUM_LAYERS.high))
        if hidden_size is None:
            derived.insert(0, "hidden_size")
            hidden_size = round(math.sqrt(params / (12 * num_layers)))
            hidden_size = min(max(1, hidden_size), int(HIDDEN_SIZE.high))
        return cls(params, hidden_size, num_layers, tuple(derived))


Model = GenericModel | Transformer | Any  # Any: nnmem.models.cnn.CnnModel (imported lazily)


# --- the scenario --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Everything the estimate depends on.

    >>> s = Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128)
    >>> s.mode, s.precision, s.optimizer
    (<Mode.TRAINING: 'training'>, <Precision.FP32: 'fp32'>, <Optimizer.ADAMW: 'adamw'>)
    """

    model: Model
    mode: Mode = Mode.TRAINING
    precision: Precision = Precision.FP32
    optimizer: Optimizer = Optimizer.ADAMW
    batch_size: int = 1
    seq_len: int = 512
    # training
    optimizer_impl: OptimizerImpl = OptimizerImpl.FOREACH
    zero_grad: ZeroGrad = ZeroGrad.BEFORE_FORWARD
    checkpointing: Checkpointing = Checkpointing.NONE
    # torchtitan selective_ac_option "n": every n-th block checkpointed in full
    checkpoint_every: int = 2
    attention: Attention = Attention.SDPA
    grad_accum_steps: int = 1
    # memory features a training loop switches on (torchtune's recipes name each one)
    loss: Loss = Loss.STANDARD
    loss_chunks: int = 8  # torchtune CEWithChunkedOutputLoss(num_output_chunks=8)
    optimizer_in_backward: bool = False
    activation_offload: bool = False
    # bitsandbytes PagedAdamW (32-bit states) or PagedAdamW8bit, by the optimizer
    paged_optimizer: bool = False
    # torch.compile of each transformer block (torchtitan apply_compile, torchtune
    # compile_model): Inductor recomputes the cheap elementwise tensors in backward.
    torch_compile: bool = False
    # the batch's layout (padded rows, packed rows or one padding-free row); auto follows
    # the stack (Scenario.packing_used)
    packing: Packing = Packing.AUTO
    # FP8 training of the layers' linear layers (nnmem.models.transformer.float8), and
    # torchao's enable_fsdp_float8_all_gather: FSDP2 all-gathers those weights in float8.
    float8_training: Float8Training = Float8Training.OFF
    float8_all_gather: bool = False
    finetune: Finetune = Finetune.FULL
    lora_rank: int = 16
    lora_targets: LoraTargets = LoraTargets.QV
    lora_dtype: LoraDtype = LoraDtype.FP32
    lora_dropout: Decimal = Decimal(0)
    group_size: int = 128
    decoder_seq_len: int | None = None  # T5 target length; None: same as seq_len
    image_size: int | None = None  # ViT and CNN input side; None: the model's own
    # parallelism
    num_gpus: int = 1
    sharding: Sharding = Sharding.NONE
    tensor_parallel: int = 1
    # Megatron-LM --sequence-parallel / torchtitan SequenceParallel on the norms: the
    # tensors tensor parallelism leaves whole are split along the sequence.
    sequence_parallel: bool = False
    # torchtitan loss_parallel: the head's output stays sharded by vocabulary into the loss.
    loss_parallel: bool = False
    # torchtitan context parallelism (torch.distributed.tensor.experimental
    # context_parallel): the sequence split over this many ranks, ring attention between
    # them; FSDP2 shards over the data-parallel and context-parallel ranks together.
    context_parallel: int = 1
    # Expert parallelism of a mixture of experts (Megatron-LM --expert-model-parallel-size,
    # torchtitan expert_parallel_degree): each rank holds experts/expert_parallel of every
    # MoE layer's routed experts, and tokens reach them through an all-to-all.
    expert_parallel: int = 1
    # training pipeline parallelism is pipeline_parallel (below, shared with vLLM), run
    # with this schedule over this many micro-batches (None: torchtitan's default, one per
    # stage of the pipeline)
    pipeline_schedule: PipelineSchedule = PipelineSchedule.ONE_F_ONE_B
    pipeline_microbatches: int | None = None
    offload_optimizer: bool = False
    # DeepSpeed offload_optimizer.device: cpu, or nvme (ZeRO-3; swap files, nnmem.stacks)
    offload_optimizer_device: OffloadDevice = OffloadDevice.CPU
    # the training stack (nnmem.stacks) and its own settings
    stack: Stack = Stack.PLAIN
    gradient_as_bucket_view: bool = False  # torch/nn/parallel/distributed.py default
    reshard_after_forward: bool = True  # torch fully_shard default
    cpu_offload: bool = False  # FSDP2 CPUOffloadPolicy; FSDP CPUOffload under ZeRO-3 sharding
    # FSDP2 MixedPrecisionPolicy param_dtype (the all-gathered, unsharded parameters and
    # the forward's compute) and reduce_dtype (the reduce-scatter input); auto: from precision
    fsdp_param_dtype: FsdpDtype = FsdpDtype.AUTO
    fsdp_reduce_dtype: FsdpDtype = FsdpDtype.AUTO
    # FSDP (v1) under ZeRO-3 sharding, wrapping a model loaded on the CPU with device_id
    # and sync_module_states=True: each unit moved to the GPU, broadcast, flattened and
    # sharded there (torch/distributed/fsdp/_init_utils.py; FSDP's default is False)
    sync_module_states: bool = False
    offload_param: bool = False  # DeepSpeed zero_optimization.offload_param (stage 3)
    offload_param_device: OffloadDevice = OffloadDevice.CPU  # its device: cpu or nvme
    # DeepSpeed zero_optimization.reduce_bucket_size (deepspeed/runtime/zero/config.py)
    reduce_bucket_size: int = 500_000_000
    # DeepSpeed ZeRO-3's gathering (zero_optimization.stage3_*, deepspeed/runtime/zero/
    # config.py defaults): the prefetch bucket and the cap on gathered parameters, in
    # elements, and the size under which a parameter is kept whole on every GPU.
    stage3_prefetch_bucket_size: int = 50_000_000
    stage3_max_live_parameters: int = 1_000_000_000
    stage3_param_persistence_threshold: int = 100_000
    # inference
    new_tokens: int = 0
    kv_cache_dtype: KvDtype = KvDtype.AUTO
    logits: Logits = Logits.LAST
    # the inference runtime (nnmem.runtimes); batch_size is the number of requests served
    # at once and seq_len the context of each (vLLM --max-model-len; llama.cpp -c is
    # seq_len x batch_size shared by -np batch_size slots)
    runtime: Runtime = Runtime.TRANSFORMERS
    # vLLM (vllm/config/cache.py, scheduler.py; None: vLLM's default for the card)
    gpu_memory_utilization: Decimal = Decimal("0.92")
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    block_size: int = 64
    enforce_eager: bool = False
    pipeline_parallel: int = 1
    # llama.cpp (common/arg.cpp; n_gpu_layers None: every layer and the output, -ngl 999)
    gguf_type: GgufType = GgufType.Q4_K_M
    n_ubatch: int = 512
    type_k: CacheType = CacheType.F16
    type_v: CacheType = CacheType.F16
    flash_attn: bool = True
    n_gpu_layers: int | None = None
    # where it runs, and the overheads outside the tensors
    device: Device = Device.CUDA
    # Measured: the median process memory outside PyTorch's pool at the end of 32 real
    # runs on an H200 (benchmarks/accuracy/measured_cuda.json); see estimate.CONTEXT_SOURCE.
    cuda_context_mib: int = 740
    allocator_overhead_percent: Decimal = Decimal(5)
    # Replay the step through the model of PyTorch's caching allocator (nnmem.timeline,
    # nnmem.allocator) for the reserved memory, instead of the flat percentage above;
    # the allocator's options as PYTORCH_CUDA_ALLOC_CONF spells them (max_split_size_mb
    # None: unlimited, PyTorch's default; roundup_power2_divisions 0: off).
    allocator_replay: bool = False
    expandable_segments: bool = False
    max_split_size_mb: int | None = None
    roundup_power2_divisions: int = 0
    # Share of the GPU's usable memory a verdict keeps free: fragmentation over a long run,
    # a display, other processes. The accuracy suite's GPU runs measured device totals up
    # to 20% above the estimate with gradient checkpointing (benchmarks/accuracy).
    headroom_percent: Decimal = Decimal(10)
    # The checkpoint's stored bytes by dtype or part, read from its headers: the weights
    # term of a quantized precision (see CHECKPOINT_BYTES_HELP).
    checkpoint_bytes: tuple[tuple[str, int], ...] = ()
    # how the model was named, so to_dict can give it back the same way
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        raise_if(*_cross_checks(self))

    @property
    def kind(self) -> ModelKind:
        """How the model was described."""
        return ModelKind(self.source.get("model", _kind_of(self.model)))

    @property
    def cached_tokens(self) -> int:
        """Tokens a decoder's KV cache holds once generation ends: the prompt and every
        generated token (transformers cache_utils.py DynamicCache grows by one per step)."""
        return self.seq_len + self.new_tokens

    def inactive_fields(self) -> tuple[str, ...]:
        """Schema keys that do not affect this scenario's estimate."""
        return self._inactive

    @cached_property
    def _inactive(self) -> tuple[str, ...]:
        # Worked out once: the scenario is frozen, and one calculator request asks for it
        # three times (the hidden controls, the description, the summary).
        return inactive_fields(
            self.kind,
            self.mode,
            self.model,
            self.finetune,
            self.precision,
            self.runtime,
            stack=self.stack,
            sharding=self.sharding,
            optimizer=self.optimizer,
            checkpointing=self.checkpointing,
            loss=self.loss,
            device=self.device,
            optimizer_in_backward=self.optimizer_in_backward,
            tensor_parallel=self.tensor_parallel,
            pipeline_parallel=self.pipeline_parallel,
            float8_training=self.float8_training,
            offload_optimizer=self.offload_optimizer,
            offload_param=self.offload_param,
        )

    @property
    def data_parallel(self) -> int:
        """The data-parallel degree, over which ZeRO shards model states: the GPUs over
        the tensor-parallel degree, where a transformer is split (Megatron-DeepSpeed
        shards within the data-parallel group; Rajbhandari et al. 2020, ZeRO, arXiv
        1910.02054 §5: N_d data-parallel processes).

        >>> Scenario(GenericModel(10**9, 2048, 16), num_gpus=8, tensor_parallel=2).data_parallel
        8
        """
        if isinstance(self.model, Transformer):
            stages = self.pipeline_parallel if self.pipelined else 1
            return self.num_gpus // (self.tensor_parallel * stages)
        return self.num_gpus

    @property
    def packing_used(self) -> Packing:
        """The batch layout the step runs with: ``auto`` is ``padded`` for the HF Trainer
        and TRL stacks, whose collators pad every row to the batch's longest
        (transformers DataCollatorWithPadding, TRL DataCollatorForLanguageModeling), and
        ``off`` for the others, whose loop takes the batch as given.

        >>> m = GenericModel(10**9, 2048, 16)
        >>> Scenario(m, stack=Stack.TRL_SFT).packing_used, Scenario(m).packing_used
        (<Packing.PADDED: 'padded'>, <Packing.OFF: 'off'>)
        """
        if self.packing is not Packing.AUTO:
            return self.packing
        hf = self.stack in (Stack.HF_TRAINER, Stack.TRL_SFT)
        return Packing.PADDED if hf else Packing.OFF

    @property
    def pipelined(self) -> bool:
        """Whether a training step runs as a pipeline over ``pipeline_parallel`` stages."""
        return (
            self.mode is Mode.TRAINING
            and self.pipeline_parallel > 1
            and pipeline_applies(self.model)
        )

    def to_dict(self, compact: bool = False) -> dict[str, Any]:
        """The scenario in the JSON schema; :func:`parse` reads it back unchanged.

        ``compact`` leaves out keys at their default and keys that do not apply.

        >>> llama = Scenario(GenericModel(7_000_000_000, 4096, 32), Mode.INFERENCE)
        >>> llama.to_dict(compact=True)  # doctest: +NORMALIZE_WHITESPACE
        {'model': 'generic', 'params_millions': 7000, 'hidden_size': 4096,
         'num_layers': 32, 'mode': 'inference'}
        """
        data: dict[str, Any] = {"model": self.kind.value, **_model_fields(self)}
        for key in SETTINGS:
            data[key] = _plain(getattr(self, key))
        if self.checkpoint_bytes:
            data[CHECKPOINT_BYTES] = dict(self.checkpoint_bytes)
        if compact:
            skip = set(self.inactive_fields())
            given = stack_defaults(self.stack, self.mode, self.finetune, self.precision)
            data = {
                k: v
                for k, v in data.items()
                if k in MODEL_KEYS or (k not in skip and v != _plain(given.get(k, SETTINGS.get(k))))
            }
        return data


def _plain(value: object) -> object:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _kind_of(model: object) -> str:
    if isinstance(model, GenericModel):
        return ModelKind.GENERIC.value
    if isinstance(model, Transformer):
        return ModelKind.TRANSFORMER.value
    return ModelKind.CNN.value


def _model_fields(s: Scenario) -> dict[str, Any]:
    m = s.model
    if isinstance(m, GenericModel):
        millions = Decimal(m.params) / MILLION
        return {
            "params_millions": int(millions) if millions == int(millions) else float(millions),
            "hidden_size": None if "hidden_size" in m.derived else m.hidden_size,
            "num_layers": None if "num_layers" in m.derived else m.num_layers,
        }
    key = {ModelKind.TRANSFORMER: "config", ModelKind.PRESET: "preset", ModelKind.CNN: "cnn"}[
        s.kind
    ]
    if key in s.source:
        return {key: s.source[key]}
    if isinstance(m, Transformer):
        return {"config": dict(m.config)}
    spec: dict[str, Any] = m.to_dict()
    return {"cnn": spec}


# --- field specs: one table serves parsing, checking and the form -----------------------


def _problem(result: object) -> Problem | None:
    return result if isinstance(result, Problem) else None


PARAMS = NumberSpec(
    "params_millions",
    "Model size",
    Decimal("0.000001"),
    Decimal(10_000_000),
    False,
    "a number of millions of parameters above 0 and at most 10,000,000, or a count with "
    "its unit such as 7B or 350M",
    # How model names give their size: 7B, 350M, 1.5b (thousands, millions, billions,
    # trillions), read into millions.
    suffixes=(("k", Decimal("0.001")), ("m", Decimal(1)), ("b", Decimal(1000)), ("t", MILLION)),
)
HIDDEN_SIZE = whole("hidden_size", "Hidden dimension", 1_000_000)
NUM_LAYERS = whole("num_layers", "Number of layers", 100_000)
BATCH_SIZE = whole("batch_size", "Batch size", 1_000_000)
SEQ_LEN = whole("seq_len", "Sequence length", 10_000_000)
DECODER_SEQ_LEN = whole("decoder_seq_len", "Decoder length", 10_000_000)
IMAGE_SIZE = whole("image_size", "Image size", 8_192)
NEW_TOKENS = whole("new_tokens", "Generated tokens", 10_000_000, low=0)
CHECKPOINT_EVERY = whole("checkpoint_every", "Checkpoint every n-th layer", 1_000)
GRAD_ACCUM = whole("grad_accum_steps", "Gradient accumulation steps", 10_000)
LOSS = ChoiceSpec(
    "loss",
    "Loss",
    Loss,
    aliases=(
        ("chunked_ce", "chunked"),
        ("cross_entropy", "standard"),
        ("liger", "fused_linear"),
        ("cut_cross_entropy", "cce"),
    ),
)
LOSS_CHUNKS = whole("loss_chunks", "Loss chunks", 1_024)
OPTIMIZER_IN_BACKWARD = FlagSpec("optimizer_in_backward", "Optimizer in backward")
ACTIVATION_OFFLOAD = FlagSpec("activation_offload", "Activation offloading")
PAGED_OPTIMIZER = FlagSpec("paged_optimizer", "Paged optimizer")
TORCH_COMPILE = FlagSpec("torch_compile", "Compiled blocks")
PACKING = ChoiceSpec(
    "packing",
    "Packing",
    Packing,
    aliases=(("none", "off"), ("padding", "padded"), ("padding-free", "padding_free")),
)
FLOAT8_TRAINING = ChoiceSpec(
    "float8_training",
    "FP8 training",
    Float8Training,
    aliases=(("ao", "torchao"), ("te", "transformer_engine"), ("none", "off")),
)
FLOAT8_ALL_GATHER = FlagSpec("float8_all_gather", "FP8 all-gather")
LORA_RANK = whole("lora_rank", "LoRA rank", 65_536)
GROUP_SIZE = whole("group_size", "Quantization group size", 1_048_576, low=8)
LORA_DROPOUT = NumberSpec(
    "lora_dropout",
    "LoRA dropout",
    Decimal(0),
    Decimal("0.99"),
    False,
    "a probability from 0 to 0.99",
)
NUM_GPUS = whole("num_gpus", "Number of GPUs", 100_000)
TENSOR_PARALLEL = whole("tensor_parallel", "Tensor-parallel degree", 1_024)
SEQUENCE_PARALLEL = FlagSpec("sequence_parallel", "Sequence parallelism")
LOSS_PARALLEL = FlagSpec("loss_parallel", "Loss parallelism")
CONTEXT_PARALLEL = whole("context_parallel", "Context-parallel degree", 1_024)
EXPERT_PARALLEL = whole("expert_parallel", "Expert-parallel degree", 1_024)
PIPELINE_SCHEDULE = ChoiceSpec("pipeline_schedule", "Pipeline schedule", PipelineSchedule)
PIPELINE_MICROBATCHES = whole("pipeline_microbatches", "Pipeline micro-batches", 1_000_000)
GPU_UTILIZATION = NumberSpec(
    "gpu_memory_utilization",
    "GPU memory utilization",
    Decimal("0.01"),
    Decimal(1),
    False,
    "a fraction above 0 and at most 1, such as 0.9",
)
MAX_NUM_SEQS = whole("max_num_seqs", "Max sequences", 1_000_000)
MAX_BATCHED_TOKENS = whole("max_num_batched_tokens", "Max batched tokens", 10_000_000)
BLOCK_SIZE = whole("block_size", "KV block size", 4_096)
PIPELINE_PARALLEL = whole("pipeline_parallel", "Pipeline-parallel degree", 1_024)
N_UBATCH = whole("n_ubatch", "Micro-batch (n_ubatch)", 1_000_000)
N_GPU_LAYERS = whole("n_gpu_layers", "GPU layers (-ngl)", 100_000, low=0)
CUDA_CONTEXT = whole("cuda_context_mib", "CUDA context", 65_536, low=0)
ALLOCATOR = NumberSpec(
    "allocator_overhead_percent",
    "Allocator overhead",
    Decimal(0),
    Decimal(100),
    False,
    "a percentage from 0 to 100",
)
ALLOCATOR_REPLAY = FlagSpec("allocator_replay", "Replay the caching allocator")
EXPANDABLE = FlagSpec("expandable_segments", "expandable_segments")
# c10/core/AllocatorConfig.cpp parseMaxSplitSize: at least kLargeBuffer (20 MiB).
MAX_SPLIT = whole("max_split_size_mb", "max_split_size_mb", 10_000_000, low=20)
# parseRoundUpPower2Divisions: a power of two (checked in _cross_checks); 0 is off.
ROUNDUP_DIVISIONS = whole("roundup_power2_divisions", "roundup_power2_divisions", 1024, low=0)
HEADROOM = NumberSpec(
    "headroom_percent",
    "Headroom",
    Decimal(0),
    Decimal(90),
    False,
    "a percentage from 0 to 90",
)
MODE = ChoiceSpec("mode", "Mode", Mode)
PRECISION = ChoiceSpec(
    "precision",
    "Precision",
    Precision,
    aliases=(("fp16_mixed", "amp_fp16"), ("bf16_mixed", "amp_bf16"), ("int4_nf4", "nf4")),
)
OPTIMIZER = ChoiceSpec(
    "optimizer", "Optimizer", Optimizer, aliases=(("adam", "adamw"), ("adam_8bit", "adamw_8bit"))
)
OPTIMIZER_IMPL = ChoiceSpec(
    "optimizer_impl", "Optimizer implementation", OptimizerImpl, aliases=(("for-loop", "for_loop"),)
)
ZERO_GRAD = ChoiceSpec("zero_grad", "optimizer.zero_grad()", ZeroGrad)
CHECKPOINTING = ChoiceSpec(
    "checkpointing",
    "Gradient checkpointing",
    Checkpointing,
    aliases=(("true", "full"), ("on", "full"), ("false", "none"), ("off", "none")),
)
ATTENTION = ChoiceSpec(
    "attention",
    "Attention kernel",
    Attention,
    aliases=(("flash", "sdpa"), ("flash_attention_2", "sdpa"), ("memory_efficient", "sdpa")),
)
FINETUNE = ChoiceSpec("finetune", "Fine-tuning", Finetune, aliases=(("qlora", "lora"),))
LORA_TARGETS = ChoiceSpec("lora_targets", "LoRA targets", LoraTargets)
LORA_DTYPE = ChoiceSpec("lora_dtype", "LoRA adapter type", LoraDtype)
SHARDING = ChoiceSpec(
    "sharding",
    "Sharding",
    Sharding,
    aliases=(
        ("fsdp", "zero3"),
        ("full_shard", "zero3"),
        ("shard_grad_op", "zero2"),
        ("zero0", "none"),
        ("ddp", "none"),
    ),
)
OFFLOAD = FlagSpec("offload_optimizer", "Optimizer offload")
OFFLOAD_DEVICE = ChoiceSpec("offload_optimizer_device", "Optimizer offload device", OffloadDevice)
STACK = ChoiceSpec(
    "stack",
    "Training stack",
    Stack,
    aliases=(
        ("pytorch", "plain"),
        ("trainer", "hf_trainer"),
        ("sft", "trl_sft"),
        ("fsdp", "fsdp2"),
        ("zero", "deepspeed"),
    ),
)
BUCKET_VIEW = FlagSpec("gradient_as_bucket_view", "Gradients as bucket views")
RESHARD = FlagSpec("reshard_after_forward", "Reshard after forward")
CPU_OFFLOAD = FlagSpec("cpu_offload", "FSDP CPU offload")
FSDP_PARAM_DTYPE = ChoiceSpec("fsdp_param_dtype", "FSDP param dtype", FsdpDtype)
FSDP_REDUCE_DTYPE = ChoiceSpec("fsdp_reduce_dtype", "FSDP reduce dtype", FsdpDtype)
SYNC_STATES = FlagSpec("sync_module_states", "FSDP sync_module_states")
OFFLOAD_PARAM = FlagSpec("offload_param", "Parameter offload")
OFFLOAD_PARAM_DEVICE = ChoiceSpec("offload_param_device", "Parameter offload device", OffloadDevice)
REDUCE_BUCKET = whole("reduce_bucket_size", "Reduce bucket size", 10**12, low=0)
PREFETCH_BUCKET = whole("stage3_prefetch_bucket_size", "ZeRO-3 prefetch bucket", 10**12, low=0)
MAX_LIVE = whole("stage3_max_live_parameters", "ZeRO-3 max live parameters", 10**12, low=0)
PERSISTENCE = whole(
    "stage3_param_persistence_threshold", "ZeRO-3 persistence threshold", 10**12, low=0
)
KV_DTYPE = ChoiceSpec("kv_cache_dtype", "KV-cache type", KvDtype)
LOGITS = ChoiceSpec("logits", "Logits", Logits)
KIND = ChoiceSpec("model", "Model", ModelKind)
DEVICE = ChoiceSpec("device", "Device", Device, aliases=(("gpu", "cuda"),))
RUNTIME = ChoiceSpec(
    "runtime",
    "Runtime",
    Runtime,
    aliases=(("hf", "transformers"), ("llama.cpp", "llama_cpp"), ("llamacpp", "llama_cpp"),
             ("lmstudio", "lm_studio")),
)  # fmt: skip
ENFORCE_EAGER = FlagSpec("enforce_eager", "Enforce eager")
GGUF_TYPE = ChoiceSpec("gguf_type", "GGUF file type", GgufType)
TYPE_K = ChoiceSpec("type_k", "K cache type", CacheType)
TYPE_V = ChoiceSpec("type_v", "V cache type", CacheType)
FLASH_ATTN = FlagSpec("flash_attn", "Flash attention (-fa)")

MODEL_KEYS = ("params_millions", "hidden_size", "num_layers", "config", "preset", "cnn")
# Every setting with its default, in schema order (the model keys come first): the
# Scenario's own fields and defaults, so a default is stated once, there. The checkpoint's
# bytes are an object rather than one value, read by read_checkpoint_bytes.
SETTINGS: dict[str, Any] = {
    f.name: f.default
    for f in fields(Scenario)
    if f.name not in ("model", "source", "checkpoint_bytes")
}
SPECS: dict[str, NumberSpec | ChoiceSpec[Any] | FlagSpec] = {
    spec.key: spec
    for spec in (
        KIND,
        PARAMS,
        HIDDEN_SIZE,
        NUM_LAYERS,
        MODE,
        PRECISION,
        OPTIMIZER,
        BATCH_SIZE,
        SEQ_LEN,
        OPTIMIZER_IMPL,
        ZERO_GRAD,
        CHECKPOINTING,
        CHECKPOINT_EVERY,
        ATTENTION,
        GRAD_ACCUM,
        LOSS,
        LOSS_CHUNKS,
        OPTIMIZER_IN_BACKWARD,
        ACTIVATION_OFFLOAD,
        PAGED_OPTIMIZER,
        TORCH_COMPILE,
        PACKING,
        FLOAT8_TRAINING,
        FLOAT8_ALL_GATHER,
        FINETUNE,
        LORA_RANK,
        LORA_TARGETS,
        LORA_DTYPE,
        LORA_DROPOUT,
        GROUP_SIZE,
        DECODER_SEQ_LEN,
        IMAGE_SIZE,
        NUM_GPUS,
        SHARDING,
        TENSOR_PARALLEL,
        SEQUENCE_PARALLEL,
        LOSS_PARALLEL,
        CONTEXT_PARALLEL,
        EXPERT_PARALLEL,
        PIPELINE_SCHEDULE,
        PIPELINE_MICROBATCHES,
        OFFLOAD,
        OFFLOAD_DEVICE,
        STACK,
        BUCKET_VIEW,
        RESHARD,
        CPU_OFFLOAD,
        FSDP_PARAM_DTYPE,
        FSDP_REDUCE_DTYPE,
        SYNC_STATES,
        OFFLOAD_PARAM,
        OFFLOAD_PARAM_DEVICE,
        REDUCE_BUCKET,
        PREFETCH_BUCKET,
        MAX_LIVE,
        PERSISTENCE,
        NEW_TOKENS,
        KV_DTYPE,
        LOGITS,
        RUNTIME,
        GPU_UTILIZATION,
        MAX_NUM_SEQS,
        MAX_BATCHED_TOKENS,
        BLOCK_SIZE,
        ENFORCE_EAGER,
        PIPELINE_PARALLEL,
        GGUF_TYPE,
        N_UBATCH,
        TYPE_K,
        TYPE_V,
        FLASH_ATTN,
        N_GPU_LAYERS,
        DEVICE,
        CUDA_CONTEXT,
        ALLOCATOR,
        ALLOCATOR_REPLAY,
        EXPANDABLE,
        MAX_SPLIT,
        ROUNDUP_DIVISIONS,
        HEADROOM,
    )
}
CHECKPOINT_BYTES = "checkpoint_bytes"
CHECKPOINT_BYTES_HELP = (
    "an object of stored bytes by dtype or part, as a checkpoint's headers state them "
    '(such as {"quantized weights": 4118802432, "weights": 1050673152})'
)
MAX_CHECKPOINT_PARTS = 64
MAX_CHECKPOINT_BYTES = 2**50  # a pebibyte: far above any checkpoint
KNOWN_KEYS = ("model", *MODEL_KEYS, *SETTINGS, CHECKPOINT_BYTES)
_KNOWN = frozenset(KNOWN_KEYS)  # for look-ups
OPTIONAL_NUMBERS = {
    "hidden_size",
    "num_layers",
    "decoder_seq_len",
    "image_size",
    "max_num_seqs",
    "max_num_batched_tokens",
    "n_gpu_layers",
    "pipeline_microbatches",
    "max_split_size_mb",
}
VLLM_KEYS = frozenset(
    {
        "gpu_memory_utilization",
        "max_num_seqs",
        "max_num_batched_tokens",
        "block_size",
        "enforce_eager",
        "pipeline_parallel",
    }
)
LLAMA_CPP_KEYS = frozenset(
    {"gguf_type", "n_ubatch", "type_k", "type_v", "flash_attn", "n_gpu_layers"}
)
# The caching allocator's replay and its PYTORCH_CUDA_ALLOC_CONF options.
ALLOCATOR_KEYS = (
    "allocator_replay",
    "expandable_segments",
    "max_split_size_mb",
    "roundup_power2_divisions",
)
# Keys the transformers-only model of a step reads; a served runtime ignores them.
_SERVED_OFF = frozenset(
    {
        "new_tokens",
        "logits",
        "attention",
        "sharding",
        "offload_optimizer",
        "offload_optimizer_device",
        "device",
        "cuda_context_mib",
        "allocator_overhead_percent",
        *ALLOCATOR_KEYS,
        "lora_dropout",
    }
)


ZERO3_KEYS = (
    "stage3_prefetch_bucket_size",
    "stage3_max_live_parameters",
    "stage3_param_persistence_threshold",
)
STACK_KEYS = (
    "stack",
    "gradient_as_bucket_view",
    "reshard_after_forward",
    "cpu_offload",
    "fsdp_param_dtype",
    "fsdp_reduce_dtype",
    "sync_module_states",
    "offload_param",
    "offload_param_device",
    "reduce_bucket_size",
    *ZERO3_KEYS,
)
SINGLE_PROCESS = (Stack.PLAIN, Stack.HF_TRAINER, Stack.TRL_SFT)


def stack_inactive(
    stack: Stack, sharding: Sharding, finetune: Finetune, optimizer: Optimizer
) -> set[str]:
    """Training keys a stack does not read (see ``nnmem.models.step.model_states``)."""
    off = {"gradient_as_bucket_view", "reshard_after_forward", "cpu_offload"}
    off |= {"sync_module_states", "fsdp_param_dtype", "fsdp_reduce_dtype"}
    off |= {"offload_param", "reduce_bucket_size", *ZERO3_KEYS}
    # The Trainer's DeepSpeed integration: ZeRO-1/2 take any step (nnmem.stacks.zero with
    # a frozen base or a client optimizer), ZeRO-3 too under hf_trainer and trl_sft; the
    # plain loop's ZeRO-3 full fine-tuning with AdamW (other steps: FSDP FULL_SHARD).
    zero = stack is Stack.DEEPSPEED or (
        stack in SINGLE_PROCESS
        and sharding is not Sharding.NONE
        and (
            sharding is not Sharding.ZERO3
            or stack is not Stack.PLAIN
            or (finetune is Finetune.FULL and optimizer is Optimizer.ADAMW)
        )
    )
    if stack is Stack.DDP:
        off -= {"gradient_as_bucket_view"}
        off |= {"sharding", "offload_optimizer"}
    elif stack is Stack.FSDP2:
        off -= {"reshard_after_forward", "cpu_offload", "fsdp_param_dtype", "fsdp_reduce_dtype"}
        off |= {"sharding", "offload_optimizer"}
    elif zero:
        off -= {"reduce_bucket_size"}
        if sharding is Sharding.ZERO3:
            off -= {"offload_param", *ZERO3_KEYS}
        if optimizer is Optimizer.ADAMW:
            off.add("optimizer_impl")  # DeepSpeed's own step, modelled from its engine
    elif sharding is Sharding.NONE:
        off.add("offload_optimizer")  # offload is a ZeRO feature
    elif sharding is Sharding.ZERO3:
        # A step nnmem.stacks does not model (LoRA, another optimizer) sharded as FSDP's
        # FULL_SHARD, which can offload its shards: FSDP's CPUOffload(offload_params=True),
        # and wrap a model loaded on the CPU with sync_module_states. FSDP has no
        # optimizer-only offload (torch/distributed/fsdp/api.py CPUOffload moves the
        # parameters, their gradients and so the step), so offload_optimizer is not read.
        off -= {"cpu_offload", "sync_module_states"}
        off.add("offload_optimizer")
    if stack in (Stack.HF_TRAINER, Stack.TRL_SFT) and optimizer is Optimizer.ADAMW:
        off.add("optimizer_impl")  # the Trainer's default optim is adamw_torch_fused
    return off


MEMORY_FEATURE_KEYS = (
    "loss",
    "loss_chunks",
    "optimizer_in_backward",
    "activation_offload",
    "torch_compile",
    "packing",
)


def language_model(model: object) -> bool:
    """Whether the model's head is a language model's, whose loss reads one logit per
    vocabulary entry and token (the logits :class:`Loss` chunks)."""
    return isinstance(model, Transformer) and model.head.value in (
        "causal_lm",
        "masked_lm",
        "seq2seq_lm",
    )


def in_backward_applies(stack: Stack, sharding: Sharding) -> bool:
    """Whether ``optimizer_in_backward`` is read: one process's plain loop, unsharded, as
    torchtune's single-device recipes run it."""
    return stack is Stack.PLAIN and sharding is Sharding.NONE


def paged_applies(stack: Stack, sharding: Sharding, optimizer: Optimizer) -> bool:
    """Whether ``paged_optimizer`` is read: bitsandbytes' PagedAdamW or PagedAdamW8bit in
    one process that holds the whole optimizer (its own loop, or the Trainer's
    ``paged_adamw_32bit`` / ``paged_adamw_8bit``)."""
    single = stack in (Stack.PLAIN, Stack.HF_TRAINER, Stack.TRL_SFT)
    return (
        single
        and sharding is Sharding.NONE
        and optimizer
        in (
            Optimizer.ADAMW,
            Optimizer.ADAMW_8BIT,
        )
    )


def memory_features_inactive(
    model: object, stack: Stack, sharding: Sharding, loss: Loss, optimizer_in_backward: bool
) -> set[str]:
    """Memory-feature keys the engine does not read for this training step: they are
    modelled for transformers; the loss's for a language model's head."""
    if not isinstance(model, Transformer):
        return set(MEMORY_FEATURE_KEYS)
    off = set()
    if not language_model(model):
        off |= {"loss", "loss_chunks"}
    if not compile_applies(model):
        off.add("torch_compile")
    if not pipeline_applies(model):
        off.add("packing")  # a decoder language model's batch of token rows
    if loss is not Loss.CHUNKED:
        off.add("loss_chunks")
    if not in_backward_applies(stack, sharding):
        off.add("optimizer_in_backward")
    elif optimizer_in_backward:
        # Each parameter's hook steps and frees its gradient: no zero_grad to place.
        off.add("zero_grad")
    return off


FLOAT8_KEYS = ("float8_training", "float8_all_gather")


def float8_inactive(
    model: object,
    stack: Stack,
    finetune: Finetune,
    device: Device,
    float8_training: Float8Training,
) -> set[str]:
    """FP8 keys the engine does not read: FP8 training is modelled for a transformer's
    full fine-tuning on a CUDA GPU (torchtitan torchtitan/float8.py Float8Converter
    swaps nothing below SM89; Transformer Engine's kernels are CUDA's), and the float8
    all-gather for torchao under FSDP2 (torchao fsdp_utils.py
    WeightWithDynamicFloat8CastTensor implements FSDP2's fsdp_pre_all_gather)."""
    if not isinstance(model, Transformer) or finetune is not Finetune.FULL:
        return set(FLOAT8_KEYS)
    if device is Device.CPU:
        return set(FLOAT8_KEYS)
    if stack is not Stack.FSDP2 or float8_training is not Float8Training.TORCHAO:
        return {"float8_all_gather"}
    return set()


def compile_applies(model: object) -> bool:
    """Whether compiled blocks are modelled for the model: a Llama-style decoder layer (RMSNorm
    with a 16-bit output, a gated MLP), the block benchmarks/stacks/compiled_block.py
    measured; not Gemma's norm (its normalized output stays fp32) nor GPT-2's LayerNorm."""
    return (
        isinstance(model, Transformer)
        and model.family in (Family.DECODER, Family.MOE)
        and model.rms_norm
        and model.gated_mlp
        and not model.model_type.startswith("gemma")
    )


TP_FEATURE_KEYS = ("sequence_parallel", "loss_parallel")
PIPELINE_KEYS = ("pipeline_schedule", "pipeline_microbatches")


def pipeline_applies(model: object) -> bool:
    """Whether a training pipeline is modelled for the model: a decoder language model,
    whose stages torchtitan cuts between its layers (the embedding on the first, the final
    norm and head on the last)."""
    return (
        isinstance(model, Transformer)
        and model.family in (Family.DECODER, Family.MOE)
        and language_model(model)
    )


def pipeline_inactive(model: object, pipeline_parallel: int) -> set[str]:
    """Training keys of the pipeline the engine does not read."""
    if not pipeline_applies(model):
        return {"pipeline_parallel", *PIPELINE_KEYS}
    if pipeline_parallel < 2:
        return set(PIPELINE_KEYS)
    # A stage's FSDP2 blocks stay unsharded (torchtitan apply_fsdp under PP).
    return {"reshard_after_forward"}


def tp_features_inactive(model: object, tensor_parallel: int) -> set[str]:
    """Tensor-parallel features the engine does not read: both split what a transformer's
    tensor parallelism (degree above 1) leaves whole; the loss's needs a language model."""
    if not isinstance(model, Transformer) or tensor_parallel < 2:
        return set(TP_FEATURE_KEYS)
    return set() if language_model(model) else {"loss_parallel"}


def inactive_fields(
    kind: ModelKind,
    mode: Mode,
    model: object,
    finetune: Finetune,
    precision: Precision,
    runtime: Runtime = Runtime.TRANSFORMERS,
    *,
    stack: Stack = Stack.PLAIN,
    sharding: Sharding = Sharding.NONE,
    optimizer: Optimizer = Optimizer.ADAMW,
    checkpointing: Checkpointing = Checkpointing.NONE,
    loss: Loss = Loss.STANDARD,
    optimizer_in_backward: bool = False,
    device: Device = Device.CUDA,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    float8_training: Float8Training = Float8Training.OFF,
    offload_optimizer: bool = False,
    offload_param: bool = False,
) -> tuple[str, ...]:
    """Schema keys that do not apply to a scenario of this shape.

    >>> off = inactive_fields(ModelKind.PRESET, Mode.INFERENCE, None, Finetune.FULL,
    ...                       Precision.BF16, Runtime.VLLM)
    >>> "block_size" in off, "type_k" in off, "new_tokens" in off
    (False, True, True)
    """
    off = set(MODEL_KEYS)
    engine = runtime.engine if mode is Mode.INFERENCE else Runtime.TRANSFORMERS
    if mode is Mode.TRAINING:
        off.add("runtime")
    if engine is not Runtime.VLLM:
        off |= VLLM_KEYS
    if engine is not Runtime.LLAMA_CPP:
        off |= LLAMA_CPP_KEYS
    if engine is not Runtime.TRANSFORMERS:
        off |= _SERVED_OFF | {"num_gpus" if engine is Runtime.VLLM else "tensor_parallel"}
    if engine is Runtime.LLAMA_CPP:
        off |= {"precision", "kv_cache_dtype", "group_size"}
    off -= {
        ModelKind.GENERIC: {"params_millions", "hidden_size", "num_layers"},
        ModelKind.TRANSFORMER: {"config"},
        ModelKind.PRESET: {"preset"},
        ModelKind.CNN: {"cnn"},
    }[kind]
    training = {
        "optimizer",
        "optimizer_impl",
        "zero_grad",
        "checkpointing",
        "checkpoint_every",
        "grad_accum_steps",
        "finetune",
        "lora_rank",
        "lora_targets",
        "lora_dtype",
        "sharding",
        "offload_optimizer",
        "offload_optimizer_device",
        *STACK_KEYS,
        *MEMORY_FEATURE_KEYS,
        *FLOAT8_KEYS,
        "paged_optimizer",
        *TP_FEATURE_KEYS,
        *PIPELINE_KEYS,
        "context_parallel",
        "expert_parallel",
    }
    inference = {"new_tokens", "kv_cache_dtype", "logits"}
    off |= inference if mode is Mode.TRAINING else training
    if mode is Mode.TRAINING:
        off |= stack_inactive(stack, sharding, finetune, optimizer)
        # An offload's device is read where the offload is read and on.
        if "offload_optimizer" in off or not offload_optimizer:
            off.add("offload_optimizer_device")
        if "offload_param" in off or not offload_param:
            off.add("offload_param_device")
        off |= memory_features_inactive(model, stack, sharding, loss, optimizer_in_backward)
        off |= float8_inactive(model, stack, finetune, device, float8_training)
        if not paged_applies(stack, sharding, optimizer):
            off.add("paged_optimizer")
        off |= tp_features_inactive(model, tensor_parallel)
        off -= {"pipeline_parallel"}
        off |= pipeline_inactive(model, pipeline_parallel)
        if not pipeline_applies(model):
            off.add("context_parallel")  # ring attention over a decoder LM's causal mask
        if not (isinstance(model, Transformer) and model.family is Family.MOE):
            off.add("expert_parallel")  # only routed experts are split
        if device is Device.CPU:
            # Both move GPU memory elsewhere: OffloadActivations packs only accelerator
            # tensors, and bitsandbytes' get_state_buffer does not page on the CPU.
            off |= {"activation_offload", "paged_optimizer"}
    if device is Device.CPU:
        off.add("cuda_context_mib")  # no CUDA context on the CPU (estimate.overheads)
        off |= set(ALLOCATOR_KEYS)  # the CUDA caching allocator: not on the CPU
    if checkpointing is not Checkpointing.EVERY_N:
        off.add("checkpoint_every")
    if mode is Mode.TRAINING and finetune is Finetune.FULL:
        off |= {"lora_rank", "lora_targets", "lora_dtype", "lora_dropout"}
    if precision is Precision.FP32 or precision.is_amp:
        off.add("lora_dtype")  # a model built in fp32 has fp32 adapters either way
    if precision not in (Precision.GPTQ, Precision.AWQ):
        off.add("group_size")
    if is_float(precision.weight_format):
        off.add(CHECKPOINT_BYTES)  # a float precision counts P × its width
    family = model.family if isinstance(model, Transformer) else None
    if family is not Family.ENCODER_DECODER:
        off.add("decoder_seq_len")
    # A catalog CNN (model "preset") is as much a CNN as a described one.
    cnn = kind is ModelKind.CNN or (
        kind is ModelKind.PRESET and model is not None and not isinstance(model, Transformer)
    )
    if not cnn and family is not Family.VIT:
        off.add("image_size")
    # One rule: a field is hidden exactly when the engine does not read it. A ViT's
    # attention kernel decides whether its s×s scores are stored; an encoder-decoder's
    # inference caches the encoder's keys and values for cross-attention in the KV-cache
    # type (transformers' EncoderDecoderCache), though it generates no new tokens here.
    if cnn or family is Family.VIT:
        off |= {"seq_len", "new_tokens", "kv_cache_dtype", "logits"}
    if cnn:
        off |= {"attention", "tensor_parallel"}  # a CNN is never split by heads
    if mode is Mode.INFERENCE and family not in (Family.DECODER, Family.MOE):
        off.add("new_tokens")
        if family is not Family.ENCODER_DECODER:
            off.add("kv_cache_dtype")
    if kind is ModelKind.GENERIC:
        off |= {
            "attention",
            "finetune",
            "lora_rank",
            "lora_targets",
            "lora_dtype",
            "lora_dropout",
            "tensor_parallel",
        }
    return tuple(k for k in KNOWN_KEYS if k in off)


def _labels(members: Iterable[StrEnum]) -> str:
    """Options as the page's menus name them: "FP32, BF16 or FP16"."""
    names = [LABELS[m] for m in members]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _number_specs() -> tuple[tuple[str, NumberSpec], ...]:
    return tuple((key, spec) for key in SETTINGS if isinstance(spec := SPECS[key], NumberSpec))


# The numeric settings a scenario checks on construction (the solvers build dozens).
_NUMBER_SPECS = _number_specs()


def _cross_checks(s: Scenario) -> list[Problem | None]:
    problems: list[Problem | None] = []
    for key, spec in _NUMBER_SPECS:
        value = getattr(s, key)
        if value is not None:
            problems.append(_problem(spec.check(value)))
    divisions = s.roundup_power2_divisions
    if divisions & (divisions - 1):
        # c10/core/AllocatorConfig.cpp parseRoundUpPower2Divisions: "For roundups, the
        # divisions has to be power of 2".
        problems.append(
            Problem(
                "roundup_power2_divisions",
                "roundup_power2_divisions must be 0 (off) or a power of 2 such as 4 "
                f"(got {divisions}).",
            )
        )
    if s.mode is Mode.TRAINING:
        if s.finetune is Finetune.LORA:
            if not isinstance(s.model, Transformer):
                problems.append(
                    Problem(
                        "finetune",
                        "LoRA needs the model's architecture: describe it as a "
                        "transformer (config.json) or pick a catalog model.",
                    )
                )
            elif not s.precision.lora_base:
                bases = _labels(p for p in Precision if p.lora_base)
                problems.append(
                    Problem(
                        "precision",
                        f"Precision {LABELS[s.precision]} cannot hold a LoRA base: choose {bases}.",
                    )
                )
        elif not s.precision.trains_fully:
            trains = _labels(p for p in Precision if p.trains_fully)
            adapters = ""
            if s.precision.lora_base:
                # What makes this precision valid for training: adapters over a frozen base.
                where = (
                    ""
                    if isinstance(s.model, Transformer)
                    else " with a catalog model or a config.json"
                )
                adapters = (
                    f" To train adapters over it as a frozen base (QLoRA), set Fine-tuning to "
                    f"{LABELS[Finetune.LORA]}{where}."
                )
            problems.append(
                Problem(
                    "precision",
                    f"Precision {LABELS[s.precision]} stores weights for inference only. To "
                    f"train, choose {trains}.{adapters} Or set the mode to "
                    f"{LABELS[Mode.INFERENCE]}.",
                )
            )
    elif s.precision.is_amp and s.runtime.engine is not Runtime.LLAMA_CPP:
        # (llama.cpp reads gguf_type; precision is not one of its settings)
        problems.append(
            Problem(
                "precision",
                f"Precision {s.precision.value} is mixed-precision training: "
                "for inference choose the weights' own format, such as bf16 or fp16.",
            )
        )
    engine = s.runtime.engine if s.mode is Mode.INFERENCE else Runtime.TRANSFORMERS
    if engine is not Runtime.TRANSFORMERS:
        problems += _runtime_checks(s, engine)
        if engine is Runtime.LLAMA_CPP:
            return problems  # llama.cpp splits layers over num_gpus; no tensor parallel
    if s.mode is Mode.TRAINING:
        problems += _stack_checks(s)
        problems += _memory_feature_checks(s)
    if engine is not Runtime.VLLM and s.num_gpus % s.tensor_parallel:
        problems.append(
            Problem(
                "tensor_parallel",
                f"Tensor-parallel degree {s.tensor_parallel} must divide "
                f"the number of GPUs ({s.num_gpus}).",
            )
        )
    tp = s.tensor_parallel
    if (
        isinstance(s.model, Transformer)
        and tp > 1
        and (s.model.heads % tp or s.model.kv_heads % tp)
    ):
        problems.append(
            Problem(
                "tensor_parallel",
                f"Tensor-parallel degree {s.tensor_parallel} must "
                f"divide the attention heads ({s.model.heads}) and key/value heads "
                f"({s.model.kv_heads}).",
            )
        )
    return problems


# Model types the llama.cpp module writes GGUF tensor lists for
# (nnmem.runtimes.llamacpp.f16_tensors).
LLAMA_CPP_MODEL_TYPES = (
    "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gemma3", "qwen3_moe",
    "mixtral",
)  # fmt: skip
_QUANTIZED_V = (CacheType.F32, CacheType.F16, CacheType.BF16)


def _runtime_checks(s: Scenario, engine: Runtime) -> list[Problem | None]:
    """What vLLM and llama.cpp need of a scenario."""
    name = LABELS[s.runtime]
    model = s.model
    if not isinstance(model, Transformer) or model.family not in (Family.DECODER, Family.MOE):
        return [
            Problem(
                "runtime",
                f"{name} serves decoder language models: describe one by its config.json or "
                "pick a catalog model (or choose the transformers runtime).",
            )
        ]
    problems: list[Problem | None] = []
    if engine is Runtime.LLAMA_CPP:
        model_type = str(model.config.get("model_type", ""))
        if model_type not in LLAMA_CPP_MODEL_TYPES:
            problems.append(
                Problem(
                    "runtime",
                    f"{name}: GGUF tensor lists are modelled for "
                    f"{', '.join(LLAMA_CPP_MODEL_TYPES)}, not {shown(model_type)}.",
                )
            )
        # src/llama-context.cpp llama_init_from_model: a quantized K or V cache type must
        # divide n_embd_head_k / n_embd_head_v by its block size (32 for every quantized
        # cache type, ggml.c type_traits), or the context is refused.
        for key, kind in (("type_k", s.type_k), ("type_v", s.type_v)):
            if kind not in _QUANTIZED_V and model.head_dim % 32:
                problems.append(
                    Problem(
                        key,
                        f"Cache type {kind.value} needs a head dimension that is a multiple "
                        f"of 32; this model's is {model.head_dim}: llama.cpp refuses the "
                        "context. Choose f16, bf16 or f32.",
                    )
                )
        if s.type_v not in _QUANTIZED_V and not s.flash_attn:
            problems.append(
                Problem(
                    "type_v",
                    f"V cache type {s.type_v.value} needs flash attention: llama.cpp "
                    "quantizes the V cache only with -fa on.",
                )
            )
        return problems
    if s.kv_cache_dtype is KvDtype.FP32:
        problems.append(
            Problem("kv_cache_dtype", "vLLM's KV cache is auto, fp16, bf16 or fp8, not fp32.")
        )
    if s.precision in (Precision.NF4, Precision.NF4_DQ) or is_gguf(s.precision.weight_format):
        problems.append(
            Problem(
                "precision",
                f"Precision {s.precision.value} is not a vLLM checkpoint format here: choose "
                "bf16, fp16, fp8, int8, int4, gptq, awq, mxfp4 or nvfp4.",
            )
        )
    return problems


def _memory_feature_checks(s: Scenario) -> list[Problem | None]:
    problems: list[Problem | None] = []
    reads_it = isinstance(s.model, Transformer) and in_backward_applies(s.stack, s.sharding)
    if s.optimizer_in_backward and reads_it and s.grad_accum_steps > 1:
        # torchtune full_finetune_single_device.py refuses the pair: each gradient is
        # stepped and freed as soon as backward makes it, so none can accumulate.
        problems.append(
            Problem(
                "optimizer_in_backward",
                "Optimizer in backward steps and frees each gradient as backward makes "
                f"it, so gradients cannot accumulate over {s.grad_accum_steps} "
                "micro-batches: set grad_accum_steps to 1 or turn it off.",
            )
        )
    problems += _float8_checks(s)
    problems += _pipeline_checks(s)
    problems += _context_parallel_checks(s)
    problems += _expert_parallel_checks(s)
    tp = s.tensor_parallel
    sp_read = "sequence_parallel" not in tp_features_inactive(s.model, tp)
    cp = s.context_parallel if pipeline_applies(s.model) else 1
    local = s.seq_len // cp  # each context-parallel rank's share
    if s.sequence_parallel and sp_read and s.mode is Mode.TRAINING and local % tp:
        # Megatron-LM core/tensor_parallel/mappings.py _split_along_first_dim asserts the
        # sequence (its first dimension) divides by the tensor-parallel world size.
        problems.append(
            Problem(
                "sequence_parallel",
                f"Sequence parallelism splits the {local:,} tokens over the {tp} "
                "tensor-parallel ranks: choose a seq_len divisible by tensor_parallel, or "
                "turn it off.",
            )
        )
    return problems


def _float8_checks(s: Scenario) -> list[Problem | None]:
    """What FP8 training needs of a training scenario."""
    problems: list[Problem | None] = []
    torchao = s.float8_training is Float8Training.TORCHAO
    if s.float8_all_gather and not (s.stack is Stack.FSDP2 and torchao):
        # torchao float8_linear.py Float8Linear.from_float wraps the weight in
        # WeightWithDynamicFloat8CastTensor only with enable_fsdp_float8_all_gather, and
        # only FSDP2 calls its fsdp_pre_all_gather (torchtitan torchtitan/float8.py turns
        # it on only where dp_shard is enabled).
        problems.append(
            Problem(
                "float8_all_gather",
                "FP8 all-gather is torchao's enable_fsdp_float8_all_gather: it needs the "
                f"fsdp2 stack and float8_training torchao (got stack {s.stack.value}, "
                f"float8_training {s.float8_training.value}): choose both, or turn it off.",
            )
        )
    te = s.float8_training is Float8Training.TRANSFORMER_ENGINE
    if te and s.checkpointing is Checkpointing.PER_OP and isinstance(s.model, Transformer):
        # torchtitan's per-op policy saves the outputs of aten.mm; Transformer Engine's
        # GEMMs are its own extension's (transformer_engine/pytorch/cpp_extensions
        # general_gemm), which the policy never sees.
        problems.append(
            Problem(
                "float8_training",
                "Transformer Engine's FP8 GEMMs are its own kernels, not the aten.mm that "
                "per-op selective checkpointing saves: choose checkpointing none, "
                "selective, every_n or full, or float8_training torchao.",
            )
        )
    return problems


def _context_parallel_checks(s: Scenario) -> list[Problem | None]:
    cp = s.context_parallel
    if cp < 2 or s.mode is not Mode.TRAINING or not pipeline_applies(s.model):
        return []
    if s.stack is not Stack.FSDP2 or s.finetune is not Finetune.FULL:
        # torchtitan composes context parallelism with FSDP2 (its dp_shard_cp mesh).
        return [
            Problem(
                "context_parallel",
                "Context parallelism is modelled as torchtitan runs it: choose the fsdp2 "
                "stack and full fine-tuning, or set context_parallel to 1.",
            )
        ]
    problems: list[Problem | None] = []
    if s.seq_len % (2 * cp):
        # torch _load_balancer.py _HeadTailLoadBalancer: the sequence is cut into 2·cp
        # chunks, rank r taking chunk r and chunk 2·cp − 1 − r (asserts divisibility).
        problems.append(
            Problem(
                "context_parallel",
                f"Context parallelism cuts the {s.seq_len:,} tokens into 2 × {cp} equal "
                f"chunks: choose a seq_len divisible by {2 * cp}.",
            )
        )
    groups = s.tensor_parallel * (s.pipeline_parallel if s.pipelined else 1) * cp
    if s.num_gpus % groups:
        problems.append(
            Problem(
                "context_parallel",
                f"Context-parallel degree {cp} times the tensor- and pipeline-parallel "
                f"degrees must divide the number of GPUs ({s.num_gpus}).",
            )
        )
    return problems


def _expert_parallel_checks(s: Scenario) -> list[Problem | None]:
    ep, model = s.expert_parallel, s.model
    moe = isinstance(model, Transformer) and model.family is Family.MOE
    if ep < 2 or s.mode is not Mode.TRAINING or not isinstance(model, Transformer) or not moe:
        return []
    if s.stack is Stack.DEEPSPEED or (
        s.stack is not Stack.FSDP2 and s.sharding is not Sharding.NONE
    ):
        # Modelled as Megatron-LM's DDP (whole model states) and torchtitan's FSDP2
        # (experts sharded over dp_shard_mod_ep) hold them; DeepSpeed-MoE's expert
        # data-parallel groups are not.
        return [
            Problem(
                "expert_parallel",
                "Expert parallelism is modelled as Megatron-LM's DDP and torchtitan's FSDP2 "
                "run it: choose the fsdp2 stack, or sharding none with the plain, "
                "hf_trainer, trl_sft or ddp stack, or set expert_parallel to 1.",
            )
        ]
    if s.finetune is not Finetune.FULL:
        return [
            Problem(
                "expert_parallel",
                "Expert parallelism is modelled for full fine-tuning: choose finetune "
                "full, or set expert_parallel to 1.",
            )
        ]
    problems: list[Problem | None] = []
    experts = model.experts
    if experts % ep:
        # Megatron-LM transformer_config.py: num_moe_experts must be a multiple of
        # expert_model_parallel_size; torchtitan's GroupedExperts shards dim 0 evenly.
        problems.append(
            Problem(
                "expert_parallel",
                f"Expert-parallel degree {ep} must divide the model's {experts} experts.",
            )
        )
    group = ep * s.tensor_parallel * (s.pipeline_parallel if s.pipelined else 1)
    if s.num_gpus % group:
        problems.append(
            Problem(
                "expert_parallel",
                f"The number of GPUs ({s.num_gpus}) must be a multiple of the expert-, "
                f"tensor- and pipeline-parallel degrees' product ({group}).",
            )
        )
    return problems


def pipeline_stages_per_rank(schedule: PipelineSchedule) -> int:
    """Stages each pipeline rank holds: torchtitan generate_split_points gives a
    multi-stage schedule (Interleaved1F1B) 2 per rank, a single-stage one 1."""
    return 2 if schedule is PipelineSchedule.INTERLEAVED_1F1B else 1


def pipeline_microbatches(s: Scenario) -> int:
    """The micro-batches a pipelined step runs: torchtitan build_pipeline_schedule
    defaults pipeline_parallel_microbatches to the number of stages in the pipeline."""
    stages = s.pipeline_parallel * pipeline_stages_per_rank(s.pipeline_schedule)
    return s.pipeline_microbatches or stages


def _pipeline_checks(s: Scenario) -> list[Problem | None]:
    if not s.pipelined or not isinstance(s.model, Transformer):
        return []
    pp = s.pipeline_parallel
    stages = pp * pipeline_stages_per_rank(s.pipeline_schedule)
    m = pipeline_microbatches(s)
    if s.stack is not Stack.FSDP2 or s.finetune is not Finetune.FULL:
        # torchtitan composes its pipeline with FSDP2 (parallelize_llama after
        # pipeline_llama); nnmem models only that composition, for full training.
        return [
            Problem(
                "pipeline_parallel",
                "Pipeline parallelism is modelled as torchtitan runs it: choose the fsdp2 "
                "stack and full fine-tuning, or set pipeline_parallel to 1.",
            )
        ]
    problems: list[Problem | None] = []
    if stages > s.model.layers:
        # torchtitan generate_split_points: "Total stages cannot be greater than the
        # number of layers".
        problems.append(
            Problem(
                "pipeline_parallel",
                f"{stages} pipeline stages cannot split the model's {s.model.layers} layers: "
                "choose fewer stages.",
            )
        )
    if s.batch_size % m and s.pipeline_microbatches is None:
        # torchtitan build_pipeline_schedule: the batch must divide by the micro-batches,
        # which default to the pipeline's stages. Name the field the user set: the batch.
        fewer = "1" if s.batch_size == 1 else f"a number that divides {s.batch_size}"
        problems.append(
            Problem(
                "batch_size",
                f"A batch of {s.batch_size} cannot be cut into the {m} micro-batches a "
                f"{stages}-stage pipeline runs by default (one per stage): choose a "
                f"batch_size that is a multiple of {m}, or set pipeline_microbatches to "
                f"{fewer}.",
            )
        )
    elif s.batch_size % m:
        problems.append(
            Problem(
                "pipeline_microbatches",
                f"A batch of {s.batch_size} cannot be cut into {m} micro-batches: choose "
                f"pipeline_microbatches that divides {s.batch_size}, or a batch_size that is "
                f"a multiple of {m}.",
            )
        )
    if s.num_gpus % (s.tensor_parallel * pp):
        problems.append(
            Problem(
                "pipeline_parallel",
                f"Pipeline degree {pp} times tensor-parallel degree {s.tensor_parallel} must "
                f"divide the number of GPUs ({s.num_gpus}).",
            )
        )
    return problems


def _stack_checks(s: Scenario) -> list[Problem | None]:
    problems: list[Problem | None] = []
    label = LABELS[s.stack]
    if s.stack is Stack.DEEPSPEED and s.sharding is Sharding.NONE:
        problems.append(
            Problem(
                "sharding",
                "DeepSpeed runs a ZeRO stage: set sharding to zero1, zero2 or zero3.",
            )
        )
    kbit = s.precision in (Precision.NF4, Precision.NF4_DQ, Precision.INT8)
    ds_zero3 = s.sharding is Sharding.ZERO3 and s.stack in (
        Stack.DEEPSPEED,
        Stack.HF_TRAINER,
        Stack.TRL_SFT,
    )
    if ds_zero3 and kbit:
        # ZeRO-3 partitions every parameter (partition_parameters.py Init.
        # _convert_to_deepspeed_param); bitsandbytes' Params4bit/Int8Params keep packed
        # integer storage with a quant_state, which peft documents as sharded under ZeRO-3
        # only with bnb_4bit_quant_storage set to the compute dtype and zero3_init_flag
        # (peft docs/source/accelerate/deepspeed.md, "Use PEFT QLoRA and DeepSpeed with
        # ZeRO3"; earlier versions of that page called DeepSpeed-Zero3 and bitsandbytes
        # not compatible).
        problems.append(
            Problem(
                "sharding",
                f"DeepSpeed ZeRO-3 with a {s.precision.value} base is not modelled: ZeRO-3 "
                "partitions every parameter, and bitsandbytes' quantized weights are "
                "sharded only with bnb_4bit_quant_storage set to the compute dtype (peft's "
                "DeepSpeed guide), which nnmem does not model: set sharding to zero1 or "
                "zero2, or precision to amp_bf16.",
            )
        )
    if (
        ds_zero3
        and s.finetune is not Finetune.FULL
        and s.offload_param
        and s.offload_param_device.value == "nvme"
    ):
        problems.append(
            Problem(
                "offload_param_device",
                f"offload_param_device nvme is modelled for full fine-tuning (got finetune "
                f"{s.finetune.value}): set offload_param_device to cpu.",
            )
        )
    problems += _offload_device_checks(s)
    if s.stack is Stack.FSDP2:
        if s.finetune is not Finetune.FULL:
            problems.append(
                Problem(
                    "stack",
                    f"{label} is modelled for full fine-tuning; for LoRA choose the plain "
                    "loop, HF Trainer, TRL, DDP or DeepSpeed stack.",
                )
            )
        elif s.optimizer is not Optimizer.ADAMW:
            problems.append(
                Problem(
                    "stack",
                    f"{label} is modelled with AdamW; choose the adamw optimizer or another stack.",
                )
            )
    return problems


def _offload_device_checks(s: Scenario) -> list[Problem | None]:
    """An offload's ``device`` nvme needs that offload on, and for the optimizer ZeRO-3:
    DeepSpeed's stage 1-2 optimizer has no NVMe swapper (deepspeed/runtime/zero/
    stage_1_and_2.py DeepSpeedZeroOptimizer.__init__ takes any device but none as
    cpu_offload, and keeps the states in host RAM); stage3.py _configure_offloading
    swaps them (swap_optimizer = device == nvme)."""
    problems: list[Problem | None] = []
    nvme = OffloadDevice.NVME
    if s.offload_optimizer_device is nvme:
        if not s.offload_optimizer:
            problems.append(
                Problem(
                    "offload_optimizer_device",
                    "offload_optimizer_device nvme places the optimizer offload on NVMe: "
                    "turn offload_optimizer on, or set offload_optimizer_device to cpu.",
                )
            )
        elif (
            "offload_optimizer_device" not in s.inactive_fields()
            and s.sharding is not Sharding.ZERO3
        ):
            problems.append(
                Problem(
                    "offload_optimizer_device",
                    "offload_optimizer_device nvme needs sharding zero3: DeepSpeed's "
                    "ZeRO-1/2 optimizer (stage_1_and_2.py) has no NVMe swapper and keeps "
                    "the offloaded states in host RAM, as with cpu. Set sharding to "
                    "zero3, or offload_optimizer_device to cpu.",
                )
            )
    if s.offload_param_device is nvme and not s.offload_param:
        problems.append(
            Problem(
                "offload_param_device",
                "offload_param_device nvme places the parameter offload on NVMe: turn "
                "offload_param on, or set offload_param_device to cpu.",
            )
        )
    return problems


# --- parsing -------------------------------------------------------------------------------


def stack_defaults(
    stack: Stack, mode: Mode, finetune: Finetune, precision: Precision
) -> dict[str, Any]:
    """The settings a stack changes from the schema's defaults when they are not given.

    - ``trl_sft``: TRL's ``SFTConfig`` defaults ``gradient_checkpointing=True`` and
      ``bf16=True`` when ``fp16`` is unset (trl/trainer/base_config.py ``_BaseConfig``,
      TRL 1.16), so the step checkpoints every decoder layer and runs under bf16 autocast.
      The Trainer enables checkpointing with ``gradient_checkpointing_kwargs=None``, which
      transformers 5 makes ``{"use_reentrant": False}`` (modeling_utils.py
      ``_activation_checkpointing_enable``); TRL sets the same itself under transformers 4
      (trl/trainer/sft_trainer.py ``SFTTrainer.__init__``).
    - QLoRA on ``hf_trainer`` or ``trl_sft``: peft's ``prepare_model_for_kbit_training``
      defaults ``use_gradient_checkpointing=True`` (peft src/peft/utils/other.py) and
      enables checkpointing on the model, whatever the Trainer's own setting; it passes
      ``gradient_checkpointing_kwargs={}``, so torch's ``checkpoint`` runs reentrant
      (torch/utils/checkpoint.py: ``use_reentrant=None`` becomes True).

    Reentrant or not, a checkpointed layer keeps the same tensors, its inputs, from
    forward to backward (torch/utils/checkpoint.py ``CheckpointFunction.forward`` saves
    them under no_grad; ``_checkpoint_without_reentrant_generator`` keeps them and drops
    the layer's own), and both recompute one layer at a time in backward, so both are
    ``full``.

    >>> stack_defaults(Stack.TRL_SFT, Mode.TRAINING, Finetune.FULL, Precision.FP32)
    {'checkpointing': <Checkpointing.FULL: 'full'>, 'precision': <Precision.AMP_BF16: 'amp_bf16'>}
    >>> stack_defaults(Stack.HF_TRAINER, Mode.TRAINING, Finetune.LORA, Precision.NF4)
    {'checkpointing': <Checkpointing.FULL: 'full'>}
    >>> stack_defaults(Stack.HF_TRAINER, Mode.TRAINING, Finetune.FULL, Precision.FP32)
    {}
    """
    found: dict[str, Any] = {}
    if mode is not Mode.TRAINING:
        return found
    if stack is Stack.TRL_SFT:
        found |= {"checkpointing": Checkpointing.FULL, "precision": Precision.AMP_BF16}
    kbit = precision in (Precision.NF4, Precision.NF4_DQ, Precision.INT8)
    if stack in (Stack.HF_TRAINER, Stack.TRL_SFT) and finetune is Finetune.LORA and kbit:
        found["checkpointing"] = Checkpointing.FULL
    return found


def _with_stack_defaults(values: dict[str, Any], given: Mapping[str, object]) -> None:
    """Apply :func:`stack_defaults` to the settings ``given`` leaves unset (precision first:
    the QLoRA rule reads it)."""
    if not all(k in values for k in ("stack", "mode", "finetune", "precision")):
        return
    for _ in range(2):
        found = stack_defaults(
            values["stack"], values["mode"], values["finetune"], values["precision"]
        )
        for key, value in found.items():
            if given.get(key) in (None, ""):
                values[key] = value


# Each setting as parse reads it: its key, default, spec, whether "" means the default (an
# optional number) and whether a number keeps its fraction; worked out once, not per read.
_SETTING_READERS = tuple(
    (
        key,
        default,
        SPECS[key],
        key in OPTIONAL_NUMBERS,
        key
        in (
            "allocator_overhead_percent",
            "headroom_percent",
            "lora_dropout",
            "gpu_memory_utilization",
        ),
    )
    for key, default in SETTINGS.items()
)


def parse(data: Mapping[str, object]) -> Scenario:
    """Read a scenario from its JSON schema, reporting every bad key at once.

    >>> parse({"params_millions": "110", "hidden_size": 768, "num_layers": 12,
    ...        "batch_size": "32", "seq_len": 128}).model.params
    110000000
    >>> parse({"params_millions": 110, "batch_size": 0})
    Traceback (most recent call last):
    nnmem.errors.NnmemError: Batch size must be a whole number from 1 to 1,000,000 (got 0).
    """
    if not isinstance(data, Mapping):
        raise NnmemError.single("scenario", "A scenario must be a JSON object of named fields.")
    known = ", ".join(KNOWN_KEYS)
    problems: list[Problem] = [
        Problem((str(key),), f"Unknown field {shown(key)}: the fields are {known}.")
        for key in data
        if key not in _KNOWN
    ]
    kind = KIND.read(data.get("model", "generic"))
    model: Model | None = None
    source: dict[str, Any] = {}
    if isinstance(kind, Problem):
        problems.append(kind)
    else:
        source = {"model": kind.value}
        try:
            model, extra = _read_model(kind, data)
            source |= extra
        except NnmemError as error:
            problems.extend(error.problems)
    values: dict[str, Any] = {}
    for key, default, spec, optional, fractional in _SETTING_READERS:
        raw = data.get(key)
        if raw is None or (optional and raw == ""):
            values[key] = default
            continue
        read = spec.read(raw)
        if isinstance(read, Problem):
            problems.append(read)
        else:
            values[key] = int(read) if isinstance(read, Decimal) and not fractional else read

    stored = read_checkpoint_bytes(data.get(CHECKPOINT_BYTES))
    if isinstance(stored, Problem):
        problems.append(stored)
    else:
        values[CHECKPOINT_BYTES] = stored
    _with_stack_defaults(values, data)
    raise_if(*problems)
    assert model is not None  # no problem means the model was read
    return Scenario(model=model, source=source, **values)


def read_checkpoint_bytes(raw: object) -> tuple[tuple[str, int], ...] | Problem:
    """The ``checkpoint_bytes`` key: an object (or its JSON text) of stored bytes by
    dtype or part, in the order given; empty when absent.

    >>> read_checkpoint_bytes('{"Q4_K": 4000, "F32": 12}')
    (('Q4_K', 4000), ('F32', 12))
    >>> read_checkpoint_bytes({"weights": -1}).message  # doctest: +ELLIPSIS
    'Checkpoint bytes must be ... (got -1 for "weights").'
    """
    if raw is None or raw == "" or raw == {}:
        return ()
    what = f"Checkpoint bytes must be {CHECKPOINT_BYTES_HELP}"
    if isinstance(raw, str):
        try:
            raw = load_json(raw, CHECKPOINT_BYTES, "Checkpoint bytes")
        except NnmemError as error:
            return error.problems[0]
    if not isinstance(raw, Mapping) or not raw or len(raw) > MAX_CHECKPOINT_PARTS:
        return Problem(CHECKPOINT_BYTES, f"{what}, with 1 to {MAX_CHECKPOINT_PARTS} entries.")
    parts: list[tuple[str, int]] = []
    for name, value in raw.items():
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            return Problem(CHECKPOINT_BYTES, f"{what}; each name is 1 to 64 characters.")
        ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, str) and value.strip().isdigit():
            value, ok = int(value), True
        if not ok or not 0 <= value <= MAX_CHECKPOINT_BYTES:
            return Problem(
                CHECKPOINT_BYTES,
                f"{what}: whole numbers from 0 to {MAX_CHECKPOINT_BYTES:,} "
                f"(got {shown(value)} for {shown(name)}).",
            )
        parts.append((name, int(value)))
    return tuple(parts)


def _read_model(kind: ModelKind, data: Mapping[str, object]) -> tuple[Model, dict[str, Any]]:
    if kind is ModelKind.GENERIC:
        return _read_generic(data), {}
    if kind is ModelKind.PRESET:
        return _read_preset(data.get("preset"))
    if kind is ModelKind.TRANSFORMER:
        config = _read_config(data.get("config"))
        return from_config(config), {"config": config}
    from nnmem.models import cnn

    spec = data.get("cnn")
    if isinstance(spec, str):
        return cnn.builtin(spec.strip().lower(), field="cnn"), {"cnn": spec.strip().lower()}
    if not isinstance(spec, Mapping):
        raise NnmemError.single(
            "cnn",
            f"Cnn must be a built-in network ({', '.join(cnn.BUILTINS)}) or a layer "
            f"list object (got {shown(spec)}).",
        )
    return cnn.from_spec(spec, field="cnn"), {"cnn": dict(spec)}


def _read_generic(data: Mapping[str, object]) -> GenericModel:
    problems: list[Problem] = []
    read: dict[str, int | Decimal | None] = {}
    for spec in (PARAMS, HIDDEN_SIZE, NUM_LAYERS):
        raw = data.get(spec.key)
        if spec is not PARAMS and (raw is None or raw == ""):
            read[spec.key] = None
            continue
        value = spec.read(raw)
        if isinstance(value, Problem):
            problems.append(value)
        else:
            read[spec.key] = value
    raise_if(*problems)
    millions = read["params_millions"]
    assert isinstance(millions, Decimal)
    params = max(1, int((millions * MILLION).to_integral_value()))
    hidden, layers = read["hidden_size"], read["num_layers"]
    return GenericModel.from_params(
        params,
        hidden_size=None if hidden is None else int(hidden),
        num_layers=None if layers is None else int(layers),
    )


def _read_preset(raw: object) -> tuple[Model, dict[str, Any]]:
    key = raw.strip().lower() if isinstance(raw, str) else ""
    entry = catalog.find_model(key) if key else None
    if entry is None:
        message = (
            "Preset is required: choose a catalog model id such as llama-3.1-8b."
            if not key
            else f"Preset {shown(raw)} is not in the catalog: choose a model id or name such "
            "as llama-3.1-8b or Llama 3.1 8B (the full list is in nnmem/data/models.json)."
        )
        raise NnmemError.single("preset", message)
    if entry.architecture == "cnn":
        from nnmem.models import cnn

        return cnn.builtin(entry.spec or entry.id, field="preset"), {"preset": entry.id}
    return from_config(entry.config, field="preset"), {"preset": entry.id}


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:24]} is out of range")
    return number


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


# Digits a JSON integer may have: far above any count the schema allows, far below
# CPython's limit on converting digits to an int (4,300), whose error names sys.
MAX_DIGITS = 100


def _whole(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise ValueError(f"the number {text[:24]}… has {digits:,} digits, more than {MAX_DIGITS}")
    return int(text)


# Levels of nesting JSON may have: a config.json has 3, a CNN layer list a few per block.
# Checked before parsing: inside Pyodide a deep parse overflows the WebAssembly stack
# (a fatal error that kills the engine) before Python's recursion limit is reached.
MAX_DEPTH = 100
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False  # fewer openings than the limit, strings and all: cannot nest deeper
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def load_json(text: str, field: str, label: str) -> object:
    """Strict JSON from a form field, a file or a request: NaN, Infinity, out-of-range
    numbers and integers of more than 100 digits are refused, nesting too deep for the
    parser is reported, and a leading byte-order mark is skipped. Every failure is an
    :class:`NnmemError` on ``field`` in plain words.

    >>> load_json('{"hidden_size": 1e999}', "config", "Config")
    Traceback (most recent call last):
    nnmem.errors.NnmemError: Config is not valid JSON: the number 1e999 is out of range.
    >>> load_json("[" * 100_000, "config", "Config")
    Traceback (most recent call last):
    nnmem.errors.NnmemError: Config is not valid JSON: it is nested too deeply.
    >>> load_json("\ufeff{}", "config", "Config")
    {}
    """
    if _too_deep(text):
        raise NnmemError.single(field, f"{label} is not valid JSON: it is nested too deeply.")
    try:
        return json.loads(
            text.removeprefix("\ufeff"),
            parse_float=_finite,
            parse_int=_whole,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as error:
        raise NnmemError.single(
            field,
            f"{label} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.",
        ) from None
    except (ValueError, RecursionError) as error:
        why = str(error) if isinstance(error, ValueError) else "it is nested too deeply"
        raise NnmemError.single(field, f"{label} is not valid JSON: {why}.") from None


def _read_config(raw: object) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = load_json(raw, "config", "Config")
    if not isinstance(raw, Mapping):
        raise NnmemError.single(
            "config", "Config must be a config.json object with fields such as hidden_size."
        )
    return dict(raw)
