"""The generic estimator, against values worked out by hand from the cited sources."""

from __future__ import annotations

import pytest

from nnmem import GenericModel, Mode, Optimizer, Precision, Scenario, estimate

BERT_BASE = GenericModel(params=110_000_000, hidden_size=768, num_layers=12)
LLAMA_7B = GenericModel(params=7_000_000_000, hidden_size=4096, num_layers=32)


def bytes_by_key(scenario: Scenario) -> dict[str, int]:
    return {c.key: c.bytes for c in estimate(scenario).components}


def test_bert_base_training_fp32_adam() -> None:
    """The brief's first worked example.

    HF "Model training anatomy": fp32 weights 4 B, gradients 4 B, Adam 8 B per parameter.
    Korthikanti et al. §4.1: sbh(34) per layer at 16-bit without the attention scores;
    fp32 doubles the 32 two-byte terms and keeps the two 1-byte masks: 66.
    Activations = 12 × 128 × 32 × 768 × 66 = 2,491,416,576 B.
    """
    scenario = Scenario(BERT_BASE, batch_size=32, seq_len=128)
    assert bytes_by_key(scenario) == {
        "weights": 440_000_000,
        "gradients": 440_000_000,
        "optimizer_state": 880_000_000,
        "activations": 2_491_416_576,
    }
    assert estimate(scenario).total_bytes == 4_251_416_576


def test_llama_7b_inference_fp16() -> None:
    """The brief's second worked example: 7,000M × 2 B = 14 GB, no gradients or optimizer.

    Working set of one layer: s × b × 9h values at 2 B = 512 × 1 × 9 × 4096 × 2.
    """
    scenario = Scenario(LLAMA_7B, Mode.INFERENCE, Precision.FP16)
    assert bytes_by_key(scenario) == {
        "weights": 14_000_000_000,
        "gradients": 0,
        "optimizer_state": 0,
        "activations": 37_748_736,
    }


@pytest.mark.parametrize(
    ("precision", "weights"),
    [
        (Precision.FP32, 28_000_000_000),  # 4 B
        (Precision.FP16, 14_000_000_000),  # 2 B
        (Precision.BF16, 14_000_000_000),  # 2 B
        (Precision.INT8, 7_000_000_000),  # 1 B
        (Precision.INT4, 3_500_000_000),  # 0.5 B
    ],
)
def test_inference_weights_follow_the_format(precision: Precision, weights: int) -> None:
    """Weights at inference are P × bits / 8."""
    assert bytes_by_key(Scenario(LLAMA_7B, Mode.INFERENCE, precision))["weights"] == weights


@pytest.mark.parametrize(
    ("precision", "activations"),
    [
        (Precision.FP32, 75_497_472),  # 512 × 4096 × 9 × 4 B
        (Precision.INT8, 37_748_736),  # dequantized compute is 16-bit: × 2 B
        (Precision.INT4, 37_748_736),
    ],
)
def test_inference_activations_width(precision: Precision, activations: int) -> None:
    assert bytes_by_key(Scenario(LLAMA_7B, Mode.INFERENCE, precision))["activations"] == (
        activations
    )


def test_int4_rounds_half_bytes_up() -> None:
    """Three 4-bit weights take 1.5 bytes, stored in 2."""
    tiny = GenericModel(params=3, hidden_size=1, num_layers=1)
    assert bytes_by_key(Scenario(tiny, Mode.INFERENCE, Precision.INT4))["weights"] == 2


@pytest.mark.parametrize("precision", [Precision.FP16, Precision.BF16])
def test_mixed_precision_training_is_18_bytes_per_parameter(precision: Precision) -> None:
    """HF "Model training anatomy": mixed precision with AdamW costs 18 B per parameter:
    weights 4 + 2 (fp32 and the 16-bit copy), fp32 gradients 4, Adam 8.
    Activations: 34 B per layer, token and hidden unit (Korthikanti §4.1).
    """
    got = bytes_by_key(Scenario(BERT_BASE, precision=precision, batch_size=32, seq_len=128))
    assert got == {
        "weights": 660_000_000,
        "gradients": 440_000_000,
        "optimizer_state": 880_000_000,
        "activations": 1_283_457_024,  # 12 × 128 × 32 × 768 × 34
    }
    assert got["weights"] + got["gradients"] + got["optimizer_state"] == 18 * 110_000_000


@pytest.mark.parametrize(
    ("optimizer", "state"),
    [
        (Optimizer.SGD, 0),
        (Optimizer.SGD_MOMENTUM, 440_000_000),  # one fp32 buffer: 4 B
        (Optimizer.ADAMW, 880_000_000),  # m and v: 8 B
    ],
)
def test_optimizer_state(optimizer: Optimizer, state: int) -> None:
    got = bytes_by_key(Scenario(BERT_BASE, optimizer=optimizer))
    assert got["optimizer_state"] == state


def test_activations_scale_linearly_with_batch_and_sequence() -> None:
    """Without s×s attention scores every activation term is linear in s and b."""
    base = bytes_by_key(Scenario(BERT_BASE, batch_size=2, seq_len=256))["activations"]
    assert bytes_by_key(Scenario(BERT_BASE, batch_size=4, seq_len=256))["activations"] == 2 * base
    assert bytes_by_key(Scenario(BERT_BASE, batch_size=2, seq_len=1024))["activations"] == (
        4 * base
    )


def test_components_explain_themselves_with_the_numbers_used() -> None:
    result = estimate(Scenario(BERT_BASE, batch_size=32, seq_len=128))
    weights = result.component("weights")
    assert (weights.formula, weights.substituted) == ("P × 4 B", "110,000,000 × 4 B")
    activations = result.component("activations")
    assert activations.formula == "L × s × b × h × 66 B"
    assert activations.substituted == "12 × 128 × 32 × 768 × 66 B"
    assert "arXiv 2205.05198" in activations.source
    assert "model_memory_anatomy" in weights.source
    assert result.total_formula == "model weights + gradients + optimizer state + activations"


def test_zero_components_say_why() -> None:
    result = estimate(Scenario(LLAMA_7B, Mode.INFERENCE, Precision.FP16))
    assert result.component("gradients").note == "inference runs no backward pass"
    assert result.component("optimizer_state").bytes == 0


def test_int4_note_states_what_the_simple_model_leaves_out() -> None:
    note = estimate(Scenario(LLAMA_7B, Mode.INFERENCE, Precision.INT4)).component("weights").note
    assert note.startswith("int4 weights take 4 bits each; quantization scales")


def test_unknown_component_raises_key_error() -> None:
    with pytest.raises(KeyError):
        estimate(Scenario(BERT_BASE)).component("kv_cache")


def test_to_dict_is_json_ready() -> None:
    data = estimate(Scenario(BERT_BASE, batch_size=32, seq_len=128)).to_dict()
    assert data["schema_version"] == 1
    assert data["total_bytes"] == 4_251_416_576
    assert [c["key"] for c in data["components"]] == [
        "weights",
        "gradients",
        "optimizer_state",
        "activations",
    ]
    assert data["scenario"]["params_millions"] == 110


def test_notes_name_derived_shape_and_exclusions() -> None:
    derived = GenericModel.from_params(7_000_000_000)
    notes = estimate(Scenario(derived, Mode.INFERENCE)).notes
    assert notes[0].startswith("Assumed hidden dimension 4,204 and 33 layers")
    assert notes[-1].startswith("Not included: the CUDA context")
    training = estimate(Scenario(BERT_BASE)).notes
    assert training[0].startswith("The total adds all four parts.")
