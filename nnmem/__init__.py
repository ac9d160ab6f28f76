"""nnmem: how much GPU memory a neural network needs, and where every byte goes.

>>> from nnmem import GenericModel, Mode, Precision, Scenario, estimate
>>> llama = Scenario(GenericModel(7_000_000_000, 4096, 32), Mode.INFERENCE, Precision.FP16)
>>> estimate(llama).component("weights").bytes
14000000000
"""

from nnmem.errors import NnmemError, Problem
from nnmem.estimate import estimate
from nnmem.result import Component, Estimate
from nnmem.scenario import GenericModel, Mode, Optimizer, Precision, Scenario, parse

__all__ = [
    "Component",
    "Estimate",
    "GenericModel",
    "Mode",
    "NnmemError",
    "Optimizer",
    "Precision",
    "Problem",
    "Scenario",
    "estimate",
    "parse",
]
__version__ = "0.1.0"
