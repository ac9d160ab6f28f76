"""Optimizer state and the temporaries of ``optimizer.step()``.

State sizes follow what each implementation allocates per trainable tensor; the step's
temporaries were measured with PyTorch 2.13 (``benchmarks/accuracy``): the multi-tensor
(``foreach``) kernels of AdamW and SGD make one parameter-sized copy, the per-tensor loop
twice the largest tensor, transformers' Adafactor fp32 copies of the largest tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nnmem.scenario import Optimizer, OptimizerImpl

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


@dataclass(frozen=True)
class Trainable:
    """One trainable tensor: its shape and bytes per element."""

    shape: tuple[int, ...]
    bytes_per_value: int

    @property
    def numel(self) -> int:
        """Number of elements."""
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def nbytes(self) -> int:
        """Bytes the tensor takes."""
        return self.numel * self.bytes_per_value


@dataclass(frozen=True)
class OptimizerMemory:
    """What an optimizer holds between steps and what its step adds for a moment."""

    state_bytes: int
    state_formula: str
    state_source: str
    step_bytes: int
    step_formula: str
    step_source: str


def _adafactor_state(t: Trainable) -> int:
    # Factored second moment for tensors of two or more dimensions: one fp32 value per
    # row and one per column of the last two dimensions; a full fp32 moment otherwise.
    if len(t.shape) >= 2:
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
    (308801536, 154400768)
    """
    total = sum(t.nbytes for t in tensors)
    largest = max((t for t in tensors), key=lambda t: t.numel, default=Trainable((0,), 4))
    loop_step = 2 * largest.nbytes
    if impl is OptimizerImpl.FOREACH:
        step, step_formula = total, "one copy of the trainable parameters (foreach)"
    else:
        step, step_formula = loop_step, "2 × the largest tensor (for-loop)"

    if optimizer is Optimizer.SGD:
        return OptimizerMemory(
            0, "plain SGD keeps no state", TORCH_SGD, 0, "updates in place", TORCH_SGD
        )
    if optimizer is Optimizer.SGD_MOMENTUM:
        return OptimizerMemory(
            total,
            "one momentum buffer per parameter, in its dtype",
            TORCH_SGD,
            step,
            step_formula,
            MEASURED,
        )
    if optimizer is Optimizer.ADAMW:
        return OptimizerMemory(
            2 * total,
            "two moments (m and v) per parameter, in its dtype",
            TORCH_ADAMW,
            step,
            step_formula,
            MEASURED,
        )
    if optimizer is Optimizer.LION:
        return OptimizerMemory(
            total,
            "one momentum per parameter, in its dtype",
            LION,
            loop_step,
            "2 × the largest tensor (a per-tensor loop)",
            LION,
        )
    if optimizer is Optimizer.ADAMW_8BIT:
        state = sum(_bnb_state(t) for t in tensors)
        return OptimizerMemory(
            state,
            "two 8-bit moments + fp32 absmax per 256 values",
            BNB_8BIT,
            0,
            "fused 8-bit kernels update in place",
            BNB_8BIT,
        )
    # Adafactor: a per-tensor loop that works in fp32; for 16-bit weights it also makes
    # fp32 copies of the weight and its gradient (measured: 4 fp32 copies of the largest
    # tensor for bf16 weights, 2 for fp32 weights).
    state = sum(_adafactor_state(t) for t in tensors)
    copies = 2 if largest.bytes_per_value == 4 else 4
    return OptimizerMemory(
        state,
        "fp32 row and column second moments per matrix, full moments for vectors",
        HF_ADAFACTOR,
        copies * 4 * largest.numel,
        f"{copies} fp32 copies of the largest tensor",
        MEASURED,
    )
