"""The related tools' one entry point for the browser: ``call(tool, request) -> reply``.

Each tool is a form (its fields, with defaults) and a function from the form's values to
HTML fragments and the raw figures behind them. The build prerenders every tool with its
defaults through :func:`prerender`; the page's worker calls :func:`call` after each change.
Nothing here raises: bad input becomes ``{"ok": false, "errors": [{"field", "message"}]}``
naming the field, what is allowed and the value given.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from html import escape
from typing import Any

from nnmem import catalog, tools
from nnmem.architecture import (
    Family,
    Transformer,
    active_parameters,
    from_config,
    parameter_counts,
    parameter_tensors,
)
from nnmem.errors import NnmemError, Problem
from nnmem.estimate import estimate
from nnmem.fields import NumberSpec, raise_if, shown, whole
from nnmem.formats import FORMATS, Format, bits
from nnmem.scenario import Scenario, parse
from nnmem.units import human, scaled

Values = dict[str, str]


@dataclass(frozen=True)
class ToolField:
    """One control of a tool's form."""

    key: str
    label: str
    hint: str
    kind: str  # "number", "choice" or "text"
    default: str
    unit: str = ""
    inputmode: str = "decimal"
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    when: str = ""  # "key=value": shown only while another field holds that value


@dataclass(frozen=True)
class Tool:
    """A form and the function that answers it with HTML and figures."""

    fields: tuple[ToolField, ...]
    run: Callable[[Values], dict[str, Any]]
    live: bool = True  # False: prerendered once, no form


# --- reading the form ---------------------------------------------------------------------


def _number(spec: NumberSpec, values: Mapping[str, object]) -> Decimal | Problem:
    return spec.read(values.get(spec.key))


def decimal(key: str, label: str, low: str, high: str, allowed: str) -> NumberSpec:
    """A real-number spec from ``low`` to ``high``; ``allowed`` says so in words."""
    return NumberSpec(key, label, Decimal(low), Decimal(high), False, allowed)


def _choice(
    key: str, label: str, options: tuple[tuple[str, str], ...], values: Mapping[str, object]
) -> str | Problem:
    raw = values.get(key)
    text = raw.strip().lower() if isinstance(raw, str) else ""
    if text in dict(options):
        return text
    example = options[0][0]
    return Problem(
        key, f"{label} must be one of the listed ids, such as {example} (got {shown(raw)})."
    )


def _read(**items: Decimal | str | Problem) -> dict[str, Any]:
    """The values, or one NnmemError listing every problem among them."""
    raise_if(*(v for v in items.values() if isinstance(v, Problem)))
    return items


def _gpu_options(need_flops: bool) -> tuple[tuple[str, str], ...]:
    return tuple(
        (g.id, f"{g.name} ({g.memory_label})")
        for g in catalog.gpus().values()
        if g.bandwidth_bytes_per_s and (g.fp16_tflops or not need_flops)
    )


def _llm_options() -> tuple[tuple[str, str], ...]:
    return tuple(
        (m.id, m.name) for m in catalog.models().values() if m.architecture in ("decoder", "moe")
    )


# --- formatting ---------------------------------------------------------------------------


def figure(value: Fraction | int) -> str:
    """A figure as the page's ``data-value`` holds it: whole numbers exactly, others to 6
    significant digits.

    >>> figure(Fraction(2, 3)), figure(42 * 10**21)
    ('0.666667', '42000000000000000000000')
    """
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.6g}"


def _fixed(value: Fraction | int, places: int) -> str:
    return scaled(round(Fraction(value) * 10**places), 10**places, places)


def _out(key: str, label: str, value: Fraction | int, html: str) -> str:
    """One headline figure; ``html`` is its text, already escaped."""
    return (
        f'<div class="figure"><dt>{escape(label)}</dt><dd><output id="r-{key}" '
        f'data-value="{figure(value)}">{html}</output></dd></div>'
    )


def _duration(seconds: Fraction) -> str:
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:,.1f} ms"
    if s < 120:
        return f"{s:,.2f} s"
    if s < 7200:
        return f"{s / 60:,.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:,.1f} h"
    return f"{s / 86400:,.1f} days"


def _flops(n: int | Fraction) -> str:
    """FLOPs in scientific notation as HTML, as papers quote them.

    >>> _flops(42 * 10**21)
    '4.20 × 10<sup>22</sup> FLOPs'
    """
    mantissa, exponent = f"{float(n):.2e}".split("e")
    return f"{mantissa} × 10<sup>{int(exponent)}</sup> FLOPs"


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]], caption: str = "") -> str:
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    th = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f'<div class="table-scroll" tabindex="0" role="region" '
        f'aria-label="{escape(caption or head[0])}">'
        f'<table class="tool-table">{cap}<thead><tr>{th}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _list(items: list[str]) -> str:
    return '<ul class="tool-steps">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


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
    source = _choice("source", "Describe the model by", PC_SOURCE, values)
    if isinstance(source, Problem):
        raise NnmemError([source])
    if source == "preset":
        preset = _choice("preset", "Catalog model", _transformer_options(), values)
        if isinstance(preset, Problem):
            raise NnmemError([preset])
        return from_config(catalog.models()[preset].config, field="preset")
    if source == "config":
        raw = values.get("config", "")
        try:
            config = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError as error:
            raise NnmemError.single(
                "config",
                f"config.json is not valid JSON: {error.msg} at line {error.lineno}, "
                f"column {error.colno}.",
            ) from error
        if not isinstance(config, dict):
            raise NnmemError.single(
                "config", 'Paste a config.json: a JSON object such as {"hidden_size": 4096, …}.'
            )
        return from_config(config, field="config")
    read = {spec.key: _number(spec, values) for spec in PC_NUMBERS}
    tied = _choice("tie_word_embeddings", "Tied embeddings", YES_NO, values)
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
    """Count a transformer's parameters per module (``nnmem.architecture``)."""
    t = _pc_model(values)
    total = sum(parameter_counts(t).values())
    active = active_parameters(t)
    modules = module_counts(t)
    rows = [
        (escape(name), f"{count:,}", f"{count * 100 / total:.1f}%", human(2 * count))
        for name, count in modules.items()
    ]
    rows.append(
        ("<strong>Total</strong>", f"<strong>{total:,}</strong>", "100.0%", human(2 * total))
    )
    figures = [
        _out("total", "Total parameters", total, f"{total:,} ({_billions(total)})"),
        _out("bf16_bytes", "Weights in BF16", 2 * total, human(2 * total)),
        _out("fp32_bytes", "Weights in FP32", 4 * total, human(4 * total)),
    ]
    if t.family is Family.MOE:
        figures.append(
            _out("active", "Active per token", active, f"{active:,} ({_billions(active)})")
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
        + _table(("Module", "Parameters", "Share", "BF16"), rows, "Parameters by module")
    )
    return {"html": html, "values": {"total": figure(total), "active": figure(active)}}


def _billions(n: int) -> str:
    return f"{n / 1e9:,.2f}B" if n >= 10**9 else f"{n / 1e6:,.1f}M"


# --- inference latency --------------------------------------------------------------------

LAT_PRECISIONS = (
    ("bf16", "BF16"),
    ("fp16", "FP16"),
    ("fp8", "FP8"),
    ("int8", "INT8 (LLM.int8)"),
    ("awq", "AWQ 4-bit"),
    ("gptq", "GPTQ 4-bit"),
    ("nf4", "NF4 4-bit"),
    ("q8_0", "GGUF Q8_0"),
    ("q4_k_m", "GGUF Q4_K_M"),
)
KV_TYPES = (("auto", "Same as the compute (16-bit)"), ("fp8", "FP8"))
LAT_BATCH = whole("batch_size", "Batch size", 4_096)
LAT_PROMPT = whole("prompt_tokens", "Prompt tokens", 1_000_000)
LAT_NEW = whole("new_tokens", "Generated tokens", 1_000_000)
PERCENT = "a percentage from 0.1 to 100"
LAT_BW = decimal("bandwidth_efficiency", "Bandwidth efficiency", "0.1", "100", PERCENT)
LAT_MFU = decimal("prefill_mfu", "Prefill utilisation (MFU)", "0.1", "100", PERCENT)


def _percent(value: Decimal | str | Problem) -> Fraction:
    assert isinstance(value, Decimal)
    return Fraction(value) / 100


def inference_latency(values: Values) -> dict[str, Any]:
    """Prefill and decode times from the roofline (:func:`nnmem.tools.throughput`)."""
    v = _read(
        preset=_choice("preset", "Model", _llm_options(), values),
        precision=_choice("precision", "Weight format", LAT_PRECISIONS, values),
        kv=_choice("kv_cache_dtype", "KV-cache type", KV_TYPES, values),
        gpu=_choice("gpu", "GPU", _gpu_options(need_flops=True), values),
        batch=_number(LAT_BATCH, values),
        prompt=_number(LAT_PROMPT, values),
        new=_number(LAT_NEW, values),
        bw=_number(LAT_BW, values),
        mfu=_number(LAT_MFU, values),
    )
    gpu = catalog.gpus()[v["gpu"]]
    assert gpu.bandwidth_bytes_per_s and gpu.fp16_tflops
    prompt, new, batch = int(v["prompt"]), int(v["new"]), int(v["batch"])
    scenario = parse(
        {
            "model": "preset",
            "preset": v["preset"],
            "mode": "inference",
            "precision": v["precision"],
            "kv_cache_dtype": v["kv"],
            "batch_size": batch,
            "seq_len": prompt + new,
        }
    )
    peak = Fraction(str(gpu.fp16_tflops))
    r = tools.throughput(
        scenario,
        gpu.bandwidth_bytes_per_s,
        peak,
        _percent(v["bw"]),
        _percent(v["mfu"]),
        prompt,
        new,
    )
    memory = estimate(scenario, gpu.id).total_bytes
    fits = memory <= gpu.usable_bytes
    model = catalog.models()[v["preset"]]
    bound = "memory bandwidth" if r.memory_bound else "compute"
    figures = [
        _out(
            "tokens_per_s",
            "Decode speed per sequence",
            r.tokens_per_second,
            f"{float(r.tokens_per_second):,.1f} tokens/s",
        ),
        _out(
            "batch_tokens_per_s",
            "Decode speed, whole batch",
            r.batch_tokens_per_second,
            f"{float(r.batch_tokens_per_second):,.1f} tokens/s",
        ),
        _out(
            "prefill_s",
            "Prefill (time to first token)",
            r.prefill_seconds,
            _duration(r.prefill_seconds),
        ),
        _out("total_s", "Whole request", r.total_seconds, _duration(r.total_seconds)),
    ]
    bw = float(gpu.bandwidth_bytes_per_s * _percent(v["bw"])) / 1e9
    steps = [
        f"Weights read at every decode step: <strong>{human(r.step_weight_bytes)}</strong> "
        f"({escape(model.name)} in {escape(dict(LAT_PRECISIONS)[v['precision']])}, from "
        "nnmem's weight estimate, scales included"
        + (
            f"; of its {human(r.weight_bytes)}, only the experts that a batch of {batch:,} "
            "is expected to be routed to)."
            if r.step_weight_bytes != r.weight_bytes
            else ")."
        ),
        f"KV cache per token per sequence: <strong>{human(r.kv_bytes_per_token)}</strong>; "
        f"the step that makes token i also reads the cache of the {prompt:,} + i − 1 tokens "
        "before it.",
        f"Bandwidth used: {gpu.bandwidth_bytes_per_s / 1e9:,.0f} GB/s peak × "
        f"{v['bw']}% = {bw:,.0f} GB/s; compute: {gpu.fp16_tflops:,} TFLOPS dense FP16/BF16 "
        f"× {v['mfu']}%.",
        f"Decode of {new:,} tokens: memory time {_duration(r.decode_memory_seconds)}, compute "
        f"time {_duration(r.decode_compute_seconds)}: <strong>{bound}-bound</strong> at "
        f"batch {batch:,}.",
        f"Prefill: {_flops(r.prefill_flops)} (2·N per token plus attention) at the "
        f"utilisation above: {_duration(r.prefill_seconds)}.",
    ]
    verdict = (
        f"Fits on one {escape(gpu.name)}: nnmem estimates {human(memory)} of "
        f"{human(gpu.usable_bytes)}."
        if fits
        else f"Does not fit on one {escape(gpu.name)}: nnmem estimates {human(memory)} of "
        f"{human(gpu.usable_bytes)}; the times assume it did (for example split over GPUs "
        "with the same total bandwidth)."
    )
    html = (
        f'<dl class="figures">{"".join(figures)}</dl>'
        f'<p class="tool-verdict" data-fits="{str(fits).lower()}">{verdict}</p>' + _list(steps)
    )
    return {
        "html": html,
        "values": {
            "tokens_per_s": figure(r.tokens_per_second),
            "batch_tokens_per_s": figure(r.batch_tokens_per_second),
            "prefill_s": figure(r.prefill_seconds),
            "total_s": figure(r.total_seconds),
        },
    }


# --- training cost ------------------------------------------------------------------------

TC_PARAMS = decimal(
    "params_billions",
    "Model size",
    "0.001",
    "100000",
    "a number of billions of parameters from 0.001 to 100,000",
)
TC_TOKENS = decimal(
    "tokens_billions",
    "Training tokens",
    "0.001",
    "10000000",
    "a number of billions of tokens from 0.001 to 10,000,000",
)
TC_GPUS = whole("num_gpus", "Number of GPUs", 1_000_000)
TC_MFU = decimal("mfu", "Utilisation (MFU)", "0.1", "100", PERCENT)
TC_PRICE = decimal(
    "price_per_gpu_hour", "Price per GPU-hour", "0", "1000000", "a price from 0 to 1,000,000"
)


def training_cost(values: Values) -> dict[str, Any]:
    """Compute, GPU-hours, days and cost from ``6·N·D`` (:mod:`nnmem.tools`)."""
    v = _read(
        params=_number(TC_PARAMS, values),
        tokens=_number(TC_TOKENS, values),
        gpu=_choice("gpu", "GPU", _gpu_options(need_flops=True), values),
        gpus=_number(TC_GPUS, values),
        mfu=_number(TC_MFU, values),
        price=_number(TC_PRICE, values),
    )
    gpu = catalog.gpus()[v["gpu"]]
    assert gpu.fp16_tflops
    params = int(v["params"] * 10**9)
    tokens = int(v["tokens"] * 10**9)
    flops = tools.training_flops(params, tokens)
    mfu = _percent(v["mfu"])
    peak = Fraction(str(gpu.fp16_tflops))
    gpu_hours = tools.gpu_seconds(flops, peak, mfu) / tools.SECONDS_PER_HOUR
    days = gpu_hours / int(v["gpus"]) / 24
    cost = gpu_hours * Fraction(v["price"])
    optimal = tools.chinchilla_tokens(params)
    figures = [
        _out("flops", "Training compute", flops, _flops(flops)),
        _out("gpu_hours", "GPU-hours", gpu_hours, f"{_fixed(gpu_hours, 0)} GPU-hours"),
        _out("days", f"Wall clock on {int(v['gpus']):,} GPUs", days, f"{_fixed(days, 1)} days"),
        _out("cost", "Cost", cost, _fixed(cost, 0)),
    ]
    steps = [
        f"C = 6 · N · D = 6 × {params:,} × {tokens:,} = {_flops(flops)}.",
        f"Achieved rate per GPU: {gpu.fp16_tflops:,} TFLOPS (dense BF16/FP16 peak of the "
        f"{escape(gpu.name)}) × {v['mfu']}% = {float(peak * mfu):,.1f} TFLOPS, that is "
        f"{float(peak * mfu * tools.TERA / (6 * params)):,.0f} training tokens per second per "
        "GPU: compare it with your run's throughput to check the utilisation.",
        f"GPU-hours = C ÷ rate ÷ 3,600 = {_fixed(gpu_hours, 0)}; cost = GPU-hours × "
        f"{v['price']} per hour = {_fixed(cost, 0)}.",
        f"For reference, Chinchilla's compute-optimal budget for this size is about 20 tokens "
        f"per parameter: {optimal / 1e9:,.0f}B tokens.",
    ]
    html = f'<dl class="figures">{"".join(figures)}</dl>' + _list(steps)
    return {
        "html": html,
        "values": {
            "flops": figure(flops),
            "gpu_hours": figure(gpu_hours),
            "days": figure(days),
            "cost": figure(cost),
        },
    }


# --- GPU guide (prerendered) --------------------------------------------------------------


def _preset(preset: str, **settings: object) -> Scenario:
    return parse({"model": "preset", "preset": preset, **settings})


GUIDE_SETTINGS: dict[str, tuple[str, dict[str, object]]] = {
    "serve_bf16": (
        "Serves in BF16",
        {"mode": "inference", "precision": "bf16", "batch_size": 1, "seq_len": 4096},
    ),
    "serve_int4": (
        "Serves in 4-bit (AWQ)",
        {"mode": "inference", "precision": "awq", "batch_size": 1, "seq_len": 4096},
    ),
    "train_full": (
        "Trains fully (AMP + AdamW)",
        {
            "mode": "training",
            "precision": "amp_bf16",
            "optimizer": "adamw",
            "batch_size": 1,
            "seq_len": 2048,
            "checkpointing": "full",
        },
    ),
    "qlora": (
        "Fine-tunes with QLoRA",
        {
            "mode": "training",
            "precision": "nf4_dq",
            "finetune": "lora",
            "lora_rank": 16,
            "lora_targets": "all_linear",
            "batch_size": 1,
            "seq_len": 2048,
            "checkpointing": "full",
        },
    ),
}


def size_class_table() -> dict[int, dict[str, str | None]]:
    """For each distinct usable GPU memory, the largest catalog LLM for each job.

    The estimates run without a GPU id (so with the pre-Hopper cuBLAS workspace, 8.5 MB),
    once per model and job; a class then takes the largest model whose total fits.
    """
    totals: dict[str, list[tuple[int, str]]] = {}
    models = catalog.models()
    for job, (_, settings) in GUIDE_SETTINGS.items():
        totals[job] = [
            (estimate(_preset(m.id, **settings)).total_bytes, m.id)
            for m in models.values()
            if m.architecture in ("decoder", "moe")
        ]
    classes: dict[int, dict[str, str | None]] = {}
    for budget in sorted({g.usable_bytes for g in catalog.gpus().values()}):
        row: dict[str, str | None] = {}
        for job, fitting in totals.items():
            ok = [(models[i].params, i) for size, i in fitting if size <= budget]
            row[job] = max(ok)[1] if ok else None
        classes[budget] = row
    return classes


def _model_cell(model_id: str | None) -> tuple[str, str]:
    """The cell's text and its sort key (parameters)."""
    if model_id is None:
        return "none", "0"
    m = catalog.models()[model_id]
    return f"{escape(m.name)} <small>({_billions(m.params)})</small>", str(m.params)


def gpu_guide(values: Values) -> dict[str, Any]:
    """The GPU catalog as a sortable table, and what each memory size can run."""
    del values
    classes = size_class_table()
    head = (
        "GPU",
        "Type",
        "Memory (GB)",
        "Bandwidth (GB/s)",
        "BF16 TFLOPS",
        *(label for label, _ in GUIDE_SETTINGS.values()),
    )
    numeric = {2, 3, 4, 5, 6, 7, 8}
    th = "".join(
        f'<th scope="col" data-type="{"number" if i in numeric else "text"}" aria-sort="none">'
        '<button type="button" class="sort">'
        f"{escape(h)}</button></th>"
        for i, h in enumerate(head)
    )
    body = []
    for g in catalog.gpus().values():
        usable = g.usable_bytes
        cells = [
            (escape(g.name), g.name),
            (escape(g.kind), g.kind),
            (
                scaled(usable, 10**9, 1)
                + (
                    f" <small>of {scaled(g.memory_bytes, 10**9, 1)}</small>"
                    if g.usable_fraction
                    else ""
                ),
                str(usable),
            ),
            (f"{(g.bandwidth_bytes_per_s or 0) / 1e9:,.0f}", str(g.bandwidth_bytes_per_s or 0)),
            (f"{g.fp16_tflops:,}" if g.fp16_tflops else "–", str(g.fp16_tflops or 0)),
            *(_model_cell(classes[usable][job]) for job in GUIDE_SETTINGS),
        ]
        body.append(
            "<tr>" + "".join(f'<td data-sort="{escape(k)}">{t}</td>' for t, k in cells) + "</tr>"
        )
    gpu_table = (
        '<div class="table-scroll" tabindex="0" role="region" aria-label="GPU catalog">'
        '<table class="tool-table sortable" id="gpu-table">'
        "<caption>GPUs in nnmem's catalog; choose a column heading to sort</caption>"
        f"<thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
    class_rows = []
    for budget, row in classes.items():
        names = [g.name for g in catalog.gpus().values() if g.usable_bytes == budget]
        class_rows.append(
            (
                f"<strong>{human(budget)}</strong><br><small>{escape(', '.join(names))}</small>",
                *(_model_cell(row[job])[0] for job in GUIDE_SETTINGS),
            )
        )
    class_table = _table(
        ("Usable memory", *(label for label, _ in GUIDE_SETTINGS.values())),
        class_rows,
        "The largest catalog language model for each job, by memory size",
    )
    return {"html": "", "values": {}, "parts": {"gpus": gpu_table, "sizes": class_table}}


# --- compression (prerendered) ------------------------------------------------------------

COMPRESSION_PRESETS = ("llama-3.1-8b", "qwen2.5-32b", "llama-3.1-70b")
COMPRESSION_FORMATS = (
    Format.FP32, Format.BF16, Format.FP8, Format.INT8, Format.GPTQ, Format.AWQ,
    Format.NF4, Format.NF4_DQ, Format.Q8_0, Format.Q6_K, Format.Q5_K_M, Format.Q4_K_M,
    Format.Q4_0,
)  # fmt: skip


def weight_bytes(preset: str, fmt: Format) -> int:
    """The weights of a catalog model stored in ``fmt``, as the calculator counts them."""
    scenario = _preset(preset, mode="inference", precision=fmt.value, batch_size=1, seq_len=1)
    return estimate(scenario).component("weights").bytes


def compression(values: Values) -> dict[str, Any]:
    """The memory of each weight format for a few catalog models, and a distillation pair."""
    del values
    models = catalog.models()
    head = ("Format", "Bits per weight", *(models[p].name for p in COMPRESSION_PRESETS))
    base = {p: weight_bytes(p, Format.BF16) for p in COMPRESSION_PRESETS}
    rows = []
    for fmt in COMPRESSION_FORMATS:
        cells = []
        for p in COMPRESSION_PRESETS:
            size = weight_bytes(p, fmt)
            cells.append(f"{human(size)} <small>({size * 100 / base[p]:.0f}% of BF16)</small>")
        rows.append((escape(FORMATS[fmt].label), f"{float(bits(fmt)):.3g}", *cells))
    formats = _table(
        head,
        rows,
        "Weight memory by format (quantized formats keep "
        "embeddings and norms in 16-bit; GGUF quantizes every tensor)",
    )
    train = {"mode": "training", "precision": "amp_bf16", "batch_size": 32, "seq_len": 128}
    pair = []
    for p in ("bert-base-uncased", "distilbert-base-uncased"):
        e = estimate(_preset(p, **train))
        pair.append((escape(models[p].name), f"{models[p].params:,}", human(e.total_bytes)))
    distill = _table(
        ("Model", "Parameters", "Training memory (AMP, AdamW, batch 32 × 128)"),
        pair,
        "A distilled student against its teacher",
    )
    return {"html": "", "values": {}, "parts": {"formats": formats, "distillation": distill}}


# --- PyTorch memory (prerendered) ---------------------------------------------------------

PYTORCH_EXAMPLE: dict[str, object] = {
    "model": "preset",
    "preset": "llama-3.2-1b",
    "mode": "training",
    "precision": "amp_bf16",
    "optimizer": "adamw",
    "batch_size": 4,
    "seq_len": 1024,
}
# Which counter sees each component. The cuBLAS workspaces are DataPtrs from the caching
# allocator (aten/src/ATen/cuda/CublasHandlePool.cpp), kept for the life of the handle,
# so memory_allocated includes them; the CUDA context is the driver's, outside PyTorch.
COUNTERS = {
    "weights": "memory_allocated, from model.to('cuda')",
    "gradients": "memory_allocated, from backward until zero_grad(set_to_none=True)",
    "optimizer_state": "memory_allocated, from the first optimizer.step()",
    "activations": "memory_allocated, from the forward pass until backward frees them",
    "temporaries": "memory_allocated, briefly: only max_memory_allocated sees them",
    "kv_cache": "memory_allocated, growing with every generated token",
    "allocator_reserve": "memory_reserved − memory_allocated: cached blocks, fragmentation",
    "cublas_workspace": "memory_allocated: allocated through the caching allocator and kept",
    "cuda_context": "only nvidia-smi and mem_get_info: outside PyTorch's allocator",
}
IN_ALLOCATED = ("cublas_workspace",)
IN_RESERVED = ("cublas_workspace", "allocator_reserve")


def pytorch_memory(values: Values) -> dict[str, Any]:
    """An example estimate with each component mapped to the counter that sees it."""
    del values
    e = estimate(parse(PYTORCH_EXAMPLE))
    rows = [
        (escape(c.label), human(c.bytes), escape(COUNTERS.get(c.key, "")))
        for c in e.components
        if c.bytes
    ]
    sizes = e.component_sizes()
    allocated = e.tensor_peak_bytes + sum(sizes.get(k, 0) for k in IN_ALLOCATED)
    reserved = e.tensor_peak_bytes + sum(sizes.get(k, 0) for k in IN_RESERVED)
    table = _table(
        ("nnmem component", "Size", "Where PyTorch reports it"),
        rows,
        "Llama-3.2-1B, AMP BF16 training with AdamW, batch 4 × 1,024 tokens",
    )
    figures = [
        _out(
            "allocated",
            "≈ torch.cuda.max_memory_allocated()",
            allocated,
            human(allocated),
        ),
        _out("reserved", "≈ torch.cuda.max_memory_reserved()", reserved, human(reserved)),
        _out("nvidia_smi", "≈ nvidia-smi", e.total_bytes, human(e.total_bytes)),
    ]
    example = f'<dl class="figures">{"".join(figures)}</dl>{table}'
    return {"html": "", "values": {}, "parts": {"example": example}}


# --- the entry point ----------------------------------------------------------------------


def _gpu_field(default: str) -> ToolField:
    return ToolField(
        "gpu",
        "GPU",
        "Bandwidth and peak BF16 TFLOPS come from nnmem's GPU catalog.",
        "choice",
        default,
        options=_gpu_options(need_flops=True),
    )


TOOLS: dict[str, Tool] = {
    "parameter-count": Tool(
        (
            ToolField(
                "source",
                "Describe the model by",
                "Fill in the fields, or paste a model's config.json.",
                "choice",
                "fields",
                options=PC_SOURCE,
            ),
            ToolField(
                "preset",
                "Catalog model",
                "Its published config.json, as nnmem's catalog holds it.",
                "choice",
                "mixtral-8x7b",
                options=_transformer_options(),
                when="source=preset",
            ),
            *(
                ToolField(
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
            ToolField(
                "tie_word_embeddings",
                "Tied embeddings",
                "Whether the LM head shares the input embedding matrix (tie_word_embeddings).",
                "choice",
                "no",
                options=YES_NO,
                when="source=fields",
            ),
            ToolField(
                "config",
                "config.json",
                "Paste the whole file; GPT-2, BERT, T5, ViT and MoE configs are read too.",
                "text",
                json.dumps(LLAMA_CONFIG, indent=1),
                when="source=config",
            ),
        ),
        parameter_count,
    ),
    "inference-latency": Tool(
        (
            ToolField(
                "preset",
                "Model",
                "A catalog language model.",
                "choice",
                "llama-3.1-8b",
                options=_llm_options(),
            ),
            ToolField(
                "precision",
                "Weight format",
                "How the weights are stored.",
                "choice",
                "bf16",
                options=LAT_PRECISIONS,
            ),
            ToolField(
                "kv_cache_dtype",
                "KV-cache type",
                "FP8 halves the cache that every decode step reads.",
                "choice",
                "auto",
                options=KV_TYPES,
            ),
            _gpu_field("h100-sxm-80gb"),
            ToolField(
                "batch_size",
                "Batch size",
                "Sequences generated together.",
                "number",
                "1",
                inputmode="numeric",
            ),
            ToolField(
                "prompt_tokens",
                "Prompt tokens",
                "Tokens read before the first generated one.",
                "number",
                "1024",
                "tokens",
                "numeric",
            ),
            ToolField(
                "new_tokens",
                "Generated tokens",
                "Tokens generated per sequence.",
                "number",
                "256",
                "tokens",
                "numeric",
            ),
            ToolField(
                "bandwidth_efficiency",
                "Bandwidth efficiency",
                "Share of the peak memory bandwidth decode kernels reach; 60-85% is typical.",
                "number",
                "75",
                "%",
            ),
            ToolField(
                "prefill_mfu",
                "Prefill utilisation (MFU)",
                "Share of the peak FLOPS the prompt's matmuls reach; 40-70% is typical.",
                "number",
                "50",
                "%",
            ),
        ),
        inference_latency,
    ),
    "training-cost": Tool(
        (
            ToolField(
                "params_billions",
                "Model size",
                "Parameters N, in billions.",
                "number",
                "7",
                "billion",
            ),
            ToolField(
                "tokens_billions",
                "Training tokens",
                "Tokens D seen in training, in billions (Llama 2 used 2,000).",
                "number",
                "2000",
                "billion",
            ),
            _gpu_field("h100-sxm-80gb"),
            ToolField(
                "num_gpus",
                "Number of GPUs",
                "GPUs training together.",
                "number",
                "64",
                inputmode="numeric",
            ),
            ToolField(
                "mfu",
                "Utilisation (MFU)",
                "Share of peak FLOPS achieved; large runs report 35-55%.",
                "number",
                "40",
                "%",
            ),
            ToolField(
                "price_per_gpu_hour",
                "Price per GPU-hour",
                "What one GPU costs per hour, in your currency.",
                "number",
                "2.50",
            ),
        ),
        training_cost,
    ),
    "gpu-guide": Tool((), gpu_guide, live=False),
    "compression": Tool((), compression, live=False),
    "pytorch-memory": Tool((), pytorch_memory, live=False),
}


def _answer(tool: str, request: str) -> dict[str, Any]:
    if tool not in TOOLS:
        raise NnmemError.single(
            "tool", f"Tool must be one of {', '.join(TOOLS)} (got {shown(tool)})."
        )
    try:
        data = json.loads(request)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise NnmemError.single("fields", "The request must hold a fields object.")
    # A form sends strings; JSON numbers and flags are read as their JSON text.
    values = {
        str(k): "" if v is None else v if isinstance(v, str) else json.dumps(v)
        for k, v in data["fields"].items()
    }
    return {"ok": True, **TOOLS[tool].run(values)}


def call(tool: str, request: str) -> str:
    """Answer one request ``{"fields": {key: value}}`` for ``tool``; never raises.

    >>> reply = json.loads(call("training-cost", json.dumps({"fields": {
    ...     "params_billions": "7", "tokens_billions": "1000", "gpu": "h100-sxm-80gb",
    ...     "num_gpus": "8", "mfu": "50", "price_per_gpu_hour": "2"}})))
    >>> reply["values"]["flops"], reply["values"]["cost"]
    ('42000000000000000000000', '47166.6')
    >>> json.loads(call("training-cost", '{"fields": {"mfu": "0"}}'))["errors"][0]
    {'field': 'params_billions', 'message': 'Model size is required: enter a number of \
billions of parameters from 0.001 to 100,000.'}
    """
    try:
        return json.dumps(_answer(tool, request))
    except NnmemError as error:
        problems = [{"field": p.field, "message": p.message} for p in error.problems]
        return json.dumps({"ok": False, "errors": problems})
    except Exception as error:  # the page must get an answer, never a traceback
        return json.dumps({"ok": False, "errors": [], "fatal": f"{type(error).__name__}: {error}"})


def defaults(tool: str) -> Values:
    """The tool's form values as the page is built."""
    return {f.key: f.default for f in TOOLS[tool].fields}


def prerender(tool: str) -> dict[str, Any]:
    """What the build puts in a tool's page: its form, defaults and default answer."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}: choose one of {', '.join(TOOLS)}")
    values = defaults(tool)
    reply = json.loads(call(tool, json.dumps({"fields": values})))
    if not reply["ok"]:
        raise ValueError(f"tool {tool} fails on its own defaults: {reply}")
    return {
        "name": tool,
        "fields": TOOLS[tool].fields,
        "values": values,
        "reply": reply,
        "live": TOOLS[tool].live,
    }
