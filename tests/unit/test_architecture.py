"""Parameter counts from config.json, against exact published counts.

Each expected value is the model's ``num_parameters()`` as published (the well-known
exact totals of the model cards and papers, reproduced by the closed-form layer counts
of Megatron-LM's ``theoretical_memory_usage.py``) or as measured by the accuracy suite
(``benchmarks/accuracy/measured.json``).
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem.errors import NnmemError
from nnmem.models.architecture import (
    Family,
    Head,
    active_parameters,
    from_config,
    parameter_counts,
    parameter_tensors,
)


def gpt2(h: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "model_type": "gpt2",
        "n_embd": h,
        "n_layer": layers,
        "n_head": heads,
        "vocab_size": 50257,
        "n_positions": 1024,
        "architectures": ["GPT2LMHeadModel"],
    }


def llama(
    h: int, f: int, layers: int, heads: int, kv: int, vocab: int, **extra: Any
) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "hidden_size": h,
        "intermediate_size": f,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        **extra,
    }


def bert(h: int, layers: int, heads: int, cls: str) -> dict[str, Any]:
    return {
        "model_type": "bert",
        "hidden_size": h,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * h,
        "vocab_size": 30522,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "architectures": [cls],
    }


def t5(h: int, ff: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "model_type": "t5",
        "d_model": h,
        "d_ff": ff,
        "d_kv": 64,
        "num_layers": layers,
        "num_heads": heads,
        "vocab_size": 32128,
        "feed_forward_proj": "relu",
        "architectures": ["T5ForConditionalGeneration"],
    }


def vit(h: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "model_type": "vit",
        "hidden_size": h,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * h,
        "image_size": 224,
        "patch_size": 16,
        "num_channels": 3,
        "architectures": ["ViTForImageClassification"],
        "num_labels": 1000,
    }


MISTRAL_7B = llama(4096, 14336, 32, 32, 8, 32000)


def phi(h: int, f: int, layers: int) -> dict[str, Any]:
    """microsoft/phi-1_5 and phi-2 config.json (PhiForCausalLM)."""
    return {
        "model_type": "phi",
        "architectures": ["PhiForCausalLM"],
        "hidden_size": h,
        "intermediate_size": f,
        "num_hidden_layers": layers,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "vocab_size": 51200,
        "hidden_act": "gelu_new",
        "partial_rotary_factor": 0.4,
        "resid_pdrop": 0.1,
        "tie_word_embeddings": False,
    }


PUBLISHED = [
    ("gpt2", gpt2(768, 12, 12), 124_439_808),
    ("gpt2-medium", gpt2(1024, 24, 16), 354_823_168),
    ("gpt2-large", gpt2(1280, 36, 20), 774_030_080),
    ("gpt2-xl", gpt2(1600, 48, 25), 1_557_611_200),
    ("llama-2-7b", llama(4096, 11008, 32, 32, 32, 32000), 6_738_415_616),
    ("llama-2-13b", llama(5120, 13824, 40, 40, 40, 32000), 13_015_864_320),
    ("llama-2-70b", llama(8192, 28672, 80, 64, 8, 32000), 68_976_648_192),
    ("llama-3-8b", llama(4096, 14336, 32, 32, 8, 128256), 8_030_261_248),
    ("llama-3-70b", llama(8192, 28672, 80, 64, 8, 128256), 70_553_706_496),
    (
        "llama-3.2-1b",
        llama(2048, 8192, 16, 32, 8, 128256, head_dim=64, tie_word_embeddings=True),
        1_235_814_400,
    ),
    ("mistral-7b-v0.1", MISTRAL_7B, 7_241_732_096),
    # transformers modeling_phi.py: q, k, v, dense, fc1 and fc2 with biases, no gate, one
    # LayerNorm a layer, an lm_head with a bias: 24 × 50,354,176 + 2 × 104,857,600 +
    # 51,200 + 4,096 (phi-1.5) and 32 × 78,671,360 + 2 × 131,072,000 + 51,200 + 5,120.
    ("phi-1.5", phi(2048, 8192, 24), 1_418_270_720),
    ("phi-2", phi(2560, 10240, 32), 2_779_683_840),
    (
        "mixtral-8x7b",
        {**MISTRAL_7B, "model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2},
        46_702_792_704,
    ),
    (
        "qwen2.5-7b",
        {**llama(3584, 18944, 28, 28, 4, 152064), "model_type": "qwen2"},
        7_615_616_512,
    ),
    (
        "starcoder",
        {
            "model_type": "gpt_bigcode",
            "n_embd": 6144,
            "n_layer": 40,
            "n_head": 48,
            "n_inner": 24576,
            "vocab_size": 49152,
            "n_positions": 8192,
            "multi_query": True,
        },
        15_517_456_384,
    ),
    ("bert-base-uncased (BertModel)", bert(768, 12, 12, "BertModel"), 109_482_240),
    ("bert-large-uncased (BertModel)", bert(1024, 24, 16, "BertModel"), 335_141_888),
    # Measured by the accuracy suite: the MLM head adds a transform, a norm and a bias;
    # sequence classification adds a 2-label classifier to the pooled model.
    ("bert-base-uncased (MLM)", bert(768, 12, 12, "BertForMaskedLM"), 109_514_298),
    (
        "bert-large-uncased (2 labels)",
        bert(1024, 24, 16, "BertForSequenceClassification"),
        335_143_938,
    ),
    ("t5-small", t5(512, 2048, 6, 8), 60_506_624),
    ("t5-base", t5(768, 3072, 12, 12), 222_903_552),
    ("t5-large", t5(1024, 4096, 24, 16), 737_668_096),
    ("vit-base-patch16-224", vit(768, 12, 12), 86_567_656),
    ("vit-large-patch16-224", vit(1024, 24, 16), 304_326_632),
]


@pytest.mark.parametrize(
    ("config", "published"), [p[1:] for p in PUBLISHED], ids=[p[0] for p in PUBLISHED]
)
def test_parameter_count_matches_published(config: dict[str, Any], published: int) -> None:
    assert sum(parameter_counts(from_config(config)).values()) == published


def test_mixtral_active_parameters() -> None:
    """Mixtral-8x7B routes each token through 2 of 8 experts: 12,879,925,248 active."""
    mixtral = from_config(
        {**MISTRAL_7B, "model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2}
    )
    assert mixtral.family is Family.MOE
    assert active_parameters(mixtral) == 12_879_925_248


def test_llama_breakdown() -> None:
    """Llama-3-8B: 128,256 × 4096 embedding and untied head; 32 layers of
    attention 4096·4096·2 + 4096·1024·2, SwiGLU 3·4096·14336, two RMSNorms."""
    counts = parameter_counts(from_config(llama(4096, 14336, 32, 32, 8, 128256)))
    assert counts == {
        "embeddings": 525_336_576,
        "layers": 32 * (41_943_040 + 176_160_768 + 8192),
        "final_norm": 4096,
        "head": 525_336_576,
    }


@pytest.mark.parametrize(
    ("config", "family", "head"),
    [
        (gpt2(768, 12, 12), Family.DECODER, Head.CAUSAL_LM),
        (bert(768, 12, 12, "BertForMaskedLM"), Family.ENCODER, Head.MASKED_LM),
        (t5(768, 3072, 12, 12), Family.ENCODER_DECODER, Head.SEQ2SEQ_LM),
        (vit(768, 12, 12), Family.VIT, Head.IMAGE_CLASSIFICATION),
        ({**MISTRAL_7B, "num_local_experts": 8}, Family.MOE, Head.CAUSAL_LM),
    ],
)
def test_family_and_head(config: dict[str, Any], family: Family, head: Head) -> None:
    model = from_config(config)
    assert (model.family, model.head) == (family, head)


def test_gqa_widths_and_explicit_head_dim() -> None:
    """Gemma-style configs set head_dim so that a·d differs from h."""
    model = from_config(llama(3072, 24576, 28, 16, 16, 256000, head_dim=256))
    assert (model.q_width, model.kv_width) == (4096, 4096)


def test_bad_config_names_every_key() -> None:
    with pytest.raises(NnmemError) as caught:
        from_config(
            {
                "hidden_size": "big",
                "num_attention_heads": 32,
                "num_key_value_heads": 5,
                "vocab_size": 100,
            }
        )
    messages = [p.message for p in caught.value.problems]
    assert messages == [
        'config.json field hidden_size must be a whole number (got "big").',
        "num_key_value_heads (5) must divide num_attention_heads (32).",
        "config.json needs num_hidden_layers (a whole number).",
        "config.json needs intermediate_size (a whole number).",
    ]
    assert [p.loc for p in caught.value.problems] == [
        ("config", "hidden_size"),
        ("config",),  # a rule across keys: its input names them
        ("config", "num_hidden_layers"),
        ("config", "intermediate_size"),
    ]
    assert caught.value.problems[0].input == "big"
    assert caught.value.problems[1].input == {"num_key_value_heads": 5, "num_attention_heads": 32}


def test_config_must_be_an_object() -> None:
    with pytest.raises(NnmemError, match="must be a JSON object"):
        from_config([1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "published"), [p[1:] for p in PUBLISHED], ids=[p[0] for p in PUBLISHED]
)
def test_parameter_tensors_sum_to_the_count(config: dict[str, Any], published: int) -> None:
    """The tensor list and the module counts are two descriptions of one model."""
    assert sum(p.elements for p in parameter_tensors(from_config(config))) == published


def test_gpt2_ignores_expert_keys() -> None:
    """transformers' GPT2Config keeps unknown keys but GPT2Model builds no experts, so an
    expert count in a GPT-2 config changes nothing (it once made a zero-size router)."""
    plain = from_config(
        {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257}
    )
    moe = from_config(
        {
            "model_type": "gpt2",
            "n_embd": 768,
            "n_layer": 12,
            "n_head": 12,
            "vocab_size": 50257,
            "num_local_experts": 5,
        }
    )
    assert moe.family is Family.DECODER
    assert sum(parameter_counts(moe).values()) == sum(parameter_counts(plain).values())
