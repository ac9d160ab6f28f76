"""Transformer architectures read from Hugging Face ``config.json`` fields.

:func:`from_config` accepts a pasted ``config.json`` as it is (GPT-2 and T5 key aliases
included) and returns a :class:`Transformer`: the shape facts the estimator needs, in one
naming. :func:`parameter_counts` counts parameters module by module, the way the model's
``transformers`` class allocates them, so the total equals ``model.num_parameters()``.

Sources: the per-layer formulas of Megatron-LM's
``megatron/training/theoretical_memory_usage.py`` for the decoder layer; the BERT, T5
and ViT layouts from their ``transformers`` modeling files, verified against exact
published counts in ``tests/unit/test_architecture.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

from nnmem.errors import NnmemError, Problem
from nnmem.validation import shown


class Family(StrEnum):
    """How the layers are arranged."""

    DECODER = "decoder"  # GPT-2, Llama, Mistral, Qwen, Gemma, Phi
    MOE = "moe"  # a decoder whose MLPs are routed experts (Mixtral, Qwen-MoE)
    ENCODER = "encoder"  # BERT, RoBERTa, DistilBERT
    ENCODER_DECODER = "encoder-decoder"  # T5
    VIT = "vit"  # Vision Transformer


class Head(StrEnum):
    """What sits on top of the layers; decides the output layer's parameters."""

    CAUSAL_LM = "causal_lm"
    MASKED_LM = "masked_lm"
    SEQ2SEQ_LM = "seq2seq_lm"
    BASE = "base"  # the bare model (BertModel keeps its pooler)
    SEQUENCE_CLASSIFICATION = "sequence_classification"
    IMAGE_CLASSIFICATION = "image_classification"


@dataclass(frozen=True)
class Transformer:
    """The shape of a transformer, named once whatever the config calls it.

    Widths: ``hidden`` (h), ``heads`` (a), ``kv_heads`` (a_kv), ``head_dim`` (d),
    ``intermediate`` (f, per expert for MoE). ``layers`` counts decoder (or encoder-only)
    layers; T5 adds ``encoder_layers``.
    """

    model_type: str
    family: Family
    head: Head
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool
    activation: str
    rms_norm: bool  # RMSNorm (weight only) rather than LayerNorm (weight and bias)
    tied_embeddings: bool
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    head_bias: bool = False  # Phi-1/1.5/2: PhiForCausalLM's lm_head is nn.Linear(bias=True)
    norms_per_layer: int = 2
    qk_norm: bool = False
    learned_positions: int = 0  # rows of a learned position table (GPT-2, BERT, ViT)
    token_types: int = 0  # BERT's segment embeddings
    encoder_layers: int = 0  # T5
    relative_buckets: int = 0  # T5 relative position buckets
    experts: int = 0
    experts_per_token: int = 0
    shared_expert_intermediate: int = 0
    num_labels: int = 0
    image_size: int = 0
    patch_size: int = 0
    channels: int = 0
    sliding_window: int | None = None
    # Multi-head latent attention (DeepSeek-V2/V3, Kimi K2) when kv_lora_rank > 0;
    # head_dim is then the query/key head, qk_nope_head_dim + qk_rope_head_dim.
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # MoE models whose first (or non-interleaved) layers keep a dense MLP
    dense_layers: int = 0
    dense_intermediate: int = 0
    shared_expert_gate: bool = True  # Qwen's sigmoid gate h -> 1 on the shared expert
    router_bias: bool = False  # gpt-oss GptOssTopKRouter.bias
    attention_sinks: bool = False  # gpt-oss GptOssAttention.sinks, one per head
    output_gate: bool = False  # Qwen3-Next: q_proj also yields a per-head output gate
    # Gated delta net layers (Qwen3-Next linear attention)
    linear_layers: int = 0
    linear_key_heads: int = 0
    linear_value_heads: int = 0
    linear_key_dim: int = 0
    linear_value_dim: int = 0
    linear_kernel: int = 0
    # Llama 4: layers attending within chunks of attention_chunk tokens
    chunked_layers: int = 0
    attention_chunk: int = 0
    # Llama 4: the vision encoder's config fields, as sorted (key, value) pairs
    vision: tuple[tuple[str, Any], ...] = ()
    dropout: float = 0.0
    attention_dropout: float = 0.0
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def q_width(self) -> int:
        """Width of the query projection, ``a·d`` (not always h: Gemma, Qwen3)."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Width of the key (or value) projection, ``a_kv·d``."""
        return self.kv_heads * self.head_dim

    @property
    def mla(self) -> bool:
        """Whether attention is multi-head latent attention."""
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        """Layers whose MLP is the routed experts."""
        return self.layers - self.dense_layers if self.family is Family.MOE else 0

    @property
    def attention_layers(self) -> int:
        """Layers with softmax attention (the rest are linear attention)."""
        return self.layers - self.linear_layers

    @property
    def seq_from_image(self) -> int:
        """Tokens a ViT sees: one per patch plus the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1 if self.patch_size else 0


# --- reading config.json -----------------------------------------------------------------

# Each concept and the keys that name it, in the order transformers' configs use them.
ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "intermediate_size": ("intermediate_size", "n_inner", "d_ff", "ffn_dim", "hidden_dim"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "n_ctx"),
    "hidden_act": ("hidden_act", "activation_function", "hidden_activation", "activation"),
    "num_local_experts": ("num_local_experts", "num_experts", "n_routed_experts"),
}

ENCODER_TYPES = {"bert", "roberta", "distilbert", "xlm-roberta", "electra", "deberta-v2"}
T5_TYPES = {"t5", "mt5", "umt5"}
MOE_EXPERT_KEYS = ALIASES["num_local_experts"]


class ConfigReader:
    """Reads typed values from a config dict, collecting problems instead of stopping."""

    def __init__(self, config: Mapping[str, Any], field: str = "config") -> None:
        self.config = config
        self.field = field
        self.problems: list[Problem] = []

    def find(self, concept: str) -> tuple[str, Any]:
        """The key and value that state ``concept``, or ``(concept, None)``."""
        for key in ALIASES.get(concept, (concept,)):
            if self.config.get(key) is not None:
                return key, self.config[key]
        return concept, None

    def whole(self, concept: str, default: int | None = None, low: int = 1) -> int:
        """A whole-number field; missing uses ``default`` or is reported."""
        key, value = self.find(concept)
        if value is None:
            if default is not None:
                return default
            self.problems.append(
                Problem((self.field, concept), f"config.json needs {concept} (a whole number).")
            )
            return low
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value != int(value)
        ):
            self.problems.append(
                Problem(
                    (self.field, key),
                    f"config.json field {key} must be a whole number (got {shown(value)}).",
                    value,
                )
            )
            return low
        if not low <= int(value) <= 10**9:
            self.problems.append(
                Problem(
                    (self.field, key),
                    f"config.json field {key} must be from {low:,} to 1,000,000,000 "
                    f"(got {shown(value)}).",
                    value,
                )
            )
            return low
        return int(value)

    def flag(self, concept: str, default: bool) -> bool:
        """A true/false field."""
        key, value = self.find(concept)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problems.append(
                Problem(
                    (self.field, key),
                    f"config.json field {key} must be true or false (got {shown(value)}).",
                    value,
                )
            )
            return default
        return value

    def number(self, concept: str, default: float) -> float:
        """A real-number field such as a dropout probability."""
        key, value = self.find(concept)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.problems.append(
                Problem(
                    (self.field, key),
                    f"config.json field {key} must be a number (got {shown(value)}).",
                    value,
                )
            )
            return default
        return float(value)

    def text(self, concept: str, default: str) -> str:
        """A string field."""
        _, value = self.find(concept)
        return value if isinstance(value, str) else default


def _family(model_type: str, config: Mapping[str, Any]) -> Family:
    if model_type in T5_TYPES or config.get("is_encoder_decoder") is True:
        return Family.ENCODER_DECODER
    if model_type in ENCODER_TYPES:
        return Family.ENCODER
    if model_type == "vit" or ("patch_size" in config and "image_size" in config):
        return Family.VIT
    # GPT-2's modeling code has no experts: transformers ignores such keys in its config.
    experts = (config.get(k) for k in MOE_EXPERT_KEYS)
    gpt2 = model_type in ("gpt2", "gpt_bigcode")
    if not gpt2 and any(isinstance(n, int) and not isinstance(n, bool) and n > 1 for n in experts):
        return Family.MOE
    return Family.DECODER


def _head(family: Family, architectures: object) -> Head:
    """The head from config.json's ``architectures`` (the class the checkpoint was saved as)."""
    name = architectures[0] if isinstance(architectures, list) and architectures else ""
    name = name if isinstance(name, str) else ""
    for suffix, head in (
        ("ForCausalLM", Head.CAUSAL_LM),
        ("LMHeadModel", Head.CAUSAL_LM),
        ("ForMaskedLM", Head.MASKED_LM),
        ("ForConditionalGeneration", Head.SEQ2SEQ_LM),
        ("ForSequenceClassification", Head.SEQUENCE_CLASSIFICATION),
        ("ForImageClassification", Head.IMAGE_CLASSIFICATION),
        ("Model", Head.BASE),
    ):
        if name.endswith(suffix):
            return head
    return {
        Family.DECODER: Head.CAUSAL_LM,
        Family.MOE: Head.CAUSAL_LM,
        Family.ENCODER: Head.MASKED_LM,
        Family.ENCODER_DECODER: Head.SEQ2SEQ_LM,
        Family.VIT: Head.IMAGE_CLASSIFICATION,
    }[family]


def from_config(config: Mapping[str, Any], field: str = "config") -> Transformer:
    """Read a Hugging Face ``config.json`` (a dict), reporting every bad key at once.

    >>> llama = from_config({"model_type": "llama", "hidden_size": 4096,
    ...     "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    ...     "num_key_value_heads": 8, "vocab_size": 128256, "hidden_act": "silu"})
    >>> llama.family, llama.kv_width, llama.gated_mlp
    (<Family.DECODER: 'decoder'>, 1024, True)
    """
    if not isinstance(config, Mapping):
        raise NnmemError.single(field, "The config must be a JSON object (a config.json).")
    original = config
    vision: tuple[tuple[str, Any], ...] = ()
    if config.get("model_type") == "llama4" and isinstance(config.get("text_config"), Mapping):
        # Llama4ForConditionalGeneration nests the decoder under text_config and the
        # vision encoder under vision_config (transformers configuration_llama4.py).
        config = {**config["text_config"], "model_type": "llama4"}
    read = ConfigReader(config, field)
    if original.get("model_type") == "llama4" and isinstance(
        original.get("vision_config"), Mapping
    ):
        vision = _vision_fields(read, original["vision_config"])
    model_type = read.text("model_type", "")
    family = _family(model_type, config)
    head = _head(family, config.get("architectures"))
    if model_type in ("llama4", "llama4_text"):
        head = Head.CAUSAL_LM
    hidden = read.whole("hidden_size")
    heads = read.whole("num_attention_heads")
    kv_heads = read.whole("num_key_value_heads", default=heads)
    head_dim_key = "d_kv" if family is Family.ENCODER_DECODER else "head_dim"
    if read.find(head_dim_key)[1] is not None:
        head_dim = read.whole(head_dim_key)
    elif read.problems or hidden % heads == 0:
        head_dim = max(1, hidden // heads)  # transformers' default, h / a
    else:
        head_dim = 1
        read.problems.append(
            # A rule across keys: its loc is the config, its input the values involved.
            Problem(
                field,
                f"hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads}): "
                f"config.json must then give {head_dim_key}.",
                {"hidden_size": hidden, "num_attention_heads": heads, head_dim_key: None},
            )
        )
    if kv_heads and heads % kv_heads:
        read.problems.append(
            Problem(
                field,
                f"num_key_value_heads ({kv_heads}) must divide num_attention_heads ({heads}).",
                {"num_key_value_heads": kv_heads, "num_attention_heads": heads},
            )
        )
    layers = read.whole("num_hidden_layers")
    activation = read.text("hidden_act", "gelu").lower()
    kwargs: dict[str, Any] = {}

    if family is Family.ENCODER_DECODER:
        projection = read.text("feed_forward_proj", "relu")
        gated = projection.startswith("gated-")
        activation = projection.removeprefix("gated-")
        kwargs |= {
            "encoder_layers": layers,
            "relative_buckets": read.whole("relative_attention_num_buckets", default=32),
            "dropout": read.number("dropout_rate", 0.1),
            # T5 applies dropout_rate to the attention probabilities too.
            "attention_dropout": read.number("dropout_rate", 0.1),
        }
        layers = read.whole("num_decoder_layers", default=layers)
        intermediate = read.whole("intermediate_size")
        rms, tied = True, read.flag("tie_word_embeddings", True)
        norms, qkv_bias, out_bias, mlp_bias = 2, False, False, False
    elif model_type == "gpt2" or model_type == "gpt_bigcode":
        gated, rms, tied, norms = False, False, read.flag("tie_word_embeddings", True), 2
        intermediate = read.whole("intermediate_size", default=4 * hidden)
        qkv_bias = out_bias = mlp_bias = True
        if model_type == "gpt_bigcode" and read.flag("multi_query", True):
            kv_heads = 1
        kwargs |= {
            "learned_positions": read.whole("max_position_embeddings", default=1024),
            "dropout": read.number("resid_pdrop", 0.1),
            "attention_dropout": read.number("attn_pdrop", 0.1),
        }
    elif model_type == "phi":
        # Phi-1, 1.5 and 2 (transformers modeling_phi.py): PhiDecoderLayer runs attention
        # and PhiMLP (fc1 -> gelu_new -> fc2, no gate) in parallel off one input_layernorm
        # (a LayerNorm); q, k, v, dense, fc1 and fc2 all carry biases; PhiConfig defaults
        # tie_word_embeddings, resid_pdrop and attention_dropout to false and 0.0.
        gated, rms, norms = False, False, 1
        tied = read.flag("tie_word_embeddings", False)
        intermediate = read.whole("intermediate_size")
        qkv_bias = out_bias = mlp_bias = True
        kwargs |= {
            "head_bias": True,  # PhiForCausalLM: nn.Linear(hidden_size, vocab_size, bias=True)
            "dropout": read.number("resid_pdrop", 0.0),
            "attention_dropout": read.number("attention_dropout", 0.0),
        }
    elif family in (Family.ENCODER, Family.VIT):
        gated, rms, norms = False, False, 2
        tied = read.flag("tie_word_embeddings", True)
        intermediate = read.whole("intermediate_size", default=4 * hidden)
        qkv_bias = read.flag("qkv_bias", True)
        out_bias = mlp_bias = True
        kwargs |= {
            "dropout": read.number("hidden_dropout_prob", read.number("dropout", 0.1)),
            "attention_dropout": read.number(
                "attention_probs_dropout_prob", read.number("attention_dropout", 0.1)
            ),
        }
        if family is Family.VIT:
            kwargs |= {
                "image_size": read.whole("image_size", default=224),
                "patch_size": read.whole("patch_size", default=16),
                "channels": read.whole("num_channels", default=3),
                "num_labels": _num_labels(read, config, default=1000),
            }
        else:
            kwargs |= {
                "learned_positions": read.whole("max_position_embeddings", default=512),
                "token_types": read.whole("type_vocab_size", default=2, low=0)
                if model_type != "distilbert"
                else 0,
            }
    else:  # Llama-style decoders and MoE: gated MLP, RMSNorm, usually no biases
        gated, rms = True, True
        tied = read.flag("tie_word_embeddings", model_type in {"gemma", "gemma2", "gemma3_text"})
        intermediate = read.whole("intermediate_size")
        # GptOssConfig defaults attention_bias to true (configuration_gpt_oss.py).
        attention_bias = read.flag("attention_bias", model_type in ("qwen2", "gpt_oss"))
        qkv_bias = attention_bias or model_type == "qwen2"
        # GLM-4.5 (modeling_glm4_moe.py Glm4MoeAttention): o_proj has no bias.
        out_bias = attention_bias and model_type not in ("qwen2", "glm4_moe")
        # gpt-oss experts carry gate_up_proj_bias and down_proj_bias (GptOssExperts).
        mlp_bias = read.flag("mlp_bias", False) or model_type == "gpt_oss"
        if model_type == "gpt_oss":
            kwargs |= {"router_bias": True, "attention_sinks": True}
        norms = 4 if model_type in {"gemma2", "gemma3", "gemma3_text"} else 2
        qk_norm = model_type in {"qwen3", "qwen3_moe", "qwen3_next", "gemma3", "gemma3_text"}
        qk_norm = qk_norm or model_type == "olmo2"
        if model_type == "glm4_moe":
            qk_norm = read.flag("use_qk_norm", False)  # Glm4MoeAttention q_norm, k_norm
        kwargs |= {
            "qk_norm": qk_norm,
            "sliding_window": _optional_whole(read, "sliding_window"),
            "attention_dropout": read.number("attention_dropout", 0.0),
        }
        if read.find("kv_lora_rank")[1] is not None:
            kwargs |= _mla_fields(read)
            head_dim = read.whole("qk_nope_head_dim") + kwargs["qk_rope_head_dim"]
            kv_heads = heads  # every head gets its own key and value from kv_b_proj
        if model_type == "qwen3_next":
            kwargs |= _linear_attention_fields(read, layers)
        if model_type in ("llama4", "llama4_text"):
            kwargs |= _chunked_fields(read, layers)
        if family is Family.MOE:
            kwargs |= {
                "experts": read.whole("num_local_experts"),
                "experts_per_token": read.whole("num_experts_per_tok", default=2),
                "shared_expert_intermediate": read.whole(
                    "shared_expert_intermediate_size", default=0, low=0
                ),
            }
            dense_width = intermediate
            intermediate = read.whole("moe_intermediate_size", default=intermediate)
            kwargs |= _dense_layer_fields(read, model_type, layers, dense_width, intermediate)

    given = config.get("layer_types")
    if given is not None and (not isinstance(given, list) or len(given) != layers):
        # transformers refuses it too: configuration_utils.layer_type_validation raises
        # when num_hidden_layers differs from the number of layer types.
        read.problems.append(
            Problem(
                (read.field, "layer_types"),
                f"config.json field layer_types must list one attention kind per layer, "
                f"{layers:,} for num_hidden_layers {layers:,} (got {shown(given)}).",
                given,
            )
        )
    vocab = read.whole("vocab_size", default=0 if family is Family.VIT else None, low=0)
    if head is Head.SEQUENCE_CLASSIFICATION:
        kwargs["num_labels"] = _num_labels(read, config, default=2)
    if read.problems:
        raise NnmemError(read.problems)
    return Transformer(
        model_type=model_type,
        family=family,
        head=head,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=vocab,
        gated_mlp=gated,
        activation=activation,
        rms_norm=rms,
        tied_embeddings=tied,
        qkv_bias=qkv_bias,
        out_bias=out_bias,
        mlp_bias=mlp_bias,
        norms_per_layer=norms,
        vision=vision,
        config=dict(original),
        **kwargs,
    )


VISION_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "image_size",
    "patch_size",
    "num_channels",
    "projector_input_dim",
    "projector_output_dim",
    "vision_output_dim",
)


def _vision_fields(read: ConfigReader, config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The Llama 4 vision_config fields that size the vision tower, checked."""
    vision = ConfigReader(config, read.field)
    fields = {
        key: vision.whole(key, default=3 if key == "num_channels" else None) for key in VISION_KEYS
    }
    # report the keys under vision_config
    read.problems += [
        Problem((read.field, "vision_config", *p.loc[1:]), f"vision_config: {p.message}", p.input)
        for p in vision.problems
    ]
    return tuple(fields.items())


def _mla_fields(read: ConfigReader) -> dict[str, Any]:
    """DeepSeek-V3 / Kimi K2 latent attention widths (transformers
    modeling_deepseek_v3.py DeepseekV3Attention); a null q_lora_rank means a plain q_proj."""
    return {
        "q_lora_rank": read.whole("q_lora_rank", default=0, low=0),
        "kv_lora_rank": read.whole("kv_lora_rank"),
        "qk_rope_head_dim": read.whole("qk_rope_head_dim"),
        "v_head_dim": read.whole("v_head_dim"),
    }


def _layer_kinds(read: ConfigReader, layers: int, model_type: str) -> list[str]:
    """Each layer's attention kind: ``layer_types`` as given, else as the config class
    derives it.

    - Qwen3NextConfig (configuration_qwen3_next.py): ``"linear_attention" if (i + 1) %
      full_attention_interval else "full_attention"``.
    - Llama4TextConfig (configuration_llama4.py): ``no_rope_layers`` (default
      ``int((i + 1) % no_rope_layer_interval != 0)``); RoPE layers use
      ``"chunked_attention"`` when attention_chunk_size is set.
    """
    given = read.config.get("layer_types")
    if isinstance(given, list) and len(given) == layers:
        return [str(kind) for kind in given]
    if model_type == "qwen3_next":
        every = read.whole("full_attention_interval", default=4)
        return ["linear_attention" if (i + 1) % every else "full_attention" for i in range(layers)]
    rope = read.config.get("no_rope_layers")
    if not isinstance(rope, list) or len(rope) != layers:
        every = read.whole("no_rope_layer_interval", default=4)
        rope = [int((i + 1) % every != 0) for i in range(layers)]
    return ["chunked_attention" if r else "full_attention" for r in rope]


def _linear_attention_fields(read: ConfigReader, layers: int) -> dict[str, Any]:
    """Qwen3-Next: its gated delta net layers (transformers modeling_qwen3_next.py
    Qwen3NextGatedDeltaNet) and the per-head output gate of its attention layers."""
    fields = {
        "linear_key_heads": read.whole("linear_num_key_heads"),
        "linear_value_heads": read.whole("linear_num_value_heads"),
        "linear_key_dim": read.whole("linear_key_head_dim"),
        "linear_value_dim": read.whole("linear_value_head_dim"),
        "linear_kernel": read.whole("linear_conv_kernel_dim", default=4),
        "output_gate": True,
    }
    kinds = _layer_kinds(read, layers, "qwen3_next")
    return fields | {"linear_layers": kinds.count("linear_attention")}


def _chunked_fields(read: ConfigReader, layers: int) -> dict[str, Any]:
    """Llama 4: the RoPE layers attend within chunks of attention_chunk_size tokens
    (transformers configuration_llama4.py Llama4TextConfig layer_types)."""
    chunk = _optional_whole(read, "attention_chunk_size")
    if not chunk:
        return {}
    kinds = _layer_kinds(read, layers, "llama4")
    return {"chunked_layers": kinds.count("chunked_attention"), "attention_chunk": chunk}


def _dense_layer_fields(
    read: ConfigReader, model_type: str, layers: int, dense_width: int, expert_width: int
) -> dict[str, Any]:
    """Which layers of an MoE keep a dense MLP, and the shared experts' width.

    - DeepSeek-V3, Kimi K2 (modeling_deepseek_v3.py DeepseekV3DecoderLayer) and GLM-4.5
      (modeling_glm4_moe.py Glm4MoeDecoderLayer): layers below first_k_dense_replace are
      dense; the others add n_shared_experts shared experts as one MLP of
      moe_intermediate_size x n_shared_experts, without a gate.
    - Qwen3-Next (modeling_qwen3_next.py Qwen3NextDecoderLayer): layer i is sparse
      unless it is in mlp_only_layers or (i + 1) % decoder_sparse_step != 0.
    - Llama 4 (modeling_llama4.py Llama4TextDecoderLayer): moe_layers (default every
      interleave_moe_layer_step-th layer) are sparse, the rest an MLP of
      intermediate_size_mlp; Llama4TextMoe's shared expert is an ungated MLP of
      intermediate_size.
    """
    if model_type in ("deepseek_v3", "deepseek_v2", "kimi_k2", "glm4_moe"):
        shared = read.whole("n_shared_experts", default=0, low=0)
        return {
            "dense_layers": min(read.whole("first_k_dense_replace", default=0, low=0), layers),
            "dense_intermediate": dense_width,
            "shared_expert_intermediate": shared * expert_width,
            "shared_expert_gate": False,
        }
    if model_type == "qwen3_next":
        only = read.config.get("mlp_only_layers") or []
        if not isinstance(only, list):
            read.problems.append(
                Problem(
                    (read.field, "mlp_only_layers"),
                    f"config.json field mlp_only_layers must be a list of layer numbers "
                    f"(got {shown(only)}).",
                    only,
                )
            )
            only = []
        step = read.whole("decoder_sparse_step", default=1)
        sparse = [i for i in range(layers) if i not in only and (i + 1) % step == 0]
        return {"dense_layers": layers - len(sparse), "dense_intermediate": dense_width}
    if model_type in ("llama4", "llama4_text"):
        step = read.whole("interleave_moe_layer_step", default=1)
        moe = read.config.get("moe_layers")
        count = len(moe) if isinstance(moe, list) else len(range(step - 1, layers, step))
        return {
            "dense_layers": layers - count,
            "dense_intermediate": read.whole("intermediate_size_mlp", default=dense_width),
            "shared_expert_intermediate": expert_width,
            "shared_expert_gate": False,
        }
    return {}


def _optional_whole(read: ConfigReader, concept: str) -> int | None:
    _, value = read.find(concept)
    return read.whole(concept) if value is not None else None


def _num_labels(read: ConfigReader, config: Mapping[str, Any], default: int) -> int:
    labels = config.get("id2label")
    if isinstance(labels, Mapping) and labels:
        return len(labels)
    return read.whole("num_labels", default=default)


# --- counting parameters -----------------------------------------------------------------


def _norm(t: Transformer, width: int) -> int:
    return width if t.rms_norm else 2 * width


def attention_params(t: Transformer, cross: bool = False) -> int:
    """One attention block: W_q, W_k, W_v, W_o and their biases (and Q/K norms)."""
    del cross  # cross-attention has the same shapes as self-attention in T5
    if t.mla or t.output_gate or t.attention_sinks:
        return sum(x.elements for x in _attention_tensors(t, "attn"))
    q, kv = t.q_width, t.kv_width
    count = t.hidden * q + 2 * t.hidden * kv + q * t.hidden
    if t.qkv_bias:
        count += q + 2 * kv
    if t.out_bias:
        count += t.hidden
    if t.qk_norm:
        count += 2 * t.head_dim
    return count


def mlp_params(t: Transformer, width: int | None = None) -> int:
    """One MLP (or one expert): gate/up/down for gated MLPs, up/down otherwise."""
    f = t.intermediate if width is None else width
    if t.gated_mlp:
        return 3 * t.hidden * f + (2 * f + t.hidden if t.mlp_bias else 0)
    return 2 * t.hidden * f + (f + t.hidden if t.mlp_bias else 0)


def layer_params(t: Transformer) -> int:
    """One decoder (or encoder-only) layer, all experts included; the largest layer
    where layers differ (dense and MoE layers, linear and full attention)."""
    norms = t.norms_per_layer * _norm(t, t.hidden)
    if t.dense_layers or t.linear_layers:
        attention = attention_params(t)
        if t.linear_layers:
            attention = max(attention, sum(x.elements for x in _linear_attention_tensors(t, "")))
        mlp = sum(x.elements for x in _moe_tensors(t, "")) if t.moe_layers else 0
        if t.dense_layers:
            mlp = max(mlp, mlp_params(t, t.dense_intermediate))
        return attention + mlp + norms
    if t.family is Family.MOE:
        router = t.hidden * t.experts + (t.experts if t.router_bias else 0)
        experts = t.experts * mlp_params(t)
        shared = 0
        if t.shared_expert_intermediate:
            # Qwen2-MoE: one shared expert plus a sigmoid gate h -> 1.
            shared = mlp_params(t, t.shared_expert_intermediate) + t.hidden
        return attention_params(t) + router + experts + shared + norms
    return attention_params(t) + mlp_params(t) + norms


def parameter_counts(t: Transformer) -> dict[str, int]:
    """Parameters by module, as the ``transformers`` class allocates them.

    >>> gpt2 = from_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12,
    ...                     "n_head": 12, "vocab_size": 50257, "n_positions": 1024})
    >>> sum(parameter_counts(gpt2).values())
    124439808
    """
    h = t.hidden
    counts: dict[str, int] = {}
    if t.family is Family.VIT:
        patches = (t.image_size // t.patch_size) ** 2
        counts["embeddings"] = t.channels * t.patch_size**2 * h + h + h + (patches + 1) * h
    else:
        counts["embeddings"] = (t.vocab + t.learned_positions + t.token_types) * h
        if t.family is Family.ENCODER:
            counts["embeddings"] += 2 * h  # embedding LayerNorm
    if t.family is Family.ENCODER_DECODER:
        # T5: the first layer of each stack owns a relative-position bias (buckets × heads);
        # decoder layers add cross-attention and a third norm.
        encoder_layer = attention_params(t) + mlp_params(t) + 2 * _norm(t, h)
        decoder_layer = 2 * attention_params(t) + mlp_params(t) + 3 * _norm(t, h)
        counts["encoder_layers"] = t.encoder_layers * encoder_layer + t.relative_buckets * t.heads
        counts["decoder_layers"] = t.layers * decoder_layer + t.relative_buckets * t.heads
        counts["final_norms"] = 2 * _norm(t, h)
    else:
        counts["layers"] = sum(x.elements for x in _decoder_tensors(t))
        if t.family is not Family.ENCODER:
            counts["final_norm"] = _norm(t, h)
    if t.vision:
        counts["vision"] = sum(x.elements for x in _vision_tensors(t))
    counts["head"] = _head_params(t)
    return counts


def _head_params(t: Transformer) -> int:
    h, untied = t.hidden, 0 if t.tied_embeddings else t.vocab * t.hidden
    if t.head in (Head.CAUSAL_LM, Head.SEQ2SEQ_LM):
        return untied + (t.vocab if t.head_bias else 0)
    if t.head is Head.MASKED_LM:
        # BERT/RoBERTa/DistilBERT: a dense h -> h transform, a LayerNorm, and the decoder,
        # whose weight is the tied embedding and whose bias has one entry per token.
        return h * h + h + 2 * h + t.vocab + untied
    if t.head is Head.IMAGE_CLASSIFICATION:
        return h * t.num_labels + t.num_labels  # the classifier on the class token
    # BERT and RoBERTa pool the first token through a dense layer; DistilBERT has no pooler.
    pooler = h * h + h if t.family is Family.ENCODER and t.model_type != "distilbert" else 0
    if t.head is Head.SEQUENCE_CLASSIFICATION:
        return pooler + h * t.num_labels + t.num_labels
    return pooler  # the bare model


def active_parameters(t: Transformer) -> int:
    """Parameters one token passes through: MoE counts only its top-k experts."""
    total = sum(parameter_counts(t).values())
    if t.family is not Family.MOE:
        return total
    return total - t.moe_layers * (t.experts - t.experts_per_token) * mlp_params(t)


# --- parameter tensors -------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    """A parameter tensor: its name, its shape, and how many identical ones there are
    (one per layer, or per expert)."""

    name: str
    shape: tuple[int, ...]
    count: int = 1

    @property
    def numel(self) -> int:
        """Elements of one such tensor."""
        return math.prod(self.shape)

    @property
    def elements(self) -> int:
        """Elements of all of them."""
        return self.numel * self.count

    def times(self, n: int) -> Tensor:
        """The same tensor, ``n`` times as many."""
        return Tensor(self.name, self.shape, self.count * n)


def _linear(name: str, out_features: int, in_features: int, bias: bool) -> list[Tensor]:
    tensors = [Tensor(f"{name}.weight", (out_features, in_features))]
    return tensors + ([Tensor(f"{name}.bias", (out_features,))] if bias else [])


def _norm_tensors(t: Transformer, name: str) -> list[Tensor]:
    tensors = [Tensor(f"{name}.weight", (t.hidden,))]
    return tensors if t.rms_norm else [*tensors, Tensor(f"{name}.bias", (t.hidden,))]


def _attention_tensors(t: Transformer, prefix: str) -> list[Tensor]:
    h, q, kv = t.hidden, t.q_width, t.kv_width
    if t.model_type in ("gpt2", "gpt_bigcode"):
        # GPT-2's Conv1D c_attn holds q, k and v in one (h, q + 2·kv) weight.
        return [
            Tensor(f"{prefix}.c_attn.weight", (h, q + 2 * kv)),
            Tensor(f"{prefix}.c_attn.bias", (q + 2 * kv,)),
            Tensor(f"{prefix}.c_proj.weight", (q, h)),
            Tensor(f"{prefix}.c_proj.bias", (h,)),
        ]
    if t.mla:
        return _mla_tensors(t, prefix)
    if t.output_gate:
        # Qwen3NextAttention: q_proj yields the query and a sigmoid output gate per head.
        q *= 2
    tensors = [
        *_linear(f"{prefix}.q_proj", q, h, t.qkv_bias),
        *_linear(f"{prefix}.k_proj", kv, h, t.qkv_bias),
        *_linear(f"{prefix}.v_proj", kv, h, t.qkv_bias),
        *_linear(f"{prefix}.o_proj", h, t.q_width, t.out_bias),
    ]
    if t.qk_norm:
        tensors += [Tensor(f"{prefix}.q_norm.weight", (t.head_dim,))]
        tensors += [Tensor(f"{prefix}.k_norm.weight", (t.head_dim,))]
    if t.attention_sinks:
        tensors += [Tensor(f"{prefix}.sinks", (t.heads,))]
    return tensors


def _mla_tensors(t: Transformer, prefix: str) -> list[Tensor]:
    """transformers modeling_deepseek_v3.py DeepseekV3Attention: q_a_proj h -> q_lora
    (with q_a_layernorm) and q_b_proj q_lora -> a·(nope + rope), or one q_proj without
    q_lora_rank; kv_a_proj_with_mqa h -> kv_lora + rope, kv_a_layernorm of kv_lora,
    kv_b_proj kv_lora -> a·(nope + v), o_proj a·v -> h. attention_bias adds biases to
    q_a_proj, kv_a_proj_with_mqa and o_proj."""
    h, a, rope, bias = t.hidden, t.heads, t.qk_rope_head_dim, t.qkv_bias
    nope = t.head_dim - rope
    if t.q_lora_rank:
        query = [
            *_linear(f"{prefix}.q_a_proj", t.q_lora_rank, h, bias),
            Tensor(f"{prefix}.q_a_layernorm.weight", (t.q_lora_rank,)),
            *_linear(f"{prefix}.q_b_proj", a * t.head_dim, t.q_lora_rank, False),
        ]
    else:
        query = _linear(f"{prefix}.q_proj", a * t.head_dim, h, False)
    return [
        *query,
        *_linear(f"{prefix}.kv_a_proj_with_mqa", t.kv_lora_rank + rope, h, bias),
        Tensor(f"{prefix}.kv_a_layernorm.weight", (t.kv_lora_rank,)),
        *_linear(f"{prefix}.kv_b_proj", a * (nope + t.v_head_dim), t.kv_lora_rank, False),
        *_linear(f"{prefix}.o_proj", h, a * t.v_head_dim, bias),
    ]


def _linear_attention_tensors(t: Transformer, prefix: str) -> list[Tensor]:
    """transformers modeling_qwen3_next.py Qwen3NextGatedDeltaNet: in_proj_qkvz
    h -> 2k + 2v and in_proj_ba h -> 2·v_heads (k = key heads x key dim, v = value heads
    x value dim), a depthwise conv1d over the 2k + v channels of kernel size, dt_bias and
    A_log per value head, a gated RMSNorm of the value head dim, out_proj v -> h."""
    h = t.hidden
    k = t.linear_key_heads * t.linear_key_dim
    v = t.linear_value_heads * t.linear_value_dim
    return [
        Tensor(f"{prefix}.in_proj_qkvz.weight", (2 * k + 2 * v, h)),
        Tensor(f"{prefix}.in_proj_ba.weight", (2 * t.linear_value_heads, h)),
        Tensor(f"{prefix}.conv1d.weight", (2 * k + v, 1, t.linear_kernel)),
        Tensor(f"{prefix}.dt_bias", (t.linear_value_heads,)),
        Tensor(f"{prefix}.A_log", (t.linear_value_heads,)),
        Tensor(f"{prefix}.norm.weight", (t.linear_value_dim,)),
        Tensor(f"{prefix}.out_proj.weight", (h, v)),
    ]


def _moe_tensors(t: Transformer, prefix: str) -> list[Tensor]:
    """One MoE block: router, the routed experts and any shared expert (and its gate)."""
    tensors = [Tensor(f"{prefix}.router.weight", (t.experts, t.hidden))]
    if t.router_bias:
        tensors += [Tensor(f"{prefix}.router.bias", (t.experts,))]
    tensors += [x.times(t.experts) for x in _mlp_tensors(t, f"{prefix}.experts.*", t.intermediate)]
    if t.shared_expert_intermediate:
        tensors += _mlp_tensors(t, f"{prefix}.shared_expert", t.shared_expert_intermediate)
        if t.shared_expert_gate:
            tensors += [Tensor(f"{prefix}.shared_expert_gate.weight", (1, t.hidden))]
    return tensors


def _vision_tensors(t: Transformer) -> list[Tensor]:
    """Llama 4's vision encoder and projector (transformers modeling_llama4.py).

    Llama4VisionModel: the unfold convolution's linear channels·patch² -> h without
    bias, class_embedding (h), positional_embedding_vlm ((image/patch)² + 1, h),
    layernorm_pre/post (weight and bias); per Llama4VisionEncoderLayer q/k/v/o h -> h
    with bias, fc1 h -> f and fc2 f -> h with bias, two LayerNorms; the
    Llama4VisionPixelShuffleMLP's fc1 f -> projector_input_dim and fc2
    projector_output_dim -> projector_output_dim without bias. Llama4MultiModalProjector:
    linear_1 vision_output_dim -> text hidden, without bias.
    """
    v = dict(t.vision)
    h, f, n = int(v["hidden_size"]), int(v["intermediate_size"]), int(v["num_hidden_layers"])
    patch, channels = int(v["patch_size"]), int(v["num_channels"])
    patches = (int(v["image_size"]) // patch) ** 2 + 1
    out = int(v["projector_output_dim"])
    layer = [
        *(
            x
            for name in ("q_proj", "k_proj", "v_proj", "o_proj")
            for x in _linear(name, h, h, True)
        ),
        *_linear("fc1", f, h, True),
        *_linear("fc2", h, f, True),
        Tensor("input_layernorm.weight", (h,)),
        Tensor("input_layernorm.bias", (h,)),
        Tensor("post_attention_layernorm.weight", (h,)),
        Tensor("post_attention_layernorm.bias", (h,)),
    ]
    return [
        Tensor("vision.patch_embedding.weight", (h, channels * patch * patch)),
        Tensor("vision.class_embedding", (h,)),
        Tensor("vision.positional_embedding_vlm", (patches, h)),
        *(
            Tensor(f"vision.layernorm_{p}.{w}", (h,))
            for p in ("pre", "post")
            for w in ("weight", "bias")
        ),
        *(Tensor(f"vision.layers.{x.name}", x.shape, n) for x in layer),
        Tensor("vision.adapter.fc1.weight", (int(v["projector_input_dim"]), f)),
        Tensor("vision.adapter.fc2.weight", (out, out)),
        Tensor("multi_modal_projector.weight", (t.hidden, int(v["vision_output_dim"]))),
    ]


def _mlp_tensors(t: Transformer, prefix: str, width: int) -> list[Tensor]:
    h, bias = t.hidden, t.mlp_bias
    up = [*_linear(f"{prefix}.up_proj", width, h, bias)]
    if t.gated_mlp:
        up = [*_linear(f"{prefix}.gate_proj", width, h, bias), *up]
    return [*up, *_linear(f"{prefix}.down_proj", h, width, bias)]


def _decoder_tensors(t: Transformer, prefix: str = "layers.*") -> list[Tensor]:
    """Every decoder (or encoder-only) layer's tensors, each counted over the layers
    that hold it: attention or linear attention, a dense MLP or the experts, norms."""
    tensors = [x.times(t.attention_layers) for x in _attention_tensors(t, f"{prefix}.attn")]
    if t.linear_layers:
        linear = _linear_attention_tensors(t, f"{prefix}.linear_attn")
        tensors += [x.times(t.linear_layers) for x in linear]
    if t.family is Family.MOE:
        tensors += [x.times(t.moe_layers) for x in _moe_tensors(t, prefix)]
        if t.dense_layers:
            mlp = _mlp_tensors(t, f"{prefix}.mlp", t.dense_intermediate)
            tensors += [x.times(t.dense_layers) for x in mlp]
    else:
        tensors += [x.times(t.layers) for x in _mlp_tensors(t, f"{prefix}.mlp", t.intermediate)]
    for n in range(t.norms_per_layer):
        tensors += [x.times(t.layers) for x in _norm_tensors(t, f"{prefix}.norm{n}")]
    return tensors


@cache
def parameter_tensors(t: Transformer) -> tuple[Tensor, ...]:
    """Every kind of parameter tensor with its shape and count; the elements sum to the
    model's parameter count.

    Fused projections (GPT-2's ``c_attn``, Phi-3's ``qkv_proj``) are listed as their
    separate parts; the element count is the same.

    >>> gpt2 = from_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12,
    ...                     "n_head": 12, "vocab_size": 50257})
    >>> max(parameter_tensors(gpt2), key=lambda p: p.numel)
    Tensor(name='embed.weight', shape=(50257, 768), count=1)
    """
    h = t.hidden
    tensors: list[Tensor] = []
    if t.family is Family.VIT:
        patches = (t.image_size // t.patch_size) ** 2
        tensors += [
            Tensor("patch.weight", (h, t.channels, t.patch_size, t.patch_size)),
            Tensor("patch.bias", (h,)),
            Tensor("cls_token", (1, 1, h)),
            Tensor("position_embeddings", (1, patches + 1, h)),
        ]
    else:
        tensors += [Tensor("embed.weight", (t.vocab, h))]
        if t.learned_positions:
            tensors += [Tensor("position.weight", (t.learned_positions, h))]
        if t.token_types:
            tensors += [Tensor("token_type.weight", (t.token_types, h))]
        if t.family is Family.ENCODER:
            tensors += _norm_tensors(t, "embed_norm")
    if t.family is Family.ENCODER_DECODER:
        for stack, count, attentions, norms in (
            ("encoder", t.encoder_layers, 1, 2),
            ("decoder", t.layers, 2, 3),
        ):
            tensors += [Tensor(f"{stack}.relative_bias", (t.relative_buckets, t.heads))]
            layer: list[Tensor] = []
            for a in range(attentions):
                layer += _attention_tensors(t, f"{stack}.*.attn{a}")
            layer += _mlp_tensors(t, f"{stack}.*.mlp", t.intermediate)
            for n in range(norms):
                layer += _norm_tensors(t, f"{stack}.*.norm{n}")
            tensors += [x.times(count) for x in layer]
            tensors += _norm_tensors(t, f"{stack}.final_norm")
    else:
        tensors += _decoder_tensors(t)
        if t.family is not Family.ENCODER:
            tensors += _norm_tensors(t, "final_norm")
    if t.vision:
        tensors += _vision_tensors(t)
    tensors += _head_tensors(t)
    return tuple(tensors)


def _head_tensors(t: Transformer) -> list[Tensor]:
    h = t.hidden
    untied = [] if t.tied_embeddings else [Tensor("lm_head.weight", (t.vocab, h))]
    if t.head in (Head.CAUSAL_LM, Head.SEQ2SEQ_LM):
        return untied + ([Tensor("lm_head.bias", (t.vocab,))] if t.head_bias else [])
    if t.head is Head.MASKED_LM:
        return [
            *_linear("mlm.transform", h, h, True),
            *_norm_tensors(t, "mlm.norm"),
            Tensor("mlm.decoder.bias", (t.vocab,)),
            *untied,
        ]
    if t.head is Head.IMAGE_CLASSIFICATION:
        return _linear("classifier", t.num_labels, h, True)
    pooler = (
        _linear("pooler", h, h, True)
        if t.family is Family.ENCODER and t.model_type != "distilbert"
        else []
    )
    if t.head is Head.SEQUENCE_CLASSIFICATION:
        return [*pooler, *_linear("classifier", t.num_labels, h, True)]
    return pooler
