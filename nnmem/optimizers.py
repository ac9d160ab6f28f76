"""Optimizer state and the temporaries of ``optimizer.step()``.

State sizes follow what each implementation allocates per trainable tensor; the step's
temporaries were measured with PyTorch 2.13 (``benchmarks/accuracy``): the multi-tensor
(``foreach``) kernels of AdamW and SGD make one parameter-sized copy, the per-tensor loop
twice the largest tensor, transformers' Adafactor fp32 copies of the largest tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nnmem.scenario import Optimizer, OptimizerImpl
from nnmem.terms import Term, fixed, product

TORCH_ADAMW = "PyTorch torch/optim/adamw.py: exp_avg and exp_avg_sq, zeros_like(param)"
TORCH_SGD = "PyTorch torch/optim/sgd.py: momentum_buffer, clone of the first gradient"
HF_ADAFACTOR = (
    "transformers optimization.py Adafactor: exp_avg_sq_row and exp_avg_sq_col in fp32 "
    "for matrices, exp_avg_sq for vectors (Shazeer & Stern 2018, arXiv 1804.04235)"
)
BNB_8BIT = (
    "bitsandbytes 8-bit optimizers: two uint8 states with an fp32 absmax per 256-value "
    "block; tensors under 4,096 values keep fp32 states (min_8bit_size)"
)
LION = "Chen et al. 2023, arXiv 2302.06675: Lion keeps one momentum per parameter"
MEASURED = "measured: benchmarks/accuracy (PyTorch 2.13, optimizer_step phase)"
TORCH_FUSED = (
    "PyTorch torch/optim/adam.py _fused_adam and sgd.py _fused_sgd: torch._fused_adamw_ "
    "and torch._fused_sgd_ update the parameters and states in place (measured: "
    "benchmarks/stacks, no temporaries)"
)


@dataclass(frozen=True)
class Trainable:
    """Trainable tensors of one shape: bytes per element and how many there are."""

    shape: tuple[int, ...]
    bytes_per_value: int
    count: int = 1

    @property
    def numel(self) -> int:
        """Elements of one tensor."""
        return math.prod(self.shape)

    @property
    def elements(self) -> int:
        """Elements of all of them."""
        return self.numel * self.count

    @property
    def nbytes(self) -> int:
        """Bytes all of them take."""
        return self.elements * self.bytes_per_value


@dataclass(frozen=True)
class OptimizerMemory:
    """What an optimizer holds between steps and what its step adds for a moment."""

    state: Term
    step: Term

    @property
    def state_bytes(self) -> int:
        """Bytes of state kept between steps."""
        return self.state.bytes

    @property
    def step_bytes(self) -> int:
        """Bytes of temporaries during ``optimizer.step()``."""
        return self.step.bytes


def _adafactor_state(t: Trainable) -> int:
    # Factored second moment for tensors of two or more dimensions: one fp32 value per
    # row and one per column of the last two dimensions; a full fp32 moment otherwise.
    if len(t.shape) >= 2 and t.numel:  # an empty tensor (vocab_size 0) has no state
        lead = t.numel // (t.shape[-1] * t.shape[-2])
        return 4 * lead * (t.shape[-1] + t.shape[-2])
    return 4 * t.numel


def _bnb_state(t: Trainable) -> int:
    if t.numel < 4096:
        return 8 * t.numel  # two fp32 states
    blocks = -(-t.numel // 256)
    return 2 * t.numel + 2 * 4 * blocks  # two uint8 states + two fp32 absmax per block


def optimizer_memory(
    optimizer: Optimizer, impl: OptimizerImpl, tensors: Sequence[Trainable]
) -> OptimizerMemory:
    """State and step temporaries for ``tensors`` trained with ``optimizer``.

    >>> gpt2_like = [Trainable((50257, 768), 4), Trainable((768,), 4)]
    >>> m = optimizer_memory(Optimizer.ADAMW, OptimizerImpl.FOREACH, gpt2_like)
    >>> m.state_bytes, m.step_bytes
    (308785152, 154392576)
    >>> m.state.formula
    '2 × P_train × 4 B'
    """
    n = sum(t.elements for t in tensors)
    width = tensors[0].bytes_per_value if tensors else 4
    largest = max(tensors, key=lambda t: t.numel, default=Trainable((0,), width))
    p = [("P_train", n)]
    loop = product(
        "temporaries",
        "for-loop step: two copies of the largest tensor",
        [("2", 2), ("P_largest", largest.numel)],
        largest.bytes_per_value,
        MEASURED,
    )
    if impl is OptimizerImpl.FOREACH:
        step = product(
            "temporaries", "foreach step: one copy of the trainable parameters", p, width, MEASURED
        )
    elif impl is OptimizerImpl.FUSED:
        step = fixed("temporaries", "fused step updates in place", 0, "0", TORCH_FUSED)
    else:
        step = loop
    none = fixed("temporaries", "no step temporaries", 0, "0")

    if optimizer is Optimizer.SGD:
        return OptimizerMemory(
            fixed("optimizer_state", "plain SGD keeps no state", 0, "0", TORCH_SGD), none
        )
    if optimizer is Optimizer.SGD_MOMENTUM:
        return OptimizerMemory(
            product("optimizer_state", "one momentum buffer per parameter", p, width, TORCH_SGD),
            step,
        )
    if optimizer is Optimizer.ADAMW:
        return OptimizerMemory(
            product(
                "optimizer_state",
                "two moments, m and v, per parameter",
                [("2", 2), *p],
                width,
                TORCH_ADAMW,
            ),
            step,
        )
    if optimizer is Optimizer.LION:
        return OptimizerMemory(
            product("optimizer_state", "one momentum per parameter", p, width, LION), loop
        )
    if optimizer is Optimizer.ADAMW_8BIT:
        state = sum(_bnb_state(t) * t.count for t in tensors)
        return OptimizerMemory(
            fixed(
                "optimizer_state",
                "two 8-bit moments with an fp32 absmax per 256 values",
                state,
                "Σ 2·n + 8·⌈n/256⌉ B per tensor (fp32 under 4,096 values)",
                BNB_8BIT,
            ),
            fixed("temporaries", "fused 8-bit kernels update in place", 0, "0", BNB_8BIT),
        )
    # Adafactor: a per-tensor loop that works in fp32; for 16-bit weights it also makes
    # fp32 copies of the weight and its gradient (measured: 4 fp32 copies of the largest
    # tensor for bf16 weights, 2 for fp32 weights).
    state = sum(_adafactor_state(t) * t.count for t in tensors)
    copies = 2 if largest.bytes_per_value == 4 else 4
    return OptimizerMemory(
        fixed(
            "optimizer_state",
            "factored second moments: a row and a column per matrix",
            state,
            "Σ (rows + columns) × 4 B per matrix + n × 4 B per vector",
            HF_ADAFACTOR,
        ),
        product(
            "temporaries",
            f"{copies} fp32 copies of the largest tensor",
            [(str(copies), copies), ("P_largest", largest.numel)],
            4,
            MEASURED,
        ),
    )
