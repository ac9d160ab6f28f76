"""FP8 training: which copies are 8-bit and which stay in 16 or 32 bits.

Both stacks compute the layers' linear layers with FP8 GEMMs (e4m3 for inputs and weights
in forward, e5m2 for the gradient of the output in backward) and keep the parameters, the
gradients and the optimizer state in their high-precision types. What they save for
backward differs, and so does what they cast.

**torchao float8** (``convert_to_float8_training``; torchtitan's float8 converter):

* torchao/float8/float8_linear.py ``matmul_with_hp_or_float8_args.forward`` calls
  ``ctx.save_for_backward(input_hp, weight_hp_t)`` before it casts: autograd keeps the
  high-precision input, as ``nn.Linear`` does, and the weight itself; backward casts them
  to float8 again (``hp_tensor_to_float8_dynamic`` on ``input_hp`` and ``weight_hp_t``),
  for the tensorwise recipe and the rowwise ones alike. So the saved activations do not
  change: no 2 B → 1 B per element.
* The float8 casts of the input (N·in bytes) and the weight (in·out bytes) live only
  while their GEMM runs, and one fp32 amax and scale each (a few bytes): transients.
* ``Float8Linear.forward`` casts only the input to the autocast type; the weight goes
  from its stored type straight to float8, and autocast's cast of the float8 operands
  changes only their reported type (torchao/float8/float8_ops.py ``autocast_to_copy``).
  Under autocast there is therefore no 16-bit copy of a converted weight: the
  ``2·P_linear`` bytes of autocast copies go, the head's stays.
* torchtitan's converter leaves the output head in 16-bit (torchtitan/float8.py
  ``Float8Converter.convert_to_float8_training``: ``module_filter_fn=lambda mod, fqn:
  fqn != "output"``), as accelerate does (``filter_first_and_last_linear_layers``).
* With ``enable_fsdp_float8_all_gather`` the weight is a ``WeightWithDynamicFloat8CastTensor``
  (torchao/float8/fsdp_utils.py): ``fsdp_pre_all_gather`` casts the local shard to float8
  and FSDP2 all-gathers those bytes, and ``fsdp_post_all_gather`` wraps the gathered
  float8 data as a ``Float8TrainingTensor``. An unsharded linear weight is then
  1 B per parameter instead of the ``param_dtype``'s 2; the norms and the root (embedding,
  final norm, head) are gathered in 16-bit as before.

**Transformer Engine** (``te.Linear`` under ``fp8_autocast``; transformer_engine/pytorch/
module/linear.py ``_Linear.forward``, as TE 1.x writes it):

* The input is cast to FP8 (``fp8_cast_transpose_fused``), and ``ctx.save_for_backward``
  keeps ``saved_inputmat_t``, the FP8 transpose the weight gradient reads, or the FP8
  input itself under sequence parallelism; the 16-bit input is not kept. Each linear
  layer's saved input is 1 B per element instead of 2.
* The weight is cast to FP8 each forward (``weight_fp8``, ``weight_t_fp8``), and
  ``weight_t_fp8`` is saved for the input gradient: 1 B per linear parameter for every
  layer whose tensors wait for backward. Without checkpointing that is every layer's;
  with full checkpointing none (the checkpointed forward runs without grad, so nothing is
  saved, and the recomputed layer's copy is freed with it).
* Each module keeps its ``fp8_meta``: under the default ``DelayedScaling`` recipe
  (transformer_engine/common/recipe ``amax_history_len=1024``) an fp32 amax history of
  1,024 rows for its 3 forward tensors (input, weight, output) and 2 backward tensors
  (grad output, grad input), and a scale and an inverse scale for each: 4 × (1,024 × 5 +
  2 × 5) = 20,520 B per linear layer.
* Left out: with ``is_first_microbatch`` given (weight caching over micro-batches) the
  module keeps its FP8 weight and transpose as workspaces between steps, 2 B per linear
  parameter more; the estimate follows the default ``is_first_microbatch=None``.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from nnmem.models.architecture import Transformer, parameter_tensors
from nnmem.models.tensors import Row
from nnmem.scenario import (
    Checkpointing,
    Device,
    Finetune,
    Float8Training,
    Mode,
    Scenario,
    Stack,
)
from nnmem.terms import Term, product

TORCHAO_LINEAR = (
    "torchao torchao/float8/float8_linear.py matmul_with_hp_or_float8_args.forward: "
    "ctx.save_for_backward(input_hp, weight_hp_t) saves the high-precision input and "
    "weight, and backward casts them to float8 again; Float8Linear.forward casts only the "
    "input to the autocast type (float8_ops.py autocast_to_copy: no 16-bit weight copy)"
)
TORCHAO_FILTER = (
    "torchtitan torchtitan/float8.py Float8Converter.convert_to_float8_training: "
    'module_filter_fn=lambda mod, fqn: fqn != "output" (the head stays 16-bit)'
)
TE_LINEAR = (
    "TransformerEngine transformer_engine/pytorch/module/linear.py _Linear.forward: "
    "ctx.save_for_backward(saved_inputmat, saved_inputmat_t, weight, …, weight_t_fp8, …): "
    "the FP8 input (or its FP8 transpose) and the FP8 transposed weight, not the 16-bit input"
)
TE_META = (
    "TransformerEngine transformer_engine/common/recipe DelayedScaling(amax_history_len="
    "1024); module/base.py init_fp8_meta_tensors: per GEMM an fp32 amax history and scale "
    "and scale_inv for 3 forward and 2 backward tensors"
)

FP8_BYTES = 1  # torch.float8_e4m3fn and float8_e5m2: one byte per element
AMAX_HISTORY = 1024  # DelayedScaling.amax_history_len default
FORWARD_TENSORS, BACKWARD_TENSORS = 3, 2  # input, weight, output; grad output, grad input
# 4 B × (history × 5 + scale and scale_inv × 5)
META_BYTES = 4 * (AMAX_HISTORY * (FORWARD_TENSORS + BACKWARD_TENSORS) + 2 * 5)

# Linear inputs a stack's FP8 layers save (tables' tags); the MoE router stays in 16-bit
# (Megatron-LM TopKRouter computes its logits with its own matmul, not a te.Linear).
_FP8_INPUTS = ("linear:qkv", "linear:o", "linear:gate_up", "linear:down", "linear:up")


def mode(s: Scenario) -> Float8Training:
    """The FP8 stack the estimate follows: ``off`` wherever the key is not read (not a
    transformer's full fine-tuning on a CUDA GPU)."""
    reads = (
        s.mode is Mode.TRAINING
        and isinstance(s.model, Transformer)
        and s.finetune is Finetune.FULL
        and s.device is Device.CUDA
    )
    return s.float8_training if reads else Float8Training.OFF


def gathers_in_float8(s: Scenario) -> bool:
    """Whether FSDP2 all-gathers the linear weights in float8 (torchao's
    ``enable_fsdp_float8_all_gather``)."""
    return s.float8_all_gather and s.stack is Stack.FSDP2 and mode(s) is Float8Training.TORCHAO


def layer_linear_weights(t: Transformer) -> int:
    """Elements of the 2-D weights inside the layers, all but the norms: the
    ``nn.Linear`` weights the FP8 stacks convert (not the embedding, not the head).

    >>> from nnmem.scenario import parse
    >>> layer_linear_weights(parse({"model": "preset", "preset": "llama-3.1-8b"}).model)
    6979321856
    """
    return sum(p.elements for p in parameter_tensors(t) if _converted(p.name, p.shape))


def _converted(name: str, shape: tuple[int, ...]) -> bool:
    """Whether a parameter is the weight of a linear layer an FP8 stack converts: a 2-D
    weight inside the layers, not a norm's, not T5's relative bias, not the MoE router
    (Megatron-LM's TopKRouter multiplies by its own weight, not through a te.Linear)."""
    return (
        name.startswith(("layers.", "encoder.", "decoder."))
        and name.endswith(".weight")
        and len(shape) == 2
        and not any(w in name for w in ("norm", "relative_bias", "router"))
    )


def linear_layers(t: Transformer) -> int:
    """How many converted linear modules the layers hold (each has its own FP8 state)."""
    return sum(p.count for p in parameter_tensors(t) if _converted(p.name, p.shape))


def saved_rows(s: Scenario, rows: list[Row]) -> list[Row]:
    """A layer's saved tensors under the scenario's FP8 stack: Transformer Engine keeps
    each linear layer's input in FP8 (1 B per element) instead of 16-bit; torchao keeps
    the high-precision input (:data:`TORCHAO_LINEAR`), so its rows do not change."""
    if mode(s) is not Float8Training.TRANSFORMER_ENGINE:
        return rows
    out = [
        replace(r, what=f"{r.what}, in FP8", width="fp8") if r.tag in _FP8_INPUTS else r
        for r in rows
    ]
    tags = {r.tag for r in rows}
    if "linear:qkv" in tags and "linear:o" not in tags:
        # Under SDPA the o projection's input is the kernel's output, which SDPA's backward
        # keeps in 16-bit: the o projection's FP8 copy comes on top of it.
        out.append(
            Row(
                "input of o_proj in FP8, beside the 16-bit attention output",
                ("b", "s", "q"),
                "fp8",
                tag="linear:o",
            )
        )
    return out


def kept_layers_fraction(s: Scenario, layers: int) -> Fraction:
    """The share of the layers whose saved tensors wait for backward: none under full
    checkpointing, all but every n-th under layer SAC, all otherwise."""
    if s.checkpointing is Checkpointing.FULL:
        return Fraction(0)
    if s.checkpointing is Checkpointing.EVERY_N and layers:
        every = min(s.checkpoint_every, layers)
        return Fraction(layers - layers // every, layers)
    return Fraction(1)


def te_weight_copies(s: Scenario, t: Transformer, waiting: int | None = None) -> list[Term]:
    """Transformer Engine's FP8 transposed weights saved for backward, 1 B per linear
    parameter of every layer that keeps its tensors (:data:`TE_LINEAR`), per
    tensor-parallel shard; ``waiting``: the layer-forwards a pipeline rank keeps (None:
    every layer once)."""
    if mode(s) is not Float8Training.TRANSFORMER_ENGINE:
        return []
    layers = t.layers + t.encoder_layers
    share = kept_layers_fraction(s, layers)
    if waiting is not None:
        share *= Fraction(waiting, max(layers, 1))
    elements = layer_linear_weights(t) * share / s.tensor_parallel
    if not elements:
        return []
    return [
        product(
            "autocast_copies",
            "FP8 transposed copies of the layers' linear weights, saved for backward",
            [("P_linear", int(elements))],
            FP8_BYTES,
            TE_LINEAR,
        )
    ]


def te_meta(s: Scenario, t: Transformer, layers: int | None = None) -> list[Term]:
    """Each Transformer Engine linear layer's scaling state (:data:`TE_META`), over the
    ``layers`` a rank holds (None: all)."""
    if mode(s) is not Float8Training.TRANSFORMER_ENGINE:
        return []
    total_layers = max(t.layers + t.encoder_layers, 1)
    held = linear_layers(t) * (layers if layers is not None else total_layers) // total_layers
    return [
        product(
            "weights",
            "FP8 scaling state of each linear layer (amax history, scales)",
            [("n_linear", held)],
            META_BYTES,
            TE_META,
        )
    ]


TORCHAO_BACKWARD = (
    "torchao torchao/float8/float8_linear.py matmul_with_hp_or_float8_args.backward: "
    "grad_output cast to float8 for grad_input (with the weight, unless it is float8 "
    "already) and again for grad_weight with the input; eager keeps each until backward "
    "returns, a compiled block frees each after its GEMM (Inductor frees a buffer after "
    "its last use)"
)
TE_BACKWARD = (
    "TransformerEngine transformer_engine/pytorch/module/linear.py _Linear.backward: "
    "grad_output_preprocess casts grad_output to FP8 and its transpose (grad_output_c, "
    "grad_output_t); the input and weight were saved in FP8"
)
# Column-parallel projections split their output dimension over the tensor-parallel
# ranks, row-parallel ones (the attention output and the MLP's down) their input
# (Megatron-LM ColumnParallelLinear / RowParallelLinear; torchtitan parallelize_llama).
_ROW_PARALLEL = ("o_proj", "down_proj", "out_proj", "c_proj", "dense_4h_to_h", "wo", "fc2")


def backward_casts(s: Scenario, t: Transformer, tokens: int, compiled: bool) -> list[Term]:
    """The FP8 copies one linear layer's backward holds at once, for the layer where
    they are largest: ``tokens`` rows of input and output gradient, per tensor-parallel
    shard. torchao (:data:`TORCHAO_BACKWARD`): eager, 2·N·out + N·in (+ in·out for the
    weight's cast); compiled, the larger of N·out + in·out and N·out + N·in. Transformer
    Engine (:data:`TE_BACKWARD`): 2·N·out."""
    fp8 = mode(s)
    if fp8 is Float8Training.OFF:
        return []
    tp = s.tensor_parallel
    weight_cast = not gathers_in_float8(s)
    largest, shape = 0, (0, 0)
    for p in parameter_tensors(t):
        if not _converted(p.name, p.shape) or "experts" in p.name:
            continue
        out, n_in = p.shape
        if tp > 1:
            row = any(w in p.name for w in _ROW_PARALLEL)
            out, n_in = (out, n_in // tp) if row else (out // tp, n_in)
        w = out * n_in if weight_cast else 0
        if fp8 is Float8Training.TRANSFORMER_ENGINE:
            held = 2 * tokens * out
        elif compiled:
            held = max(tokens * out + w, tokens * out + tokens * n_in)
        else:
            held = 2 * tokens * out + tokens * n_in + w
        if held > largest:
            largest, shape = held, (out, n_in)
    if not largest:
        return []
    out, n_in = shape
    source = TE_BACKWARD if fp8 is Float8Training.TRANSFORMER_ENGINE else TORCHAO_BACKWARD
    return [
        Term(
            "temporaries",
            "FP8 casts of one linear layer's operands in backward",
            largest * FP8_BYTES,
            "FP8 grad_output, input (and weight) of the largest linear layer × 1 B",
            f"{largest:,} × 1 B (N = {tokens:,}, {n_in:,} → {out:,})",
            source,
        )
    ]


def head_copy_source(s: Scenario, autocast: str) -> str:
    """The source of the one 16-bit autocast copy left under an FP8 stack: the head's."""
    if mode(s) is Float8Training.TORCHAO:
        return f"{autocast}; {TORCHAO_LINEAR}; {TORCHAO_FILTER}"
    return f"{autocast}; {TE_LINEAR}"


def drops_autocast_copies(s: Scenario) -> bool:
    """Whether the layers' linear weights get no 16-bit autocast copy: both stacks cast
    them from their stored type straight to FP8."""
    return mode(s) is not Float8Training.OFF


def notes(s: Scenario) -> list[str]:
    """What the estimate says of the scenario's FP8 stack."""
    fp8 = mode(s)
    if fp8 is Float8Training.TORCHAO:
        return [
            "torchao float8: the linear layers run FP8 GEMMs from the stored weights; the "
            "weights, gradients and optimizer state stay in their types and each layer "
            "saves its 16-bit input for backward as before (the float8 casts are "
            "transient); no 16-bit weight copies under autocast; the head stays 16-bit."
        ]
    if fp8 is Float8Training.TRANSFORMER_ENGINE:
        return [
            "Transformer Engine FP8: each linear layer saves its input in FP8 (1 byte per "
            "value) and an FP8 transposed copy of its weight for backward; weights, "
            "gradients and optimizer state stay in their types."
        ]
    return []
