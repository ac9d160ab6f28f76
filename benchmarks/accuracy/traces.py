"""Record the order of storage births and deaths of an accuracy case, for allocator replay.

A CUDA run of a case goes through the caching allocator once per storage: one
``malloc`` when an op first returns it and one ``free`` when it dies. The
``LiveBytesTracker`` of ``tracker.py`` already sees both, in op order, on the CPU under
fake tensors. ``TraceRecorder`` adds a log of them, from the first tensor the CUDA run
makes (the model's parameters while it is built) to the end of the last step, and
marks the moments the CUDA run resets its peak counters, so that a replay through
``nnmem.allocator`` can be compared with ``max_memory_reserved()`` step by step.

The trace is a flat list, small once gzipped:

* an ``int >= 0`` allocates the next storage id (0, 1, 2, ... in birth order) with that
  many bytes (the storage's ``nbytes``, what ``CUDACachingAllocator::malloc`` is asked);
* an ``int < 0`` frees storage ``-value - 1``;
* ``"phase:NAME"`` starts a phase (``setup``, ``forward``, ``loss``, ``backward``,
  ``optimizer_step``, ``zero_grad``, ``prefill``, ``decode``, ...) and
  ``"reset:LABEL"`` is where ``CudaCounters.start()`` reset the peaks;
* ``"layer:N"`` is where the N-th repeated block (a transformers decoder or encoder
  layer) starts its forward, or its recomputation under checkpointing;
* ``"op:NAME"`` follows the outputs of an op that runs a cuBLAS, cuDNN or fused
  attention kernel on a GPU: where such a kernel's own working memory would go.

Zero-byte storages are left out: ``CUDACachingAllocator::allocate`` returns a null
pointer for them without calling ``malloc``.

Usage (from the repository root, in the accuracy venv)::

    python -m benchmarks.accuracy.traces            # every case measured on CUDA
    python -m benchmarks.accuracy.traces --only gpt2-small.train.fp32.adamw.eager.b4
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import runner
from .cases import Case, all_cases
from .measure import quiet_libraries
from .tracker import LiveBytesTracker, StorageRecord, storage_key

HERE = Path(__file__).resolve().parent
TRACE_DIR = HERE / "traces"
CUDA_MEASUREMENTS = HERE / "measured_cuda.json"

# Ops whose CUDA kernels take working memory of their own from the caching allocator
# (cuBLAS/cuBLASLt matmuls, cuDNN convolutions, fused attention), named as they run
# under fake tensors on the CPU.
KERNEL_OPS = {
    "aten.mm.default",
    "aten.addmm.default",
    "aten.bmm.default",
    "aten.baddbmm.default",
    "aten._grouped_mm.default",
    "aten.convolution.default",
    "aten.convolution_backward.default",
    "aten._scaled_dot_product_flash_attention_for_cpu.default",
    "aten._scaled_dot_product_flash_attention_for_cpu_backward.default",
}


class TraceRecorder(LiveBytesTracker):
    """``LiveBytesTracker`` that also logs every birth, death, phase and kernel op."""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[int | str] = []
        self.ids: dict[int, int] = {}  # storage key -> trace id
        self.birth_at: dict[int, int] = {}  # storage key -> index of its birth in trace
        self.next_id = 0

    def set_phase(self, name: str) -> None:
        super().set_phase(name)
        self.trace.append(f"phase:{name}")

    def mark_layers(self, model: torch.nn.Module) -> None:
        """Log ``layer:N`` when the N-th repeated block (a transformers layer) starts.

        Forward pre-hooks only: they fire in forward and in the recomputation of a
        checkpointed layer, and change nothing that autograd keeps.
        """
        from transformers.modeling_layers import GradientCheckpointingLayer

        layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        for index, layer in enumerate(layers):
            layer.register_forward_pre_hook(
                lambda module, args, i=index: self.trace.append(f"layer:{i}")
            )

    def mark(self, label: str) -> None:
        """Log a labelled moment (a peak-counter reset of the CUDA run)."""
        self.trace.append(f"reset:{label}")

    def _birth(self, key: int, nbytes: int) -> None:
        if nbytes == 0:
            return
        self.ids[key] = self.next_id
        self.birth_at[key] = len(self.trace)
        self.trace.append(nbytes)
        self.next_id += 1

    def _death(self, key: int) -> None:
        self.birth_at.pop(key, None)
        ident = self.ids.pop(key, None)
        if ident is not None:
            self.trace.append(-ident - 1)

    def _add(self, tensor: torch.Tensor, origin: str, cuda_nbytes: int | None = None) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        nbytes = storage.nbytes() if cuda_nbytes is None else cuda_nbytes
        record = self.live.get(key)
        if record is not None and record.nbytes != storage.nbytes():
            # A storage resized in place (an out= op): CUDA allocates the new block,
            # copies, then frees the old one.
            old = self.ids.get(key)
            self._birth(key, nbytes)
            if old is not None:
                self.trace.append(-old - 1)
        elif record is None:
            self._birth(key, nbytes)
        super()._add(tensor, origin)

    def _free(self, key: int) -> None:
        if key in self.live:
            self._death(key)
        super()._free(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is not torch.ops.aten.native_dropout.default:
            out = super().__torch_dispatch__(func, types, args, kwargs)
        else:
            # The CPU kernel returns its mask in the input's dtype; the CUDA kernel
            # makes it bool, one byte per element (dropout_cuda in
            # aten/src/ATen/native/cuda/Dropout.cu: at::empty_like(self, kBool)).
            out = func(*args, **(kwargs or {}))
            self.op_counts[str(func)] += 1
            result, mask = out
            self._add(result, "op")
            self._add(mask, "op", cuda_nbytes=mask.numel())
        if func is torch.ops.aten.bernoulli_.float:
            # Dropout on the CPU (_dropout_impl in aten/src/ATen/native/Dropout.cpp) draws
            # its noise into empty_like(input) with bernoulli_ and keeps that tensor for
            # backward; on a GPU, dropout() takes the fused native_dropout, whose mask
            # is bool (dropout_cuda in aten/src/ATen/native/cuda/Dropout.cu). The noise
            # is the mask: give its birth the bool size.
            noise = args[0]
            at = self.birth_at.get(storage_key(noise))
            if at is not None:
                self.trace[at] = noise.numel()
        name = str(func)
        if name in KERNEL_OPS:
            self.trace.append(f"op:{name.removeprefix('aten.').removesuffix('.default')}")
        return out


LOWER_PRECISION = {torch.bfloat16, torch.float16}


@contextmanager
def cuda_autocast_ops() -> Iterator[None]:
    """Make two ops take CUDA autocast's path under the CPU's autocast.

    ``aten/src/ATen/autocast_mode.cpp`` gives CUDA and CPU different op lists:

    * ``pow`` is on CUDA's fp32 list (its bf16 inputs are cast to fp32 first) and on
      none of the CPU's, so GPT-2's tanh-GELU (``torch.pow(x, 3.0)``) saves an fp32
      copy and computes the rest in fp32 on a GPU only. Here the cast is made by hand.
    * ``cross_entropy_loss`` is on the CPU's fp32 list (the logits are cast to fp32
      before it) and on none of CUDA's, where the composite op runs as written in
      ``aten/src/ATen/native/LossNLL.cpp``: ``log_softmax`` in the logits' own dtype,
      then ``nll_loss``, which is on CUDA's fp32 list and casts that log-softmax to
      fp32. Here ``cross_entropy`` is replaced by those two calls; ``nll_loss`` is on
      the CPU's fp32 list too, so the cast happens as on CUDA.

    The functions are replaced (not intercepted by a mode) so that the recomputation of
    checkpointed layers in backward takes the same path as their forward.
    """
    saved = (torch.pow, torch.Tensor.pow, torch.Tensor.__pow__, F.cross_entropy)

    def lower(value: Any) -> bool:
        return (
            torch.is_autocast_enabled("cpu")
            and isinstance(value, torch.Tensor)
            and value.dtype in LOWER_PRECISION
        )

    def pow_as_cuda(original: Any) -> Any:
        def wrapped(base: Any, *args: Any, **kwargs: Any) -> Any:
            return original(base.float() if lower(base) else base, *args, **kwargs)

        return wrapped

    def cross_entropy(input: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if lower(input):
            return cross_entropy_as_cuda(input, *args, **kwargs)
        return saved[3](input, *args, **kwargs)

    torch.pow = pow_as_cuda(saved[0])
    torch.Tensor.pow = pow_as_cuda(saved[1])  # type: ignore[method-assign]
    torch.Tensor.__pow__ = pow_as_cuda(saved[2])  # type: ignore[method-assign]
    F.cross_entropy = cross_entropy
    try:
        yield
    finally:
        torch.pow, torch.Tensor.pow, torch.Tensor.__pow__, F.cross_entropy = saved


def cross_entropy_as_cuda(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``cross_entropy_loss`` (LossNLL.cpp) for class-index targets: log_softmax, nll_loss."""
    if label_smoothing or size_average is not None or reduce is not None:
        raise NotImplementedError("only the default cross_entropy arguments are emulated")
    class_dim = 0 if input.dim() == 1 else 1
    log_probs = torch.log_softmax(input, class_dim, dtype=input.dtype)
    return F.nll_loss(log_probs, target, weight, ignore_index=ignore_index, reduction=reduction)


def cuda_case_ids() -> list[str]:
    """The ids of the cases measured on the GPU, without their ``.cuda`` suffix."""
    data = json.loads(CUDA_MEASUREMENTS.read_text())
    return sorted(c["id"].removesuffix(".cuda") for c in data["cases"])


class _Reuse:
    """Stands in for ``LiveBytesTracker`` in ``runner``: hands back the live recorder."""

    def __init__(self, recorder: TraceRecorder) -> None:
        self.recorder = recorder

    def __call__(self) -> TraceRecorder:
        return self.recorder


class _Counters(runner.CudaCounters):
    """``CudaCounters`` that marks its peak resets in the trace."""

    def __init__(self, recorder: TraceRecorder) -> None:
        super().__init__("cpu")
        self.recorder = recorder

    def start(self) -> None:
        self.recorder.mark("start")


def record_case(case: Case) -> dict[str, Any]:
    """Run ``case`` as the CUDA run does, from model construction on; return its trace.

    ``runner.run_training`` / ``run_inference`` build the model, the inputs and the
    optimizer before their tracker starts; here the recorder is entered first, so the
    parameters' births are in the trace in the order the GPU allocates them.
    """
    case_id = case.id
    if case.attn_implementation == "sdpa" and case.attention_dropout > 0:
        # CPU SDPA takes no dropout and falls back to the math kernel, which keeps the
        # scores, the mask and the dropped probabilities. CUDA's memory-efficient kernel
        # applies dropout inside the kernel and regenerates the mask from its RNG seed
        # in backward (_efficient_attention_forward/backward in
        # aten/src/ATen/native/transformers/cuda/attention.cu, attention_backward.cu), so
        # it keeps what it keeps without dropout; the H200 runs of GPT-2 with attention
        # dropout 0.1 and 0 have the same max_memory_allocated and max_memory_reserved.
        # Record without attention dropout.
        keys = [k for k in ("attn_pdrop", "attention_probs_dropout_prob") if k in case.config]
        overrides = {**case.config_overrides, **dict.fromkeys(keys, 0.0)}
        case = replace(case, config_overrides=overrides)
    recorder = TraceRecorder()
    recorder.set_phase("setup")
    counters = _Counters(recorder)
    saved_tracker = runner.LiveBytesTracker
    runner.LiveBytesTracker = _Reuse(recorder)  # type: ignore[assignment,misc]
    try:
        with runner.tensor_mode(case):
            torch.manual_seed(0)
            with recorder:
                model, head = runner.make_model(case)
                recorder.mark_layers(model)
                if case.mode == "training":
                    inputs = runner.case_inputs(case)
                    trainable = [p for p in model.parameters() if p.requires_grad]
                    optimizer = runner.make_optimizer(case.optimizer or {}, trainable)
                else:
                    vocab = case.config["vocab_size"]
                    with torch.device(case.device):
                        prompt = torch.randint(0, vocab, (case.batch_size, case.context_len))
                        next_token = torch.randint(0, vocab, (case.batch_size, 1))
            if case.mode == "training":
                with cuda_autocast_ops():
                    report = runner._measure_training(
                        case, model, head, inputs, optimizer, counters, False
                    )
            else:
                report = runner._measure_inference(case, model, head, prompt, next_token, counters)
    finally:
        runner.LiveBytesTracker = saved_tracker  # type: ignore[misc]
    return {
        "id": case_id,
        "storages": recorder.next_id,
        "peak_bytes": report["peak"]["bytes"],
        "trace": recorder.trace,
    }


def write_trace(entry: dict[str, Any], directory: Path = TRACE_DIR) -> Path:
    """Write one case's trace as gzipped JSON (no timestamps: byte-stable)."""
    directory.mkdir(exist_ok=True)
    path = directory / f"{entry['id']}.json.gz"
    text = json.dumps(entry, separators=(",", ":"))
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write(text.encode())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="SUBSTRING")
    parser.add_argument("--one", metavar="ID", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_libraries()
    wanted = set(cuda_case_ids())
    cases = [replace(c, fake=True) for c in all_cases() if c.id in wanted]
    if args.one:
        write_trace(record_case(next(c for c in cases if c.id == args.one)))
        return 0
    if args.only:
        cases = [c for c in cases if any(part in c.id for part in args.only)]
    for case in cases:
        # Each case in a process of its own, as on the GPU: objects a library makes
        # once per process (small cached tensors) are then born in every trace.
        start = time.perf_counter()
        command = [sys.executable, "-m", "benchmarks.accuracy.traces", "--one", case.id]
        subprocess.run(command, check=True)
        path = TRACE_DIR / f"{case.id}.json.gz"
        with gzip.open(path, "rt") as f:
            entry = json.load(f)
        print(
            f"{case.id}: {len(entry['trace'])} events, {path.stat().st_size // 1024} KiB, "
            f"{time.perf_counter() - start:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["StorageRecord", "TraceRecorder", "record_case", "write_trace"]
