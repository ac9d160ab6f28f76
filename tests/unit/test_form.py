"""The calculator form: its controls, and how each describe mode becomes a scenario."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem import catalog
from nnmem.estimate import estimate
from nnmem.models.architecture import from_config, layer_params
from nnmem.scenario import SETTINGS, parse
from nnmem.web import handle
from nnmem.web.form import (
    CONFIG_FIELDS,
    DEFAULT_FIELDS,
    FIELDS,
    FORM_SECTIONS,
    GPU_OPTIONS,
    PRESETS,
    START_FIELDS,
    VIEW_FIELDS,
    translate,
)

LLAMA = catalog.models()["llama-3.1-8b"]


def ask(fields: dict[str, Any]) -> dict[str, Any]:
    reply = json.loads(handle(json.dumps({"fields": {**DEFAULT_FIELDS, **fields}})))
    assert isinstance(reply, dict)
    return reply


def test_every_control_has_a_label_and_a_one_line_hint() -> None:
    for key, f in FIELDS.items():
        assert f.label, key
        assert f.hint.endswith("."), key
        assert "\n" not in f.hint, key
        assert f.kind in {"number", "choice", "radio", "text", "search", "textarea", "flag"}, key


def test_every_schema_setting_and_view_control_is_on_the_form() -> None:
    assert set(SETTINGS) | {"gpu", "units", "plot", "describe", "preset"} <= set(FIELDS)
    assert set(DEFAULT_FIELDS) == set(FIELDS)
    assert all(isinstance(v, str) for v in DEFAULT_FIELDS.values())


def test_cfg_hints_name_the_config_json_key() -> None:
    for c in CONFIG_FIELDS:
        assert f"config.json {c.key}" in FIELDS[c.name].hint


def test_sections_open_and_closed() -> None:
    ids = [(sid, opened) for sid, _, opened, _ in FORM_SECTIONS]
    assert ids == [("model", True), ("step", True), ("runtime", True), ("advanced", False)]
    assert [s.id for s in FORM_SECTIONS if not s.open] == ["advanced"]
    advanced = {f.key for f in FORM_SECTIONS[3].fields}
    assert {"lora_rank", "attention", "kv_cache_dtype"} <= advanced
    assert {"cuda_context_mib", "allocator_overhead_percent", "device"} <= advanced
    # The settings that change the answer most sit in the start panel, above the form.
    start = [f.key for f in START_FIELDS]
    assert start == [
        "intent",
        "start_model",
        "start_hardware",
        "num_gpus",
        "sharding",
        "checkpointing",
    ]
    assert {f.form for f in START_FIELDS} == {"calc"}
    assert not set(start) & advanced


def test_view_controls_sit_outside_the_form_and_join_it() -> None:
    """gpu (and the capacity of a custom card), units and plot are placed by the result
    they change, with form="calc"."""
    assert [(f.key, f.kind, f.form) for f in VIEW_FIELDS] == [
        ("gpu", "choice", "calc"),
        ("gpu_gb", "number", "calc"),
        ("units", "radio", "calc"),
        ("plot", "radio", "calc"),
    ]
    in_sections = {f.key for s in FORM_SECTIONS for f in s.fields}
    assert in_sections.isdisjoint(f.key for f in VIEW_FIELDS)
    assert (FIELDS["describe"].kind, FIELDS["preset"].kind) == ("radio", "search")


def test_preset_and_gpu_options() -> None:
    assert [(p.id, p.kind) for p in PRESETS if p.kind == "cnn"] == [
        ("resnet50", "cnn"),
        ("vgg16", "cnn"),
    ]
    presets = {p.id: p.label for p in PRESETS}
    assert len(presets) == len(catalog.models())
    assert presets["llama-3-8b"] == "Llama 3 8B · 8.03B"  # 8,030,261,248 parameters
    assert presets["gpt2"] == "GPT-2 (124M) · 124M"  # 124,439,808
    gpus = dict(GPU_OPTIONS)
    assert len(gpus) == len(catalog.gpus())
    assert gpus["h100-sxm-80gb"] == "NVIDIA H100 SXM 80GB · 80 GB"
    # Apple's GPU may wire 75% of 64 GiB = 48 GiB.
    # Named by the marketing size; the usable share in its real unit.
    assert gpus["m2-max-64gb"].endswith("· 64 GB, 48.0 GiB usable by the GPU")
    kinds = [catalog.gpus()[i].kind for i, _ in GPU_OPTIONS]
    assert kinds == sorted(kinds, key=["consumer", "workstation", "datacenter", "apple"].index)


def test_simple_mode_is_the_generic_model() -> None:
    reply = ask({})
    assert reply["ok"] is True
    assert reply["total_bytes"] == 4_794_973_004  # BERT-base example, see test_estimate
    assert reply["fill"] == {
        "params_millions": "110",
        "hidden_size": "768",
        "num_layers": "12",
        "start_model": "110M",  # the start panel's model box names the model in use
        "start_hardware": "",
    }
    # Width and depth worked out from the size stay out of fill, so they keep following it.
    derived = ask({"params_millions": "7000", "hidden_size": "", "num_layers": ""})
    assert derived["fill"] == {
        "params_millions": "7000",
        "start_model": "7000M",
        "start_hardware": "",
    }
    # ...and are shown in the empty fields instead, as what the size gives.
    assert derived["derived"] == {"hidden_size": "4,204", "num_layers": "33"}
    # h = √(7e9 / (12 × 33)) = 4,204 for L = round((7e9 / (12 × 128²))^(1/3)) = 33.
    assert "Assumed hidden dimension 4,204 and 33 layers" in derived["html"]["notes"]


def test_fields_mode_with_a_preset_equals_the_preset_exactly() -> None:
    settings = {"precision": "amp_bf16", "batch_size": "2", "seq_len": "1024"}
    reply = ask({"describe": "fields", "preset": "llama-3.1-8b", **settings})
    expected = estimate(parse({"model": "preset", "preset": "llama-3.1-8b", **settings}))
    assert reply["total_bytes"] == expected.total_bytes
    assert reply["download"]["estimate"] == json.loads(json.dumps(expected.to_dict()))
    assert reply["description"].startswith("Training · Llama 3.1 8B ·")
    # The preset's values shown back in the fields leave it the preset, byte for byte.
    filled = {k: v for k, v in reply["fill"].items() if k.startswith("cfg_")}
    assert filled["cfg_hidden_size"] == "4096"
    assert filled["cfg_num_key_value_heads"] == "8"
    assert filled["cfg_tie_word_embeddings"] == "false"
    again = ask({"describe": "fields", "preset": "llama-3.1-8b", **settings, **filled})
    assert again == reply


def test_a_cfg_edit_changes_the_estimate_as_from_config_would() -> None:
    """Halving Llama 3.1 8B to 16 layers removes 16 × 218,112,000 parameters: per layer
    4096·4096·2 + 4096·1024·2 (q, o, k, v) + 3·4096·14336 (gate, up, down) + 2·4096 (norms);
    in fp32 that is 16 × 218,112,000 × 4 B = 13,959,168,000 B of weights."""
    edited = ask({"describe": "fields", "preset": "llama-3.1-8b", "cfg_num_hidden_layers": "16"})
    config = {**LLAMA.config, "num_hidden_layers": 16}
    expected = estimate(parse({"model": "transformer", "config": config}))
    assert edited["total_bytes"] == expected.total_bytes
    assert layer_params(from_config(LLAMA.config)) == 218_112_000
    full = ask({"describe": "fields", "preset": "llama-3.1-8b"})
    weights = [
        next(c["bytes"] for c in r["download"]["estimate"]["components"] if c["key"] == "weights")
        for r in (full, edited)
    ]
    assert weights[0] - weights[1] == 13_959_168_000
    assert edited["fill"]["cfg_num_hidden_layers"] == "16"


def test_cfg_edits_follow_the_configs_own_key_names() -> None:
    """GPT-2 names the width n_embd; an edit of cfg_hidden_size must change it."""
    t = translate({"describe": "fields", "preset": "gpt2", "cfg_hidden_size": "1536"})
    assert t.config is not None
    assert (t.config["n_embd"], t.config["hidden_size"]) == (1536, 1536)
    assert from_config(t.config).hidden == 1536


def test_fields_mode_starts_from_a_pasted_config_without_a_preset() -> None:
    text = json.dumps(LLAMA.config)
    reply = ask({"describe": "fields", "config": text, "cfg_num_hidden_layers": "16"})
    config = {**LLAMA.config, "num_hidden_layers": 16}
    assert (
        reply["total_bytes"]
        == estimate(parse({"model": "transformer", "config": config})).total_bytes
    )


def test_config_mode_reads_the_pasted_json() -> None:
    text = json.dumps(LLAMA.config, indent=2)
    reply = ask({"describe": "config", "config": text, "mode": "inference", "precision": "bf16"})
    expected = estimate(
        parse(
            {
                "model": "transformer",
                "config": LLAMA.config,
                "mode": "inference",
                "precision": "bf16",
                "batch_size": 32,
                "seq_len": 128,
            }
        )
    )
    assert reply["total_bytes"] == expected.total_bytes
    assert reply["fill"]["cfg_num_hidden_layers"] == "32"
    # The pasted text is the user's input, which a link carries: never rewritten.
    assert "config" not in reply["fill"]
    assert reply["fill"]["preset"] == ""  # so the fields mode then edits this config
    fields_mode = ask({"describe": "fields", "preset": "llama-3.1-8b"})
    assert json.loads(fields_mode["fill"]["config"]) == LLAMA.config


@pytest.mark.parametrize(
    "cnn",
    [
        "resnet50",
        " ResNet50 ",
        json.dumps({"builtin": "resnet50"}),
    ],
)
def test_cnn_mode_takes_a_name_or_a_layer_list(cnn: str) -> None:
    reply = ask({"describe": "cnn", "cnn": cnn, "batch_size": "8"})
    expected = estimate(parse({"model": "cnn", "cnn": "resnet50", "batch_size": 8}))
    assert reply["total_bytes"] == expected.total_bytes
    assert "seq_len" in reply["inactive"]
    assert reply["fill"]["params_millions"] == "25.557032"  # 25,557,032 parameters


def test_a_url_from_to_dict_opens_the_same_scenario() -> None:
    """Without describe, the schema's model key picks the mode, so a compact scenario
    dict (dict values as JSON text) is a valid query string."""
    scenario = parse(
        {
            "model": "preset",
            "preset": "qwen2.5-7b",
            "mode": "inference",
            "precision": "bf16",
            "batch_size": 3,
        }
    )
    query = {
        k: json.dumps(v) if isinstance(v, dict) else str(v)
        for k, v in scenario.to_dict(compact=True).items()
    }
    reply = json.loads(handle(json.dumps({"fields": query})))
    assert reply["total_bytes"] == estimate(scenario).total_bytes
    config = parse({"model": "transformer", "config": LLAMA.config})
    query = {
        k: json.dumps(v) if isinstance(v, dict) else str(v)
        for k, v in config.to_dict(compact=True).items()
    }
    reply = json.loads(handle(json.dumps({"fields": query})))
    assert reply["total_bytes"] == estimate(config).total_bytes


def test_inactive_lists_other_modes_and_settings_that_do_not_apply() -> None:
    simple = ask({})["inactive"]
    assert {"cfg_hidden_size", "config", "cnn"} <= set(simple)
    # The preset search stays in view in every mode: picking a model fills the fields.
    assert {"preset", "params_millions", "optimizer", "batch_size"}.isdisjoint(simple)
    assert {"new_tokens", "kv_cache_dtype", "lora_rank"} <= set(simple)
    inference = ask(
        {"describe": "fields", "preset": "llama-3.1-8b", "mode": "inference", "precision": "bf16"}
    )["inactive"]
    assert {"optimizer", "sharding", "params_millions"} <= set(inference)
    assert {"new_tokens", "kv_cache_dtype", "preset", "cfg_hidden_size"}.isdisjoint(inference)
    lora = ask({"describe": "fields", "preset": "llama-3.1-8b", "finetune": "lora"})["inactive"]
    assert {"lora_rank", "lora_targets"}.isdisjoint(lora)


def test_inactive_is_given_even_when_the_input_is_wrong() -> None:
    reply = ask({"mode": "inference", "batch_size": "x"})
    assert reply["ok"] is False
    assert "optimizer" in reply["inactive"]
    assert "new_tokens" in reply["inactive"]  # a parameter count generates nothing


def test_a_bad_value_in_a_hidden_setting_does_not_block_the_estimate() -> None:
    """Inference hides the optimizer: a garbage optimizer must not stop the answer."""
    reply = ask({"mode": "inference", "optimizer": "<b>x</b>"})
    assert reply["ok"] is True
    assert reply["errors"] == []


def test_a_link_in_schema_terms_gets_its_describe_mode_back() -> None:
    """model=preset (Scenario.to_dict's keys) is read as the fields mode, and the reply
    says so, so the page can set its radio; a request that names a mode gets none."""

    def fill(fields: dict[str, str]) -> dict[str, str]:
        reply = json.loads(handle(json.dumps({"fields": fields})))
        return dict(reply["fill"])

    assert fill({"model": "preset", "preset": "llama-3-8b"})["describe"] == "fields"
    assert fill({"model": "cnn", "cnn": "resnet50"})["describe"] == "cnn"
    assert fill({"model": "generic", "params_millions": "7"})["describe"] == "simple"
    assert "describe" not in fill({"describe": "simple", "params_millions": "7"})


@pytest.mark.parametrize(
    ("typed", "millions"),
    [("7B", 7000), ("7 B", 7000), ("1.5b", 1500), ("350M", 350), ("2k", 0.002), ("1T", 10**6)],
)
def test_the_size_takes_a_unit(typed: str, millions: float) -> None:
    """A size with the unit model names use is that many parameters (B = 10^9)."""
    by_unit = ask({"params_millions": typed})
    plain = ask({"params_millions": str(millions)})
    assert by_unit["ok"]
    assert by_unit["total_bytes"] == plain["total_bytes"]


def test_a_preset_named_as_people_type_it_becomes_the_model() -> None:
    """Typing a catalog name into the preset search picks it, as its id does: the model
    is described by the preset's fields, and the page is told which controls to set."""
    named = ask({"preset": "Llama 3.1 8B", "changed": "preset"})
    by_id = ask({"describe": "fields", "preset": "llama-3.1-8b"})
    assert named["ok"]
    assert named["total_bytes"] == by_id["total_bytes"]
    assert named["set"]["describe"] == "fields"
    assert named["fill"]["cfg_hidden_size"] == "4096"


def test_a_mode_picked_with_a_preset_in_one_request_stands() -> None:
    """The click on "Paste config.json" that leaves the preset's box sends the preset and
    the mode together: the mode is the later choice, so it and the pasted text stay (the
    page would otherwise flip back to fields and lose the link's #config)."""
    text = json.dumps(catalog.models()["llama-3.1-8b"].config)
    both = {"preset": "llama-3.1-8b", "describe": "config", "config": text}
    got = ask({**both, "changed": "preset,describe"})
    assert got["ok"]
    assert not got["set"].keys() & {"describe", "config"}
    assert got["total_bytes"] == ask({**both, "changed": "describe"})["total_bytes"]
    # A CNN chosen with a transformer preset keeps its own layer list.
    cnn = {"preset": "gpt2", "describe": "cnn", "cnn": "resnet50"}
    assert not ask({**cnn, "changed": "preset,describe"})["set"].keys() & {"describe", "cnn"}


@pytest.mark.parametrize(
    ("preset", "mode", "precision"),
    [
        ("llama-3.1-8b", "training", "amp_bf16"),  # torch_dtype bfloat16
        ("llama-3.1-8b", "inference", "bf16"),
        ("phi-3-mini-4k", "inference", "bf16"),
        ("bert-base-uncased", "training", "fp32"),  # no torch_dtype: from_pretrained's fp32
    ],
)
def test_a_picked_preset_sets_its_checkpoints_precision(
    preset: str, mode: str, precision: str
) -> None:
    """Picking a catalog model sets the precision its config.json's torch_dtype implies:
    the stored type at inference, AMP on it for training."""
    got = ask({"preset": preset, "mode": mode, "changed": "preset"})
    assert got["set"].get("precision", DEFAULT_FIELDS["precision"]) == precision
    assert got["download"]["scenario"]["precision"] == precision


def test_a_quantized_choice_survives_a_new_preset() -> None:
    """A quantized precision is the user's own choice: a new preset keeps it."""
    got = ask({"preset": "qwen3-8b", "mode": "inference", "precision": "gptq", "changed": "preset"})
    assert "precision" not in got["set"]


def test_switching_to_inference_runs_one_sequence_in_16_bits() -> None:
    """The form's training batch of 32 becomes 1 at inference, and an AMP precision its
    16-bit type (AMP is refused at inference); back in training, the model's AMP returns
    while the batch stays as set."""
    llama = {"describe": "fields", "preset": "llama-3.1-8b", "precision": "amp_bf16"}
    served = ask({**llama, "mode": "inference", "changed": "mode"})
    assert served["set"] == {"precision": "bf16", "batch_size": "1"}
    assert served["ok"]
    assert served["download"]["scenario"]["batch_size"] == 1
    trained = ask({**llama, "precision": "bf16", "batch_size": "1", "changed": "mode"})
    assert trained["set"] == {"precision": "amp_bf16"}


def test_a_batch_the_user_chose_survives_the_switch() -> None:
    """Only the form's own default batch follows the mode; a chosen one stays."""
    got = ask({"mode": "inference", "batch_size": "8", "changed": "mode"})
    assert "batch_size" not in got["set"]


def test_nf4_for_training_turns_on_qlora() -> None:
    """NF4 trains only as QLoRA's frozen base: choosing it to train a catalog model turns
    on LoRA adapters and gradient checkpointing (peft's prepare_model_for_kbit_training
    default), says so, and the scenario is valid instead of refused."""
    llama = {"describe": "fields", "preset": "llama-3.1-8b", "precision": "nf4"}
    got = ask({**llama, "changed": "precision"})
    assert got["ok"]
    assert got["set"] == {"finetune": "lora", "checkpointing": "full"}
    assert got["note"].startswith("Turned on LoRA adapters (QLoRA")
    assert got["download"]["scenario"]["finetune"] == "lora"
    assert not ask(llama)["ok"]  # without the edit (a link), nothing is changed for the user


def test_nf4_on_a_model_given_by_its_size_is_refused_not_rewritten() -> None:
    """LoRA needs an architecture: for a model given by its size nothing is turned on."""
    got = ask({"precision": "nf4", "changed": "precision"})
    assert got["set"] == {}
    assert got["errors"][0]["field"] == "precision"


def test_the_examples_width_and_depth_follow_a_new_size() -> None:
    """Llama-7B typed as 7000M over BERT-base's 768 × 12 layers (12·L·h² ≈ 85M, Kaplan
    et al. 2020 §2.1): the example's shape would describe another model, so it is
    cleared and derived from the size, as for empty fields, and the page says why."""
    got = ask({"params_millions": "7000", "changed": "params_millions"})
    assert got["set"] == {"hidden_size": "", "num_layers": ""}
    assert got["note"] == (
        "Width and depth now follow the size: 768 × 12 layers is about 85M parameters, not 7.00B."
    )
    derived = ask({"params_millions": "7000", "hidden_size": "", "num_layers": ""})
    assert got["total_bytes"] == derived["total_bytes"]
    # A size near the shape's, or a shape the user typed, stays as it is.
    assert ask({"params_millions": "120", "changed": "params_millions"})["set"] == {}
    own = {"params_millions": "7000", "hidden_size": "4096", "num_layers": "32"}
    assert ask({**own, "changed": "params_millions"})["set"] == {}


def test_a_typed_capacity_reads_as_a_custom_card() -> None:
    """Custom capacity "8 GB" (or 8) is the card custom-8gb; its field shows only then."""
    from nnmem.web.form import DEFAULT_FIELDS, read

    for typed in ("8 GB", "8", " 8gb "):
        got = read({**DEFAULT_FIELDS, "gpu": "custom", "gpu_gb": typed})
        assert (got.gpu, got.problems, "gpu_gb" in got.inactive) == ("custom-8gb", [], False)
    assert "gpu_gb" in read({**DEFAULT_FIELDS, "gpu": "rtx-4060", "gpu_gb": "8"}).inactive
