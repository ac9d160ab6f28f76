"""The calculator's reply in three parts holds exactly what the one-part reply does."""

from __future__ import annotations

import json

import pytest

from nnmem.web import handle
from nnmem.web.calculator import CHART_PARTS, DEFAULT_FIELDS, FIRST_PARTS, REST_PARTS

CASES = [
    {},
    {"gpu": "rtx-4090", "units": "gib"},
    {
        "describe": "fields",
        "preset": "llama-3.1-8b",
        "precision": "amp_bf16",
        "batch_size": "4",
        "seq_len": "4096",
        "gpu": "h100-sxm-80gb",
    },
    {"describe": "cnn", "cnn": "resnet50", "batch_size": "64", "gpu": "t4"},
]


def ask(fields: dict[str, str], part: str | None) -> dict[str, object]:
    request: dict[str, object] = {"fields": {**DEFAULT_FIELDS, **fields}}
    if part is not None:
        request["part"] = part
    answer: dict[str, object] = json.loads(handle(json.dumps(request)))
    return answer


@pytest.mark.parametrize("fields", CASES)
def test_first_rest_and_chart_together_equal_the_whole_reply(fields: dict[str, str]) -> None:
    whole = ask(fields, None)
    first, rest, chart = ask(fields, "first"), ask(fields, "rest"), ask(fields, "chart")
    assert whole["ok"]
    assert first["ok"]
    assert rest["ok"]
    assert chart["ok"]
    assert sorted(first["html"]) == sorted(FIRST_PARTS)  # type: ignore[arg-type]
    assert sorted(rest["html"]) == sorted(REST_PARTS)  # type: ignore[arg-type]
    assert sorted(chart["html"]) == sorted(CHART_PARTS)  # type: ignore[arg-type]
    html = {**first["html"], **rest["html"], **chart["html"]}  # type: ignore[dict-item]
    merged = {**first, "html": html}
    merged["download"] = {**first["download"], **rest["download"]}  # type: ignore[dict-item]
    # The verdict's words come with the total (the card alone gives them) and again with
    # the verdict, the same.
    assert first["verdict_text"] == rest["verdict_text"]
    assert merged == whole
    # The chart adds nothing to the download and sets no control.
    assert chart["download"] == {}
    assert "set" not in chart
    # The later parts of a reply asked after other fields still answer their own fields.
    ask({"batch_size": "3"}, "first")
    assert ask(fields, "rest") == rest
    ask({"batch_size": "3"}, "first")
    assert ask(fields, "chart") == chart


def test_bad_fields_give_the_same_problems_in_every_part() -> None:
    bad = {"batch_size": "0"}
    errors = ask(bad, None)["errors"]
    assert ask(bad, "first")["errors"] == ask(bad, "rest")["errors"] == errors
    assert ask(bad, "chart")["errors"] == errors
    assert ask(bad, "first")["errors"]


def test_an_unknown_part_is_named() -> None:
    got = ask({}, "middle")
    assert got["errors"] == [
        {"field": "part", "message": 'Part must be one of all, first, rest, chart (got "middle").'}
    ]
