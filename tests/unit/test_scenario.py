"""Reading scenarios from the JSON schema: types, defaults, aliases and round trips."""

from __future__ import annotations

import json

import pytest

from nnmem import GenericModel, Mode, Optimizer, Precision, Scenario, parse
from nnmem.formats import LABELS as FORMAT_LABELS
from nnmem.formats import Format
from nnmem.render.text import describe
from nnmem.scenario import (
    LABELS,
    OPTION_LABELS,
    SETTINGS,
    Checkpointing,
    Finetune,
    KvDtype,
    Sharding,
)


def test_form_strings_and_json_numbers_read_the_same() -> None:
    strings = parse(
        {
            "params_millions": "110",
            "hidden_size": "768",
            "num_layers": "12",
            "batch_size": "32",
            "seq_len": "128",
        }
    )
    numbers = parse(
        {
            "params_millions": 110,
            "hidden_size": 768,
            "num_layers": 12,
            "batch_size": 32,
            "seq_len": 128.0,
        }
    )
    assert (
        strings
        == numbers
        == Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128)
    )


def test_defaults() -> None:
    """Left out: training, fp32, AdamW, batch 1, sequence 512."""
    scenario = parse({"params_millions": 110, "hidden_size": 768, "num_layers": 12})
    assert (scenario.mode, scenario.precision, scenario.optimizer) == (
        Mode.TRAINING,
        Precision.FP32,
        Optimizer.ADAMW,
    )
    assert (scenario.batch_size, scenario.seq_len) == (1, 512)


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("124.439808", 124_439_808),  # GPT-2 small, exact
        ("7,000", 7_000_000_000),  # thousands separators
        ("1,234.5", 1_234_500_000),
        ("  13  ", 13_000_000),
        ("1e3", 1_000_000_000),
        ("0.000001", 1),
        ("0.0000014", 1),  # rounds to a whole parameter
    ],
)
def test_parameter_count_from_millions(text: str, params: int) -> None:
    assert parse({"params_millions": text}).model.params == params


def test_float_millions_stay_exact() -> None:
    """repr(124.439808) round-trips, so the count is exact, not 124,439,807."""
    assert parse({"params_millions": 124.439808}).model.params == 124_439_808


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("FP16", Precision.FP16),
        (" bf16 ", Precision.BF16),
        ("AMP_BF16", Precision.AMP_BF16),
        ("bf16_mixed", Precision.AMP_BF16),
    ],
)
def test_choices_ignore_case_and_spaces(raw: str, expected: Precision) -> None:
    assert parse({"params_millions": 1, "precision": raw}).precision is expected


def test_adam_is_adamw() -> None:
    """Adam and AdamW keep the same two moments, so "adam" reads as adamw."""
    assert parse({"params_millions": 1, "optimizer": "adam"}).optimizer is Optimizer.ADAMW


def test_missing_shape_is_derived_and_says_so() -> None:
    """Kaplan et al.: P ≈ 12·L·h²; GPT-3 shape: h ≈ 128·L.
    For 7e9: L = round((7e9 / 196,608)^(1/3)) = round(32.89) = 33,
    h = round(sqrt(7e9 / (12 × 33))) = round(4204.4) = 4204.
    """
    model = parse({"params_millions": 7000}).model
    assert (model.hidden_size, model.num_layers) == (4204, 33)
    assert model.derived == ("hidden_size", "num_layers")


def test_one_given_shape_field_derives_the_other() -> None:
    """With h = 768: L = round(110e6 / (12 × 768²)) = round(15.54) = 16."""
    model = parse({"params_millions": 110, "hidden_size": 768}).model
    assert (model.hidden_size, model.num_layers, model.derived) == (768, 16, ("num_layers",))
    model = parse({"params_millions": 110, "num_layers": 12}).model
    # h = round(sqrt(110e6 / 144)) = round(874.0) = 874
    assert (model.hidden_size, model.num_layers, model.derived) == (874, 12, ("hidden_size",))


@pytest.mark.parametrize(
    "data",
    [
        {"params_millions": 110, "hidden_size": 768, "num_layers": 12, "batch_size": 32},
        {"params_millions": 124.439808, "mode": "inference", "precision": "int8"},
        {"params_millions": 70000, "num_layers": 80, "precision": "bf16", "optimizer": "sgd"},
        {
            "model": "preset",
            "preset": "mixtral-8x7b",
            "finetune": "lora",
            "lora_rank": 8,
            "precision": "nf4_dq",
            "checkpointing": "full",
            "lora_dropout": 0.05,
        },
        {"model": "cnn", "cnn": "vgg16", "batch_size": 8, "precision": "amp_fp16"},
    ],
)
def test_to_dict_round_trips_through_json(data: dict[str, object]) -> None:
    scenario = parse(data)
    assert parse(json.loads(json.dumps(scenario.to_dict()))) == scenario


def test_to_dict_keeps_derived_fields_open() -> None:
    data = parse({"params_millions": 7000}).to_dict()
    assert (data["hidden_size"], data["num_layers"]) == (None, None)


def test_inference_has_no_optimizer_field() -> None:
    inference = parse({"params_millions": 1, "mode": "inference"}).inactive_fields()
    training = parse({"params_millions": 1}).inactive_fields()
    assert "optimizer" in inference
    assert "optimizer" not in training
    assert "kv_cache_dtype" in training  # an inference setting


def test_a_catalog_cnn_has_image_settings_not_sequence_ones() -> None:
    """ResNet-50 from the catalog takes images: no sequence length in its description."""
    scenario = parse({"model": "preset", "preset": "resnet50", "batch_size": 32})
    off = scenario.inactive_fields()
    assert "seq_len" in off
    assert "image_size" not in off
    assert "sequence" not in describe(scenario)


def test_preset_reads_the_catalog_config() -> None:
    scenario = parse({"model": "preset", "preset": "Llama-3.1-8B"})
    assert scenario.model.hidden == 4096
    assert scenario.to_dict(compact=True) == {"model": "preset", "preset": "llama-3.1-8b"}


def test_pasted_config_json_text_is_accepted() -> None:
    text = json.dumps(
        {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257}
    )
    scenario = parse({"model": "transformer", "config": text})
    assert scenario.model.layers == 12
    assert parse(scenario.to_dict()) == scenario


def test_cnn_by_name_and_image_size() -> None:
    scenario = parse({"model": "cnn", "cnn": "ResNet50", "image_size": 160})
    assert scenario.to_dict(compact=True) == {"model": "cnn", "cnn": "resnet50", "image_size": 160}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("fsdp", "zero3"), ("ddp", "none"), ("shard_grad_op", "zero2")],
)
def test_sharding_aliases(raw: str, expected: str) -> None:
    assert parse({"params_millions": 1, "sharding": raw}).sharding.value == expected


def test_compact_dict_drops_defaults_and_what_does_not_apply() -> None:
    scenario = parse(
        {"params_millions": 7000, "mode": "inference", "optimizer": "sgd", "batch_size": 4}
    )
    assert scenario.to_dict(compact=True) == {
        "model": "generic",
        "params_millions": 7000,
        "hidden_size": None,
        "num_layers": None,
        "mode": "inference",
        "batch_size": 4,
    }


def test_every_default_is_the_scenarios_own() -> None:
    """SETTINGS is read from the Scenario's fields, and parse fills a left-out setting
    with that same value: 512 tokens, FP32, AdamW, a 740 MiB CUDA context, 5% reserve."""
    parsed = parse({"params_millions": 110})
    assert {key: getattr(parsed, key) for key in SETTINGS} == SETTINGS
    assert (SETTINGS["seq_len"], SETTINGS["precision"], SETTINGS["optimizer"]) == (
        512,
        Precision.FP32,
        Optimizer.ADAMW,
    )
    assert (SETTINGS["cuda_context_mib"], SETTINGS["allocator_overhead_percent"]) == (740, 5)


def test_each_option_type_has_its_own_labels() -> None:
    """Equal values of two option types keep their own labels: "none" and "full" are a
    checkpointing, a sharding and a fine-tuning choice; fp8 a precision and a KV type."""
    assert LABELS[Checkpointing.NONE] == "None"
    assert LABELS[Sharding.NONE] == "None (each GPU holds everything)"
    assert LABELS[Checkpointing.FULL] == "Full (every layer recomputed)"
    assert LABELS[Finetune.FULL] == "Full fine-tuning"
    assert (LABELS[Precision.FP8], LABELS[KvDtype.FP8]) == ("FP8 (E4M3)", "FP8")
    for enum, table in OPTION_LABELS.items():
        assert set(table) == set(enum), enum
    # A weight format reads the same as the precision that stores weights in it.
    for fmt in Format:
        assert LABELS[Precision(fmt.value)] == FORMAT_LABELS[fmt]
