"""Where a run starts when the user has not said: the precision a model's checkpoint
implies for the step, the batch an inference starts from, and what a quantized base
needs to be trained.

These are the choices the usual tools make on their own, so a page or a script that
starts from them shows the run people actually launch.
"""

from __future__ import annotations

from collections.abc import Mapping

from nnmem.scenario import Checkpointing, Finetune, Mode, Precision

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
