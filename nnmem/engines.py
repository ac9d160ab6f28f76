"""Per-model builders: from a scenario to the phases of its step.

Each builder returns the phases with the terms live at each phase's peak, notes for the
reader, component sizes no single phase shows whole, and the bytes saved for backward.
Training steps share one composition (:func:`training_phases`); what differs between a
parameter count, a transformer and a CNN is what each saves and holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from nnmem.estimate import Phase, phases_of, total
from nnmem.formats import bits
from nnmem.optimizers import Trainable, optimizer_memory
from nnmem.scenario import (
    LABELS,
    Checkpointing,
    GenericModel,
    Mode,
    Precision,
    Scenario,
    Sharding,
)
from nnmem.terms import Term, polynomial, product

Built = tuple[list[Phase], list[str], dict[str, int], int]

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
    accumulating: bool = False  # gradients stay between micro-batches


def training_phases(step: Step) -> list[Phase]:
    """Forward, loss, backward and optimizer step from what the step holds.

    Gradients are freed after every optimizer step (``zero_grad(set_to_none=True)``, the
    default since PyTorch 2.0), so they exist only from backward to the step, unless
    gradients accumulate over several micro-batches.
    """
    states = [*step.weights, *step.optimizer_state]
    held = [*states, *step.casts, *(step.gradients if step.accumulating else [])]
    return phases_of(
        ("forward", [*held, *step.saved, *step.forward_extra]),
        ("loss", [*held, *step.saved, *step.loss_saved, *step.loss_extra]),
        ("backward", [*held, *step.saved, *step.loss_saved, *step.backward_extra]),
        ("optimizer_step", [*states, *step.gradients, *step.optimizer_step]),
    )


def param_bytes(precision: Precision) -> int:
    """Bytes per trained weight (and gradient) under a training precision."""
    return 2 if precision in (Precision.BF16, Precision.FP16) else 4


def model_states(
    s: Scenario, tensors: Sequence[Trainable], frozen_bytes: int = 0
) -> tuple[list[Term], list[Term], list[Term], list[Term], list[str]]:
    """Weights, gradients, optimizer state and step temporaries, sharded as asked.

    ``tensors`` are the trainable tensors at their stored width; ``frozen_bytes`` are the
    bytes of weights that are not trained (a LoRA base).
    """
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
    opt = optimizer_memory(s.optimizer, s.optimizer_impl, tensors)
    state = [opt.state] if opt.state.bytes else []
    step_terms = [opt.step]
    n = s.num_gpus if s.sharding is not Sharding.NONE else 1
    if n > 1:
        shard = Fraction(1, n)
        note = f"÷ {n} GPUs"
        state = [t.scaled(shard, note) for t in state]
        step_terms = [t.scaled(shard, note) for t in step_terms]
        if s.sharding in (Sharding.ZERO2, Sharding.ZERO3):
            gradients = [t.scaled(shard, note) for t in gradients]
        if s.sharding is Sharding.ZERO3:
            weights = [t.scaled(shard, note) for t in weights]
        notes.append(f"{LABELS[s.sharding]} across {n} GPUs ({ZERO}); figures are per GPU.")
    if s.offload_optimizer:
        state, step_terms = [], []
        notes.append(
            "Optimizer state and its step run on the CPU (ZeRO-Offload); the GPU "
            "keeps weights and gradients."
        )
    return weights, gradients, state, step_terms, notes


# --- the generic model -----------------------------------------------------------------------


def generic_tensors(m: GenericModel, width: int) -> list[Trainable]:
    """A GPT-shaped tensor list for a bare parameter count: per layer the attention
    (4·h²) and MLP (8·h²) matrices, the rest as one embedding-like matrix."""
    h, layers = m.hidden_size, m.num_layers
    tensors = []
    in_layers = 12 * h * h * layers
    if in_layers <= m.params:
        tensors += [Trainable((h, h), width, 4 * layers), Trainable((4 * h, h), width, 2 * layers)]
        rest = m.params - in_layers
        if rest >= h:
            tensors.append(Trainable((rest // h, h), width))
        if rest % h:
            tensors.append(Trainable((rest % h,), width))
    else:
        tensors.append(Trainable((m.params,), width))
    return tensors


def build_generic(s: Scenario) -> Built:
    """A parameter count with width and depth: Korthikanti's per-layer activations."""
    m = s.model
    assert isinstance(m, GenericModel)
    notes: list[str] = []
    shape = {
        "hidden_size": f"hidden dimension {m.hidden_size:,}",
        "num_layers": f"{m.num_layers:,} layers",
    }
    if m.derived:
        notes.append(
            "Assumed "
            + " and ".join(shape[k] for k in m.derived)
            + " from the parameter count (a layer holds about 12·h² parameters; "
            "h ≈ 128·L); give the real values for exact activations."
        )
    sb = [("s", s.seq_len), ("b", s.batch_size)]
    if s.mode is Mode.INFERENCE:
        fmt = s.precision.weight_format
        weights = [
            product(
                "weights",
                f"{LABELS[s.precision]} weights",
                [("P", m.params)],
                bits(fmt, s.group_size) / 8,
                HF_ANATOMY,
            )
        ]
        width = s.precision.compute_bytes
        working = product(
            "activations",
            "one layer's working set: input, MLP up-projection and activation",
            [*sb, ("h", m.hidden_size)],
            9 * width,
            "Korthikanti et al. 2022 §4.1 MLP terms; without autograd each layer's tensors "
            "are freed before the next layer runs",
        )
        notes.append(
            "The parameter-count model has no KV cache or logits: describe the "
            "architecture (config.json or a catalog model) to include them."
        )
        return phases_of(("prefill", [*weights, working])), notes, {}, 0

    width = param_bytes(s.precision)
    tensors = generic_tensors(m, width)
    weights, gradients, state, step_terms, shard_notes = model_states(s, tensors)
    notes += shard_notes
    casts = []
    if s.precision.is_amp:
        casts = [
            product(
                "autocast_copies",
                "16-bit copies autocast makes of the weights",
                [("P", m.params)],
                2,
                HF_ANATOMY,
            )
        ]
    fp32 = s.precision is Precision.FP32
    layer_bytes = 66 if fp32 else 34  # fp32 doubles the 32 two-byte terms; masks stay 1 B
    if s.checkpointing is Checkpointing.FULL:
        saved = [
            product(
                "activations",
                "each layer's input, kept by checkpointing",
                [("L", m.num_layers), *sb, ("h", m.hidden_size)],
                4 if fp32 else 2,
                "Korthikanti et al. 2022 §5: full recomputation keeps 2·s·b·h per layer",
            )
        ]
        recompute = [
            product(
                "temporaries",
                "one layer recomputed in backward",
                [*sb, ("h", m.hidden_size)],
                layer_bytes,
                KORTHIKANTI,
            )
        ]
    else:
        saved = [
            product(
                "activations",
                "saved for backward by every layer",
                [("L", m.num_layers), *sb, ("h", m.hidden_size)],
                layer_bytes,
                KORTHIKANTI,
            )
        ]
        recompute = []
    step = Step(
        weights=weights,
        casts=casts,
        gradients=gradients,
        optimizer_state=state,
        optimizer_step=step_terms,
        saved=saved,
        backward_extra=recompute,
        accumulating=s.grad_accum_steps > 1,
    )
    notes.append(
        "The parameter-count model assumes a GPT-style layer (MLP width 4h, "
        "dropout) and memory-efficient attention, and has no logits term; describe "
        "the architecture for exact activations."
    )
    return training_phases(step), notes, {}, total(saved)


def builder(scenario: Scenario) -> Callable[[Scenario], Built]:
    """The builder for the scenario's kind of model."""
    if isinstance(scenario.model, GenericModel):
        return build_generic
    from nnmem.architecture import Transformer

    if isinstance(scenario.model, Transformer):
        from nnmem import transformer

        return transformer.build
    from nnmem import cnn_engine

    return cnn_engine.build


__all__ = ["Step", "builder", "model_states", "param_bytes", "polynomial", "training_phases"]
