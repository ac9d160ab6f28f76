"""Where a run starts when the user has not said: the precision a model's checkpoint
implies for the step, and the batch an inference starts from.

These are the choices the usual tools make on their own, so a page or a script that
starts from them shows the run people actually launch.
"""

from __future__ import annotations

from collections.abc import Mapping

from nnmem.scenario import Mode, Precision

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
