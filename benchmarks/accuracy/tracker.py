"""Trackers that count the bytes of live tensors during a training or inference step.

Two independent trackers run side by side and must agree:

* ``LiveBytesTracker``: a small ``TorchDispatchMode`` written here. It maps each
  storage (by identity) to its size when an aten op first returns it, and drops it
  when the storage is freed (``weakref.finalize``). It keeps the running total, the
  overall peak and a peak per named phase (forward, loss, backward, ...).
* ``PhaseMemTracker``: PyTorch's own ``MemTracker``
  (``torch/distributed/_tools/mem_tracker.py``), which uses the same storage rule and
  additionally sorts the bytes into parameters, buffers, gradients, activations,
  temporaries and optimizer state.

Both only see tensors returned by aten ops (or registered by hand), so they measure
what ``torch.cuda.max_memory_allocated`` would report before the caching allocator's
512-byte rounding, not memory that a kernel allocates privately.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# The CUDA caching allocator rounds every block up to a multiple of 512 bytes
# (kMinBlockSize in c10/cuda/CUDACachingAllocator.cpp); MemTracker applies the same
# rule to CUDA tensors. We keep a second, rounded total to show the effect on CPU runs.
CUDA_BLOCK_BYTES = 512

# Attention-related aten ops whose call counts tell which kernel path ran.
# The math fallback of SDPA is a composite op, so it shows up as _safe_softmax /
# bmm / dropout ops rather than under its own name.
ATTENTION_OPS = (
    "aten._scaled_dot_product_flash_attention_for_cpu.default",
    "aten._scaled_dot_product_flash_attention.default",
    "aten._scaled_dot_product_efficient_attention.default",
    "aten._scaled_dot_product_cudnn_attention.default",
    "aten._safe_softmax.default",
    "aten._softmax.default",
    "aten.native_dropout.default",
    "aten.bmm.default",
    "aten.baddbmm.default",
    "aten._grouped_mm.default",
)

# Category names used in measured.json for MemTracker's reference types.
MEMTRACKER_CATEGORIES = {
    _MemRefType.PARAM: "parameters",
    _MemRefType.BUFFER: "buffers",
    _MemRefType.GRAD: "gradients",
    _MemRefType.ACT: "activations",
    _MemRefType.TEMP: "temporaries",
    _MemRefType.OPT: "optimizer_state",
    _MemRefType.OTH: "other",
}


def storage_key(tensor: torch.Tensor) -> int:
    """Return an identity for the tensor's storage, shared by all views of it."""
    return tensor.untyped_storage()._cdata


def rounded(nbytes: int) -> int:
    """Round a storage size up the way the CUDA caching allocator does."""
    return -(-nbytes // CUDA_BLOCK_BYTES) * CUDA_BLOCK_BYTES


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Sum the bytes of the distinct storages behind ``tensors``."""
    seen: dict[int, int] = {}
    for tensor in tensors:
        seen[storage_key(tensor)] = tensor.untyped_storage().nbytes()
    return sum(seen.values())


@dataclass
class PhaseStats:
    """Live bytes at the start, end and peak of one phase of a step."""

    start: int
    peak: int
    end: int = 0
    peak_rounded: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "start_bytes": self.start,
            "peak_bytes": self.peak,
            "end_bytes": self.end,
            "peak_bytes_rounded_512": self.peak_rounded,
        }


@dataclass
class StorageRecord:
    """One live storage: its size and where it came from."""

    nbytes: int
    origin: str  # "param", "buffer", "external", "op" or "param_cast"


class LiveBytesTracker(TorchDispatchMode):
    """Count live tensor bytes by storage identity, with per-phase peaks.

    A ``TorchDispatchMode`` sees every aten op after autograd, so composite ops are
    already decomposed and each intermediate tensor is counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, StorageRecord] = {}
        self.current = 0
        self.current_rounded = 0
        self.phase = "setup"
        self.phases: dict[str, PhaseStats] = {}
        self.op_counts: Counter = Counter()
        self._finalizers: list[weakref.finalize] = []

    # Registration -------------------------------------------------------------

    def register(self, tensor: torch.Tensor, origin: str = "external") -> None:
        """Start counting a tensor that was created before the tracker was entered."""
        self._add(tensor, origin)

    def register_module(self, module: torch.nn.Module) -> None:
        """Count a module's parameters and buffers."""
        for param in module.parameters():
            self._add(param, "param")
        for buffer in module.buffers():
            self._add(buffer, "buffer")

    def keys_with_origin(self, *origins: str) -> set[int]:
        """Return the storage keys whose origin is one of ``origins``."""
        return {key for key, rec in self.live.items() if rec.origin in origins}

    def origin_of(self, tensor: torch.Tensor) -> str | None:
        """Return where a live tensor's storage came from, or None if untracked."""
        record = self.live.get(storage_key(tensor))
        return record.origin if record else None

    # Phases ------------------------------------------------------------------

    def set_phase(self, name: str) -> None:
        """Close the current phase and open ``name``; its peak starts at the live total."""
        if self.phase in self.phases:
            self.phases[self.phase].end = self.current
        self.phase = name
        self.phases[name] = PhaseStats(
            start=self.current, peak=self.current, peak_rounded=self.current_rounded
        )

    def reset_phases(self) -> None:
        """Forget all phase statistics (used between the two training steps)."""
        self.phases = {}
        self.phase = "setup"
        self.op_counts = Counter()

    def peak(self) -> tuple[int, str]:
        """Return the highest live total seen and the phase that held it."""
        name, stats = max(self.phases.items(), key=lambda item: item[1].peak)
        return stats.peak, name

    def peak_rounded(self) -> int:
        """Return the peak with every storage rounded up to 512 bytes."""
        return max(stats.peak_rounded for stats in self.phases.values())

    def phase_peaks(self, rounded_512: bool = False) -> dict[str, int]:
        """Return each phase's peak, optionally with 512-byte rounding."""
        return {
            name: stats.peak_rounded if rounded_512 else stats.peak
            for name, stats in self.phases.items()
        }

    def phase_report(self) -> dict[str, dict[str, int]]:
        """Return start, peak and end bytes of every phase seen."""
        if self.phase in self.phases:
            self.phases[self.phase].end = self.current
        return {name: stats.as_dict() for name, stats in self.phases.items()}

    # Bookkeeping -------------------------------------------------------------

    def _add(self, tensor: torch.Tensor, origin: str) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        nbytes = storage.nbytes()
        record = self.live.get(key)
        if record is not None:
            # A storage can grow in place (resize_ from an out= op); count the change.
            if record.nbytes != nbytes:
                self._change(nbytes - record.nbytes, rounded(nbytes) - rounded(record.nbytes))
                record.nbytes = nbytes
            return
        self.live[key] = StorageRecord(nbytes, origin)
        self._finalizers.append(weakref.finalize(storage, self._free, key))
        self._change(nbytes, rounded(nbytes))

    def _free(self, key: int) -> None:
        record = self.live.pop(key, None)
        if record is not None:
            self._change(-record.nbytes, -rounded(record.nbytes))

    def _change(self, delta: int, delta_rounded: int) -> None:
        self.current += delta
        self.current_rounded += delta_rounded
        stats = self.phases.get(self.phase)
        if stats is None:
            return
        stats.peak = max(stats.peak, self.current)
        stats.peak_rounded = max(stats.peak_rounded, self.current_rounded)

    def close(self) -> None:
        """Detach all free callbacks so that late frees no longer touch this tracker."""
        for finalizer in self._finalizers:
            finalizer.detach()
        self._finalizers.clear()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func)
        if name in ATTENTION_OPS:
            self.op_counts[name] += 1
        # Autocast casts each parameter with aten._to_copy; mark the copy so that the
        # saved-tensor report can list autocast weight copies separately.
        origin = "op"
        if (
            func is torch.ops.aten._to_copy.default
            and isinstance(args[0], torch.Tensor)
            and self.origin_of(args[0]) == "param"
        ):
            origin = "param_cast"
        for leaf in tree_flatten(out)[0]:
            if isinstance(leaf, torch.Tensor):
                self._add(leaf, origin)
        return out


class PhaseMemTracker(MemTracker):
    """PyTorch's MemTracker with a resettable peak and support for frozen parameters.

    ``MemTracker._track_module_params_and_buffers`` registers a gradient hook on every
    parameter, which raises for parameters that do not require grad (the frozen base
    of a LoRA model). Here hooks go only on trainable parameters.
    """

    def _track_module_params_and_buffers(
        self, module: torch.nn.Module, install_grad_hooks: bool = True
    ) -> tuple[int, int]:
        memory = super()._track_module_params_and_buffers(module, install_grad_hooks=False)
        if install_grad_hooks:
            for param in module.parameters():
                if param.requires_grad and param not in self._param_to_grad_hook_handles:
                    self._param_to_grad_hook_handles[param] = self._grad_hooks(param)
        return memory

    def _grad_hooks(self, param: torch.nn.Parameter) -> tuple[Any, Any]:
        """Register the same two gradient hooks that MemTracker would."""

        def on_grad(grad: torch.Tensor) -> None:
            self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

        return (
            param.register_hook(on_grad),
            param.register_post_accumulate_grad_hook(lambda p: on_grad(p.grad)),
        )

    def _update_peak_stats(self, peak_state: Any) -> None:
        """Update only the global peak snapshot.

        MemTracker also keeps a peak per module, looping over every module after
        every op; that loop dominated the run time of the larger models, and the
        per-module figures are not reported here.
        """
        for dev, dev_snap in self._curr_mem_snap.items():
            if self._peak_mem.get(dev, 0) < dev_snap["Total"]:
                self._peak_mem[dev] = dev_snap["Total"]
                self._peak_mem_snap[dev] = dict(dev_snap)

    def reset_peak(self) -> None:
        """Restart peak tracking from the current live total."""
        self._peak_mem_snap = self.get_tracker_snapshot()
        self._peak_mem = {dev: snap["Total"] for dev, snap in self._peak_mem_snap.items()}

    def peak_categories(self) -> dict[str, int]:
        """Return the category breakdown at the peak, summed over devices."""
        return _categories(self.get_tracker_snapshot("peak"))

    def current_categories(self) -> dict[str, int]:
        """Return the category breakdown of what is live now."""
        return _categories(self.get_tracker_snapshot("current"))


def _categories(snapshot: dict[torch.device, dict[Any, int]]) -> dict[str, int]:
    totals = dict.fromkeys(MEMTRACKER_CATEGORIES.values(), 0)
    totals["total"] = 0
    for dev_snap in snapshot.values():
        for reftype, nbytes in dev_snap.items():
            name = MEMTRACKER_CATEGORIES.get(reftype, "total")
            totals[name] += nbytes
    return totals


@dataclass
class SavedTensor:
    """One storage that autograd packed for backward."""

    nbytes: int
    dtype: str
    shape: list[int]
    phase: str
    kind: str  # "activation", "autocast_weight_copy" or "model_input"


@dataclass
class SavedTensorRecorder:
    """Record what autograd saves for backward, de-duplicated by storage.

    Uses ``torch.autograd.graph.saved_tensors_hooks``: the pack hook sees every tensor
    autograd saves and returns it unchanged, so memory behaves as without the hook.
    Parameters and buffers are excluded (a saved ``weight.t()`` is a view of the
    parameter); autocast's bf16 copies of parameters and the model's own inputs (token
    ids, images), which exist anyway, are kept apart.
    """

    live: LiveBytesTracker
    saved: dict[int, SavedTensor] = field(default_factory=dict)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = storage_key(tensor)
        origin = self.live.origin_of(tensor)
        if key not in self.saved and origin not in ("param", "buffer"):
            kinds = {"param_cast": "autocast_weight_copy", "input": "model_input"}
            kind = kinds.get(origin, "activation")
            self.saved[key] = SavedTensor(
                nbytes=tensor.untyped_storage().nbytes(),
                dtype=str(tensor.dtype).removeprefix("torch."),
                shape=list(tensor.shape),
                phase=self.live.phase,
                kind=kind,
            )
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Install the pack/unpack hooks for the duration of the block."""
        with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
            yield

    def report(self) -> dict[str, Any]:
        """Summarise the saved storages by kind, phase and dtype."""
        activations = [s for s in self.saved.values() if s.kind == "activation"]
        casts = [s for s in self.saved.values() if s.kind == "autocast_weight_copy"]
        by_phase: Counter = Counter()
        by_dtype: Counter = Counter()
        for item in activations:
            by_phase[item.phase] += item.nbytes
            by_dtype[item.dtype] += item.nbytes
        loss_items = sorted((s for s in activations if s.phase == "loss"), key=lambda s: -s.nbytes)
        return {
            "activation_bytes": sum(s.nbytes for s in activations),
            "activation_storages": len(activations),
            "activation_bytes_by_phase": dict(sorted(by_phase.items())),
            "activation_bytes_by_dtype": dict(sorted(by_dtype.items())),
            "autocast_weight_copy_bytes": sum(s.nbytes for s in casts),
            "autocast_weight_copies": len(casts),
            "model_input_bytes": sum(
                s.nbytes for s in self.saved.values() if s.kind == "model_input"
            ),
            "loss_saved": [
                {"bytes": s.nbytes, "dtype": s.dtype, "shape": s.shape} for s in loss_items
            ],
        }


@dataclass
class CheckpointInputRecorder:
    """Record the distinct tensors handed to checkpointed layers.

    With non-reentrant activation checkpointing (transformers' default,
    ``use_reentrant=False``), ``torch.utils.checkpoint`` installs its own saved-tensor
    hooks inside each layer, so ``SavedTensorRecorder`` sees nothing there. What stays
    alive is each layer's input, held by the checkpoint's closure. transformers calls
    ``module._gradient_checkpointing_func(partial(forward, self, **kwargs), *args)``
    (``GradientCheckpointingLayer`` in ``transformers/modeling_layers.py``), so wrapping
    that function shows the positional inputs and the tensors bound into the partial.
    """

    live: LiveBytesTracker
    inputs: dict[int, int] = field(default_factory=dict)
    calls: int = 0

    def wrap(self, model: torch.nn.Module) -> int:
        """Wrap every checkpointed layer's function; return how many were wrapped."""
        count = 0
        for module in model.modules():
            func = getattr(module, "_gradient_checkpointing_func", None)
            if func is not None and getattr(module, "gradient_checkpointing", False):
                module._gradient_checkpointing_func = self._recording(func)
                count += 1
        return count

    def _recording(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def checkpoint_and_record(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            bound = getattr(function, "keywords", {}) or {}
            for leaf in tree_flatten((args, kwargs, bound))[0]:
                if isinstance(leaf, torch.Tensor) and self.live.origin_of(leaf) not in (
                    "param",
                    "buffer",
                ):
                    self.inputs[storage_key(leaf)] = leaf.untyped_storage().nbytes()
            self.calls += 1
            return func(function, *args, **kwargs)

        return checkpoint_and_record

    def report(self, saved: SavedTensorRecorder) -> dict[str, int]:
        """Return the bytes of checkpointed-layer inputs and their overlap with saved tensors."""
        overlap = sum(n for key, n in self.inputs.items() if key in saved.saved)
        return {
            "checkpointed_calls": self.calls,
            "checkpointed_input_bytes": sum(self.inputs.values()),
            "checkpointed_input_storages": len(self.inputs),
            "checkpointed_input_bytes_also_saved": overlap,
        }
