"""Where a run starts when the user has not said: the precision a model's checkpoint
implies for the step, the batch an inference starts from, and what a quantized base
needs to be trained.

These are the choices the usual tools make on their own, so a page or a script that
starts from them shows the run people actually launch.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from nnmem.scenario import Checkpointing, Finetune, LoraTargets, Mode, Precision

# config.json's torch_dtype: the dtype the checkpoint's weights were saved in.
_STORED: dict[str, tuple[Precision, Precision]] = {  # dtype: (training, inference)
    "bfloat16": (Precision.AMP_BF16, Precision.BF16),
    "float16": (Precision.AMP_FP16, Precision.FP16),
    "float32": (Precision.FP32, Precision.FP32),
}
# The formats that hold full weights, which a new model's default may replace; a quantized
# choice (NF4, GPTQ, GGUF...) is the user's own and stays.
UNQUANTIZED = frozenset(
    {Precision.FP32, Precision.AMP_BF16, Precision.AMP_FP16, Precision.BF16, Precision.FP16}
)


def precision_for(config: Mapping[str, object] | None, mode: Mode) -> Precision:
    """The precision a run of a model with this ``config.json`` starts from.

    Inference loads the weights as stored: transformers' ``from_pretrained(...,
    torch_dtype="auto")`` reads ``config.torch_dtype``. Training keeps fp32 master weights
    and computes in the stored 16-bit type under autocast, as the Hugging Face Trainer
    does with ``bf16=True`` / ``fp16=True`` (torch.amp). A config that names no dtype is
    loaded in fp32, ``from_pretrained``'s default.

    >>> precision_for({"torch_dtype": "bfloat16"}, Mode.TRAINING).value
    'amp_bf16'
    >>> precision_for({"torch_dtype": "bfloat16"}, Mode.INFERENCE).value
    'bf16'
    >>> precision_for({}, Mode.INFERENCE).value, precision_for(None, Mode.TRAINING).value
    ('fp32', 'fp32')
    """
    stored = str((config or {}).get("torch_dtype") or (config or {}).get("dtype") or "")
    training, inference = _STORED.get(stored.lower(), (Precision.FP32, Precision.FP32))
    return training if mode is Mode.TRAINING else inference


def for_mode(precision: Precision, mode: Mode) -> Precision:
    """The precision that stands for ``precision`` in ``mode``: autocast is a training
    feature, so an AMP choice serves as its 16-bit type at inference, and the reverse.

    >>> for_mode(Precision.AMP_BF16, Mode.INFERENCE).value
    'bf16'
    >>> for_mode(Precision.FP16, Mode.TRAINING).value, for_mode(Precision.NF4, Mode.TRAINING).value
    ('amp_fp16', 'nf4')
    """
    pairs = {Precision.AMP_BF16: Precision.BF16, Precision.AMP_FP16: Precision.FP16}
    if mode is Mode.INFERENCE:
        return pairs.get(precision, precision)
    return {v: k for k, v in pairs.items()}.get(precision, precision)


INFERENCE_BATCH = 1  # one conversation: what a chat or a generate() call runs


def qlora(precision: Precision) -> tuple[Finetune, Checkpointing] | None:
    """What training on a quantized base needs: LoRA adapters over the frozen base (the
    only way bitsandbytes' NF4 and LLM.int8 weights train), with gradient checkpointing on
    as peft's ``prepare_model_for_kbit_training`` turns it on by default
    (``use_gradient_checkpointing=True``; Dettmers et al. 2023, QLoRA, §3 and §4). None
    for a precision that trains fully, or one that cannot be a base.

    >>> qlora(Precision.NF4)
    (<Finetune.LORA: 'lora'>, <Checkpointing.FULL: 'full'>)
    >>> qlora(Precision.BF16) is None, qlora(Precision.GPTQ) is None
    (True, True)
    """
    if precision.lora_base and not precision.trains_fully:
        return Finetune.LORA, Checkpointing.FULL
    return None


class Intent(StrEnum):
    """What someone wants to do with a model: the question the calculator starts from."""

    RUN = "run"  # serve it or chat with it
    FINETUNE = "finetune"  # adapt it with LoRA / QLoRA
    TRAIN = "train"  # train every weight


INTENT_LABELS = {
    Intent.RUN: "Run / chat",
    Intent.FINETUNE: "Fine-tune (LoRA / QLoRA)",
    Intent.TRAIN: "Train",
}
# A chat's context: 8,192 tokens (Llama 3's trained context), capped at the model's own.
RUN_CONTEXT = 8192
# The QLoRA recipe Unsloth publishes for Llama 3 and 3.1 8B (unsloth.ai/blog/llama3-1, its
# notebooks): micro-batch 2, 4 accumulation steps, max_seq_length 2048, a 4-bit NF4 base
# with adapters on every linear layer (q, k, v, o, gate, up, down) and gradient
# checkpointing; the rank is peft's usual 16. Dettmers et al. 2023 (QLoRA, §3) add the
# double quantization of the NF4 scales.
FINETUNE_BATCH, FINETUNE_ACCUM, FINETUNE_SEQ, FINETUNE_RANK = 2, 4, 2048, 16
# Full training starts from BERT's fine-tuning recipe (Devlin et al. 2019, §A.3: batch 32,
# sequences of 128 tokens), the form's example.
TRAIN_BATCH, TRAIN_SEQ = 32, 128


def context_of(config: Mapping[str, object] | None) -> int | None:
    """The longest sequence a ``config.json`` takes (``max_position_embeddings``, or
    GPT-2's ``n_positions``); None where it names none."""
    for key in ("max_position_embeddings", "n_positions"):
        value = (config or {}).get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def for_intent(
    intent: Intent, config: Mapping[str, object] | None, adapters: bool
) -> dict[str, Any]:
    """The schema settings an intent starts from, for a model with this ``config.json``
    (None for one given by its size or as a CNN). ``adapters``: whether the model can take
    LoRA adapters (a transformer whose layers are known).

    Run: one conversation (batch 1) of up to :data:`RUN_CONTEXT` tokens, the weights in
    their stored 16-bit type (BF16 where the config names none: a chat loads 16-bit
    weights). Fine-tune: QLoRA as the recipe above sets it, or, where adapters cannot be
    placed, a full fine-tune in BF16 AMP with checkpointing. Train: every weight, BF16 AMP
    (the Hugging Face Trainer's ``bf16=True``), checkpointing off and left as a choice.

    >>> llama = {"torch_dtype": "bfloat16", "max_position_embeddings": 131072}
    >>> run = for_intent(Intent.RUN, llama, True)
    >>> run["precision"].value, run["batch_size"], run["seq_len"]
    ('bf16', 1, 8192)
    >>> tune = for_intent(Intent.FINETUNE, llama, True)
    >>> tune["precision"].value, tune["finetune"].value, tune["checkpointing"].value
    ('nf4_dq', 'lora', 'full')
    >>> tune["batch_size"], tune["grad_accum_steps"], tune["seq_len"], tune["lora_rank"]
    (2, 4, 2048, 16)
    >>> for_intent(Intent.RUN, {"max_position_embeddings": 512}, True)["seq_len"]
    512
    >>> for_intent(Intent.FINETUNE, None, False)["precision"].value
    'amp_bf16'
    >>> train = for_intent(Intent.TRAIN, None, False)
    >>> train["precision"].value, train["checkpointing"].value, train["batch_size"]
    ('amp_bf16', 'none', 32)
    """
    context = context_of(config)

    def capped(tokens: int) -> int:
        return tokens if context is None else min(tokens, context)

    if intent is Intent.RUN:
        stored = precision_for(config, Mode.INFERENCE)
        return {
            "mode": Mode.INFERENCE,
            "finetune": Finetune.FULL,
            "precision": Precision.BF16 if stored is Precision.FP32 else stored,
            "batch_size": INFERENCE_BATCH,
            "seq_len": capped(RUN_CONTEXT),
            "new_tokens": 0,
        }
    amp = precision_for(config, Mode.TRAINING)
    amp = Precision.AMP_BF16 if amp is Precision.FP32 else amp
    if intent is Intent.FINETUNE:
        common = {
            "mode": Mode.TRAINING,
            "checkpointing": Checkpointing.FULL,
            "batch_size": FINETUNE_BATCH,
            "grad_accum_steps": FINETUNE_ACCUM,
            "seq_len": capped(FINETUNE_SEQ),
        }
        if not adapters:
            return {**common, "finetune": Finetune.FULL, "precision": amp}
        return {
            **common,
            "finetune": Finetune.LORA,
            "precision": Precision.NF4_DQ,
            "lora_rank": FINETUNE_RANK,
            "lora_targets": LoraTargets.ALL_LINEAR,
        }
    return {
        "mode": Mode.TRAINING,
        "finetune": Finetune.FULL,
        "precision": amp,
        "checkpointing": Checkpointing.NONE,
        "batch_size": TRAIN_BATCH,
        "grad_accum_steps": 1,
        "seq_len": capped(TRAIN_SEQ),
    }
