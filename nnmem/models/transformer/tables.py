"""The tables: each family's layer and what lies outside the layers, one Row per tensor
that autograd saves, transcribed from the transformers modeling code."""

from __future__ import annotations

from dataclasses import dataclass

from nnmem.models.architecture import (
    Family,
)
from nnmem.models.tensors import Row
from nnmem.models.transformer.context import Ctx, _softcap, trl_fused_head

# --- rows shared by families --------------------------------------------------------------


def _casts(c: Ctx, n: int) -> int:
    """How many copies of one tensor ``n`` projections save: one each under autocast."""
    return n if c.amp else 1


def _layernorm(where: str, dims: tuple[str, ...] = ("b", "s", "h")) -> list[Row]:
    # native_layer_norm saves its input and per-token mean and rstd (derivatives.yaml).
    return [
        Row(f"input of {where}", dims, "res"),
        Row(f"{where} mean and rstd", dims[:-1], "stat", 2),
    ]


def _rmsnorm(where: str, dims: tuple[str, ...] = ("b", "s", "h")) -> list[Row]:
    # HF RMSNorm (Llama, T5): x.to(float32).pow(2).mean(-1) then x * rsqrt(var + eps);
    # the weight's gradient needs the normalized hidden (weight * hidden).
    return [
        Row(f"input of {where}, upcast to fp32", dims, "f32"),
        Row(f"{where} rsqrt of the variance", dims[:-1], "f32"),
        Row(f"{where} output, for its weight's gradient", dims, "res", tag="norm"),
    ]


def _compiled_rmsnorm(where: str, dims: tuple[str, ...] = ("b", "s", "h")) -> list[Row]:
    # A compiled block (context.COMPILED_BLOCK) keeps the norm's 16-bit input and rstd;
    # the fp32 upcast and the normalized output its weight's gradient needs are recomputed
    # in backward (measured: 8·h bytes a token less over a layer's two norms).
    return [
        Row(f"input of {where}", dims, "res"),
        Row(f"{where} rsqrt of the variance", dims[:-1], "f32"),
    ]


def _gemma_rmsnorm(where: str, dims: tuple[str, ...] = ("b", "s", "h")) -> list[Row]:
    # Gemma's RMSNorm (modeling_gemma2.py Gemma2RMSNorm): x.float(), x * rsqrt(mean(x²) +
    # eps), then output * (1 + weight.float()) in fp32 before casting back, so the
    # normalized hidden its weight's gradient needs stays in fp32 (Llama's is 16-bit).
    return [
        Row(f"input of {where}, upcast to fp32", dims, "f32"),
        Row(f"{where} rsqrt of the variance", dims[:-1], "f32"),
        Row(f"{where} normalized output in fp32, for its weight's gradient", dims, "f32"),
    ]


def _dropout(c: Ctx, where: str, dims: tuple[str, ...], width: str, p: float) -> list[Row]:
    return [Row(f"{where} dropout mask", dims, f"mask_{width}")] if p > 0 else []


def _attention_rows(
    c: Ctx, q_dims: str = "s", k_dims: str = "s", kv_heads: str = "a_kv", prefix: str = ""
) -> list[Row]:
    """q, k, v, the attention core and the merged heads, for one attention block."""
    qs, ks = q_dims, k_dims
    heads_kv = kv_heads
    if not c.eager:
        return [
            Row(f"{prefix}query", ("b", "a", qs, "d"), "act"),
            Row(f"{prefix}key and value", ("b", heads_kv, ks, "d"), "act", 2),
            Row(f"{prefix}attention output", ("b", "a", qs, "d"), "act"),
            Row(f"{prefix}softmax log-sum-exp", ("b", "a", qs), "f32"),
            *mask_bias_rows(c),
        ]
    rows = [
        Row(f"{prefix}query", ("b", "a", qs, "d"), "act"),
        # Eager attention repeats grouped key/value heads to every query head (repeat_kv).
        Row(f"{prefix}key and value, one per query head", ("b", "a", ks, "d"), "act", 2),
        Row(f"{prefix}softmax output", ("b", "a", qs, ks), "f32"),
    ]
    if _softcap(c.t, "attn_logit_softcapping"):
        rows.append(Row(f"{prefix}softcapped scores, tanh output", ("b", "a", qs, ks), "act"))
    if c.attn_dropout > 0:
        rows += [
            Row(f"{prefix}attention dropout mask", ("b", "a", qs, ks), "mask_act"),
            Row(f"{prefix}dropped probabilities", ("b", "a", qs, ks), "act"),
        ]
    elif c.widths.act != 4:
        rows.append(Row(f"{prefix}probabilities cast back to 16-bit", ("b", "a", qs, ks), "act"))
    rows.append(
        Row(f"{prefix}heads merged, input of o_proj", ("b", qs, "q"), "act", tag="linear:o")
    )
    return rows


def mask_bias_rows(c: Ctx) -> list[Row]:
    """The bias each layer's SDPA call makes of a bool mask and saves for backward.

    torch's scaled_dot_product_attention converts a bool attn_mask to the query's type
    on every call (aten/src/ATen/native/transformers/attention.cpp:
    convert_boolean_attn_mask, a new (b, 1, s, s) tensor of 0 and −inf), and a mask rules
    out the flash kernel (sdp_utils.cpp check_for_attn_mask), so the memory-efficient
    kernel runs, padding the bias to 16 columns (preprocess_mask); its backward reads
    the bias, so autograd saves it (tools/autograd/derivatives.yaml
    _scaled_dot_product_efficient_attention: attn_bias). Each layer keeps its own.
    """
    if c.mask not in ("padding", "block"):
        return []
    return [Row("attention mask converted to the kernel's bias", ("b", "s", "s16"), "act")]


def mask_outside_rows(c: Ctx, checkpointed: bool) -> list[Row]:
    """The mask tensors the batch layout adds outside the layers (see context.mask_kind).

    - transformers' (b, 1, s, s) bool mask (masking_utils.py sdpa_mask) lives in the
      model's forward and dies when it returns; a checkpointed layer keeps it as an input
      of its recompute (torch/utils/checkpoint.py), so it is held then.
    - torchtune's bool block-causal mask (attention_utils.py create_block_causal_mask) and
      the input positions are in the batch the recipe holds through the backward
      (torchtune/datasets/_packed.py PackedDataset: "mask", "input_pos").
    - flex attention's BlockMask (torch/nn/attention/flex_attention.py create_block_mask,
      BlockMask.from_kv_blocks): kv_num_blocks, full_kv_num_blocks and their transposes
      q_num_blocks, full_q_num_blocks of (b, 1, n) int32, and kv_indices, full_kv_indices,
      q_indices, full_q_indices of (b, 1, n, n) int32, n = ⌈s/128⌉; its mask_mod holds
      torchtune's document ids (b, s) int64 (_get_document_ids_from_seq_lens).
    """
    if c.mask == "padding":
        return [Row("padding mask (bool)", ("b", "s", "s"), "bool")] if checkpointed else []
    rows = [Row("input positions of the packed rows", ("b", "s"), "i64")]
    if c.mask == "block":
        return [Row("block-causal mask (bool)", ("b", "s", "s"), "bool"), *rows]
    if c.mask == "flex":
        return [
            Row("BlockMask block counts", ("b", "n128"), "i32", 4),
            Row("BlockMask block indices", ("b", "n128", "n128"), "i32", 4),
            Row("document ids of the packed rows", ("b", "s"), "i64"),
            *rows,
        ]
    return []


# --- layer tables per family ---------------------------------------------------------------


def llama_layer(c: Ctx) -> list[Row]:
    """A Llama-style decoder layer (Llama, Mistral, Qwen, Gemma, Phi-3, Mixtral)."""
    t = c.t
    gemma = t.model_type in ("gemma", "gemma2", "gemma3", "gemma3_text")
    norm = _gemma_rmsnorm if gemma else _compiled_rmsnorm if c.compiled else _rmsnorm
    rows = norm("input_layernorm")
    rows.append(
        Row(
            "input of q, k and v projections",
            ("b", "s", "h"),
            "act",
            _casts(c, 3),
            tag="linear:qkv",
        )
    )
    rows += _attention_rows(c)
    rows += norm("post_attention_layernorm")
    if gemma and t.norms_per_layer == 4:
        # Gemma 2 and 3 also normalize before and after the MLP (Gemma2DecoderLayer).
        rows += norm("pre_feedforward_layernorm") + norm("post_feedforward_layernorm")
    if t.family is Family.MOE:
        rows += _moe_rows(c)
    else:
        rows += [
            Row(
                "input of gate and up projections",
                ("b", "s", "h"),
                "act",
                _casts(c, 2),
                tag="linear:gate_up",
            ),
            Row("gate output, saved by the activation", ("b", "s", "f"), "act"),
            # Compiled: SiLU(gate) is recomputed from the gate output (context.COMPILED_BLOCK).
            Row("activation and up outputs, saved by the product", ("b", "s", "f"), "act", 2)
            if not c.compiled
            else Row("up output, saved by the product", ("b", "s", "f"), "act"),
            Row("product, input of down_proj", ("b", "s", "f"), "act", tag="linear:down"),
        ]
    return rows


def _moe_rows(c: Ctx) -> list[Row]:
    # transformers' MoE block (grouped_mm experts): the router's softmax and top-k, then
    # every token is gathered once per chosen expert (b·s·k rows).
    return [
        Row("input of the router", ("b", "s", "h"), "act", tag="linear:router"),
        Row("router softmax", ("b", "s", "E"), "f32"),
        Row("top-k expert indices", ("b", "s", "k"), "i64"),
        Row("routing weights and their sum", ("b", "s", "k"), "f32"),
        Row("routing normalizer", ("b", "s"), "f32"),
        Row("token-to-expert index maps", ("b", "s", "k"), "i64", 3),
        Row("expert offsets", ("E",), "i32"),
        Row("tokens gathered for their experts", ("b", "s", "k", "h"), "act", tag="linear:gate_up"),
        Row("gate and up outputs, saved by the activation", ("b", "s", "k", "f"), "act", 2),
        Row("activation output, saved by the product", ("b", "s", "k", "f"), "act"),
        Row("product, input of down projection", ("b", "s", "k", "f"), "act", tag="linear:down"),
        Row("routing weight per token and expert", ("b", "s", "k"), "f32"),
        Row("expert outputs, weighted by the router", ("b", "s", "k", "h"), "act"),
        *_shared_expert_rows(c),
    ]


def _shared_expert_rows(c: Ctx) -> list[Row]:
    """The shared expert, a gated MLP of width fs on the router's input (DeepSeek-V3,
    GLM-4.5: ``shared_experts``; Qwen3-Next, Qwen2-MoE: ``shared_expert`` with a sigmoid
    gate ``h -> 1`` that scales its output; Llama 4: ``Llama4TextMoe.shared_expert``)."""
    t = c.t
    if not t.shared_expert_intermediate:
        return []
    rows = [
        Row("shared expert gate output, saved by the activation", ("b", "s", "fs"), "act"),
        Row("shared expert activation and up outputs", ("b", "s", "fs"), "act", 2),
        Row(
            "shared expert product, input of down_proj", ("b", "s", "fs"), "act", tag="linear:down"
        ),
    ]
    if t.shared_expert_gate:
        rows += [
            Row("shared expert gate, after the sigmoid", ("b", "s"), "act"),
            Row("shared expert output, saved by the gate product", ("b", "s", "h"), "act"),
        ]
    return rows


def gpt2_layer(c: Ctx) -> list[Row]:
    """A GPT-2 block: LayerNorm, fused c_attn, GELU-tanh MLP, three dropouts."""
    t = c.t
    rows = _layernorm("ln_1")
    rows.append(Row("input of c_attn", ("b", "s", "h"), "act", tag="linear:qkv"))
    if c.eager:
        rows.append(Row("q, k and v, views of c_attn's output", ("b", "a", "s", "d"), "act", 3))
        # GPT-2 masks with torch.where against an fp32 constant, so its softmax runs in
        # fp32 under autocast; the probabilities are cast to the value's type.
        rows.append(Row("softmax output", ("b", "a", "s", "s"), "res"))
        if c.attn_dropout > 0:
            rows += [
                Row("attention dropout mask", ("b", "a", "s", "s"), "mask_act"),
                Row("dropped probabilities", ("b", "a", "s", "s"), "act"),
            ]
        elif c.widths.act != c.widths.res:
            rows.append(Row("probabilities cast back to 16-bit", ("b", "a", "s", "s"), "act"))
        rows.append(Row("heads merged, input of c_proj", ("b", "s", "q"), "act", tag="linear:o"))
    else:
        rows += [
            Row("c_attn output holding q, k and v", ("b", "s", "q"), "act", 3),
            Row("contiguous query and key for the kernel", ("b", "a", "s", "d"), "act", 2),
            Row("attention output", ("b", "a", "s", "d"), "act"),
            Row("softmax log-sum-exp", ("b", "a", "s"), "f32"),
            *mask_bias_rows(c),
        ]
    rows += _dropout(c, "attention output", ("b", "s", "h"), "act", t.dropout)
    rows += _layernorm("ln_2")
    rows.append(Row("input of c_fc", ("b", "s", "h"), "act", tag="linear:up"))
    rows += _activation_rows(c, t.activation)
    rows.append(
        Row("activation output, input of c_proj", ("b", "s", "f"), "act", tag="linear:down")
    )
    rows += _dropout(c, "MLP output", ("b", "s", "h"), "act", t.dropout)
    return rows


@dataclass(frozen=True)
class Transient:
    """A tensor a layer makes as it runs and no node saves: born once the row ``after``
    is (a saved row or another transient), freed once the row ``until`` is born ("" at
    the end of the layer); ``times`` tensors' worth of ``row`` in one allocation."""

    row: Row
    after: str
    until: str = ""
    times: int = 1


def gpt2_transients(c: Ctx) -> list[Transient]:
    """The tensors a GPT-2 block makes and frees in its forward, in the order it makes
    them (transformers models/gpt2/modeling_gpt2.py: GPT2Block.forward,
    eager_attention_forward, GPT2MLP; activations.py NewGELUActivation). They are in no
    phase's peak (the last layer's die before the head's logits are born), but they
    decide where the allocator puts the saved tensors born between them."""
    out: list[Transient] = []
    amp = c.widths.of("autocast_f32_act") != c.widths.act
    if amp:
        # CUDA autocast runs layer_norm in fp32 (its fp32 op list, autocast_mode.cpp):
        # its output is cast to 16-bit for c_attn, and the block's ``hidden_states``
        # holds the fp32 one until the residual add reassigns it.
        ln_1 = Row("ln_1 output in fp32", ("b", "s", "h"), "autocast_f32_act")
        out.append(Transient(ln_1, "input of ln_1", "input of ln_2"))
    if c.eager:
        # c_attn's output: q, k and v are split from it and copied for the matmuls
        # (torch.matmul reshapes its 4-D operands); it dies when the attention returns.
        qkv = Row("c_attn output", ("b", "s", "h"), "act")
        out.append(Transient(qkv, "input of c_attn", "input of ln_2", times=3))
        # ``attn_weights = torch.matmul(query, key.transpose(-1, -2))``, scaled, then
        # ``torch.where(causal_mask, attn_weights, mask_value)``, then the softmax: each
        # dies once the next is made.
        scores = ("b", "a", "s", "s")
        first = "q, k and v, views of c_attn's output"
        out += [
            Transient(Row("attention scores", scores, "act"), first, "scaled scores"),
            Transient(Row("scaled scores", scores, "act"), "attention scores", "masked scores"),
            Transient(
                Row("masked scores", scores, "softmax_act"), "scaled scores", "softmax output"
            ),
        ]
        if amp and c.attn_dropout > 0:
            # ``attn_weights.type(value.dtype)``: the fp32 probabilities cast back to
            # 16-bit, read by the dropout only.
            cast = Row("probabilities cast to 16-bit", scores, "act")
            out.append(Transient(cast, "softmax output", "dropped probabilities"))
    # The attention's c_proj output, then its dropout's output: the block's
    # ``attn_output``, held until the block returns.
    last = "heads merged, input of c_proj" if c.eager else "softmax log-sum-exp"
    out += _output_transients(c, "attention", last)
    if amp:
        ln_2 = Row("ln_2 output in fp32", ("b", "s", "h"), "autocast_f32_act")
        out.append(Transient(ln_2, "input of ln_2"))
    if c.t.activation in ("gelu_new", "gelu_pytorch_tanh_composite", "gelu_fast"):
        # NewGELUActivation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), one new tensor
        # per op; x³, its product, the sum and its scaling die as the next is made.
        ffn = ("b", "s", "f")
        if amp:
            # Under autocast pow saves an fp32 copy of x, not c_fc's 16-bit output; the
            # final product is fp32, cast to 16-bit for c_proj.
            c_fc = Row("c_fc output", ffn, "act")
            out.append(Transient(c_fc, "input of c_fc", "activation output, input of c_proj"))
        chain = ["x³", "0.044715·x³", "x + 0.044715·x³", "√(2/π)·(x + 0.044715·x³)"]
        for k, what in enumerate(chain):
            until = chain[k + 1] if k + 1 < len(chain) else "tanh output (tanh-GELU)"
            after = chain[k - 1] if k else "MLP input of x³ (tanh-GELU)"
            out.append(Transient(Row(what, ffn, "autocast_f32_act"), after, until))
        if amp:
            product = Row("GELU product in fp32", ffn, "autocast_f32_act")
            out.append(
                Transient(
                    product, "1 + tanh, saved by the product", "activation output, input of c_proj"
                )
            )
    out += _output_transients(c, "MLP", "activation output, input of c_proj")
    return out


def gpt2_casts(c: Ctx) -> list[tuple[str, str]]:
    """Where a GPT-2 block's autocast weight copies are made: (the parameter, the saved
    row after which its matmul runs). Autocast casts a weight when a matmul first reads
    it (aten/src/ATen/autocast_mode.cpp ``cached_cast``), not at the block's start."""
    attention = "heads merged, input of c_proj" if c.eager else "softmax log-sum-exp"
    return [
        ("attn.c_attn.", "ln_1 mean and rstd"),
        ("attn.c_proj.", attention),
        ("mlp.up_proj.", "ln_2 mean and rstd"),
        ("mlp.down_proj.", _activation_rows(c, c.t.activation)[-1].what),
    ]


def _output_transients(c: Ctx, where: str, last: str) -> list[Transient]:
    """A sub-block's c_proj output and, where dropout is on, the dropout's output
    (the residual add reads it; the block holds it until it returns)."""
    dims = ("b", "s", "h")
    proj = Row(f"{where} c_proj output", dims, "act")
    if c.t.dropout <= 0:
        return [Transient(proj, last)]
    dropped = f"{where} output after dropout"
    return [
        Transient(proj, last, dropped),
        Transient(Row(dropped, dims, "act"), f"{where} output dropout mask"),
    ]


def _activation_rows(c: Ctx, activation: str) -> list[Row]:
    if activation in ("gelu_new", "gelu_pytorch_tanh_composite", "gelu_fast"):
        # transformers' NewGELUActivation is a Python composite:
        # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): pow saves x, tanh its output, and
        # the final product both of its factors (0.5·x is made first). CUDA autocast
        # runs pow in fp32 (its fp32 op list, aten/src/ATen/autocast_mode.cpp), so pow
        # saves an fp32 copy of x and type promotion keeps tanh and 1 + tanh in fp32;
        # only 0.5·x stays 16-bit.
        # Measured on an H200: 6 bytes per element more than the CPU's all-bf16 chain.
        return [
            Row("0.5·x, saved by the product", ("b", "s", "f"), "act"),
            Row("MLP input of x³ (tanh-GELU)", ("b", "s", "f"), "autocast_f32_act"),
            Row("tanh output (tanh-GELU)", ("b", "s", "f"), "autocast_f32_act"),
            Row("1 + tanh, saved by the product", ("b", "s", "f"), "autocast_f32_act"),
        ]
    # F.gelu, F.relu and F.silu save one tensor (their input or output).
    return [Row(f"input of the {activation} activation", ("b", "s", "f"), "act")]


def _encoder_attention(c: Ctx) -> list[Row]:
    """The self-attention of BERT and ViT: q, k, v projections of one input, a plain
    softmax (fp32 under CUDA autocast), dropout on the probabilities."""
    rows = [
        Row(
            "input of q, k and v projections",
            ("b", "s", "h"),
            "act",
            _casts(c, 3),
            tag="linear:qkv",
        )
    ]
    if not c.eager:
        return [
            *rows,
            Row("query, key and value", ("b", "s", "a", "d"), "act", 3),
            Row("attention output", ("b", "a", "s", "d"), "act"),
            Row("softmax log-sum-exp", ("b", "a", "s"), "f32"),
        ]
    rows += [
        Row("q, kᵀ and v", ("b", "a", "s", "d"), "act", 3),
        Row("softmax output", ("b", "a", "s", "s"), "softmax_act"),
    ]
    rows += _dropout(c, "attention", ("b", "a", "s", "s"), "softmax_act", c.attn_dropout)
    if c.attn_dropout > 0 or c.widths.act != c.widths.of("softmax_act"):
        rows.append(
            Row("probabilities as the value matmul reads them", ("b", "a", "s", "s"), "act")
        )
    rows.append(
        Row("heads merged, input of the output projection", ("b", "s", "q"), "act", tag="linear:o")
    )
    return rows


def _gelu_mlp(c: Ctx) -> list[Row]:
    return [
        Row("input of the MLP's first linear layer", ("b", "s", "h"), "act", tag="linear:up"),
        Row("input of the GELU", ("b", "s", "f"), "act"),
        Row(
            "GELU output, input of the second linear layer",
            ("b", "s", "f"),
            "act",
            tag="linear:down",
        ),
    ]


def bert_layer(c: Ctx) -> list[Row]:
    """A BERT/RoBERTa/DistilBERT layer: post-LayerNorm, GELU MLP, dropouts."""
    rows = _encoder_attention(c)
    rows += _dropout(c, "attention output", ("b", "s", "h"), "act", c.t.dropout)
    rows += _layernorm("attention LayerNorm")
    rows += _gelu_mlp(c)
    rows += _dropout(c, "MLP output", ("b", "s", "h"), "act", c.t.dropout)
    return rows + _layernorm("output LayerNorm")


def vit_layer(c: Ctx) -> list[Row]:
    """A ViT layer: pre-LayerNorm, GELU MLP."""
    rows = _layernorm("layernorm_before") + _encoder_attention(c)
    rows += _dropout(c, "attention output", ("b", "s", "h"), "act", c.t.dropout)
    rows += _layernorm("layernorm_after")
    rows += _gelu_mlp(c)
    return rows + _dropout(c, "MLP output", ("b", "s", "h"), "act", c.t.dropout)


def _t5_attention(c: Ctx, qs: str, ks: str, prefix: str, cross: bool) -> list[Row]:
    rows = [
        Row(
            f"{prefix}query" + ("" if cross else ", key and value"),
            ("b", "a", qs, "d"),
            "act",
            1 if cross else 3,
        )
    ]
    if cross:
        rows.append(
            Row(f"{prefix}key and value of the encoder output", ("b", "a", ks, "d"), "act", 2)
        )
    # Self-attention adds the fp32 relative-position bias, which promotes the scores to
    # the residual stream's type under autocast; cross-attention adds a zero bias made in
    # the scores' own 16-bit type. The value matmul reads the probabilities in 16-bit.
    scores = "softmax_act" if cross else "res"
    rows.append(Row(f"{prefix}softmax output", ("b", "a", qs, ks), scores))
    if c.attn_dropout > 0:
        rows += [
            Row(f"{prefix}attention dropout mask", ("b", "a", qs, ks), f"mask_{scores}"),
            Row(f"{prefix}probabilities as the value matmul reads them", ("b", "a", qs, ks), "act"),
        ]
    elif c.widths.act != c.widths.of(scores):
        rows.append(Row(f"{prefix}probabilities cast back", ("b", "a", qs, ks), "act"))
    rows.append(Row(f"{prefix}heads merged, input of o", ("b", qs, "q"), "act", tag="linear:o"))
    return rows


def _t5_ff(c: Ctx, x: str) -> list[Row]:
    t = c.t
    dims_h, dims_f = ("b", x, "h"), ("b", x, "f")
    rows = _rmsnorm("feed-forward layer norm", dims_h)
    if t.gated_mlp:
        rows += [
            Row("input of wi_0 and wi_1", dims_h, "act", _casts(c, 2), tag="linear:gate_up"),
            Row("input of the GELU", dims_f, "act"),
            Row("GELU and wi_1 outputs, saved by the product", dims_f, "act", 2),
        ]
    else:
        rows += [
            Row("input of wi", dims_h, "act", tag="linear:up"),
            Row("ReLU output", dims_f, "act"),
        ]
    rows += _dropout(c, "feed-forward", dims_f, "act", t.dropout)
    rows.append(Row("input of wo", dims_f, "act", tag="linear:down"))
    rows += _dropout(c, "feed-forward output", dims_h, "act", t.dropout)
    return rows


def t5_encoder_layer(c: Ctx) -> list[Row]:
    """A T5 encoder block: self-attention and feed-forward, RMS-style norms."""
    rows = _rmsnorm("self-attention layer norm")
    rows.append(Row("input of q, k and v", ("b", "s", "h"), "act", _casts(c, 3), tag="linear:qkv"))
    rows += _t5_attention(c, "s", "s", "", cross=False)
    rows += _dropout(c, "self-attention output", ("b", "s", "h"), "act", c.t.dropout)
    return rows + _t5_ff(c, "s")


def t5_decoder_layer(c: Ctx) -> list[Row]:
    """A T5 decoder block: self-attention, cross-attention over the encoder, feed-forward."""
    bth = ("b", "t", "h")
    rows = _rmsnorm("self-attention layer norm", bth)
    rows.append(Row("input of q, k and v", bth, "act", _casts(c, 3), tag="linear:qkv"))
    rows += _t5_attention(c, "t", "t", "", cross=False)
    rows += _dropout(c, "self-attention output", bth, "act", c.t.dropout)
    rows += _rmsnorm("cross-attention layer norm", bth)
    rows.append(Row("input of the cross-attention q", bth, "act", tag="linear:q"))
    if c.amp:
        rows.append(
            Row(
                "16-bit copies of the encoder output for k and v",
                ("b", "s", "h"),
                "act",
                2,
                tag="linear:kv",
            )
        )
    rows += _t5_attention(c, "t", "s", "cross-attention ", cross=True)
    rows += _dropout(c, "cross-attention output", bth, "act", c.t.dropout)
    return rows + _t5_ff(c, "t")


# --- outside the layers --------------------------------------------------------------------


def outside_rows(c: Ctx) -> list[Row]:
    """Embeddings, final norm and head inputs (the loss comes separately)."""
    t, fam = c.t, c.t.family
    if fam is Family.ENCODER_DECODER:
        rows = _dropout(c, "encoder input and output", ("b", "s", "h"), "res", t.dropout) * 2
        rows += [Row("encoder relative-position buckets", ("s", "s"), "i64")]
        rows += _rmsnorm("encoder final norm")
        rows += [Row("decoder input ids", ("b", "t"), "i64")]
        rows += _dropout(c, "decoder input and output", ("b", "t", "h"), "res", t.dropout) * 2
        rows += [Row("decoder relative-position buckets", ("t", "t"), "i64")]
        if not c.amp:
            rows += [
                Row(
                    "encoder output, input of every cross-attention k and v",
                    ("b", "s", "h"),
                    "act",
                    tag="linear:kv",
                )
            ]
        rows += _rmsnorm("decoder final norm", ("b", "t", "h"))
        rows += [Row("input of lm_head", ("b", "t", "h"), "act", tag="linear:head")]
        return rows
    if fam is Family.VIT:
        rows = []
        if c.amp:
            rows.append(
                Row(
                    "16-bit copy of the images for the patch convolution",
                    ("b", "C", "I", "I"),
                    "act",
                )
            )
        rows += _layernorm("final LayerNorm")
        rows.append(
            Row(
                "input of the classifier",
                ("b", "h") if c.amp else ("b", "s", "h"),
                "act",
                tag="linear:head",
            )
        )
        return rows
    if fam is Family.ENCODER:
        rows = [Row("position ids", ("s",), "i64")]
        rows += _layernorm("embedding LayerNorm")
        rows += _dropout(c, "embedding", ("b", "s", "h"), "res", t.dropout)
        if t.head.value == "masked_lm":
            rows += [
                Row("input of the MLM transform", ("b", "s", "h"), "act", tag="linear:head"),
                Row("input of the MLM GELU", ("b", "s", "h"), "act"),
                Row("input of the MLM LayerNorm", ("b", "s", "h"), "ln_act"),
                Row("MLM LayerNorm mean and rstd", ("b", "s"), "stat_act", 2),
                Row("input of the MLM decoder", ("b", "s", "h"), "act", tag="linear:head"),
            ]
        elif t.head.value in ("sequence_classification", "base"):
            pooled = ("b", "h") if c.amp else ("b", "s", "h")
            rows += [
                Row("input of the pooler", pooled, "act", tag="linear:head"),
                Row("pooler tanh output", ("b", "h"), "act"),
            ]
            rows += _dropout(c, "classifier", ("b", "h"), "act", t.dropout)
            rows += [Row("input of the classifier", ("b", "h"), "act", tag="linear:head")]
        return rows
    # decoders
    rows = []
    if t.learned_positions:
        rows.append(Row("position ids", ("s",), "i64"))
        rows += _dropout(c, "embedding", ("b", "s", "h"), "res", t.dropout)
    else:
        rows.append(Row("rotary cos and sin", ("s", "d"), "res", 2))
    rows += final_norm_rows(c)
    if not trl_fused_head(c.s, t):
        # TRL's fused head never calls lm_head: its own function saves the hidden states
        # (assembly._trl_fused_head_terms).
        rows.append(Row("input of lm_head", ("b", "s", "h"), "act", tag="linear:head"))
    return rows


def final_norm_rows(c: Ctx) -> list[Row]:
    """A decoder's final norm, the last tensors its forward saves before the head."""
    return _layernorm("final norm") if not c.t.rms_norm else _rmsnorm("final norm")


def norm_packs(row: Row) -> int:
    """How many times the norm's autograd nodes save the row's tensor: an RMSNorm's fp32
    input twice (pow saves self, the mul by rsqrt saves both operands) and its rsqrt twice
    (rsqrt saves its result, the mul again), per torch tools/autograd/derivatives.yaml
    (pow.Tensor_Scalar: self; rsqrt: result; mul.Tensor: self and other); every other
    row once per tensor (native_layer_norm saves input, mean and rstd once each)."""
    twice = row.width == "f32"
    return row.count * (2 if twice else 1)


def layer_tables(c: Ctx) -> list[tuple[str, str, list[Row]]]:
    """(label, layer-count symbol, rows) for each kind of layer the model stacks."""
    fam = c.t.family
    if fam is Family.ENCODER_DECODER:
        return [
            ("per encoder layer", "L_enc", t5_encoder_layer(c)),
            ("per decoder layer", "L", t5_decoder_layer(c)),
        ]
    if fam is Family.ENCODER:
        return [("per layer", "L", bert_layer(c))]
    if fam is Family.VIT:
        return [("per layer", "L", vit_layer(c))]
    if c.t.model_type in ("gpt2", "gpt_bigcode"):
        return [("per layer", "L", gpt2_layer(c))]
    return [("per layer", "L", llama_layer(c))]
