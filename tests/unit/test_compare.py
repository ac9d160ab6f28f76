"""The calculator's Compare (nnmem.web.compare), its link state, and Import JSON
(nnmem.web.saved): each column is the calculator's own estimate for the same fields, the
differences are derived from them, and every bad input names its field."""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest

from nnmem import catalog
from nnmem.catalog import models
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.scenario import parse
from nnmem.solvers import judge
from nnmem.units import human
from nnmem.web import calculator, compare, handle, saved
from nnmem.web.form import DEFAULT_FIELDS, read
from nnmem.web.links import MAX_FRAGMENT, pack, query_string, unpack

LLAMA = {"describe": "fields", "preset": "llama-3.1-8b", "precision": "amp_bf16"}
TINY_CNN = {
    "input": [3, 32, 32],
    "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 10},
    ],
}
GPT2_CONFIG = {
    "model_type": "gpt2",
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "vocab_size": 50257,
    "n_positions": 1024,
}


def ask(fields: dict[str, Any]) -> dict[str, Any]:
    """The reply the page gets through nnmem.web.handle."""
    answer: dict[str, Any] = json.loads(handle(json.dumps({"page": "compare", "fields": fields})))
    return answer


def alone(fields: dict[str, str]) -> dict[str, Any]:
    """The calculator's own reply for one scenario's fields."""
    return calculator.answer({**DEFAULT_FIELDS, **fields})


SCENARIOS = [
    {"batch_size": "8"},
    {**LLAMA, "mode": "inference", "precision": "bf16", "batch_size": "1", "gpu": "rtx-4090"},
    {"describe": "cnn", "cnn": json.dumps(TINY_CNN), "gpu": "rtx-3090"},
]


def test_each_column_is_the_calculators_estimate_and_differences_are_derived() -> None:
    """Three scenarios of different kinds: each total and component equals the
    calculator's reply for the same fields, and each difference is that total less the
    first column's."""
    got = ask({"scenarios": SCENARIOS})
    assert got["ok"], got
    first = alone(SCENARIOS[0])["total_bytes"]
    for column, fields in zip(got["columns"], SCENARIOS, strict=True):
        own = alone(fields)
        assert column["total_bytes"] == own["total_bytes"]
        assert column["total_text"] == own["total_text"]
        assert column["description"] == own["description"]
        assert column["components"] == {
            c["key"]: c["bytes"] for c in own["download"]["estimate"]["components"]
        }
        assert column["diff_bytes"] == own["total_bytes"] - first
    assert got["columns"][0]["diff_bytes"] == 0


def test_the_table_shows_each_figure_with_its_difference_from_the_first() -> None:
    """Batch 8 against batch 16 of the example: the activations row and the total carry
    the second's difference, signed, as human() writes it."""
    a, b = {"batch_size": "8"}, {"batch_size": "16"}
    got = ask({"scenarios": [a, b]})
    table = got["html"]["compare"]
    comps = [alone(x)["download"]["estimate"]["components"] for x in (a, b)]
    act = [next(c["bytes"] for c in cs if c["key"] == "activations") for cs in comps]
    assert act[1] > act[0]  # twice the batch, more activations
    assert f'<td data-bytes="{act[1]}">{human(act[1])} <span class="diff">(+' in table
    assert f"(+{human(act[1] - act[0])})" in table
    diff = got["columns"][1]["diff_bytes"]
    assert f"(+{human(diff)})" in table
    assert got["columns"][1]["gpus"] == 1


def test_the_verdict_is_the_calculators_fit_on_each_gpu() -> None:
    """The headroom the verdict states is judge()'s, on the column's own GPU."""
    fields = {**LLAMA, "mode": "inference", "precision": "bf16", "batch_size": "1"}
    got = ask({"scenarios": [{**fields, "gpu": "rtx-4090"}, {**fields, "gpu": "rtx-3060-12gb"}]})
    scenario = read({**DEFAULT_FIELDS, **fields}).scenario
    assert scenario is not None
    fit = judge(scenario, "rtx-4090")
    assert fit.fits
    name = catalog.gpu("rtx-4090").name  # type: ignore[union-attr]
    assert got["columns"][0]["verdict"] == f"{name}: fits, {human(fit.headroom)} to spare"
    small = judge(scenario, "rtx-3060-12gb")
    assert not small.fits
    name = catalog.gpu("rtx-3060-12gb").name  # type: ignore[union-attr]
    assert got["columns"][1]["verdict"] == f"{name}: does not fit, {human(-small.headroom)} over"


def test_no_gpu_and_a_bad_column_are_said_not_hidden() -> None:
    """Without a GPU the verdict says so; a column with a bad field shows its message and
    the others are still estimated."""
    got = ask({"scenarios": [{"batch_size": "4"}, {"batch_size": "0"}]})
    assert got["columns"][0]["verdict"] == "No GPU chosen"
    assert got["columns"][1]["ok"] is False
    assert "Batch size" in got["columns"][1]["errors"][0]
    assert "Fix this scenario: Batch size" in got["html"]["compare"]


def test_ready_finetune_is_full_lora_and_qlora_of_the_same_model() -> None:
    """Full, LoRA and QLoRA (NF4 base), each with full checkpointing as the QLoRA recipe
    has it: equal to the calculator's replies for those fields, and in that order of
    size (LoRA drops the full model's gradients and optimizer states; NF4 shrinks the
    frozen weights to about a quarter of BF16's)."""
    base = {**LLAMA, "batch_size": "1", "seq_len": "2048", "gpu": "rtx-4090"}
    got = ask({"scenarios": [base], "ready": "finetune"})
    common = {**base, "mode": "training", "checkpointing": "full"}
    wanted = [
        {**common, "finetune": "full"},
        {**common, "finetune": "lora"},
        {**common, "finetune": "lora", "precision": "nf4"},
    ]
    totals = [c["total_bytes"] for c in got["columns"]]
    assert totals == [alone(w)["total_bytes"] for w in wanted]
    assert totals[0] > totals[1] > totals[2]
    assert "QLoRA rank 16" in got["columns"][2]["description"]


def test_ready_gpus_splits_training_with_zero3_and_inference_with_tensor_parallel() -> None:
    """One RTX 4090 against two RTX 3090s, split as the fewest-GPUs solver splits: ZeRO-3
    for training, tensor parallel over 2 for inference (Llama 3.1 8B's 32 heads and 8
    key/value heads divide by 2)."""
    train = ask({"scenarios": [LLAMA], "ready": "gpus"})
    assert train["states"][0]["gpu"] == "rtx-4090"
    two = train["states"][1]
    assert (two["gpu"], two["num_gpus"], two["sharding"]) == ("rtx-3090", "2", "zero3")
    assert train["columns"][1]["gpus"] == 2
    assert train["columns"][1]["total_bytes"] == alone(two)["total_bytes"]
    serve = ask(
        {"scenarios": [{**LLAMA, "mode": "inference", "precision": "bf16"}], "ready": "gpus"}
    )
    assert serve["states"][1]["tensor_parallel"] == "2"
    assert "per GPU of 2" in serve["columns"][1]["description"]


def test_the_compare_link_round_trips() -> None:
    """The packed states the reply gives, sent back as the link's fragment, give the same
    columns: a pasted config and a CNN layer list included."""
    scenarios = [
        *SCENARIOS[:2],
        {"describe": "config", "config": json.dumps(GPT2_CONFIG), "batch_size": "2"},
    ]
    got = ask({"scenarios": scenarios})
    assert got["link"]
    assert len(got["link"]) <= MAX_FRAGMENT
    assert json.loads(unpack(got["link"])) == got["states"]
    again = ask({"link": got["link"]})
    assert again["columns"] == got["columns"]
    assert again["states"] == got["states"]
    cnn = ask({"scenarios": [SCENARIOS[2]]})
    assert ask({"link": cnn["link"]})["columns"] == cnn["columns"]


def test_a_comparison_too_long_for_a_link_says_so() -> None:
    """Three configs padded with incompressible text pack past the link's limit: the
    reply leaves the link empty and names the limit and Download JSON."""
    rng = random.Random(3)
    padded = [
        {
            "describe": "config",
            "config": json.dumps(
                {**GPT2_CONFIG, "note": "".join(rng.choices(string.ascii_letters, k=40_000))}
            ),
        }
        for _ in range(3)
    ]
    got = ask({"scenarios": padded})
    assert got["ok"], got
    assert got["link"] == ""
    assert "too long for a link" in got["note"]
    assert f"at most {MAX_FRAGMENT:,}" in got["note"]
    assert "Download JSON" in got["note"]
    assert [c["total_bytes"] for c in got["columns"]] == [alone(padded[0])["total_bytes"]] * 3


def test_compact_states_hold_only_what_differs_and_applies() -> None:
    """A preset's architecture, filled in by nnmem, and view controls stay out."""
    fields = {**DEFAULT_FIELDS, **LLAMA, "cfg_hidden_size": "4096", "units": "gib"}
    assert compare.compact(fields) == {**LLAMA}
    edited = {**fields, "cfg_num_hidden_layers": "16"}
    assert compare.compact(edited)["cfg_num_hidden_layers"] == "16"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"scenarios": "x"}, "scenarios", "Scenarios must be a list of calculator fields"),
        ({"scenarios": [{}] * 4}, "scenarios", "Compare holds at most 3 scenarios (got 4)"),
        ({"scenarios": [{"bogus": "1"}]}, "scenarios", "Scenario A names fields the calculator"),
        ({"scenarios": [[]]}, "scenarios", "Scenario A must be an object of calculator fields"),
        ({"scenarios": [{}], "ready": "cheap"}, "ready", "Ready comparison must be one of"),
        ({"link": "%%%"}, "compare", "The link's comparison could not be read"),
        ({"link": pack("[1")}, "compare", "The link's comparison could not be read: it is not"),
        ({"link": "AAAA"}, "compare", "The link's comparison could not be read"),
    ],
)
def test_bad_compare_requests_name_the_field(
    fields: dict[str, Any], field: str, message: str
) -> None:
    got = ask(fields)
    assert got["ok"] is False
    assert got["errors"][0]["field"] == field
    assert message in got["errors"][0]["message"]


def test_pack_is_raw_deflate_in_base64url() -> None:
    """The browser's CompressionStream("deflate-raw") output, in base64url without
    padding: "{}" is the fixed-Huffman block 0xab 0xae 0x05 0x00 (RFC 1951 §3.2.6)."""
    assert pack("{}") == "q64FAA"
    text = json.dumps(models()["llama-3.1-8b"].config, indent=2)
    assert unpack(pack(text)) == text
    assert len(pack(text)) < len(text)


def test_a_cnn_and_a_config_round_trip_through_a_query_string() -> None:
    """A CNN layer list and a pasted config, written as a link's schema-term query
    (links.query_string), read back by the calculator's form to the same estimate."""
    from urllib.parse import parse_qsl

    for data in (
        {"model": "cnn", "cnn": TINY_CNN, "batch_size": 4},
        {"model": "transformer", "config": GPT2_CONFIG, "mode": "inference"},
    ):
        scenario = parse(data)
        fields = {k: v for k, v in DEFAULT_FIELDS.items() if k != "describe"}
        back = read({**fields, **dict(parse_qsl(query_string(scenario)))}).scenario
        assert back is not None
        assert estimate(back).total_bytes == estimate(scenario).total_bytes


# --- Import JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"batch_size": "16", "gpu": "rtx-4090"},
        {**LLAMA, "seq_len": "2048", "gpu": "a100-sxm-80gb", "finetune": "lora"},
        {"describe": "config", "config": json.dumps(GPT2_CONFIG), "mode": "inference"},
        {"describe": "cnn", "cnn": json.dumps(TINY_CNN)},
        {"describe": "cnn", "cnn": "resnet50", "batch_size": "8"},
    ],
)
def test_import_restores_what_download_wrote(fields: dict[str, str]) -> None:
    """The download's file, read back, gives fields whose estimate is the same, to the
    byte, on the same GPU."""
    before = alone(fields)
    text = json.dumps(before["download"], indent=2)
    restored = saved.fields_of(text)
    after = calculator.answer(restored)
    assert after["ok"], after
    assert after["total_bytes"] == before["total_bytes"]
    assert restored["gpu"] == fields.get("gpu", "")
    assert after["download"]["scenario"] == before["download"]["scenario"]


def test_import_reads_the_clis_json_too() -> None:
    """``nnmem --json`` prints Estimate.to_dict(), whose ``scenario`` is the same schema
    dict: the page imports it to the same total (no GPU: the CLI's JSON names none)."""
    scenario = parse({"model": "preset", "preset": "llama-3.1-8b", "precision": "amp_bf16"})
    result = estimate(scenario)
    restored = saved.fields_of(json.dumps(result.to_dict()))
    assert restored["gpu"] == ""
    assert calculator.answer(restored)["total_bytes"] == result.total_bytes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "The file is not valid JSON"),
        ("[1, 2]", 'The file is not one Download JSON wrote: it needs a "scenario" object'),
        ('{"scenario": 3}', 'it needs a "scenario" object'),
        (
            '{"scenario": {"model": "generic", "params_millions": 7000, "batch_size": 0}}',
            "The file's scenario.batch_size: Batch size must be a whole number",
        ),
        (
            '{"scenario": {"model": "preset", "preset": "no-such-model"}}',
            "The file's scenario.preset:",
        ),
        (
            '{"scenario": {"model": "generic", "params_millions": 7}, "gpu": {"id": "gtx-1"}}',
            'The file\'s gpu.id "gtx-1" is not in the catalog.',
        ),
        ('{"scenario": {"model": "generic", "params_millions": 7}, "gpu": 5}', '"gpu" must be'),
    ],
)
def test_import_names_what_is_wrong_in_the_file(text: str, message: str) -> None:
    got = json.loads(handle(json.dumps({"page": "saved", "fields": {"text": text}})))
    assert got["ok"] is False
    assert got["errors"][0]["field"] == "file"
    assert message in got["errors"][0]["message"]


def test_import_refuses_a_file_that_is_not_text() -> None:
    with pytest.raises(NnmemError, match="The file must be text"):
        saved.answer({"text": 5})
