"""Transformers: what a training step saves and holds, and what inference keeps.

Each family's layer is a list of :class:`~nnmem.tensors.Row` s, one per tensor that
autograd saves for backward, transcribed from the Hugging Face ``transformers`` modeling
code (``models/<family>/modeling_<family>.py``) and PyTorch's backward formulas
(``tools/autograd/derivatives.yaml``), and checked tensor by tensor against live-tensor
traces of PyTorch 2.13 and transformers 5.24 (``benchmarks/accuracy/inventory.md``).
Rows carry width classes (:mod:`nnmem.tensors`), so one table serves fp32, autocast and
pure 16-bit training on a GPU or a CPU.

Rules that decide which rows exist:

- a linear layer saves its input only to compute its weight gradient, so frozen layers
  (a LoRA base) do not (``tag="linear:…"``);
- under autocast each ``F.linear`` casts its own copy of the input to 16-bit, so three
  projections of one tensor save three copies; pure 16-bit saves the tensor once;
- dropout with p > 0 saves a mask: a bool on CUDA, the scaled noise on the CPU;
- memory-efficient attention (SDPA) saves q, k, v, the output and an fp32 log-sum-exp,
  never the s×s scores; eager attention saves the softmax and the probabilities;
- full checkpointing keeps only each layer's input and recomputes the layer in backward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from nnmem.formats import Format, bits, is_float, is_gguf
from nnmem.models.architecture import (
    Family,
    Transformer,
    layer_params,
    parameter_counts,
    parameter_tensors,
)
from nnmem.models.step import Built, model_states
from nnmem.models.tensors import Row, Widths, as_term, total_bytes
from nnmem.optimizers import Trainable
from nnmem.result import Phase, phases_of, total
from nnmem.scenario import (
    LABELS,
    Attention,
    Checkpointing,
    Device,
    Finetune,
    Logits,
    LoraTargets,
    Mode,
    Precision,
    Scenario,
    Sharding,
)
from nnmem.terms import Term, product

HF = "Hugging Face transformers modeling code, checked against benchmarks/accuracy/inventory.md"
HF_LOSS = (
    "transformers loss_utils.py ForCausalLMLoss: logits.float(), then cross_entropy, which "
    "saves an fp32 log-softmax (measured: benchmarks/accuracy/inventory.md)"
)
ZERO_SOURCE = "Rajbhandari et al. 2020, ZeRO, arXiv 1910.02054 §5.3; DeepSpeed stage3.py"
HF_CACHE = (
    "transformers cache_utils.py DynamicCache: per layer a key and a value tensor "
    "[b, a_kv, tokens, d], grown with torch.cat at each step"
)
LLAMA_INFERENCE = (
    "measured live set at the prefill peak (benchmarks/accuracy/inventory.md §19-27): the "
    "residual, normed hidden and MLP intermediates of the running layer"
)


# --- context -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """The sizes and settings the row tables read."""

    t: Transformer
    s: Scenario
    widths: Widths
    sizes: dict[str, int]
    amp: bool
    eager: bool  # attention materializes scores (eager, or SDPA's math fallback)
    lora: frozenset[str] | None  # adapted linear layers; None: every weight trains
    cpu: bool = False
    attn_dropout: float = 0.0
    lora_dropout: float = 0.0
    notes: list[str] = field(default_factory=list)


def _widths(s: Scenario) -> Widths:
    cpu = s.device is Device.CPU
    if s.precision is Precision.FP32:
        return Widths(res=4, act=4, cpu=cpu)
    if s.precision.is_amp:
        return Widths(res=4, act=2, cpu=cpu, amp=True)
    return Widths(res=2, act=2, cpu=cpu)


def _lora_names(t: Transformer, targets: LoraTargets) -> frozenset[str]:
    names = {
        LoraTargets.QV: {"q", "v"},
        LoraTargets.ATTENTION: {"q", "k", "v", "o"},
        LoraTargets.ALL_LINEAR: {"q", "k", "v", "o", "gate", "up", "down"},
    }[targets]
    if not t.gated_mlp:
        names.discard("gate")
    return frozenset(names)


def context(s: Scenario) -> Ctx:
    """Sizes and settings for ``s``."""
    t = s.model
    assert isinstance(t, Transformer)
    seq = t.seq_from_image if t.family is Family.VIT else s.seq_len
    if s.image_size and t.family is Family.VIT:
        seq = (s.image_size // t.patch_size) ** 2 + 1
    sizes = {
        "one": 1,
        "b": s.batch_size,
        "s": seq,
        "t": s.decoder_seq_len or s.seq_len,
        "h": t.hidden,
        "f": t.intermediate,
        "a": t.heads,
        "a_kv": t.kv_heads,
        "d": t.head_dim,
        "q": t.q_width,
        "kv": t.kv_width,
        "V": t.vocab,
        "c": max(t.num_labels, 1),
        "E": max(t.experts, 1),
        "k": max(t.experts_per_token, 1),
        "r": s.lora_rank,
        "C": t.channels or 3,
        "I": s.image_size or t.image_size or 1,
    }
    widths = _widths(s)
    cpu = widths.cpu
    dropout = t.attention_dropout if s.mode is Mode.TRAINING else 0.0
    # SDPA applies dropout inside the CUDA kernels; on the CPU it falls back to the math
    # kernel, which stores scores like eager attention (torch/nn/functional.py).
    eager = s.attention is Attention.EAGER or (cpu and dropout > 0)
    lora = _lora_names(t, s.lora_targets) if s.finetune is Finetune.LORA else None
    return Ctx(
        t=t,
        s=s,
        widths=widths,
        sizes=sizes,
        amp=s.precision.is_amp,
        eager=eager,
        lora=lora,
        cpu=cpu,
        attn_dropout=dropout,
        lora_dropout=float(s.lora_dropout),
    )


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
        ]
    rows = [
        Row(f"{prefix}query", ("b", "a", qs, "d"), "act"),
        # Eager attention repeats grouped key/value heads to every query head (repeat_kv).
        Row(f"{prefix}key and value, one per query head", ("b", "a", ks, "d"), "act", 2),
        Row(f"{prefix}softmax output", ("b", "a", qs, ks), "f32"),
    ]
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


# --- layer tables per family ---------------------------------------------------------------


def llama_layer(c: Ctx) -> list[Row]:
    """A Llama-style decoder layer (Llama, Mistral, Qwen, Gemma, Phi-3, Mixtral)."""
    t = c.t
    rows = _rmsnorm("input_layernorm")
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
    rows += _rmsnorm("post_attention_layernorm")
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
            Row("activation and up outputs, saved by the product", ("b", "s", "f"), "act", 2),
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
    ]


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


def _activation_rows(c: Ctx, activation: str) -> list[Row]:
    if activation in ("gelu_new", "gelu_pytorch_tanh_composite", "gelu_fast"):
        # transformers' NewGELUActivation is a Python composite:
        # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): pow saves x, tanh its output, and
        # the final product both of its factors. CUDA autocast runs pow in fp32 (its
        # fp32 op list, aten/src/ATen/autocast_mode.cpp), so pow saves an fp32 copy of x
        # and type promotion keeps tanh and 1 + tanh in fp32; only 0.5·x stays 16-bit.
        # Measured on an H200: 6 bytes per element more than the CPU's all-bf16 chain.
        return [
            Row("MLP input of x³ (tanh-GELU)", ("b", "s", "f"), "autocast_f32_act"),
            Row("tanh output (tanh-GELU)", ("b", "s", "f"), "autocast_f32_act"),
            Row("0.5·x, saved by the product", ("b", "s", "f"), "act"),
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
    rows += _layernorm("final norm") if not t.rms_norm else _rmsnorm("final norm")
    rows.append(Row("input of lm_head", ("b", "s", "h"), "act", tag="linear:head"))
    return rows


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


# --- LoRA, checkpointing and selective recomputation ----------------------------------------


def adapters(c: Ctx) -> list[tuple[str, str, int, int]]:
    """(name, input width symbol, in features, out features) of each adapted linear layer
    in one layer, as peft wraps them."""
    t = c.t
    if c.lora is None:
        return []
    q, kv, h, f = t.q_width, t.kv_width, t.hidden, t.intermediate
    fused = t.model_type in ("gpt2", "gpt_bigcode")
    table = {
        "q": ("h", h, q),
        "k": ("h", h, kv),
        "v": ("h", h, kv),
        "o": ("q", q, h),
        "gate": ("h", h, f),
        "up": ("h", h, f),
        "down": ("f", f, h),
    }
    result = []
    if fused and c.lora & {"q", "k", "v"}:
        result.append(("c_attn", "h", h, q + 2 * kv))  # GPT-2 fuses q, k, v in one Conv1D
    for name in ("q", "k", "v", "o", "gate", "up", "down"):
        if name in c.lora and not (fused and name in ("q", "k", "v")):
            dims, n_in, n_out = table[name]
            result.append((name, dims, n_in, n_out))
    return result


def lora_rows(c: Ctx, x: str = "s") -> list[Row]:
    """What each adapter saves: its fp32 input (after lora_dropout) and lora_B's input."""
    rows = []
    for name, width, _, _ in adapters(c):
        dims = ("b", x, width)
        if c.lora_dropout > 0:
            rows.append(Row(f"{name} adapter dropout mask", dims, "mask_f32"))
        rows.append(Row(f"{name} adapter input in fp32", dims, "f32"))
        rows.append(Row(f"{name} lora_B input", ("b", x, "r"), "f32"))
    return rows


def trainable_filter(c: Ctx, rows: list[Row]) -> list[Row]:
    """Drop what only frozen weights' gradients would need (a LoRA base)."""
    if c.lora is None:
        return rows
    return [r for r in rows if not r.tag.startswith(("linear:", "norm"))]


def selective(rows: list[Row]) -> list[Row]:
    """Selective recomputation drops the attention core: every score-shaped tensor."""
    seq = {"s", "t"}
    return [r for r in rows if sum(d in seq for d in r.dims) < 2]


def checkpoint_rows(c: Ctx, x: str = "s") -> list[Row]:
    """What full checkpointing keeps per layer: the layer's input."""
    return [Row("layer input kept by checkpointing", ("b", x, "h"), "res")]


@dataclass(frozen=True)
class Activations:
    """Per-layer and outside rows of one model, as terms, with the first layer's rows."""

    terms: list[Term]
    bytes: int
    one_layer: list[Row]  # a layer's full rows (what a recompute rebuilds)
    x: str  # the sequence symbol of the loss (s, or t for T5)


def activations(c: Ctx) -> Activations:
    """The tensors a training step saves for backward, as terms."""
    t, s = c.t, c.s
    terms = []
    one: list[Row] = []
    for label, depth, rows in layer_tables(c):
        x = "t" if depth == "L" and t.family is Family.ENCODER_DECODER else "s"
        rows = trainable_filter(c, rows) + lora_rows(c, x)
        if s.checkpointing is Checkpointing.SELECTIVE:
            rows = selective(rows)
        one += rows
        n = t.encoder_layers if depth == "L_enc" else t.layers
        kept = checkpoint_rows(c, x) if s.checkpointing is Checkpointing.FULL else rows
        if c.s.tensor_parallel > 1:
            kept = _tp_split(kept, c.s.tensor_parallel)
        what = "checkpointed input" if s.checkpointing is Checkpointing.FULL else label
        terms.append(
            as_term("activations", f"saved {what}", kept, c.sizes, c.widths, HF, times=(depth, n))
        )
    outside = trainable_filter(c, outside_rows(c))
    if (
        s.checkpointing is Checkpointing.FULL
        and t.learned_positions == 0
        and t.family in (Family.DECODER, Family.MOE)
    ):
        outside.append(Row("position ids passed to the first layer", ("s",), "i64"))
    terms.append(
        as_term(
            "activations", "embeddings, final norm and head inputs", outside, c.sizes, c.widths, HF
        )
    )
    x = "t" if t.family is Family.ENCODER_DECODER else "s"
    return Activations(terms, total(terms), one, x)


def _tp_split(rows: list[Row], tp: int) -> list[Row]:
    # Megatron tensor parallelism splits the heads and the MLP width; norm inputs,
    # dropout masks and the inputs of column-parallel projections stay whole (Korthikanti
    # et al. 2022 §4.2.1: sbh·(10 + 24/t + 5as/(ht))).
    split = {"a", "a_kv", "f", "q", "kv", "E"}
    return [
        r if not split & set(r.dims) else Row(r.what, r.dims, r.width, r.count, r.tag, r.share / tp)
        for r in rows
    ]


# --- the loss ------------------------------------------------------------------------------


def _lm(t: Transformer) -> bool:
    return t.head.value in ("causal_lm", "masked_lm", "seq2seq_lm")


def loss_terms(c: Ctx, x: str) -> tuple[list[Term], list[Term], list[Term], list[Term]]:
    """(saved by the loss, logits at the end of forward, extra at the loss peak, extra at
    the start of backward)."""
    t = c.t
    if not _lm(t):
        rows = [Row("log-softmax over the labels", ("b", "c"), "f32")]
        saved = [as_term("logits", "saved by the loss", rows, c.sizes, c.widths, HF)]
        return saved, [], [], []
    upcast = t.head.value == "causal_lm" or c.amp or c.widths.act == 4
    lw = "f32" if upcast else "act"
    dims = ("b", x, "V")
    saved = [
        as_term(
            "logits",
            "log-softmax saved by the loss",
            [
                Row("log-softmax of the logits", dims, lw),
                Row("labels", ("b", x), "i64"),
            ],
            c.sizes,
            c.widths,
            HF_LOSS,
        )
    ]
    logits = [as_term("logits", "logits", [Row("logits", dims, "act")], c.sizes, c.widths, HF_LOSS)]
    copy = [Row("fp32 copy of the logits", dims, "f32")] if upcast and c.widths.act != 4 else []
    loss_extra = [
        as_term(
            "logits",
            "logits and their fp32 copy",
            [Row("logits", dims, "act"), *copy],
            c.sizes,
            c.widths,
            HF_LOSS,
        )
    ]
    grads = [
        as_term(
            "temporaries",
            "gradients of the loss and the log-softmax",
            [Row("logits gradients", dims, lw, 2)],
            c.sizes,
            c.widths,
            HF_LOSS,
        )
    ]
    return saved, logits, loss_extra, grads


# --- weights -------------------------------------------------------------------------------

QUANTIZED_SOURCE = (
    "transformers quantizers keep embeddings, the output head, norms and biases in 16-bit "
    "(get_keys_to_not_convert); the linear layers take the format's bits per weight"
)


def _linear_weights(t: Transformer) -> int:
    """Elements of the layers' linear weights: what quantizers convert."""
    return sum(
        p.elements
        for p in parameter_tensors(t)
        if p.name.startswith(("layers.", "encoder.", "decoder."))
        and p.name.endswith(".weight")
        and len(p.shape) == 2
        and "norm" not in p.name
        and "relative_bias" not in p.name
    )


def _matmul_weights(t: Transformer) -> int:
    """Elements of every weight a matmul reads (what autocast casts to 16-bit)."""
    count = _linear_weights(t)
    for p in parameter_tensors(t):
        if p.name.startswith(
            ("lm_head", "mlm.transform", "classifier", "pooler", "patch")
        ) and p.name.endswith(".weight"):
            count += p.elements
    if t.tied_embeddings and _lm(t):
        count += t.vocab * t.hidden  # the embedding serves as the output head
    return count


BNB_DEQUANT = (
    "bitsandbytes matmul_4bit: for more than one token it dequantizes the 4-bit weight to "
    "the compute type (dequantize_4bit) for the matmul, one weight at a time"
)


def dequant_terms(s: Scenario, t: Transformer) -> list[Term]:
    """The 16-bit copy of the largest linear weight that bitsandbytes 4-bit makes."""
    if s.precision not in (Precision.NF4, Precision.NF4_DQ):
        return []
    largest = max(
        (
            p.numel
            for p in parameter_tensors(t)
            if p.name.startswith(("layers.", "encoder.", "decoder.")) and len(p.shape) == 2
        ),
        default=0,
    )
    return [
        product(
            "temporaries",
            "largest linear weight dequantized to 16-bit",
            [("P_largest", largest)],
            2,
            BNB_DEQUANT,
        )
    ]


def weight_terms(s: Scenario, t: Transformer, n_params: int) -> list[Term]:
    """The stored weights in the scenario's format (the frozen base for LoRA)."""
    fmt = s.precision.weight_format
    label = LABELS[s.precision]
    if is_float(fmt):
        width = 4 if fmt is Format.FP32 else 2
        return [product("weights", f"{label} weights", [("P", n_params)], width, HF)]
    if is_gguf(fmt):
        return [
            product(
                "weights",
                f"{label} weights (whole-file average)",
                [("P", n_params)],
                bits(fmt, s.group_size) / 8,
                QUANTIZED_SOURCE,
            )
        ]
    linear = _linear_weights(t)
    return [
        product(
            "weights",
            f"{label} linear layers",
            [("P_linear", linear)],
            bits(fmt, s.group_size) / 8,
            QUANTIZED_SOURCE,
        ),
        product(
            "weights",
            "embeddings, head and norms in 16-bit",
            [("P_other", n_params - linear)],
            2,
            QUANTIZED_SOURCE,
        ),
    ]


# --- the training step ---------------------------------------------------------------------


def _param_width(s: Scenario) -> int:
    return 2 if s.precision in (Precision.BF16, Precision.FP16) else 4


def build_training(s: Scenario) -> Built:
    """The four phases of a training step."""
    c = context(s)
    t = c.t
    counts = parameter_counts(t)
    n_params = sum(counts.values())
    notes: list[str] = []
    width = _param_width(s)
    if c.lora is None:
        tensors = [Trainable(p.shape, width, p.count) for p in parameter_tensors(t)]
        weights, gradients, state, step_terms, shard_notes = model_states(s, tensors)
    else:
        layers = t.layers + t.encoder_layers
        r = s.lora_rank
        # peft's lora_A is (r, in) and lora_B (out, r), per adapted layer.
        tensors = [
            shape
            for _, _, n_in, n_out in adapters(c)
            for shape in (Trainable((r, n_in), 4, layers), Trainable((n_out, r), 4, layers))
        ]
        frozen = total(weight_terms(s, t, n_params))
        weights, gradients, state, step_terms, shard_notes = model_states(s, tensors, frozen)
        n_lora = sum(x.elements for x in tensors)
        notes.append(
            f"LoRA rank {s.lora_rank} on {LABELS[s.lora_targets]}: {n_lora:,} "
            "trainable parameters, kept in fp32 by peft."
        )
        if s.precision in (Precision.NF4, Precision.NF4_DQ, Precision.INT8):
            notes.append(
                "QLoRA: the base stays quantized and each weight is dequantized to 16-bit "
                "only while its matmul runs."
            )
    notes += shard_notes
    if s.sharding is Sharding.ZERO3 and s.data_parallel == 1:
        notes.append(
            "ZeRO-3 / FSDP over one data-parallel GPU: FSDP falls back to NO_SHARD, so the "
            "model is held whole and no layer is gathered (torch/distributed/fsdp/_init_utils.py)."
        )
    if s.tensor_parallel > 1:
        split = Fraction(1, s.tensor_parallel)
        tag = f"÷ {s.tensor_parallel} (tensor parallel)"
        weights = [w.scaled(split, tag) for w in weights]
        gradients = [g.scaled(split, tag) for g in gradients]
        state = [o.scaled(split, tag) for o in state]
        step_terms = [x.scaled(split, tag) for x in step_terms]
    casts: list[Term] = []
    casts_kept = casts
    if c.amp:
        cast_source = (
            "torch.autocast casts each weight once per forward and caches the copy until "
            "the autocast region ends; autograd keeps it for backward (measured)"
        )
        casts = [
            product(
                "autocast_copies",
                "16-bit copies of the matmul weights",
                [("P_matmul", _matmul_weights(t))],
                2,
                cast_source,
            )
        ]
        casts_kept = casts
        if s.checkpointing is Checkpointing.FULL:
            # Checkpointed layers save nothing, so their copies are gone by backward; the
            # head's copy, outside the checkpoints, stays.
            head = _matmul_weights(t) - _linear_weights(t)
            casts_kept = [
                product(
                    "autocast_copies",
                    "16-bit copy of the head's weight",
                    [("P_head", head)],
                    2,
                    cast_source,
                )
            ]
    if s.sharding is Sharding.ZERO3 and s.data_parallel > 1:
        # ZeRO-3 / FSDP gather one layer's full weights (and prefetch the next) for each
        # forward and backward; DeepSpeed's estimator counts 4 bytes (16-bit weights and
        # gradients) per parameter of the largest layer (stage3.py
        # estimate_zero3_model_states_mem_needs). Autocast copies exist only for those.
        # On one GPU there is nothing to gather: FSDP switches FULL_SHARD to NO_SHARD when
        # the world size is 1 (torch/distributed/fsdp/_init_utils.py, "FSDP is switching
        # to use NO_SHARD"), so the model is held whole, once. Hence two GPUs can need
        # more than one for a model whose largest layer outweighs half of its states.
        largest = layer_params(t)
        weights = [
            *weights,
            product(
                "weights",
                "gathered weights and gradients of the largest layer (ZeRO-3)",
                [("P_layer", largest)],
                2 * width,
                ZERO_SOURCE,
            ),
        ]
        if c.amp:
            casts = casts_kept = [
                product(
                    "autocast_copies",
                    "16-bit copies of the gathered layer's weights",
                    [("P_layer", largest)],
                    2,
                    ZERO_SOURCE,
                )
            ]
    acts = activations(c)
    saved_loss, logits, loss_extra, loss_grads = loss_terms(c, acts.x)
    inflight = [
        as_term(
            "temporaries",
            "activation gradients in flight",
            [
                Row("gradients of a layer's input and output", ("b", acts.x, "h"), "act", 2),
                Row("gradients inside the MLP", ("b", acts.x, "f"), "act", 2),
            ],
            c.sizes,
            c.widths,
            "PyTorch autograd engine: a layer's input and output gradients "
            "and its intermediate gradients are live while the layer runs backward",
        )
    ]
    recompute = []
    if s.checkpointing is Checkpointing.FULL:
        recompute = [
            as_term(
                "temporaries",
                "one layer recomputed in backward",
                acts.one_layer,
                c.sizes,
                c.widths,
                "torch.utils.checkpoint: the layer's forward "
                "runs again, and its saved tensors live until its backward ends",
            )
        ]
    base = [*weights, *state]
    held = [*base, *casts, *(gradients if s.grad_accum_steps > 1 else [])]
    held_back = [*base, *casts_kept, *(gradients if s.grad_accum_steps > 1 else [])]
    start = [*held_back, *acts.terms, *saved_loss, *(loss_grads or inflight)]
    dequant = dequant_terms(s, t)
    end = [*base, *casts_kept, *gradients, *recompute, *inflight, *dequant]
    backward = start if total(start) >= total(end) else end
    phases = phases_of(
        ("forward", [*held, *acts.terms, *logits, *dequant]),
        ("loss", [*held, *acts.terms, *saved_loss, *loss_extra]),
        ("backward", backward),
        ("optimizer_step", [*base, *gradients, *step_terms]),
    )
    if c.cpu:
        notes.append(
            "CPU step: dropout keeps its noise in the activations' type and no CUDA "
            "context is counted."
        )
    if s.attention is Attention.SDPA and c.eager:
        notes.append(
            "The CPU's SDPA falls back to the math kernel when attention dropout "
            "is on, so the scores are stored as in eager attention."
        )
    notes.append(
        f"{t.model_type or t.family.value}: {n_params:,} parameters, "
        f"{t.layers} layers, h = {t.hidden:,}."
    )
    return Built(phases, notes, acts.bytes + total(saved_loss))


# --- inference -----------------------------------------------------------------------------


def _sliding_layers(t: Transformer) -> int:
    """How many layers attend over a sliding window (the rest see everything)."""
    if t.sliding_window is None:
        return 0
    types = t.config.get("layer_types")
    if isinstance(types, list) and types:
        return sum(1 for x in types if x == "sliding_attention")
    if t.model_type == "qwen2" and not t.config.get("use_sliding_window", False):
        return 0
    if t.model_type == "gemma2":
        return t.layers // 2  # alternating local and global layers
    if t.model_type in ("gemma3", "gemma3_text"):
        pattern = int(t.config.get("sliding_window_pattern", 6))
        return t.layers - t.layers // pattern
    return t.layers


def kv_cache_term(s: Scenario, t: Transformer, tokens: int, decoding: bool) -> Term:
    """The KV cache holding ``tokens`` per sequence; past the first decode step, sliding-
    window layers keep only their window (transformers trims them then)."""
    kv_bytes = s.kv_cache_dtype.bytes_for(s.precision)
    sliding = _sliding_layers(t)
    window = t.sliding_window or tokens
    if decoding and sliding and tokens > window:
        full = t.layers - sliding
        per_layer = [("2", 2), ("b", s.batch_size), ("a_kv", t.kv_heads), ("d", t.head_dim)]
        held = full * tokens + sliding * window
        return product(
            "kv_cache",
            f"keys and values ({sliding} sliding-window layers keep {window:,} tokens)",
            [*per_layer, ("layer·tokens", held)],
            Fraction(kv_bytes, s.tensor_parallel),
            HF_CACHE,
        )
    return product(
        "kv_cache",
        "keys and values of every layer",
        [
            ("2", 2),
            ("L", t.layers),
            ("b", s.batch_size),
            ("a_kv", t.kv_heads),
            ("tokens", tokens),
            ("d", t.head_dim),
        ],
        Fraction(kv_bytes, s.tensor_parallel),
        HF_CACHE,
    )


def inference_moments(c: Ctx) -> list[tuple[str, list[Row]]]:
    """The candidate peaks of a prefill, each as the tensors live at that moment.

    Measured for GPT-2, Llama, Mistral and Mixtral (benchmarks/accuracy/inventory.md
    §6, §19-27): the MLP of the last layer (its input, residual and intermediates), its
    attention (q, k, v and the output; with eager attention the scores, an fp32 softmax
    and the probabilities), or the logits.
    """
    t, s = c.t, c.s
    common = [Row("token ids", ("b", "s"), "i64")]
    if t.family in (Family.DECODER, Family.MOE) and not t.learned_positions:
        common.append(Row("rotary cos and sin", ("s", "d"), "act", 2))
    # transformers builds the window mask once the keys reach the window, not past it
    # (masking_utils.py _ignore_causal_mask_sdpa: skipped only when kv_length < window).
    past_window = t.sliding_window is not None and s.seq_len >= t.sliding_window
    if past_window:
        common.append(Row("sliding-window mask", ("s", "s"), "bool"))
    if t.model_type in ("gpt2", "gpt_bigcode"):
        # GPT-2 returns its attention probabilities from each block, so they stay
        # referenced while the block's MLP runs.
        probs = (
            [
                Row("attention probabilities", ("b", "a", "s", "s"), "act"),
                Row("causal mask", ("b", "s", "s"), "act"),
            ]
            if c.eager
            else []
        )
        layer = [
            *probs,
            Row("position ids and embeddings", ("s",), "i64"),
            Row("position embeddings", ("s", "h"), "act"),
            Row("residual, norm and attention outputs", ("b", "s", "h"), "act", 5),
            Row("tanh-GELU intermediates", ("b", "s", "f"), "act", 4),
        ]
        return [("block", common + layer), ("logits", common + _logit_rows(c))]
    if t.family is Family.MOE:
        mlp = [
            Row("residual, normed hidden and outputs", ("b", "s", "h"), "act", 4),
            Row("tokens gathered for their experts", ("b", "s", "k", "h"), "act"),
            Row("expert gate, up and product", ("b", "s", "k", "f"), "act", 4),
            Row("router scores", ("b", "s", "E"), "act"),
            Row("routing indices", ("b", "s", "k"), "i64", 4),
            Row("routing weights", ("b", "s", "k"), "f32"),
        ]
    elif t.gated_mlp:
        mlp = [
            Row("residual, normed hidden and outputs", ("b", "s", "h"), "act", 4),
            Row("gate, up and activation outputs", ("b", "s", "f"), "act", 3),
        ]
    else:
        mlp = [
            Row("residual, normed hidden and outputs", ("b", "s", "h"), "act", 4),
            Row("MLP intermediate and activation", ("b", "s", "f"), "act", 2),
        ]
    attention = [Row("residual, normed hidden and projection input", ("b", "s", "h"), "act", 3)]
    if c.eager:
        attention += [
            Row("scores, masked scores and probabilities", ("b", "a", "s", "s"), "act", 3),
            Row("fp32 softmax", ("b", "a", "s", "s"), "f32"),
            Row("query and key/value repeated to every head", ("b", "a", "s", "d"), "act", 3),
            Row("causal mask", ("b", "s", "s"), "act"),
        ]
    else:
        attention += [
            Row("query and attention output", ("b", "a", "s", "d"), "act", 4),
            Row("new key and value", ("b", "a_kv", "s", "d"), "act", 2),
        ]
        if past_window:
            attention += [
                Row("sliding-window mask for the kernel", ("b", "s", "s"), "act"),
                Row("softmax log-sum-exp", ("b", "a", "s"), "f32"),
            ]
    return [
        ("MLP", common + mlp),
        ("attention", common + attention),
        ("logits", common + _logit_rows(c)),
    ]


def _logit_rows(c: Ctx) -> list[Row]:
    t = c.t
    if not t.vocab or t.family is Family.VIT or not _lm(t):
        return [Row("classifier input and output", ("b", "h"), "act", 2)]
    dims = ("b", "s", "V") if c.s.logits is Logits.ALL else ("b", "V")
    return [Row("logits", dims, "act"), Row("final hidden states", ("b", "s", "h"), "act", 2)]


def build_inference(s: Scenario) -> Built:
    """Prefill of the prompt and one decode step with the KV cache."""
    c = context(s)
    t = c.t
    n_params = sum(parameter_counts(t).values())
    weights = weight_terms(s, t, n_params)
    if s.tensor_parallel > 1:
        weights = [
            w.scaled(Fraction(1, s.tensor_parallel), f"÷ {s.tensor_parallel}") for w in weights
        ]
    notes = [f"{t.model_type or t.family.value}: {n_params:,} parameters."]
    decoder = t.family in (Family.DECODER, Family.MOE)
    ctx_tokens = s.seq_len + (s.new_tokens if decoder else 0)
    sizes = dict(c.sizes)
    candidates = inference_moments(c)
    if s.tensor_parallel > 1:
        # Split every moment before choosing the largest: the split divides some rows
        # (heads, MLP columns) and not others, so the order of the moments can change.
        candidates = [(n, _tp_split(rows, s.tensor_parallel)) for n, rows in candidates]
    name, rows = max(candidates, key=lambda kv: total_bytes(kv[1], sizes, c.widths))
    working = as_term(
        "activations",
        f"working set at the {name} peak of the last layer",
        rows,
        sizes,
        c.widths,
        LLAMA_INFERENCE,
    )
    prefill_terms = [*weights, working, *dequant_terms(s, t)]
    phases: list[Phase] = []
    if decoder or t.family is Family.ENCODER_DECODER:
        prefill_kv = kv_cache_term(s, t, s.seq_len, decoding=False)
        prefill_terms.append(prefill_kv)
    if t.family is Family.ENCODER_DECODER:
        notes.append(
            "Encoder-decoder inference: the working set is the encoder pass; the "
            "decoder's cache grows with the generated tokens."
        )
    phases += phases_of(("prefill", prefill_terms))
    if decoder:
        after = kv_cache_term(s, t, ctx_tokens, decoding=True)
        cat = product(
            "temporaries",
            "one layer's old key or value during torch.cat",
            [("b", s.batch_size), ("a_kv", t.kv_heads), ("tokens", ctx_tokens), ("d", t.head_dim)],
            Fraction(s.kv_cache_dtype.bytes_for(s.precision), s.tensor_parallel),
            HF_CACHE,
        )
        phases += phases_of(("decode", [*weights, after, cat]))
        notes.append(
            f"KV cache: {2 * t.kv_heads * t.head_dim * t.layers * s.kv_cache_dtype.bytes_for(s.precision):,} "  # noqa: E501
            f"bytes per token per sequence ({t.kv_heads} key/value heads of "
            f"{t.head_dim} in each of {t.layers} layers)."
        )
    return Built(phases, notes)


def build(s: Scenario) -> Built:
    """The phases of a transformer's training step or inference."""
    return build_training(s) if s.mode is Mode.TRAINING else build_inference(s)
