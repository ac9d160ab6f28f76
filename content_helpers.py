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

from nnmem import catalog, solvers, stacks
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
STACKS = ROOT / "benchmarks" / "stacks"
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

    @property
    def host(self) -> str:
        """Host (CPU) memory the stack keeps beside each GPU; "0 B" when none."""
        return human(self.estimate.host_bytes)

    @property
    def nvme(self) -> str:
        """NVMe swap space the stack keeps beside each GPU; "0 B" when none."""
        return human(self.estimate.nvme_bytes)

    @property
    def stack(self) -> str:
        """The training stack the estimate follows, by its label."""
        return LABELS[self.scenario.stack]

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


@cache
def allocator_replay() -> dict[str, Any] | None:
    """The recorded traces replayed through ``nnmem.allocator`` against the GPU's peaks
    (``python -m benchmarks.accuracy.allocator_replay --write``)."""
    path = ACCURACY / "allocator_replay.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def allocator_replay_table(caption: str) -> str:
    """Each replayed case: allocated and reserved peaks, replay against the GPU, and the
    share of the reserved peak that was free (cached) at that moment."""
    data = allocator_replay()
    if data is None:
        return ""
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in (
            "Case",
            "Allocated: replay",
            "GPU",
            "Error",
            "Reserved: replay",
            "GPU",
            "Error",
            "Cached at the reserved peak",
        )
    )
    body = []
    for case in data["cases"]:
        span = case["spans"][case["compared_span"]]
        cached = signed_percent(float(case["fragmentation_at_reserved_peak"]), False, 1)
        body.append(
            f'<tr data-replay-case="{escape(case["id"])}">'
            f'<th scope="row"><code>{escape(case["id"])}</code></th>'
            f'<td class="num">{human(int(span["allocated"]), binary=True)}</td>'
            f'<td class="num">{human(int(span["max_memory_allocated"]), binary=True)}</td>'
            f'<td class="num">{signed_percent(float(span["allocated_error"]))}</td>'
            f'<td class="num">{human(int(span["reserved"]), binary=True)}</td>'
            f'<td class="num">{human(int(span["max_memory_reserved"]), binary=True)}</td>'
            f'<td class="num">{signed_percent(float(span["reserved_error"]))}</td>'
            f'<td class="num">{cached}</td></tr>'
        )
    return (
        f'<div class="table-scroll" tabindex="0" role="region" aria-label="{escape(caption)}">'
        f'<table class="accuracy"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


# --- the runtimes: llama.cpp buffers measured on the CPU, vLLM start-up logs --------------

RUNTIMES = ROOT / "benchmarks" / "runtimes"


def _scroll_table(caption: str, head: tuple[str, ...], rows: list[str]) -> str:
    th = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    return (
        f'<div class="table-scroll" tabindex="0" role="region" aria-label="{escape(caption)}">'
        f'<table class="accuracy"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


@dataclass(frozen=True)
class RuntimesAccuracy:
    """nnmem's llama.cpp and vLLM figures against the measured and logged ones."""

    versions: dict[str, str]
    files: int
    contexts: int
    worst: dict[str, float]  # buffer -> largest |relative error| over the runs
    llama_table: str
    vllm_table: str
    vllm_worst: float  # largest |error| of the KV tokens over the E11 rows that start


@cache
def runtimes_accuracy() -> RuntimesAccuracy:
    """Every llama.cpp file (``measured_llamacpp.json``) and every E11 row, compared."""
    from benchmarks.runtimes.compare import E11
    from nnmem.runtimes import llamacpp as lc
    from nnmem.runtimes import vllm
    from nnmem.runtimes.models import serve_model

    data = json.loads((RUNTIMES / "measured_llamacpp.json").read_text())
    mib, gib = 2**20, 2**30
    worst = {"model": 0.0, "kv": 0.0, "output": 0.0, "compute": 0.0}
    rows, contexts = [], 0
    for f in data["files"]:
        shape = data["shapes"][f["model"]]
        cfg = dict(catalog.models()[shape.get("catalog", f["model"])].config)
        cfg["num_hidden_layers"] = shape["layers"]
        a = lc.GgufArch.from_config(cfg)
        ts = lc.f16_tensors(a) if f["ftype"] == "F16" else lc.quantized_tensors(a, f["ftype"])
        real = {t["name"]: t["type"] for t in f["tensors"]}
        same = sum(real[t.name] == t.type for t in ts)
        bufs = f["model_buffers_mib"]
        ours = lc.model_bytes(ts) / mib
        measured = bufs["CPU_Mapped"] + bufs.get("CPU_REPACK", 0)
        if "CPU_REPACK" in bufs:  # the repacked tensors' bytes sit in a second buffer
            model_err = lc.cpu_repack_bytes(ts) / mib / bufs["CPU_REPACK"] - 1
        else:
            model_err = ours / bufs["CPU_Mapped"] - 1
        worst["model"] = max(worst["model"], abs(model_err))
        kv_err = out_err = comp_err = 0.0
        for r in f["contexts"]:
            contexts += 1
            c = lc.Context(**r["context"])
            k, v = lc.kv_bytes(a, c)
            mk = sum(x["k_mib"] + x["v_mib"] for x in r["kv"])
            e = (k + v) / mib / mk - 1
            kv_err = e if abs(e) > abs(kv_err) else kv_err
            e = lc.output_bytes(a, c) / mib / sum(r["output"].values()) - 1
            out_err = e if abs(e) > abs(out_err) else out_err
            mc = sum((r.get("compute_exact") or r["compute"]).values())
            e = lc.compute_buffer_bytes(a, c) / mib / mc - 1
            comp_err = e if abs(e) > abs(comp_err) else comp_err
        worst["kv"] = max(worst["kv"], abs(kv_err))
        worst["output"] = max(worst["output"], abs(out_err))
        worst["compute"] = max(worst["compute"], abs(comp_err))
        layers = f"{shape['layers']} layers" if shape.get("catalog") else "full depth"
        rows.append(
            f'<tr data-file="{escape(f["model"])}-{escape(f["ftype"])}">'
            f'<th scope="row">{escape(f["model"])} ({layers})</th><td>{escape(f["ftype"])}</td>'
            f'<td class="num">{same}/{len(real)}</td>'
            f'<td class="num">{measured:,.1f}</td><td class="num">{signed_percent(model_err)}</td>'
            f'<td class="num">{len(f["contexts"])}</td>'
            f'<td class="num">{signed_percent(kv_err)}</td>'
            f'<td class="num">{signed_percent(out_err)}</td>'
            f'<td class="num">{signed_percent(comp_err)}</td></tr>'
        )
    llama_table = _scroll_table(
        "llama.cpp on the CPU: nnmem against the buffers llama.cpp logs, file by file "
        "(largest error over each file's contexts)",
        ("Model", "File type", "Tensor types as quantized", "Model buffer (MiB)",
         "Model error", "Contexts", "K and V", "Output", "Compute"),
        rows,
    )  # fmt: skip
    vrows, vworst = [], 0.0
    for model, fmt, tp, kv in E11:
        m = serve_model(model, fmt)
        sv = vllm.Serve(
            gpu_memory_bytes=int(79.18 * gib),
            max_model_len=16000,
            gpu_memory_utilization=0.9,
            tensor_parallel_size=tp,
            block_size=16,
        )
        b = vllm.budget(m, sv)
        ours_cap = vllm.capacity(m, sv, b.kv)
        logged = vllm.capacity(m, sv, int(kv * gib))
        if logged.tokens:
            err = ours_cap.tokens / logged.tokens - 1
            vworst = max(vworst, abs(err)) if model != "gpt-oss-120b" else vworst
            err_text = signed_percent(err)
        else:
            err_text = "both fail to start" if not vllm.starts(b, ours_cap) else "starts here only"
        vrows.append(
            f'<tr data-row="{escape(model)}-tp{tp}"><th scope="row">{escape(model)}</th>'
            f'<td>{escape(fmt)}</td><td class="num">{tp}</td>'
            f'<td class="num">{b.kv / gib:.2f} / {kv:.2f}</td>'
            f'<td class="num">{ours_cap.tokens:,} / {logged.tokens:,}</td>'
            f'<td class="num">{err_text}</td></tr>'
        )
    vllm_table = _scroll_table(
        "vLLM start-up logs (llm-d, H100, util 0.9, max_model_len 16,000): nnmem's KV memory "
        "and capacity against the logged ones",
        ("Model", "Weights", "TP", "KV GiB (nnmem / log)", "KV tokens (nnmem / log)", "Error"),
        vrows,
    )
    return RuntimesAccuracy(
        data["versions"], len(data["files"]), contexts, worst, llama_table, vllm_table, vworst
    )


# --- training stacks: published points and the CPU runs ------------------------------------

# What each missing feature of a published point is, for the "why" column.
FEATURES = {
    "sequence_parallel": "tensor parallelism with sequence parallelism (norms and dropout "
    "split along the sequence) and torchtitan's loss parallel logits",
    "pipeline_parallel": "pipeline parallelism: each rank holds only its stage's layers",
    "async_tp": "AsyncTP's overlapped collectives",
    "packing": "sample packing (the batch's real tokens, not the padded length)",
    "chunked_ce": "chunked cross-entropy: the fp32 logits exist one chunk at a time",
    "optimizer_in_backward": "optimizer-in-backward: each gradient is freed as soon as its "
    "parameter steps",
    "activation_offload": "activation offloading to the CPU",
    "paged_adamw_8bit": "bitsandbytes' paged 8-bit AdamW (state in unified memory)",
    "fsdp_root_unit": "FSDP's root unit (embeddings and head), gathered whole from forward "
    "to the end of backward",
    "paged_adamw": "bitsandbytes' PagedAdamW (32-bit states in paged memory the driver can "
    "evict to the host)",
    "litgpt_model": "LitGPT's own GPT code (litgpt/model.py), not the transformers code "
    "nnmem's tables follow",
}


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


@dataclass(frozen=True)
class StackPoint:
    """One published measurement against nnmem (``benchmarks/stacks/published.json``)."""

    data: Mapping[str, Any]

    @property
    def why(self) -> str:
        """What the engine lacks for this point, and the source's own caveats."""
        parts = [FEATURES.get(n, n) for n in self.data["needs"]]
        if self.data["note"]:
            parts.append(self.data["note"])
        return "; ".join(parts)


def published_points() -> list[StackPoint]:
    """The published training-stack points, as the scoreboard last computed them (a test
    checks every figure against today's engine)."""
    data = json.loads((STACKS / "published.json").read_text(encoding="utf-8"))
    return [StackPoint(p) for p in data["points"]]


def published_table(points: list[StackPoint], caption: str) -> str:
    """Setup, stack, measured, nnmem, error and why a point misses."""
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in (
            "Point",
            "Setup",
            "Measured",
            "nnmem",
            "Error",
            "Within 10%",
            "Why it misses; what nnmem lacks",
        )
    )
    metric = {
        "MR": "reserved",
        "MA": "allocated",
        "ACT": "active",
        "MA avg": "allocated after each step, mean",
    }
    body = []
    for point in points:
        d = point.data
        ok = "yes" if d["within_tolerance"] else "no"
        stated = "" if d["fully_stated"] else " (setup not fully stated)"
        measured = f"{d['measured']} {d['unit']} {metric.get(d['metric'], 'metric unstated')}"
        body.append(
            f'<tr data-point="{escape(d["id"])}"><th scope="row"><code>{escape(d["id"])}</code>'
            f"</th><td>{escape(d['setup'])}{escape(stated)}"
            f' <span class="aside">{escape(d["stack"])}; {escape(d["source"])}</span></td>'
            f'<td class="num">{escape(measured)}</td>'
            f'<td class="num">{d["nnmem"]} {escape(d["unit"])}</td>'
            f'<td class="num">{signed_percent(float(d["error"]), places=1)}</td>'
            f'<td class="{ok}">{ok}</td><td>{escape(point.why) or "—"}</td></tr>'
        )
    return (
        f'<div class="table-scroll" tabindex="0" role="region" aria-label="{escape(caption)}">'
        f'<table class="accuracy"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


# The small Llama of the CPU runs (benchmarks/stacks/common.py): vocabulary 4,096,
# hidden 256, MLP 688, 4 layers, 4 heads, 2 KV heads, untied head. By hand: a layer
# 725,504 values, the root 2,097,408, Ψ = 4,999,424, the largest tensor 1,048,576; under
# DeepSpeed's persistence threshold 788,736; left in 16-bit by a 4-bit load 2,099,456.
CPU_SIZES = stacks.ModelSizes(4_999_424, 725_504, 2_097_408, 1_048_576, 788_736, 2_099_456, 4)
# Live beside the model states in every run: 39 AdamW step counters of 4 B, rotary
# buffers (256 B) and the batch's token ids (2,048 B).
CPU_OTHER = 39 * 4 + 256 + 2_048


def stack_runs() -> list[dict[str, Any]]:
    """The CPU runs of each stack (``measured_stacks.json``) against ``nnmem.stacks``:
    run, figure, measured bytes, nnmem bytes, note."""
    cases: dict[str, Any] = json.loads(
        (STACKS / "measured_stacks.json").read_text(encoding="utf-8")
    )["cases"]

    def rank0(case: str) -> Mapping[str, Any]:
        found: Mapping[str, Any]
        found = cases[case]["ranks"][0] if "ranks" in cases[case] else cases[case]
        return found

    def phase(case: str, name: str) -> Mapping[str, int]:
        found: Mapping[str, int] = rank0(case)["phases"][name]
        return found

    def forward_added(case: str) -> int:
        p = phase(case, "forward")
        return p["peak_bytes"] - p["start_bytes"]

    sizes, psi = CPU_SIZES, CPU_SIZES.params
    rows: list[dict[str, Any]] = []

    def row(run: str, figure: str, measured: int, modelled: int, note: str = "") -> None:
        rows.append(
            {"run": run, "figure": figure, "measured": measured, "nnmem": modelled, "note": note}
        )

    for impl in ("foreach", "fused", "for_loop"):
        p = phase(f"plain.adamw_{impl}", "optimizer_step")
        modelled = stacks.adamw_step_temporaries(impl, psi, 4, sizes.largest_tensor).bytes
        row(
            f"plain loop, {impl} AdamW",
            "step temporaries",
            p["peak_bytes"] - p["start_bytes"],
            modelled,
        )
    for view in (False, True):
        case = f"ddp.bucket_view_{str(view).lower()}"
        s = stacks.ddp(sizes, gradient_as_bucket_view=view)
        row(
            f"DDP, gradient_as_bucket_view={view}",
            "step peak",
            phase(case, "optimizer_step")["peak_bytes"] - CPU_OTHER,
            s.gpu_bytes("optimizer_step"),
        )
    for reshard in (True, False):
        case = f"fsdp2.reshard_{str(reshard).lower()}"
        s = stacks.fsdp2(sizes, gpus=2, reshard_after_forward=reshard, prefetch_units=0)
        row(
            f"FSDP2, reshard_after_forward={reshard}",
            "gathered weights at forward's peak",
            forward_added(case) - forward_added("plain.adamw_foreach"),
            s.by_key("forward")["gathered_weights"],
        )
    s = stacks.fsdp2(sizes, gpus=2, prefetch_units=0)
    row(
        "FSDP2, 2 ranks",
        "sharded gradients after backward",
        rank0("fsdp2.reshard_true")["after_backward"]["grads"],
        s.by_key("optimizer_step")["gradients"],
    )
    mp = stacks.fsdp2(sizes, gpus=2, compute_bytes=2, reduce_bytes=4, prefetch_units=0)
    row(
        "FSDP2, bf16 MixedPrecisionPolicy",
        "gathered bf16 weights at forward's peak",
        forward_added("fsdp2.mixed_bf16_reduce_fp32") - forward_added("plain.bf16_adamw_foreach"),
        mp.by_key("forward")["gathered_weights"],
    )
    kbit = cases["peft.kbit_casts"]
    row(
        "peft prepare_model_for_kbit_training",
        "fp32 casts",
        kbit["live_after"] - kbit["live_before"],
        stacks.kbit_fp32_casts(sizes).bytes,
    )
    for stage in (1, 2):
        r = rank0(f"deepspeed.zero{stage}")
        s = stacks.zero(sizes, stage=stage, gpus=2)
        found = r["structures"]
        row(
            f"DeepSpeed ZeRO-{stage}, 2 ranks",
            "16-bit parameters (bit16_groups_flat)",
            found["bit16_groups_flat"],
            s.by_key("forward")["weights"],
        )
        row(
            f"DeepSpeed ZeRO-{stage}, 2 ranks",
            "fp32 master, m and v partition",
            found["single_partition_of_fp32_groups"] + found["adam_state"],
            s.by_key("forward")["optimizer_state"],
        )
        row(
            f"DeepSpeed ZeRO-{stage}, 2 ranks",
            "states at forward's start",
            r["phases"]["forward"]["start_bytes"],
            s.gpu_bytes("forward"),
            "the 16-bit tensors module.bfloat16() made stay referenced after "
            "bit16_groups_flat replaces them: one more 2Ψ, seen on DeepSpeed's CPU "
            "accelerator, in neither DeepSpeed's estimator nor nnmem",
        )
    z3 = stacks.zero(sizes, stage=3, gpus=2)
    row(
        "DeepSpeed ZeRO-3, 2 ranks",
        "gathered parameters in forward",
        forward_added("deepspeed.zero3") - forward_added("deepspeed.zero1"),
        z3.by_key("forward")["gathered_weights"],
    )
    offload = stacks.fsdp2(sizes, gpus=2, cpu_offload=True, prefetch_units=0)
    row(
        "FSDP2, CPUOffloadPolicy",
        "gathered weights at forward's peak",
        forward_added("fsdp2.cpu_offload") - forward_added("plain.adamw_foreach"),
        offload.by_key("forward")["gathered_weights"],
    )
    row(
        "FSDP2, CPUOffloadPolicy",
        "host bytes at the step's peak: shards, gradients, AdamW state and step",
        # a CPU's host and device are one memory; FSDP2 keeps 40 B of its own per rank
        phase("fsdp2.cpu_offload", "optimizer_step")["peak_bytes"] - CPU_OTHER - 40,
        offload.cpu_bytes + offload.gpu_bytes("optimizer_step"),
    )
    hf, trl = cases["hf_trainer.defaults"], cases["trl_sft.defaults"]
    row(
        "HF Trainer, default TrainingArguments",
        "peak of the run (fp32, adamw_torch_fused, no checkpointing)",
        hf["peak_bytes"],
        _small_llama_peak(stack="hf_trainer", seq_len=127, packing="off"),
        "nnmem for stack hf_trainer; the run's rows are 127 tokens without padding, and it "
        "also holds the batch's attention_mask and labels (4 kB)",
    )
    row(
        "TRL SFTTrainer, default SFTConfig",
        "peak of the run (fp32 weights, bf16 autocast, non-reentrant checkpointing, "
        "adamw_torch_fused)",
        trl["peak_bytes"],
        # trl_sft's own defaults: SFTConfig's checkpointing and bf16 autocast
        _small_llama_peak(stack="trl_sft", seq_len=128, packing="off"),
        TRL_NOTE,
    )
    folds = json.loads((STACKS / "trl_fused_head.json").read_text(encoding="utf-8"))
    stubbed = folds["stub_folds"]
    row(
        "TRL SFTTrainer, CPU-only folds stubbed",
        "peak of the same run with the head's torch-ops folds, which CUDA runs as "
        "allocation-free Triton kernels, stubbed",
        max(stubbed["forward_peak"], stubbed["backward_peak"]),
        _small_llama_peak(stack="trl_sft", seq_len=128, packing="off"),
        TRL_STUB_NOTE,
    )
    for r in rows:
        r["error"] = r["nnmem"] / r["measured"] - 1 if r["measured"] else 0.0
        r["agrees"] = abs(r["error"]) <= 0.001
    return rows


# The small Llama of the CPU runs as a transformer scenario (benchmarks/stacks/common.py
# LLAMA_CONFIG), trained on the CPU with batch 2 and AdamW.
SMALL_LLAMA = {
    "model": "transformer",
    "config": {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 4096,
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "attention_dropout": 0.0,
    },
    "attention": "sdpa",
    "device": "cpu",
    "mode": "training",
    "batch_size": 2,
    "optimizer": "adamw",
}


def _small_llama_peak(**settings: Any) -> int:
    """nnmem's tensor peak for the small Llama of the CPU runs under ``settings``.

    The Trainer runs' rows: each text is 127 words of a word-level tokenizer that adds no
    special token, so the HF Trainer's rows are 127 tokens; TRL appends the EOS token
    (trl/trainer/sft_trainer.py add_eos), 128. Every row has the same length, so the
    attention mask has no zero and transformers gives SDPA none (masking_utils.py
    _ignore_causal_mask_sdpa): the layout is ``off``, not the collators' padded one."""
    return estimate(parse(SMALL_LLAMA | settings)).tensor_peak_bytes


TRL_NOTE = (
    "TRL 1.16's SFTTrainer.compute_loss runs its fused LM head (trl/trainer/utils.py "
    "add_fused_lm_head, trl/kernels/chunked_logprob.py), which holds no logits; nnmem's "
    "trl_sft stack counts what TRL's Python code allocates (a 254 × 32,768 bf16 tile "
    "buffer, the casts into it, the saved fp32 hidden states, fp32 gradients of the hidden "
    "states and the head). On a CPU, without Triton, the head folds each tile with torch "
    "ops that hold fp32 copies of it besides: 11.4 MB in forward and 30.2 MB in backward, "
    "where the run peaks (benchmarks/stacks/trl_fused_head.py), which nnmem does not count"
)
TRL_STUB_NOTE = (
    "benchmarks/stacks/trl_fused_head.py --stub-folds: _forward_tile, _backward_tile and "
    "_addmm_fp32 do nothing, as far as memory goes what a CUDA device runs; the peak is "
    "the loss's, inside the head's forward, and backward's start is 85,239,184 B against "
    "nnmem's 85,226,710 B"
)


def deepspeed_estimator_rows(gpus: int = 8) -> list[dict[str, Any]]:
    """DeepSpeed's own model-state estimators (``deepspeed.estimators`` in
    ``measured_stacks.json``: estimate_zero2_model_states_mem_needs and
    estimate_zero3_model_states_mem_needs, DeepSpeed 0.19.8) at ``gpus`` GPUs against
    ``nnmem.stacks.zero`` for the same parameter counts, reduce bucket left out as the
    estimators leave it: model, stage, offload, GPU bytes each way, host bytes each way
    (a node of ``gpus``), note."""
    cases = json.loads((STACKS / "measured_stacks.json").read_text(encoding="utf-8"))["cases"]
    rows: list[dict[str, Any]] = []
    for r in cases["deepspeed.estimators"]["rows"]:
        if r["gpus"] != gpus:
            continue
        n, psi = r["gpus"], r["params"]
        offload, offload_params = r["cpu_offload"], r.get("cpu_offload_params", False)
        sizes = stacks.ModelSizes(psi, 0, 0, r.get("largest_layer_params", 0))
        s = stacks.zero(
            sizes,
            stage=r["stage"],
            gpus=n,
            reduce_bucket_size=0,
            offload_optimizer=offload,
            offload_param=offload_params,
        )
        gpu = s.gpu_bytes("optimizer_step")
        note = "2Ψ + 18Ψ/N: the same terms" if not offload else "2Ψ: the same terms"
        if r["stage"] == 3:
            # The estimator adds one gathered layer in fp32 (4 B × the largest layer,
            # stage3.py estimate_zero3_model_states_mem_needs largest_layer_memory); nnmem
            # counts the gathered window in forward and backward, so it is added here to
            # compare the model states alone.
            gpu += r["largest_layer_bytes"]
            note = "the same terms"
            if not offload:
                note = (
                    "nnmem holds the 16-bit grad_partitions_flat_buffer (2Ψ/N, measured in "
                    "the ZeRO-3 run), which the estimator leaves out"
                )
                if psi / n > stacks.DS_SUB_GROUP:
                    note += (
                        ", and the fp32 gradient of one optimizer sub-group (sub_group_size "
                        "1e9) at a time, where the estimator counts the whole 4Ψ/N"
                    )
        label = "optimizer and parameters" if offload_params else "optimizer" if offload else "none"
        rows.append(
            {
                "model": r["model"],
                "params": psi,
                "stage": r["stage"],
                "offload": label,
                "deepspeed_gpu": r["gpu_bytes"],
                "nnmem_gpu": gpu,
                "error": gpu / r["gpu_bytes"] - 1 if r["gpu_bytes"] else 0.0,
                "deepspeed_host": r["cpu_bytes"],
                "nnmem_host": s.cpu_bytes * n,
                "note": note,
            }
        )
    return rows


def deepspeed_estimator_table(rows: list[dict[str, Any]], caption: str) -> str:
    """DeepSpeed's estimators against nnmem: model, ZeRO stage, offload, GPU bytes each
    way with the error, host bytes each way, note."""
    names = (
        "Model",
        "ZeRO",
        "Offload",
        "DeepSpeed, per GPU",
        "nnmem, per GPU",
        "Error",
        "DeepSpeed, host",
        "nnmem, host",
    )
    head = "".join(f'<th scope="col">{h}</th>' for h in names)
    body = []
    for r in rows:
        body.append(
            f'<tr><th scope="row">{escape(r["model"])}</th><td>{r["stage"]}</td>'
            f'<td>{escape(r["offload"])} <span class="aside">{escape(r["note"])}</span></td>'
            f'<td class="num">{human(r["deepspeed_gpu"])}</td>'
            f'<td class="num">{human(r["nnmem_gpu"])}</td>'
            f'<td class="num">{signed_percent(r["error"], places=1)}</td>'
            f'<td class="num">{human(r["deepspeed_host"])}</td>'
            f'<td class="num">{human(r["nnmem_host"]) if r["nnmem_host"] else "—"}</td></tr>'
        )
    return (
        f'<div class="table-scroll" tabindex="0" role="region" aria-label="{escape(caption)}">'
        f'<table class="accuracy"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def stack_runs_table(rows: list[dict[str, Any]], caption: str) -> str:
    """The CPU runs as a table: run, figure, measured, nnmem, error, note."""
    head = "".join(
        f'<th scope="col">{h}</th>' for h in ("Run", "Figure", "Measured", "nnmem", "Error")
    )
    body = []
    for r in rows:
        note = f' <span class="aside">{escape(r["note"])}</span>' if r["note"] else ""
        error = signed_percent(r["error"]) if r["measured"] else "—"
        body.append(
            f'<tr><th scope="row">{escape(r["run"])}</th><td>{escape(r["figure"])}{note}</td>'
            f'<td class="num">{r["measured"]:,} B</td><td class="num">{r["nnmem"]:,} B</td>'
            f'<td class="num">{error}</td></tr>'
        )
    return (
        f'<div class="table-scroll" tabindex="0" role="region" aria-label="{escape(caption)}">'
        f'<table class="accuracy"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


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
        "allocator_replay": allocator_replay(),
        "allocator_replay_table": allocator_replay_table,
        "signed_percent": signed_percent,
        "components": COMPONENTS,
        "accuracy_table": accuracy_table,
        "runtimes_accuracy": runtimes_accuracy,
        "published_points": published_points,
        "published_table": published_table,
        "stack_runs": stack_runs,
        "stack_runs_table": stack_runs_table,
        "deepspeed_estimator_rows": deepspeed_estimator_rows,
        "deepspeed_estimator_table": deepspeed_estimator_table,
        "published_checks": published_checks,
        "metric_label": METRIC_LABELS.__getitem__,
        "catalog_size": len(catalog.models()),
        "catalog_range": catalog_range,
        "catalog_params_range": catalog_params_range,
        "catalog_context_range": catalog_context_range,
        "gpu_count": len(catalog.gpus()),
    }
