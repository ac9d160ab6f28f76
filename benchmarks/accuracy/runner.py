"""Run one case (a training or an inference step) and collect its memory figures.

Training runs two full optimizer steps with ``zero_grad(set_to_none=True)`` between
them and reports step 2: from then on the optimizer states exist during forward and
backward, as in a real run. Step 1's peaks are reported too.

The step mirrors transformers' ``Trainer``: the loss is computed inside the model's
forward (labels passed in, so the model's own ``loss_function`` runs), only the loss is
kept (the output object with the logits is dropped before backward, as in
``Trainer.compute_loss``), and autocast wraps forward and loss but not backward.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from .cases import Case
from .models import (
    build_model,
    fake_mode_patches,
    head_path,
    make_inputs,
    real_mode_patches,
)
from .tracker import (
    CheckpointInputRecorder,
    LiveBytesTracker,
    PhaseMemTracker,
    SavedTensorRecorder,
    storage_bytes,
)

# Profiler ranges: forward and loss share one, since the switch happens in a hook.
PROFILED_PHASES = ("forward_and_loss", "backward", "optimizer_step")

DTYPES = {"fp32": torch.float32, "amp_bf16": torch.float32, "bf16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """'torch.bfloat16' -> 'bfloat16'."""
    return str(dtype).removeprefix("torch.")


# Building ----------------------------------------------------------------------------


@contextlib.contextmanager
def tensor_mode(case: Case) -> Iterator[None]:
    """Fake tensors (no memory, no data) or real ones, with the matching patches."""
    if case.fake:
        with FakeTensorMode(), fake_mode_patches():
            yield
    else:
        with real_mode_patches():
            yield


def make_model(case: Case) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Build the model (with checkpointing and LoRA if asked); return it and its head."""
    model = build_model(
        case.model.family,
        case.model.hf_class,
        case.config,
        case.attn_implementation,
        DTYPES[case.precision],
        torch.device(case.device),
    )
    head = model.get_submodule(head_path(case.model.family, case.model.hf_class))
    if case.gradient_checkpointing:
        # transformers' default: torch.utils.checkpoint with use_reentrant=False, one
        # checkpoint per layer (GradientCheckpointingLayer). Releases before 5.24 name
        # it gradient_checkpointing_enable, with the same use_reentrant=False default.
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
    if case.lora:
        model = apply_lora(model, case.lora)
    model.train(case.mode == "training")
    return model, head


def apply_lora(model: torch.nn.Module, lora: dict[str, Any]) -> torch.nn.Module:
    """Wrap the model with peft LoRA adapters; the base weights are frozen.

    peft keeps the adapters in fp32 over a bf16 base (``autocast_adapter_dtype=True``,
    its default) and casts the adapter input to fp32.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def make_optimizer(spec: dict[str, Any], params: list[torch.nn.Parameter]) -> Any:
    """Create the optimizer described by a case's optimizer dict."""
    if spec["name"] == "adamw":
        return torch.optim.AdamW(
            params,
            lr=spec["lr"],
            betas=tuple(spec["betas"]),
            weight_decay=spec["weight_decay"],
            amsgrad=spec["amsgrad"],
            foreach=spec["foreach"],
            fused=spec["fused"],
        )
    if spec["name"] == "sgd_momentum":
        return torch.optim.SGD(
            params,
            lr=spec["lr"],
            momentum=spec["momentum"],
            weight_decay=spec["weight_decay"],
            nesterov=spec["nesterov"],
            foreach=spec["foreach"],
        )
    if spec["name"] == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(
            params,
            lr=spec["lr"],
            beta1=spec["beta1"],
            scale_parameter=spec["scale_parameter"],
            relative_step=spec["relative_step"],
            warmup_init=spec["warmup_init"],
            weight_decay=spec["weight_decay"],
        )
    raise ValueError(f"unknown optimizer {spec['name']!r}")


def optimizer_implementation(spec: dict[str, Any]) -> str:
    """Say whether the update runs as foreach (multi-tensor) ops or a per-tensor loop."""
    return "foreach" if spec.get("foreach") else "for-loop"


def autocast(case: Case) -> contextlib.AbstractContextManager:
    """bf16 autocast for amp_bf16, nothing otherwise."""
    if case.precision == "amp_bf16":
        return torch.autocast(case.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# Small reports -----------------------------------------------------------------------


def parameter_report(model: torch.nn.Module) -> dict[str, Any]:
    """Counts and bytes of parameters (all and trainable) and buffers."""
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    count_by_dtype: Counter = Counter()
    for p in params:
        count_by_dtype[dtype_name(p.dtype)] += p.numel()
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in trainable),
        "bytes": storage_bytes(params),
        "trainable_bytes": storage_bytes(trainable),
        "count_by_dtype": dict(sorted(count_by_dtype.items())),
        "buffer_bytes": storage_bytes(model.buffers()),
    }


def bytes_by_dtype(tensors: list[torch.Tensor]) -> dict[str, int]:
    """Distinct-storage bytes grouped by dtype."""
    groups: dict[str, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault(dtype_name(t.dtype), []).append(t)
    return {name: storage_bytes(ts) for name, ts in sorted(groups.items())}


def optimizer_state_tensors(optimizer: Any) -> list[torch.Tensor]:
    """Every tensor the optimizer keeps in its state (moments, step counters, ...)."""
    return [
        value
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    ]


def attention_report(case: Case, op_counts: Counter) -> dict[str, Any]:
    """Which attention kernel ran, judged from the aten ops that were called."""
    counts = dict(sorted(op_counts.items()))
    if case.model.family == "resnet":
        kernel = None
    elif counts.get("aten._scaled_dot_product_flash_attention_for_cpu.default"):
        kernel = "sdpa_flash_cpu"
    elif counts.get("aten._scaled_dot_product_flash_attention.default"):
        kernel = "sdpa_flash_cuda"
    elif counts.get("aten._scaled_dot_product_efficient_attention.default"):
        kernel = "sdpa_efficient_cuda"
    elif counts.get("aten._scaled_dot_product_cudnn_attention.default"):
        kernel = "sdpa_cudnn_cuda"
    elif case.attn_implementation == "sdpa":
        kernel = "sdpa_math_fallback"
    else:
        kernel = "eager"
    return {"kernel": kernel, "op_counts": counts}


def tensor_summary(tensor: torch.Tensor) -> dict[str, Any]:
    """Shape, dtype and bytes of one tensor."""
    return {
        "shape": list(tensor.shape),
        "dtype": dtype_name(tensor.dtype),
        "bytes": tensor.numel() * tensor.element_size(),
    }


def cache_report(cache: Any, tokens: int) -> dict[str, Any]:
    """Bytes held by a transformers cache: distinct storages and logical tensor sizes.

    They differ when a layer's keys are a slice of a larger storage (a sliding-window
    cache after trimming), where the storage is what stays allocated.
    """
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values) if t is not None]
    held = storage_bytes(tensors)
    return {
        "bytes": held,
        "tensor_bytes": sum(t.numel() * t.element_size() for t in tensors),
        "tensors": len(tensors),
        "tokens": tokens,
        "bytes_per_token": held // tokens,
        "dtype": dtype_name(tensors[0].dtype),
        "shape_layer0_keys": list(tensors[0].shape),
    }


class CudaCounters:
    """The CUDA allocator's own counters; does nothing for CPU runs."""

    def __init__(self, device: str) -> None:
        self.enabled = device == "cuda"
        self.record: dict[str, Any] = {}

    def before_model(self) -> None:
        """Memory already used on the GPU (CUDA context, other processes) before loading."""
        if self.enabled:
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            self.record["mem_get_info_before_model"] = {"free": free, "total": total}
            self.record["used_before_model_bytes"] = total - free
            self.record["memory_allocated_before_model"] = torch.cuda.memory_allocated()

    def start(self) -> None:
        if self.enabled:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def stop(self, label: str) -> None:
        if self.enabled:
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            self.record[label] = {
                "max_memory_allocated": torch.cuda.max_memory_allocated(),
                "max_memory_reserved": torch.cuda.max_memory_reserved(),
                "memory_allocated_after": torch.cuda.memory_allocated(),
                "memory_reserved_after": torch.cuda.memory_reserved(),
                "device_used_after": total - free,
            }

    def report(self) -> dict[str, Any] | None:
        return self.record or None


# Profiler cross-check ----------------------------------------------------------------


@contextlib.contextmanager
def allocator_profile(enabled: bool, result: dict[str, Any]) -> Iterator[None]:
    """Profile CPU allocator events; write the peak of its running total to ``result``.

    Each allocation event of ``torch.profiler.profile(profile_memory=True)`` carries
    the allocator's running "Total Allocated" (bytes allocated since profiling began,
    minus those freed). Its maximum is the allocator's view of the step's peak above
    what was live when profiling began; phases are marked with ``record_function``.
    """
    if not enabled:
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    result.update(_allocator_peaks(events))


def _allocator_peaks(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall and per-phase maxima of the allocator's running total."""
    ranges = [
        (e["name"], e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "user_annotation" and e["name"] in PROFILED_PHASES
    ]
    memory = [e for e in events if e.get("name") == "[memory]"]
    peaks: dict[str, int] = {}
    for event in memory:
        total = event["args"]["Total Allocated"]
        for name, start, end in ranges:
            if start <= event["ts"] <= end:
                peaks[name] = max(peaks.get(name, 0), total)
    overall = max((e["args"]["Total Allocated"] for e in memory), default=0)
    return {"peak_above_start_bytes": overall, "phase_peak_above_start_bytes": peaks}


def record_phase(enabled: bool, name: str) -> contextlib.AbstractContextManager:
    """A profiler range for ``name`` when profiling, else nothing."""
    if enabled:
        return torch.profiler.record_function(name)
    return contextlib.nullcontext()


# Training ----------------------------------------------------------------------------


def case_inputs(case: Case) -> dict[str, torch.Tensor]:
    """The random inputs and labels of one training step of ``case``."""
    return make_inputs(
        case.model.family,
        case.model.hf_class,
        case.config,
        case.batch_size,
        case.seq_len,
        case.decoder_seq_len,
        case.image_size,
        torch.device(case.device),
    )


def run_training(case: Case, profile_allocator: bool = False) -> dict[str, Any]:
    """Measure two training steps of ``case``; return its measured.json entry."""
    cuda = CudaCounters(case.device)
    with tensor_mode(case):
        torch.manual_seed(0)
        cuda.before_model()
        model, head = make_model(case)
        inputs = case_inputs(case)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(case.optimizer, trainable)
        return _measure_training(case, model, head, inputs, optimizer, cuda, profile_allocator)


def _measure_training(
    case: Case,
    model: torch.nn.Module,
    head: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    optimizer: Any,
    cuda: CudaCounters,
    profile_allocator: bool,
) -> dict[str, Any]:
    live = LiveBytesTracker()
    live.register_module(model)
    for tensor in inputs.values():
        live.register(tensor, "input")
    mem = PhaseMemTracker()
    mem.track_external(model, *inputs.values())
    logits: dict[str, Any] = {}
    hook = head.register_forward_hook(_logits_hook(live, logits))
    ckpt = CheckpointInputRecorder(live)
    ckpt.wrap(model)
    params = parameter_report(model)
    try:
        with live, mem:
            cuda.start()
            _training_step(case, model, inputs, optimizer, live, None)
            cuda.stop("step1")
            step1_peak = _peak_report(live)
            live.reset_phases()
            mem.reset_peak()
            mem.reset_mod_stats()
            ckpt.inputs.clear()
            ckpt.calls = 0
            saved = SavedTensorRecorder(live)
            allocator: dict[str, Any] = {}
            cuda.start()
            with allocator_profile(profile_allocator, allocator):
                step2 = _training_step(
                    case, model, inputs, optimizer, live, saved, profile=profile_allocator
                )
            cuda.stop("step2")
            peak_categories = mem.peak_categories()
            memtracker_peak = peak_categories["total"]
    finally:
        hook.remove()
        live.close()
    saved_report = saved.report()
    report = {
        "id": case.id,
        "description": case.description(),
        "parameters": params,
        "gradients": step2["gradients"],
        "optimizer": {
            "implementation": optimizer_implementation(case.optimizer),
            **step2["optimizer"],
        },
        "saved_for_backward": saved_report,
        "checkpointing": ckpt.report(saved) if case.gradient_checkpointing else None,
        "logits": _loss_terms(logits, saved_report) if logits else None,
        "attention": attention_report(case, live.op_counts),
        "peak": _peak_report(live, peak_categories, step2["optimizer"]["state_bytes"]),
        "step1": step1_peak,
        "cross_check": _cross_check(live, memtracker_peak, case.device),
        "dtypes": {
            "parameters": params["count_by_dtype"],
            "gradients": step2["gradients"]["bytes_by_dtype"],
            "optimizer_state": step2["optimizer"]["state_bytes_by_dtype"],
            "autocast": "bfloat16" if case.precision == "amp_bf16" else None,
        },
    }
    if profile_allocator:
        report["allocator"] = allocator
        report["allocator"]["tracker_phase_peak_above_start_bytes"] = _above_start(live)
    if cuda.enabled:
        report["cuda"] = cuda.report()
    return report


def _loss_terms(logits: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """The logits tensor and what the loss saves for backward.

    For a causal LM, transformers' ``ForCausalLMLoss`` upcasts the logits to fp32 and
    ``cross_entropy`` saves its fp32 log-softmax, one value per token and vocabulary
    entry (``transformers/loss/loss_utils.py``).
    """
    vocab = logits["shape"][-1]
    log_softmax = [
        item["bytes"]
        for item in saved["loss_saved"]
        if item["dtype"] == "float32" and item["shape"] and item["shape"][-1] == vocab
    ]
    return {
        **logits,
        "loss_saved_bytes": sum(item["bytes"] for item in saved["loss_saved"]),
        "loss_log_softmax_bytes": max(log_softmax, default=0),
    }


def _above_start(live: LiveBytesTracker) -> dict[str, int]:
    """Step-2 phase peaks above the live total at its start, in the profiler's phases."""
    start = live.phases["forward"].start
    peaks = live.phase_peaks()
    return {
        "forward_and_loss": max(peaks["forward"], peaks.get("loss", 0)) - start,
        "backward": peaks["backward"] - start,
        "optimizer_step": peaks["optimizer_step"] - start,
    }


def _logits_hook(live: LiveBytesTracker, logits: dict[str, Any]) -> Any:
    """A forward hook on the output head: record the logits and start the loss phase."""

    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        # Inference records the prefill's logits only, not the decode step's.
        if live.phase == "decode":
            return
        tensor = output if isinstance(output, torch.Tensor) else output[0]
        logits.update(tensor_summary(tensor))
        if live.phase == "forward":
            live.set_phase("loss")

    return hook


def _training_step(
    case: Case,
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    optimizer: Any,
    live: LiveBytesTracker,
    saved: SavedTensorRecorder | None,
    profile: bool = False,
) -> dict[str, Any]:
    """One forward (with loss), backward, optimizer step and zero_grad."""
    recording = saved.recording() if saved else contextlib.nullcontext()
    live.set_phase("forward")  # the head's hook switches to "loss"
    with record_phase(profile, "forward_and_loss"), autocast(case), recording:
        loss = model(**inputs).loss
    live.set_phase("backward")
    with record_phase(profile, "backward"):
        loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    gradients = {"bytes": storage_bytes(grads), "bytes_by_dtype": bytes_by_dtype(grads)}
    del grads
    live.set_phase("optimizer_step")
    with record_phase(profile, "optimizer_step"):
        optimizer.step()
    state = optimizer_state_tensors(optimizer)
    optimizer_report = {
        "state_bytes": storage_bytes(state),
        "state_bytes_by_dtype": bytes_by_dtype(state),
        "state_tensors": len(state),
    }
    del state
    live.set_phase("zero_grad")
    optimizer.zero_grad(set_to_none=True)
    del loss
    live.set_phase("idle")
    return {"gradients": gradients, "optimizer": optimizer_report}


def _peak_report(
    live: LiveBytesTracker,
    categories: dict[str, int] | None = None,
    optimizer_state_bytes: int | None = None,
) -> dict[str, Any]:
    """Peak bytes, the phase that holds it, per-phase figures and the categories."""
    peak, phase = live.peak()
    report: dict[str, Any] = {
        "bytes": peak,
        "phase": phase,
        "bytes_rounded_512": live.peak_rounded(),
        "phases": {k: v for k, v in live.phase_report().items() if k not in ("setup", "idle")},
    }
    if categories is not None:
        report["categories"] = categories
        # Tensors created inside optimizer.step() are all labelled optimizer state by
        # MemTracker; what exceeds the persistent state is the step's temporaries.
        if phase == "optimizer_step" and optimizer_state_bytes is not None:
            report["optimizer_step_temporaries"] = (
                categories["optimizer_state"] - optimizer_state_bytes
            )
    return report


def _cross_check(live: LiveBytesTracker, memtracker_peak: int, device: str) -> dict[str, Any]:
    """The two trackers' peaks and whether they agree.

    MemTracker rounds CUDA storages up to 512 bytes, so CUDA runs compare it with the
    live tracker's rounded total.
    """
    live_peak = max(live.phase_peaks(rounded_512=device == "cuda").values())
    return {
        "live_tracker_peak_bytes": live_peak,
        "memtracker_peak_bytes": memtracker_peak,
        "rounded_512": device == "cuda",
        "equal": live_peak == memtracker_peak,
    }


# Inference ---------------------------------------------------------------------------


def run_inference(case: Case) -> dict[str, Any]:
    """Measure a prefill at the case's context length and one decode step."""
    cuda = CudaCounters(case.device)
    with tensor_mode(case):
        torch.manual_seed(0)
        cuda.before_model()
        model, head = make_model(case)
        vocab = case.config["vocab_size"]
        with torch.device(case.device):
            prompt = torch.randint(0, vocab, (case.batch_size, case.context_len))
            next_token = torch.randint(0, vocab, (case.batch_size, 1))
        return _measure_inference(case, model, head, prompt, next_token, cuda)


def _measure_inference(
    case: Case,
    model: torch.nn.Module,
    head: torch.nn.Module,
    prompt: torch.Tensor,
    next_token: torch.Tensor,
    cuda: CudaCounters,
) -> dict[str, Any]:
    live = LiveBytesTracker()
    live.register_module(model)
    live.register(prompt, "input")
    live.register(next_token, "input")
    mem = PhaseMemTracker()
    mem.track_external(model, prompt, next_token)
    logits: dict[str, Any] = {}
    hook = head.register_forward_hook(_logits_hook(live, logits))
    params = parameter_report(model)
    tokens = case.batch_size * case.context_len
    try:
        with live, mem, torch.no_grad():
            cuda.start()
            live.set_phase("prefill")
            out = model(input_ids=prompt, use_cache=True, logits_to_keep=case.logits_to_keep)
            cache = out.past_key_values
            # generate() keeps only the next-token logits; drop the rest.
            del out
            cuda.stop("prefill")
            kv_prefill = cache_report(cache, tokens)
            prefill_categories = mem.peak_categories()
            prefill_peak = live.phases["prefill"].peak
            mem.reset_peak()
            mem.reset_mod_stats()
            cuda.start()
            live.set_phase("decode")
            out = model(
                input_ids=next_token, past_key_values=cache, use_cache=True, logits_to_keep=1
            )
            cache = out.past_key_values
            del out
            cuda.stop("decode")
            kv_decode = cache_report(cache, tokens + case.batch_size)
            decode_categories = mem.peak_categories()
            live.set_phase("idle")
            del cache
    finally:
        hook.remove()
        live.close()
    phases = live.phase_report()
    weights = params["bytes"] + params["buffer_bytes"]
    report = {
        "id": case.id,
        "description": case.description(),
        "parameters": params,
        "kv_cache": {"after_prefill": kv_prefill, "after_decode": kv_decode},
        "prefill": {
            "peak_bytes": prefill_peak,
            "peak_minus_weights_bytes": prefill_peak - weights,
            "peak_minus_weights_and_kv_bytes": prefill_peak - weights - kv_prefill["bytes"],
            "categories": prefill_categories,
            "logits": logits or None,
        },
        "decode": {
            "peak_bytes": phases["decode"]["peak_bytes"],
            "peak_minus_weights_bytes": phases["decode"]["peak_bytes"] - weights,
            "categories": decode_categories,
        },
        "peak": _peak_report(live),
        "attention": attention_report(case, live.op_counts),
        "cross_check": _cross_check(
            live, max(prefill_categories["total"], decode_categories["total"]), case.device
        ),
        "dtypes": {"parameters": params["count_by_dtype"], "kv_cache": kv_prefill["dtype"]},
    }
    if cuda.enabled:
        report["cuda"] = cuda.report()
    return report


def run_case(case: Case, profile_allocator: bool = False) -> dict[str, Any]:
    """Run a training or inference case."""
    if case.mode == "training":
        return run_training(case, profile_allocator)
    return run_inference(case)
