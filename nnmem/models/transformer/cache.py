"""The inference cache of layers that do not keep one key and value per head.

transformers 5.25 ``cache_utils.py`` builds one cache layer per decoder layer from the
config's ``layer_types`` (``get_layer_types_and_kwargs``):

- multi-head latent attention (DeepSeek-V3/R1, Kimi K2): ``DeepseekV3Attention.forward``
  caches the compressed latent before up-projecting it, ``kv_nope`` as the key
  ``[b, 1, tokens, kv_lora_rank]`` and the rotary key ``k_rot`` as the value
  ``[b, 1, tokens, qk_rope_head_dim]`` of a ``DynamicLayer``; one head, shared by all
  query heads, so a tensor-parallel split does not divide it (``DeepseekV3Config``
  ``base_model_tp_plan`` gives ``kv_a_proj_with_mqa`` the ``mla_kv_a_proj`` style, whole on
  every rank);
- gated delta net layers (Qwen3-Next, ``Qwen3NextGatedDeltaNet``) keep a fixed state per
  sequence in a ``LinearAttentionLayer``: the conv state ``[b, 2k + v, kernel]`` in the
  model dtype (``update_conv_state`` pads or trims the prefill to ``conv_kernel_size``)
  and the recurrent state ``[b, v_heads, k_dim, v_dim]``, float32 as
  ``torch_chunk_gated_delta_rule`` returns it; whole on every tensor-parallel rank
  (``Qwen3NextConfig`` ``base_model_tp_plan``: ``in_proj_qkvz`` and ``in_proj_ba`` are
  ``colwise_gather_output``), while the attention layers' heads are split;
- chunked attention layers (Llama 4) use ``DynamicSlidingWindowLayer`` with
  ``sliding_window = attention_chunk_size``, so past the first decode step they hold one
  chunk of tokens, as sliding-window layers hold their window (the kept keys are a view
  of the concatenated tensor, whose storage of ``window`` tokens stays allocated).

``benchmarks/catalog/verify_caches.py`` checks these against the storages a DynamicCache
keeps in transformers 5.25, to the byte.
"""

from __future__ import annotations

from fractions import Fraction

from nnmem.models.architecture import Transformer
from nnmem.scenario import Scenario
from nnmem.terms import Term, polynomial, product

MLA_CACHE = (
    "transformers 5.25 modeling_deepseek_v3.py DeepseekV3Attention.forward: "
    "cache.update(kv_nope, k_rot) stores the latent [b, 1, tokens, kv_lora_rank] and the "
    "rotary key [b, 1, tokens, qk_rope_head_dim] per layer"
)
LINEAR_CACHE = (
    "transformers 5.25 cache_utils.py LinearAttentionLayer (conv state [b, 2k + v, "
    "conv_kernel_size] in the model dtype) and modeling_qwen3_next.py "
    "torch_chunk_gated_delta_rule (recurrent state [b, v_heads, k_dim, v_dim], float32); "
    "DynamicLayer key and value [b, a_kv, tokens, d] for the full-attention layers"
)


def special(t: Transformer) -> bool:
    """Whether the model's cache is not the plain key-and-value-per-head layout."""
    return t.mla or t.linear_layers > 0


def cache_term(s: Scenario, t: Transformer, tokens: int) -> Term:
    """The cache of an MLA or linear-attention model holding ``tokens`` per sequence."""
    kv_bytes = s.kv_cache_dtype.bytes_for(s.precision)
    if t.mla:
        return product(
            "kv_cache",
            "latent and rotary key of every layer (multi-head latent attention)",
            [
                ("L", t.layers),
                ("b", s.batch_size),
                ("tokens", tokens),
                ("(r_kv + d_rope)", t.kv_lora_rank + t.qk_rope_head_dim),
            ],
            kv_bytes,
            MLA_CACHE,
        )
    k = t.linear_key_heads * t.linear_key_dim
    v = t.linear_value_heads * t.linear_value_dim
    return polynomial(
        "kv_cache",
        f"keys and values of {t.attention_layers} attention layers, fixed state of "
        f"{t.linear_layers} linear-attention layers",
        [("b", s.batch_size)],
        [
            (
                "2·L_attn·a_kv·tokens·d",
                2 * t.attention_layers * t.kv_heads * tokens * t.head_dim,
                Fraction(kv_bytes, s.tensor_parallel),
            ),
            ("L_lin·(2k + v)·kernel", t.linear_layers * (2 * k + v) * t.linear_kernel, kv_bytes),
            (
                "L_lin·v_heads·k_dim·v_dim",
                t.linear_layers * t.linear_value_heads * t.linear_key_dim * t.linear_value_dim,
                4,
            ),
        ],
        LINEAR_CACHE,
    )


def cache_temporary(s: Scenario, t: Transformer, tokens: int) -> Term:
    """One layer's old cache tensor while ``torch.cat`` appends the new token."""
    kv_bytes = s.kv_cache_dtype.bytes_for(s.precision)
    if t.mla:
        return product(
            "temporaries",
            "one layer's old latent during torch.cat",
            [("b", s.batch_size), ("tokens", tokens), ("r_kv", t.kv_lora_rank)],
            kv_bytes,
            MLA_CACHE,
        )
    return product(
        "temporaries",
        "one layer's old key or value during torch.cat",
        [("b", s.batch_size), ("a_kv", t.kv_heads), ("tokens", tokens), ("d", t.head_dim)],
        Fraction(kv_bytes, s.tensor_parallel),
        LINEAR_CACHE,
    )


def cache_note(s: Scenario, t: Transformer) -> str:
    """What the cache holds per token, in words."""
    kv_bytes = s.kv_cache_dtype.bytes_for(s.precision)
    if t.mla:
        per = t.layers * (t.kv_lora_rank + t.qk_rope_head_dim) * kv_bytes
        return (
            f"KV cache: {per:,} bytes per token per sequence (a latent of "
            f"{t.kv_lora_rank} and a rotary key of {t.qk_rope_head_dim} in each of "
            f"{t.layers} layers, shared by the {t.heads} heads)."
        )
    per = 2 * t.attention_layers * t.kv_heads * t.head_dim * kv_bytes
    return (
        f"KV cache: {per:,} bytes per token per sequence ({t.kv_heads} key/value heads of "
        f"{t.head_dim} in {t.attention_layers} attention layers); the {t.linear_layers} "
        "linear-attention layers keep a fixed state per sequence."
    )


def approximation_notes(t: Transformer) -> list[str]:
    """What the activation tables do not model exactly for this architecture.

    Traced on the CPU (FakeTensorMode, transformers 5.25, 4-layer models of the real
    widths, bf16, SDPA): DeepSeek-V3 prefill of 2,048 tokens, working set 5,768,757,248
    estimated against 5,610,700,808 (+2.8%), training at 512 tokens, saved activations
    2,511,898,624 against 2,295,495,692 to 2,370,976,780 (the traced routing varies from
    run to run; +6 to +9%); Llama 4 Scout prefill 2,569,224,192 against 2,589,098,016
    (-0.8%), training 3,607,722,240 against 3,644,530,700 (-1.0%). Qwen3-Next (4 layers,
    16 experts, real tensors, training at 256 tokens): 347,243,776 against 636,001,804
    saved (the torch fallback of the gated delta rule keeps its chunk intermediates).
    ``python -m benchmarks.catalog.trace_large_moe`` reruns these.
    """
    notes = []
    if t.mla:
        notes.append(
            "Multi-head latent attention: activations are estimated as standard attention "
            f"with {t.heads} heads of {t.head_dim}; the low-rank q/kv projections' "
            "intermediates are not modelled."
        )
    if t.linear_layers:
        notes.append(
            f"Linear attention: activations of the {t.linear_layers} gated delta net layers "
            "are estimated as standard attention layers; their chunked recurrence is not "
            "modelled, and training saves more: a traced 4-layer Qwen3-Next step saved "
            "1.8 times the estimate."
        )
    if t.chunked_layers:
        notes.append(
            f"Chunked attention: the working set is estimated as full attention on every "
            f"layer; {t.chunked_layers} layers attend within chunks of "
            f"{t.attention_chunk:,} tokens."
        )
    if t.dense_layers and t.moe_layers:
        notes.append(
            f"Activations are estimated as if every layer were a mixture-of-experts layer; "
            f"{t.dense_layers} layers have a dense MLP of {t.dense_intermediate:,}."
        )
    return notes
