"""The step as a timeline (nnmem.timeline): events in PyTorch's order whose live total
reaches each phase's peak exactly.

The engine's phases list what is live at each phase's peak; the timeline's live total,
taken over each mark's span, must give the same bytes, here for the stacks and settings
the accuracy suite does not measure (tests/test_timeline_accuracy.py holds it for every
accuracy case).
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem.estimate import estimate
from nnmem.result import COMPONENTS, PHASE_LABELS
from nnmem.scenario import Scenario, parse
from nnmem.timeline import replay_step, span_peaks, step_events

LLAMA = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}


UNIT: dict[str, dict[str, Any]] = {
    "full": {},
    "checkpointing": {"checkpointing": "full"},
    "selective": {"checkpointing": "selective"},
    "every_2": {"checkpointing": "every_n", "checkpoint_every": 2},
    "lora": {"finetune": "lora", "lora_rank": 16},
    "qlora": {"finetune": "lora", "precision": "nf4", "checkpointing": "full"},
    "zero2": {"sharding": "zero2", "num_gpus": 8},
    "zero3_deepspeed": {"stack": "deepspeed", "sharding": "zero3", "num_gpus": 8},
    "fsdp2": {"stack": "fsdp2", "num_gpus": 8},
    "ddp": {"stack": "ddp", "num_gpus": 4},
    "accumulation": {"grad_accum_steps": 4},
    "offload": {"activation_offload": True},
    "inference": {"mode": "inference", "new_tokens": 16, "precision": "bf16"},
}


def _unit(extra: dict[str, Any]) -> Scenario:
    base = {
        "model": "transformer",
        "config": LLAMA,
        "precision": "amp_bf16",
        "batch_size": 2,
        "seq_len": 1024,
        "device": "cuda",
    }
    return parse(base | extra)


def _check(scenario: Scenario) -> list[tuple[object, ...]]:
    events = step_events(scenario, "h200-sxm")
    peaks = span_peaks(events)
    phases = estimate(scenario, "h200-sxm").phases
    assert {p.name: peaks[p.name] for p in phases} == {p.name: p.bytes for p in phases}
    return events


@pytest.mark.parametrize("name", UNIT)
def test_unit_scenario_peaks(name: str) -> None:
    """Training with and without checkpointing, LoRA, ZeRO, FSDP2, DDP, accumulation,
    offloading and inference reach each phase's bytes, to the byte."""
    _check(_unit(UNIT[name]))


OTHER_MODELS: dict[str, dict[str, Any]] = {
    "parameter count": {"model": "generic", "params_millions": 350, "hidden_size": 1024},
    "parameter count, inference": {
        "model": "generic",
        "params_millions": 350,
        "hidden_size": 1024,
        "mode": "inference",
        "precision": "bf16",
    },
    "resnet50": {"model": "cnn", "cnn": "resnet50", "batch_size": 8},
    "vgg16 AMP": {"model": "cnn", "cnn": "vgg16", "batch_size": 8, "precision": "amp_bf16"},
    "pipeline": {
        "model": "transformer",
        "config": LLAMA,
        "stack": "fsdp2",
        "pipeline_parallel": 2,
        "batch_size": 4,
        "num_gpus": 2,
        "precision": "amp_bf16",
    },
}


@pytest.mark.parametrize("name", OTHER_MODELS)
def test_other_models_peaks(name: str) -> None:
    """A parameter count, CNNs and a pipeline rank reach each phase's bytes too."""
    _check(parse(OTHER_MODELS[name]))


def test_events_are_well_formed() -> None:
    """Marks name known phases, allocations name components, every free frees a live key."""
    events = _check(_unit({"checkpointing": "full"}))
    live: set[object] = set()
    for event in events:
        if event[0] == "mark":
            assert event[1] in PHASE_LABELS
        elif event[0] == "alloc":
            assert event[3] in COMPONENTS
            assert isinstance(event[4], str)
            assert event[1] not in live
            assert isinstance(event[2], int)
            assert event[2] > 0
            live.add(event[1])
        else:
            live.remove(event[1])
    marks = [e[1] for e in events if e[0] == "mark"]
    assert marks == ["load", "forward", "loss", "backward", "optimizer_step"]


def test_forward_is_layer_by_layer_and_backward_reversed() -> None:
    """Saved activations are born from the first layer up and gradients from the last
    layer down (16 layers of Llama-3.2-1B's shape)."""
    events = step_events(_unit({}), "h200-sxm")
    saved = [e[4] for e in events if e[0] == "alloc" and e[3] == "activations"]
    layers = [int(str(x).split()[1]) for x in saved if str(x).startswith("layer ")]
    assert layers == sorted(layers)
    assert layers[0] == 0
    assert layers[-1] == 15
    grads = [str(e[4]) for e in events if e[0] == "alloc" and e[3] == "gradients"]
    assert grads[0].startswith("lm_head")
    assert grads[-1].startswith("embed")


def test_checkpointing_recomputes_each_layer() -> None:
    """With full checkpointing, backward runs each of the 16 layers' forward again: the
    recomputed tensors are born 16 times, the same pieces each time."""
    events = step_events(_unit({"checkpointing": "full"}), "h200-sxm")
    born = [e[2] for e in events if e[0] == "alloc" and "recomputed" in str(e[4])]
    per_layer = len(born) // 16
    assert len(born) == 16 * per_layer
    assert per_layer > 0
    assert born == born[:per_layer] * 16


def test_serving_runtime_gives_no_timeline() -> None:
    """vLLM's memory is a static plan, not a step: no events."""
    scenario = parse(
        {"model": "transformer", "config": LLAMA, "mode": "inference", "runtime": "vllm"}
    )
    assert step_events(scenario) == []


def test_replay_counts_two_cublas_workspaces() -> None:
    """The replay adds the forward's and backward's 32 MiB cuBLAS workspaces on an H200:
    the replay's allocated peak is at least the tensor peak plus both."""
    scenario = _unit({})
    result = replay_step(scenario, "h200-sxm")
    peak = estimate(scenario, "h200-sxm").tensor_peak_bytes
    assert result.allocated_peak >= peak + 2 * 32 * 2**20
    assert result.reserved_peak >= result.allocated_peak


def test_replay_setting_makes_the_total_reserved_plus_context() -> None:
    """With allocator_replay the total is the replay's reserved peak plus the 740 MiB
    context (the cuBLAS workspaces are allocated inside the replay), and
    expandable_segments, which maps pages as they are needed, reserves no more."""
    fields = {
        "model": "transformer",
        "config": LLAMA,
        "precision": "amp_bf16",
        "batch_size": 2,
        "seq_len": 1024,
        "allocator_replay": True,
    }
    replayed = estimate(parse(fields), "h200-sxm")
    reserved = replay_step(parse(fields), "h200-sxm").reserved_peak
    assert replayed.reserved_bytes == reserved
    assert replayed.total_bytes == reserved + 740 * 2**20
    expandable = estimate(parse(fields | {"expandable_segments": True}), "h200-sxm")
    assert expandable.total_bytes <= replayed.total_bytes
    flat = estimate(parse(fields | {"allocator_replay": False}), "h200-sxm")
    assert flat.tensor_peak_bytes == replayed.tensor_peak_bytes


def test_replay_setting_is_off_on_the_cpu() -> None:
    """The CUDA caching allocator is not the CPU's: its settings do nothing there."""
    scenario = _unit({"device": "cpu", "allocator_replay": True})
    assert "allocator_replay" in scenario.inactive_fields()
    flat = _unit({"device": "cpu"})
    assert estimate(scenario).total_bytes == estimate(flat).total_bytes


GPT2_AMP_EAGER = {
    "model": "transformer",
    "config": {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "activation_function": "gelu_new",
        "n_embd": 768,
        "n_head": 12,
        "n_layer": 12,
        "n_positions": 1024,
        "vocab_size": 50257,
        "attn_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "resid_pdrop": 0.1,
    },
    "attention": "eager",
    "precision": "amp_bf16",
    "batch_size": 4,
    "seq_len": 512,
    "device": "cuda",
}
UNSAVED = "tensors a layer makes and does not save"


def _forward(events: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    marks = [i for i, e in enumerate(events) if e[0] == "mark"]
    names = [e[1] for e in events if e[0] == "mark"]
    start = marks[names.index("forward")]
    return events[start : marks[names.index("loss")]]


def test_gpt2_block_makes_its_unsaved_tensors() -> None:
    """Each GPT-2 block (b=4, s=512, h=768, a=12, AMP, eager) makes, in this order,
    tensors no node saves (modeling_gpt2.py GPT2Block.forward, eager_attention_forward):
    ln_1's fp32 output b·s·h·4 = 6,291,456 B (before its statistics); c_attn's output
    3·b·s·h·2 = 9,437,184 B; the scores b·a·s²·2 = 25,165,824 B, scaled (the same), masked
    in fp32 (50,331,648 B); the probabilities cast back to 16-bit (25,165,824 B). The
    peaks stay exact."""
    events = _check(parse(GPT2_AMP_EAGER))
    born = [e[2] for e in _forward(events) if e[0] == "alloc" and e[4] == UNSAVED]
    first = [6_291_456, 9_437_184, 25_165_824, 25_165_824, 50_331_648, 25_165_824]
    assert born[:6] == first
    assert len(born) % 12 == 0
    assert born == born[: len(born) // 12] * 12


def test_autocast_copies_are_made_at_their_matmul() -> None:
    """Autocast casts a weight where a matmul first reads it: layer 0's c_attn copy after
    ln_1's statistics (b·s·4 = 8,192 B each) and before c_attn's 16-bit input
    (b·s·h·2 = 3,145,728 B); the tied embedding's copy by the head, just before the
    16-bit logits (b·s·V·2 = 205,852,672 B)."""
    forward = [e for e in _forward(step_events(parse(GPT2_AMP_EAGER))) if e[0] == "alloc"]
    at = next(i for i, e in enumerate(forward) if str(e[4]).startswith("attn.c_attn.weight"))
    assert [e[2] for e in forward[at - 2 : at]] == [8_192, 8_192]
    assert str(forward[at + 1][4]).startswith("attn.c_attn.bias")
    assert forward[at + 2][2] == 3_145_728
    embed = next(i for i, e in enumerate(forward) if str(e[4]).startswith("embed.weight"))
    then = [e for e in forward[embed + 1 :] if e[3] != "autocast_copies"]  # final norm's
    assert then[0][2] == 205_852_672
    assert then[0][3] == "logits"


def test_autocast_weight_gradient_is_cast() -> None:
    """The head's matmul makes the 16-bit gradient of the embedding's copy (the copy's
    size), the cast's backward (ToCopyBackward0) makes the fp32 gradient
    (50257·768·4 = 154,389,504 B), and the 16-bit one dies."""
    events = step_events(parse(GPT2_AMP_EAGER))
    copy = next(
        e[2] for e in events if e[0] == "alloc" and str(e[4]).startswith("embed.weight (16-bit")
    )
    at = next(
        i
        for i, e in enumerate(events)
        if e[0] == "alloc" and e[3] == "gradients" and str(e[4]).startswith("embed.weight")
    )
    before, grad, after = events[at - 1], events[at], events[at + 1]
    assert before[0] == "alloc"
    assert before[2] == copy
    assert grad[2] == 154_389_504
    assert after == ("free", before[1])
