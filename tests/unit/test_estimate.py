"""The estimate's structure and the parameter-count model, against hand-worked values.

The parameter-count ("generic") model follows Korthikanti et al. 2022 (arXiv 2205.05198
§4.1): 34 bytes per layer, token and hidden unit at 16-bit without attention scores; in
fp32 the 32 two-byte terms double and the two 1-byte dropout masks stay: 66. Weights,
gradients and Adam state are 4 + 4 + 8 bytes per fp32 parameter (Hugging Face "Model
training anatomy").
"""

from __future__ import annotations

import pytest

from nnmem import GenericModel, Mode, Optimizer, Precision, Scenario, estimate
from nnmem.scenario import Checkpointing

BERT_BASE = GenericModel(params=110_000_000, hidden_size=768, num_layers=12)
LLAMA_7B = GenericModel(params=7_000_000_000, hidden_size=4096, num_layers=32)
MIB = 2**20
CUBLAS = 4096 * 1024 * 2 + 16 * 1024 * 8  # one workspace per handle, before Hopper


def sizes(scenario: Scenario) -> dict[str, int]:
    return estimate(scenario).component_sizes()


def test_bert_base_training_fp32_adam() -> None:
    """The brief's first example: 440 MB weights, 440 MB gradients, 880 MB Adam state,
    and 12 × 128 × 32 × 768 × 66 = 2,491,416,576 B of activations."""
    result = estimate(Scenario(BERT_BASE, batch_size=32, seq_len=128))
    got = result.component_sizes()
    assert {k: got[k] for k in ("weights", "gradients", "optimizer_state", "activations")} == {
        "weights": 440_000_000,
        "gradients": 440_000_000,
        "optimizer_state": 880_000_000,
        "activations": 2_491_416_576,
    }
    phases = {p.name: p.bytes for p in result.phases}
    # Gradients are freed between steps: forward ends with weights, Adam state and
    # activations; the optimizer step holds weights, state, gradients and one foreach copy.
    assert phases == {
        "forward": 440_000_000 + 880_000_000 + 2_491_416_576,
        "loss": 3_811_416_576,
        "backward": 3_811_416_576,
        "optimizer_step": 440_000_000 * 3 + 880_000_000,
    }
    assert result.peak_phase.name == "forward"
    # Overheads: 5% allocator reserve, two cuBLAS workspaces (forward and autograd
    # threads), a 740 MiB CUDA context (the measured default).
    assert result.total_bytes == 3_811_416_576 + 190_570_828 + 2 * CUBLAS + 740 * MIB


def test_llama_7b_inference_fp16() -> None:
    """The brief's second example: 7,000M × 2 B = 14 GB, no gradients, no optimizer;
    one layer's working set: 512 × 1 × 9 × 4096 × 2 B."""
    result = estimate(Scenario(LLAMA_7B, Mode.INFERENCE, Precision.FP16))
    got = result.component_sizes()
    assert got["weights"] == 14_000_000_000
    assert got["activations"] == 37_748_736
    assert "gradients" not in got
    assert "optimizer_state" not in got
    assert result.peak_phase.name == "prefill"
    assert result.total_bytes == 14_037_748_736 + 701_887_436 + CUBLAS + 740 * MIB


@pytest.mark.parametrize(
    ("precision", "weights"),
    [
        (Precision.FP32, 28_000_000_000),  # 4 B
        (Precision.BF16, 14_000_000_000),  # 2 B
        (Precision.FP8, 7_000_000_000),  # 1 B
        (Precision.INT8, 7_000_000_000),
        (Precision.INT4, 3_500_000_000),  # 0.5 B
        (Precision.NF4, 3_937_500_000),  # 4 + 32/64 = 4.5 bits (QLoRA §3)
        (Precision.Q8_0, 7_437_500_000),  # 34 B per 32 weights = 8.5 bits
    ],
)
def test_inference_weights_follow_the_format(precision: Precision, weights: int) -> None:
    assert sizes(Scenario(LLAMA_7B, Mode.INFERENCE, precision))["weights"] == weights


def test_mixed_precision_keeps_fp32_states_and_a_16_bit_copy() -> None:
    """AMP: fp32 weights (4), their autocast copies (2), fp32 gradients (4) and Adam (8):
    the 18 bytes per parameter of the Hugging Face guide; activations at 34 B."""
    got = sizes(Scenario(BERT_BASE, precision=Precision.AMP_BF16, batch_size=32, seq_len=128))
    assert got["weights"] == 440_000_000
    assert got["autocast_copies"] == 220_000_000
    assert got["gradients"] == 440_000_000
    assert got["optimizer_state"] == 880_000_000
    assert got["activations"] == 1_283_457_024  # 12 × 128 × 32 × 768 × 34


def test_pure_bf16_halves_weights_gradients_and_states() -> None:
    """Pure bf16 keeps Adam's moments in the weights' type: 2 + 2 + 4 bytes."""
    got = sizes(Scenario(BERT_BASE, precision=Precision.BF16))
    assert (got["weights"], got["gradients"], got["optimizer_state"]) == (
        220_000_000,
        220_000_000,
        440_000_000,
    )


@pytest.mark.parametrize(
    ("optimizer", "state"),
    [
        (Optimizer.SGD, 0),
        (Optimizer.SGD_MOMENTUM, 440_000_000),  # one fp32 buffer
        (Optimizer.ADAMW, 880_000_000),  # m and v
        (Optimizer.LION, 440_000_000),  # one momentum
    ],
)
def test_optimizer_state(optimizer: Optimizer, state: int) -> None:
    assert sizes(Scenario(BERT_BASE, optimizer=optimizer)).get("optimizer_state", 0) == state


def test_checkpointing_keeps_layer_inputs_and_recomputes_one_layer() -> None:
    """Korthikanti §5: full recomputation keeps each layer's input (4·s·b·h in fp32) and
    rebuilds one layer's activations (66·s·b·h) during backward."""
    result = estimate(
        Scenario(BERT_BASE, batch_size=32, seq_len=128, checkpointing=Checkpointing.FULL)
    )
    assert result.saved_activation_bytes == 12 * 128 * 32 * 768 * 4
    backward = next(p for p in result.phases if p.name == "backward").by_key()
    assert backward["temporaries"] == 128 * 32 * 768 * 66


def test_gradient_accumulation_holds_gradients_through_the_step() -> None:
    result = estimate(Scenario(BERT_BASE, batch_size=32, seq_len=128, grad_accum_steps=4))
    assert result.phases[0].by_key()["gradients"] == 440_000_000
    assert result.tensor_peak_bytes == 3_811_416_576 + 440_000_000


def test_components_explain_themselves_with_the_numbers_used() -> None:
    result = estimate(Scenario(BERT_BASE, batch_size=32, seq_len=128))
    (weights,) = result.component("weights").terms
    assert (weights.formula, weights.substituted) == ("P × 4 B", "110,000,000 × 4 B")
    (acts,) = result.component("activations").terms
    assert acts.formula == "L × s × b × h × 66 B"
    assert acts.substituted == "12 × 128 × 32 × 768 × 66 B"
    assert "arXiv 2205.05198" in acts.source
    assert result.component("gradients").bytes == 0  # freed before the peak
    assert result.component("gradients").size == 440_000_000


def test_unknown_component_raises_key_error() -> None:
    with pytest.raises(KeyError):
        estimate(Scenario(BERT_BASE)).component("kv_cache")


def test_to_dict_is_json_ready() -> None:
    data = estimate(Scenario(BERT_BASE, batch_size=32, seq_len=128)).to_dict()
    assert data["schema_version"] == 2
    assert data["tensor_peak_bytes"] == 3_811_416_576
    assert data["peak_phase"] == "forward"
    assert [p["name"] for p in data["phases"]] == ["forward", "loss", "backward", "optimizer_step"]
    assert data["scenario"]["params_millions"] == 110


def test_notes_name_the_derived_shape() -> None:
    derived = GenericModel.from_params(7_000_000_000)
    notes = estimate(Scenario(derived, Mode.INFERENCE)).notes
    assert notes[0].startswith("Assumed hidden dimension 4,204 and 33 layers")


def test_cuda_context_and_allocator_reserve_are_editable() -> None:
    base = estimate(Scenario(BERT_BASE))
    bare = estimate(Scenario(BERT_BASE, cuda_context_mib=0, allocator_overhead_percent=0))
    assert base.total_bytes - bare.total_bytes == 740 * MIB + int(base.tensor_peak_bytes * 0.05)


def test_hopper_gets_the_32_mib_cublas_workspace() -> None:
    """CublasHandlePool.cpp: 4096·8·1024 B on sm90 and newer."""
    hopper = estimate(Scenario(BERT_BASE), gpu_id="h100-sxm-80gb").component("cublas_workspace")
    assert hopper.bytes == 2 * 32 * MIB
