"""The calculator page's form: its controls, and how their strings become a scenario.

The page sends every control as a string in one flat dict (the same names as the URL
query). :func:`translate` turns that dict into the scenario schema of
:mod:`nnmem.scenario`, reporting each problem against the control the user sees. The
model is described one of four ways (``describe``):

- ``simple``: ``params_millions``, ``hidden_size``, ``num_layers``;
- ``fields``: transformer fields named ``cfg_<config.json key>``, applied on top of a base
  config: the ``preset``'s if one is chosen, else the pasted ``config``;
- ``config``: a pasted Hugging Face ``config.json``;
- ``cnn``: a built-in network name or a JSON layer list.

Every other control is a schema setting under its own name, or a view control
(``gpu``, ``units``, ``plot``) that changes how the answer is shown, not the estimate.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any, NamedTuple

from nnmem import catalog, defaults
from nnmem.errors import NnmemError, Problem
from nnmem.models.architecture import ALIASES, ConfigReader
from nnmem.scenario import (
    CHECKPOINT_BYTES,
    CHECKPOINTING,
    DEVICE,
    FINETUNE,
    FLOAT8_TRAINING,
    LABELS,
    LOSS,
    MODE,
    MODEL_KEYS,
    OFFLOAD,
    OFFLOAD_PARAM,
    OPTIMIZER,
    OPTIMIZER_IN_BACKWARD,
    PIPELINE_PARALLEL,
    PRECISION,
    RUNTIME,
    SETTINGS,
    SHARDING,
    SPECS,
    STACK,
    TENSOR_PARALLEL,
    Checkpointing,
    Device,
    Finetune,
    Float8Training,
    Loss,
    Mode,
    ModelKind,
    Optimizer,
    Precision,
    Runtime,
    Scenario,
    Sharding,
    Stack,
    inactive_fields,
    load_json,
    parse,
    stack_defaults,
)
from nnmem.units import count, plain, scaled
from nnmem.validation import ChoiceSpec, FlagSpec, NumberSpec, shown, whole
from nnmem.web.fields import Field


class Describe(StrEnum):
    """How the page describes the model."""

    SIMPLE = "simple"
    FIELDS = "fields"
    CONFIG = "config"
    CNN = "cnn"


class Units(StrEnum):
    """Decimal (GB = 10^9 B) or binary (GiB = 2^30 B) units on the page."""

    GB = "gb"
    GIB = "gib"


class PlotAxis(StrEnum):
    """What the memory plot varies."""

    BATCH_SIZE = "batch_size"
    SEQ_LEN = "seq_len"


DESCRIBE = ChoiceSpec("describe", "Model input", Describe)
UNITS = ChoiceSpec("units", "Units", Units, aliases=(("decimal", "gb"), ("binary", "gib")))
PLOT = ChoiceSpec("plot", "Plot axis", PlotAxis)
VIEW_LABELS: dict[StrEnum, str] = {
    Describe.SIMPLE: "Parameter count",
    Describe.FIELDS: "Architecture fields (preset)",
    Describe.CONFIG: "Pasted config.json",
    Describe.CNN: "CNN layers",
    Units.GB: "GB (10⁹ bytes)",
    Units.GIB: "GiB (2³⁰ bytes)",
    PlotAxis.BATCH_SIZE: "Batch size",
    PlotAxis.SEQ_LEN: "Sequence length",
}

# Which describe mode owns each model control; settings and view controls have none.
MODEL_FIELDS: dict[Describe, tuple[str, ...]] = {
    Describe.SIMPLE: ("params_millions", "hidden_size", "num_layers"),
    Describe.FIELDS: ("preset",),  # and every cfg_* field, added below
    Describe.CONFIG: ("config",),
    Describe.CNN: ("cnn",),
}
_TEXT_LIMIT = 1_000_000  # characters in the config or CNN textarea: far above any real one
_MODEL_TYPE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ConfigField:
    """One transformer field of the ``fields`` describe mode: a config.json key."""

    key: str  # the config.json key; the control is cfg_<key>
    label: str
    hint: str
    kind: str = "number"  # number, flag or text

    @property
    def name(self) -> str:
        """The control's name."""
        return f"cfg_{self.key}"

    @property
    def spec(self) -> NumberSpec:
        """The whole-number range config.json allows (as ConfigReader.whole reads it)."""
        low = 0 if self.key in ("sliding_window",) else 1
        return whole(self.name, self.label, 1_000_000_000, low=low)


CONFIG_FIELDS: tuple[ConfigField, ...] = (
    ConfigField(
        "model_type",
        "Model type",
        "Architecture family, e.g. llama, qwen2, gpt2, bert, t5 (config.json model_type).",
        "text",
    ),
    ConfigField("hidden_size", "Hidden size", "Width h of every layer (config.json hidden_size)."),
    ConfigField(
        "num_hidden_layers",
        "Layers",
        "Transformer blocks L; weights and activations grow with it "
        "(config.json num_hidden_layers).",
    ),
    ConfigField(
        "num_attention_heads",
        "Attention heads",
        "Query heads a; eager attention scores grow with it (config.json num_attention_heads).",
    ),
    ConfigField(
        "num_key_value_heads",
        "Key/value heads",
        "Fewer than the query heads is GQA: a smaller KV cache (config.json num_key_value_heads).",
    ),
    ConfigField(
        "head_dim",
        "Head dimension",
        "Width of one head; empty means hidden size / heads (config.json head_dim).",
    ),
    ConfigField(
        "intermediate_size",
        "MLP width",
        "Inner width of each MLP or expert (config.json intermediate_size).",
    ),
    ConfigField(
        "vocab_size",
        "Vocabulary size",
        "Tokens in the embedding table; sets the logits' size (config.json vocab_size).",
    ),
    ConfigField(
        "max_position_embeddings",
        "Context length",
        "Longest sequence the model was built for (config.json max_position_embeddings).",
    ),
    ConfigField(
        "num_local_experts",
        "Experts",
        "Routed experts per MoE layer; more than 1 makes it a mixture of experts "
        "(config.json num_local_experts).",
    ),
    ConfigField(
        "num_experts_per_tok",
        "Experts per token",
        "Experts each token is routed to (config.json num_experts_per_tok).",
    ),
    ConfigField(
        "sliding_window",
        "Sliding window",
        "Attention window in tokens, if the model has one (config.json sliding_window).",
    ),
    ConfigField(
        "tie_word_embeddings",
        "Tied embeddings",
        "Whether the output layer reuses the embedding table (config.json tie_word_embeddings).",
        "flag",
    ),
)
CONFIG_BY_NAME = {c.name: c for c in CONFIG_FIELDS}
MODEL_FIELDS[Describe.FIELDS] += tuple(CONFIG_BY_NAME)


# --- the form, as the build renders it ---------------------------------------------------


class FormSection(NamedTuple):
    """One group of controls: ``(id, title, open, fields)``; closed ones fold away."""

    id: str
    title: str
    open: bool
    fields: tuple[Field, ...]


class PresetOption(NamedTuple):
    """A catalog model as the preset search offers it; ``kind`` is cnn or transformer."""

    id: str
    label: str
    kind: str


def _number(key: str, hint: str, unit: str = "") -> Field:
    spec = SPECS[key]
    assert isinstance(spec, NumberSpec)
    inputmode = "numeric" if spec.whole else "decimal"
    return Field(
        key, spec.label, hint, "number", unit=unit, inputmode=inputmode, describe_modes=_modes(key)
    )


def _choice(spec: ChoiceSpec[Any] | str, hint: str, kind: str = "choice") -> Field:
    if isinstance(spec, str):
        found = SPECS[spec]
        assert isinstance(found, ChoiceSpec)
        spec = found
    view = spec.enum in (Describe, Units, PlotAxis)
    options = tuple((m.value, VIEW_LABELS[m] if view else LABELS[m]) for m in spec.enum)
    return Field(spec.key, spec.label, hint, kind, options=options)


def _modes(key: str) -> tuple[str, ...]:
    return tuple(d.value for d, keys in MODEL_FIELDS.items() if key in keys)


GPU_GROUPS: tuple[tuple[str, str], ...] = (
    ("consumer", "Consumer GPUs"),
    ("workstation", "Workstation GPUs"),
    ("datacenter", "Data-centre GPUs"),
    ("apple", "Apple silicon (unified memory)"),
)


def gpu_label(gpu: catalog.Gpu) -> str:
    """The GPU's name and memory as its maker quotes it, with the usable share if less.

    >>> gpu_label(catalog.gpus()["rtx-4090"])
    'NVIDIA GeForce RTX 4090 · 24 GB'
    """
    # Named by its marketing size, which counts GiB: a "24 GB" card holds 24 GiB.
    size = f"{gpu.memory_bytes // 2**30:,} GB"
    if gpu.usable_fraction is not None:
        usable = scaled(gpu.usable_bytes, 2**30, 1)
        size += f", {usable} GiB usable by the GPU"
    return f"{gpu.name} · {size}"


def _gpu_options() -> tuple[tuple[str, str], ...]:
    gpus = catalog.gpus().values()
    return tuple((g.id, gpu_label(g)) for kind, _ in GPU_GROUPS for g in gpus if g.kind == kind)


# The precision menu in groups: what trainers train in, what only holds a frozen QLoRA base,
# and what only inference runs (no trainer trains in FP8 weights, GPTQ, AWQ or GGUF).
PRECISION_GROUPS: tuple[tuple[str, bool, tuple[Precision, ...]], ...] = (
    (
        "Training and inference",
        True,
        (Precision.FP32, Precision.AMP_BF16, Precision.AMP_FP16, Precision.BF16, Precision.FP16),
    ),
    (
        "Inference, or the frozen base of a QLoRA fine-tune",
        True,
        (Precision.INT8, Precision.NF4, Precision.NF4_DQ),
    ),
    (
        "Inference only",
        False,
        (
            Precision.FP8,
            Precision.INT4,
            Precision.GPTQ,
            Precision.AWQ,
            Precision.MXFP4,
            Precision.NVFP4,
        ),
    ),
    (
        "Inference only: llama.cpp GGUF",
        False,
        (Precision.Q8_0, Precision.Q6_K, Precision.Q5_K_M, Precision.Q4_K_M, Precision.Q4_0),
    ),
)


def precision_groups() -> tuple[tuple[str, bool, tuple[tuple[str, str], ...]], ...]:
    """The precision options under their group titles, each group saying whether a
    training run may use it (the page disables the others while the mode is training).

    >>> [(title, len(options)) for title, _, options in precision_groups()][-1]
    ('Inference only: llama.cpp GGUF', 5)
    """
    grouped = {p for _, _, members in PRECISION_GROUPS for p in members}
    assert grouped == set(Precision), "every precision belongs to one group"
    return tuple(
        (title, trains, tuple((p.value, LABELS[p]) for p in members))
        for title, trains, members in PRECISION_GROUPS
    )


def gpu_groups() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """GPU options under their group titles, for ``<optgroup>``."""
    gpus = catalog.gpus()
    return tuple(
        (title, tuple((i, label) for i, label in GPU_OPTIONS if gpus[i].kind == kind))
        for kind, title in GPU_GROUPS
    )


PRESETS: tuple[PresetOption, ...] = tuple(
    PresetOption(
        m.id,
        f"{m.name} · {count(m.params, million_places=0)}",
        "cnn" if m.architecture == "cnn" else "transformer",
    )
    for m in catalog.models().values()
)
GPU_OPTIONS = _gpu_options()

_HINTS: dict[str, tuple[str, str]] = {  # key: (hint, unit)
    "mode": ("Training adds gradients, optimizer state and stored activations.", ""),
    "precision": (
        "How the weights are stored; AMP keeps fp32 weights with 16-bit compute.",
        "",
    ),
    "optimizer": ("Adam keeps two values per parameter, momentum SGD one, SGD none.", ""),
    "batch_size": ("Sequences (or images) processed together; activations grow with it.", ""),
    "seq_len": ("Tokens per sequence; activations and the KV cache grow with it.", "tokens"),
    "decoder_seq_len": ("T5 target length; empty means the same as the sequence.", "tokens"),
    "image_size": ("Input side in pixels; empty means the model's own.", "px"),
    "new_tokens": ("Tokens generated after the prompt; the KV cache holds them too.", "tokens"),
    "grad_accum_steps": (
        "Micro-batches summed before each step; the batch above is one micro-batch.",
        "",
    ),
    "finetune": ("LoRA trains small adapters and freezes the rest: far less state.", ""),
    "lora_rank": ("Width r of each adapter; adapter weights and states grow with it.", ""),
    "lora_targets": ("Which linear layers get adapters.", ""),
    "lora_dtype": (
        "peft keeps adapters in fp32; torchtune builds them in the model's type "
        "(torchtune/modules/peft/lora.py LoRALinear).",
        "",
    ),
    "lora_dropout": ("Dropout on the adapter input; above 0 it stores a mask.", ""),
    "group_size": ("Weights per quantization scale (GPTQ and AWQ).", ""),
    "checkpoint_every": ("Every n-th layer is checkpointed in full; the others keep all.", ""),
    "checkpointing": (
        "Recompute activations in the backward pass instead of storing them. Selective "
        "recomputes only the attention scores, which SDPA never stores: with SDPA it saves "
        "nothing; it helps eager attention.",
        "",
    ),
    "attention": ("Flash/SDPA never stores the sequence × sequence score matrix.", ""),
    "optimizer_impl": (
        "foreach needs a temporary copy of the parameters; fused updates in place.",
        "",
    ),
    "zero_grad": (
        "Where your loop calls optimizer.zero_grad(): after the forward pass, the last "
        "step's gradients live through it; set_to_none=False never frees them.",
        "",
    ),
    "loss": (
        "Chunked: torchtune's CEWithChunkedOutputLoss (modules/loss/ce_chunked_output_loss.py), "
        "compiled: no fp32 copy, one chunk's gradient at a time; the 16-bit logits stay. "
        "Fused linear: Liger (ops/fused_linear_cross_entropy.py), logits one chunk at a time. "
        "CCE: Apple's Cut Cross-Entropy (cut_cross_entropy/cce.py), no logits in memory. "
        "Compiled: torchtitan's torch.compile'd cross-entropy (components/loss.py), "
        "16-bit logits kept, no fp32 copy.",
        "",
    ),
    "loss_chunks": ("Chunks of the tokens (torchtune num_output_chunks, 8).", ""),
    "packing": (
        "The batch's layout. Auto: padded for HF Trainer and TRL, off otherwise. Padded: "
        "rows padded to the sequence length, so SDPA takes a mask and each layer saves "
        "it as a bias. Packed: whole rows of joined examples (TRL's wrapped strategy, the "
        "same as off; torchtune's block-causal mask). Padding-free: one flattened row "
        "(TRL padding_free or bfd packing, FlashAttention varlen); eager scores grow by "
        "the batch.",
        "",
    ),
    "optimizer_in_backward": (
        "torchtune optimizer_in_bwd (modules/optim.py OptimizerInBackward): each gradient "
        "is stepped and freed in backward; no accumulation.",
        "",
    ),
    "activation_offload": (
        "torchtune enable_activation_offloading (training/_activation_offloading.py): saved "
        "activations wait in pinned CPU memory, shown beside the GPU figure.",
        "",
    ),
    "torch_compile": (
        "torch.compile of each block (torchtitan apply_compile, torchtune compile_model): "
        "the norms keep their 16-bit input, SiLU is recomputed; Llama-style blocks in "
        "16-bit compute (under autocast the eager tensors are shown).",
        "",
    ),
    "float8_training": (
        "FP8 matmuls in the layers' linear layers. torchao (float8_linear.py Float8Linear): "
        "weights stay 16/32-bit, no 16-bit weight copies, inputs saved as before. "
        "Transformer Engine (module/linear.py _Linear): inputs saved in fp8, plus an fp8 "
        "copy of each weight for backward.",
        "",
    ),
    "float8_all_gather": (
        "torchao enable_fsdp_float8_all_gather (fsdp_utils.py): FSDP2 gathers the linear "
        "weights in fp8, 1 byte each instead of 2.",
        "",
    ),
    "paged_optimizer": (
        "bitsandbytes PagedAdamW / PagedAdamW8bit (optim/optimizer.py get_state_buffer): "
        "large states in unified memory, shown beside the GPU figure.",
        "",
    ),
    "kv_cache_dtype": ("Storage type of the key/value cache while generating.", ""),
    "logits": ("Logits for the last position only (generation) or for every position.", ""),
    "num_gpus": ("GPUs in the job; sharding and tensor parallelism divide among them.", ""),
    "sharding": (
        "ZeRO stage: split optimizer state, gradients and weights as DeepSpeed does; with "
        "LoRA or another optimizer, only the trained weights get a master, gradients and "
        "state; zero3 also partitions the frozen base (the plain loop's zero3 is read as "
        "FSDP).",
        "",
    ),
    "tensor_parallel": ("GPUs each layer is split across; must divide the heads.", ""),
    "sequence_parallel": (
        "Megatron --sequence-parallel / torchtitan SequenceParallel (Korthikanti et al. 2022 "
        "§4.2.2): layer inputs, norms and dropout split over the tensor-parallel GPUs.",
        "",
    ),
    "loss_parallel": (
        "torchtitan loss_parallel (parallelize_llama): the logits stay split by vocabulary "
        "over the tensor-parallel GPUs into the loss.",
        "",
    ),
    "context_parallel": (
        "torchtitan context parallelism (torch context_parallel): each rank holds "
        "seq_len ÷ degree tokens, and ring attention gathers every rank's keys and values; "
        "FSDP2 shards over these ranks too.",
        "",
    ),
    "expert_parallel": (
        "Mixture-of-experts training (Megatron-LM --expert-model-parallel-size, torchtitan "
        "expert_parallel_degree): each rank holds experts ÷ degree of every MoE layer with "
        "their gradients and optimizer state (under FSDP2, each gathered block), and sends "
        "tokens to them by all-to-all; routing assumed balanced.",
        "",
    ),
    "offload_optimizer": (
        "DeepSpeed offload_optimizer: fp32 master, optimizer state, fp32 gradients and "
        "the step on the CPU.",
        "",
    ),
    "stack": ("The training code: each keeps its own copies, buckets and shards.", ""),
    "gradient_as_bucket_view": (
        "DDP: gradients become views of its buckets instead of a second copy.",
        "",
    ),
    "reshard_after_forward": (
        "FSDP2: free each block's gathered weights after forward (gather again in backward).",
        "",
    ),
    "cpu_offload": (
        "FSDP2 CPUOffloadPolicy, or FSDP CPUOffload under ZeRO-3 sharding: shards, "
        "gradients and the step on the CPU.",
        "",
    ),
    "fsdp_param_dtype": (
        "FSDP2 MixedPrecisionPolicy param_dtype: the type each block is all-gathered in and "
        "computes in. Auto follows the precision (16-bit under AMP).",
        "",
    ),
    "fsdp_reduce_dtype": (
        "FSDP2 MixedPrecisionPolicy reduce_dtype: the type gradients are reduce-scattered in. "
        "Auto: fp32 under 16-bit parameters over fp32 weights (torchtitan), else the "
        "param dtype.",
        "",
    ),
    "sync_module_states": (
        "FSDP under ZeRO-3 sharding, wrapping a model loaded on the CPU: each unit is moved "
        "to the GPU, broadcast, flattened and sharded there; the allocator replay keeps the "
        "cache this leaves.",
        "",
    ),
    "offload_param": ("DeepSpeed ZeRO-3: keep the 16-bit parameter partitions on the CPU.", ""),
    "offload_optimizer_device": (
        "DeepSpeed offload_optimizer device: host RAM, or NVMe swap files (ZeRO-3), where "
        "host RAM keeps the pinned swap buffers.",
        "",
    ),
    "offload_param_device": (
        "DeepSpeed offload_param device: host RAM, or NVMe swap files, where host RAM "
        "keeps the pinned swap buffers.",
        "",
    ),
    "reduce_bucket_size": (
        "DeepSpeed reduce bucket, in elements; allocated at full size whatever the model.",
        "values",
    ),
    "stage3_prefetch_bucket_size": (
        "DeepSpeed stage3_prefetch_bucket_size: parameters gathered ahead of the module "
        "that runs, in elements (50,000,000).",
        "",
    ),
    "stage3_max_live_parameters": (
        "DeepSpeed stage3_max_live_parameters: the most parameters gathered at once, in "
        "elements (1,000,000,000).",
        "",
    ),
    "stage3_param_persistence_threshold": (
        "DeepSpeed stage3_param_persistence_threshold: parameters under this many elements "
        "are kept whole on every GPU (100,000).",
        "",
    ),
    "device": ("Where the step runs; the CPU has no CUDA context or cuBLAS workspace.", ""),
    "runtime": (
        "What serves the model: transformers generate, vLLM, or llama.cpp (Ollama and LM "
        "Studio run llama.cpp). With vLLM and llama.cpp the batch is the requests served "
        "at once and the sequence the context of each.",
        "",
    ),
    "gpu_memory_utilization": (
        "Share of the card vLLM takes (--gpu-memory-utilization); KV blocks fill what the "
        "weights and the profile run leave.",
        "",
    ),
    "max_num_seqs": (
        "Sequences vLLM schedules at once (--max-num-seqs); empty: vLLM's default for the "
        "card. Sizes the sampler's profile run.",
        "",
    ),
    "max_num_batched_tokens": (
        "Tokens per scheduler step (--max-num-batched-tokens, chunked prefill); empty: "
        "vLLM's default for the card.",
        "tokens",
    ),
    "block_size": ("Tokens per KV block (--block-size).", "tokens"),
    "enforce_eager": (
        "No CUDA graphs (--enforce-eager); their memory is not modelled, so only the "
        "command changes.",
        "",
    ),
    "pipeline_parallel": (
        "Pipeline stages. vLLM: --pipeline-parallel-size, each GPU holds 1/(TP × PP) of the "
        "weights. Training: torchtitan's pipeline (fsdp2), the heaviest rank is shown.",
        "",
    ),
    "pipeline_schedule": (
        "torch.distributed.pipelining schedule (torchtitan pipeline_parallel_schedule): "
        "1F1B keeps up to p micro-batches on the first rank; interleaved, 2 stages per GPU.",
        "",
    ),
    "pipeline_microbatches": (
        "Micro-batches per step (torchtitan pipeline_parallel_microbatches; empty: one per stage).",
        "",
    ),
    "gguf_type": ("The GGUF file's quantization (llama-quantize type).", ""),
    "n_ubatch": ("Tokens per micro-batch (-ub); the compute buffer grows with it.", "tokens"),
    "type_k": ("K cache type (-ctk).", ""),
    "type_v": ("V cache type (-ctv); a quantized V cache needs flash attention.", ""),
    "flash_attn": ("Flash attention (-fa); without it the scores sit in the compute buffer.", ""),
    "n_gpu_layers": (
        "Layers on the GPU (-ngl), the output layer counted; empty: all. The rest stays in "
        "system RAM.",
        "",
    ),
    "cuda_context_mib": ("Memory the CUDA runtime and kernels take before any tensor.", "MiB"),
    "allocator_overhead_percent": (
        "PyTorch's caching allocator reserves this much above the tensors.",
        "%",
    ),
    "allocator_replay": (
        "Replay the step through a model of PyTorch's caching allocator for the reserved "
        "memory, instead of the percentage above.",
        "",
    ),
    "expandable_segments": (
        "PYTORCH_CUDA_ALLOC_CONF expandable_segments:True: segments grow in place.",
        "",
    ),
    "max_split_size_mb": (
        "PYTORCH_CUDA_ALLOC_CONF max_split_size_mb: larger blocks are never split; "
        "empty: unlimited.",
        "MiB",
    ),
    "roundup_power2_divisions": (
        "PYTORCH_CUDA_ALLOC_CONF roundup_power2_divisions: sizes rounded to this many "
        "steps per power of two; 0: off.",
        "",
    ),
    "headroom_percent": (
        "Share of the GPU's usable memory a fit keeps free: fragmentation, a display, "
        "other processes.",
        "%",
    ),
}


def _setting(key: str) -> Field:
    hint, unit = _HINTS[key]
    spec = SPECS[key]
    if isinstance(spec, NumberSpec):
        return _number(key, hint, unit)
    if isinstance(spec, FlagSpec):
        return Field(key, spec.label, hint, "flag")
    return _choice(spec, hint)


def _config_field(c: ConfigField) -> Field:
    modes = (Describe.FIELDS.value,)
    if c.kind == "flag":
        options = (("", "As in the base config"), ("true", "Tied"), ("false", "Separate"))
        return Field(c.name, c.label, c.hint, "choice", options=options, describe_modes=modes)
    if c.kind == "text":
        return Field(c.name, c.label, c.hint, "text", describe_modes=modes)
    return Field(c.name, c.label, c.hint, "number", inputmode="numeric", describe_modes=modes)


_MODEL_SECTION = (
    _choice(
        DESCRIBE,
        "Give the model as a size, a preset's fields, a config.json or CNN layers.",
        "radio",
    ),
    Field(
        "preset",
        "Preset",
        "A catalog model; its fields below fill in and stay editable.",
        "search",
        options=tuple((p.id, p.label) for p in PRESETS),
        describe_modes=(Describe.FIELDS.value,),
    ),
    _number(
        "params_millions",
        "Parameters, in millions (110 for BERT-base) or with a unit: 7B, 1.5B, 350M.",
        "millions",
    ),
    _number("hidden_size", "Width h of each layer; empty works it out from the size."),
    _number("num_layers", "Layers L; empty works it out from the size."),
    *(_config_field(c) for c in CONFIG_FIELDS),
    Field(
        "config",
        "config.json",
        "Paste a Hugging Face config.json; the model's shape is read from it.",
        "textarea",
        describe_modes=(Describe.CONFIG.value,),
    ),
    Field(
        "cnn",
        "CNN",
        "A built-in network (resnet18 … resnet152, vgg11 … vgg19) or a JSON layer list.",
        "textarea",
        describe_modes=(Describe.CNN.value,),
    ),
)
_STEP_KEYS = (
    "mode",
    "precision",
    "optimizer",
    "batch_size",
    "seq_len",
    "decoder_seq_len",
    "image_size",
    "new_tokens",
    "grad_accum_steps",
)
_ADVANCED_KEYS = (
    "finetune",
    "lora_rank",
    "lora_targets",
    "lora_dtype",
    "lora_dropout",
    "group_size",
    "checkpoint_every",
    "attention",
    "optimizer_impl",
    "zero_grad",
    "loss",
    "loss_chunks",
    "optimizer_in_backward",
    "activation_offload",
    "paged_optimizer",
    "torch_compile",
    "packing",
    "float8_training",
    "float8_all_gather",
    "kv_cache_dtype",
    "logits",
    "stack",
    "tensor_parallel",
    "sequence_parallel",
    "loss_parallel",
    "context_parallel",
    "expert_parallel",
    "pipeline_parallel",
    "pipeline_schedule",
    "pipeline_microbatches",
    "offload_optimizer",
    "offload_optimizer_device",
    "offload_param",
    "offload_param_device",
    "reduce_bucket_size",
    "stage3_prefetch_bucket_size",
    "stage3_max_live_parameters",
    "stage3_param_persistence_threshold",
    "gradient_as_bucket_view",
    "reshard_after_forward",
    "cpu_offload",
    "fsdp_param_dtype",
    "fsdp_reduce_dtype",
    "sync_module_states",
    "device",
    "cuda_context_mib",
    "allocator_overhead_percent",
    "allocator_replay",
    "expandable_segments",
    "max_split_size_mb",
    "roundup_power2_divisions",
    "headroom_percent",
)
_RUNTIME_KEYS = (
    "runtime",
    "gpu_memory_utilization",
    "max_num_seqs",
    "max_num_batched_tokens",
    "block_size",
    "enforce_eager",
    "gguf_type",
    "n_gpu_layers",
    "n_ubatch",
    "type_k",
    "type_v",
    "flash_attn",
)
FORM_ID = "calc"  # the page's <form id>, which the view controls join from outside it
# The GPU picker's choice for a card the catalog lacks: its capacity is typed in gpu_gb.
CUSTOM_GPU = "custom"
GPU_GB = NumberSpec(
    "gpu_gb",
    "Custom capacity",
    Decimal("0.1"),
    Decimal(catalog.CUSTOM_MAX_GB),
    False,
    f"the card's memory in GB as its maker quotes it, a number from 0.1 to "
    f"{catalog.CUSTOM_MAX_GB:,} such as 8 or 12",
)
VIEW_FIELDS: tuple[Field, ...] = (
    Field(
        "gpu",
        "GPU",
        "Judge the fit on this GPU: verdict, largest batch and what to change.",
        "choice",
        options=(("", "No GPU chosen"), (CUSTOM_GPU, "Custom capacity: type its GB"), *GPU_OPTIONS),
        form=FORM_ID,
    ),
    Field(
        "gpu_gb",
        GPU_GB.label,
        "The card's memory as its maker quotes it: 8 for an 8 GB card. Counted as the "
        "catalog counts cards: N GB is N GiB, all of it usable.",
        "number",
        unit="GB",
        inputmode="decimal",
        form=FORM_ID,
    ),
    replace(
        _choice(
            UNITS,
            "Decimal GB as GPU makers quote them, or binary GiB as nvidia-smi shows.",
            "radio",
        ),
        form=FORM_ID,
    ),
    replace(_choice(PLOT, "What the plot varies, all else as set.", "radio"), form=FORM_ID),
)
# The start panel: the question (what to do, with which model, on which hardware) and the
# few settings that change the answer most, above the full form. Its controls join the form
# from outside it; nnmem.web.start reads the model and hardware boxes.
START_FIELDS: tuple[Field, ...] = (
    Field(
        "intent",
        "What do you want to do?",
        "Each sets the usual defaults for it; every one stays editable below.",
        "radio",
        options=tuple((i.value, defaults.INTENT_LABELS[i]) for i in defaults.Intent),
        form=FORM_ID,
    ),
    Field(
        "start_model",
        "Model",
        "A name (Llama 3.1 8B, qwen2.5 7b), a size (7B, 110M) or a pasted config.json.",
        "search",
        form=FORM_ID,
    ),
    Field(
        "start_hardware",
        "Hardware",
        "A card (RTX 4090, A100 80GB) or its memory (8 GB); 8 × A100 for several.",
        "text",
        form=FORM_ID,
    ),
    replace(_setting("num_gpus"), label="GPUs", form=FORM_ID),
    replace(_setting("sharding"), form=FORM_ID),
    replace(_setting("checkpointing"), label="Checkpointing", form=FORM_ID),
)
# What each intent means, under its name (nnmem.defaults.for_intent sets it).
INTENT_BLURBS: dict[str, str] = {
    defaults.Intent.RUN.value: "Serve it or chat with it: one conversation, 16-bit weights.",
    defaults.Intent.FINETUNE.value: "Adapt it to your data: a 4-bit base, checkpointing on.",
    defaults.Intent.TRAIN.value: "Train every weight: BF16 mixed precision.",
}
# The form's own sections; the view controls (VIEW_FIELDS) sit by the result they change.
FORM_SECTIONS: tuple[FormSection, ...] = (
    FormSection("model", "Model", True, _MODEL_SECTION),
    FormSection("step", "Training or inference step", True, tuple(_setting(k) for k in _STEP_KEYS)),
    FormSection("runtime", "Inference runtime", True, tuple(_setting(k) for k in _RUNTIME_KEYS)),
    FormSection("advanced", "Advanced options", False, tuple(_setting(k) for k in _ADVANCED_KEYS)),
)
FIELDS: dict[str, Field] = {
    f.key: f
    for fields in (START_FIELDS, *(s.fields for s in FORM_SECTIONS), VIEW_FIELDS)
    for f in fields
}


def _default(key: str) -> str:
    value = SETTINGS[key]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StrEnum):
        return value.value
    return str(value)


DEFAULT_FIELDS: dict[str, str] = {
    **dict.fromkeys(FIELDS, ""),
    "describe": Describe.SIMPLE.value,
    "params_millions": "110",
    "hidden_size": "768",
    "num_layers": "12",
    **{key: _default(key) for key in SETTINGS},
    "batch_size": "32",
    "seq_len": "128",
    "units": Units.GB.value,
    "plot": PlotAxis.BATCH_SIZE.value,
}


# --- from the page's strings to the schema -------------------------------------------------


@dataclass
class Translation:
    """The page's fields read into the scenario schema, with what went wrong."""

    describe: Describe
    data: dict[str, Any]  # the schema dict for nnmem.scenario.parse
    problems: list[Problem] = field(default_factory=list)
    base: str = ""  # where the fields mode's base config came from: preset or config
    config: dict[str, Any] | None = None  # the fields mode's config, edits applied
    edited: bool = False  # whether a cfg_* field changed the base config
    given: tuple[str, ...] = ()  # the cfg_* controls that hold a value


def text_of(fields: Mapping[str, object], key: str) -> str:
    """One field's value as the page's text ("" where it is missing)."""
    value = fields.get(key, "")
    if type(value) is str:  # what the page sends: no conversion to make
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _describe(fields: Mapping[str, object]) -> Describe | Problem:
    if "describe" in fields:
        return DESCRIBE.read(text_of(fields, "describe"))
    # A URL made from Scenario.to_dict names the model kind instead.
    kind = str(fields.get("model", "generic")).strip().lower()
    return {
        ModelKind.PRESET.value: Describe.FIELDS,
        ModelKind.TRANSFORMER.value: Describe.CONFIG,
        ModelKind.CNN.value: Describe.CNN,
    }.get(kind, Describe.SIMPLE)


def read_view(fields: Mapping[str, object]) -> tuple[str, Units, PlotAxis, list[Problem]]:
    """The view controls: the GPU id (or ""), the units and the plot axis."""
    problems: list[Problem] = []
    units = UNITS.read(text_of(fields, "units") or Units.GB.value)
    if isinstance(units, Problem):
        problems.append(units)
        units = Units.GB
    axis = PLOT.read(text_of(fields, "plot") or PlotAxis.BATCH_SIZE.value)
    if isinstance(axis, Problem):
        problems.append(axis)
        axis = PlotAxis.BATCH_SIZE
    raw = text_of(fields, "gpu")
    gpu = raw.strip().lower()
    if gpu == CUSTOM_GPU:
        # A capacity typed with its unit ("8 GB") reads as the number alone.
        typed = re.sub(r"\s*gb$", "", text_of(fields, "gpu_gb").strip(), flags=re.IGNORECASE)
        gb = GPU_GB.read(typed)
        if isinstance(gb, Problem):
            problems.append(gb)
            return "", units, axis, problems
        return catalog.custom_gpu_id(gb), units, axis, problems
    if gpu and catalog.gpu(gpu) is None:
        problems.append(
            Problem("gpu", f"GPU {shown(raw)} is not in the catalog: choose one from the list.")
        )
        gpu = ""
    return gpu, units, axis, problems


def _json_field(text: str, key: str, label: str) -> object:
    if len(text) > _TEXT_LIMIT:
        raise NnmemError.single(key, f"{label} is too long: at most {_TEXT_LIMIT:,} characters.")
    return load_json(text, key, label)


def _config_edits(fields: Mapping[str, object]) -> tuple[dict[str, Any], list[Problem]]:
    edits: dict[str, Any] = {}
    problems: list[Problem] = []
    for c in CONFIG_FIELDS:
        raw = text_of(fields, c.name).strip()
        if not raw:
            continue
        if c.kind == "flag":
            read = FlagSpec(c.name, c.label).read(raw)
            if isinstance(read, Problem):
                problems.append(read)
            else:
                edits[c.key] = read
        elif c.kind == "text":
            if _MODEL_TYPE.fullmatch(raw.lower()):
                edits[c.key] = raw.lower()
            else:
                problems.append(
                    Problem(
                        c.name,
                        f"{c.label} must be a config.json model_type such as llama: letters, "
                        f"digits, dots, _ and -, at most 64 (got {shown(raw)}).",
                    )
                )
        else:
            number = c.spec.read(raw)
            if isinstance(number, Problem):
                problems.append(number)
            else:
                edits[c.key] = int(number)
    return edits, problems


def _unknown_preset(fields: Mapping[str, object]) -> Problem | None:
    """The problem with a preset search that names no catalog model, if it does not."""
    preset = text_of(fields, "preset").strip()
    if not preset or catalog.find_model(preset) is not None:
        return None
    return Problem(
        "preset",
        f"Preset {shown(preset)} is not in the catalog: pick a model from the list "
        "or type its name, such as Llama 3.1 8B or llama-3.1-8b.",
    )


def _base_config(fields: Mapping[str, object]) -> tuple[dict[str, Any] | None, str, Problem | None]:
    """The fields mode's starting config: the preset's, else the pasted config's."""
    preset = text_of(fields, "preset").strip()
    if preset:
        entry = catalog.find_model(preset)
        if entry is None:
            return None, "preset", _unknown_preset(fields)
        if entry.architecture == "cnn":
            return None, "preset", None  # a CNN preset has no transformer fields
        return dict(entry.config), "preset", None
    text = text_of(fields, "config").strip()
    if text:
        # The config textarea is hidden in this mode, so its problems go on the preset.
        why = "it must be a config.json object with fields such as hidden_size."
        try:
            loaded = _json_field(text, "config", "Config")
        except NnmemError as error:
            why = error.problems[0].message
            loaded = None
        if not isinstance(loaded, dict):
            message = (
                f"Pick a preset: the pasted config.json cannot be the base ({why.rstrip('.')})."
            )
            return None, "config", Problem("preset", message)
        return loaded, "config", None
    return (
        None,
        "preset",
        Problem(
            "preset",
            "Preset is required: pick a catalog model to start from (or paste a config.json "
            "under “Pasted config.json” and come back to edit its fields).",
        ),
    )


def _set_concept(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` and every alias transformers' configs use for it (n_embd, d_model…)."""
    for alias in ALIASES.get(key, (key,)):
        if alias in config:
            config[alias] = value
    config[key] = value


def translate(fields: Mapping[str, object]) -> Translation:
    """Read the page's flat string fields into the scenario schema.

    >>> t = translate({"describe": "fields", "preset": "llama-3.1-8b", "batch_size": "4"})
    >>> t.data["model"], t.data["preset"], t.data["batch_size"], t.problems
    ('preset', 'llama-3.1-8b', '4', [])
    >>> t = translate({"describe": "fields", "preset": "llama-3.1-8b",
    ...                "cfg_num_hidden_layers": "16"})
    >>> t.data["model"], t.data["config"]["num_hidden_layers"], t.edited
    ('transformer', 16, True)
    """
    describe = _describe(fields)
    problems: list[Problem] = []
    if isinstance(describe, Problem):
        problems.append(describe)
        describe = Describe.SIMPLE
    result = Translation(describe, {}, problems)
    data = result.data
    if describe is Describe.SIMPLE:
        data["model"] = ModelKind.GENERIC.value
        for key in MODEL_FIELDS[Describe.SIMPLE]:
            data[key] = text_of(fields, key)
    elif describe is Describe.CONFIG:
        data["model"] = ModelKind.TRANSFORMER.value
        text = text_of(fields, "config").strip()
        if not text:
            problems.append(
                Problem("config", "Config is required: paste a Hugging Face config.json.")
            )
        elif len(text) > _TEXT_LIMIT:
            problems.append(
                Problem("config", f"Config is too long: at most {_TEXT_LIMIT:,} characters.")
            )
        else:
            data["config"] = text
    elif describe is Describe.CNN:
        data["model"] = ModelKind.CNN.value
        text = text_of(fields, "cnn").strip()
        if not text:
            problems.append(
                Problem(
                    "cnn",
                    "CNN is required: name a built-in network such as resnet50, or paste a "
                    "JSON layer list.",
                )
            )
        elif text[0] in "{[":
            try:
                data["cnn"] = _json_field(text, "cnn", "CNN")
            except NnmemError as error:
                problems.extend(error.problems)
        else:
            data["cnn"] = text[:200]
    else:
        base, source, problem = _base_config(fields)
        result.base = source
        edits, edit_problems = _config_edits(fields)
        result.given = tuple(f"cfg_{key}" for key in edits)
        problems.extend(edit_problems)
        if problem is not None:
            problems.append(problem)
        elif base is None:  # a CNN preset: its layers, no transformer fields to edit
            data |= {"model": ModelKind.PRESET.value, "preset": text_of(fields, "preset").strip()}
        else:
            config = dict(base)
            for key, value in edits.items():
                _set_concept(config, key, value)
            result.config = config
            result.edited = config != base
            preset = text_of(fields, "preset").strip().lower()
            if source == "preset" and not result.edited:
                data |= {"model": ModelKind.PRESET.value, "preset": preset}
            else:
                data |= {"model": ModelKind.TRANSFORMER.value, "config": config}
    if describe is not Describe.FIELDS:
        # The search stays in view in every mode, so a name it cannot find is reported.
        unknown = _unknown_preset(fields)
        if unknown is not None:
            problems.append(unknown)
    for key in SETTINGS:
        if key in fields:
            data[key] = text_of(fields, key)
    # The bytes a checkpoint read from its headers stores (a hidden control).
    stored = text_of(fields, CHECKPOINT_BYTES).strip()
    if stored:
        data[CHECKPOINT_BYTES] = stored
    return result


def inactive_for(
    describe: Describe,
    kind: ModelKind,
    mode: Mode,
    model: object,
    finetune: Finetune,
    precision: Precision,
    runtime: Runtime = Runtime.TRANSFORMERS,
    **stack: Any,
) -> list[str]:
    """Page fields to hide: other describe modes' model fields and settings that do not apply.

    ``stack`` passes the training stack's choices (``stack``, ``sharding``, ``optimizer``)."""
    off = inactive_fields(kind, mode, model, finetune, precision, runtime, **stack)
    return _hidden(describe, kind, off)


def _hidden(describe: Describe, kind: ModelKind, inactive: Iterable[str]) -> list[str]:
    """:func:`inactive_for` from the schema keys that do not apply."""
    off = set(inactive) - set(MODEL_KEYS)
    for other, keys in MODEL_FIELDS.items():
        if other is not describe:
            off |= set(keys)
    if describe is Describe.FIELDS and kind is ModelKind.CNN:
        off |= set(CONFIG_BY_NAME)  # a CNN preset has no transformer fields
    off.discard("preset")  # the preset search stays in view: picking one fills the fields
    return [key for key in FIELDS if key in off]


def page_field(problem: Problem, translation: Translation) -> str:
    """The page control a schema problem belongs to, read from its ``loc``.

    In the ``fields`` mode a config.json problem goes to the cfg_* control of its key;
    a rule across keys (its ``input`` names them) goes to the first of them the user
    filled in, else the first of them; the config textarea itself is hidden there.

    >>> t = translate({"describe": "fields", "preset": "llama-3.1-8b",
    ...                "cfg_num_attention_heads": "7"})
    >>> page_field(Problem(("config", "n_embd"), "..."), t)
    'cfg_hidden_size'
    >>> page_field(Problem("config", "...", {"hidden_size": 4096, "num_attention_heads": 7}), t)
    'cfg_num_attention_heads'
    """
    key = problem.key
    if translation.describe is Describe.FIELDS and key == "config":
        given = problem.input if isinstance(problem.input, dict) else {}
        involved = problem.loc[1:2] or tuple(given)
        named = [_CONFIG_CONTROL[k] for k in involved if k in _CONFIG_CONTROL]
        return next((n for n in named if n in translation.given), named[0] if named else "preset")
    if key in FIELDS or key == CHECKPOINT_BYTES:
        return key
    return {
        Describe.SIMPLE: "params_millions",
        Describe.FIELDS: "preset",
        Describe.CONFIG: "config",
        Describe.CNN: "cnn",
    }[translation.describe]


# Every config.json key a cfg_* control edits, its aliases too (n_embd is hidden_size).
_CONFIG_CONTROL: dict[object, str] = {
    alias: c.name for c in CONFIG_FIELDS for alias in (c.key, *ALIASES.get(c.key, ()))
}


def _millions(params: int) -> str:
    """A parameter count in millions as the form takes it: 8030.261248, 110."""
    return plain(Fraction(params, 10**6), 6, separators=False)


def fill_values(translation: Translation, model: object) -> dict[str, str]:
    """What to show in model controls that are empty or belong to another describe mode."""
    from nnmem.models.architecture import Transformer, parameter_counts
    from nnmem.scenario import GenericModel

    fill: dict[str, str] = {}
    if isinstance(model, GenericModel):
        # A width or depth worked out from the size is left out: written into its empty
        # control, it would stop following the size when the size changes.
        fill["params_millions"] = _millions(model.params)
        for key, value in (("hidden_size", model.hidden_size), ("num_layers", model.num_layers)):
            if key not in model.derived:
                fill[key] = str(value)
        return fill
    if isinstance(model, Transformer):
        params = sum(parameter_counts(model).values())
        fill["params_millions"] = _millions(params)
        fill["hidden_size"] = str(model.hidden)
        fill["num_layers"] = str(model.layers + model.encoder_layers)
        config = dict(model.config)
        reader = ConfigReader(config)
        for c in CONFIG_FIELDS:
            _, value = reader.find(c.key)
            if isinstance(value, bool):
                fill[c.name] = "true" if value else "false"
            elif isinstance(value, int | str) and c.kind != "flag":
                fill[c.name] = str(value)
        if "tie_word_embeddings" not in config:
            fill["cfg_tie_word_embeddings"] = "true" if model.tied_embeddings else "false"
        if translation.describe is Describe.CONFIG:
            # The fields mode starts from the preset before the pasted config: clear the
            # preset so that switching to the fields edits this config.
            fill["preset"] = ""
        else:
            # The pasted config is the user's own input (a link carries it), never a
            # value derived from other controls: it is written only in the other modes.
            fill["config"] = json.dumps(config, indent=2, ensure_ascii=False)
        return fill
    from nnmem.models.cnn import CnnModel, parameter_count

    if isinstance(model, CnnModel):
        fill["params_millions"] = _millions(parameter_count(model))
        if translation.describe is not Describe.CNN:
            named = model.name != "custom"
            fill["cnn"] = model.name if named else json.dumps(model.to_dict(), indent=2)
    return fill


# --- the page's fields read at once: view, scenario, problems, what to hide and fill ---------

_MODEL_CONTROLS = {key for keys in MODEL_FIELDS.values() for key in keys}


def _lenient(spec: Any, fields: Mapping[str, object], default: Any) -> Any:
    read = spec.read(str(fields.get(spec.key, default.value)))
    return default if isinstance(read, Problem) else read


def _lenient_whole(spec: NumberSpec, fields: Mapping[str, object], default: int) -> int:
    read = spec.read(str(fields.get(spec.key, default)))
    return default if isinstance(read, Problem) or read is None else int(read)


def _model_only(t: Translation) -> tuple[ModelKind, object]:
    """The model alone, for hiding fields when some setting is wrong."""
    kind = ModelKind(t.data.get("model", "generic"))
    keys = {"model", "params_millions", "hidden_size", "num_layers", "config", "preset", "cnn"}
    try:
        scenario = parse({k: v for k, v in t.data.items() if k in keys})
    except NnmemError:
        return kind, None
    return scenario.kind, scenario.model


def _inactive(t: Translation, fields: Mapping[str, object], scenario: Scenario | None) -> list[str]:
    if scenario is not None:
        # The scenario keeps what does not apply to it (its description asks again).
        return _hidden(t.describe, scenario.kind, scenario.inactive_fields())
    kind, model = _model_only(t)
    mode = _lenient(MODE, fields, Mode.TRAINING)
    finetune = _lenient(FINETUNE, fields, Finetune.FULL)
    precision = _lenient(PRECISION, fields, Precision.FP32)
    runtime = _lenient(RUNTIME, fields, Runtime.TRANSFORMERS)
    stack = {
        "stack": _lenient(STACK, fields, Stack.PLAIN),
        "sharding": _lenient(SHARDING, fields, Sharding.NONE),
        "optimizer": _lenient(OPTIMIZER, fields, Optimizer.ADAMW),
        "checkpointing": _lenient(CHECKPOINTING, fields, Checkpointing.NONE),
        "loss": _lenient(LOSS, fields, Loss.STANDARD),
        "optimizer_in_backward": OPTIMIZER_IN_BACKWARD.read(
            str(fields.get("optimizer_in_backward", ""))
        )
        is True,
        "device": _lenient(DEVICE, fields, Device.CUDA),
        "tensor_parallel": _lenient_whole(TENSOR_PARALLEL, fields, 1),
        "pipeline_parallel": _lenient_whole(PIPELINE_PARALLEL, fields, 1),
        "float8_training": _lenient(FLOAT8_TRAINING, fields, Float8Training.OFF),
        "offload_optimizer": OFFLOAD.read(str(fields.get("offload_optimizer", ""))) is True,
        "offload_param": OFFLOAD_PARAM.read(str(fields.get("offload_param", ""))) is True,
    }
    return inactive_for(t.describe, kind, mode, model, finetune, precision, runtime, **stack)


def _placed(problem: Problem, t: Translation) -> Problem:
    """The problem against the page control it belongs to, its message cut to size."""
    return Problem(page_field(problem, t), problem.message, problem.input)


def _read(fields: Mapping[str, object]) -> tuple[Translation, Scenario | None, list[Problem]]:
    """The scenario the fields describe, or every problem, each against its control."""
    t = translate(fields)
    problems = list(t.problems)
    scenario = None
    try:
        scenario = parse(t.data)
    except NnmemError as error:
        # Once the translation found the model's problem, parse's view of it adds nothing.
        # (The preset search is in view in every mode but describes the model only in one.)
        model_known = any(
            p.field in _MODEL_CONTROLS and (p.field != "preset" or t.describe is Describe.FIELDS)
            for p in problems
        )
        taken = {p.field for p in problems}
        placed = (_placed(q, t) for q in error.problems)
        problems += [
            p
            for p in placed
            if p.field not in taken and not (model_known and p.field not in SETTINGS)
        ]
    if scenario is None and problems:
        # A bad value in a hidden setting must not block the estimate: drop those settings.
        hidden = set(_inactive(t, fields, None)) & set(SETTINGS)
        if all(p.field in hidden for p in problems):
            data = {k: v for k, v in t.data.items() if k not in hidden}
            with contextlib.suppress(NnmemError):
                scenario, problems = parse(data), []
        else:
            problems = [p for p in problems if p.field not in hidden]
    return t, scenario, problems


@dataclass(frozen=True)
class Reading:
    """Everything the calculator's fields say, read in one pass."""

    gpu: str  # the GPU id, or "" for none
    units: Units
    axis: PlotAxis
    scenario: Scenario | None  # None: the problems say why
    problems: list[Problem]  # each against the control its loc names
    inactive: list[str]  # controls that do not apply
    fill: dict[str, str]  # values to show in model controls


def read(fields: Mapping[str, object]) -> Reading:
    """Read the page's flat string fields: the view, the scenario or every problem, the
    controls to hide and the values to fill in.

    >>> r = read({**DEFAULT_FIELDS, "describe": "fields", "preset": "llama-3.1-8b"})
    >>> r.scenario.model.hidden, r.problems, r.fill["cfg_hidden_size"]
    (4096, [], '4096')
    """
    gpu, units, axis, view_problems = read_view(fields)
    t, scenario, problems = _read(fields)
    fill = fill_values(t, scenario.model) if scenario is not None else {}
    if "describe" not in fields:
        # A link in the schema's terms (model=preset, ...): show the mode it was read as.
        fill["describe"] = t.describe.value
    inactive = _inactive(t, fields, scenario)
    if text_of(fields, "gpu").strip().lower() != CUSTOM_GPU:
        inactive.append("gpu_gb")
    return Reading(gpu, units, axis, scenario, problems + view_problems, inactive, fill)


# --- what an edit changes in the other controls -----------------------------------------------

CHANGED = "changed"  # the page's request names the controls edited since its last answer


def _changed(fields: Mapping[str, object]) -> set[str]:
    return {name.strip() for name in text_of(fields, CHANGED).split(",") if name.strip()}


def follow_edit(fields: Mapping[str, object]) -> dict[str, str]:
    """The controls that follow the ones just edited (named in ``changed``), and their new
    values: a preset typed by its id or name becomes the model, its fields cleared for
    its own to fill in, and the precision its checkpoint implies for the step
    (:func:`nnmem.defaults.precision_for`); a switch to inference runs the 16-bit type
    of an AMP choice and one sequence where the batch was the form's training default.

    >>> follow_edit({"changed": "preset", "preset": "Llama 3.1 8B"})
    {'describe': 'fields', 'precision': 'amp_bf16'}
    >>> follow_edit({"changed": "mode", "mode": "inference", "precision": "amp_bf16",
    ...              "batch_size": "32"})
    {'precision': 'bf16', 'batch_size': '1'}
    >>> follow_edit({"changed": "preset", "preset": "ResNet-50"})["cnn"]
    'resnet50'
    >>> follow_edit({"changed": "preset", "preset": "llama 3"}), follow_edit({"preset": "gpt2"})
    ({}, {})
    >>> sorted(follow_edit({"changed": "preset,describe", "preset": "gpt2",
    ...                     "describe": "config", "config": "{}"}).keys() - CONFIG_BY_NAME)
    ['precision']
    """
    edited = _changed(fields)
    changes: dict[str, str] = {}
    mode = _lenient(MODE, fields, Mode.TRAINING)
    precision = _lenient(PRECISION, fields, Precision.FP32)
    entry = catalog.find_model(text_of(fields, "preset")) if "preset" in edited else None
    if entry is not None:
        # A new preset replaces the model's fields; they stay editable afterwards.
        changes |= dict.fromkeys(CONFIG_BY_NAME, "") | {"config": "", "cnn": ""}
        cnn = entry.architecture == "cnn"
        changes["describe"] = (Describe.CNN if cnn else Describe.FIELDS).value
        if cnn:
            changes["cnn"] = entry.id
        elif precision in defaults.UNQUANTIZED:
            # The checkpoint's own dtype, as the step uses it (a quantized choice stays).
            changes["precision"] = defaults.precision_for(entry.config, mode).value
        if "describe" in edited:
            # A mode picked in the same request as the preset (the page sends both when the
            # click that picks it also leaves the preset's box) is the user's later choice:
            # it stands, with the text it describes the model by.
            given = _describe(fields)
            changes.pop("describe")
            if given is Describe.CONFIG:
                changes.pop("config")
            elif given is Describe.CNN and not cnn:
                changes.pop("cnn")
    elif "config" in edited and precision in defaults.UNQUANTIZED:
        # A pasted config.json names its dtype as a preset's does.
        pasted = stored_config(fields) if _describe(fields) is Describe.CONFIG else None
        if pasted is not None:
            changes["precision"] = defaults.precision_for(pasted, mode).value
    elif "mode" in edited:
        config = stored_config(fields)
        if mode is Mode.INFERENCE:
            # Autocast trains: at inference the weights run in its 16-bit type.
            changes["precision"] = defaults.for_mode(precision, mode).value
            if text_of(fields, "batch_size").strip() == DEFAULT_FIELDS["batch_size"]:
                changes["batch_size"] = str(defaults.INFERENCE_BATCH)
        elif precision is defaults.precision_for(config, Mode.INFERENCE):
            changes["precision"] = defaults.precision_for(config, mode).value
    if edited & {"precision", "mode"} and mode is Mode.TRAINING:
        changes |= _qlora(fields, Precision(changes.get("precision", precision)))
    if "stack" in edited:
        changes |= _stack_followers(fields, mode, precision)
    if "params_millions" in edited and _example_shape_misfits(fields):
        # The example's width and depth would describe another model: let the size set them.
        changes |= {"hidden_size": "", "num_layers": ""}
    return {k: v for k, v in changes.items() if v != text_of(fields, k)}


def _shape_params(fields: Mapping[str, object]) -> int:
    """The parameters the width and depth give, about 12·L·h² (Kaplan et al. 2020,
    arXiv 2001.08361 §2.1, as GenericModel.from_params derives them)."""
    return 12 * int(text_of(fields, "num_layers")) * int(text_of(fields, "hidden_size")) ** 2


def _example_shape_misfits(fields: Mapping[str, object]) -> bool:
    """Whether the width and depth are still the example's (BERT-base: 768, 12 layers) and
    give a size more than twice off the one typed."""
    example = all(
        text_of(fields, k).strip() == DEFAULT_FIELDS[k] for k in ("hidden_size", "num_layers")
    )
    params = _typed_params(fields)
    if not example or params is None or _describe(fields) is not Describe.SIMPLE:
        return False
    return not Fraction(1, 2) <= Fraction(params, _shape_params(fields)) <= 2


def _typed_params(fields: Mapping[str, object]) -> int | None:
    """The parameters the size field gives, or None where it is not valid."""
    spec = SPECS["params_millions"]
    assert isinstance(spec, NumberSpec)
    millions = spec.read(text_of(fields, "params_millions"))
    return None if isinstance(millions, Problem) else int(millions * 10**6)


def _qlora(fields: Mapping[str, object], precision: Precision) -> dict[str, str]:
    """LoRA (and checkpointing) on, where a quantized precision is chosen for training a
    transformer in full: the only way it trains is as QLoRA's frozen base."""
    recipe = defaults.qlora(precision)
    if recipe is None or _describe(fields) not in (Describe.FIELDS, Describe.CONFIG):
        return {}
    if _lenient(FINETUNE, fields, Finetune.FULL) is not Finetune.FULL:
        return {}
    finetune, checkpointing = recipe
    changes = {"finetune": finetune.value}
    if _lenient(CHECKPOINTING, fields, Checkpointing.NONE) is Checkpointing.NONE:
        changes["checkpointing"] = checkpointing.value
    return changes


def _stack_followers(
    fields: Mapping[str, object], mode: Mode, precision: Precision
) -> dict[str, str]:
    """A stack picked for training brings the defaults it sets itself
    (:func:`nnmem.scenario.stack_defaults`): TRL's bf16 autocast in place of plain fp32,
    and its gradient checkpointing where none was chosen.

    >>> _stack_followers({"stack": "trl_sft"}, Mode.TRAINING, Precision.FP32)
    {'checkpointing': 'full', 'precision': 'amp_bf16'}
    >>> _stack_followers({"stack": "trl_sft", "checkpointing": "per_op"}, Mode.TRAINING,
    ...                  Precision.AMP_FP16)
    {}
    """
    stack = _lenient(STACK, fields, Stack.PLAIN)
    finetune = _lenient(FINETUNE, fields, Finetune.FULL)
    changes: dict[str, str] = {}
    for key, value in stack_defaults(stack, mode, finetune, precision).items():
        if key == "checkpointing":
            if _lenient(CHECKPOINTING, fields, Checkpointing.NONE) is Checkpointing.NONE:
                changes[key] = value.value
        elif key == "precision" and precision is Precision.FP32:
            changes[key] = value.value
    return changes


def follow_note(changes: Mapping[str, str], fields: Mapping[str, object]) -> str:
    """What the page says about the controls that followed an edit, where they are out of
    sight (the adapters' settings sit under Advanced options).

    >>> follow_note({"finetune": "lora", "checkpointing": "full"}, {})
    "Turned on LoRA adapters (QLoRA: the quantized weights stay frozen) and gradient \
checkpointing, as QLoRA recipes do; the adapters' settings are under Advanced options."
    >>> follow_note({"precision": "bf16"}, {})
    ''
    >>> follow_note({"hidden_size": "", "num_layers": ""}, {**DEFAULT_FIELDS,
    ...             "params_millions": "7B"})
    'Width and depth now follow the size: 768 × 12 layers is about 85M parameters, not \
7.00B.'
    """
    if changes.get("hidden_size") == "" and changes.get("num_layers") == "":
        # The size may come with the change (typed in the start panel's model box).
        params = _typed_params({**fields, **changes})
        shaped = all(text_of(fields, k).strip().isdigit() for k in ("hidden_size", "num_layers"))
        if not shaped or not params or not _shape_params(fields):
            return "Width and depth now follow the size."
        return (
            f"Width and depth now follow the size: {text_of(fields, 'hidden_size')} × "
            f"{text_of(fields, 'num_layers')} layers is about "
            f"{count(_shape_params(fields), million_places=0)} parameters, not "
            f"{count(params, million_places=0)}."
        )
    if changes.get("finetune") != Finetune.LORA.value:
        return ""
    also = " and gradient checkpointing" if "checkpointing" in changes else ""
    return (
        f"Turned on {LABELS[Finetune.LORA]} (QLoRA: the quantized weights stay frozen){also}, "
        "as QLoRA recipes do; the adapters' settings are under Advanced options."
    )


def stored_config(fields: Mapping[str, object]) -> dict[str, Any] | None:
    """The config.json the model comes from, for its stored dtype: the preset's or the
    pasted one; None for a model given by its size or as a CNN."""
    describe = _describe(fields)
    if describe is Describe.FIELDS:
        entry = catalog.find_model(text_of(fields, "preset"))
        return None if entry is None else entry.config
    if describe is Describe.CONFIG:
        with contextlib.suppress(NnmemError):
            loaded = _json_field(text_of(fields, "config").strip(), "config", "Config")
            return loaded if isinstance(loaded, dict) else None
    return None


def derived_shape(fields: Mapping[str, object], scenario: Scenario) -> dict[str, str]:
    """The width and depth a model given by its size gets where those fields are empty
    (GenericModel.from_params), for the page to show in them as what the size gives.

    >>> from nnmem.scenario import parse
    >>> derived_shape({"describe": "simple", "hidden_size": "", "num_layers": ""},
    ...               parse({"params_millions": 7000}))
    {'hidden_size': '4,204', 'num_layers': '33'}
    """
    from nnmem.scenario import GenericModel

    model = scenario.model
    if _describe(fields) is not Describe.SIMPLE or not isinstance(model, GenericModel):
        return {}
    shape = {"hidden_size": model.hidden_size, "num_layers": model.num_layers}
    return {key: f"{shape[key]:,}" for key in model.derived if key in shape}
