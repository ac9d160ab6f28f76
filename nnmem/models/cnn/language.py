"""The layer language: a network's layers, their shapes, and reading the JSON layer list."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from nnmem.errors import NnmemError, Problem, dotted


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

    >>> from nnmem.models.cnn import parameter_count
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

        >>> from nnmem.models.cnn import builtin, from_spec
        >>> from_spec(builtin("vgg16").to_dict()) == builtin("vgg16")
        True
        """
        data: dict[str, Any] = {"input": list(self.input), "layers": _specs(self.layers)}
        if self.name != "custom":
            data["name"] = self.name
        return data

    def with_image_size(self, size: int, field: str = "image_size") -> CnnModel:
        """The same network on square ``size``×``size`` images.

        >>> from nnmem.models.cnn import builtin
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


def _by_name(problem: Problem, spec: Mapping[str, Any]) -> str:
    """The problem's message with the layer's path replaced by the layer's name."""
    # The loc runs root, "layers", i, then ("layers" | "body" | "shortcut", j) pairs.
    steps = problem.loc[1:]
    depth = 0
    while (
        depth + 1 < len(steps)
        and steps[depth] in ("layers", "body", "shortcut")
        and isinstance(steps[depth + 1], int)
        and (depth or steps[0] == "layers")
    ):
        depth += 2
    if not depth:
        return problem.message
    layer: Any = spec
    for n in range(0, depth, 2):
        layer = layer[steps[n]][steps[n + 1]]
    name = layer.get("name")
    path = dotted(problem.loc[: depth + 1])
    return problem.message.replace(path, name) if name else problem.message


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
