"""Convolutional networks: a layer list, its shapes, its parameters and its memory.

The package reads top down: :mod:`.language` (the layers and the JSON layer list),
:mod:`.zoo` (built-in networks), :mod:`.shapes` (parameters), :mod:`.forward` and
:mod:`.backward` (memory), :mod:`.build` (the phases of a step for the estimator).

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

from nnmem.models.cnn.backward import backward_extra
from nnmem.models.cnn.forward import (
    DERIVATIVES,
    ENGINE,
    INFERENCE,
    BackwardExtra,
    SavedActivations,
    Term,
    WorkingSet,
    inference_working_set,
    saved_activations,
)
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
    TermKind,
)
from nnmem.models.cnn.shapes import (
    buffer_bytes,
    parameter_breakdown,
    parameter_count,
    parameter_shapes,
)
from nnmem.models.cnn.zoo import BUILTINS, builtin, builtin_spec, from_spec

__all__ = [
    "BUILTINS",
    "DERIVATIVES",
    "ENGINE",
    "INFERENCE",
    "Activation",
    "AdaptiveAvgPool2d",
    "BackwardExtra",
    "BatchNorm2d",
    "CnnModel",
    "CnnPrecision",
    "Conv2d",
    "Dropout",
    "Flatten",
    "Layer",
    "LayerKind",
    "Linear",
    "Pool2d",
    "Residual",
    "SavedActivations",
    "Sequential",
    "Term",
    "TermKind",
    "WorkingSet",
    "backward_extra",
    "buffer_bytes",
    "builtin",
    "builtin_spec",
    "from_spec",
    "inference_working_set",
    "parameter_breakdown",
    "parameter_count",
    "parameter_shapes",
    "saved_activations",
]
