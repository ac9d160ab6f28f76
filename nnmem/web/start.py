"""The calculator's start panel: the question people arrive with, read into the form.

Three controls ask it: the intent (run, fine-tune, train), a model box that takes what
people type (a catalog name, a size such as 7B, a pasted config.json) and a hardware box
(a card's name, or its memory such as 8 GB, with an optional count: 8 × A100). They set
the form's own controls, so the estimate reads the form as it always does: :func:`follow`
answers which controls change, :func:`fill` what the boxes show, :func:`summary` the line
that names every setting that matters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from nnmem import catalog
from nnmem.defaults import INTENT_LABELS, Intent, for_intent
from nnmem.errors import Problem
from nnmem.render.text import describe
from nnmem.scenario import LABELS, SPECS, Checkpointing, Finetune, Mode, Runtime, Scenario, Sharding
from nnmem.validation import NumberSpec, shown
from nnmem.web.form import (
    CHANGED,
    CONFIG_BY_NAME,
    CUSTOM_GPU,
    GPU_GB,
    Describe,
    stored_config,
    text_of,
)

INTENT, MODEL_BOX, HARDWARE_BOX = "intent", "start_model", "start_hardware"
# The controls that name a new model: a change of one re-applies the intent's defaults,
# which depend on the model (its stored type, its context, whether it takes adapters).
_MODEL_KEYS = {MODEL_BOX, "preset", "config"}
_COUNT = re.compile(r"\s*(\d{1,4})\s*(?:x|×|\*)\s*(.+)", re.IGNORECASE)
_CAPACITY = re.compile(r"(\d+(?:\.\d+)?)\s*(?:gb|gib|g)?", re.IGNORECASE)


def _intent(fields: Mapping[str, object]) -> Intent | None:
    try:
        return Intent(text_of(fields, INTENT).strip())
    except ValueError:
        return None


def edited(fields: Mapping[str, object]) -> set[str]:
    """The controls the page's request says were edited since its last answer."""
    return {name.strip() for name in text_of(fields, CHANGED).split(",") if name.strip()}


def read_model(text: str) -> dict[str, str] | Problem:
    """The form controls the model box's text sets: a catalog model by its id, name or
    Hub id, a size with or without its unit, or a pasted config.json.

    >>> read_model("qwen2.5 7b")
    {'describe': 'fields', 'preset': 'qwen2.5-7b'}
    >>> read_model("7B")
    {'describe': 'simple', 'params_millions': '7B', 'hidden_size': '', 'num_layers': ''}
    >>> read_model('{"model_type": "llama"}')["describe"]
    'config'
    >>> read_model("Llama 9").message
    'Model "Llama 9" is not a catalog name (Llama 3.1 8B, qwen2.5 7b), a size (7B, 110M) \
or a config.json.'
    """
    text = text.strip()
    if text.startswith("{"):
        return {"describe": Describe.CONFIG.value, "config": text}
    entry = catalog.find_model(text)
    if entry is not None:
        return {"describe": Describe.FIELDS.value, "preset": entry.id}
    spec = SPECS["params_millions"]
    assert isinstance(spec, NumberSpec)
    if text and not isinstance(spec.read(text), Problem):
        # A size alone: width and depth follow it (GenericModel.from_params).
        return {
            "describe": Describe.SIMPLE.value,
            "params_millions": text,
            "hidden_size": "",
            "num_layers": "",
        }
    return Problem(
        MODEL_BOX,
        f"Model {shown(text)} is not a catalog name (Llama 3.1 8B, qwen2.5 7b), a size "
        "(7B, 110M) or a config.json.",
    )


def read_hardware(text: str) -> dict[str, str] | Problem:
    """The GPU controls the hardware box's text sets: a card from the catalog by its name
    or id, or a memory size in GB (a custom card), with an optional count in front.

    >>> read_hardware("RTX 4060 Ti 16GB")
    {'gpu': 'rtx-4060-ti-16gb', 'gpu_gb': ''}
    >>> read_hardware("8 GB"), read_hardware("")
    ({'gpu': 'custom', 'gpu_gb': '8'}, {'gpu': '', 'gpu_gb': ''})
    >>> read_hardware("8 × A100 80GB")
    {'gpu': 'a100-sxm-80gb', 'gpu_gb': '', 'num_gpus': '8'}
    >>> read_hardware("A100").message
    'Hardware "A100" names 2 cards: NVIDIA A100 SXM4 40GB, NVIDIA A100 SXM4 80GB; add more \
of the name.'
    """
    text = text.strip()
    changes: dict[str, str] = {}
    several = _COUNT.fullmatch(text)
    if several is not None:
        changes["num_gpus"], text = str(int(several[1])), several[2].strip()
    if not text:
        return {"gpu": "", "gpu_gb": "", **changes}
    capacity = _CAPACITY.fullmatch(text)
    if capacity is not None:
        with_unit = capacity[1]
        problem = GPU_GB.read(with_unit)
        if isinstance(problem, Problem):
            return Problem(HARDWARE_BOX, problem.message.replace(GPU_GB.label, "Hardware", 1))
        return {"gpu": CUSTOM_GPU, "gpu_gb": with_unit, **changes}
    cards = catalog.find_gpus(text)
    if len(cards) == 1:
        return {"gpu": cards[0].id, "gpu_gb": "", **changes}
    if cards:
        names = ", ".join(card.name for card in cards[:4])
        return Problem(
            HARDWARE_BOX,
            f"Hardware {shown(text)} names {len(cards)} cards: {names}; add more of the name.",
        )
    return Problem(
        HARDWARE_BOX,
        f"Hardware {shown(text)} is not a card in the list (RTX 4090, A100 80GB) or a memory "
        "size such as 8 GB.",
    )


def follow_boxes(fields: Mapping[str, object]) -> tuple[dict[str, str], list[Problem]]:
    """The controls the model and hardware boxes set, where they were just edited, and
    the problem with an intent or an edited box whose text names nothing.

    >>> follow_boxes({"changed": "start_hardware", "start_hardware": "2 x RTX 3090"})
    ({'gpu': 'rtx-3090', 'gpu_gb': '', 'num_gpus': '2'}, [])
    >>> follow_boxes({"intent": "serve"})[1][0].message
    'Intent must be one of run, finetune, train (got "serve").'
    """
    changed = edited(fields)
    changes: dict[str, str] = {}
    problems: list[Problem] = []
    intent = text_of(fields, INTENT).strip()
    if intent and _intent(fields) is None:
        allowed = ", ".join(i.value for i in Intent)
        problems.append(Problem(INTENT, f"Intent must be one of {allowed} (got {shown(intent)})."))
    # A box is read only when edited: otherwise it shows what the form holds (fill), so a
    # link's text there, or an earlier answer's, is replaced rather than read.
    for box, read in ((MODEL_BOX, read_model), (HARDWARE_BOX, read_hardware)):
        if box not in changed:
            continue
        got = read(text_of(fields, box))
        if isinstance(got, Problem):
            problems.append(got)
        else:
            changes |= got
    if "preset" in changes or "config" in changes:
        # A new model replaces the fields an earlier one filled in.
        changes = {**dict.fromkeys(CONFIG_BY_NAME, ""), "cnn": "", **changes}
    return changes, problems


def follow_intent(fields: Mapping[str, object], edited: set[str]) -> dict[str, str]:
    """The settings the intent sets (:func:`nnmem.defaults.for_intent`), where the intent
    or the model was just chosen; or the intent that follows the mode and fine-tuning
    chosen in the full form.

    >>> got = follow_intent({"intent": "finetune", "describe": "fields",
    ...                      "preset": "llama-3.1-8b"}, {"intent"})
    >>> got["precision"], got["finetune"], got["checkpointing"], got["seq_len"]
    ('nf4_dq', 'lora', 'full', '2048')
    >>> follow_intent({"intent": "train", "mode": "inference"}, {"mode"})
    {'intent': 'run'}
    """
    intent = _intent(fields)
    if intent is None:
        return {}
    if INTENT in edited or edited & _MODEL_KEYS:
        config = stored_config(fields)
        cnn = text_of(fields, "describe") == Describe.CNN.value
        adapters = config is not None and not cnn and _transformer(fields)
        chosen = for_intent(intent, config, adapters)
        return {key: _text(value) for key, value in chosen.items()}
    if edited & {"mode", "finetune"}:
        if text_of(fields, "mode") == Mode.INFERENCE.value:
            return {INTENT: Intent.RUN.value}
        lora = text_of(fields, "finetune") == Finetune.LORA.value
        return {INTENT: (Intent.FINETUNE if lora else Intent.TRAIN).value}
    return {}


def _transformer(fields: Mapping[str, object]) -> bool:
    """Whether the model is a transformer whose layers are known (a CNN preset is not)."""
    if text_of(fields, "describe") != Describe.FIELDS.value:
        return True
    entry = catalog.find_model(text_of(fields, "preset"))
    return entry is not None and entry.architecture != "cnn"


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def fill(fields: Mapping[str, object]) -> dict[str, str]:
    """What the model and hardware boxes show for the form as it stands: the model's
    name or size, the card's name or memory.

    >>> fill({"describe": "fields", "preset": "llama-3.1-8b", "gpu": "custom",
    ...       "gpu_gb": "8"})
    {'start_model': 'Llama 3.1 8B', 'start_hardware': '8 GB'}
    >>> fill({"gpu": "custom", "gpu_gb": "12 GB"})["start_hardware"]
    '12 GB'
    >>> fill({"describe": "simple", "params_millions": "110", "gpu": "rtx-4090"})
    {'start_model': '110M', 'start_hardware': 'NVIDIA GeForce RTX 4090'}
    """
    describe_mode = text_of(fields, "describe")
    model = ""
    if describe_mode == Describe.FIELDS.value:
        entry = catalog.find_model(text_of(fields, "preset"))
        model = entry.name if entry is not None else ""
    elif describe_mode == Describe.SIMPLE.value:
        # The size as typed; a bare number is millions (the size field's unit).
        size = text_of(fields, "params_millions").strip()
        spec = SPECS["params_millions"]
        assert isinstance(spec, NumberSpec)
        if size and not isinstance(spec.read(size), Problem):
            model = f"{size}M" if re.fullmatch(r"[\d.,]+", size) else size
    elif describe_mode == Describe.CNN.value:
        # A built-in network by its name; a layer list has none to show.
        cnn = text_of(fields, "cnn").strip()
        model = cnn if catalog.find_model(cnn) is not None else ""
    elif describe_mode == Describe.CONFIG.value and stored_config(fields) is not None:
        model = text_of(fields, "config").strip()
    gpu = text_of(fields, "gpu").strip()
    hardware = ""
    if gpu == CUSTOM_GPU:
        typed = text_of(fields, "gpu_gb").strip()
        capacity = _CAPACITY.fullmatch(typed)
        hardware = f"{capacity[1]} GB" if capacity is not None else typed
    elif gpu:
        card = catalog.gpu(gpu)
        hardware = card.name if card is not None else ""
    return {MODEL_BOX: model, HARDWARE_BOX: hardware}


def summary(
    fields: Mapping[str, object], scenario: Scenario, gpu_id: str, description: str = ""
) -> str:
    """One line naming every setting that changes the answer: the intent, the model, its
    precision, adapters, checkpointing, batch × sequence, sharding, the runtime, and the
    hardware with the count (the figures are per GPU where there are several).
    ``description`` is ``describe(scenario)`` where the caller has it already.

    >>> from nnmem.scenario import parse
    >>> s = parse({"model": "preset", "preset": "llama-3.1-8b", "precision": "nf4_dq",
    ...            "finetune": "lora", "checkpointing": "full", "batch_size": 2,
    ...            "seq_len": 2048})
    >>> summary({"intent": "finetune"}, s, "rtx-4060-ti-16gb")  # doctest: +ELLIPSIS
    'Fine-tune (LoRA / QLoRA) · Llama 3.1 8B · NF4 ... · QLoRA rank 16 · full checkpointing \
· batch 2 · sequence 2,048 · on NVIDIA GeForce RTX 4060 Ti 16GB'
    """
    parts = (description or describe(scenario)).split(" · ")
    intent = _intent(fields)
    if intent is not None:
        parts[0] = INTENT_LABELS[intent]
    training = scenario.mode is Mode.TRAINING
    # The settings describe() names only where they are on, said where they are off.
    batch = next((i for i, part in enumerate(parts) if part.startswith("batch ")), len(parts))
    if training and scenario.num_gpus > 1 and scenario.sharding is Sharding.NONE:
        parts.insert(batch, "DDP, no sharding")
    if training and scenario.checkpointing is Checkpointing.NONE:
        parts.insert(batch, "no checkpointing")
    if not training and scenario.runtime.engine is Runtime.TRANSFORMERS:
        parts.insert(2, LABELS[scenario.runtime])
    card = catalog.gpu(gpu_id) if gpu_id else None
    if card is None:
        parts.append("no GPU chosen")
    else:
        several = f"{scenario.num_gpus} × " if scenario.num_gpus > 1 else ""
        parts.append(f"on {several}{card.name}")
    return " · ".join(parts)


# The seed's two worked examples (content/examples.md §1 and §2), one click each: the
# page's fields they set, everything else back to the form's defaults.
EXAMPLES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "BERT-base training",
        {
            "intent": Intent.TRAIN.value,
            "describe": Describe.FIELDS.value,
            "preset": "bert-base-uncased",
            "mode": Mode.TRAINING.value,
            "precision": "fp32",
            "batch_size": "32",
            "seq_len": "128",
        },
    ),
    (
        "Llama-7B inference",
        {
            "intent": Intent.RUN.value,
            "describe": Describe.FIELDS.value,
            "preset": "llama-2-7b",
            "mode": Mode.INFERENCE.value,
            "precision": "fp16",
            "batch_size": "1",
            "seq_len": "1024",
            "new_tokens": "1024",
        },
    ),
)


def example_attribute(fields: Mapping[str, str]) -> str:
    """An example's fields as the JSON its chip carries."""
    return json.dumps(dict(fields), separators=(",", ":"))


def intent_note(fields: Mapping[str, object]) -> str:
    """What the status line says an intent just set, with the recipe it follows.

    >>> intent_note({"intent": "train", "seq_len": "128"})
    "Train: every weight, in BF16 mixed precision, batch 32 × 128 tokens (BERT's \
fine-tuning recipe); gradient checkpointing is yours to turn on."
    """
    intent = _intent(fields)
    seq = text_of(fields, "seq_len")
    tokens = f"{int(seq):,}" if seq.isdigit() else seq
    if intent is Intent.RUN:
        return f"Run / chat: one conversation (batch 1) of {tokens} tokens, 16-bit weights."
    if intent is Intent.FINETUNE and text_of(fields, "finetune") == Finetune.LORA.value:
        return (
            "Fine-tune: QLoRA as Unsloth's Llama recipe runs it: a 4-bit NF4 base, rank-16 "
            "adapters on every linear layer, gradient checkpointing, batch 2 with 4 "
            f"accumulation steps, {tokens} tokens."
        )
    if intent is Intent.FINETUNE:
        return (
            "Fine-tune: adapters need the model's layers (a catalog name or a config.json), "
            "so this is a full fine-tune in BF16 mixed precision with gradient checkpointing."
        )
    if intent is Intent.TRAIN:
        return (
            f"Train: every weight, in BF16 mixed precision, batch 32 × {tokens} tokens "
            "(BERT's fine-tuning recipe); gradient checkpointing is yours to turn on."
        )
    return ""
