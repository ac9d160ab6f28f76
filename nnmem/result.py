"""What an estimate is: the phases of a step, the components at the peak, the totals.

Every size is an integer number of bytes. :attr:`Estimate.tensor_peak_bytes` is what
``torch.cuda.max_memory_allocated()`` reports, :attr:`Estimate.total_bytes` what
``nvidia-smi`` shows; :meth:`Estimate.allocated_bytes` and :meth:`Estimate.reserved_bytes`
say which overheads PyTorch's own counters include.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from nnmem.scenario import Scenario
from nnmem.terms import Term

SCHEMA_VERSION = 2

# Component keys in display order, with their labels.
COMPONENTS: dict[str, str] = {
    "weights": "Model weights",
    "autocast_copies": "16-bit weight copies",
    "gradients": "Gradients",
    "optimizer_state": "Optimizer state",
    "gathered_weights": "Gathered weights",
    "comm_buffers": "Communication buffers",
    "activations": "Activations",
    "logits": "Logits and loss",
    "kv_cache": "KV cache",
    "temporaries": "Temporaries",
    "compute_buffer": "Compute buffer",
    "output_buffer": "Output buffer",
    "non_torch": "Non-torch memory",
    "outside_share": "Outside vLLM's share",
    "allocator_reserve": "Allocator reserve",
    "cublas_workspace": "cuBLAS workspace",
    "cuda_context": "CUDA context",
}
OVERHEADS = ("allocator_reserve", "cublas_workspace", "cuda_context")
# The overheads PyTorch's own counters include. The cuBLAS workspaces are DataPtrs from the
# caching allocator (aten/src/ATen/cuda/CublasHandlePool.cpp), kept for the life of the
# handle, so memory_allocated counts them; memory_reserved adds the allocator's cached
# blocks; the CUDA context is the driver's, outside PyTorch, seen only by nvidia-smi.
IN_ALLOCATED = ("cublas_workspace",)
IN_RESERVED = ("cublas_workspace", "allocator_reserve")
PHASE_LABELS = {
    "load": "Load",  # the weights and optimizer state, before the first step
    "forward": "Forward",
    "loss": "Loss",
    "backward": "Backward",
    "optimizer_step": "Optimizer step",
    "prefill": "Prefill",
    "decode": "Decode",
    "serve": "Serving",
}


@dataclass(frozen=True)
class Phase:
    """What is live at the peak of one phase of the step."""

    name: str
    terms: tuple[Term, ...]

    @property
    def label(self) -> str:
        """The phase's display name."""
        return PHASE_LABELS[self.name]

    @cached_property  # frozen, its terms a tuple of frozen terms
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

    @cached_property  # frozen, its terms a tuple of frozen terms
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
    saved_activation_bytes: int = 0
    # What only a serving runtime answers (nnmem.runtimes.serve): vLLM's KV capacity and
    # concurrency, llama.cpp's VRAM and RAM, the command lines. None for transformers.
    runtime: Mapping[str, Any] | None = None
    host: tuple[Term, ...] = ()  # host (CPU) memory the training stack keeps
    # The overheads' names on the GPU's platform: ROCm has a HIP context and hipBLASLt
    # workspaces where CUDA has a CUDA context and cuBLAS workspaces.
    overhead_labels: tuple[tuple[str, str], ...] = ()
    # what the training stack keeps in swap files on an NVMe drive (DeepSpeed's offload
    # device nvme), beside host RAM
    nvme: tuple[Term, ...] = ()

    @property
    def host_bytes(self) -> int:
        """Host (CPU) memory beside the GPU figure: what an offloading stack keeps there."""
        return sum(t.bytes for t in self.host)

    @property
    def nvme_bytes(self) -> int:
        """NVMe space beside the GPU figure: the swap files of DeepSpeed's NVMe offload."""
        return sum(t.bytes for t in self.nvme)

    # Computed once per estimate (an answer reads them many times); the dataclass is frozen,
    # so the cached value never goes stale.
    @cached_property
    def peak_phase(self) -> Phase:
        """The phase that holds the most memory (the first, on a tie)."""
        return max(self.phases, key=lambda p: p.bytes)

    @property
    def tensor_peak_bytes(self) -> int:
        """The tensor peak: what ``torch.cuda.max_memory_allocated()`` reports."""
        return self.peak_phase.bytes

    @cached_property
    def total_bytes(self) -> int:
        """Tensors plus overheads: what the GPU needs, as ``nvidia-smi`` counts it."""
        return self.tensor_peak_bytes + sum(t.bytes for t in self.overheads)

    @property
    def allocated_bytes(self) -> int:
        """What ``torch.cuda.max_memory_allocated()`` reports: tensors and cuBLAS workspaces."""
        return self.tensor_peak_bytes + sum(
            t.bytes for t in self.overheads if t.key in IN_ALLOCATED
        )

    @property
    def reserved_bytes(self) -> int:
        """What ``torch.cuda.max_memory_reserved()`` reports: allocated plus the cached blocks."""
        return self.tensor_peak_bytes + sum(t.bytes for t in self.overheads if t.key in IN_RESERVED)

    @cached_property
    def components(self) -> tuple[Component, ...]:
        """The peak's terms grouped by component, overheads last, in display order."""
        live = [*self.peak_phase.terms, *self.overheads]
        sizes = self.component_sizes()
        result = []
        names = dict(self.overhead_labels)
        for key, label in COMPONENTS.items():
            label = names.get(key, label)
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
        return sizes

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
            **({"runtime": dict(self.runtime)} if self.runtime is not None else {}),
            **({"host_bytes": self.host_bytes} if self.host else {}),
            **({"nvme_bytes": self.nvme_bytes} if self.nvme else {}),
        }


def phases_of(*phases: tuple[str, Iterable[Term]]) -> list[Phase]:
    """Phases from (name, terms) pairs, dropping empty terms."""
    return [Phase(name, tuple(t for t in terms if t.bytes)) for name, terms in phases]


def total(terms: Sequence[Term]) -> int:
    """The bytes of several terms together."""
    return sum(t.bytes for t in terms)
