"""The probe sizes and their symbols, layer paths, and shapes, counts and byte formulas
written in the symbols."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sympy as sp

HERE = Path(__file__).resolve().parent.parent  # benchmarks/accuracy
MEASURED = HERE / "measured.json"
REPORT = HERE / "inventory.md"

# Symbols -----------------------------------------------------------------------------

# Printing order of symbols in a monomial.
SYMBOL_NAMES = (
    "L",  # layers (T5: encoder layers)
    "L_dec",  # T5 decoder layers
    "b",  # batch
    "a",  # attention heads
    "a_kv",  # key/value heads
    "E",  # experts
    "k",  # experts per token
    "s",  # tokens (T5: encoder tokens; ViT: patches + 1; inference: prompt length)
    "t",  # T5 decoder tokens
    "W",  # sliding window
    "h",  # hidden size
    "d",  # head dim
    "f",  # MLP intermediate size
    "r",  # LoRA rank
    "V",  # vocabulary
    "c",  # classes (sequence / image classification)
    "P",  # learned position table (GPT-2, BERT)
    "T",  # token-type table (BERT)
    "B",  # relative-position buckets (T5)
    "C",  # image channels
    "I",  # image side
    "p",  # patch side
    "q",  # patches per side, I/p (ViT: s = q² + 1)
)
SYM = {name: sp.Symbol(name, positive=True, integer=True) for name in SYMBOL_NAMES}

# Probe sizes. Every symbol has its own number and no two listed dimension expressions
# share a value (checked per setting). Llama-family and T5 probes use a head dim with
# a·d != h (88 vs 96), so that query and attention-output widths (a·d) are told apart
# from the hidden size; GPT-2, BERT and ViT tie a·d = h by construction.
PROBE = {
    "L": 4,
    "L_dec": 4,
    "b": 5,
    "s": 37,
    "t": 29,
    "h": 96,
    "a": 4,
    "a_gqa": 8,  # heads of the Llama-family probes (a/a_kv = 4)
    "a_kv": 2,
    "d": 24,
    "d_free": 22,  # head dim where the model allows a·d != h
    "f": 160,
    "V": 211,
    "E": 7,
    "k": 3,
    "r": 13,
    "c": 17,
    "W": 19,
    "P": 64,
    "T": 2,
    "B": 32,
    "I": 48,
    "p": 8,
}

# Dimension expressions, tried in this order: the first whose value matches names a
# dimension. Only expressions whose symbols the setting defines take part.
DIM_LABELS = (
    "b", "s", "t", "h", "a", "a_kv", "a/a_kv", "d", "f", "V", "E", "k", "r", "c", "W", "P", "T",
    "B", "C", "I", "p", "q",
    "s-1", "s+1", "t-1", "W-1", "d/2", "3h", "2f", "a·d", "a_kv·d",
    "b·s", "b·(s-1)", "b·t", "b·a", "b·a_kv", "b·k", "b·s·k", "b·s·E",
)  # fmt: skip

# Families whose hidden size is heads × head dim by construction.
H_IS_AD = {"gpt2", "bert", "vit"}

PHASES_TRAINING = ("forward", "loss", "backward", "optimizer_step")
PHASES_INFERENCE = ("prefill", "decode")


@functools.cache
def expr_of(label: str) -> sp.Expr:
    """Parse a dimension label such as ``b·(s-1)`` or ``3h``."""
    text = re.sub(r"(\d)([A-Za-z])", r"\1*\2", label.replace("·", "*"))
    return sp.sympify(text, locals=SYM)


def symbol_values(desc: dict[str, Any]) -> dict[str, int]:
    """Symbol values of a case description (probe or measured.json)."""
    cfg = desc["model"]["config"]
    family = desc["model"]["family"]
    values: dict[str, int] = {"b": desc["batch_size"]}
    inference = desc.get("inference")
    if inference:
        values["s"] = inference["context_len"]
    elif desc.get("seq_len"):
        values["s"] = desc["seq_len"]
    if family == "gpt2":
        h, a = cfg["n_embd"], cfg["n_head"]
        values |= {"h": h, "a": a, "d": h // a, "f": cfg.get("n_inner") or 4 * h}
        values |= {"V": cfg["vocab_size"], "L": cfg["n_layer"], "P": cfg["n_positions"]}
    elif family in ("bert", "vit"):
        h, a = cfg["hidden_size"], cfg["num_attention_heads"]
        values |= {"h": h, "a": a, "d": h // a, "f": cfg["intermediate_size"]}
        values["L"] = cfg["num_hidden_layers"]
        if family == "bert":
            values |= {"V": cfg["vocab_size"], "P": cfg["max_position_embeddings"]}
            values["T"] = cfg["type_vocab_size"]
            if desc["model"]["hf_class"] == "BertForSequenceClassification":
                values["c"] = cfg.get("num_labels", 2)
        else:
            values |= {"c": cfg["num_labels"], "C": cfg["num_channels"]}
            values |= {"I": desc["image_size"], "p": cfg["patch_size"]}
            values["q"] = values["I"] // values["p"]
            values["s"] = values["q"] ** 2 + 1
    elif family == "t5":
        values |= {"h": cfg["d_model"], "a": cfg["num_heads"], "d": cfg["d_kv"]}
        values |= {"f": cfg["d_ff"], "V": cfg["vocab_size"], "L": cfg["num_layers"]}
        values["L_dec"] = cfg.get("num_decoder_layers") or cfg["num_layers"]
        values |= {"B": cfg["relative_attention_num_buckets"], "t": desc["decoder_seq_len"]}
    else:  # llama, mistral, mixtral
        h, a = cfg["hidden_size"], cfg["num_attention_heads"]
        values |= {"h": h, "a": a, "d": cfg.get("head_dim") or h // a}
        values |= {"a_kv": cfg.get("num_key_value_heads") or a, "f": cfg["intermediate_size"]}
        values |= {"V": cfg["vocab_size"], "L": cfg["num_hidden_layers"]}
        if cfg.get("sliding_window"):
            values["W"] = cfg["sliding_window"]
        if family == "mixtral":
            values |= {"E": cfg["num_local_experts"], "k": cfg["num_experts_per_tok"]}
    if desc.get("lora"):
        values["r"] = desc["lora"]["r"]
    return values


def label_value(label: str, values: dict[str, int]) -> int:
    """The integer value of a dimension label at the given symbol values."""
    if label.endswith("?"):
        return int(label[:-1])
    return _label_value(label, tuple(sorted(values.items())))


@functools.cache
def _label_value(label: str, items: tuple[tuple[str, int], ...]) -> int:
    values = dict(items)
    expr = expr_of(label)
    return int(expr.subs({SYM[str(x)]: values[str(x)] for x in expr.free_symbols}))


@functools.cache
def _count_value(count: sp.Expr, items: tuple[tuple[str, int], ...]) -> int:
    return int(count.subs({SYM[n]: v for n, v in items if n in SYM}))


class DimNamer:
    """Name integer dimensions with the listed expressions, for one setting."""

    def __init__(
        self, values: dict[str, int], skip: Iterable[str] = (), strict: bool = True
    ) -> None:
        self.values = values
        self.table: dict[int, str] = {}
        clashes = []
        for label in DIM_LABELS:
            if label in skip:
                continue
            if not {str(x) for x in expr_of(label).free_symbols} <= set(values):
                continue
            value = label_value(label, values)
            if value in self.table:
                clashes.append(f"{label} = {self.table[value]} = {value}")
                continue
            self.table[value] = label
        if clashes and strict:
            raise ValueError(f"probe sizes make dimensions ambiguous: {clashes}")
        self.unknown: set[int] = set()

    def name(self, dim: int) -> str:
        if dim in (0, 1):
            return str(dim)
        if dim in self.table:
            return self.table[dim]
        self.unknown.add(dim)
        return f"{dim}?"

    def shape(self, shape: Iterable[int]) -> tuple[str, ...]:
        return tuple(self.name(int(dim)) for dim in shape)


# Formatting --------------------------------------------------------------------------

SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _monomial_key(mono: sp.Expr) -> tuple[int, list[tuple[int, int]]]:
    powers = mono.as_powers_dict() if mono != 1 else {}
    degree = sum(int(e) for e in powers.values())
    ranks = sorted((SYMBOL_NAMES.index(str(s)), -int(e)) for s, e in powers.items())
    return (-degree, ranks)


def fmt_monomial(mono: sp.Expr) -> str:
    if mono == 1:
        return ""
    powers = mono.as_powers_dict()
    parts = []
    for name in SYMBOL_NAMES:
        exp = int(powers.get(SYM[name], 0))
        if exp:
            parts.append(name + (str(exp).translate(SUPERSCRIPT) if exp != 1 else ""))
    return "·".join(parts)


def fmt_expr(expr: sp.Expr) -> str:
    """An expanded polynomial, highest degree first: ``12·b·s·h + 4·b·a·s² + 8``."""
    expr = sp.expand(expr)
    if expr == 0:
        return "0"
    terms = sorted(expr.as_coefficients_dict().items(), key=lambda t: _monomial_key(t[0]))
    out = []
    for mono, coeff in terms:
        text = fmt_monomial(mono)
        if not text:
            out.append(str(coeff))
        elif coeff == 1:
            out.append(text)
        elif coeff == -1:
            out.append("-" + text)
        else:
            out.append(f"{coeff}·{text}")
    return " + ".join(out).replace("+ -", "- ")


def fmt_dims(labels: tuple[str, ...]) -> str:
    return "(" + ", ".join(labels) + ")"


def fmt_bytes(itemsize: int, labels: tuple[str, ...]) -> str:
    parts = [f"({lab})" if ("+" in lab or "-" in lab) and "(" not in lab else lab for lab in labels]
    return "·".join([str(itemsize)] + [lab for lab in parts if lab != "1"])


def fmt_count(count: sp.Expr) -> str:
    text = fmt_expr(count)
    return text if count.is_number or count.is_Symbol else f"({text})"


# Recording ---------------------------------------------------------------------------


LAYER_RE = re.compile(r"^(?P<group>(?:.*?\.)?(?:h|layers|layer|block))\.(?P<index>\d+)(?:\.|$)")


def split_path(path: str) -> tuple[str, int | None, str]:
    """``transformer.h.2.attn.c_attn`` -> (``transformer.h``, 2, ``attn.c_attn``)."""
    match = LAYER_RE.match(path)
    if not match:
        return "", None, path
    return match["group"], int(match["index"]), path[match.end() :]


def rel_path(path: str) -> str:
    group, _, rel = split_path(path)
    if group:
        return f"{group}.*.{rel}" if rel else f"{group}.*"
    return path or "(model)"


def layer_symbol(group: str) -> sp.Symbol:
    return SYM["L_dec"] if group.endswith("decoder.block") else SYM["L"]
