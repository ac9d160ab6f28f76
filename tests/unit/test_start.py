"""The start panel's question read into the form: intents, the model box and the
hardware box, through the calculator's reply as the page gets it."""

from __future__ import annotations

from typing import Any

from nnmem.estimate import estimate
from nnmem.scenario import parse
from nnmem.web.calculator import DEFAULT_FIELDS, answer


def step(fields: dict[str, str], changed: str, **typed: str) -> dict[str, Any]:
    """One edit as the page sends it; the reply's set and fill written back as it does."""
    fields.update(typed)
    reply = answer({**fields, "changed": changed})
    fields.update(reply.get("set", {}))
    fields.update(reply.get("fill", {}))
    return reply


def test_the_students_three_steps_give_qlora_that_fits() -> None:
    """Fine-tune, "Llama 3.1 8B", "RTX 4060 Ti 16GB": QLoRA as Unsloth's recipe sets it
    (NF4 base, rank 16 on every linear layer, checkpointing, batch 2 × 4 steps, 2,048
    tokens), and the total is the engine's for that scenario."""
    fields = dict(DEFAULT_FIELDS)
    step(fields, "intent", intent="finetune")
    step(fields, "start_model", start_model="Llama 3.1 8B")
    reply = step(fields, "start_hardware", start_hardware="RTX 4060 Ti 16GB")
    scenario = {
        "model": "preset",
        "preset": "llama-3.1-8b",
        "precision": "nf4_dq",
        "finetune": "lora",
        "lora_rank": 16,
        "lora_targets": "all_linear",
        "checkpointing": "full",
        "batch_size": 2,
        "grad_accum_steps": 4,
        "seq_len": 2048,
    }
    assert reply["total_bytes"] == estimate(parse(scenario), "rtx-4060-ti-16gb").total_bytes
    assert reply["verdict_text"].startswith("fits: ")
    assert fields["start_hardware"] == "NVIDIA GeForce RTX 4060 Ti 16GB"


def test_run_serves_one_conversation_of_the_models_context_up_to_8k() -> None:
    """Run / chat: batch 1, the stored bfloat16, 8,192 tokens for Llama 3.1 (128k
    context) and 512 for BERT (its 512 positions), in either order of the choices."""
    fields = dict(DEFAULT_FIELDS)
    step(fields, "start_model", start_model="bert-base-uncased")
    step(fields, "intent", intent="run")
    assert (fields["mode"], fields["batch_size"], fields["seq_len"]) == ("inference", "1", "512")
    assert fields["precision"] == "bf16"  # BERT's config names no dtype: 16-bit to serve
    step(fields, "start_model", start_model="llama 3.1 8b")
    assert (fields["seq_len"], fields["precision"]) == ("8192", "bf16")


def test_the_full_form_moves_the_intent() -> None:
    """Inference picked in the full form makes the intent Run / chat."""
    fields = {**DEFAULT_FIELDS, "intent": "train"}
    step(fields, "mode", mode="inference")
    assert fields["intent"] == "run"


def test_a_box_that_names_nothing_says_so_next_to_it() -> None:
    """An unknown model or an ambiguous card is refused on its box; a link's text in a
    box is not read but replaced by what the form holds."""
    fields = dict(DEFAULT_FIELDS)
    reply = step(fields, "start_hardware", start_hardware="4060 Ti")
    assert reply["errors"] == [
        {
            "field": "start_hardware",
            "message": 'Hardware "4060 Ti" names 2 cards: NVIDIA GeForce RTX 4060 Ti 8GB, '
            "NVIDIA GeForce RTX 4060 Ti 16GB; add more of the name.",
        }
    ]
    link = answer({**DEFAULT_FIELDS, "start_model": "Llama 9"})
    assert link["ok"] is True
    assert link["fill"]["start_model"] == "110M"
    typed = answer({**DEFAULT_FIELDS, "start_model": "Llama 9", "changed": "start_model"})
    assert [e["field"] for e in typed["errors"]] == ["start_model"]
    # The refused box keeps its text beside its message; the other box still follows the form.
    assert "start_model" not in typed["fill"]
    assert typed["fill"]["start_hardware"] == ""
