"""The browser's one entry point: JSON in, JSON out, never a traceback."""

from __future__ import annotations

import json
from typing import Any

from nnmem.estimate import estimate
from nnmem.report import chart_svg, table_html
from nnmem.scenario import parse
from nnmem.web import DEFAULT_SCENARIO, FORM, compute, render


def ask(payload: object) -> dict[str, Any]:
    reply = json.loads(compute(json.dumps(payload)))
    assert isinstance(reply, dict)
    return reply


def test_default_scenario_is_the_brief_bert_example() -> None:
    reply = ask({"scenario": DEFAULT_SCENARIO})
    assert reply["ok"] is True
    assert reply["total_bytes"] == 4_543_314_764  # see test_estimate: BERT-base example
    assert reply["tensor_peak_bytes"] == 3_811_416_576
    assert reply["total_text"] == "4.54 GB"
    assert reply["total_detail"] == ("4,543,314,764 bytes; tensors peak at 3.81 GB in the forward")
    assert "optimizer" not in reply["inactive"]
    assert set(reply["html"]) == {"table", "chart", "phases", "formula", "notes"}


def test_reply_carries_the_same_fragments_the_build_prerenders() -> None:
    result = estimate(parse(DEFAULT_SCENARIO))
    reply = ask({"scenario": DEFAULT_SCENARIO})
    assert reply["html"]["table"] == table_html(result)
    assert reply["html"]["chart"] == chart_svg(result)
    assert reply == json.loads(json.dumps(render(result)))


def test_form_strings_are_accepted() -> None:
    fields = {key: str(value) for key, value in DEFAULT_SCENARIO.items()}
    assert ask({"scenario": fields})["total_bytes"] == 4_543_314_764


def test_errors_name_fields_and_hide_what_does_not_apply() -> None:
    reply = ask({"scenario": {"params_millions": "", "mode": "inference", "batch_size": "x"}})
    assert reply["ok"] is False
    assert [e["field"] for e in reply["errors"]] == ["params_millions", "batch_size"]
    assert reply["inactive"] == ["optimizer"]  # only form fields are listed


def test_malformed_requests_get_a_plain_answer() -> None:
    assert json.loads(compute("not json")) == {
        "ok": False,
        "errors": [],
        "inactive": [],
        "fill": {},
        "fatal": "JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    }
    reply = ask({"nothing": 1})
    assert reply["errors"] == [
        {"field": "fields", "message": "The request must hold a fields object."}
    ]


def test_form_describes_every_schema_field_once() -> None:
    assert [f.key for f in FORM] == [
        "params_millions",
        "hidden_size",
        "num_layers",
        "mode",
        "precision",
        "optimizer",
        "batch_size",
        "seq_len",
    ]
    precision = next(f for f in FORM if f.key == "precision")
    assert precision.options[:5] == (
        ("fp32", "FP32"),
        ("amp_bf16", "BF16 mixed precision (AMP)"),
        ("amp_fp16", "FP16 mixed precision (AMP)"),
        ("bf16", "BF16"),
        ("fp16", "FP16"),
    )
    assert all(f.hint.endswith(".") for f in FORM)
