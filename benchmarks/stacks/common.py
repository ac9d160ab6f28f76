"""Shared pieces of the training-stack runs: the model, the inputs and the tracker.

Every run builds the same small Llama-shaped model from a config written here (random
weights, nothing downloaded) and tracks live tensor bytes per process with the accuracy
suite's storage-level tracker, extended for two things the stacks do:

* FSDP2 frees and re-allocates its unsharded parameters with
  ``UntypedStorage.resize_`` (``free_storage`` / ``alloc_storage`` in
  ``torch/distributed/fsdp/_fully_shard/_fsdp_param.py``), which is no aten op, so the
  tracker wraps ``resize_`` to see the change;
* FSDP2's sharded parameters are ``DTensor`` wrappers without storage of their own; the
  tracker counts their inner local tensors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from benchmarks.accuracy.tracker import LiveBytesTracker, storage_bytes

# A few-layer Llama: GQA, gated MLP, RMSNorm, untied head (Llama 3's layout, small).
LLAMA_CONFIG: dict[str, Any] = {
    "vocab_size": 4096,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    "attention_dropout": 0.0,
}
BATCH = 2
SEQ = 128


def build_llama(dtype: torch.dtype = torch.float32, config: dict[str, Any] | None = None) -> Any:
    """The small Llama with seeded random weights, SDPA attention, in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**(config or LLAMA_CONFIG), attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).to(dtype)
    model.train()
    return model


def inputs(rank: int = 0, batch: int = BATCH, seq: int = SEQ) -> dict[str, torch.Tensor]:
    """Token ids and labels (the same tensor, as causal-LM training passes them)."""
    generator = torch.Generator().manual_seed(1234 + rank)
    ids = torch.randint(0, LLAMA_CONFIG["vocab_size"], (batch, seq), generator=generator)
    return {"input_ids": ids, "labels": ids}


class StackTracker(LiveBytesTracker):
    """The live-bytes tracker, seeing ``resize_`` of storages and DTensor locals."""

    def _add(self, tensor: torch.Tensor, origin: str) -> None:
        if is_traceable_wrapper_subclass(tensor):
            names, _ = tensor.__tensor_flatten__()  # type: ignore[attr-defined]
            for name in names:
                inner = getattr(tensor, name)
                if isinstance(inner, torch.Tensor):
                    self._add(inner, origin)
            return
        super()._add(tensor, origin)

    def resized(self, storage: torch.UntypedStorage) -> None:
        """Account for a storage whose size changed in place."""
        record = self.live.get(storage._cdata)
        if record is None:
            return
        nbytes = storage.nbytes()
        if nbytes != record.nbytes:
            from benchmarks.accuracy.tracker import rounded

            self._change(nbytes - record.nbytes, rounded(nbytes) - rounded(record.nbytes))
            record.nbytes = nbytes

    @contextlib.contextmanager
    def watching_resize(self) -> Iterator[None]:
        """Wrap ``UntypedStorage.resize_`` while the block runs."""
        original = torch.UntypedStorage.resize_
        tracker = self

        def resize_(storage: torch.UntypedStorage, size: int) -> Any:
            out = original(storage, size)
            tracker.resized(storage)
            return out

        torch.UntypedStorage.resize_ = resize_  # type: ignore[method-assign]
        try:
            yield
        finally:
            torch.UntypedStorage.resize_ = original  # type: ignore[method-assign]


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor, or the tensor itself."""
    return getattr(tensor, "_local_tensor", tensor)


def param_bytes(model: torch.nn.Module) -> int:
    """Distinct-storage bytes of the parameters this process holds."""
    return storage_bytes(local(p) for p in model.parameters())


def grad_bytes(model: torch.nn.Module) -> int:
    """Distinct-storage bytes of the gradients this process holds."""
    return storage_bytes(local(p.grad) for p in model.parameters() if p.grad is not None)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Distinct-storage bytes of the optimizer's state tensors."""
    tensors = [
        local(v)
        for state in optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    ]
    return storage_bytes(tensors)


def numel(model: torch.nn.Module) -> int:
    """Parameter elements of the whole model (global shapes under FSDP)."""
    return sum(p.numel() for p in model.parameters())


def init_process_group(rank: int, world: int, port: int) -> None:
    """A gloo process group on this machine."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)


def train_steps(
    tracker: StackTracker,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rank: int,
    steps: int = 2,
    autocast: torch.dtype | None = None,
    snapshot: Any = None,
) -> dict[str, Any]:
    """Run ``steps`` full steps; return the last step's phases and component bytes.

    Each step: forward with the loss inside the model (labels passed), backward,
    ``optimizer.step()``, ``zero_grad(set_to_none=True)``, as transformers' Trainer does.
    """
    batch = inputs(rank)
    figures: dict[str, Any] = {}
    for step in range(steps):
        tracker.reset_phases()
        tracker.set_phase("forward")
        ctx = torch.autocast("cpu", dtype=autocast) if autocast else contextlib.nullcontext()
        with ctx:
            loss = model(**batch).loss
        tracker.set_phase("backward")
        loss.backward()
        del loss
        after_backward = {
            "live": tracker.current,
            "grads": grad_bytes(model),
            "params": param_bytes(model),
        }
        if snapshot is not None:
            after_backward |= snapshot()
        tracker.set_phase("optimizer_step")
        optimizer.step()
        tracker.set_phase("zero_grad")
        optimizer.zero_grad(set_to_none=True)
        tracker.set_phase("end")
        figures = {
            "step": step + 1,
            "phases": tracker.phase_report(),
            "after_backward": after_backward,
            "optimizer_state_bytes": state_bytes(optimizer),
            "live_end": tracker.current,
        }
    return figures
