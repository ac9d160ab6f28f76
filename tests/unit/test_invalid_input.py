"""Every kind of bad input, each reported against its field with what is allowed."""

from __future__ import annotations

import pytest

from nnmem import GenericModel, Mode, NnmemError, Precision, Scenario, parse
from nnmem.errors import Problem

VALID = {"params_millions": "110", "hidden_size": "768", "num_layers": "12"}

PARAMS_ALLOWED = "a number of millions of parameters above 0 and at most 10,000,000"
PRECISIONS = (
    "fp32, amp_bf16, amp_fp16, bf16, fp16, fp8, int8, int4, gptq, awq, nf4, nf4_dq, q8_0, "
    "q6_k, q5_k_m, q4_k_m, q4_0"
)


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("params_millions", "", f"Model size is required: enter {PARAMS_ALLOWED}."),
        ("params_millions", "   ", f"Model size is required: enter {PARAMS_ALLOWED}."),
        ("params_millions", None, f"Model size is required: enter {PARAMS_ALLOWED}."),
        ("params_millions", "0", f"Model size must be {PARAMS_ALLOWED} (got 0)."),
        ("params_millions", "-5", f"Model size must be {PARAMS_ALLOWED} (got -5)."),
        ("params_millions", "abc", f'Model size must be {PARAMS_ALLOWED} (got "abc").'),
        ("params_millions", "nan", f'Model size must be {PARAMS_ALLOWED} (got "nan").'),
        ("params_millions", "inf", f'Model size must be {PARAMS_ALLOWED} (got "inf").'),
        ("params_millions", float("inf"), f"Model size must be {PARAMS_ALLOWED} (got inf)."),
        ("params_millions", "1e999", f"Model size must be {PARAMS_ALLOWED} (got 1e999)."),
        ("params_millions", "20000000", f"Model size must be {PARAMS_ALLOWED} (got 20000000)."),
        ("params_millions", True, f"Model size must be {PARAMS_ALLOWED} (got true)."),
        ("params_millions", [1], f"Model size must be {PARAMS_ALLOWED} (got [1])."),
        ("params_millions", "1,00", f'Model size must be {PARAMS_ALLOWED} (got "1,00").'),
        (
            "params_millions",
            "<script>alert(1)</script>",
            f'Model size must be {PARAMS_ALLOWED} (got "<script>alert(1)</scrip…").',
        ),
        (
            "params_millions",
            "9" * 100,
            f"Model size must be {PARAMS_ALLOWED} (got {'9' * 23}…).",
        ),
        ("batch_size", "0", "Batch size must be a whole number from 1 to 1,000,000 (got 0)."),
        ("batch_size", "2.5", "Batch size must be a whole number from 1 to 1,000,000 (got 2.5)."),
        ("batch_size", 2.5, "Batch size must be a whole number from 1 to 1,000,000 (got 2.5)."),
        (
            "batch_size",
            "1000001",
            "Batch size must be a whole number from 1 to 1,000,000 (got 1000001).",
        ),
        ("seq_len", "", "Sequence length is required: enter a whole number from 1 to 10,000,000."),
        (
            "seq_len",
            "-128",
            "Sequence length must be a whole number from 1 to 10,000,000 (got -128).",
        ),
        (
            "hidden_size",
            "1e9",
            "Hidden dimension must be a whole number from 1 to 1,000,000 (got 1e9).",
        ),
        (
            "num_layers",
            "twelve",
            'Number of layers must be a whole number from 1 to 100,000 (got "twelve").',
        ),
        ("mode", "serve", 'Mode must be one of training, inference (got "serve").'),
        ("mode", "", "Mode is required: choose one of training, inference."),
        ("precision", "fp4", f'Precision must be one of {PRECISIONS} (got "fp4").'),
        ("precision", 16, f"Precision must be one of {PRECISIONS} (got 16)."),
        (
            "optimizer",
            "sophia",
            "Optimizer must be one of sgd, sgd_momentum, adamw, adamw_8bit, adafactor, lion "
            '(got "sophia").',
        ),
        (
            "checkpointing",
            "half",
            'Gradient checkpointing must be one of none, selective, full (got "half").',
        ),
        ("lora_dropout", "1", "LoRA dropout must be a probability from 0 to 0.99 (got 1)."),
        ("num_gpus", "0", "Number of GPUs must be a whole number from 1 to 100,000 (got 0)."),
        (
            "cuda_context_mib",
            "-1",
            "CUDA context must be a whole number from 0 to 65,536 (got -1).",
        ),
        ("offload_optimizer", "maybe", 'Optimizer offload must be true or false (got "maybe").'),
    ],
)
def test_bad_value_names_its_field(field: str, raw: object, message: str) -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**VALID, field: raw})
    assert caught.value.problems == (Problem(field, message),)
    assert caught.value.field == field
    assert str(caught.value) == message


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({"params_millions": "x", "batch_size": "0", "mode": "?", "seq_len": ""})
    assert [p.field for p in caught.value.problems] == [
        "params_millions",
        "mode",
        "batch_size",
        "seq_len",
    ]


def test_training_in_an_inference_format_is_refused_on_precision() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**VALID, "precision": "int4", "mode": "training"})
    assert caught.value.problems == (
        Problem(
            "precision",
            "Precision int4 stores weights for inference only: for training choose fp32, "
            "amp_bf16, amp_fp16, bf16 or fp16, use it as a frozen base with LoRA, or set the "
            "mode to inference.",
        ),
    )


def test_mixed_precision_is_a_training_setting() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**VALID, "precision": "amp_bf16", "mode": "inference"})
    assert caught.value.field == "precision"
    assert "mixed-precision training" in str(caught.value)


def test_lora_needs_an_architecture() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**VALID, "finetune": "lora"})
    assert caught.value.field == "finetune"


def test_tensor_parallel_must_divide_gpus_and_heads() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({"model": "preset", "preset": "llama-3.1-8b", "tensor_parallel": 3, "num_gpus": 6})
    assert caught.value.problems == (
        Problem(
            "tensor_parallel",
            "Tensor-parallel degree 3 must divide the attention heads (32) and key/value "
            "heads (8).",
        ),
    )
    with pytest.raises(NnmemError, match="must divide the number of GPUs"):
        parse({"model": "preset", "preset": "llama-3.1-8b", "tensor_parallel": 4, "num_gpus": 6})


def test_unknown_field_is_named() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**VALID, "batchsize": 8})
    assert caught.value.field == "batchsize"
    assert str(caught.value).startswith('Unknown field "batchsize": the fields are model, ')


def test_model_kind_must_be_known() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**VALID, "model": "rnn"})
    assert caught.value.problems == (
        Problem("model", 'Model must be one of generic, transformer, preset, cnn (got "rnn").'),
    )


def test_preset_must_be_in_the_catalog() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({"model": "preset", "preset": "llama-9"})
    assert caught.value.field == "preset"
    assert str(caught.value).startswith('Preset "llama-9" is not in the catalog')


def test_config_must_be_json_with_the_needed_fields() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({"model": "transformer", "config": "{not json"})
    assert caught.value.problems == (
        Problem(
            "config",
            "Config is not valid JSON: Expecting property name enclosed in "
            "double quotes at line 1, column 2.",
        ),
    )
    with pytest.raises(NnmemError) as caught:
        parse({"model": "transformer", "config": {"hidden_size": 64}})
    assert [p.message for p in caught.value.problems] == [
        "config.json needs num_attention_heads (a whole number).",
        "config.json needs num_hidden_layers (a whole number).",
        "config.json needs intermediate_size (a whole number).",
        "config.json needs vocab_size (a whole number).",
    ]


def test_cnn_layer_errors_name_their_path() -> None:
    with pytest.raises(NnmemError) as caught:
        parse(
            {
                "model": "cnn",
                "cnn": {
                    "input": [3, 32, 32],
                    "layers": [{"type": "conv2d", "out_channels": 8, "kernel": 0}],
                },
            }
        )
    assert caught.value.field == "cnn.layers[0].kernel"


def test_scenario_must_be_an_object() -> None:
    with pytest.raises(NnmemError) as caught:
        parse([1, 2])  # type: ignore[arg-type]
    assert caught.value.field == "scenario"


def test_dataclasses_check_their_own_ranges() -> None:
    """Programmatic use gets the same messages as the schema."""
    with pytest.raises(NnmemError, match=r"Hidden dimension must be .* \(got 0\)\."):
        GenericModel(params=10, hidden_size=0, num_layers=1)
    with pytest.raises(NnmemError, match=r"Batch size must be .* \(got 0\)\."):
        Scenario(GenericModel(10, 1, 1), batch_size=0)
    with pytest.raises(NnmemError, match="stores weights for inference only"):
        Scenario(GenericModel(10, 1, 1), Mode.TRAINING, Precision.INT8)


def test_error_needs_a_problem() -> None:
    with pytest.raises(ValueError, match="at least one problem"):
        NnmemError([])
