"""Parameters and shapes: what a network holds, walked layer by layer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from nnmem.errors import NnmemError
from nnmem.models.cnn.language import (
    BatchNorm2d,
    CnnModel,
    CnnPrecision,
    Conv2d,
    Layer,
    Linear,
    Residual,
    Sequential,
    Shape,
    _next_shape,
    _shown,
)

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

    >>> import math
    >>> from nnmem.models.cnn import builtin
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

    >>> from nnmem.models.cnn import builtin
    >>> parameter_breakdown(builtin("resnet50"))
    {'conv2d': 23454912, 'batchnorm2d': 53120, 'linear': 2049000}
    """
    counts: Counter[str] = Counter()
    _walk_params(model.layers, model.input, counts)
    return {kind: counts[kind] for kind in ("conv2d", "batchnorm2d", "linear") if counts[kind]}


def parameter_count(model: CnnModel) -> int:
    """All trainable parameters (``sum(p.numel() for p in model.parameters())``).

    >>> from nnmem.models.cnn import builtin
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

    >>> from nnmem.models.cnn import builtin
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
