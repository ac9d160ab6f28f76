"""What every model's builder shares: the step's states, its phases and what it returns.

Each builder returns a :class:`Built`: the phases with the terms live at each phase's
peak, notes for the reader and the bytes saved for backward. Training steps share one
composition (:func:`training_phases`); what differs between a parameter count, a
transformer and a CNN is what each saves and holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from nnmem.optimizers import Trainable, optimizer_memory
from nnmem.result import Phase, phases_of
from nnmem.scenario import (
    LABELS,
    Precision,
    Scenario,
    Sharding,
    ZeroGrad,
)
from nnmem.terms import Term, product

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
    grads_in_forward: bool = False  # the last step's gradients live through the forward


def training_phases(step: Step) -> list[Phase]:
    """Forward, loss, backward and optimizer step from what the step holds.

    Gradients are freed after every optimizer step (``zero_grad(set_to_none=True)``, the
    default since PyTorch 2.0), so they exist only from backward to the step, unless
    gradients accumulate over several micro-batches.
    """
    states = [*step.weights, *step.optimizer_state]
    kept = step.accumulating or step.grads_in_forward
    held = [*states, *step.casts, *(step.gradients if kept else [])]
    held_back = [*states, *step.casts, *(step.gradients if step.accumulating else [])]
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
    # ZeRO shards over the data-parallel ranks: with tensor parallelism each rank already
    # holds 1/t of the model (applied by the caller), so the shard is 1/(N / t) of that.
    n = s.data_parallel if s.sharding is not Sharding.NONE else 1
    if n > 1:
        shard = Fraction(1, n)
        note = f"÷ {n} data-parallel GPUs"
        state = [t.scaled(shard, note) for t in state]
        step_terms = [t.scaled(shard, note) for t in step_terms]
        if s.sharding in (Sharding.ZERO2, Sharding.ZERO3):
            gradients = [t.scaled(shard, note) for t in gradients]
        if s.sharding is Sharding.ZERO3:
            weights = [t.scaled(shard, note) for t in weights]
        notes.append(
            f"{LABELS[s.sharding]} across {n} data-parallel GPUs ({ZERO}); figures are per GPU."
        )
    if s.offload_optimizer:
        state, step_terms = [], []
        notes.append(
            "Optimizer state and its step run on the CPU (ZeRO-Offload); the GPU "
            "keeps weights and gradients."
        )
    return weights, gradients, state, step_terms, notes
