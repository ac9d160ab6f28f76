"""The estimator: ``estimate(scenario) -> Estimate``, integer bytes per component.

Every component carries its formula, the same formula with the scenario's numbers in
it, and the source it comes from; the byte count is computed from those very factors,
so the explanation can never disagree with the number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from nnmem.scenario import Mode, Optimizer, Precision, Scenario

SCHEMA_VERSION = 1

HF_ANATOMY = (
    "Hugging Face Transformers docs, “Model training anatomy” "
    "(docs/source/en/model_memory_anatomy.md): bytes per parameter for weights, "
    "gradients and optimizer states"
)
KORTHIKANTI = (
    "Korthikanti et al. 2022, “Reducing Activation Recomputation in Large Transformer "
    "Models”, arXiv 2205.05198 §4.1 Eq. 1, with memory-efficient attention "
    "(Dao et al. 2022, arXiv 2205.14135 §3.1) storing no s×s scores"
)
INFERENCE_WORKING_SET = (
    "Korthikanti et al. 2022, arXiv 2205.05198 §4.1: the MLP's input (h), up-projection "
    "(4h) and activation (4h) per token; without autograd, PyTorch frees each layer's "
    "tensors before the next layer runs"
)


@dataclass(frozen=True)
class Component:
    """One part of the memory, with the formula that gives it.

    ``formula`` uses symbols (``P × 4 B``); ``substituted`` is the same expression with
    the scenario's numbers (``110,000,000 × 4 B``).
    """

    key: str
    label: str
    bytes: int
    formula: str
    substituted: str
    note: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The component as JSON-ready data."""
        return {
            "key": self.key,
            "label": self.label,
            "bytes": self.bytes,
            "formula": self.formula,
            "substituted": self.substituted,
            "note": self.note,
            "source": self.source,
        }


@dataclass(frozen=True)
class Estimate:
    """The memory a scenario needs, component by component."""

    scenario: Scenario
    components: tuple[Component, ...]
    notes: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        """The sum of all components."""
        return sum(c.bytes for c in self.components)

    @property
    def total_formula(self) -> str:
        """The total as a sum of component labels."""
        return " + ".join(c.label.lower() for c in self.components)

    def component(self, key: str) -> Component:
        """The component called ``key``."""
        for c in self.components:
            if c.key == key:
                return c
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data, scenario included."""
        return {
            "schema_version": SCHEMA_VERSION,
            "scenario": self.scenario.to_dict(),
            "total_bytes": self.total_bytes,
            "total_formula": self.total_formula,
            "components": [c.to_dict() for c in self.components],
            "notes": list(self.notes),
        }


def _bytes_text(size: Fraction) -> str:
    return f"{size.numerator} B" if size.denominator == 1 else f"{float(size):g} B"


def _product(
    key: str,
    label: str,
    factors: Sequence[tuple[str, int]],
    bytes_each: Fraction,
    note: str,
    source: str,
) -> Component:
    """A component equal to the product of named factors times a byte size."""
    count = math.prod(value for _, value in factors)
    return Component(
        key=key,
        label=label,
        bytes=math.ceil(count * bytes_each),
        formula=" × ".join([*(symbol for symbol, _ in factors), _bytes_text(bytes_each)]),
        substituted=" × ".join([*(f"{value:,}" for _, value in factors), _bytes_text(bytes_each)]),
        note=note,
        source=source,
    )


def _none(key: str, label: str, why: str) -> Component:
    return Component(key, label, 0, "0", "0", why, "")


def _weights(s: Scenario) -> Component:
    p = [("P", s.model.params)]
    if s.mode is Mode.INFERENCE:
        bits = s.precision.weight_bits
        note = f"{s.precision.value} weights take {bits} bits each"
        if s.precision in (Precision.INT8, Precision.INT4):
            note += (
                "; quantization scales and the layers real formats keep in 16-bit "
                "(embeddings, norms) are not counted in the simple model"
            )
        return _product("weights", "Model weights", p, Fraction(bits, 8), note, HF_ANATOMY)
    if s.precision is Precision.FP32:
        return _product("weights", "Model weights", p, Fraction(4), "fp32 weights", HF_ANATOMY)
    return _product(
        "weights",
        "Model weights",
        p,
        Fraction(6),
        "fp32 weights that the optimizer updates (4 B) plus the 16-bit copy that "
        "autocast makes for each forward pass (2 B)",
        HF_ANATOMY,
    )


def _gradients(s: Scenario) -> Component:
    if s.mode is Mode.INFERENCE:
        return _none("gradients", "Gradients", "inference runs no backward pass")
    return _product(
        "gradients",
        "Gradients",
        [("P", s.model.params)],
        Fraction(4),
        "one gradient per weight, in the weights' fp32 (autocast keeps the weights fp32)",
        HF_ANATOMY,
    )


def _optimizer_state(s: Scenario) -> Component:
    if s.mode is Mode.INFERENCE:
        return _none("optimizer_state", "Optimizer state", "inference has no optimizer")
    if s.optimizer is Optimizer.SGD:
        return _none("optimizer_state", "Optimizer state", "plain SGD keeps no state")
    p = [("P", s.model.params)]
    if s.optimizer is Optimizer.SGD_MOMENTUM:
        return _product(
            "optimizer_state",
            "Optimizer state",
            p,
            Fraction(4),
            "one fp32 momentum buffer per parameter",
            HF_ANATOMY,
        )
    return _product(
        "optimizer_state",
        "Optimizer state",
        p,
        Fraction(8),
        "two fp32 moments (m and v) per parameter",
        HF_ANATOMY,
    )


def _activations(s: Scenario) -> Component:
    m = s.model
    if s.mode is Mode.INFERENCE:
        # Quantized weights are dequantized to 16-bit for the matmuls, so activations
        # are 16-bit for int8/int4 as for fp16/bf16.
        width = 4 if s.precision is Precision.FP32 else 2
        return _product(
            "activations",
            "Activations",
            [("s", s.seq_len), ("b", s.batch_size), ("h", m.hidden_size)],
            Fraction(9 * width),
            f"one layer's working set at a time: its input, MLP up-projection and "
            f"activation, 9 values per token and hidden unit at {width} B",
            INFERENCE_WORKING_SET,
        )
    if s.precision is Precision.FP32:
        per_value, note = (
            66,
            (
                "per layer and token: 34 bytes per hidden unit at 16-bit, of which 2 are "
                "1-byte dropout masks; fp32 doubles the other 32, giving 66"
            ),
        )
    else:
        per_value, note = (
            34,
            (
                "per layer and token: 34 bytes per hidden unit saved for backward at 16-bit "
                "(inputs of the projections, GeLU and LayerNorms, dropout masks)"
            ),
        )
    return _product(
        "activations",
        "Activations",
        [("L", m.num_layers), ("s", s.seq_len), ("b", s.batch_size), ("h", m.hidden_size)],
        Fraction(per_value),
        note,
        KORTHIKANTI,
    )


def _notes(s: Scenario) -> tuple[str, ...]:
    notes = []
    shown = {
        "hidden_size": f"hidden dimension {s.model.hidden_size:,}",
        "num_layers": f"{s.model.num_layers:,} layers",
    }
    if s.model.derived:
        notes.append(
            "Assumed "
            + " and ".join(shown[key] for key in s.model.derived)
            + " from the parameter count (a layer holds about 12·h² parameters; "
            "h ≈ 128·L); give the real values for exact activations."
        )
    if s.mode is Mode.TRAINING:
        notes.append(
            "The total adds all four parts. PyTorch frees activations during the backward "
            "pass as gradients appear, so the measured peak is usually a little lower."
        )
    notes.append(
        "Not included: the CUDA context and the allocator's cached memory, which "
        "nvidia-smi adds (typically 0.3 to 1.5 GB)."
    )
    return tuple(notes)


def estimate(scenario: Scenario) -> Estimate:
    """Estimate the memory ``scenario`` needs on one GPU.

    BERT-base training in fp32 with Adam, batch 32, sequence 128 (the weights, gradients
    and optimizer state are 4 + 4 + 8 bytes per parameter):

    >>> from nnmem.scenario import GenericModel
    >>> e = estimate(Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128))
    >>> [(c.key, c.bytes) for c in e.components]  # doctest: +NORMALIZE_WHITESPACE
    [('weights', 440000000), ('gradients', 440000000), ('optimizer_state', 880000000),
     ('activations', 2491416576)]
    >>> e.component("activations").substituted
    '12 × 128 × 32 × 768 × 66 B'
    """
    components = (
        _weights(scenario),
        _gradients(scenario),
        _optimizer_state(scenario),
        _activations(scenario),
    )
    return Estimate(scenario=scenario, components=components, notes=_notes(scenario))
