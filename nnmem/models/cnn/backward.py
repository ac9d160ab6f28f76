"""Memory of the backward pass: a node-by-node simulation of PyTorch's autograd engine."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from nnmem.models.cnn.forward import (
    ENGINE,
    LABEL_BYTES,
    BackwardExtra,
    Term,
    _first_savers,
    _formula,
    _Forward,
    _Tensor,
    _training_walk,
    _Value,
)
from nnmem.models.cnn.language import CnnModel, CnnPrecision, Shape, TermKind, _dims
from nnmem.models.cnn.shapes import _precision, parameter_count


@dataclass
class _Grad:
    """A gradient tensor in flight and how many input buffers hold it."""

    nbytes: int
    refs: int = 1


@dataclass
class _Backward:
    """The running state of a simulated backward pass and its highest point."""

    saved_live: int
    params_done: int = 0
    in_flight: int = 0
    peak: int = 0
    peak_at: str = "the start of backward"
    peak_params: int = 0
    peak_saved: int = 0
    peak_in_flight: int = 0
    trace: list[tuple[str, int, int, int]] | None = None

    def check(self, at: str) -> None:
        if self.trace is not None:
            self.trace.append((at, self.saved_live, self.params_done, self.in_flight))
        total = self.saved_live + self.params_done + self.in_flight
        if total > self.peak:
            self.peak, self.peak_at = total, at
            self.peak_params, self.peak_saved = self.params_done, self.saved_live
            self.peak_in_flight = self.in_flight

    def release(self, grad: _Grad) -> None:
        grad.refs -= 1
        if grad.refs == 0:
            self.in_flight -= grad.nbytes


def _simulate_backward(walk: _Forward, batch: int, grad_width: int) -> _Backward:
    """The simulated backward pass at ``batch``, from the traced run at batches 1 and 2.

    Every live quantity at every point of the simulation is an affine function of the
    batch size (activations scale with it, parameter gradients do not), so two traced
    runs give all of them for any batch without running the simulation again.
    """
    state = _Backward(saved_live=0)
    for at, one, two in _trace(walk, grad_width):
        saved, params, flight = (a + (b - a) * (batch - 1) for a, b in zip(one, two, strict=True))
        total = saved + params + flight
        if total > state.peak:
            state.peak, state.peak_at = total, at
            state.peak_params, state.peak_saved, state.peak_in_flight = params, saved, flight
    return state


@lru_cache(maxsize=64)
def _trace(
    walk: _Forward, grad_width: int
) -> tuple[tuple[str, tuple[int, int, int], tuple[int, int, int]], ...]:
    one = _run_backward(walk, 1, grad_width)
    two = _run_backward(walk, 2, grad_width)
    assert one.trace is not None and two.trace is not None
    return tuple((a[0], a[1:], b[1:]) for a, b in zip(one.trace, two.trace, strict=True))


def _run_backward(walk: _Forward, batch: int, grad_width: int) -> _Backward:
    """Run backward node by node, as the autograd engine does (``ENGINE``).

    A node allocates its inputs' gradients and its parameters' (under autocast, 16-bit
    gradients of the weight copies); then its incoming gradient and saved tensors are
    released and its gradients delivered: one arriving for a tensor that already has one
    is summed into a new tensor. Under autocast ``ToCopyBackward`` nodes run next and make
    the fp32 ``.grad`` of the weight, then of the bias, each freeing its 16-bit one.
    Parameter gradients stay: the step began with none (``zero_grad(set_to_none=True)``).
    """
    refs: Counter[int] = Counter()
    sizes: dict[int, int] = {}
    for node in walk.nodes:
        for tensor in {id(t): t for t, _ in node.saved}.values():
            refs[id(tensor)] += 1
            sizes[id(tensor)] = tensor.nbytes(batch)
    refs[id(walk.image)] += 1  # the caller keeps its batch
    state = _Backward(saved_live=sum(sizes.values()), trace=[])
    state.check(state.peak_at)
    buffers: dict[int, _Grad] = {}
    for node in reversed(walk.nodes):
        at = f"backward of {node.label}"
        incoming = buffers.pop(id(node.output), None)
        made: list[tuple[_Value, _Grad]] = []
        for value in node.inputs:
            if node.passthrough and incoming is not None:
                incoming.refs += 1
                made.append((value, incoming))
            else:
                grad = _Grad(math.prod(value.shape) * value.storage.width * batch)
                state.in_flight += grad.nbytes
                made.append((value, grad))
        cast = sum(node.cast)
        state.params_done += (node.params - cast) * grad_width
        temporary = sum(t.nbytes(batch) for t in node.transient)
        state.in_flight += temporary + cast * 2
        state.check(at)
        state.in_flight -= temporary
        if incoming is not None:
            state.release(incoming)
        for key in {id(t) for t, _ in node.saved}:
            refs[key] -= 1
            if refs[key] == 0:
                state.saved_live -= sizes[key]
        for value, grad in made:
            old = buffers.get(id(value))
            if old is None:
                buffers[id(value)] = grad
                continue
            total = _Grad(grad.nbytes)
            state.in_flight += total.nbytes
            state.check(f"{at} (two gradients summed)")
            state.release(old)
            state.release(grad)
            buffers[id(value)] = total
        for part, size in zip(("weight", "bias"), node.cast, strict=False):
            if size:
                state.params_done += size * grad_width
                state.check(f"{at} (fp32 copy of the {part} gradient)")
                state.in_flight -= size * 2
    return state


def _labels(shape: Shape) -> int:
    """Class labels per sample: one, or one per pixel for a [classes, H, W] output."""
    return 1 if len(shape) == 1 else shape[1] * shape[2]


def backward_extra(
    model: CnnModel, batch: int, precision: CnnPrecision | str = CnnPrecision.FP32
) -> BackwardExtra:
    """Live memory at the backward peak beyond parameters, gradients, optimizer state and
    saved tensors, from a node-by-node simulation of backward (``ENGINE``).

    The terms: gradients in flight at the peak (the incoming activation gradient, the
    ones being made, 16-bit weight gradients under autocast), minus the parameter
    gradients not made yet and the saved tensors already freed, plus the batch the caller
    holds beyond what is saved (labels; the fp32 images under autocast). The result is
    often negative: for ResNet-50 the peak comes at the first blocks of backward, before
    most gradients exist.

    >>> from nnmem.models.cnn import builtin
    >>> extra = backward_extra(builtin("resnet50"), 32, "fp32")
    >>> extra.at
    'backward of layer4.2.relu'
    >>> [(t.key, t.bytes) for t in extra.terms]  # doctest: +NORMALIZE_WHITESPACE
    [('in_flight', 25690112), ('pending', -94032128), ('freed', -390148), ('batch', 256)]
    """
    walk = _training_walk(model, batch, precision)
    p = _precision(precision)
    state = _simulate_backward(walk, batch, p.weight_bytes)
    saved_total = sum(t.nbytes(batch) for t, _, _ in _first_savers(walk).values())
    grads_total = parameter_count(model) * p.weight_bytes
    labels = _labels(model.output_shape)
    held = [_Tensor("labels", (labels,), LABEL_BYTES)]
    if id(walk.image) not in _first_savers(walk):
        held.insert(0, walk.image)
    terms = (
        Term(
            "in_flight",
            "Gradients in flight at the peak",
            state.peak_in_flight,
            f"activation gradients and temporaries live during the {state.peak_at}",
            f"{state.peak_in_flight:,} B",
            ENGINE,
            TermKind.GRADIENT,
        ),
        Term(
            "pending",
            "Parameter gradients not made yet",
            state.peak_params - grads_total,
            "made later in backward, after the peak",
            f"{state.peak_params:,} B - {grads_total:,} B",
            ENGINE,
            TermKind.PENDING,
        ),
        Term(
            "freed",
            "Saved tensors already freed",
            state.peak_saved - saved_total,
            "released by the nodes that ran before the peak",
            f"{state.peak_saved:,} B - {saved_total:,} B",
            ENGINE,
            TermKind.FREED,
        ),
        Term(
            "batch",
            "Batch held by the caller, not saved",
            sum(t.nbytes(batch) for t in held),
            "; ".join(f"{t.label} {_dims(t.shape)}" for t in held),
            _formula(held, batch),
            ENGINE,
            TermKind.BATCH,
        ),
    )
    return BackwardExtra(
        bytes=sum(t.bytes for t in terms),
        peak_bytes=state.peak + terms[-1].bytes,
        at=state.peak_at,
        terms=terms,
    )
