"""The settings the inventory runs: probe models and the harness cases built on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.accuracy.inventory.symbols import PROBE

from ..cases import ADAMW, Case, Model
from ..models import (
    BERT_BASE,
    GEMMA_2_2B,
    GPT2_SMALL,
    LLAMA_32_1B,
    MISTRAL_7B,
    MIXTRAL_SMALL,
    T5_BASE,
    VIT_B16,
)


@dataclass(frozen=True)
class Setting:
    """One inventoried configuration: the probe case and the real case to check against."""

    key: str
    title: str
    case: Case
    real: str | None = None
    sizes_from: str | None = None  # a measured case whose sizes to evaluate at, if no real


def _probe_model(name: str, family: str, hf_class: str, config: dict, task: str) -> Model:
    return Model(name, family, hf_class, config, task)


P = PROBE
GPT2_P = {
    **GPT2_SMALL,
    "vocab_size": P["V"],
    "n_positions": P["P"],
    "n_embd": P["h"],
    "n_layer": P["L"],
    "n_head": P["a"],
    "n_inner": P["f"],
}
BERT_P = {
    **BERT_BASE,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a"],
    "intermediate_size": P["f"],
    "max_position_embeddings": P["P"],
    "type_vocab_size": P["T"],
}
T5_P = {
    **T5_BASE,
    "vocab_size": P["V"],
    "d_model": P["h"],
    "d_kv": P["d_free"],
    "d_ff": P["f"],
    "num_layers": P["L"],
    "num_decoder_layers": P["L_dec"],
    "num_heads": P["a"],
    "relative_attention_num_buckets": P["B"],
}
VIT_P = {
    **VIT_B16,
    "hidden_size": P["h"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a"],
    "intermediate_size": P["f"],
    "image_size": P["I"],
    "patch_size": P["p"],
    "num_labels": P["c"],
}
LLAMA_P = {
    **LLAMA_32_1B,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "intermediate_size": P["f"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a_gqa"],
    "num_key_value_heads": P["a_kv"],
    "head_dim": P["d_free"],
    "max_position_embeddings": 256,
}
LLAMA_UNTIED_P = {**LLAMA_P, "tie_word_embeddings": False}
# Multi-head attention (a_kv = a, as Llama-2-7B): eager attention's repeat_kv is a no-op.
LLAMA_MHA_P = {**LLAMA_UNTIED_P, "num_key_value_heads": P["a_gqa"]}
MISTRAL_P = {
    **MISTRAL_7B,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "intermediate_size": P["f"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a_gqa"],
    "num_key_value_heads": P["a_kv"],
    "head_dim": P["d_free"],
    "max_position_embeddings": 256,
    "sliding_window": P["W"],
}
MIXTRAL_P = {
    **MIXTRAL_SMALL,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "intermediate_size": P["f"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a_gqa"],
    "num_key_value_heads": P["a_kv"],
    "head_dim": P["d_free"],
    "num_local_experts": P["E"],
    "num_experts_per_tok": P["k"],
}
# Gemma 2: attention and final-logit softcapping, four RMSNorms per layer; the window is
# wider than the probe so every layer attends to all tokens.
GEMMA2_P = {
    **GEMMA_2_2B,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "intermediate_size": P["f"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a_gqa"],
    "num_key_value_heads": P["a_kv"],
    "head_dim": P["d_free"],
    "query_pre_attn_scalar": P["d_free"],
    "max_position_embeddings": 256,
    "sliding_window": 4096,
}

GPT2_M = _probe_model("gpt2-probe", "gpt2", "GPT2LMHeadModel", GPT2_P, "causal_lm")
BERT_M = _probe_model("bert-probe", "bert", "BertForMaskedLM", BERT_P, "masked_lm")
BERT_CLS_M = _probe_model(
    "bert-cls-probe",
    "bert",
    "BertForSequenceClassification",
    {**BERT_P, "num_labels": P["c"]},
    "sequence_classification",
)
T5_M = _probe_model("t5-probe", "t5", "T5ForConditionalGeneration", T5_P, "seq2seq_lm")
VIT_M = _probe_model("vit-probe", "vit", "ViTForImageClassification", VIT_P, "image_cls")
LLAMA_M = _probe_model("llama-probe", "llama", "LlamaForCausalLM", LLAMA_P, "causal_lm")
LLAMA_U_M = _probe_model(
    "llama-untied-probe", "llama", "LlamaForCausalLM", LLAMA_UNTIED_P, "causal_lm"
)
LLAMA_MHA_M = _probe_model("llama-mha-probe", "llama", "LlamaForCausalLM", LLAMA_MHA_P, "causal_lm")
MISTRAL_M = _probe_model("mistral-probe", "mistral", "MistralForCausalLM", MISTRAL_P, "causal_lm")
# A window longer than the probe sequence, as in the real training case (s = 2048 <= 4096).
MISTRAL_LONG_M = _probe_model(
    "mistral-long-window-probe",
    "mistral",
    "MistralForCausalLM",
    {**MISTRAL_P, "sliding_window": 43},
    "causal_lm",
)
GEMMA2_M = _probe_model("gemma2-probe", "gemma2", "Gemma2ForCausalLM", GEMMA2_P, "causal_lm")
MIXTRAL_M = _probe_model("mixtral-probe", "mixtral", "MixtralForCausalLM", MIXTRAL_P, "causal_lm")

LORA_QKVO_P = {
    "r": P["r"],
    "alpha": 2 * P["r"],
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
LORA_ALL_P = {
    **LORA_QKVO_P,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
LORA_QV_P = {**LORA_QKVO_P, "target_modules": ["q_proj", "v_proj"]}


def _train(model: Model, precision: str, attn: str = "eager", **kw: Any) -> Case:
    b, s = P["b"], P["s"]
    extra: dict[str, Any] = {}
    if model.family == "vit":
        extra["image_size"] = P["I"]
        s = None
    if model.family == "t5":
        extra["decoder_seq_len"] = P["t"]
    return Case(
        model=model,
        mode="training",
        precision=precision,
        batch_size=b,
        seq_len=s,
        optimizer=ADAMW,
        attn_implementation=attn,
        **extra,
        **kw,
    )


def _infer(model: Model, attn: str = "sdpa", logits_to_keep: int = 1) -> Case:
    return Case(
        model=model,
        mode="inference",
        precision="bf16",
        batch_size=P["b"],
        context_len=P["s"],
        attn_implementation=attn,
        logits_to_keep=logits_to_keep,
    )


NO_GPT2_DROP = {"attn_pdrop": 0.0}
NO_BERT_DROP = {"attention_probs_dropout_prob": 0.0}


def settings() -> list[Setting]:
    """Every inventoried setting, in report order."""
    gc = {"gradient_checkpointing": True}
    return [
        Setting(
            "gpt2.fp32.eager",
            "GPT-2, fp32, eager attention",
            _train(GPT2_M, "fp32"),
            "gpt2-small.train.fp32.adamw.eager.b4.s512",
        ),
        Setting(
            "gpt2.fp32.sdpa",
            "GPT-2, fp32, SDPA (attention dropout 0)",
            _train(GPT2_M, "fp32", "sdpa", config_overrides=NO_GPT2_DROP),
            "gpt2-small.train.fp32.adamw.sdpa.b4.s512",
        ),
        Setting(
            "gpt2.amp_bf16.eager",
            "GPT-2, amp_bf16 (fp32 weights, bf16 autocast), eager",
            _train(GPT2_M, "amp_bf16"),
            "gpt2-small.train.amp-bf16.adamw.eager.b4.s512",
        ),
        Setting(
            "gpt2.bf16.eager",
            "GPT-2, pure bf16, eager",
            _train(GPT2_M, "bf16"),
            "gpt2-small.train.bf16.adamw.eager.b4.s512",
        ),
        Setting(
            "gpt2.fp32.eager.gc",
            "GPT-2, fp32, eager, gradient checkpointing",
            _train(GPT2_M, "fp32", **gc),
            "gpt2-small.train.fp32.adamw.eager.gc.b4.s512",
        ),
        Setting(
            "gpt2.infer.eager",
            "GPT-2 inference, bf16, eager (prefill logits_to_keep=1, one decode step)",
            _infer(GPT2_M, "eager"),
            "gpt2-small.infer.bf16.eager.b1.ctx1024",
        ),
        Setting(
            "bert.mlm.fp32.eager",
            "BERT masked LM, fp32, eager",
            _train(BERT_M, "fp32"),
            "bert-base.train.fp32.adamw.eager.b8.s512",
        ),
        Setting(
            "bert.mlm.amp_bf16.sdpa",
            "BERT masked LM, amp_bf16, SDPA (attention dropout 0)",
            _train(BERT_M, "amp_bf16", "sdpa", config_overrides=NO_BERT_DROP),
            "bert-base.train.amp-bf16.adamw.sdpa.b8.s512",
        ),
        Setting(
            "bert.cls.fp32.eager",
            "BERT sequence classification, fp32, eager",
            _train(BERT_CLS_M, "fp32"),
            "bert-large.train.fp32.adamw.eager.b4.s512",
        ),
        Setting(
            "t5.fp32.eager",
            "T5 v1.0 (relu), fp32, eager",
            _train(T5_M, "fp32"),
            "t5-base.train.fp32.adamw.eager.b4.s512.dec128",
        ),
        Setting(
            "vit.fp32.eager",
            "ViT image classification, fp32, eager",
            _train(VIT_M, "fp32"),
            "vit-b16.train.fp32.adamw.eager.b32.img224",
        ),
        Setting(
            "vit.amp_bf16.sdpa",
            "ViT image classification, amp_bf16, SDPA",
            _train(VIT_M, "amp_bf16", "sdpa"),
            "vit-b16.train.amp-bf16.adamw.sdpa.b32.img224",
        ),
        Setting(
            "llama.bf16.sdpa",
            "Llama (GQA, tied embeddings), pure bf16, SDPA",
            _train(LLAMA_M, "bf16", "sdpa"),
            "llama-3.2-1b.train.bf16.adamw.sdpa.b4.s512",
        ),
        Setting(
            "llama.untied.bf16.sdpa",
            "Llama (GQA, untied embeddings), pure bf16, SDPA",
            _train(LLAMA_U_M, "bf16", "sdpa"),
            sizes_from="llama-2-7b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "llama.bf16.eager",
            "Llama (GQA, tied), pure bf16, eager attention",
            _train(LLAMA_M, "bf16", "eager"),
            "llama-3.2-1b.train.bf16.adamw.eager.b1.s2048",
        ),
        Setting(
            "llama.amp_bf16.sdpa",
            "Llama (GQA, tied), amp_bf16, SDPA",
            _train(LLAMA_M, "amp_bf16", "sdpa"),
            "llama-3.2-1b.train.amp-bf16.adamw.sdpa.b1.s2048",
        ),
        Setting(
            "llama.bf16.sdpa.gc",
            "Llama (GQA, tied), pure bf16, SDPA, gradient checkpointing",
            _train(LLAMA_M, "bf16", "sdpa", **gc),
            "llama-3.2-1b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "llama.untied.bf16.sdpa.gc",
            "Llama (untied), pure bf16, SDPA, gradient checkpointing",
            _train(LLAMA_U_M, "bf16", "sdpa", **gc),
            "llama-2-7b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "llama.infer.sdpa",
            "Llama inference (untied), bf16, SDPA, prefill logits_to_keep=1, one decode step",
            _infer(LLAMA_U_M),
            "llama-2-7b.infer.bf16.sdpa.b4.ctx1024",
        ),
        Setting(
            "llama.infer.sdpa.fulllogits",
            "Llama inference, bf16, SDPA, prefill logits_to_keep=0 (all positions)",
            _infer(LLAMA_M, logits_to_keep=0),
            "llama-3.2-1b.infer.bf16.sdpa.b1.ctx8192.fulllogits",
        ),
        Setting(
            "llama.infer.eager",
            "Llama inference (GQA, untied), bf16, eager attention",
            _infer(LLAMA_U_M, "eager"),
            sizes_from="llama-2-7b.infer.bf16.eager.b1.ctx4096",
        ),
        Setting(
            "llama.mha.infer.eager",
            "Llama inference (multi-head a_kv = a, untied), bf16, eager attention",
            _infer(LLAMA_MHA_M, "eager"),
            "llama-2-7b.infer.bf16.eager.b1.ctx4096",
        ),
        Setting(
            "mistral.bf16.sdpa.gc",
            "Mistral (sliding window W >= s), pure bf16, SDPA, gradient checkpointing",
            _train(MISTRAL_LONG_M, "bf16", "sdpa", **gc),
            "mistral-7b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "mistral.window.bf16.sdpa.gc",
            "Mistral (sliding window W < s), pure bf16, SDPA, gradient checkpointing",
            _train(MISTRAL_M, "bf16", "sdpa", **gc),
            sizes_from="mistral-7b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "mistral.infer.sdpa",
            "Mistral inference past the sliding window (s > W), bf16, SDPA",
            _infer(MISTRAL_M),
            "mistral-7b.infer.bf16.sdpa.b1.ctx8192",
        ),
        Setting(
            "mixtral.bf16.sdpa",
            "Mixtral (grouped_mm experts), pure bf16, SDPA",
            _train(MIXTRAL_M, "bf16", "sdpa"),
            "mixtral-small-8e.train.bf16.adamw.sdpa.b2.s512",
        ),
        Setting(
            "mixtral.bf16.sdpa.gc",
            "Mixtral (grouped_mm experts), pure bf16, SDPA, gradient checkpointing",
            _train(MIXTRAL_M, "bf16", "sdpa", **gc),
            "mixtral-small-8e.train.bf16.adamw.sdpa.gc.b2.s512",
        ),
        Setting(
            "mixtral.infer.sdpa",
            "Mixtral inference, bf16, SDPA",
            _infer(MIXTRAL_M),
            "mixtral-small-8e.infer.bf16.sdpa.b1.ctx2048",
        ),
        Setting(
            "gemma2.bf16.eager",
            "Gemma 2 (softcapping, four RMSNorms), pure bf16, eager attention",
            _train(GEMMA2_M, "bf16", "eager"),
            "gemma-2-2b.train.bf16.adamw.eager.b1.s1024",
        ),
        Setting(
            "gemma2.amp.eager",
            "Gemma 2, amp_bf16, eager attention",
            _train(GEMMA2_M, "amp_bf16", "eager"),
            "gemma-2-2b.train.amp-bf16.adamw.eager.b1.s512",
        ),
        Setting(
            "lora.qkvo.bf16.sdpa",
            "LoRA (peft) on q,k,v,o of the Llama shape, bf16 base, SDPA",
            _train(LLAMA_M, "bf16", "sdpa", lora=LORA_QKVO_P),
            "llama-3.2-1b.lora.bf16.adamw.sdpa.b1.s2048",
        ),
        Setting(
            "lora.qkvo.bf16.sdpa.gc",
            "LoRA on q,k,v,o, bf16, SDPA, gradient checkpointing",
            _train(LLAMA_M, "bf16", "sdpa", lora=LORA_QKVO_P, **gc),
            "llama-3.2-1b.lora.bf16.adamw.sdpa.gc.b4.s2048",
        ),
        Setting(
            "lora.qv.bf16.sdpa",
            "LoRA on q,v (untied Llama shape), bf16, SDPA",
            _train(LLAMA_U_M, "bf16", "sdpa", lora=LORA_QV_P),
            "llama-2-7b.lora.bf16.adamw.sdpa.b1.s1304",
        ),
        Setting(
            "lora.all.bf16.sdpa",
            "LoRA on all linear layers (q,k,v,o,gate,up,down), bf16, SDPA",
            _train(LLAMA_M, "bf16", "sdpa", lora=LORA_ALL_P),
            sizes_from="llama-3.2-1b.lora.bf16.adamw.sdpa.b1.s2048",
        ),
        Setting(
            "lora.all.bf16.sdpa.gc",
            "LoRA on all linear layers, bf16, SDPA, gradient checkpointing",
            _train(LLAMA_M, "bf16", "sdpa", lora=LORA_ALL_P, **gc),
            sizes_from="llama-3.2-1b.lora.bf16.adamw.sdpa.gc.b4.s2048",
        ),
    ]


# Running -----------------------------------------------------------------------------
