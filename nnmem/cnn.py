"""Convolutional networks: a layer list, its shapes, its parameters and its memory.

A network is a JSON object (the ``cnn`` key of a scenario): the input ``[channels,
height, width]`` of one sample and the layers in order, as ``torch.nn.Sequential`` lists
its modules. A ResNet stem and one bottleneck::

    {"input": [3, 224, 224],
     "layers": [
       {"type": "conv2d", "out_channels": 64, "kernel": 7, "stride": 2, "padding": 3,
        "bias": false},
       {"type": "batchnorm2d"}, {"type": "relu"},
       {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
       {"type": "residual",
        "body": [{"type": "conv2d", "out_channels": 64, "kernel": 1, "bias": false},
                 {"type": "batchnorm2d"}, {"type": "relu"},
                 {"type": "conv2d", "out_channels": 64, "kernel": 3, "padding": 1,
                  "bias": false},
                 {"type": "batchnorm2d"}, {"type": "relu"},
                 {"type": "conv2d", "out_channels": 256, "kernel": 1, "bias": false},
                 {"type": "batchnorm2d"}],
        "shortcut": [{"type": "conv2d", "out_channels": 256, "kernel": 1, "bias": false},
                     {"type": "batchnorm2d"}]},
       {"type": "relu"},
       {"type": "adaptive_avgpool2d", "output": 1}, {"type": "flatten"},
       {"type": "linear", "out_features": 1000}]}

======================  ===================================================  ==============
``type``                keys (default)                                       PyTorch
======================  ===================================================  ==============
``conv2d``              ``out_channels``, ``kernel``, ``stride`` (1),        ``nn.Conv2d``
                        ``padding`` (0), ``dilation`` (1), ``groups`` (1),
                        ``bias`` (true)
``batchnorm2d``         ``affine`` (true)                                    ``nn.BatchNorm2d``
``relu``                ``inplace`` (true, as torchvision builds it)         ``nn.ReLU``
``gelu``, ``silu``      none (out of place)                                  ``nn.GELU``/``SiLU``
``maxpool2d``           ``kernel``, ``stride`` (the kernel), ``padding``     ``nn.MaxPool2d``
                        (0), ``dilation`` (1), ``ceil_mode`` (false)
``avgpool2d``           ``kernel``, ``stride`` (the kernel), ``padding``     ``nn.AvgPool2d``
                        (0), ``ceil_mode`` (false)
``adaptive_avgpool2d``  ``output``                                           ``nn.Adaptive…``
``flatten``             none: ``[C, H, W]`` becomes ``[C·H·W]``              ``torch.flatten``
``linear``              ``out_features``, ``bias`` (true); needs a flat      ``nn.Linear``
                        input
``dropout``             ``p`` (0.5)                                          ``nn.Dropout``
``residual``            ``body``, ``shortcut`` (``[]``: the identity)        ``out += x``
``sequential``          ``layers``                                           ``nn.Sequential``
======================  ===================================================  ==============

``kernel``, ``stride``, ``padding``, ``dilation`` and ``output`` take a whole number or
a ``[height, width]`` pair. Any layer may carry a ``name`` (used in explanations). A
``residual`` layer adds its shortcut's output to its body's, in place, like torchvision's
``out += identity``; the activation after the add (torchvision's ``BasicBlock`` and
``Bottleneck`` end in ``relu(out)``) is the next layer of the list, so networks without
one (pre-activation ResNets) are written as easily. A ``sequential`` only groups layers
(torchvision's ``layer1`` … ``layer4``): its input stays referenced until it returns,
which matters for inference.

Memory follows what PyTorch keeps, tensor by tensor (pytorch/pytorch
``tools/autograd/derivatives.yaml``), for a training step in
``fp32``, ``amp`` (fp32 weights, 16-bit autocast) or ``pure16``:

- :func:`parameter_count`, :func:`parameter_breakdown` and :func:`buffer_bytes` (batch
  norm's running statistics);
- :func:`saved_activations`: what autograd keeps for backward, by top-level layer;
- :func:`backward_extra`: the backward peak beyond weights, gradients, optimizer state
  and saved tensors, from a node-by-node simulation of the autograd engine;
- :func:`inference_working_set`: the peak of a ``torch.no_grad()`` forward.

Where CUDA and the CPU differ the model follows CUDA: dropout keeps a bool mask (the CPU
keeps the scaled noise in the activations' dtype) and batch norm keeps its per-channel
statistics in fp32 (the CPU, under autocast or in bf16, in bf16). Apart from these two,
the saved tensors and the backward and ``no_grad`` peaks agree within 8 bytes (the loss's
scalars) with live-tensor traces of PyTorch 2.13 (``benchmarks/accuracy``) for ResNet-18
and -50 and VGG-11 and -16, in fp32, bf16 autocast and pure bf16. Not included: cuDNN
workspaces and memory that kernels allocate for themselves.

ReLU in place or not keeps the same tensors for backward. transformers' ResNet
(``ResNetConvLayer``) uses a non-in-place ReLU and keeps each conv-norm-activation input
referenced until the group returns: its training memory is torchvision's, its ``no_grad``
peak one 64×56×56 map higher for ResNet-50.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, ClassVar

from nnmem.errors import NnmemError, Problem

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


class LayerKind(StrEnum):
    """The ``type`` of a layer in the JSON layer list."""

    CONV2D = "conv2d"
    BATCHNORM2D = "batchnorm2d"
    RELU = "relu"
    GELU = "gelu"
    SILU = "silu"
    MAXPOOL2D = "maxpool2d"
    AVGPOOL2D = "avgpool2d"
    ADAPTIVE_AVGPOOL2D = "adaptive_avgpool2d"
    FLATTEN = "flatten"
    LINEAR = "linear"
    DROPOUT = "dropout"
    RESIDUAL = "residual"
    SEQUENTIAL = "sequential"


class CnnPrecision(StrEnum):
    """How a CNN trains: ``fp32``; ``amp`` (fp32 weights, fp16/bf16 autocast); ``pure16``."""

    FP32 = "fp32"
    AMP = "amp"
    PURE16 = "pure16"

    @classmethod
    def _missing_(cls, value: object) -> CnnPrecision | None:
        # The names the accuracy suite and the scenario schema use for the same regimes.
        aliases = {
            "amp_bf16": cls.AMP,
            "amp_fp16": cls.AMP,
            "bf16": cls.PURE16,
            "fp16": cls.PURE16,
        }
        return aliases.get(str(value).replace("-", "_"))

    @property
    def weight_bytes(self) -> int:
        """Bytes per stored parameter (and per gradient)."""
        return 2 if self is CnnPrecision.PURE16 else 4


class TermKind(StrEnum):
    """What a term of a memory breakdown counts."""

    INPUT = "input"  # the input batch, kept by the first layer that needs it
    ACTIVATION = "activation"  # tensors saved for backward (16-bit copies included)
    LOSS = "loss"  # what the cross-entropy loss saves
    WEIGHT_COPY = "weight_copy"  # autocast's 16-bit weight copies, saved for backward
    GRADIENT = "gradient"  # activation gradients and temporaries in flight
    PENDING = "pending"  # parameter gradients not yet made (subtracted)
    FREED = "freed"  # saved tensors already released (subtracted)
    BATCH = "batch"  # input and labels that the caller holds
    LIVE = "live"  # a tensor alive at the inference peak


Pair = tuple[int, int]
Shape = tuple[int, ...]  # (C, H, W) for a feature map, (F,) once flattened


# --- layers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv2d:
    """``nn.Conv2d``: the input channels come from the shape before it."""

    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = True
    name: str = ""

    kind: ClassVar[LayerKind] = LayerKind.CONV2D


@dataclass(frozen=True)
class BatchNorm2d:
    """``nn.BatchNorm2d``: weight and bias (``affine``), running mean and variance."""

    affine: bool = True
    name: str = ""

    kind: ClassVar[LayerKind] = LayerKind.BATCHNORM2D


@dataclass(frozen=True)
class Activation:
    """ReLU (in place or not), GELU or SiLU."""

    function: LayerKind
    inplace: bool = False
    name: str = ""

    @property
    def kind(self) -> LayerKind:
        """The layer's JSON type."""
        return self.function


@dataclass(frozen=True)
class Pool2d:
    """``nn.MaxPool2d`` or ``nn.AvgPool2d`` (which has no dilation)."""

    function: LayerKind
    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False
    name: str = ""

    @property
    def kind(self) -> LayerKind:
        """The layer's JSON type."""
        return self.function


@dataclass(frozen=True)
class AdaptiveAvgPool2d:
    """``nn.AdaptiveAvgPool2d``: any input size to ``output``."""

    output: Pair
    name: str = ""

    kind: ClassVar[LayerKind] = LayerKind.ADAPTIVE_AVGPOOL2D


@dataclass(frozen=True)
class Flatten:
    """``torch.flatten(x, 1)``: a view, no new memory."""

    name: str = ""

    kind: ClassVar[LayerKind] = LayerKind.FLATTEN


@dataclass(frozen=True)
class Linear:
    """``nn.Linear`` on a flat input."""

    out_features: int
    bias: bool = True
    name: str = ""

    kind: ClassVar[LayerKind] = LayerKind.LINEAR


@dataclass(frozen=True)
class Dropout:
    """``nn.Dropout(p)``: in training it keeps a one-byte mask per element."""

    p: float = 0.5
    name: str = ""

    kind: ClassVar[LayerKind] = LayerKind.DROPOUT


@dataclass(frozen=True)
class Residual:
    """``body(x) + shortcut(x)``, added in place into the body's output.

    An empty ``shortcut`` is the identity. The activation after the add is the next layer.
    """

    body: tuple[Layer, ...]
    shortcut: tuple[Layer, ...] = ()
    name: str = ""

    kind: ClassVar[LayerKind] = LayerKind.RESIDUAL


@dataclass(frozen=True)
class Sequential:
    """A named group of layers (``nn.Sequential``); its input lives until it returns."""

    layers: tuple[Layer, ...]
    name: str = ""

    kind: ClassVar[LayerKind] = LayerKind.SEQUENTIAL


Layer = (
    Conv2d
    | BatchNorm2d
    | Activation
    | Pool2d
    | AdaptiveAvgPool2d
    | Flatten
    | Linear
    | Dropout
    | Residual
    | Sequential
)


@dataclass(frozen=True)
class CnnModel:
    """A convolutional network: one sample's input shape and its layers.

    Construction checks every value and shape, as :func:`from_spec` does.

    >>> tiny = CnnModel((3, 32, 32), (Conv2d(8, (3, 3), padding=(1, 1)), Flatten(),
    ...                                Linear(10)), name="tiny")
    >>> tiny.output_shape, parameter_count(tiny)
    ((10,), 82154)
    """

    input: tuple[int, int, int]
    layers: tuple[Layer, ...]
    name: str = "custom"
    shapes: tuple[Shape, ...] = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        reader = _Reader("cnn")
        reader.model(self.to_dict())
        if reader.problems:
            raise NnmemError(reader.problems)
        object.__setattr__(self, "shapes", tuple(reader.top_shapes))
        # Hashed once: the per-model caches look the model up many times per estimate.
        object.__setattr__(self, "_hash", hash((self.input, self.layers, self.name)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def output_shape(self) -> Shape:
        """The shape of one sample's output (the logits for a classifier)."""
        return self.shapes[-1]

    def to_dict(self) -> dict[str, Any]:
        """The network as its JSON layer list; :func:`from_spec` reads it back.

        >>> from_spec(builtin("vgg16").to_dict()) == builtin("vgg16")
        True
        """
        data: dict[str, Any] = {"input": list(self.input), "layers": _specs(self.layers)}
        if self.name != "custom":
            data["name"] = self.name
        return data

    def with_image_size(self, size: int, field: str = "image_size") -> CnnModel:
        """The same network on square ``size``×``size`` images.

        >>> builtin("resnet50").with_image_size(160).shapes[-4]
        (2048, 5, 5)
        """
        try:
            return CnnModel((self.input[0], size, size), self.layers, self.name)
        except NnmemError as error:
            why = _by_name(error.problems[0], self.to_dict())
            network = "this network" if self.name == "custom" else self.name
            raise NnmemError.single(
                field, f"Image size {size:,} is too small for {network}: {why}"
            ) from None


# --- reading the JSON layer list ----------------------------------------------------------

MAX_KERNEL = 1_024
MAX_CHANNELS = 1_000_000
MAX_SIDE = 100_000
MAX_FEATURES = 10_000_000
MAX_LAYERS = 10_000
MAX_DEPTH = 32
MAX_NAME = 100

_COMMON = ("type", "name")
_KEYS: dict[LayerKind, tuple[str, ...]] = {
    LayerKind.CONV2D: (
        "out_channels",
        "kernel",
        "stride",
        "padding",
        "dilation",
        "groups",
        "bias",
    ),
    LayerKind.BATCHNORM2D: ("affine",),
    LayerKind.RELU: ("inplace",),
    LayerKind.GELU: (),
    LayerKind.SILU: (),
    LayerKind.MAXPOOL2D: ("kernel", "stride", "padding", "dilation", "ceil_mode"),
    LayerKind.AVGPOOL2D: ("kernel", "stride", "padding", "ceil_mode"),
    LayerKind.ADAPTIVE_AVGPOOL2D: ("output",),
    LayerKind.FLATTEN: (),
    LayerKind.LINEAR: ("out_features", "bias"),
    LayerKind.DROPOUT: ("p",),
    LayerKind.RESIDUAL: ("body", "shortcut"),
    LayerKind.SEQUENTIAL: ("layers",),
}
_TYPE_NAMES = tuple(kind.value for kind in LayerKind)
_NEEDS_MAP = {
    LayerKind.CONV2D,
    LayerKind.BATCHNORM2D,
    LayerKind.MAXPOOL2D,
    LayerKind.AVGPOOL2D,
    LayerKind.ADAPTIVE_AVGPOOL2D,
}
_MAX_ECHO = 24


def _shown(raw: object) -> str:
    """The bad value as a message echoes it: numbers bare, text quoted, cut short."""
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    if len(text) > _MAX_ECHO:
        text = text[: _MAX_ECHO - 1] + "…"
    return f'"{text}"' if isinstance(raw, str) else text


def _dims(shape: Sequence[int]) -> str:
    return "×".join(str(n) for n in shape)


def _span(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


def _out_side(side: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """Output side of a convolution or pooling window (torch.nn docs, "Shape")."""
    room = side + 2 * pad - _span(kernel, dilation)
    if room < 0:
        return 0
    out = (room + (stride - 1 if ceil else 0)) // stride + 1
    # With ceil_mode the last window must start inside the input or the left padding.
    if ceil and (out - 1) * stride >= side + pad:
        out -= 1
    return out


class _Reader:
    """Reads a layer list, collecting every problem with its exact path."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.problems: list[Problem] = []
        self.count = 0
        self.top_shapes: list[Shape] = []

    def bad(self, path: str, allowed: str, raw: object = None) -> None:
        """Record ``path must be <allowed> (got <raw>)``, or ``is required`` without raw."""
        if raw is None:
            message = f"{path} is required: {allowed}."
        else:
            message = f"{path} must be {allowed} (got {_shown(raw)})."
        self.problems.append(Problem(path, message))

    def say(self, path: str, message: str) -> None:
        """Record a problem whose message is not of the ``must be`` kind."""
        self.problems.append(Problem(path, message))

    # --- values

    def whole(self, raw: object, path: str, low: int, high: int) -> int | None:
        allowed = f"a whole number from {low:,} to {high:,}"
        if raw is None:
            self.bad(path, allowed)
            return None
        number = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
        if number is None or not math.isfinite(number) or number != int(number):
            self.bad(path, allowed, raw)
            return None
        if not low <= int(number) <= high:
            self.bad(path, allowed, raw)
            return None
        return int(number)

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        low: int,
        high: int,
        default: object = None,
    ) -> int | None:
        """A whole-number key; ``default`` stands in for a missing one."""
        raw = data.get(key)
        return self.whole(default if raw is None else raw, f"{path}.{key}", low, high)

    def pair(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        low: int,
        high: int,
        default: object = None,
    ) -> Pair | None:
        """A whole number, or a [height, width] pair of them; ``default`` if missing."""
        raw, where = data.get(key), f"{path}.{key}"
        raw = default if raw is None else raw
        if not isinstance(raw, list):
            value = self.whole(raw, where, low, high)
            return None if value is None else (value, value)
        if len(raw) != 2:
            self.bad(where, "a whole number or a [height, width] pair", raw)
            return None
        h = self.whole(raw[0], f"{where}[0]", low, high)
        w = self.whole(raw[1], f"{where}[1]", low, high)
        return None if h is None or w is None else (h, w)

    def flag(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        raw = data.get(key, default)
        if not isinstance(raw, bool):
            self.bad(f"{path}.{key}", "true or false", raw)
            return default
        return raw

    def probability(self, data: Mapping[str, Any], path: str) -> float | None:
        raw = data.get("p", 0.5)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw < 1:
            self.bad(f"{path}.p", "a number from 0 up to (not including) 1", raw)
            return None
        return float(raw)

    def name(self, data: Mapping[str, Any], path: str) -> str:
        raw = data.get("name", "")
        if not isinstance(raw, str) or len(raw) > MAX_NAME:
            self.bad(f"{path}.name", f"text of at most {MAX_NAME} characters", raw)
            return ""
        return raw

    def unknown_keys(
        self, data: Mapping[str, Any], path: str, allowed: Sequence[str], what: str
    ) -> None:
        for key in data:
            if key not in allowed:
                self.say(
                    f"{path}.{key}",
                    f"{path} has an unknown key {_shown(key)}: {what} takes {', '.join(allowed)}.",
                )

    # --- structure

    def model(
        self, data: Mapping[str, Any]
    ) -> tuple[tuple[int, int, int] | None, tuple[Layer, ...]]:
        """The input shape and the layers, with every problem recorded."""
        self.unknown_keys(data, self.field, ("input", "layers", "name"), "a layer list")
        shape = self.input(data.get("input"))
        self.name(data, self.field)
        layers, _ = self.layers(data.get("layers"), f"{self.field}.layers", shape, 0, top=True)
        return shape, layers

    def input(self, raw: object) -> tuple[int, int, int] | None:
        path = f"{self.field}.input"
        if not isinstance(raw, list) or len(raw) != 3:
            self.bad(path, "[channels, height, width] of one sample, such as [3, 224, 224]", raw)
            return None
        c = self.whole(raw[0], f"{path}[0]", 1, MAX_CHANNELS)
        h = self.whole(raw[1], f"{path}[1]", 1, MAX_SIDE)
        w = self.whole(raw[2], f"{path}[2]", 1, MAX_SIDE)
        return None if c is None or h is None or w is None else (c, h, w)

    def layers(
        self, raw: object, path: str, shape: Shape | None, depth: int, top: bool = False
    ) -> tuple[tuple[Layer, ...], Shape | None]:
        """The layers of a list and the shape after them (None once a shape is unknown)."""
        if not isinstance(raw, list) or not raw:
            self.bad(path, "a non-empty list of layers", raw)
            return (), None
        out: list[Layer] = []
        for index, item in enumerate(raw):
            layer, shape = self.layer(item, f"{path}[{index}]", shape, depth)
            if layer is not None:
                out.append(layer)
            if top and shape is not None:
                self.top_shapes.append(shape)
        return tuple(out), shape

    def layer(
        self, raw: object, path: str, shape: Shape | None, depth: int
    ) -> tuple[Layer | None, Shape | None]:
        self.count += 1
        if self.count == MAX_LAYERS + 1:
            self.say(path, f"{self.field} may hold at most {MAX_LAYERS:,} layers in all.")
        if not isinstance(raw, Mapping):
            self.bad(path, 'a JSON object with a "type"', raw)
            return None, None
        kind = LayerKind(raw["type"]) if raw.get("type") in _TYPE_NAMES else None
        if kind is None:
            self.bad(f"{path}.type", f"one of {', '.join(_TYPE_NAMES)}", raw.get("type"))
            return None, None
        self.unknown_keys(raw, path, (*_COMMON, *_KEYS[kind]), f"a {kind.value} layer")
        before = len(self.problems)
        if kind in (LayerKind.RESIDUAL, LayerKind.SEQUENTIAL):
            if depth >= MAX_DEPTH:
                self.say(path, f"{path} nests groups of layers more than {MAX_DEPTH} deep.")
                return None, None
            return self.group(kind, raw, path, shape, depth)
        layer = self.simple(kind, raw, path)
        if layer is None or shape is None or len(self.problems) > before:
            return layer, None
        return layer, self.shape_after(layer, shape, path)

    def simple(self, kind: LayerKind, data: Mapping[str, Any], path: str) -> Layer | None:
        """A layer that holds no other layers."""
        name = self.name(data, path)
        if kind is LayerKind.CONV2D:
            out = self.get(data, "out_channels", path, 1, MAX_CHANNELS)
            kernel = self.pair(data, "kernel", path, 1, MAX_KERNEL)
            stride = self.pair(data, "stride", path, 1, MAX_KERNEL, 1)
            padding = self.pair(data, "padding", path, 0, MAX_KERNEL, 0)
            dilation = self.pair(data, "dilation", path, 1, MAX_KERNEL, 1)
            groups = self.get(data, "groups", path, 1, MAX_CHANNELS, 1)
            bias = self.flag(data, "bias", path, True)
            if out and kernel and stride and padding and dilation and groups:
                return Conv2d(out, kernel, stride, padding, dilation, groups, bias, name)
            return None
        if kind is LayerKind.BATCHNORM2D:
            return BatchNorm2d(self.flag(data, "affine", path, True), name)
        if kind in (LayerKind.RELU, LayerKind.GELU, LayerKind.SILU):
            return Activation(kind, self.flag(data, "inplace", path, kind is LayerKind.RELU), name)
        if kind in (LayerKind.MAXPOOL2D, LayerKind.AVGPOOL2D):
            kernel = self.pair(data, "kernel", path, 1, MAX_KERNEL)
            stride = self.pair(data, "stride", path, 1, MAX_KERNEL, list(kernel or (1, 1)))
            padding = self.pair(data, "padding", path, 0, MAX_KERNEL, 0)
            dilation = self.pair(data, "dilation", path, 1, MAX_KERNEL, 1)
            ceil = self.flag(data, "ceil_mode", path, False)
            if kernel and stride and padding and dilation:
                return Pool2d(kind, kernel, stride, padding, dilation, ceil, name)
            return None
        if kind is LayerKind.ADAPTIVE_AVGPOOL2D:
            output = self.pair(data, "output", path, 1, MAX_SIDE)
            return None if output is None else AdaptiveAvgPool2d(output, name)
        if kind is LayerKind.LINEAR:
            features = self.get(data, "out_features", path, 1, MAX_FEATURES)
            bias = self.flag(data, "bias", path, True)
            return None if features is None else Linear(features, bias, name)
        if kind is LayerKind.DROPOUT:
            p = self.probability(data, path)
            return None if p is None else Dropout(p, name)
        return Flatten(name)

    def group(
        self, kind: LayerKind, data: Mapping[str, Any], path: str, shape: Shape | None, depth: int
    ) -> tuple[Layer | None, Shape | None]:
        """A residual block or a sequential group, and the shape after it."""
        name = self.name(data, path)
        if kind is LayerKind.SEQUENTIAL:
            layers, out = self.layers(data.get("layers"), f"{path}.layers", shape, depth + 1)
            return (Sequential(layers, name) if layers else None), out
        body, body_shape = self.layers(data.get("body"), f"{path}.body", shape, depth + 1)
        raw = data.get("shortcut", [])
        if not isinstance(raw, list):
            self.bad(f"{path}.shortcut", "a list of layers, [] for the identity", raw)
            return None, None
        shortcut: tuple[Layer, ...] = ()
        short_shape = shape
        if raw:
            shortcut, short_shape = self.layers(raw, f"{path}.shortcut", shape, depth + 1)
        block = Residual(body, shortcut, name) if body else None
        if body_shape is None or short_shape is None:
            return block, None
        if body_shape != short_shape:
            self.say(
                path,
                f"{path} adds a body ending in {_dims(body_shape)} to a shortcut ending in "
                f"{_dims(short_shape)}: the two shapes must be equal.",
            )
            return block, None
        return block, body_shape

    def shape_after(self, layer: Layer, shape: Shape, path: str) -> Shape | None:
        """The output shape, or None with a problem when the layer cannot take ``shape``."""
        kind = layer.kind
        if kind in _NEEDS_MAP and len(shape) != 3:
            self.say(
                path,
                f"{path} ({kind.value}) needs a feature map [channels, height, width], but its "
                f"input is flat ({_dims(shape)}).",
            )
            return None
        if isinstance(layer, Linear) and len(shape) != 1:
            self.say(
                path,
                f"{path} (linear) needs a flat input, but gets a {_dims(shape)} feature map: "
                'add {"type": "flatten"} before it.',
            )
            return None
        if isinstance(layer, Conv2d) and (
            shape[0] % layer.groups or layer.out_channels % layer.groups
        ):
            self.say(
                f"{path}.groups",
                f"{path}.groups ({layer.groups:,}) must divide the input channels "
                f"({shape[0]:,}) and out_channels ({layer.out_channels:,}).",
            )
            return None
        if isinstance(layer, Pool2d):
            for axis in (0, 1):
                if layer.padding[axis] > _span(layer.kernel[axis], layer.dilation[axis]) // 2:
                    self.say(
                        f"{path}.padding",
                        f"{path}.padding must be at most half the kernel window "
                        f"(kernel {_dims(layer.kernel)}, got padding {_dims(layer.padding)}).",
                    )
                    return None
        out = _next_shape(layer, shape)
        if len(out) == 3 and min(out[1:]) < 1:
            assert isinstance(layer, Conv2d | Pool2d)
            span = [_span(layer.kernel[a], layer.dilation[a]) for a in (0, 1)]
            padded = [shape[1 + a] + 2 * layer.padding[a] for a in (0, 1)]
            self.say(
                f"{path}.kernel",
                f"{path}.kernel spans {_dims(span)}, more than the padded input "
                f"{_dims(padded)} (input {_dims(shape[1:])}, padding {_dims(layer.padding)}).",
            )
            return None
        return out


def from_spec(data: object, field: str = "cnn") -> CnnModel:
    """Read a network from its JSON layer list, reporting every problem with its path.

    ``data`` may also name a built-in network (``"resnet50"``), or be
    ``{"builtin": "resnet50", "input": [3, 160, 160], "classes": 10}``.

    >>> net = from_spec({"input": [3, 32, 32], "layers": [
    ...     {"type": "conv2d", "out_channels": 16, "kernel": 3, "padding": 1},
    ...     {"type": "relu"}, {"type": "maxpool2d", "kernel": 2},
    ...     {"type": "flatten"}, {"type": "linear", "out_features": 10}]})
    >>> net.shapes
    ((16, 32, 32), (16, 32, 32), (16, 16, 16), (4096,), (10,))
    >>> from_spec({"input": [3, 32, 32], "layers": [{"type": "conv2d", "out_channels": 8,
    ...                                               "kernel": 0}]})
    Traceback (most recent call last):
    nnmem.errors.NnmemError: cnn.layers[0].kernel must be a whole number from 1 to 1,024 (got 0).
    """
    if isinstance(data, str):
        return builtin(data, field=field)
    if not isinstance(data, Mapping):
        raise NnmemError.single(
            field,
            f'{field} must be a JSON object with "input" and "layers", or the name of a '
            f"built-in network ({', '.join(BUILTINS)}) (got {_shown(data)}).",
        )
    if "builtin" in data:
        return _read_builtin(data, field)
    reader = _Reader(field)
    shape, layers = reader.model(data)
    if reader.problems:
        raise NnmemError(reader.problems)
    assert shape is not None
    name = data.get("name")
    return CnnModel(shape, layers, name if isinstance(name, str) and name else "custom")


def _specs(layers: Iterable[Layer]) -> list[dict[str, Any]]:
    return [_spec(layer) for layer in layers]


def _plain_pair(pair: Pair) -> int | list[int]:
    return pair[0] if pair[0] == pair[1] else list(pair)


def _spec(layer: Layer) -> dict[str, Any]:
    """One layer as JSON, leaving out keys at their default."""
    data: dict[str, Any] = {"type": layer.kind.value}
    if isinstance(layer, Conv2d):
        data |= {"out_channels": layer.out_channels, "kernel": _plain_pair(layer.kernel)}
        for key, value, default in (
            ("stride", layer.stride, (1, 1)),
            ("padding", layer.padding, (0, 0)),
            ("dilation", layer.dilation, (1, 1)),
        ):
            if value != default:
                data[key] = _plain_pair(value)
        if layer.groups != 1:
            data["groups"] = layer.groups
        if not layer.bias:
            data["bias"] = False
    elif isinstance(layer, BatchNorm2d):
        if not layer.affine:
            data["affine"] = False
    elif isinstance(layer, Activation):
        if layer.inplace != (layer.function is LayerKind.RELU):
            data["inplace"] = layer.inplace
    elif isinstance(layer, Pool2d):
        data["kernel"] = _plain_pair(layer.kernel)
        if layer.stride != layer.kernel:
            data["stride"] = _plain_pair(layer.stride)
        if layer.padding != (0, 0):
            data["padding"] = _plain_pair(layer.padding)
        if layer.dilation != (1, 1):
            data["dilation"] = _plain_pair(layer.dilation)
        if layer.ceil_mode:
            data["ceil_mode"] = True
    elif isinstance(layer, AdaptiveAvgPool2d):
        data["output"] = _plain_pair(layer.output)
    elif isinstance(layer, Linear):
        data["out_features"] = layer.out_features
        if not layer.bias:
            data["bias"] = False
    elif isinstance(layer, Dropout):
        data["p"] = layer.p
    elif isinstance(layer, Residual):
        data |= {"body": _specs(layer.body), "shortcut": _specs(layer.shortcut)}
    elif isinstance(layer, Sequential):
        data["layers"] = _specs(layer.layers)
    if layer.name:
        data["name"] = layer.name
    return data


# --- built-in networks --------------------------------------------------------------------

# torchvision.models: BasicBlock or Bottleneck ResNets (v1.5: the stride sits on the 3×3
# conv) and VGG configurations A, B, D, E without batch norm (torchvision/models/resnet.py
# and vgg.py). Parameter counts equal torchvision's published num_params.
_RESNETS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
# VGG configurations: output channels of each 3×3 convolution, "M" a 2×2 max-pool.
_VGGS: dict[str, str] = {
    "vgg11": "64 M 128 M 256 256 M 512 512 M 512 512 M",
    "vgg13": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
    "vgg16": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
    "vgg19": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
}
BUILTINS: tuple[str, ...] = (*_RESNETS, *_VGGS)


def _conv(
    out: int, kernel: int, stride: int = 1, padding: int = 0, name: str = "", bias: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "conv2d", "out_channels": out, "kernel": kernel}
    if stride != 1:
        spec["stride"] = stride
    if padding:
        spec["padding"] = padding
    if not bias:
        spec["bias"] = False
    return spec | {"name": name}


def _bn(name: str) -> dict[str, Any]:
    return {"type": "batchnorm2d", "name": name}


def _relu(name: str) -> dict[str, Any]:
    return {"type": "relu", "name": name}


def _resnet_spec(name: str, input: Sequence[int], classes: int) -> dict[str, Any]:
    block, depths = _RESNETS[name]
    expansion = 4 if block == "bottleneck" else 1
    layers: list[dict[str, Any]] = [
        _conv(64, 7, 2, 3, "conv1"),
        _bn("bn1"),
        _relu("relu"),
        {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1, "name": "maxpool"},
    ]
    inplanes = 64
    for stage, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
        blocks: list[dict[str, Any]] = []
        for index in range(depth):
            stride = 2 if stage and not index else 1
            p = f"layer{stage + 1}.{index}"
            if block == "bottleneck":
                body = [
                    _conv(planes, 1, name=f"{p}.conv1"), _bn(f"{p}.bn1"), _relu(f"{p}.relu1"),
                    _conv(planes, 3, stride, 1, f"{p}.conv2"), _bn(f"{p}.bn2"),
                    _relu(f"{p}.relu2"),
                    _conv(planes * 4, 1, name=f"{p}.conv3"), _bn(f"{p}.bn3"),
                ]  # fmt: skip
            else:
                body = [
                    _conv(planes, 3, stride, 1, f"{p}.conv1"), _bn(f"{p}.bn1"),
                    _relu(f"{p}.relu1"), _conv(planes, 3, 1, 1, f"{p}.conv2"), _bn(f"{p}.bn2"),
                ]  # fmt: skip
            shortcut: list[dict[str, Any]] = []
            if stride != 1 or inplanes != planes * expansion:
                shortcut = [
                    _conv(planes * expansion, 1, stride, name=f"{p}.downsample.0"),
                    _bn(f"{p}.downsample.1"),
                ]
            inplanes = planes * expansion
            blocks += [
                {"type": "residual", "body": body, "shortcut": shortcut, "name": p},
                _relu(f"{p}.relu"),
            ]
        layers.append({"type": "sequential", "layers": blocks, "name": f"layer{stage + 1}"})
    layers += [
        {"type": "adaptive_avgpool2d", "output": 1, "name": "avgpool"},
        {"type": "flatten", "name": "flatten"},
        {"type": "linear", "out_features": classes, "name": "fc"},
    ]
    return {"input": list(input), "layers": layers, "name": name}


def _vgg_spec(name: str, input: Sequence[int], classes: int) -> dict[str, Any]:
    layers: list[dict[str, Any]] = []
    for item in _VGGS[name].split():
        at = f"features.{len(layers)}"
        if item == "M":
            layers.append({"type": "maxpool2d", "kernel": 2, "stride": 2, "name": at})
        else:
            layers.append(_conv(int(item), 3, padding=1, name=at, bias=True))
            layers.append(_relu(f"features.{len(layers)}"))
    layers += [
        {"type": "adaptive_avgpool2d", "output": 7, "name": "avgpool"},
        {"type": "flatten", "name": "flatten"},
        {"type": "linear", "out_features": 4096, "name": "classifier.0"},
        _relu("classifier.1"),
        {"type": "dropout", "p": 0.5, "name": "classifier.2"},
        {"type": "linear", "out_features": 4096, "name": "classifier.3"},
        _relu("classifier.4"),
        {"type": "dropout", "p": 0.5, "name": "classifier.5"},
        {"type": "linear", "out_features": classes, "name": "classifier.6"},
    ]
    return {"input": list(input), "layers": layers, "name": name}


def builtin_spec(
    name: str, input: Sequence[int] = (3, 224, 224), classes: int = 1000
) -> dict[str, Any]:
    """The JSON layer list of a built-in network (raises KeyError for an unknown name).

    >>> [layer["name"] for layer in builtin_spec("resnet50")["layers"]][:5]
    ['conv1', 'bn1', 'relu', 'maxpool', 'layer1']
    """
    if name in _RESNETS:
        return _resnet_spec(name, input, classes)
    if name in _VGGS:
        return _vgg_spec(name, input, classes)
    raise KeyError(name)


def builtin(
    name: str, field: str = "cnn", input: Sequence[int] = (3, 224, 224), classes: int = 1000
) -> CnnModel:
    """A torchvision network by name: resnet18/34/50/101/152, vgg11/13/16/19.

    >>> parameter_count(builtin("resnet50")), parameter_count(builtin("vgg16"))
    (25557032, 138357544)
    """
    if name not in BUILTINS:
        raise NnmemError.single(
            field,
            f"{field} must name a built-in network: {', '.join(BUILTINS)} (got {_shown(name)}).",
        )
    return _built(name, field, tuple(input), classes)


@lru_cache(maxsize=32)
def _built(name: str, field: str, input: tuple[int, ...], classes: int) -> CnnModel:
    spec = builtin_spec(name, input, classes)
    try:
        return from_spec(spec, field=field)
    except NnmemError as error:
        why = _by_name(error.problems[0], spec)
        raise NnmemError.single(
            f"{field}.input", f"{field}.input {_dims(input)} is too small for {name}: {why}"
        ) from None


def _by_name(problem: Problem, spec: Mapping[str, Any]) -> str:
    """The problem's message with the layer's path replaced by the layer's name."""
    path = re.match(r"[^.]*\.layers\[\d+\](?:\.(?:layers|body|shortcut)\[\d+\])*", problem.field)
    if path is None:
        return problem.message
    layer: Any = spec
    for part, index in re.findall(r"(\w+)\[(\d+)\]", path.group()[path.group().index(".") :]):
        layer = layer[part][int(index)]
    name = layer.get("name")
    return problem.message.replace(path.group(), name) if name else problem.message


def _read_builtin(data: Mapping[str, Any], field: str) -> CnnModel:
    reader = _Reader(field)
    reader.unknown_keys(data, field, ("builtin", "input", "classes"), "a built-in network")
    name = data.get("builtin")
    if name not in BUILTINS:
        reader.bad(f"{field}.builtin", f"one of {', '.join(BUILTINS)}", name)
    shape = reader.input(data.get("input", [3, 224, 224]))
    classes = reader.get(data, "classes", field, 1, MAX_FEATURES, 1000)
    if reader.problems:
        raise NnmemError(reader.problems)
    assert isinstance(name, str) and shape is not None and classes is not None
    return builtin(name, field, shape, classes)


# --- parameters ---------------------------------------------------------------------------


def _walk_params(layers: Iterable[Layer], shape: Shape, counts: Counter[str]) -> Shape:
    """Add each layer's parameters to ``counts`` by kind; return the output shape."""
    for layer in layers:
        if isinstance(layer, Conv2d):
            # weight out × (in / groups) × kh × kw, plus one bias per output channel
            fan_in = shape[0] // layer.groups * layer.kernel[0] * layer.kernel[1]
            counts["conv2d"] += layer.out_channels * fan_in + (
                layer.out_channels if layer.bias else 0
            )
        elif isinstance(layer, BatchNorm2d):
            counts["batchnorm2d"] += 2 * shape[0] if layer.affine else 0  # weight and bias
        elif isinstance(layer, Linear):
            counts["linear"] += shape[0] * layer.out_features + (
                layer.out_features if layer.bias else 0
            )
        if isinstance(layer, Residual):
            out = _walk_params(layer.body, shape, counts)
            _walk_params(layer.shortcut, shape, counts)
            shape = out
        elif isinstance(layer, Sequential):
            shape = _walk_params(layer.layers, shape, counts)
        else:
            shape = _next_shape(layer, shape)
    return shape


def _next_shape(layer: Layer, shape: Shape) -> Shape:
    """The output shape of a validated non-nested layer."""
    if isinstance(layer, Conv2d):
        sides = [
            _out_side(
                shape[1 + a],
                layer.kernel[a],
                layer.stride[a],
                layer.padding[a],
                layer.dilation[a],
                False,
            )
            for a in (0, 1)
        ]
        return (layer.out_channels, *sides)
    if isinstance(layer, Pool2d):
        sides = [
            _out_side(
                shape[1 + a],
                layer.kernel[a],
                layer.stride[a],
                layer.padding[a],
                layer.dilation[a],
                layer.ceil_mode,
            )
            for a in (0, 1)
        ]
        return (shape[0], *sides)
    if isinstance(layer, AdaptiveAvgPool2d):
        return (shape[0], *layer.output)
    if isinstance(layer, Flatten):
        return (math.prod(shape),)
    if isinstance(layer, Linear):
        return (layer.out_features,)
    return shape


def _walk_shapes(layers: Iterable[Layer], shape: Shape, out: list[Shape]) -> Shape:
    """Append each parameter tensor's shape to ``out``; return the output shape."""
    for layer in layers:
        if isinstance(layer, Conv2d):
            kh, kw = layer.kernel
            out.append((layer.out_channels, shape[0] // layer.groups, kh, kw))
            out.extend([(layer.out_channels,)] if layer.bias else [])
        elif isinstance(layer, BatchNorm2d) and layer.affine:
            out.extend([(shape[0],), (shape[0],)])
        elif isinstance(layer, Linear):
            out.append((layer.out_features, shape[0]))
            out.extend([(layer.out_features,)] if layer.bias else [])
        if isinstance(layer, Residual):
            result = _walk_shapes(layer.body, shape, out)
            _walk_shapes(layer.shortcut, shape, out)
            shape = result
        elif isinstance(layer, Sequential):
            shape = _walk_shapes(layer.layers, shape, out)
        else:
            shape = _next_shape(layer, shape)
    return shape


@lru_cache(maxsize=32)
def parameter_shapes(model: CnnModel) -> tuple[Shape, ...]:
    """The shape of every parameter tensor, in module order.

    >>> shapes = parameter_shapes(builtin("resnet50"))
    >>> len(shapes), max(shapes, key=math.prod)
    (161, (512, 512, 3, 3))
    """
    shapes: list[Shape] = []
    _walk_shapes(model.layers, model.input, shapes)
    return tuple(shapes)


@lru_cache(maxsize=32)
def parameter_breakdown(model: CnnModel) -> dict[str, int]:
    """Trainable parameters by layer kind (only kinds that have any).

    ResNet-50: 53 convolutions, 53 batch norms (weight and bias per channel) and the fc.

    >>> parameter_breakdown(builtin("resnet50"))
    {'conv2d': 23454912, 'batchnorm2d': 53120, 'linear': 2049000}
    """
    counts: Counter[str] = Counter()
    _walk_params(model.layers, model.input, counts)
    return {kind: counts[kind] for kind in ("conv2d", "batchnorm2d", "linear") if counts[kind]}


def parameter_count(model: CnnModel) -> int:
    """All trainable parameters (``sum(p.numel() for p in model.parameters())``).

    >>> parameter_count(builtin("resnet18"))
    11689512
    """
    return sum(parameter_breakdown(model).values())


def _batchnorm_channels(layers: Iterable[Layer], shape: Shape) -> tuple[int, int, Shape]:
    """Channels summed over batch norms, and how many batch norms there are."""
    channels = count = 0
    for layer in layers:
        if isinstance(layer, BatchNorm2d):
            channels, count = channels + shape[0], count + 1
        if isinstance(layer, Residual):
            c1, n1, out = _batchnorm_channels(layer.body, shape)
            c2, n2, _ = _batchnorm_channels(layer.shortcut, shape)
            channels, count, shape = channels + c1 + c2, count + n1 + n2, out
        elif isinstance(layer, Sequential):
            c1, n1, shape = _batchnorm_channels(layer.layers, shape)
            channels, count = channels + c1, count + n1
        else:
            shape = _next_shape(layer, shape)
    return channels, count, shape


@lru_cache(maxsize=64)
def buffer_bytes(model: CnnModel, precision: CnnPrecision | str = CnnPrecision.FP32) -> int:
    """Batch-norm buffers: running mean and variance per channel, an int64 step count.

    They are not parameters but live on the GPU with them; ``pure16`` halves the floats.

    >>> buffer_bytes(builtin("resnet50"))  # 26,560 channels × 2 × 4 B + 53 × 8 B
    212904
    """
    p = _precision(precision)
    channels, count, _ = _batchnorm_channels(model.layers, model.input)
    return channels * 2 * p.weight_bytes + count * 8


def _precision(value: CnnPrecision | str) -> CnnPrecision:
    try:
        return CnnPrecision(value)
    except ValueError:
        raise NnmemError.single(
            "precision",
            f"Precision must be one of fp32, amp, pure16 (got {_shown(value)}).",
        ) from None


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1_000_000:
        raise NnmemError.single(
            "batch_size",
            f"Batch size must be a whole number from 1 to 1,000,000 (got {_shown(batch)}).",
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
class Term:
    """One part of a memory figure, with the numbers that give it.

    ``formula`` is batch × elements × bytes with this case's numbers in it
    (``32 × 802,816 × 4 B``); ``detail`` names the tensors and their shapes.
    """

    key: str
    label: str
    bytes: int
    formula: str
    detail: str
    kind: TermKind
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The term as JSON-ready data."""
        return {
            "key": self.key,
            "label": self.label,
            "bytes": self.bytes,
            "formula": self.formula,
            "detail": self.detail,
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

    >>> saved = saved_activations(builtin("resnet50"), 32, "fp32")
    >>> saved.activation_bytes, saved.input_bytes
    (2730177028, 19267584)
    >>> saved.term("layers[1]").formula, saved.term("layers[1]").detail
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
                _formula(tensors, batch),
                _detail(saved),
                kind,
                DERIVATIVES,
            )
        )
    return SavedActivations(batch, _precision(precision), tuple(terms))


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
            f"{state.peak_in_flight:,} B",
            f"activation gradients and temporaries live during the {state.peak_at}",
            TermKind.GRADIENT,
            ENGINE,
        ),
        Term(
            "pending",
            "Parameter gradients not made yet",
            state.peak_params - grads_total,
            f"{state.peak_params:,} B - {grads_total:,} B",
            "made later in backward, after the peak",
            TermKind.PENDING,
            ENGINE,
        ),
        Term(
            "freed",
            "Saved tensors already freed",
            state.peak_saved - saved_total,
            f"{state.peak_saved:,} B - {saved_total:,} B",
            "released by the nodes that ran before the peak",
            TermKind.FREED,
            ENGINE,
        ),
        Term(
            "batch",
            "Batch held by the caller, not saved",
            sum(t.nbytes(batch) for t in held),
            _formula(held, batch),
            "; ".join(f"{t.label} {_dims(t.shape)}" for t in held),
            TermKind.BATCH,
            ENGINE,
        ),
    )
    return BackwardExtra(
        bytes=sum(t.bytes for t in terms),
        peak_bytes=state.peak + terms[-1].bytes,
        at=state.peak_at,
        terms=terms,
    )


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
            _formula([t], batch),
            _dims(t.shape),
            TermKind.INPUT if t is walk.image else TermKind.LIVE,
            INFERENCE,
        )
        for n, t in enumerate(at_peak)
    )
    return WorkingSet(best, at, terms)
