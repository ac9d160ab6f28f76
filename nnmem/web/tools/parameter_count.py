"""The parameter-count tool: a transformer's parameters, module by module."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from nnmem import catalog
from nnmem.errors import NnmemError, Problem
from nnmem.models.architecture import (
    Family,
    Transformer,
    active_parameters,
    from_config,
    parameter_counts,
    parameter_tensors,
)
from nnmem.render.markup import escape
from nnmem.scenario import load_json
from nnmem.units import count, human, percent
from nnmem.validation import raise_if, whole
from nnmem.web.fields import Field
from nnmem.web.tools.common import (
    Tool,
    Values,
    choice,
    figure,
    figure_html,
    number,
    table_html,
)

# --- parameter count ----------------------------------------------------------------------

LLAMA_CONFIG = catalog.models()["llama-3.1-8b"].config

PC_SOURCE = (
    ("fields", "Architecture fields"),
    ("preset", "A catalog model"),
    ("config", "Pasted config.json"),
)


def _transformer_options() -> tuple[tuple[str, str], ...]:
    return tuple((m.id, m.name) for m in catalog.models().values() if m.architecture != "cnn")


PC_NUMBERS = (
    whole("hidden_size", "Hidden size", 1_000_000),
    whole("num_hidden_layers", "Layers", 100_000),
    whole("num_attention_heads", "Attention heads", 100_000),
    whole("num_key_value_heads", "Key/value heads", 100_000),
    whole("intermediate_size", "MLP width", 10_000_000),
    whole("vocab_size", "Vocabulary size", 10_000_000),
    whole("num_local_experts", "Experts", 4_096, low=0),
    whole("num_experts_per_tok", "Experts per token", 4_096),
)
PC_DEFAULTS = {"num_local_experts": 0, "num_experts_per_tok": 2}  # Llama is dense
YES_NO = (("no", "No (separate LM head)"), ("yes", "Yes (head reuses the embedding)"))
PC_HINTS = {
    "hidden_size": "Width h of every layer (hidden_size).",
    "num_hidden_layers": "Transformer layers L (num_hidden_layers).",
    "num_attention_heads": "Query heads a (num_attention_heads).",
    "num_key_value_heads": "a_kv: equal to the heads for multi-head attention, fewer for GQA.",
    "intermediate_size": "Width f of the gated MLP (per expert for a mixture of experts).",
    "vocab_size": "Tokens in the vocabulary (vocab_size).",
    "num_local_experts": "0 for a dense model; 8 for Mixtral-8x7B.",
    "num_experts_per_tok": "Experts each token is routed to (top-k); used when experts > 0.",
}

# Each tensor name fragment and the module row it belongs to, first match wins.
MODULES = (
    ("router", "MoE router"),
    ("experts.*", "MoE experts"),
    ("shared_expert", "MoE shared expert"),
    ("vision", "Vision encoder and projector"),
    ("multi_modal_projector", "Vision encoder and projector"),
    ("linear_attn", "Linear attention (gated delta net)"),
    ("q_a_", "Attention: latent query (W_qa, W_qb)"),
    ("q_b_", "Attention: latent query (W_qa, W_qb)"),
    ("kv_a_", "Attention: latent key/value (W_kva, W_kvb)"),
    ("kv_b_", "Attention: latent key/value (W_kva, W_kvb)"),
    ("q_proj", "Attention: query (W_q)"),
    ("k_proj", "Attention: key (W_k)"),
    ("v_proj", "Attention: value (W_v)"),
    ("c_attn", "Attention: fused q, k, v"),
    ("o_proj", "Attention: output (W_o)"),
    ("c_proj", "Attention: output (W_o)"),
    ("q_norm", "Attention: q/k norms"),
    ("k_norm", "Attention: q/k norms"),
    ("relative_bias", "Attention: relative position bias"),
    ("mlp", "MLP"),
    ("norm", "Norms"),
    ("lm_head", "LM head"),
    ("mlm", "Output head"),
    ("classifier", "Output head"),
    ("pooler", "Output head"),
)


def module_counts(t: Transformer) -> dict[str, int]:
    """Parameters per module kind (attention projections apart), from the tensor list.

    >>> gpt2 = from_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12,
    ...                     "n_head": 12, "vocab_size": 50257, "n_positions": 1024})
    >>> module_counts(gpt2)["Embeddings"], sum(module_counts(gpt2).values())
    (39383808, 124439808)
    """
    rows: dict[str, int] = {}
    for tensor in parameter_tensors(t):
        module = "Embeddings"
        if not tensor.name.startswith(("embed.", "position.", "token_type.", "patch.", "cls")):
            if tensor.name.startswith("position_embeddings"):
                module = "Embeddings"
            else:
                module = next((m for frag, m in MODULES if frag in tensor.name), "Other")
        rows[module] = rows.get(module, 0) + tensor.elements
    return rows


def _pc_model(values: Values) -> Transformer:
    source = choice("source", "Describe the model by", PC_SOURCE, values)
    if isinstance(source, Problem):
        raise NnmemError([source])
    if source == "preset":
        preset = choice("preset", "Catalog model", _transformer_options(), values)
        if isinstance(preset, Problem):
            raise NnmemError([preset])
        return from_config(catalog.models()[preset].config, field="preset")
    if source == "config":
        raw = values.get("config", "")
        # The calculator's reader: plain messages for deep nesting and huge numbers too.
        config = load_json(raw, "config", "config.json") if raw.strip() else None
        if not isinstance(config, dict):
            raise NnmemError.single(
                "config", 'Paste a config.json: a JSON object such as {"hidden_size": 4096, …}.'
            )
        return from_config(config, field="config")
    read = {spec.key: number(spec, values) for spec in PC_NUMBERS}
    tied = choice("tie_word_embeddings", "Tied embeddings", YES_NO, values)
    raise_if(*(v for v in [*read.values(), tied] if isinstance(v, Problem)))
    n = {k: int(v) for k, v in read.items() if isinstance(v, Decimal)}
    heads, kv = n["num_attention_heads"], n["num_key_value_heads"]
    raise_if(
        Problem(
            "num_key_value_heads",
            f"Key/value heads must divide the attention heads ({heads:,}) (got {kv:,}).",
        )
        if heads % kv
        else None,
        Problem(
            "num_attention_heads",
            f"Attention heads must divide the hidden size ({n['hidden_size']:,}) (got {heads:,}).",
        )
        if n["hidden_size"] % heads
        else None,
        Problem(
            "num_experts_per_tok",
            f"Experts per token must be at most the experts "
            f"({n['num_local_experts']:,}) (got {n['num_experts_per_tok']:,}).",
        )
        if n["num_local_experts"] and n["num_experts_per_tok"] > n["num_local_experts"]
        else None,
    )
    experts = n.pop("num_local_experts")
    built: dict[str, Any] = {
        "model_type": "mixtral" if experts > 1 else "llama",
        "hidden_act": "silu",
        "tie_word_embeddings": tied == "yes",
        **n,
    }
    if experts > 1:
        built["num_local_experts"] = experts
    return from_config(built, field="config")


def parameter_count(values: Values) -> dict[str, Any]:
    """Count a transformer's parameters per module (``nnmem.models.architecture``)."""
    t = _pc_model(values)
    total = sum(parameter_counts(t).values())
    active = active_parameters(t)
    modules = module_counts(t)
    rows = [
        (escape(name), f"{count:,}", percent(count, total), human(2 * count))
        for name, count in modules.items()
    ]
    rows.append(
        ("<strong>Total</strong>", f"<strong>{total:,}</strong>", "100.0%", human(2 * total))
    )
    figures = [
        figure_html("total", "Total parameters", total, f"{total:,} ({count(total)})"),
        figure_html("bf16_bytes", "Weights in BF16", 2 * total, human(2 * total)),
        figure_html("fp32_bytes", "Weights in FP32", 4 * total, human(4 * total)),
    ]
    if t.family is Family.MOE:
        figures.append(
            figure_html("active", "Active per token", active, f"{active:,} ({count(active)})")
        )
    kind = {
        Family.DECODER: "decoder-only",
        Family.MOE: "mixture-of-experts decoder",
        Family.ENCODER: "encoder",
        Family.ENCODER_DECODER: "encoder-decoder",
        Family.VIT: "vision transformer",
    }[t.family]
    shape = (
        f"Read as a {kind} ({t.model_type or 'generic'}): L = {t.layers}, h = {t.hidden:,}, "
        f"a = {t.heads}, a_kv = {t.kv_heads}, d = {t.head_dim}, f = {t.intermediate:,}, "
        f"vocabulary {t.vocab:,}, {'gated' if t.gated_mlp else 'plain'} MLP, "
        f"{'RMSNorm' if t.rms_norm else 'LayerNorm'}, embeddings "
        f"{'tied to' if t.tied_embeddings else 'separate from'} the head."
    )
    html = (
        f'<dl class="figures">{"".join(figures)}</dl><p class="tool-note">{escape(shape)}</p>'
        + table_html(("Module", "Parameters", "Share", "BF16"), rows, "Parameters by module")
    )
    return {"html": html, "values": {"total": figure(total), "active": figure(active)}}


TOOL = Tool(
    (
        Field(
            "source",
            "Describe the model by",
            "Fill in the fields, or paste a model's config.json.",
            "choice",
            "fields",
            options=PC_SOURCE,
        ),
        Field(
            "preset",
            "Catalog model",
            "Its published config.json, as nnmem's catalog holds it.",
            "choice",
            "mixtral-8x7b",
            options=_transformer_options(),
            when="source=preset",
        ),
        *(
            Field(
                spec.key,
                spec.label,
                PC_HINTS[spec.key],
                "number",
                str(LLAMA_CONFIG.get(spec.key, PC_DEFAULTS.get(spec.key, ""))),
                inputmode="numeric",
                when="source=fields",
            )
            for spec in PC_NUMBERS
        ),
        Field(
            "tie_word_embeddings",
            "Tied embeddings",
            "Whether the LM head shares the input embedding matrix (tie_word_embeddings).",
            "choice",
            "no",
            options=YES_NO,
            when="source=fields",
        ),
        Field(
            "config",
            "config.json",
            "Paste the whole file; GPT-2, BERT, T5, ViT and MoE configs are read too.",
            "text",
            json.dumps(LLAMA_CONFIG, indent=1),
            when="source=config",
        ),
    ),
    parameter_count,
)
