"""Every kind of bad input, each reported against its field with what is allowed."""

from __future__ import annotations

import json

import pytest

from nnmem import GenericModel, Mode, NnmemError, Precision, Scenario, parse
from nnmem.errors import Problem
from nnmem.web import handle
from nnmem.web.form import DEFAULT_FIELDS, FIELDS

VALID = {"params_millions": "110", "hidden_size": "768", "num_layers": "12"}

PARAMS_ALLOWED = (
    "a number of millions of parameters above 0 and at most 10,000,000, or a count with its "
    "unit such as 7B or 350M"
)
PRECISIONS = (
    "fp32, amp_bf16, amp_fp16, bf16, fp16, fp8, int8, int4, gptq, awq, nf4, nf4_dq, q8_0, "
    "q6_k, q5_k_m, q4_k_m, q4_0, mxfp4, nvfp4"
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
            "Gradient checkpointing must be one of none, selective, per_op, every_n, full "
            '(got "half").',
        ),
        ("lora_dropout", "1", "LoRA dropout must be a probability from 0 to 0.99 (got 1)."),
        ("num_gpus", "0", "Number of GPUs must be a whole number from 1 to 100,000 (got 0)."),
        (
            "cuda_context_mib",
            "-1",
            "CUDA context must be a whole number from 0 to 65,536 (got -1).",
        ),
        ("offload_optimizer", "maybe", 'Optimizer offload must be true or false (got "maybe").'),
        (
            "expandable_segments",
            "maybe",
            'expandable_segments must be true or false (got "maybe").',
        ),
        (
            "max_split_size_mb",
            "4",
            "max_split_size_mb must be a whole number from 20 to 10,000,000 (got 4).",
        ),
        (
            "roundup_power2_divisions",
            "3",
            "roundup_power2_divisions must be 0 (off) or a power of 2 such as 4 (got 3).",
        ),
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
            "Precision INT4 (plain) stores weights for inference only. To train, choose FP32, "
            "BF16 mixed precision (AMP), FP16 mixed precision (AMP), BF16 or FP16. Or set the "
            "mode to Inference.",
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


def test_expert_parallel_must_divide_experts_and_gpus() -> None:
    mixtral = {"model": "preset", "preset": "mixtral-8x7b", "mode": "training"}
    with pytest.raises(NnmemError) as caught:
        parse({**mixtral, "expert_parallel": 3, "num_gpus": 3})
    assert caught.value.problems == (
        Problem("expert_parallel", "Expert-parallel degree 3 must divide the model's 8 experts."),
    )
    with pytest.raises(NnmemError) as caught:
        parse({**mixtral, "expert_parallel": 4, "num_gpus": 6})
    assert caught.value.problems == (
        Problem(
            "expert_parallel",
            "The number of GPUs (6) must be a multiple of the expert-, tensor- and "
            "pipeline-parallel degrees' product (4).",
        ),
    )


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


@pytest.mark.parametrize(
    ("model_id", "patch", "loc", "message"),
    [
        (
            "qwen3-next-80b-a3b",
            {"full_attention_interval": 0},
            ("config", "full_attention_interval"),
            "config.json field full_attention_interval must be from 1 to 1,000,000,000 (got 0).",
        ),
        (
            "qwen3-next-80b-a3b",
            {"mlp_only_layers": 3},
            ("config", "mlp_only_layers"),
            "config.json field mlp_only_layers must be a list of layer numbers (got 3).",
        ),
        (
            "deepseek-v3",
            {"kv_lora_rank": "x"},
            ("config", "kv_lora_rank"),
            'config.json field kv_lora_rank must be a whole number (got "x").',
        ),
        (
            "llama-4-scout",
            {
                "vision_config": {
                    "hidden_size": 1408,
                    "intermediate_size": 5632,
                    "num_hidden_layers": 34,
                    "image_size": 336,
                    "patch_size": 0,
                    "projector_input_dim": 4096,
                    "projector_output_dim": 4096,
                    "vision_output_dim": 4096,
                }
            },
            ("config", "vision_config", "patch_size"),
            "vision_config: config.json field patch_size must be from 1 to 1,000,000,000 (got 0).",
        ),
    ],
)
def test_large_model_config_errors_name_their_field(
    model_id: str, patch: dict[str, object], loc: tuple[str, ...], message: str
) -> None:
    from nnmem.runtimes.models import config

    with pytest.raises(NnmemError) as caught:
        parse({"model": "transformer", "config": {**config(model_id), **patch}})
    assert [(p.loc, p.message) for p in caught.value.problems] == [(loc, message)]


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


# --- the calculator page: hostile values in any control -------------------------------------

SCRIPT = "<script>alert(1)</script>"
BOXES = {"start_model", "start_hardware"}
IMG = '"><img src=x onerror=alert(1)>'
BIG = "x" * 100_000
BUILTINS = "resnet18, resnet34, resnet50, resnet101, resnet152, vgg11, vgg13, vgg16, vgg19"
LLAMA_FIELDS = {"describe": "fields", "preset": "llama-3.1-8b"}


@pytest.mark.parametrize(
    ("extra", "key", "raw", "message"),
    [
        (
            {},
            "batch_size",
            SCRIPT,
            "Batch size must be a whole number from 1 to 1,000,000 "
            '(got "<script>alert(1)</scrip…").',
        ),
        (
            {},
            "precision",
            IMG,
            f'Precision must be one of {PRECISIONS} (got ""><img src=x onerror=al…").',
        ),
        ({}, "params_millions", "NaN", f'Model size must be {PARAMS_ALLOWED} (got "NaN").'),
        (
            {},
            "seq_len",
            "inf",
            'Sequence length must be a whole number from 1 to 10,000,000 (got "inf").',
        ),
        (
            {},
            "batch_size",
            "1e999",
            "Batch size must be a whole number from 1 to 1,000,000 (got 1e999).",
        ),
        (
            {},
            "hidden_size",
            BIG,
            "Hidden dimension must be a whole number from 1 to 1,000,000 "
            '(got "xxxxxxxxxxxxxxxxxxxxxxx…").',
        ),
        (
            {},
            "describe",
            SCRIPT,
            "Model input must be one of simple, fields, config, cnn "
            '(got "<script>alert(1)</scrip…").',
        ),
        (
            {},
            "gpu",
            IMG,
            'GPU ""><img src=x onerror=al…" is not in the catalog: choose one from the list.',
        ),
        (
            {"gpu": "custom"},
            "gpu_gb",
            "0 GB",
            "Custom capacity must be the card's memory in GB as its maker quotes it, a number "
            "from 0.1 to 1,024 such as 8 or 12 (got 0).",
        ),
        (
            {"gpu": "custom"},
            "gpu_gb",
            "",
            "Custom capacity is required: enter the card's memory in GB as its maker quotes "
            "it, a number from 0.1 to 1,024 such as 8 or 12.",
        ),
        (
            {"gpu": "custom"},
            "gpu_gb",
            "eight",
            "Custom capacity must be the card's memory in GB as its maker quotes it, a number "
            'from 0.1 to 1,024 such as 8 or 12 (got "eight").',
        ),
        ({}, "units", BIG, 'Units must be one of gb, gib (got "xxxxxxxxxxxxxxxxxxxxxxx…").'),
        ({}, "plot", "NaN", 'Plot axis must be one of batch_size, seq_len (got "NaN").'),
        (
            LLAMA_FIELDS,
            "preset",
            SCRIPT,
            'Preset "<script>alert(1)</scrip…" is not in the catalog: pick a model from the '
            "list or type its name, such as Llama 3.1 8B or llama-3.1-8b.",
        ),
        (
            LLAMA_FIELDS,
            "cfg_hidden_size",
            "1e999",
            "Hidden size must be a whole number from 1 to 1,000,000,000 (got 1e999).",
        ),
        (
            LLAMA_FIELDS,
            "cfg_model_type",
            SCRIPT,
            "Model type must be a config.json model_type such as llama: letters, digits, dots, _ "
            'and -, at most 64 (got "<script>alert(1)</scrip…").',
        ),
        (
            LLAMA_FIELDS,
            "cfg_tie_word_embeddings",
            "NaN",
            'Tied embeddings must be true or false (got "NaN").',
        ),
        (
            {"describe": "config"},
            "config",
            '{"hidden_size": NaN}',
            "Config is not valid JSON: NaN is not a JSON number.",
        ),
        (
            {"describe": "config"},
            "config",
            '{"hidden_size": 1e999}',
            "Config is not valid JSON: the number 1e999 is out of range.",
        ),
        (
            {"describe": "config"},
            "config",
            "[1, 2]",
            "Config must be a config.json object with fields such as hidden_size.",
        ),
        (
            {"describe": "config"},
            "config",
            '{"model_type": "llama", "hidden_size": "' + BIG + '"}',
            "config.json field hidden_size must be a whole number "
            '(got "xxxxxxxxxxxxxxxxxxxxxxx…").',
        ),
        (
            {"describe": "config"},
            "config",
            SCRIPT,
            "Config is not valid JSON: Expecting value at line 1, column 1.",
        ),
        (
            {"describe": "cnn"},
            "cnn",
            '[{"type": "conv2d"}]',
            f"Cnn must be a built-in network ({BUILTINS}) or a layer list object "
            '(got [{"type": "conv2d"}]).',
        ),
        (
            {"describe": "cnn"},
            "cnn",
            SCRIPT,
            f'cnn must name a built-in network: {BUILTINS} (got "<script>alert(1)</scrip…").',
        ),
        (
            {"describe": "fields"},
            "config",
            '"a string"',
            "Pick a preset: the pasted config.json cannot be the base (it must be a config.json "
            "object with fields such as hidden_size).",
        ),
    ],
)
def test_page_field_reports_hostile_value(
    extra: dict[str, str], key: str, raw: str, message: str
) -> None:
    """The message names the control by its label, says what is allowed, and echoes the
    value cut to 24 characters; the reply never raises and places it on a page control."""
    fields = {**DEFAULT_FIELDS, **extra, key: raw}
    reply = json.loads(handle(json.dumps({"fields": fields})))
    assert reply["ok"] is False
    assert "fatal" not in reply
    field = "preset" if key == "config" and extra.get("describe") == "fields" else key
    assert reply["errors"][0] == {"field": field, "message": message}


HOSTILE = [SCRIPT, IMG, "NaN", "1e999", BIG, "", "[]", '{"a":']


@pytest.mark.parametrize("describe", ["simple", "fields", "config", "cnn"])
def test_no_control_breaks_the_reply_or_reaches_html_unescaped(describe: str) -> None:
    """Every hostile value in every control (the model's own controls in each describe
    mode, the rest once): an answer, every error on a page control and short, and no
    markup from the value in any fragment."""
    base = {**DEFAULT_FIELDS, "describe": describe, "preset": "llama-3.1-8b", "cnn": "resnet18"}
    base["config"] = json.dumps(
        {
            "model_type": "llama",
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "vocab_size": 1000,
        }
    )
    keys = [k for k, f in FIELDS.items() if describe in f.describe_modes]
    if describe == "simple":
        keys += [k for k, f in FIELDS.items() if not f.describe_modes]
    for key in keys:
        for raw in HOSTILE:
            reply = json.loads(handle(json.dumps({"fields": {**base, key: raw}})))
            assert "fatal" not in reply, (key, raw[:40])
            assert reply["ok"] or reply["errors"], (key, raw[:40])
            for error in reply["errors"]:
                assert error["field"] in FIELDS
                assert len(error["message"]) < 400
            for html in reply.get("html", {}).values():
                assert "<script" not in html
                assert "<img" not in html


def test_markup_inside_a_valid_config_is_escaped() -> None:
    """A pasted config may carry any text as its model_type; it shows up escaped."""
    config = {
        "model_type": IMG,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "vocab_size": 1000,
    }
    reply = json.loads(
        handle(
            json.dumps(
                {"fields": {**DEFAULT_FIELDS, "describe": "config", "config": json.dumps(config)}}
            )
        )
    )
    assert reply["ok"] is True
    for html in reply["html"].values():
        assert "<img" not in html


def test_script_in_every_control_at_once_is_reported_on_each_visible_one() -> None:
    """A shared link with a payload in every parameter: the describe mode falls back to
    the parameter count, and every control still shown carries its own message."""
    fields = dict.fromkeys(FIELDS, SCRIPT)
    reply = json.loads(handle(json.dumps({"fields": fields})))
    assert reply["ok"] is False
    flagged = {e["field"] for e in reply["errors"]}
    # The start panel's boxes are read only when edited; nnmem fills them from the form.
    shown = set(FIELDS) - set(reply["inactive"]) - BOXES
    assert shown == flagged
    assert {"describe", "params_millions", "hidden_size", "num_layers", "gpu"} <= flagged
    assert all("<script>alert(1)</scrip…" in e["message"] for e in reply["errors"])


@pytest.mark.parametrize("describe", ["simple", "fields", "config", "cnn"])
def test_script_in_every_control_of_a_describe_mode(describe: str) -> None:
    fields = {**dict.fromkeys(FIELDS, SCRIPT), "describe": describe}
    reply = json.loads(handle(json.dumps({"fields": fields})))
    flagged = {e["field"] for e in reply["errors"]}
    assert set(FIELDS) - set(reply["inactive"]) - {"describe"} - BOXES == flagged
    assert SCRIPT not in reply["fill"].values()


def test_a_quantized_base_names_lora_in_the_pages_words() -> None:
    """NF4 trains only as the frozen base of LoRA adapters: the message names the options
    as the page's menus do, and the control (Fine-tuning: LoRA adapters) that makes it valid."""
    with pytest.raises(NnmemError) as caught:
        parse({"model": "preset", "preset": "llama-3.1-8b", "precision": "nf4"})
    assert caught.value.problems == (
        Problem(
            "precision",
            "Precision NF4 (bitsandbytes 4-bit) stores weights for inference only. To train, "
            "choose FP32, BF16 mixed precision (AMP), FP16 mixed precision (AMP), BF16 or FP16. "
            "To train adapters over it as a frozen base (QLoRA), set Fine-tuning to LoRA "
            "adapters. Or set the mode to Inference.",
        ),
    )
