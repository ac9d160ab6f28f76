"""Model architectures (public config facts, no downloads) and how to build them.

Every model is built from a config written here with random weights; nothing is
loaded from a model hub. The config dicts use Hugging Face key names and are copied
verbatim into measured.json, so another program can rebuild the estimator input
without torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from transformers import initialization as hf_init
from transformers import masking_utils

# Architecture facts of public checkpoints, as in their published config.json files.
GPT2_SMALL = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "activation_function": "gelu_new",
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
}
GPT2_MEDIUM = {**GPT2_SMALL, "n_embd": 1024, "n_layer": 24, "n_head": 16}

BERT_BASE = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
BERT_LARGE = {
    **BERT_BASE,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
}

T5_BASE = {
    "vocab_size": 32128,
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 3072,
    "num_layers": 12,
    "num_decoder_layers": 12,
    "num_heads": 12,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "relu",
    "tie_word_embeddings": True,
    "decoder_start_token_id": 0,
    "pad_token_id": 0,
    "eos_token_id": 1,
}

VIT_B16 = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
    "num_labels": 1000,
}

# microsoft/resnet-50: torchvision ResNet-50 v1.5 layout in transformers' ResNet classes.
RESNET_50 = {
    "num_channels": 3,
    "embedding_size": 64,
    "hidden_sizes": [256, 512, 1024, 2048],
    "depths": [3, 4, 6, 3],
    "layer_type": "bottleneck",
    "hidden_act": "relu",
    "downsample_in_first_stage": False,
    "num_labels": 1000,
}

# torchvision ``vgg16`` (configuration "D", no batch norm; torchvision/models/vgg.py):
# 3×3 convolutions with padding 1 and ReLU(inplace=True), "M" = MaxPool2d(2, 2), then
# AdaptiveAvgPool2d((7, 7)) and the classifier Linear-ReLU-Dropout twice and a last
# Linear. transformers has no VGG, so the model is plain torch.nn (VGGForImageClassification
# below); these are its constructor kwargs.
VGG_16 = {
    "layers": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
               512, 512, 512, "M"],
    "num_channels": 3,
    "classifier_width": 4096,
    "dropout": 0.5,
    "num_labels": 1000,
}  # fmt: skip

LLAMA_32_1B = {
    "vocab_size": 128256,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_parameters": {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "tie_word_embeddings": True,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
}

LLAMA_2_7B = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

MISTRAL_7B = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

# google/gemma-2-2b config.json: logit softcapping in attention (50) and on the logits
# (30), alternating sliding-window (4,096) and global layers, a 256,000-token vocabulary.
GEMMA_2_2B = {
    "vocab_size": 256000,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "tie_word_embeddings": True,
    "attention_dropout": 0.0,
}

# A scaled-down Mixtral (8 experts, top-2, GQA) that is not a released checkpoint.
# experts_implementation="grouped_mm" selects transformers' grouped-matmul experts
# (transformers/integrations/moe.py): its shapes are tokens*top_k rows whatever the
# routing, whereas the eager per-expert loop depends on routing data.
MIXTRAL_SMALL = {
    "vocab_size": 32000,
    "hidden_size": 1024,
    "intermediate_size": 3584,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "sliding_window": None,
    "router_aux_loss_coef": 0.02,
    "output_router_logits": False,
    "tie_word_embeddings": False,
    "attention_dropout": 0.0,
    "experts_implementation": "grouped_mm",
}


@dataclass(frozen=True)
class Family:
    """How to build and feed one model family."""

    config_class: str
    input_kind: str  # "tokens", "seq2seq" or "image"
    head: str  # attribute path of the module whose output is the logits


FAMILIES = {
    "gpt2": Family("GPT2Config", "tokens", "lm_head"),
    "bert": Family("BertConfig", "tokens", ""),  # head depends on the class, see head_path
    "t5": Family("T5Config", "seq2seq", "lm_head"),
    "vit": Family("ViTConfig", "image", "classifier"),
    "resnet": Family("ResNetConfig", "image", "classifier"),
    "llama": Family("LlamaConfig", "tokens", "lm_head"),
    "mistral": Family("MistralConfig", "tokens", "lm_head"),
    "mixtral": Family("MixtralConfig", "tokens", "lm_head"),
    "gemma2": Family("Gemma2Config", "tokens", "lm_head"),
    "vgg": Family("", "image", "classifier"),  # plain torch.nn, no transformers config
}

BERT_HEADS = {"BertForMaskedLM": "cls", "BertForSequenceClassification": "classifier"}


def head_path(family: str, hf_class: str) -> str:
    """Return the attribute path of the module that produces the logits."""
    if family == "bert":
        return BERT_HEADS[hf_class]
    return FAMILIES[family].head


def make_config(family: str, config: dict[str, Any], attn_implementation: str) -> Any:
    """Build the transformers config object from HF-named kwargs."""
    config_class = getattr(transformers, FAMILIES[family].config_class)
    kwargs = dict(config)
    if family != "resnet":  # ResNet has no attention
        kwargs["attn_implementation"] = attn_implementation
    return config_class(**kwargs)


def build_model(
    family: str,
    hf_class: str,
    config: dict[str, Any],
    attn_implementation: str,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.nn.Module:
    """Instantiate a model with random weights in ``dtype`` on ``device``.

    ``_from_config(dtype=...)`` makes the parameters in the target dtype directly (it
    sets the default dtype during ``__init__``), so no fp32 copy is ever made.
    """
    if family == "vgg":
        with torch.device(device):
            return VGGForImageClassification(**config).to(dtype)
    model_class = getattr(transformers, hf_class)
    cfg = make_config(family, config, attn_implementation)
    with torch.device(device):
        return model_class._from_config(cfg, dtype=dtype)


class VGGForImageClassification(torch.nn.Module):
    """torchvision's VGG as plain torch.nn, called like a transformers classifier.

    ``forward(pixel_values, labels)`` returns an object with ``loss`` and ``logits``;
    the loss is ``cross_entropy`` on the logits, as in transformers' single-label
    image classification.
    """

    def __init__(
        self,
        layers: list[int | str],
        num_channels: int,
        classifier_width: int,
        dropout: float,
        num_labels: int,
    ) -> None:
        super().__init__()
        nn = torch.nn
        features: list[nn.Module] = []
        channels = num_channels
        for item in layers:
            if item == "M":
                features.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                features.append(nn.Conv2d(channels, int(item), kernel_size=3, padding=1))
                features.append(nn.ReLU(inplace=True))
                channels = int(item)
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, classifier_width),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(classifier_width, classifier_width),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(classifier_width, num_labels),
        )

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None
    ) -> transformers.modeling_outputs.ImageClassifierOutput:
        hidden = torch.flatten(self.avgpool(self.features(pixel_values)), 1)
        logits = self.classifier(hidden)
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return transformers.modeling_outputs.ImageClassifierOutput(loss=loss, logits=logits)


def _not_packed(position_ids: torch.Tensor) -> None:
    """Stand-in for ``find_packed_sequence_indices``: None means "not packed"."""


def _normal_instead_of_trunc_normal(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Plain normal init; values do not matter for memory and fake tensors have none."""
    return torch.nn.init.normal_(tensor, mean=mean, std=std, generator=generator)


def _module_to_under_fake(module: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.nn.Module:
    """``Module.to`` for fake parameters: cast through ``.data`` instead of swapping.

    ``Module._apply`` always swaps FakeTensor parameters with
    ``torch.utils.swap_tensors``, which refuses tensors that have a weak reference,
    and every FakeTensor has one. peft calls ``.to()`` on the modules it injects.
    All fake tensors here live on one device, so only the dtype needs handling.
    """
    _, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
    if dtype is not None:
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point() and tensor.dtype != dtype:
                tensor.data = tensor.data.to(dtype)
    return module


@contextlib.contextmanager
def fake_mode_patches() -> Iterator[None]:
    """Patch the three places where transformers/peft read tensor data or swap tensors.

    * ``masking_utils.find_packed_sequence_indices`` reads position ids to detect
      packed sequences; under fake tensors it cannot, and transformers then builds a
      4-D mask instead of using ``is_causal=True``.
    * ``trunc_normal_`` initialisation (ViT) has a data-dependent step.
    * ``Module.to`` on fake parameters (used by peft), see ``_module_to_under_fake``.
    """
    saved = (
        masking_utils.find_packed_sequence_indices,
        hf_init.TORCH_INIT_FUNCTIONS["trunc_normal_"],
        torch.nn.Module.to,
    )
    masking_utils.find_packed_sequence_indices = _not_packed
    hf_init.TORCH_INIT_FUNCTIONS["trunc_normal_"] = _normal_instead_of_trunc_normal
    torch.nn.Module.to = _module_to_under_fake
    try:
        yield
    finally:
        (
            masking_utils.find_packed_sequence_indices,
            hf_init.TORCH_INIT_FUNCTIONS["trunc_normal_"],
            torch.nn.Module.to,
        ) = saved


@contextlib.contextmanager
def real_mode_patches() -> Iterator[None]:
    """Apply the packed-sequence patch to real runs too, so both take the same path."""
    saved = masking_utils.find_packed_sequence_indices
    masking_utils.find_packed_sequence_indices = _not_packed
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = saved


def make_inputs(
    family: str,
    hf_class: str,
    config: dict[str, Any],
    batch_size: int,
    seq_len: int | None,
    decoder_seq_len: int | None,
    image_size: int | None,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Random inputs and labels of the right shapes for one training step."""
    # Callers seed torch's global generator; an explicit torch.Generator would be a
    # real tensor-producing object that fake mode cannot take.
    kind = FAMILIES[family].input_kind
    with torch.device(device):
        if kind == "image":
            pixels = torch.randn(batch_size, 3, image_size, image_size)
            labels = torch.randint(0, config["num_labels"], (batch_size,))
            return {"pixel_values": pixels, "labels": labels}
        vocab = config["vocab_size"]
        input_ids = torch.randint(0, vocab, (batch_size, seq_len))
        if kind == "seq2seq":
            labels = torch.randint(0, vocab, (batch_size, decoder_seq_len))
            return {"input_ids": input_ids, "labels": labels}
        if hf_class == "BertForSequenceClassification":
            labels = torch.randint(0, config["num_labels"], (batch_size,))
            return {"input_ids": input_ids, "labels": labels}
        # Causal LM: the labels are the inputs (the loss shifts them); masked LM: any ids.
        return {"input_ids": input_ids, "labels": input_ids.clone()}
