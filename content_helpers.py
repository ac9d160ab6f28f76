"""What a content page's body can call: numbers computed by nnmem, formatted by nnmem.

A page body in ``content/*.md`` is a Jinja template rendered before Markdown. It names
scenarios in the calculator's own schema and prints what the estimator says about them:

    {% set bert = example(model="preset", preset="bert-base-uncased", batch_size=32) %}
    Training needs {{ bert.total }}; [open it]({{ root }}index.html?{{ bert.query }}).

Nothing here computes memory: every figure comes from :func:`nnmem.estimate` and every
unit from :mod:`nnmem.units`, so the text follows the engine when a constant changes.
Equations are LaTeX turned into MathML at build time (``latex2mathml``, a build-only
dependency); the page needs no script to show them.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from latex2mathml.converter import convert

from nnmem import catalog, solvers
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.models.architecture import Transformer, parameter_counts
from nnmem.render.html import table_html
from nnmem.render.text import describe, model_name
from nnmem.result import COMPONENTS, Estimate
from nnmem.scenario import LABELS, GenericModel, Precision, parse
from nnmem.terms import Term
from nnmem.units import count as units_count
from nnmem.units import human, percent, plain
from nnmem.web.links import query_string

ROOT = Path(__file__).resolve().parent
ACCURACY = ROOT / "benchmarks" / "accuracy"
METRIC_LABELS = {
    "weights": "Weights",
    "gradients": "Gradients",
    "optimizer_state": "Optimizer state",
    "activations": "Activations",
    "kv_cache": "KV cache",
    "peak": "Peak",
}


class ContentError(Exception):
    """A page asks for something nnmem cannot give; the message says what."""


# --- raw HTML that Markdown must not touch --------------------------------------------------


class Stash:
    """Raw HTML fragments of one page, held out of Markdown behind placeholder words."""

    def __init__(self) -> None:
        self.fragments: list[tuple[str, bool]] = []

    def keep(self, fragment: str, block: bool = False) -> str:
        """Hold ``fragment`` back and return the word that stands for it."""
        self.fragments.append((fragment, block))
        return f"NNMEMRAW{len(self.fragments) - 1}X"

    def math(self, latex: str, block: bool = False) -> str:
        """An equation, written in LaTeX, as MathML.

        >>> s = Stash(); s.restore(s.math("x^2"))
        '<math display="inline"><mrow><msup><mi>x</mi><mn>2</mn></msup></mrow></math>'
        """
        mathml = convert(latex, display="block" if block else "inline")
        # The HTML parser puts <math> in the MathML namespace itself.
        mathml = mathml.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "")
        if block:
            # A wide equation scrolls sideways on a phone; a scrolling region must take the
            # keyboard focus and have a name (axe: scrollable-region-focusable).
            mathml = (
                '<div class="math-scroll" tabindex="0" role="region" aria-label="Equation">'
                f"{mathml}</div>"
            )
        return self.keep(mathml, block=block)

    def table(self, example: Example, binary: bool = False) -> str:
        """The calculator's breakdown table for ``example``."""
        return self.keep(table_html(example.estimate, binary), block=True)

    def restore(self, html: str) -> str:
        """Put every fragment back; a block one replaces the paragraph it stands alone in."""
        for index in reversed(range(len(self.fragments))):
            fragment, block = self.fragments[index]
            word = f"NNMEMRAW{index}X"
            if block:
                html = html.replace(f"<p>{word}</p>", fragment)
            html = html.replace(word, fragment)
        return html


# --- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A scenario with its estimate, and its figures as the calculator shows them."""

    fields: Mapping[str, Any]
    estimate: Estimate

    @property
    def scenario(self) -> Any:
        """The parsed scenario."""
        return self.estimate.scenario

    def but(self, **changes: Any) -> Example:
        """The same scenario with some fields changed."""
        return example(**{**self.fields, **changes})

    @property
    def query(self) -> str:
        """The calculator's query string for this scenario."""
        return query_string(self.scenario)

    @property
    def description(self) -> str:
        """The calculator's one-line summary of the scenario."""
        return describe(self.scenario)

    @property
    def model(self) -> str:
        """The model's display name."""
        return model_name(self.scenario)

    @property
    def params(self) -> str:
        """The parameter count in words: ``6.74 billion``."""
        return count(self.estimate_params)

    @property
    def estimate_params(self) -> int:
        """The model's parameter count."""
        model = self.scenario.model
        if isinstance(model, GenericModel):
            return model.params
        if isinstance(model, Transformer):
            return sum(parameter_counts(model).values())
        from nnmem.models.cnn import parameter_breakdown

        return sum(parameter_breakdown(model).values())

    @property
    def total(self) -> str:
        """Everything the GPU holds at the peak, as ``nvidia-smi`` counts it."""
        return human(self.estimate.total_bytes)

    @property
    def total_gib(self) -> str:
        """The total in binary units (GiB), as ``nvidia-smi`` prints it."""
        return human(self.estimate.total_bytes, binary=True)

    @property
    def total_bytes(self) -> int:
        """The total in bytes."""
        return self.estimate.total_bytes

    @property
    def tensor_peak(self) -> str:
        """Live tensors at the peak, as ``torch.cuda.max_memory_allocated`` reports."""
        return human(self.estimate.tensor_peak_bytes)

    @property
    def peak_phase(self) -> str:
        """The phase that holds the peak, in lower case: ``backward``."""
        return self.estimate.peak_phase.label.lower()

    def bytes(self, key: str) -> int:
        """The largest size component ``key`` reaches in any phase, in bytes."""
        self._check(key)
        return self.estimate.component_sizes().get(key, 0)

    def size(self, key: str) -> str:
        """The largest size component ``key`` reaches, formatted."""
        return human(self.bytes(key))

    def at_peak(self, key: str) -> str:
        """What component ``key`` holds at the peak, formatted."""
        self._check(key)
        return human(sum(c.bytes for c in self.estimate.components if c.key == key))

    def share(self, key: str) -> str:
        """Component ``key`` at the peak as a share of the total."""
        self._check(key)
        held = sum(c.bytes for c in self.estimate.components if c.key == key)
        return percent(held, self.estimate.total_bytes)

    def per_param(self, key: str) -> str:
        """Bytes per parameter of component ``key`` (its largest size over the parameters)."""
        return number(Fraction(self.bytes(key), self.estimate_params))

    @property
    def states(self) -> str:
        """Weights, gradients and optimizer state together (their largest sizes)."""
        return human(self._state_bytes())

    @property
    def states_per_param(self) -> str:
        """Bytes per parameter of weights, gradients and optimizer state together."""
        return number(Fraction(self._state_bytes(), self.estimate_params))

    def states_over(self, other: int) -> str:
        """Weights, gradients and optimizer state together as a multiple of ``other`` bytes."""
        return number(Fraction(self._state_bytes(), other), 1)

    def _state_bytes(self) -> int:
        return sum(self.bytes(k) for k in ("weights", "gradients", "optimizer_state"))

    def formula(self, key: str) -> str:
        """The engine's formula for component ``key`` at its peak: its terms' formulas added.

        >>> example(model="preset", preset="gpt2", precision="fp32").formula("logits")
        '(4·b·s·V + 8·b·s) B + (4·b·s·V) B'
        """
        return " + ".join(t.formula for t in self.terms(key))

    def phase_bytes(self, key: str, phase: str) -> int:
        """What component ``key`` holds at the peak of one phase (``prefill``, ``decode``…)."""
        self._check(key)
        for p in self.estimate.phases:
            if p.name == phase:
                return p.by_key().get(key, 0)
        names = ", ".join(p.name for p in self.estimate.phases)
        raise ContentError(f"no phase {phase!r}: the phases are {names}")

    def phase_size(self, key: str, phase: str) -> str:
        """:meth:`phase_bytes`, formatted."""
        return human(self.phase_bytes(key, phase))

    def terms(self, key: str) -> tuple[Term, ...]:
        """The terms that make up component ``key`` at its peak, formula and source."""
        self._check(key)
        for phase in sorted(self.estimate.phases, key=lambda p: -p.by_key().get(key, 0)):
            found = tuple(t for t in phase.terms if t.key == key)
            if found:
                return found
        return tuple(t for t in self.estimate.overheads if t.key == key)

    def budget(self, gpu_id: str) -> int:
        """What the scenario may fill on a catalog GPU: its usable memory less the headroom."""
        return solvers.budget_for(self.scenario, catalog_gpu(gpu_id).usable_bytes)

    def fits(self, gpu_id: str) -> bool:
        """Whether the scenario fits a catalog GPU, its headroom kept free."""
        return solvers.fits(self.scenario, self.budget(gpu_id), gpu_id)

    def max_batch(self, gpu_id: str) -> int:
        """The largest batch that fits a catalog GPU."""
        return solvers.max_batch(self.scenario, self.budget(gpu_id), gpu_id)

    @property
    def context_tokens(self) -> int:
        """The model's context in tokens (0 when it states none)."""
        limit = solvers.context_limit(self.scenario)
        return 0 if limit is None else limit.tokens

    def max_seq_len(self, gpu_id: str) -> int:
        """The longest sequence that fits a catalog GPU (0 when none does)."""
        return solvers.max_seq_len(self.scenario, self.budget(gpu_id), gpu_id)

    def min_gpus(self, gpu_id: str) -> int | None:
        """The fewest GPUs of a kind the scenario fits on (sharding as set), if any."""
        found = solvers.min_gpus(self.scenario, self.budget(gpu_id), gpu_id)
        return None if found is None else found.num_gpus

    def _check(self, key: str) -> None:
        if key not in COMPONENTS:
            raise ContentError(f"no component {key!r}: the components are {', '.join(COMPONENTS)}")


def example(**fields: Any) -> Example:
    """Estimate a scenario given in the calculator's schema.

    >>> example(params_millions=1000, precision="bf16", mode="inference").size("weights")
    '2.00 GB'
    """
    try:
        return Example(fields, estimate(parse(fields)))
    except NnmemError as error:
        raise ContentError(f"scenario {fields}: {error}") from error


def catalog_gpu(gpu_id: str) -> catalog.Gpu:
    """A catalog GPU by id."""
    gpus = catalog.gpus()
    if gpu_id not in gpus:
        raise ContentError(f"no GPU {gpu_id!r} in the catalog")
    return gpus[gpu_id]


def catalog_model(model_id: str) -> catalog.ModelEntry:
    """A catalog model by id."""
    models = catalog.models()
    if model_id not in models:
        raise ContentError(f"no model {model_id!r} in the catalog")
    return models[model_id]


@cache
def _catalog_transformers() -> tuple[Transformer, ...]:
    from nnmem.models.architecture import from_config

    return tuple(
        from_config(m.config) for m in catalog.models().values() if m.architecture != "cnn"
    )


def catalog_range(attribute: str) -> str:
    """The smallest and largest value of a transformer field across the catalog's models.

    >>> catalog_range("layers")
    '6 – 126'
    """
    values = [getattr(t, attribute) for t in _catalog_transformers()]
    values = [v for v in values if v]
    if not values:
        raise ContentError(f"no catalog model has a {attribute!r}")
    return f"{number(min(values))} – {number(max(values))}"


def catalog_context_range() -> str:
    """The shortest and longest context of the catalog's language models, in tokens."""
    from nnmem.scenario import parse

    tokens = []
    for m in catalog.models().values():
        if m.architecture in ("decoder", "moe", "encoder", "encoder-decoder"):
            limit = solvers.context_limit(parse({"model": "preset", "preset": m.id}))
            if limit is not None:
                tokens.append(limit.tokens)
    return f"{number(min(tokens))} – {number(max(tokens))}"


def catalog_params_range() -> str:
    """The smallest and largest parameter count in the catalog, with the models' names."""
    models = sorted(catalog.models().values(), key=lambda m: m.params)
    small, large = models[0], models[-1]
    return f"{count(small.params)} ({small.name}) – {count(large.params)} ({large.name})"


# --- plain numbers --------------------------------------------------------------------------


def number(value: Fraction | int | float, places: int = 2) -> str:
    """A number without trailing zeros: ``4``, ``0.52``, ``1,024``.

    >>> number(Fraction(9, 2)), number(16), number(1024), number(0.5156)
    ('4.5', '16', '1,024', '0.52')
    """
    return plain(value, places)


def per_param(*parts: tuple[Example, str]) -> str:
    """Bytes per parameter of components taken from several examples, added up: the
    ZeRO paper's mixed-precision count is pure 16-bit weights and gradients plus fp32
    weights and Adam moments.

    >>> fp32 = example(params_millions=110)
    >>> per_param((fp32, "weights"), (fp32, "optimizer_state"))
    '12'
    """
    return number(sum(Fraction(e.bytes(key), e.estimate_params) for e, key in parts))


def count(n: int) -> str:
    """A parameter count in words.

    >>> count(6_738_415_616), count(109_482_240), count(25_557_032)
    ('6.74 billion', '109.5 million', '25.6 million')
    """
    return units_count(n, words=True)


def bits_per_weight(precision: str) -> str:
    """Bits a stored weight takes in a format, scales and zeros included."""
    from nnmem.formats import bits

    return number(bits(Precision(precision).weight_format), 3)


def label(value: str, enum: str = "precision") -> str:
    """The calculator's label for an option: ``amp_bf16`` → ``BF16 mixed precision (AMP)``."""
    for member, text in LABELS.items():
        if member.value == value and type(member).__name__.lower() == enum.replace("_", ""):
            return text
    raise ContentError(f"no {enum} option {value!r}")


# --- the accuracy suite ---------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyCase:
    """One measured case and its rows: metric, measured, estimated, error."""

    case: str
    rows: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Accuracy:
    """The accuracy suite's comparison (``accuracy.json``), summarised for a page."""

    cases: tuple[AccuracyCase, ...]
    tolerance: Mapping[str, float]
    environment: Mapping[str, str]
    gaps: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    def cause(self, row: Mapping[str, Any]) -> str:
        """Why a row is outside its tolerance, as ``known_gaps.json`` records it."""
        return str(row.get("note") or self.gaps.get(row["case"], {}).get(row["metric"], ""))

    @property
    def outside(self) -> list[Mapping[str, Any]]:
        """The rows outside their tolerance."""
        return [r for r in self.rows if not r["within_tolerance"]]

    def error_range(self, metric: str) -> str:
        """The smallest and largest signed error of a metric: ``−20.23% to +4.11%``."""
        errors = self.errors(metric)
        if not errors:
            return "–"
        return f"{signed_percent(min(errors))} to {signed_percent(max(errors))}"

    @property
    def rows(self) -> list[Mapping[str, Any]]:
        """Every row."""
        return [row for case in self.cases for row in case.rows]

    def errors(self, metric: str) -> list[float]:
        """The relative errors of one metric over all cases."""
        return [float(r["error"]) for r in self.rows if r["metric"] == metric]

    def largest_error(self, metric: str) -> str:
        """The largest absolute error of a metric, as a percentage."""
        return signed_percent(max(self.errors(metric), key=abs, default=0.0))

    def median_error(self, metric: str) -> str:
        """The median absolute error of a metric, as a percentage."""
        values = [abs(e) for e in self.errors(metric)]
        return f"{(statistics.median(values) if values else 0.0) * 100:.2f}%"

    def tolerance_of(self, metric: str) -> str:
        """A metric's tolerance, as a percentage."""
        return signed_percent(self.tolerance[metric], sign=False)

    @property
    def all_within(self) -> bool:
        """Whether every row is within its tolerance."""
        return all(r["within_tolerance"] for r in self.rows)

    @property
    def within_count(self) -> int:
        """Rows within their tolerance."""
        return sum(1 for r in self.rows if r["within_tolerance"])

    @property
    def metrics(self) -> list[str]:
        """The metrics present, in display order."""
        present = {r["metric"] for r in self.rows}
        return [m for m in METRIC_LABELS if m in present]


def signed_percent(fraction: float, sign: bool = True, places: int = 2) -> str:
    """A relative error as a percentage: ``+1.94%``.

    >>> signed_percent(0.0194), signed_percent(-0.00001), signed_percent(0.05, sign=False)
    ('+1.94%', '-0.00%', '5%')
    """
    if not sign:
        return f"{number(fraction * 100, places)}%"
    return f"{fraction * 100:+.{places}f}%"


def load_accuracy(path: Path, measured: Path | None = None) -> Accuracy | None:
    """Read a comparison file (``accuracy.json`` schema); None when it does not exist."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    cases: dict[str, list[Mapping[str, Any]]] = {}
    for row in data["rows"]:
        cases.setdefault(row["case"], []).append(row)
    environment: Mapping[str, str] = {}
    if measured is not None and measured.is_file():
        environment = json.loads(measured.read_text(encoding="utf-8")).get("environment", {})
    gaps_file = path.parent / "known_gaps.json"
    gaps: Mapping[str, Mapping[str, str]] = {}
    if gaps_file.is_file():
        gaps = json.loads(gaps_file.read_text(encoding="utf-8")).get("gaps", {})
    return Accuracy(
        tuple(AccuracyCase(case, tuple(rows)) for case, rows in sorted(cases.items())),
        data["tolerance"],
        environment,
        gaps,
    )


def accuracy_table(accuracy: Accuracy, caption: str) -> str:
    """Every case and metric: measured, estimated, error, and whether it is within tolerance."""
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in ("Case", "Metric", "Measured", "Estimated", "Error", "Within tolerance")
    )
    body = []
    for case in accuracy.cases:
        for i, row in enumerate(case.rows):
            first = (
                f'<th scope="rowgroup" rowspan="{len(case.rows)}"><code>{escape(case.case)}'
                "</code></th>"
                if i == 0
                else ""
            )
            ok = "yes" if row["within_tolerance"] else "no"
            cause = accuracy.cause(row)
            note = f' <span class="aside">{escape(cause)}</span>' if cause else ""
            body.append(
                f'<tr data-case="{escape(case.case)}" data-metric="{escape(row["metric"])}">'
                f"{first}<td>{escape(METRIC_LABELS.get(row['metric'], row['metric']))}{note}</td>"
                f'<td class="num">{human(int(row["measured"]))}</td>'
                f'<td class="num">{human(int(row["estimated"]))}</td>'
                f'<td class="num">{signed_percent(float(row["error"]))}</td>'
                f'<td class="{ok}">{ok}</td></tr>'
            )
    return (
        # A region that may scroll sideways must take the keyboard focus (axe:
        # scrollable-region-focusable), and a focusable region needs a name.
        f'<div class="table-scroll" tabindex="0" role="region" aria-label="{escape(caption)}">'
        f'<table class="accuracy"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


@cache
def accuracy() -> Accuracy | None:
    """The CPU accuracy suite's comparison."""
    return load_accuracy(ACCURACY / "accuracy.json", ACCURACY / "measured.json")


@cache
def accuracy_cuda() -> Accuracy | None:
    """The comparison against real CUDA runs, when the suite has been run on a GPU."""
    return load_accuracy(ACCURACY / "accuracy_cuda.json", ACCURACY / "measured_cuda.json")


# --- independent published checks -----------------------------------------------------------

_LLAMA_2_7B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}
_STARCODER = {
    "model_type": "gpt_bigcode",
    "n_embd": 6144,
    "n_layer": 40,
    "n_head": 48,
    "n_inner": 24576,
    "vocab_size": 49152,
    "n_positions": 8192,
    "multi_query": True,
    "architectures": ["GPTBigCodeForCausalLM"],
}
_BERT_LARGE_CLS = {
    "model_type": "bert",
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "architectures": ["BertForSequenceClassification"],
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}
_HF_GUIDE = {
    "model": "transformer",
    "config": _BERT_LARGE_CLS,
    "seq_len": 512,
    "attention": "eager",
    "cuda_context_mib": 1343,
    "optimizer_impl": "for_loop",
    "batch_size": 1,
    "grad_accum_steps": 4,
}
_HF_GUIDE_SOURCE = (
    "Hugging Face transformers, single-GPU training guide (perf_train_gpu_one, v4.21): "
    "bert-large classification, V100 16 GB, nvidia-smi"
)
_LITGPT = "LitGPT resource tables (A100 40GB), max_memory_allocated"
# (source, what was run, scenario, figure compared, published bytes, tolerance): the same
# cases as tests/unit/test_published.py, which asserts each tolerance.
PUBLISHED: tuple[tuple[str, str, dict[str, Any], str, int, float], ...] = (
    (
        'Hugging Face, "Optimizing LLMs for speed and memory" (llm_tutorial_optimization), '
        "A100, max_memory_allocated",
        "octocoder (15.5B) generating 60 tokens, BF16",
        {
            "model": "transformer",
            "config": _STARCODER,
            "mode": "inference",
            "precision": "bf16",
            "seq_len": 64,
            "new_tokens": 60,
        },
        "tensor_peak",
        round(29.03 * 2**30),
        0.01,
    ),
    (
        'Hugging Face, "Optimizing LLMs for speed and memory" (llm_tutorial_optimization), '
        "A100, max_memory_allocated",
        "octocoder (15.5B) generating 60 tokens, LLM.int8",
        {
            "model": "transformer",
            "config": _STARCODER,
            "mode": "inference",
            "precision": "int8",
            "seq_len": 64,
            "new_tokens": 60,
        },
        "tensor_peak",
        round(15.22 * 2**30),
        0.05,
    ),
    (
        _LITGPT,
        "Llama 2 7B generating 50 tokens, BF16",
        {
            "model": "transformer",
            "config": _LLAMA_2_7B,
            "mode": "inference",
            "precision": "bf16",
            "seq_len": 64,
            "new_tokens": 50,
        },
        "tensor_peak",
        13_520_000_000,
        0.01,
    ),
    (
        _LITGPT,
        "Llama 2 7B generating 50 tokens, bitsandbytes NF4",
        {
            "model": "transformer",
            "config": _LLAMA_2_7B,
            "mode": "inference",
            "precision": "nf4",
            "seq_len": 64,
            "new_tokens": 50,
        },
        "tensor_peak",
        4_570_000_000,
        0.07,
    ),
    (
        _LITGPT,
        "Llama 2 7B generating 50 tokens, NF4 with double quantization",
        {
            "model": "transformer",
            "config": _LLAMA_2_7B,
            "mode": "inference",
            "precision": "nf4_dq",
            "seq_len": 64,
            "new_tokens": 50,
        },
        "tensor_peak",
        4_260_000_000,
        0.07,
    ),
    (
        _LITGPT,
        "Llama 2 7B LoRA r = 8 on q and v, 1,304 tokens, BF16",
        {
            "model": "transformer",
            "config": _LLAMA_2_7B,
            "precision": "bf16",
            "seq_len": 1304,
            "finetune": "lora",
            "lora_rank": 8,
            "lora_targets": "qv",
            "lora_dropout": 0.05,
        },
        "tensor_peak",
        21_300_000_000,
        0.05,
    ),
    (
        _HF_GUIDE_SOURCE,
        "batch 1, 4 accumulation steps, fp32",
        _HF_GUIDE,
        "total",
        8681 * 2**20,
        0.05,
    ),
    (
        _HF_GUIDE_SOURCE,
        "the same with gradient checkpointing",
        {**_HF_GUIDE, "checkpointing": "full"},
        "total",
        6775 * 2**20,
        0.05,
    ),
    (
        _HF_GUIDE_SOURCE,
        "the same with FP16 mixed precision",
        {**_HF_GUIDE, "checkpointing": "full", "precision": "amp_fp16"},
        "total",
        7275 * 2**20,
        0.05,
    ),
    (
        _HF_GUIDE_SOURCE,
        "the same with Adafactor",
        {**_HF_GUIDE, "checkpointing": "full", "precision": "amp_fp16", "optimizer": "adafactor"},
        "total",
        4847 * 2**20,
        0.05,
    ),
    (
        _HF_GUIDE_SOURCE,
        "the same with 8-bit AdamW",
        {**_HF_GUIDE, "checkpointing": "full", "precision": "amp_fp16", "optimizer": "adamw_8bit"},
        "total",
        5363 * 2**20,
        0.05,
    ),
    (
        "llama.cpp tools/quantize/README.md: file size",
        "Llama 3.1 8B, GGUF Q4_K_M",
        {"model": "preset", "preset": "llama-3.1-8b", "mode": "inference", "precision": "q4_k_m"},
        "weights",
        round(4.58 * 2**30),
        0.002,
    ),
    (
        "llama.cpp tools/quantize/README.md: file size",
        "Llama 3.1 8B, GGUF Q8_0",
        {"model": "preset", "preset": "llama-3.1-8b", "mode": "inference", "precision": "q8_0"},
        "weights",
        round(7.95 * 2**30),
        0.002,
    ),
)
FIGURE_LABELS = {
    "tensor_peak": "tensor peak",
    "total": "total",
    "weights": "weights",
}


@dataclass(frozen=True)
class PublishedCheck:
    """One published measurement against the calculator's figure for the same setup."""

    source: str
    what: str
    figure: str
    published: int
    estimated: int
    tolerance: float

    @property
    def error(self) -> float:
        """(estimated − published) / published."""
        return (self.estimated - self.published) / self.published


def published_checks() -> list[PublishedCheck]:
    """The published measurements the tests compare with, each with the engine's figure."""
    checks = []
    for source, what, fields, figure, published, tolerance in PUBLISHED:
        e = example(**fields).estimate
        estimated = {
            "tensor_peak": e.tensor_peak_bytes,
            "total": e.total_bytes,
            "weights": e.component_sizes().get("weights", 0),
        }[figure]
        checks.append(
            PublishedCheck(source, what, FIGURE_LABELS[figure], published, estimated, tolerance)
        )
    return checks


# --- what a page body sees ------------------------------------------------------------------


def helpers() -> dict[str, Callable[..., Any] | Any]:
    """The functions and data a content page may use, by name."""
    return {
        "example": example,
        "gpu": catalog_gpu,
        "catalog_model": catalog_model,
        "human": human,
        "gib": lambda n: human(n, binary=True),
        "percent": percent,
        "number": number,
        "count": count,
        "per_param": per_param,
        "bits_per_weight": bits_per_weight,
        "label": label,
        "accuracy": accuracy(),
        "accuracy_cuda": accuracy_cuda(),
        "signed_percent": signed_percent,
        "components": COMPONENTS,
        "accuracy_table": accuracy_table,
        "published_checks": published_checks,
        "metric_label": METRIC_LABELS.__getitem__,
        "catalog_size": len(catalog.models()),
        "catalog_range": catalog_range,
        "catalog_params_range": catalog_params_range,
        "catalog_context_range": catalog_context_range,
        "gpu_count": len(catalog.gpus()),
    }
