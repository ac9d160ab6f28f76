"""Memory of the forward pass: what each layer allocates and keeps for backward, and the
no_grad peak."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from nnmem import terms
from nnmem.errors import NnmemError
from nnmem.models.cnn.language import (
    Activation,
    AdaptiveAvgPool2d,
    BatchNorm2d,
    CnnModel,
    CnnPrecision,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    LayerKind,
    Linear,
    Pool2d,
    Residual,
    Sequential,
    Shape,
    TermKind,
    _dims,
    _next_shape,
    _shown,
)
from nnmem.models.cnn.shapes import _check_batch, _precision, _walk_params

DERIVATIVES = (
    "pytorch/pytorch tools/autograd/derivatives.yaml (what each op saves for backward), "
    "checked by benchmarks/accuracy against torchvision's models"
)
INFERENCE = (
    "torchvision's forward code (torchvision/models/resnet.py, vgg.py): each intermediate "
    "is dropped when the next assignment replaces it; without autograd nothing is saved"
)
ENGINE = (
    "PyTorch's autograd engine (torch/csrc/autograd/engine.cpp, input_buffer.cpp): "
    "nodes run in reverse creation order; a node's saved tensors and incoming gradient "
    "are freed after it runs; two gradients for one tensor are summed into a new one"
)


# --- memory: what each layer allocates and keeps ------------------------------------------

INDEX_BYTES = 8  # max-pool indices are int64
MASK_BYTES = 1  # CUDA's native_dropout keeps a bool mask
STATS_BYTES = 4  # batch-norm save_mean / save_invstd stay in fp32 (the accumulation type)
LABEL_BYTES = 8  # int64 class labels


@dataclass(eq=False)
class _Tensor:
    """One storage: elements per sample (or in all, when not ``batched``), bytes each."""

    label: str
    shape: Shape
    width: int
    batched: bool = True
    kind: TermKind = TermKind.ACTIVATION

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def nbytes(self, batch: int) -> int:
        return (batch if self.batched else 1) * self.count * self.width


@dataclass(eq=False)
class _Value:
    """A tensor the forward passes on; views and in-place results share a storage."""

    shape: Shape
    storage: _Tensor
    requires_grad: bool


# A saved storage and why it is kept ("layer1.0.bn1 input").
_Saved = tuple[_Tensor, str]


@dataclass(eq=False)
class _Node:
    """One autograd node: what it saves and which gradients it makes in backward."""

    label: str
    top: int  # index of the top-level layer it belongs to
    output: _Value
    inputs: list[_Value]  # the inputs that need a gradient
    saved: list[_Saved]
    passthrough: bool = False  # the gradient goes on unchanged (add, view)
    params: int = 0
    cast: tuple[int, ...] = ()  # weight and bias sizes autocast copied to 16-bit
    transient: list[_Tensor] = field(default_factory=list)


@dataclass(eq=False)
class _Op:
    """One forward op without autograd: what it reads, allocates and drops at once."""

    label: str
    reads: list[_Tensor]
    output: _Tensor | None
    transient: list[_Tensor] = field(default_factory=list)


class _Forward:
    """Walks the layers once, recording autograd nodes (training) and ops (inference).

    ``training`` runs batch norm and dropout in training mode with autograd on, then the
    cross-entropy loss; otherwise it is a ``torch.no_grad()`` forward in eval mode.
    ``autocast`` casts the inputs and weights of convolutions and linear layers to 16-bit.
    """

    def __init__(self, model: CnnModel, width: int, training: bool, autocast: bool) -> None:
        self.training = training
        self.autocast = autocast
        self.nodes: list[_Node] = []
        self.ops: list[_Op] = []
        self.top = 0
        self.image = _Tensor("input", model.input, width, kind=TermKind.INPUT)
        value = _Value(model.input, self.image, False)
        for index, layer in enumerate(model.layers):
            self.top = index
            value = self.layer(layer, value, layer.name or f"layers[{index}]")
        self.output = value
        self.ops.append(_Op("the caller's input", [self.image], None))
        if training:
            self.top = len(model.layers)
            self.loss(value)

    def node(
        self, label: str, y: _Value, inputs: Sequence[_Value], saved: Sequence[_Saved], **kw: Any
    ) -> None:
        """Record an autograd node, if autograd makes one: some input or weight needs grad."""
        grads = [v for v in inputs if v.requires_grad]
        if self.training and (grads or kw.get("params")):
            self.nodes.append(_Node(label, self.top, y, grads, list(saved), **kw))

    def new(self, label: str, shape: Shape, width: int, requires_grad: bool) -> _Value:
        return _Value(shape, _Tensor(label, shape, width), requires_grad)

    def layers(self, layers: Iterable[Layer], x: _Value, prefix: str, part: str) -> _Value:
        for index, layer in enumerate(layers):
            x = self.layer(layer, x, layer.name or f"{prefix}.{part}[{index}]")
        return x

    def layer(self, layer: Layer, x: _Value, label: str) -> _Value:
        grad = self.training and x.requires_grad
        width = x.storage.width
        if isinstance(layer, Conv2d | Linear):
            return self.weighted(layer, x, label)
        if isinstance(layer, BatchNorm2d):
            params = 2 * x.shape[0] if layer.affine else 0
            y = self.new(f"{label} output", x.shape, width, grad or (self.training and params > 0))
            stats = _Tensor(
                f"{label} save_mean, save_invstd", (2, x.shape[0]), STATS_BYTES, batched=False
            )
            saved = [(x.storage, f"{label} input"), (stats, stats.label)]
            self.node(label, y, [x], saved, params=params)
            self.ops.append(_Op(label, [x.storage], y.storage))
            return y
        if isinstance(layer, Activation):
            if layer.inplace:  # relu_: the output is the input's storage
                y = _Value(x.shape, x.storage, grad)
                self.node(label, y, [x], [(x.storage, f"{label} output")])
                self.ops.append(_Op(label, [x.storage], None))
                return y
            y = self.new(f"{label} output", x.shape, width, grad)
            # ReLU's backward reads its result; GELU's and SiLU's read their input.
            if layer.function is LayerKind.RELU:
                self.node(label, y, [x], [(y.storage, f"{label} output")])
            else:
                self.node(label, y, [x], [(x.storage, f"{label} input")])
            self.ops.append(_Op(label, [x.storage], y.storage))
            return y
        if isinstance(layer, Pool2d | AdaptiveAvgPool2d):
            return self.pool(layer, x, label)
        if isinstance(layer, Flatten):
            y = _Value(_next_shape(layer, x.shape), x.storage, grad)
            self.node(label, y, [x], [], passthrough=True)
            return y
        if isinstance(layer, Dropout):
            if not self.training or layer.p == 0:
                return x  # eval mode, or p = 0: the input itself
            y = self.new(f"{label} output", x.shape, width, grad)
            mask = _Tensor(f"{label} mask", x.shape, MASK_BYTES)
            self.node(label, y, [x], [(mask, f"{label} mask (bool)")])
            return y
        if isinstance(layer, Sequential):
            y = self.layers(layer.layers, x, label, "layers")
            # The caller still references the input until the group returns.
            self.ops.append(_Op(f"end of {label}", [x.storage], None))
            return y
        return self.residual(layer, x, label)

    def pool(self, layer: Pool2d | AdaptiveAvgPool2d, x: _Value, label: str) -> _Value:
        shape = _next_shape(layer, x.shape)
        y = self.new(f"{label} output", shape, x.storage.width, self.training and x.requires_grad)
        saved: list[_Saved] = [(x.storage, f"{label} input")]
        transient: list[_Tensor] = []
        if isinstance(layer, AdaptiveAvgPool2d) and layer.output == (1, 1):
            saved = []  # a 1×1 output is computed as a mean over H and W, which saves nothing
        if layer.kind is LayerKind.MAXPOOL2D:
            indices = _Tensor(f"{label} indices", shape, INDEX_BYTES)
            saved.append((indices, f"{label} indices (int64)"))
            # Without autograd CUDA still runs max_pool2d_with_indices and drops the indices.
            transient.append(indices)
        self.node(label, y, [x], saved)
        self.ops.append(_Op(label, [x.storage], y.storage, transient))
        return y

    def weighted(self, layer: Conv2d | Linear, x: _Value, label: str) -> _Value:
        """A convolution or linear layer: it saves its input and its weight."""
        counts: Counter[str] = Counter()
        _walk_params([layer], x.shape, counts)
        params = sum(counts.values())
        outs = layer.out_channels if isinstance(layer, Conv2d) else layer.out_features
        bias = outs if layer.bias else 0
        saved: list[_Saved] = [(x.storage, f"{label} input")]
        width = x.storage.width
        if self.autocast:
            width = 2
            if x.storage.width != 2:  # autocast casts the input; the copy is what is saved
                copy = _Tensor(f"{label} input (16-bit copy)", x.shape, 2)
                saved = [(copy, copy.label)]
            weight = _Tensor(
                f"{label} weight", (params - bias,), 2, batched=False, kind=TermKind.WEIGHT_COPY
            )
            saved.append((weight, f"{label} weight (16-bit copy)"))
        y = self.new(f"{label} output", _next_shape(layer, x.shape), width, self.training)
        cast = (params - bias, bias) if self.autocast else ()
        self.node(label, y, [x], saved, params=params, cast=cast)
        self.ops.append(_Op(label, [x.storage], y.storage))
        return y

    def residual(self, layer: Residual, x: _Value, label: str) -> _Value:
        body = self.layers(layer.body, x, label, "body")
        short = self.layers(layer.shortcut, x, label, "shortcut") if layer.shortcut else x
        # out += identity: the sum is written into the body's output; add saves nothing.
        storage = body.storage
        if storage is x.storage:  # a body of views only: the sum needs its own storage
            storage = _Tensor(f"{label} sum", body.shape, body.storage.width)
        y = _Value(body.shape, storage, body.requires_grad or short.requires_grad)
        self.node(f"{label} add", y, [body, short], [], passthrough=True)
        new = None if storage is body.storage else storage
        self.ops.append(_Op(f"{label} add", [body.storage, short.storage], new))
        return y

    def loss(self, logits: _Value) -> None:
        """Cross-entropy: log-softmax (fp32 under autocast) saves its output, nll_loss a scalar."""
        width = 2 if logits.storage.width == 2 and not self.autocast else 4
        log_softmax = _Tensor("loss log-softmax", logits.shape, width, kind=TermKind.LOSS)
        total_weight = _Tensor("loss total_weight", (1,), width, batched=False, kind=TermKind.LOSS)
        scalar = _Value((1,), total_weight, True)
        saved = [
            (log_softmax, "cross-entropy log-softmax"),
            (total_weight, "nll_loss total_weight"),
        ]
        # nll_loss_backward makes one gradient of the logits' size before log-softmax's.
        first = _Tensor("nll_loss gradient", logits.shape, width)
        self.node("loss", scalar, [logits], saved, transient=[first])


# --- memory: results ----------------------------------------------------------------------


@dataclass(frozen=True)
class Term(terms.Term):
    """An engine term that also says what it counts (``kind``).

    ``formula`` names the tensors and their shapes; ``substituted`` is batch × elements ×
    bytes with this case's numbers in it (``32 × 802,816 × 4 B``).
    """

    kind: TermKind = TermKind.ACTIVATION

    def to_dict(self) -> dict[str, Any]:
        """The term as JSON-ready data."""
        return {
            "key": self.key,
            "label": self.label,
            "bytes": self.bytes,
            "formula": self.formula,
            "substituted": self.substituted,
            "kind": self.kind.value,
            "source": self.source,
        }


@dataclass(frozen=True)
class SavedActivations:
    """What autograd keeps for backward after the forward and the loss, term by term."""

    batch: int
    precision: CnnPrecision
    terms: tuple[Term, ...]

    @property
    def total_bytes(self) -> int:
        """Everything saved: the input batch, activations, the loss, weight copies."""
        return sum(t.bytes for t in self.terms)

    @property
    def activation_bytes(self) -> int:
        """Saved tensors made by the forward and the loss (not the batch, not weights)."""
        return sum(t.bytes for t in self.terms if t.kind in (TermKind.ACTIVATION, TermKind.LOSS))

    @property
    def input_bytes(self) -> int:
        """The input batch itself, when a layer keeps it (fp32 and pure16)."""
        return sum(t.bytes for t in self.terms if t.kind is TermKind.INPUT)

    @property
    def weight_copy_bytes(self) -> int:
        """Autocast's 16-bit weight copies, kept until each layer's backward."""
        return sum(t.bytes for t in self.terms if t.kind is TermKind.WEIGHT_COPY)

    def term(self, key: str) -> Term:
        """The term called ``key``."""
        for t in self.terms:
            if t.key == key:
                return t
        raise KeyError(key)


@dataclass(frozen=True)
class BackwardExtra:
    """The backward peak beyond parameters, gradients, optimizer state and saved tensors.

    ``peak_bytes`` is what is live at the highest point of backward, beyond the weights,
    buffers and optimizer state; ``bytes`` (which may be negative) is that peak minus all
    gradients and all saved tensors, so that weights + buffers + optimizer state +
    gradients + saved + ``bytes`` is the training step's peak, when the peak falls in
    backward. (A foreach optimizer step adds temporaries of about the parameters' size,
    which can exceed it for a large model at a small batch: VGG-16 at batch 4.)
    """

    bytes: int
    peak_bytes: int
    at: str
    terms: tuple[Term, ...]


@dataclass(frozen=True)
class WorkingSet:
    """The highest live activation memory of a ``torch.no_grad()`` forward.

    ``terms`` are the tensors alive at that moment, the input batch included.
    """

    bytes: int
    at: str
    terms: tuple[Term, ...]

    @property
    def input_bytes(self) -> int:
        """The input batch, which the caller holds throughout."""
        return sum(t.bytes for t in self.terms if t.kind is TermKind.INPUT)


def _formula(tensors: Sequence[_Tensor], batch: int) -> str:
    """``batch × elements × bytes`` for each element size, with the numbers in it."""
    groups: dict[tuple[bool, int], list[int]] = {}
    for t in tensors:
        groups.setdefault((t.batched, t.width), []).append(t.count)
    parts = []
    for (batched, width), counts in groups.items():
        inner = f"{sum(counts):,}"
        if 1 < len(counts) <= 4:
            inner = "(" + " + ".join(f"{c:,}" for c in counts) + ")"
        parts.append(f"{batch:,} × {inner} × {width} B" if batched else f"{inner} × {width} B")
    return " + ".join(parts)


def _detail(saved: Sequence[_Saved]) -> str:
    return "; ".join(f"{why} {_dims(t.shape)}" for t, why in saved)


def _layer_label(model: CnnModel, index: int) -> tuple[str, str]:
    layer = model.layers[index]
    return f"layers[{index}]", f"{layer.name or f'layers[{index}]'} ({layer.kind.value})"


def _activation_width(precision: CnnPrecision) -> int:
    return 2 if precision is CnnPrecision.PURE16 else 4


def _training_walk(model: CnnModel, batch: int, precision: CnnPrecision | str) -> _Forward:
    _check_batch(batch)
    p = _precision(precision)
    return _walk(model, _activation_width(p), True, p is CnnPrecision.AMP)


@lru_cache(maxsize=32)
def _walk(model: CnnModel, width: int, training: bool, autocast: bool) -> _Forward:
    # The walk does not depend on the batch, so solvers that try many batch sizes reuse it.
    return _Forward(model, width, training=training, autocast=autocast)


@lru_cache(maxsize=64)
def _first_savers(walk: _Forward) -> dict[int, tuple[_Tensor, str, int]]:
    """Each saved storage once, with the first node that keeps it."""
    first: dict[int, tuple[_Tensor, str, int]] = {}
    for node in walk.nodes:
        for tensor, why in node.saved:
            first.setdefault(id(tensor), (tensor, why, node.top))
    return first


def saved_activations(
    model: CnnModel, batch: int, precision: CnnPrecision | str = CnnPrecision.FP32
) -> SavedActivations:
    """What autograd keeps for backward, by top-level layer, for one training step.

    Per op (``tools/autograd/derivatives.yaml``): a convolution and a linear layer save
    their input (under autocast a 16-bit one, copied if it was fp32) and, under autocast,
    the 16-bit copy of their weight; batch norm saves its input and two per-channel fp32
    statistics; ReLU its output (in place: the input's storage); GELU and SiLU their input;
    max-pool its input and int64 indices of its output's size; average pools their input (an
    adaptive 1×1 pool is a mean and saves nothing); dropout a bool mask; flatten and the
    residual add nothing. A storage kept by several nodes counts once, in the term of the
    first. The cross-entropy loss saves its log-softmax (fp32 under autocast) and a scalar.

    ResNet-50 in fp32 keeps 20,925,440 activation values per sample, 200,704 int64
    indices and 4,000 loss bytes, and 212,480 bytes of batch-norm statistics and a
    4-byte scalar in all (``resnet50.train.fp32.sgd-momentum.conv.b32.img224`` in
    ``benchmarks/accuracy/measured.json`` saves exactly this):

    >>> from nnmem.models.cnn import builtin
    >>> saved = saved_activations(builtin("resnet50"), 32, "fp32")
    >>> saved.activation_bytes, saved.input_bytes
    (2730177028, 19267584)
    >>> saved.term("layers[1]").substituted, saved.term("layers[1]").formula
    ('32 × 802,816 × 4 B + 128 × 4 B', 'bn1 input 64×112×112; bn1 save_mean, save_invstd 2×64')
    """
    walk = _training_walk(model, batch, precision)
    groups: dict[tuple[TermKind, int], list[_Saved]] = {}
    for tensor, why, top in _first_savers(walk).values():
        kind = tensor.kind
        groups.setdefault((kind, top if kind is TermKind.ACTIVATION else -1), []).append(
            (tensor, why)
        )
    order = [TermKind.INPUT, TermKind.ACTIVATION, TermKind.LOSS, TermKind.WEIGHT_COPY]
    terms = []
    for kind, top in sorted(groups, key=lambda k: (order.index(k[0]), k[1])):
        saved = groups[kind, top]
        tensors = [t for t, _ in saved]
        key, label = {
            TermKind.INPUT: ("input", "Input batch (kept by the first layer)"),
            TermKind.LOSS: ("loss", "Cross-entropy loss"),
            TermKind.WEIGHT_COPY: ("weight_copies", "Autocast 16-bit weight copies"),
        }.get(kind) or _layer_label(model, top)
        terms.append(
            Term(
                key,
                label,
                sum(t.nbytes(batch) for t in tensors),
                _detail(saved),
                _formula(tensors, batch),
                DERIVATIVES,
                kind,
            )
        )
    return SavedActivations(batch, _precision(precision), tuple(terms))


def inference_working_set(model: CnnModel, batch: int, dtype_bytes: int) -> WorkingSet:
    """The peak of live activations in an eval-mode ``torch.no_grad()`` forward.

    Each op's input lives until its last reader has run, as torchvision's forward code
    drops each intermediate (``out = self.bn1(out)``); a residual block keeps its input
    for the shortcut, a ``sequential`` group keeps its input until it returns (the caller
    still references it), and the caller keeps the input batch. Max-pool makes int64
    indices and drops them at once. Weights and the CUDA context are not included.

    ResNet-50 in fp32 peaks at the first block's downsample: its input (64×56×56), the
    body's output, the shortcut convolution's output and its batch norm's, all 256×56×56,
    plus the 3×224×224 image; 2,759,680 values per sample:

    >>> from nnmem.models.cnn import builtin
    >>> ws = inference_working_set(builtin("resnet50"), 32, 4)
    >>> ws.bytes, ws.at
    (353239040, 'layer1.0.downsample.1')
    """
    _check_batch(batch)
    if dtype_bytes not in (1, 2, 4, 8):
        raise NnmemError.single(
            "dtype_bytes", f"Bytes per activation must be 1, 2, 4 or 8 (got {_shown(dtype_bytes)})."
        )
    walk = _walk(model, dtype_bytes, False, False)
    last: dict[int, int] = {}
    for index, op in enumerate(walk.ops):
        for tensor in op.reads:
            last[id(tensor)] = index
    live: dict[int, _Tensor] = {id(walk.image): walk.image}
    best, at, at_peak = -1, "", list(live.values())
    for index, op in enumerate(walk.ops):
        if op.output is not None:
            live[id(op.output)] = op.output
        total = sum(t.nbytes(batch) for t in (*live.values(), *op.transient))
        if total > best:
            best, at, at_peak = total, op.label, [*live.values(), *op.transient]
        for tensor in op.reads:
            if last[id(tensor)] == index:
                live.pop(id(tensor), None)
    terms = tuple(
        Term(
            "input" if t is walk.image else f"live[{n}]",
            t.label,
            t.nbytes(batch),
            _dims(t.shape),
            _formula([t], batch),
            INFERENCE,
            TermKind.INPUT if t is walk.image else TermKind.LIVE,
        )
        for n, t in enumerate(at_peak)
    )
    return WorkingSet(best, at, terms)
