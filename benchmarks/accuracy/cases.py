"""The accuracy-suite cases: which model, step, precision and sizes to measure.

Each case's ``description()`` is plain JSON that an estimator can read without torch:
the model's family, transformers class and exact config kwargs, and the training or
inference settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .models import (
    BERT_BASE,
    BERT_LARGE,
    GEMMA_2_2B,
    GPT2_MEDIUM,
    GPT2_SMALL,
    LLAMA_2_7B,
    LLAMA_32_1B,
    MISTRAL_7B,
    MIXTRAL_SMALL,
    RESNET_50,
    T5_BASE,
    VGG_16,
    VIT_B16,
)

# Hyper-parameters that decide optimizer memory (state tensors and their dtypes).
# Learning rates do not change memory; they are listed so the run is reproducible.
ADAMW = {
    "name": "adamw",
    "lr": 1e-5,
    "betas": [0.9, 0.999],
    "weight_decay": 0.01,
    "amsgrad": False,
    "foreach": True,
    "fused": False,
}
ADAMW_FORLOOP = {**ADAMW, "foreach": False}
SGD_MOMENTUM = {
    "name": "sgd_momentum",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "nesterov": False,
    "foreach": True,
}
# transformers' Adafactor with a fixed learning rate (the usual fine-tuning setting).
# scale_parameter and relative_step would compare a tensor RMS with a float in Python,
# which needs data; they do not change which state tensors exist.
ADAFACTOR = {
    "name": "adafactor",
    "lr": 1e-3,
    "beta1": None,
    "scale_parameter": False,
    "relative_step": False,
    "warmup_init": False,
    "weight_decay": 0.0,
}

# peft LoRA on the attention projections of a Llama-style model.
LORA_QKVO = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
# LitGPT's published Llama-2-7B LoRA row: r=8 on the query and value projections.
LORA_QV = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}


# Convolutional networks: no attention, "conv" in the case id.
CONV_FAMILIES = {"resnet", "vgg"}


@dataclass(frozen=True)
class Model:
    """A named architecture: family, transformers class, HF config kwargs, task."""

    name: str
    family: str
    hf_class: str
    config: dict[str, Any]
    task: str


@dataclass(frozen=True)
class Case:
    """One measurement: a model plus everything that decides its memory."""

    model: Model
    mode: str  # "training" or "inference"
    precision: str  # "fp32", "amp_bf16" (fp32 weights + bf16 autocast) or "bf16"
    batch_size: int
    seq_len: int | None = None
    decoder_seq_len: int | None = None
    image_size: int | None = None
    optimizer: dict[str, Any] | None = None
    gradient_checkpointing: bool = False
    attn_implementation: str = "eager"
    config_overrides: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    context_len: int | None = None
    logits_to_keep: int = 1
    device: str = "cpu"
    fake: bool = True
    note: str = ""

    @property
    def config(self) -> dict[str, Any]:
        """The exact config kwargs passed to transformers."""
        return {**self.model.config, **self.config_overrides}

    @property
    def attention_dropout(self) -> float:
        """The attention-probability dropout of this configuration."""
        config = self.config
        for key in ("attn_pdrop", "attention_probs_dropout_prob", "attention_dropout"):
            if key in config:
                return float(config[key] or 0.0)
        return 0.0

    @property
    def id(self) -> str:
        """A readable, unique, sortable identifier."""
        parts = [self.model.name, "train" if self.mode == "training" else "infer"]
        if self.lora:
            parts[1] = "lora"
        parts.append(self.precision.replace("_", "-"))
        if self.optimizer:
            name = self.optimizer["name"].replace("_", "-")
            if self.optimizer.get("foreach") is False:
                name += "-forloop"
            parts.append(name)
        conv = self.model.family in CONV_FAMILIES
        parts.append("conv" if conv else self.attn_implementation)
        if self.attn_implementation == "sdpa" and self.attention_dropout > 0:
            parts.append("attndrop")
        if self.gradient_checkpointing:
            parts.append("gc")
        parts.append(f"b{self.batch_size}")
        if self.mode == "inference":
            parts.append(f"ctx{self.context_len}")
            if self.logits_to_keep != 1:
                parts.append("fulllogits")
        elif self.image_size:
            parts.append(f"img{self.image_size}")
        else:
            parts.append(f"s{self.seq_len}")
            if self.decoder_seq_len:
                parts.append(f"dec{self.decoder_seq_len}")
        if self.device != "cpu":
            parts.append(self.device)
        return ".".join(parts)

    def description(self) -> dict[str, Any]:
        """The case as estimator input, readable without torch."""
        return {
            "model": {
                "family": self.model.family,
                "hf_class": self.model.hf_class,
                "config": self.config,
            },
            "task": self.model.task,
            "mode": self.mode,
            "precision": self.precision,
            "optimizer": self.optimizer,
            "gradient_checkpointing": self.gradient_checkpointing,
            "attn_implementation": self.attn_implementation,
            "lora": self.lora,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "decoder_seq_len": self.decoder_seq_len,
            "image_size": self.image_size,
            "inference": (
                {
                    "context_len": self.context_len,
                    "logits_to_keep": self.logits_to_keep,
                    "use_cache": True,
                    "decode_steps": 1,
                }
                if self.mode == "inference"
                else None
            ),
            "device": self.device,
            "fake": self.fake,
            "note": self.note,
        }


GPT2 = Model("gpt2-small", "gpt2", "GPT2LMHeadModel", GPT2_SMALL, "causal_lm")
GPT2_M = Model("gpt2-medium", "gpt2", "GPT2LMHeadModel", GPT2_MEDIUM, "causal_lm")
BERT_B = Model("bert-base", "bert", "BertForMaskedLM", BERT_BASE, "masked_lm")
BERT_L = Model(
    "bert-large",
    "bert",
    "BertForSequenceClassification",
    {**BERT_LARGE, "num_labels": 2},
    "sequence_classification",
)
T5_B = Model("t5-base", "t5", "T5ForConditionalGeneration", T5_BASE, "seq2seq_lm")
VIT = Model("vit-b16", "vit", "ViTForImageClassification", VIT_B16, "image_classification")
RESNET = Model(
    "resnet50", "resnet", "ResNetForImageClassification", RESNET_50, "image_classification"
)
VGG = Model("vgg16", "vgg", "VGGForImageClassification", VGG_16, "image_classification")
LLAMA_1B = Model("llama-3.2-1b", "llama", "LlamaForCausalLM", LLAMA_32_1B, "causal_lm")
LLAMA_7B = Model("llama-2-7b", "llama", "LlamaForCausalLM", LLAMA_2_7B, "causal_lm")
MISTRAL = Model("mistral-7b", "mistral", "MistralForCausalLM", MISTRAL_7B, "causal_lm")
MIXTRAL = Model("mixtral-small-8e", "mixtral", "MixtralForCausalLM", MIXTRAL_SMALL, "causal_lm")
GEMMA2 = Model("gemma-2-2b", "gemma2", "Gemma2ForCausalLM", GEMMA_2_2B, "causal_lm")

NO_GPT2_ATTN_DROPOUT = {"attn_pdrop": 0.0}
NO_BERT_ATTN_DROPOUT = {"attention_probs_dropout_prob": 0.0}


def _train(model: Model, precision: str, b: int, s: int | None = None, **kw: Any) -> Case:
    return Case(
        model=model,
        mode="training",
        precision=precision,
        batch_size=b,
        seq_len=s,
        optimizer=kw.pop("optimizer", ADAMW),
        **kw,
    )


def _infer(model: Model, b: int, ctx: int, **kw: Any) -> Case:
    return Case(
        model=model,
        mode="inference",
        precision="bf16",
        batch_size=b,
        context_len=ctx,
        attn_implementation=kw.pop("attn", "sdpa"),
        **kw,
    )


def training_cases() -> list[Case]:
    """Training steps: every model, optimizer, precision and attention variant."""
    sdpa_gpt2 = {"attn_implementation": "sdpa", "config_overrides": NO_GPT2_ATTN_DROPOUT}
    sdpa_bert = {"attn_implementation": "sdpa", "config_overrides": NO_BERT_ATTN_DROPOUT}
    return [
        # GPT-2 small: batch/sequence scaling, optimizers, precisions, attention paths.
        _train(GPT2, "fp32", 1, 512),
        _train(GPT2, "fp32", 4, 512),
        _train(GPT2, "fp32", 1, 1024),
        _train(GPT2, "fp32", 4, 512, **sdpa_gpt2),
        _train(
            GPT2,
            "fp32",
            4,
            512,
            attn_implementation="sdpa",
            note="attention dropout 0.1 kept: CPU SDPA falls back to the math kernel",
        ),
        _train(GPT2, "amp_bf16", 4, 512),
        _train(GPT2, "amp_bf16", 4, 512, **sdpa_gpt2),
        _train(GPT2, "fp32", 4, 512, gradient_checkpointing=True),
        _train(GPT2, "fp32", 4, 512, optimizer=SGD_MOMENTUM),
        _train(GPT2, "fp32", 4, 512, optimizer=ADAFACTOR),
        _train(GPT2, "fp32", 4, 512, optimizer=ADAMW_FORLOOP),
        _train(GPT2, "bf16", 4, 512),
        # GPT-2 medium.
        _train(GPT2_M, "fp32", 4, 512),
        _train(GPT2_M, "amp_bf16", 4, 1024, gradient_checkpointing=True, **sdpa_gpt2),
        # BERT: masked LM (base) and the sequence-classification setup of the
        # transformers single-GPU guide (large, s=512, b=4).
        _train(BERT_B, "fp32", 8, 512),
        _train(BERT_B, "amp_bf16", 8, 512, **sdpa_bert),
        _train(BERT_L, "fp32", 4, 512),
        _train(BERT_L, "fp32", 4, 512, optimizer=ADAFACTOR),
        _train(BERT_L, "fp32", 1, 512, gradient_checkpointing=True),
        # T5-base: encoder 512, decoder 128 tokens.
        replace(_train(T5_B, "fp32", 4, 512), decoder_seq_len=128),
        replace(_train(T5_B, "amp_bf16", 8, 512, optimizer=ADAFACTOR), decoder_seq_len=128),
        # Vision.
        _train(VIT, "fp32", 32, image_size=224),
        _train(VIT, "amp_bf16", 32, image_size=224, attn_implementation="sdpa"),
        _train(RESNET, "fp32", 32, image_size=224, optimizer=SGD_MOMENTUM),
        _train(RESNET, "amp_bf16", 32, image_size=224, optimizer=SGD_MOMENTUM),
        _train(RESNET, "fp32", 8, image_size=224, optimizer=SGD_MOMENTUM),
        _train(VGG, "fp32", 16, image_size=224, optimizer=SGD_MOMENTUM),
        # Llama-3.2-1B shape (128k vocabulary): scaling, eager vs sdpa, checkpointing.
        _train(LLAMA_1B, "bf16", 1, 512, attn_implementation="sdpa"),
        _train(LLAMA_1B, "bf16", 4, 512, attn_implementation="sdpa"),
        _train(LLAMA_1B, "bf16", 1, 2048, attn_implementation="sdpa"),
        _train(LLAMA_1B, "bf16", 1, 2048, attn_implementation="eager"),
        _train(LLAMA_1B, "bf16", 1, 2048, attn_implementation="sdpa", gradient_checkpointing=True),
        _train(LLAMA_1B, "amp_bf16", 1, 2048, attn_implementation="sdpa"),
        _train(LLAMA_1B, "bf16", 1, 2048, attn_implementation="sdpa", optimizer=ADAMW_FORLOOP),
        _train(LLAMA_1B, "bf16", 1, 2048, attn_implementation="sdpa", optimizer=ADAFACTOR),
        _train(LLAMA_1B, "bf16", 1, 2048, attn_implementation="sdpa", lora=LORA_QKVO),
        _train(
            LLAMA_1B,
            "bf16",
            4,
            2048,
            attn_implementation="sdpa",
            lora=LORA_QKVO,
            gradient_checkpointing=True,
        ),
        # 7B shapes: full fine-tune with checkpointing, LoRA as in LitGPT's table.
        _train(LLAMA_7B, "bf16", 1, 2048, attn_implementation="sdpa", gradient_checkpointing=True),
        _train(
            LLAMA_7B,
            "bf16",
            1,
            1304,
            attn_implementation="sdpa",
            lora=LORA_QV,
            note="LitGPT resource table setting: bf16-true, LoRA r=8 on q,v, "
            "longest Alpaca sample 1304 tokens",
        ),
        _train(MISTRAL, "bf16", 1, 2048, attn_implementation="sdpa", gradient_checkpointing=True),
        # Gemma 2: logit softcapping in eager attention (transformers refuses SDPA for it)
        # and on the logits, over a 256,000-token vocabulary.
        _train(GEMMA2, "bf16", 1, 1024, attn_implementation="eager"),
        _train(GEMMA2, "amp_bf16", 1, 512, attn_implementation="eager"),
        # Mixture of experts.
        _train(MIXTRAL, "bf16", 2, 512, attn_implementation="sdpa"),
        _train(MIXTRAL, "bf16", 2, 512, attn_implementation="sdpa", gradient_checkpointing=True),
    ]


def inference_cases() -> list[Case]:
    """Prefill plus one decode step with a KV cache, pure bf16 weights."""
    return [
        _infer(LLAMA_7B, 1, 1024),
        _infer(LLAMA_7B, 1, 4096),
        _infer(LLAMA_7B, 1, 4096, attn="eager"),
        _infer(LLAMA_7B, 4, 1024),
        _infer(MISTRAL, 1, 4096),
        _infer(MISTRAL, 1, 8192, note="context longer than the 4096-token sliding window"),
        _infer(GEMMA2, 1, 2048, attn="eager"),
        _infer(LLAMA_1B, 1, 2048),
        _infer(LLAMA_1B, 1, 8192),
        _infer(
            LLAMA_1B,
            1,
            8192,
            logits_to_keep=0,
            note="logits for every prompt position (a plain forward, not generate)",
        ),
        _infer(GPT2, 1, 1024, attn="eager"),
        _infer(MIXTRAL, 1, 2048),
    ]


def all_cases() -> list[Case]:
    """Every case, sorted by id; ids are unique."""
    cases = sorted(training_cases() + inference_cases(), key=lambda c: c.id)
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate case ids: {sorted(duplicates)}")
    return cases


# Small cases run with real tensors and under FakeTensorMode to show they agree.
FAKE_VS_REAL_CASES = [
    _train(
        Model("gpt2-2layer", "gpt2", "GPT2LMHeadModel", {**GPT2_SMALL, "n_layer": 2}, "causal_lm"),
        "fp32",
        2,
        128,
    ),
    _train(
        Model(
            "llama-tiny-128k",
            "llama",
            "LlamaForCausalLM",
            {
                **LLAMA_32_1B,
                "hidden_size": 256,
                "intermediate_size": 1024,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "head_dim": 64,
                "num_key_value_heads": 2,
            },
            "causal_lm",
        ),
        "amp_bf16",
        1,
        256,
        attn_implementation="sdpa",
        gradient_checkpointing=True,
    ),
]
