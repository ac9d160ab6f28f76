"""Every kind of bad input to the related tools, each answered against its field with what
is allowed and the value given; nothing raises."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem.web import handle
from nnmem.web.tools import defaults

PERCENT = "a percentage from 0.1 to 100"


def problems(tool: str, **changes: object) -> list[dict[str, str]]:
    reply: dict[str, Any] = json.loads(
        handle(json.dumps({"page": tool, "fields": {**defaults(tool), **changes}}))
    )
    assert reply["ok"] is False
    assert "fatal" not in reply
    errors: list[dict[str, str]] = reply["errors"]
    return errors


@pytest.mark.parametrize(
    ("tool", "field", "raw", "message"),
    [
        (
            "training-cost",
            "params_billions",
            "0",
            "Model size must be a number of billions of parameters from 0.001 to 100,000 (got 0).",
        ),
        (
            "training-cost",
            "tokens_billions",
            "lots",
            "Training tokens must be a number of billions of tokens from 0.001 to 10,000,000 "
            '(got "lots").',
        ),
        ("training-cost", "mfu", "150", f"Utilisation (MFU) must be {PERCENT} (got 150)."),
        ("training-cost", "mfu", "", f"Utilisation (MFU) is required: enter {PERCENT}."),
        (
            "training-cost",
            "num_gpus",
            "2.5",
            "Number of GPUs must be a whole number from 1 to 1,000,000 (got 2.5).",
        ),
        (
            "training-cost",
            "price_per_gpu_hour",
            "-1",
            "Price per GPU-hour must be a price from 0 to 1,000,000 (got -1).",
        ),
        (
            "training-cost",
            "currency",
            "<b>",
            'Currency must be a code such as USD or EUR, or a symbol such as $ or € (got "<b>").',
        ),
        (
            "training-cost",
            "gpu",
            "m4-max-128gb",  # no published BF16 tensor rate, so not offered
            'GPU must be one of the listed ids, such as rtx-3060-12gb (got "m4-max-128gb").',
        ),
        (
            "inference-latency",
            "new_tokens",
            "-5",
            "Generated tokens must be a whole number from 1 to 1,000,000 (got -5).",
        ),
        (
            "inference-latency",
            "bandwidth_efficiency",
            "0",
            f"Bandwidth efficiency must be {PERCENT} (got 0).",
        ),
        (
            "inference-latency",
            "preset",
            "bert-base-uncased",
            "Model must be one of the listed ids, such as deepseek-r1-distill-qwen-1.5b "
            '(got "bert-base-uncased").',
        ),
        (
            "inference-latency",
            "precision",
            "fp4",
            'Weight format must be one of the listed ids, such as bf16 (got "fp4").',
        ),
        (
            "parameter-count",
            "hidden_size",
            "0",
            "Hidden size must be a whole number from 1 to 1,000,000 (got 0).",
        ),
        (
            "parameter-count",
            "num_key_value_heads",
            "5",
            "Key/value heads must divide the attention heads (32) (got 5).",
        ),
        (
            "parameter-count",
            "num_attention_heads",
            "48",
            "Attention heads must divide the hidden size (4,096) (got 48).",
        ),
        (
            "parameter-count",
            "source",
            "guess",
            'Describe the model by must be one of the listed ids, such as fields (got "guess").',
        ),
    ],
)
def test_bad_value_is_named_with_its_field(tool: str, field: str, raw: str, message: str) -> None:
    assert problems(tool, **{field: raw})[0] == {"field": field, "message": message}


def test_experts_per_token_cannot_exceed_the_experts() -> None:
    assert problems("parameter-count", num_local_experts="4", num_experts_per_tok="8") == [
        {
            "field": "num_experts_per_tok",
            "message": "Experts per token must be at most the experts (4) (got 8).",
        }
    ]


def test_every_bad_field_is_reported_at_once() -> None:
    fields = [p["field"] for p in problems("training-cost", params_billions="x", mfu="0")]
    assert fields == ["params_billions", "mfu"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            '{"hidden_size": 4096,',
            "config.json is not valid JSON: Expecting property name "
            "enclosed in double quotes at line 1, column 22.",
        ),
        ("[1, 2]", 'Paste a config.json: a JSON object such as {"hidden_size": 4096, …}.'),
        ("", 'Paste a config.json: a JSON object such as {"hidden_size": 4096, …}.'),
        ('{"model_type": "llama"}', "config.json needs hidden_size (a whole number)."),
        (
            '{"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": -1, '
            '"vocab_size": 1000, "intermediate_size": 3072}',
            "config.json field num_hidden_layers must be from 1 to 1,000,000,000 (got -1).",
        ),
    ],
)
def test_bad_config_is_named_against_the_config_box(config: str, message: str) -> None:
    found = problems("parameter-count", source="config", config=config)
    assert found[0] == {"field": "config", "message": message}


def test_unknown_tool_and_malformed_requests() -> None:
    reply = json.loads(handle('{"page": "nope", "fields": {}}'))
    assert reply["errors"][0]["field"] == "page"
    assert reply["errors"][0]["message"].startswith("Page must be one of calculator, ")
    assert reply["errors"][0]["message"].endswith('(got "nope").')
    assert json.loads(handle("not json"))["errors"][0]["message"] == (
        "The request is not valid JSON: Expecting value at line 1, column 1."
    )
    for request in ("[]", '{"page": "training-cost", "fields": 3}'):
        assert json.loads(handle(request))["errors"] == [
            {"field": "fields", "message": "The request must hold a fields object."}
        ]
