"""Built-in networks (torchvision's ResNets and VGGs), and reading a network by name or spec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from nnmem.errors import NnmemError
from nnmem.models.cnn.language import MAX_FEATURES, CnnModel, _by_name, _dims, _Reader, _shown


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

    >>> from nnmem.models.cnn import parameter_count
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
