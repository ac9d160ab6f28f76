"""The estimator: ``estimate(scenario) -> Estimate``, integer bytes per component.

A training step is four phases (forward, loss, backward, optimizer step) and inference
two (prefill, decode). Each phase lists the terms live at its own peak; the estimate's
peak is the largest phase, and its components are that phase's terms grouped by kind.
On top of the tensors come the overheads ``nvidia-smi`` also counts: the caching
allocator's reserve, the cuBLAS workspaces and the CUDA context.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from nnmem.errors import NnmemError
from nnmem.scenario import Mode, Scenario
from nnmem.terms import Term, fixed, product

SCHEMA_VERSION = 2

# Component keys in display order, with their labels.
COMPONENTS: dict[str, str] = {
    "weights": "Model weights",
    "autocast_copies": "16-bit weight copies",
    "gradients": "Gradients",
    "optimizer_state": "Optimizer state",
    "activations": "Activations",
    "logits": "Logits and loss",
    "kv_cache": "KV cache",
    "temporaries": "Temporaries",
    "allocator_reserve": "Allocator reserve",
    "cublas_workspace": "cuBLAS workspace",
    "cuda_context": "CUDA context",
}
OVERHEADS = ("allocator_reserve", "cublas_workspace", "cuda_context")
PHASE_LABELS = {
    "forward": "Forward",
    "loss": "Loss",
    "backward": "Backward",
    "optimizer_step": "Optimizer step",
    "prefill": "Prefill",
    "decode": "Decode",
}

CONTEXT_SOURCE = (
    "Measured (benchmarks/accuracy/measured_cuda.json): process memory outside PyTorch's "
    "pool was 615 MiB right after CUDA initialisation and 678-762 MiB (median 742) once "
    "cuBLAS, cuDNN and the attention kernels had loaded, in 32 runs on an NVIDIA H200 with "
    "torch 2.11 and CUDA 13.0; PyTorch PR #86509 gives 287 MB with lazy module loading "
    "before any library kernel loads. Other GPUs, drivers and libraries differ: editable"
)
CUBLAS_SOURCE = (
    "PyTorch aten/src/ATen/cuda/CublasHandlePool.cpp: one workspace per cuBLAS handle and "
    "stream, 4096·1024·2 + 16·1024·8 B (32 MiB on Hopper and newer); the backward pass "
    "runs on the autograd engine's own thread, so training holds two"
)
ALLOCATOR_SOURCE = (
    "PyTorch caching allocator: blocks rounded to 512 B and cached segments show in "
    "max_memory_reserved; measured reserve over allocated was 3-13% in Hugging Face's "
    "single-GPU guide (transformers docs perf_train_gpu_one, v4.21); editable"
)


@dataclass(frozen=True)
class Phase:
    """What is live at the peak of one phase of the step."""

    name: str
    terms: tuple[Term, ...]

    @property
    def label(self) -> str:
        """The phase's display name."""
        return PHASE_LABELS[self.name]

    @property
    def bytes(self) -> int:
        """Live tensor bytes at the phase's peak."""
        return sum(t.bytes for t in self.terms)

    def by_key(self) -> dict[str, int]:
        """Live bytes per component key."""
        totals: dict[str, int] = {}
        for t in self.terms:
            totals[t.key] = totals.get(t.key, 0) + t.bytes
        return totals


@dataclass(frozen=True)
class Component:
    """One kind of memory at the peak, with the terms that make it up."""

    key: str
    label: str
    terms: tuple[Term, ...]
    size: int  # the largest it gets in any phase
    note: str = ""

    @property
    def bytes(self) -> int:
        """Bytes live at the peak."""
        return sum(t.bytes for t in self.terms)

    def to_dict(self) -> dict[str, Any]:
        """The component as JSON-ready data."""
        return {
            "key": self.key,
            "label": self.label,
            "bytes": self.bytes,
            "size": self.size,
            "note": self.note,
            "terms": [
                {
                    "label": t.label,
                    "bytes": t.bytes,
                    "formula": t.formula,
                    "substituted": t.substituted,
                    "source": t.source,
                }
                for t in self.terms
            ],
        }


@dataclass(frozen=True)
class Estimate:
    """The memory a scenario needs on one GPU, at its peak, component by component."""

    scenario: Scenario
    phases: tuple[Phase, ...]
    overheads: tuple[Term, ...]
    notes: tuple[str, ...]
    # Sizes that no single phase shows whole (gradients appear as activations go).
    sizes: dict[str, int] = field(default_factory=dict)
    saved_activation_bytes: int = 0

    @property
    def peak_phase(self) -> Phase:
        """The phase that holds the most memory (the first, on a tie)."""
        return max(self.phases, key=lambda p: p.bytes)

    @property
    def tensor_peak_bytes(self) -> int:
        """The tensor peak: what ``torch.cuda.max_memory_allocated()`` reports."""
        return self.peak_phase.bytes

    @property
    def total_bytes(self) -> int:
        """Tensors plus overheads: what the GPU needs, as ``nvidia-smi`` counts it."""
        return self.tensor_peak_bytes + sum(t.bytes for t in self.overheads)

    @property
    def components(self) -> tuple[Component, ...]:
        """The peak's terms grouped by component, overheads last, in display order."""
        live = [*self.peak_phase.terms, *self.overheads]
        sizes = self.component_sizes()
        result = []
        for key, label in COMPONENTS.items():
            terms = tuple(t for t in live if t.key == key)
            if terms or sizes.get(key):
                result.append(Component(key, label, terms, sizes.get(key, 0)))
        return tuple(result)

    def component_sizes(self) -> dict[str, int]:
        """The largest each component gets in any phase."""
        sizes: dict[str, int] = {}
        for phase in self.phases:
            for key, n in phase.by_key().items():
                sizes[key] = max(sizes.get(key, 0), n)
        for t in self.overheads:
            sizes[t.key] = sizes.get(t.key, 0) + t.bytes
        return sizes | self.sizes

    def component(self, key: str) -> Component:
        """The component called ``key``."""
        for c in self.components:
            if c.key == key:
                return c
        raise KeyError(key)

    @property
    def total_formula(self) -> str:
        """The total as a sum of the labels of the components present."""
        return " + ".join(c.label.lower() for c in self.components if c.bytes)

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data, scenario included."""
        return {
            "schema_version": SCHEMA_VERSION,
            "scenario": self.scenario.to_dict(),
            "total_bytes": self.total_bytes,
            "tensor_peak_bytes": self.tensor_peak_bytes,
            "peak_phase": self.peak_phase.name,
            "per_gpu": self.scenario.num_gpus > 1,
            "components": [c.to_dict() for c in self.components],
            "phases": [
                {"name": p.name, "label": p.label, "bytes": p.bytes, "by_component": p.by_key()}
                for p in self.phases
            ],
            "notes": list(self.notes),
        }


# --- overheads outside the tensors ---------------------------------------------------------

HOPPER_OR_NEWER = ("h100", "h200", "gh200", "b200", "b100", "gb200")


def overheads(scenario: Scenario, tensor_peak: int, gpu_id: str | None = None) -> list[Term]:
    """The allocator reserve, the cuBLAS workspaces and the CUDA context."""
    percent = Fraction(scenario.allocator_overhead_percent)
    reserve = Term(
        "allocator_reserve",
        "cached blocks and rounding",
        int(tensor_peak * percent / 100),
        f"{percent}% of the tensor peak",
        f"{percent}% × {tensor_peak:,} B",
        ALLOCATOR_SOURCE,
    )
    hopper = gpu_id is not None and gpu_id.startswith(HOPPER_OR_NEWER)
    each = 4096 * 8 * 1024 if hopper else 4096 * 1024 * 2 + 16 * 1024 * 8
    handles = 2 if scenario.mode is Mode.TRAINING else 1
    workspace = product(
        "cublas_workspace",
        "cuBLAS workspace per handle",
        [("handles", handles)],
        each,
        CUBLAS_SOURCE,
    )
    context = product(
        "cuda_context",
        "CUDA context and loaded kernels",
        [("MiB", scenario.cuda_context_mib)],
        2**20,
        CONTEXT_SOURCE,
    )
    return [t for t in (reserve, workspace, context) if t.bytes]


def estimate(scenario: Scenario, gpu_id: str | None = None) -> Estimate:
    """Estimate the memory ``scenario`` needs on one GPU.

    BERT-base training in fp32 with Adam, batch 32, sequence 128: weights, gradients and
    optimizer state are 4 + 4 + 8 bytes per parameter.

    >>> from nnmem.scenario import GenericModel
    >>> e = estimate(Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128))
    >>> {k: e.component_sizes()[k] for k in ("weights", "gradients", "optimizer_state")}
    {'weights': 440000000, 'gradients': 440000000, 'optimizer_state': 880000000}
    """
    from nnmem import engines  # the per-model builders

    build = engines.builder(scenario)
    phases, notes, sizes, saved = build(scenario)
    if not phases:
        raise NnmemError.single("model", "This model gives no memory to estimate.")
    peak = max(p.bytes for p in phases)
    return Estimate(
        scenario=scenario,
        phases=tuple(phases),
        overheads=tuple(overheads(scenario, peak, gpu_id)),
        notes=tuple(notes),
        sizes=sizes,
        saved_activation_bytes=saved,
    )


def phases_of(*phases: tuple[str, Iterable[Term]]) -> list[Phase]:
    """Phases from (name, terms) pairs, dropping empty terms."""
    return [Phase(name, tuple(t for t in terms if t.bytes)) for name, terms in phases]


def total(terms: Sequence[Term]) -> int:
    """The bytes of several terms together."""
    return sum(t.bytes for t in terms)


__all__ = ["Component", "Estimate", "Phase", "Term", "estimate", "fixed", "phases_of", "total"]
