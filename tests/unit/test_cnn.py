"""Convolutional networks: the layer list, shapes, parameters and training memory.

Parameter counts are torchvision's published ``num_params`` (the weights' metadata in
torchvision/models/resnet.py and vgg.py). Saved tensors follow pytorch/pytorch
``tools/autograd/derivatives.yaml``; the measured figures come from
``benchmarks/accuracy/measured.json`` (PyTorch 2.13 on the CPU under fake tensors, see
that folder's README), quoted here so the tests need no torch.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem.errors import NnmemError
from nnmem.models import cnn
from nnmem.models.cnn import (
    BUILTINS,
    CnnModel,
    CnnPrecision,
    Conv2d,
    Flatten,
    Linear,
    TermKind,
    backward_extra,
    buffer_bytes,
    builtin,
    builtin_spec,
    from_spec,
    inference_working_set,
    parameter_breakdown,
    parameter_count,
    saved_activations,
)

# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("vgg11", 132_863_336),
        ("vgg13", 133_047_848),
        ("vgg16", 138_357_544),
        ("vgg19", 143_667_240),
    ],
)
def test_builtin_parameter_counts_equal_torchvision(name: str, params: int) -> None:
    """torchvision's ``num_params`` for each network's ImageNet weights."""
    assert parameter_count(builtin(name)) == params


def test_resnet50_parameters_by_kind() -> None:
    """ResNet-50 (torchvision resnet.py): the fc is 2048·1000 + 1000 = 2,049,000; the 53 batch
    norms have weight and bias per channel, 2 · 26,560 = 53,120; the 53 convolutions (no
    bias) hold the other 23,454,912. The running statistics are buffers: 26,560 · 2 · 4 B
    plus 53 int64 step counters = 212,904 B, as measured (``parameters.buffer_bytes``).
    """
    model = builtin("resnet50")
    assert parameter_breakdown(model) == {
        "conv2d": 23_454_912,
        "batchnorm2d": 53_120,
        "linear": 2_049_000,
    }
    assert buffer_bytes(model) == 212_904
    assert buffer_bytes(model, "pure16") == 26_560 * 2 * 2 + 53 * 8


def test_vgg16_parameters_by_kind() -> None:
    """VGG-16: 13 biased 3×3 convolutions hold 14,714,688; the classifier
    25,088·4,096 + 4,096 + 4,096·4,096 + 4,096 + 4,096·1,000 + 1,000 = 123,642,856.
    """
    assert parameter_breakdown(builtin("vgg16")) == {"conv2d": 14_714_688, "linear": 123_642_856}
    assert buffer_bytes(builtin("vgg16")) == 0


def tiny_spec() -> dict[str, Any]:
    """Input 2×4×4: conv 2→4 (3×3, padding 1, no bias), batch norm, ReLU, 2×2 max-pool,
    flatten, linear 16 → 3."""
    return {
        "input": [2, 4, 4],
        "layers": [
            {"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "bias": False},
            {"type": "batchnorm2d"},
            {"type": "relu"},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "linear", "out_features": 3},
        ],
    }


def test_tiny_net_parameters() -> None:
    """conv 4 · 2 · 3 · 3 = 72; batch norm 2 · 4 = 8; linear 16 · 3 + 3 = 51; total 131."""
    model = from_spec(tiny_spec())
    assert parameter_breakdown(model) == {"conv2d": 72, "batchnorm2d": 8, "linear": 51}
    assert parameter_count(model) == 131


@pytest.mark.parametrize(
    ("layer", "params"),
    [
        # out · (in / groups) · kh · kw + out
        ({"type": "conv2d", "out_channels": 8, "kernel": 3}, 8 * 4 * 9 + 8),
        ({"type": "conv2d", "out_channels": 8, "kernel": [1, 5], "bias": False}, 8 * 4 * 5),
        ({"type": "conv2d", "out_channels": 8, "kernel": 3, "groups": 4}, 8 * 1 * 9 + 8),
        ({"type": "conv2d", "out_channels": 4, "kernel": 3, "groups": 4, "bias": False}, 36),
        ({"type": "batchnorm2d"}, 8),
        ({"type": "batchnorm2d", "affine": False}, 0),
    ],
)
def test_layer_parameters(layer: dict[str, Any], params: int) -> None:
    """Each layer on a 4×16×16 input, counted as torch.nn allocates it."""
    assert parameter_count(from_spec({"input": [4, 16, 16], "layers": [layer]})) == params


# --- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        # floor((side + 2·padding - dilation·(kernel - 1) - 1) / stride) + 1
        ({"type": "conv2d", "out_channels": 8, "kernel": 3}, (8, 15, 9)),
        ({"type": "conv2d", "out_channels": 8, "kernel": 3, "padding": 1}, (8, 17, 11)),
        ({"type": "conv2d", "out_channels": 8, "kernel": 7, "stride": 2, "padding": 3}, (8, 9, 6)),
        ({"type": "conv2d", "out_channels": 8, "kernel": 3, "dilation": 2}, (8, 13, 7)),
        ({"type": "conv2d", "out_channels": 8, "kernel": [3, 1], "stride": [2, 1]}, (8, 8, 11)),
        ({"type": "maxpool2d", "kernel": 2}, (4, 8, 5)),
        ({"type": "maxpool2d", "kernel": 2, "ceil_mode": True}, (4, 9, 6)),
        ({"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1}, (4, 9, 6)),
        ({"type": "avgpool2d", "kernel": 3, "stride": 3, "ceil_mode": True}, (4, 6, 4)),
        ({"type": "adaptive_avgpool2d", "output": [2, 3]}, (4, 2, 3)),
        ({"type": "flatten"}, (4 * 17 * 11,)),
        ({"type": "dropout", "p": 0.1}, (4, 17, 11)),
    ],
)
def test_layer_shapes(layer: dict[str, Any], shape: tuple[int, ...]) -> None:
    """One layer on a 4×17×11 input (torch.nn docs, each layer's "Shape" section)."""
    assert from_spec({"input": [4, 17, 11], "layers": [layer]}).shapes == (shape,)


def test_resnet50_shapes() -> None:
    """Stem to 64×56×56, then 256×56×56, 512×28×28, 1024×14×14, 2048×7×7, 1000 logits."""
    model = builtin("resnet50")
    assert model.shapes == (
        (64, 112, 112),
        (64, 112, 112),
        (64, 112, 112),
        (64, 56, 56),
        (256, 56, 56),
        (512, 28, 28),
        (1024, 14, 14),
        (2048, 7, 7),
        (2048, 1, 1),
        (2048,),
        (1000,),
    )
    assert model.with_image_size(160).shapes[7] == (2048, 5, 5)
    assert builtin("vgg16").shapes[-9:-7] == ((512, 7, 7), (25088,))


def test_residual_keeps_shape_and_counts_both_branches() -> None:
    """A downsampling block: body and 1×1 stride-2 shortcut both end in 8×4×4."""
    spec = {
        "input": [4, 8, 8],
        "layers": [
            {
                "type": "residual",
                "body": [{"type": "conv2d", "out_channels": 8, "kernel": 3, "stride": 2,
                          "padding": 1, "bias": False}],
                "shortcut": [{"type": "conv2d", "out_channels": 8, "kernel": 1, "stride": 2,
                              "bias": False}],
            },
            {"type": "relu"},
        ],
    }  # fmt: skip
    model = from_spec(spec)
    assert model.shapes == ((8, 4, 4), (8, 4, 4))
    assert parameter_count(model) == 8 * 4 * 9 + 8 * 4


def test_spec_round_trip() -> None:
    for name in ("resnet18", "resnet50", "vgg16"):
        model = builtin(name)
        assert from_spec(model.to_dict()) == model
    tiny = from_spec(tiny_spec())
    assert tiny.to_dict() == tiny_spec()
    assert from_spec("resnet50") == builtin("resnet50")
    small = from_spec({"builtin": "resnet18", "input": [3, 64, 64], "classes": 10})
    assert small.output_shape == (10,)
    assert small == builtin("resnet18", input=(3, 64, 64), classes=10)
    assert builtin_spec("vgg16")["layers"][-1] == {
        "type": "linear",
        "out_features": 1000,
        "name": "classifier.6",
    }
    assert set(BUILTINS) == {f"resnet{n}" for n in (18, 34, 50, 101, 152)} | {
        f"vgg{n}" for n in (11, 13, 16, 19)
    }


def test_module_example_is_a_valid_spec() -> None:
    """The JSON example atop nnmem/models/cnn/__init__.py: a ResNet stem, a bottleneck, a head."""
    doc = cnn.__doc__ or ""
    example = doc[doc.index("::") + 2 : doc.index("=====")]
    model = from_spec(json.loads(example))
    assert model.shapes[3:5] == ((64, 56, 56), (256, 56, 56))
    assert model.output_shape == (1000,)


def test_python_construction_is_checked_too() -> None:
    model = CnnModel((3, 8, 8), (Conv2d(4, (3, 3)), Flatten(), Linear(2)))
    assert model.shapes == ((4, 6, 6), (144,), (2,))
    with pytest.raises(NnmemError) as caught:
        CnnModel((3, 8, 8), (Conv2d(4, (3, 3)), Linear(2)))
    assert caught.value.field == "cnn.layers[1]"


# --- every invalid input, with its field and message ----------------------------------

TYPES = (
    "conv2d, batchnorm2d, relu, gelu, silu, maxpool2d, avgpool2d, adaptive_avgpool2d, "
    "flatten, linear, dropout, residual, sequential"
)
CONV_KEYS = "type, name, out_channels, kernel, stride, padding, dilation, groups, bias"


def conv(**keys: Any) -> dict[str, Any]:
    return {"type": "conv2d", "out_channels": 8, "kernel": 3, **keys}


def net(*layers: Any, input: Any = (3, 8, 8)) -> dict[str, Any]:
    return {"input": list(input) if isinstance(input, tuple) else input, "layers": list(layers)}


INVALID = [
    (net(conv(kernel=0)), "cnn.layers[0].kernel",
     "cnn.layers[0].kernel must be a whole number from 1 to 1,024 (got 0)."),
    (net(conv(kernel=2000)), "cnn.layers[0].kernel",
     "cnn.layers[0].kernel must be a whole number from 1 to 1,024 (got 2000)."),
    (net(conv(kernel=[3])), "cnn.layers[0].kernel",
     "cnn.layers[0].kernel must be a whole number or a [height, width] pair (got [3])."),
    (net(conv(kernel=[3, 0])), "cnn.layers[0].kernel[1]",
     "cnn.layers[0].kernel[1] must be a whole number from 1 to 1,024 (got 0)."),
    (net(conv(kernel="3")), "cnn.layers[0].kernel",
     'cnn.layers[0].kernel must be a whole number from 1 to 1,024 (got "3").'),
    (net(conv(stride=1.5)), "cnn.layers[0].stride",
     "cnn.layers[0].stride must be a whole number from 1 to 1,024 (got 1.5)."),
    (net(conv(padding=-1)), "cnn.layers[0].padding",
     "cnn.layers[0].padding must be a whole number from 0 to 1,024 (got -1)."),
    (net(conv(dilation=0)), "cnn.layers[0].dilation",
     "cnn.layers[0].dilation must be a whole number from 1 to 1,024 (got 0)."),
    (net(conv(groups=0)), "cnn.layers[0].groups",
     "cnn.layers[0].groups must be a whole number from 1 to 1,000,000 (got 0)."),
    (net(conv(out_channels=True)), "cnn.layers[0].out_channels",
     "cnn.layers[0].out_channels must be a whole number from 1 to 1,000,000 (got true)."),
    (net(conv(out_channels=float("inf"))), "cnn.layers[0].out_channels",
     "cnn.layers[0].out_channels must be a whole number from 1 to 1,000,000 (got Infinity)."),
    (net({"type": "conv2d", "kernel": 3}), "cnn.layers[0].out_channels",
     "cnn.layers[0].out_channels is required: a whole number from 1 to 1,000,000."),
    (net({"type": "conv2d", "out_channels": 8}), "cnn.layers[0].kernel",
     "cnn.layers[0].kernel is required: a whole number from 1 to 1,024."),
    (net(conv(bias="no")), "cnn.layers[0].bias",
     'cnn.layers[0].bias must be true or false (got "no").'),
    (net(conv(kernal=3)), "cnn.layers[0].kernal",
     f'cnn.layers[0] has an unknown key "kernal": a conv2d layer takes {CONV_KEYS}.'),
    (net({"type": "gelu", "inplace": True}), "cnn.layers[0].inplace",
     'cnn.layers[0] has an unknown key "inplace": a gelu layer takes type, name.'),
    (net({"type": "relu", "inplace": 1}), "cnn.layers[0].inplace",
     "cnn.layers[0].inplace must be true or false (got 1)."),
    (net({"type": "conv3d"}), "cnn.layers[0].type",
     f'cnn.layers[0].type must be one of {TYPES} (got "conv3d").'),
    (net({"out_channels": 8}), "cnn.layers[0].type",
     f"cnn.layers[0].type is required: one of {TYPES}."),
    (net(3), "cnn.layers[0]", 'cnn.layers[0] must be a JSON object with a "type" (got 3).'),
    (net({"type": "relu", "name": 5}), "cnn.layers[0].name",
     "cnn.layers[0].name must be text of at most 100 characters (got 5)."),
    (net({"type": "dropout", "p": 1}), "cnn.layers[0].p",
     "cnn.layers[0].p must be a number from 0 up to (not including) 1 (got 1)."),
    (net({"type": "linear", "out_features": 0}, input=(3, 8, 8)), "cnn.layers[0].out_features",
     "cnn.layers[0].out_features must be a whole number from 1 to 10,000,000 (got 0)."),
    (net({"type": "adaptive_avgpool2d"}), "cnn.layers[0].output",
     "cnn.layers[0].output is required: a whole number from 1 to 100,000."),
    (net(), "cnn.layers", "cnn.layers must be a non-empty list of layers (got [])."),
    ({"input": [3, 8, 8]}, "cnn.layers", "cnn.layers is required: a non-empty list of layers."),
    (net({"type": "relu"}, input=(3, 224)), "cnn.input",
     "cnn.input must be [channels, height, width] of one sample, such as [3, 224, 224] "
     "(got [3, 224])."),
    (net({"type": "relu"}, input=(3, 0, 8)), "cnn.input[1]",
     "cnn.input[1] must be a whole number from 1 to 100,000 (got 0)."),
    ({"layers": [{"type": "relu"}]}, "cnn.input",
     "cnn.input is required: [channels, height, width] of one sample, such as [3, 224, 224]."),
    ({**net({"type": "relu"}), "layer": []}, "cnn.layer",
     'cnn has an unknown key "layer": a layer list takes input, layers, name.'),
    # shapes
    (net(conv(kernel=7), input=(3, 4, 4)), "cnn.layers[0].kernel",
     "cnn.layers[0].kernel spans 7×7, more than the padded input 4×4 (input 4×4, padding 0×0)."),
    (net(conv(kernel=3, dilation=4, padding=1), input=(3, 6, 6)), "cnn.layers[0].kernel",
     "cnn.layers[0].kernel spans 9×9, more than the padded input 8×8 (input 6×6, padding 1×1)."),
    (net(conv(groups=2)), "cnn.layers[0].groups",
     "cnn.layers[0].groups (2) must divide the input channels (3) and out_channels (8)."),
    (net(conv(), {"type": "linear", "out_features": 10}), "cnn.layers[1]",
     'cnn.layers[1] (linear) needs a flat input, but gets a 8×6×6 feature map: add '
     '{"type": "flatten"} before it.'),
    (net({"type": "flatten"}, {"type": "batchnorm2d"}), "cnn.layers[1]",
     "cnn.layers[1] (batchnorm2d) needs a feature map [channels, height, width], but its "
     "input is flat (192)."),
    (net({"type": "maxpool2d", "kernel": 2, "padding": 2}), "cnn.layers[0].padding",
     "cnn.layers[0].padding must be at most half the kernel window (kernel 2×2, got "
     "padding 2×2)."),
    (net({"type": "residual", "body": [conv(padding=1)]}), "cnn.layers[0]",
     "cnn.layers[0] adds a body ending in 8×8×8 to a shortcut ending in 3×8×8: the two "
     "shapes must be equal."),
    (net({"type": "residual", "body": []}), "cnn.layers[0].body",
     "cnn.layers[0].body must be a non-empty list of layers (got [])."),
    (net({"type": "residual", "body": [{"type": "relu"}], "shortcut": "none"}),
     "cnn.layers[0].shortcut",
     'cnn.layers[0].shortcut must be a list of layers, [] for the identity (got "none").'),
    (net({"type": "sequential", "layers": [{"type": "residual",
          "body": [{"type": "relu"}, conv(kernel=0)]}]}),
     "cnn.layers[0].layers[0].body[1].kernel",
     "cnn.layers[0].layers[0].body[1].kernel must be a whole number from 1 to 1,024 (got 0)."),
    # the network as a whole, and built-in networks
    ([1], "cnn",
     'cnn must be a JSON object with "input" and "layers", or the name of a built-in network '
     "(resnet18, resnet34, resnet50, resnet101, resnet152, vgg11, vgg13, vgg16, vgg19) "
     "(got [1])."),
    ("resnet34x", "cnn",
     "cnn must name a built-in network: resnet18, resnet34, resnet50, resnet101, resnet152, "
     'vgg11, vgg13, vgg16, vgg19 (got "resnet34x").'),
    ({"builtin": "resnet"}, "cnn.builtin",
     "cnn.builtin must be one of resnet18, resnet34, resnet50, resnet101, resnet152, vgg11, "
     'vgg13, vgg16, vgg19 (got "resnet").'),
    ({"builtin": "resnet50", "classes": 0}, "cnn.classes",
     "cnn.classes must be a whole number from 1 to 10,000,000 (got 0)."),
    ({"builtin": "vgg16", "input": [3, 16, 16]}, "cnn.input",
     "cnn.input 3×16×16 is too small for vgg16: features.30.kernel spans 2×2, more than the "
     "padded input 1×1 (input 1×1, padding 0×0)."),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "message"), INVALID)
def test_invalid_spec(spec: Any, field: str, message: str) -> None:
    with pytest.raises(NnmemError) as caught:
        from_spec(spec)
    assert [(p.field, p.message) for p in caught.value.problems] == [(field, message)]


def test_every_problem_is_reported_at_once() -> None:
    spec = net(conv(kernel=0, bias="yes"), {"type": "pool"}, {"type": "dropout", "p": -1})
    with pytest.raises(NnmemError) as caught:
        from_spec(spec, field="model.cnn")
    assert [p.field for p in caught.value.problems] == [
        "model.cnn.layers[0].kernel",
        "model.cnn.layers[0].bias",
        "model.cnn.layers[1].type",
        "model.cnn.layers[2].p",
    ]


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (lambda: saved_activations(builtin("resnet18"), 0), "batch_size",
         "Batch size must be a whole number from 1 to 1,000,000 (got 0)."),
        (lambda: backward_extra(builtin("resnet18"), 1, "fp8"), "precision",
         'Precision must be one of fp32, amp, pure16 (got "fp8").'),
        (lambda: inference_working_set(builtin("resnet18"), 1, 3), "dtype_bytes",
         "Bytes per activation must be 1, 2, 4 or 8 (got 3)."),
        (lambda: builtin("vgg16").with_image_size(20), "image_size",
         "Image size 20 is too small for vgg16: features.30.kernel spans 2×2, more than the "
         "padded input 1×1 (input 1×1, padding 0×0)."),
        (lambda: builtin("vgg17", field="preset"), "preset",
         "preset must name a built-in network: resnet18, resnet34, resnet50, resnet101, "
         'resnet152, vgg11, vgg13, vgg16, vgg19 (got "vgg17").'),
    ],
)  # fmt: skip
def test_invalid_memory_arguments(call: Any, field: str, message: str) -> None:
    with pytest.raises(NnmemError) as caught:
        call()
    assert (caught.value.field, str(caught.value)) == (field, message)


def test_precision_names() -> None:
    assert CnnPrecision("amp_bf16") is CnnPrecision.AMP
    assert CnnPrecision("amp-fp16") is CnnPrecision.AMP
    assert CnnPrecision("bf16") is CnnPrecision.PURE16


# --- saved activations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "terms"),
    [
        (
            # Batch 2, fp32. conv saves the input batch 2·4·4 values; batch norm its input
            # 4·4·4 and two fp32 vectors of 4; ReLU (in place) its output; max-pool int64
            # indices of its 4·2·2 output (its input is the ReLU output, kept already);
            # linear its 16 inputs (the pool output, flattened: a view); the loss its fp32
            # log-softmax over 3 classes and a scalar.
            "fp32",
            {
                "input": 2 * 32 * 4,
                "layers[1]": 2 * 64 * 4 + 2 * 4 * 4,
                "layers[2]": 2 * 64 * 4,
                "layers[3]": 2 * 16 * 8,
                "layers[5]": 2 * 16 * 4,
                "loss": 2 * 3 * 4 + 4,
            },
        ),
        (
            # Autocast: conv saves a 16-bit copy of the fp32 input and every activation
            # after it is 16-bit; batch-norm statistics and the loss stay fp32; the conv
            # weight (72) and the linear weight (48, not its bias) are kept as 16-bit copies.
            "amp",
            {
                "layers[0]": 2 * 32 * 2,
                "layers[1]": 2 * 64 * 2 + 2 * 4 * 4,
                "layers[2]": 2 * 64 * 2,
                "layers[3]": 2 * 16 * 8,
                "layers[5]": 2 * 16 * 2,
                "loss": 2 * 3 * 4 + 4,
                "weight_copies": (72 + 48) * 2,
            },
        ),
        (
            # Everything 16-bit, the input batch and the loss included.
            "pure16",
            {
                "input": 2 * 32 * 2,
                "layers[1]": 2 * 64 * 2 + 2 * 4 * 4,
                "layers[2]": 2 * 64 * 2,
                "layers[3]": 2 * 16 * 8,
                "layers[5]": 2 * 16 * 2,
                "loss": 2 * 3 * 2 + 2,
            },
        ),
    ],
)
def test_tiny_net_saved_bytes_by_hand(precision: str, terms: dict[str, int]) -> None:
    saved = saved_activations(from_spec(tiny_spec()), 2, precision)
    assert {t.key: t.bytes for t in saved.terms} == terms
    assert saved.total_bytes == sum(terms.values())


def test_saved_terms_explain_themselves() -> None:
    saved = saved_activations(from_spec(tiny_spec()), 2, "amp")
    bn = saved.term("layers[1]")
    assert bn.label == "layers[1] (batchnorm2d)"
    assert bn.substituted == "2 × 64 × 2 B + 8 × 4 B"
    assert bn.formula == "layers[1] input 4×4×4; layers[1] save_mean, save_invstd 2×4"
    assert saved.term("weight_copies").kind is TermKind.WEIGHT_COPY
    assert saved.weight_copy_bytes == 240
    assert saved.input_bytes == 0  # autocast keeps a copy, counted as an activation
    assert saved.term("loss").to_dict()["kind"] == "loss"


@pytest.mark.parametrize(
    ("layer", "saved"),
    [
        # ReLU keeps its output, in place (the conv output's storage) or not.
        ({"type": "relu"}, 64 * 4),
        ({"type": "relu", "inplace": False}, 64 * 4),
        # GELU and SiLU keep their input.
        ({"type": "gelu"}, 64 * 4),
        ({"type": "silu"}, 64 * 4),
        # An average pool keeps its input; an adaptive 1×1 pool is a mean and keeps nothing.
        ({"type": "avgpool2d", "kernel": 2}, 64 * 4),
        ({"type": "adaptive_avgpool2d", "output": 2}, 64 * 4),
        ({"type": "adaptive_avgpool2d", "output": 1}, 0),
        # Max-pool keeps its input and int64 indices of its output's size.
        ({"type": "maxpool2d", "kernel": 2}, 64 * 4 + 16 * 8),
        # Dropout keeps a one-byte mask; with p = 0 it is the identity.
        ({"type": "dropout", "p": 0.5}, 64),
        ({"type": "dropout", "p": 0}, 0),
        # Batch norm keeps its input and two fp32 values per channel.
        ({"type": "batchnorm2d", "affine": False}, 64 * 4 + 2 * 4 * 4),
    ],
)
def test_saved_by_each_layer(layer: dict[str, Any], saved: int) -> None:
    """What one layer keeps, after a 1×1 conv with a 4×4×4 output, batch 1, fp32."""
    spec = net(
        {"type": "conv2d", "out_channels": 4, "kernel": 1}, layer, {"type": "flatten"},
        {"type": "linear", "out_features": 2}, input=(4, 4, 4),
    )  # fmt: skip
    terms = {t.key: t.bytes for t in saved_activations(from_spec(spec), 1).terms}
    assert terms.get("layers[1]", 0) == saved


def test_resnet50_saved_per_sample() -> None:
    """ResNet-50, 224×224, fp32, per sample (derivatives.yaml, by top-level layer).

    bn1 keeps the conv1 output, 64·112·112 = 802,816 values; ReLU its output, 802,816;
    max-pool its int64 indices, 64·56·56 = 200,704 (its input is the ReLU output). A
    bottleneck of width w on an H×W input with stride s keeps
    2·w·H·W + 2·w·(H/s)·(W/s) + 2·4w·(H/s)·(W/s) values (+ 4w·(H/s)·(W/s) for the
    downsample's batch norm in the first block); each stage's term also holds its input
    (kept by its first convolution), which for layer1 is the max-pool output, 200,704.
    layer1: 3·12·64·3136 + 256·3136 = 8,028,160 (+ 200,704); layer2: 5,820,416;
    layer3: 4,114,432; layer4: 1,154,048; the fc keeps its 2,048 inputs; the 1×1 average
    pool keeps nothing. That is 20,925,440 values, plus the 150,528-value image, 200,704
    indices and 1,000 loss values: 21,277,672 elements, and
    85,913,504 B = 81.93 MiB per sample.
    """
    one, two = (saved_activations(builtin("resnet50"), b) for b in (1, 2))
    per_sample = {t.key: two.term(t.key).bytes - t.bytes for t in one.terms}
    assert per_sample == {
        "input": 150_528 * 4,
        "layers[1]": 802_816 * 4,
        "layers[2]": 802_816 * 4,
        "layers[3]": 200_704 * 8,
        "layers[4]": (200_704 + 8_028_160) * 4,
        "layers[5]": 5_820_416 * 4,
        "layers[6]": 4_114_432 * 4,
        "layers[7]": 1_154_048 * 4,
        "layers[10]": 2_048 * 4,
        "loss": 1_000 * 4,
    }
    assert sum(per_sample.values()) == 85_913_504
    # Batch-norm statistics do not grow with the batch: 26,560 channels × 2 × 4 B.
    assert one.total_bytes - sum(per_sample.values()) == 212_480 + 4


# --- the measured cases -------------------------------------------------------------------

# (case id in measured.json, network, batch, precision, measured saved activation bytes,
#  measured autocast weight-copy bytes, measured peak bytes, model minus measured saved)
MEASURED = [
    ("resnet50.train.fp32.sgd-momentum.conv.b32.img224", "resnet50", 32, "fp32",
     2_730_177_028, 0, 2_987_610_000, 0),
    ("resnet50.train.fp32.sgd-momentum.conv.b8.img224", "resnet50", 8, "fp32",
     682_703_620, 0, 942_395_088, 0),
    # The CPU keeps batch-norm statistics in bf16 under autocast; CUDA keeps them in fp32:
    # 26,560 channels × 2 × 2 B more here.
    ("resnet50.train.amp-bf16.sgd-momentum.conv.b32.img224", "resnet50", 32, "amp",
     1_400_476_420, 51_005_824, 1_692_105_232, 106_240),
    # The CPU's dropout keeps an fp32 mask; CUDA's native_dropout a bool one:
    # 16 × 2 × 4,096 × 3 B less here.
    ("vgg16.train.fp32.sgd-momentum.conv.b16.img224", "vgg16", 16, "fp32",
     1_164_114_436, 0, 2_808_283_496, -393_216),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "name", "batch", "precision", "saved", "copies", "peak", "difference"), MEASURED
)
def test_measured_training_steps(
    case: str,
    name: str,
    batch: int,
    precision: str,
    saved: int,
    copies: int,
    peak: int,
    difference: int,
) -> None:
    """Saved tensors within 1% (exact but for the stated dtype differences), and the peak
    of step 2 (SGD with momentum, ``zero_grad(set_to_none=True)``) within 3%: fp32
    weights, buffers, gradients and momentum, plus everything saved, plus the backward
    extra."""
    model = builtin(name)
    result = saved_activations(model, batch, precision)
    assert result.activation_bytes - saved == difference
    assert abs(result.activation_bytes - saved) <= 0.01 * saved
    assert result.weight_copy_bytes == copies
    states = 3 * parameter_count(model) * 4 + buffer_bytes(model, precision)
    extra = backward_extra(model, batch, precision)
    estimated = states + result.total_bytes + extra.bytes
    assert abs(estimated - peak) <= 0.03 * peak
    assert abs(estimated - peak) <= abs(difference) + 8  # the loss's 4-byte scalars


def test_backward_extra_by_hand() -> None:
    """The tiny net, batch 2, fp32 (``ENGINE``): saved 1,724 B (the terms above, the
    input batch included) and 131 · 4 = 524 B of gradients in all.

    Backward runs loss, linear, flatten, max-pool, ReLU, batch norm, conv. After the loss
    (-28 B saved) the linear layer makes 204 B of weight and bias gradients and the 128 B
    gradient of its input, then frees the logits' gradient (24 B) and its saved input
    (128 B). Max-pool makes a 512 B gradient and frees its indices (256 B) and the
    incoming 128 B. At ReLU the peak comes: saved 1,724 - 28 - 128 - 256 = 1,312 B,
    gradients 204 B, in flight the incoming 512 B and ReLU's own 512 B: 2,540 B.
    Beyond all saved tensors and all gradients that is 2,540 - 1,724 - 524 = 292 B; with
    the 16 B of labels the caller holds, 308 B: in terms, 1,024 - 320 - 412 + 16.
    """
    extra = backward_extra(from_spec(tiny_spec()), 2)
    assert extra.at == "backward of layers[2]"
    assert [(t.key, t.bytes) for t in extra.terms] == [
        ("in_flight", 1_024),
        ("pending", 204 - 524),
        ("freed", 1_312 - 1_724),
        ("batch", 16),
    ]
    assert extra.bytes == 308
    assert extra.peak_bytes == 2_540 + 16
    assert {t.kind for t in extra.terms} == {
        TermKind.GRADIENT,
        TermKind.PENDING,
        TermKind.FREED,
        TermKind.BATCH,
    }


def test_backward_extra_counts_the_fp32_batch_under_autocast() -> None:
    """Under autocast conv saves a 16-bit copy, so the caller's fp32 images are extra."""
    extra = backward_extra(builtin("resnet50"), 32, "amp")
    assert extra.terms[-1].bytes == 32 * 150_528 * 4 + 32 * 8
    assert extra.at == "backward of layer4.2.relu"


# --- inference ----------------------------------------------------------------------------


def test_tiny_net_inference_by_hand() -> None:
    """Batch 2, fp32, no autograd: the input batch (256 B) stays; conv makes 512 B; batch
    norm another 512 B while the conv output is still its input: 1,280 B, the peak."""
    ws = inference_working_set(from_spec(tiny_spec()), 2, 4)
    assert (ws.bytes, ws.at) == (1_280, "layers[1]")
    assert [(t.label, t.bytes) for t in ws.terms] == [
        ("input", 256),
        ("layers[0] output", 512),
        ("layers[1] output", 512),
    ]
    assert ws.input_bytes == 256


@pytest.mark.parametrize(
    ("name", "dtype_bytes", "values", "at"),
    [
        # 64×56×56 block input + 3 · 256×56×56 (bn3 output, downsample conv, its batch
        # norm) + the 3×224×224 image.
        ("resnet50", 4, 200_704 + 3 * 802_816 + 150_528, "layer1.0.downsample.1"),
        ("resnet50", 2, 200_704 + 3 * 802_816 + 150_528, "layer1.0.downsample.1"),
        # conv1 output and bn1 output, 64×112×112 each, + the image.
        ("resnet18", 4, 2 * 802_816 + 150_528, "bn1"),
        # 64×224×224 in and out of the second convolution + the image.
        ("vgg16", 4, 2 * 3_211_264 + 150_528, "features.2"),
    ],
)
def test_inference_working_set(name: str, dtype_bytes: int, values: int, at: str) -> None:
    """The no_grad peaks, equal to what PyTorch holds with torchvision's forward code (a
    live-tensor trace of eval-mode forwards, batch 1 and 16, fp32 and bf16)."""
    ws = inference_working_set(builtin(name), 16, dtype_bytes)
    assert (ws.bytes, ws.at) == (16 * values * dtype_bytes, at)


def test_terms_are_json_ready() -> None:
    term = saved_activations(builtin("resnet18"), 1).terms[0]
    assert set(term.to_dict()) == {
        "key",
        "label",
        "bytes",
        "formula",
        "substituted",
        "kind",
        "source",
    }
    assert cnn.DERIVATIVES in term.source
