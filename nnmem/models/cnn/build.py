"""The training step and the inference forward of a convolutional network.

:mod:`nnmem.models.cnn` knows what each layer saves and holds; this module lays that out as
the phases of a step, with the model states of :mod:`nnmem.models.step`.
"""

from __future__ import annotations

from nnmem.formats import bits
from nnmem.models import cnn
from nnmem.models.step import Built, gradients_held, model_states, param_bytes
from nnmem.optimizers import Trainable
from nnmem.result import phases_of
from nnmem.scenario import LABELS, Mode, Precision, Scenario
from nnmem.terms import Term, product

_KEY = {
    cnn.TermKind.INPUT: "activations",
    cnn.TermKind.ACTIVATION: "activations",
    cnn.TermKind.LOSS: "logits",
    cnn.TermKind.WEIGHT_COPY: "autocast_copies",
    cnn.TermKind.GRADIENT: "temporaries",
    cnn.TermKind.BATCH: "activations",
    cnn.TermKind.LIVE: "activations",
}


def _term(t: cnn.Term, key: str | None = None, label: str | None = None) -> Term:
    return Term(
        key or _KEY[t.kind],
        label or t.label,
        t.bytes,
        t.formula or t.label,
        t.substituted,
        t.source,
    )


def _cnn_precision(precision: Precision) -> cnn.CnnPrecision:
    if precision.is_amp:
        return cnn.CnnPrecision.AMP
    return (
        cnn.CnnPrecision.PURE16
        if precision in (Precision.BF16, Precision.FP16)
        else (cnn.CnnPrecision.FP32)
    )


def _model(s: Scenario) -> cnn.CnnModel:
    model = s.model
    assert isinstance(model, cnn.CnnModel)
    return model.with_image_size(s.image_size) if s.image_size else model


def build(s: Scenario) -> Built:
    """The phases of a CNN training step or inference forward."""
    model = _model(s)
    notes = [
        f"{model.name}: {cnn.parameter_count(model):,} parameters, input "
        f"{'×'.join(str(n) for n in model.input)}. cuDNN workspaces (algorithm-dependent) "
        "are not included."
    ]
    if s.mode is Mode.INFERENCE:
        fmt = s.precision.weight_format
        n = cnn.parameter_count(model)
        stored = product(
            "weights",
            f"{LABELS[s.precision]} weights",
            [("P", n)],
            bits(fmt, s.group_size) / 8,
            cnn.DERIVATIVES,
        )
        buffers = Term(
            "weights",
            "batch-norm running statistics",
            cnn.buffer_bytes(model, "pure16" if s.precision.compute_bytes == 2 else "fp32"),
            "2 × channels",
            "",
            cnn.DERIVATIVES,
        )
        working = cnn.inference_working_set(model, s.batch_size, s.precision.compute_bytes)
        terms = [stored, buffers, *(_term(t) for t in working.terms)]
        return Built(phases_of(("prefill", terms)), notes)

    p = _cnn_precision(s.precision)
    width = param_bytes(s.precision)
    tensors = [Trainable(shape, width) for shape in cnn.parameter_shapes(model)]
    st = model_states(s, tensors)
    weights, gradients, state, step_terms = st.weights, st.gradients, st.state, st.step
    notes += st.notes
    buffers = Term(
        "weights",
        "batch-norm running statistics",
        cnn.buffer_bytes(model, p),
        "2 × channels × 4 B + 8 B per norm",
        "",
        cnn.DERIVATIVES,
    )
    # A stack that computes in 16-bit weights of its own (DeepSpeed's bf16/fp16 engine,
    # FSDP2's MixedPrecisionPolicy; step.computes_in_16bit) enters no autocast: its
    # activations are 16-bit and it makes no weight copies, as in a pure 16-bit step.
    act = p
    if p is cnn.CnnPrecision.AMP and not st.autocast:
        act = cnn.CnnPrecision.PURE16
    saved = cnn.saved_activations(model, s.batch_size, act)
    saved_terms = [_term(t) for t in saved.terms if t.kind is not cnn.TermKind.WEIGHT_COPY]
    casts = [_term(t) for t in saved.terms if t.kind is cnn.TermKind.WEIGHT_COPY]
    extra = cnn.backward_extra(model, s.batch_size, act)

    # At the backward peak some parameter gradients exist and some saved tensors are gone:
    # the simulation gives both, and the activation gradients in flight on top. Its saved
    # tensors include autocast's weight copies, freed with the rest as backward passes
    # their layers, so at that peak the copies still held count with the saved tensors.
    pending = -sum(t.bytes for t in extra.terms if t.kind is cnn.TermKind.PENDING)
    freed = -sum(t.bytes for t in extra.terms if t.kind is cnn.TermKind.FREED)
    saved_all = sum(t.bytes for t in [*saved_terms, *casts])
    held = saved_all - freed
    # The simulation counts whole gradients; with ZeRO-2/3 each GPU keeps its shard of
    # every reduced gradient (Rajbhandari et al. 2020, ZeRO, arXiv 1910.02054 §5.2), so
    # the share made so far applies to the sharded total.
    grad_total = sum(t.bytes for t in gradients)
    grad_full = cnn.parameter_count(model) * width
    made = grad_total * (grad_full - pending) // grad_full if grad_full else 0
    at_peak = [
        Term(
            "activations",
            "saved tensors still held" + (" (with autocast's weight copies)" if casts else ""),
            held,
            "saved − already released",
            f"{saved_all:,} B − {freed:,} B",
            cnn.ENGINE,
        ),
        Term(
            "gradients",
            "parameter gradients made so far",
            made,
            "gradients of the layers already processed",
            f"{grad_total:,} B × {grad_full - pending:,} / {grad_full:,}",
            cnn.ENGINE,
        ),
        *(_term(t) for t in extra.terms if t.kind in (cnn.TermKind.GRADIENT, cnn.TermKind.BATCH)),
    ]
    states = [*weights, buffers, *state]
    in_forward, at_backward = gradients_held(s)  # where zero_grad runs, accumulation
    before = [*states, *(gradients if in_forward else []), *st.gathered]
    after = [*states, *(gradients if at_backward else []), *st.gathered]
    phases = phases_of(
        ("forward", [*before, *casts, *saved_terms]),
        ("backward", [*after, *at_peak, *st.backward]),
        ("optimizer_step", [*states, *gradients, *step_terms]),
    )
    if s.num_gpus > 1 and s.sharding.value == "none" and s.stack.value == "plain":
        notes.append(f"Data parallel over {s.num_gpus} GPUs: each holds everything above.")
    return Built(phases, notes, saved.activation_bytes, tuple(st.host), tuple(st.nvme))
