"""What every tool page shares: its form fields, reading their values, formatting figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from nnmem import catalog
from nnmem.errors import Problem
from nnmem.render.markup import escape
from nnmem.scenario import Scenario, parse
from nnmem.validation import NumberSpec, raise_if, shown
from nnmem.web.fields import Field
from nnmem.web.form import gpu_label

Values = dict[str, str]


@dataclass(frozen=True)
class Tool:
    """A form and the function that answers it with HTML and figures."""

    fields: tuple[Field, ...]
    run: Callable[[Values], dict[str, Any]]
    live: bool = True  # False: prerendered once, no form


# --- reading the form ---------------------------------------------------------------------


def number(spec: NumberSpec, values: Mapping[str, object]) -> Decimal | Problem:
    return spec.read(values.get(spec.key))


def decimal(key: str, label: str, low: str, high: str, allowed: str) -> NumberSpec:
    """A real-number spec from ``low`` to ``high``; ``allowed`` says so in words."""
    return NumberSpec(key, label, Decimal(low), Decimal(high), False, allowed)


def choice(
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


def read_all(**items: Decimal | str | Problem) -> dict[str, Any]:
    """The values, or one NnmemError listing every problem among them."""
    raise_if(*(v for v in items.values() if isinstance(v, Problem)))
    return items


def gpu_options(need_flops: bool) -> tuple[tuple[str, str], ...]:
    return tuple(
        (g.id, gpu_label(g))
        for g in catalog.gpus().values()
        if g.bandwidth_bytes_per_s and (g.fp16_tflops or not need_flops)
    )


def llm_options() -> tuple[tuple[str, str], ...]:
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


def figure_html(key: str, label: str, value: Fraction | int, html: str) -> str:
    """One headline figure; ``html`` is its text, already escaped."""
    return (
        f'<div class="figure"><dt>{escape(label)}</dt><dd><output id="r-{key}" '
        f'data-value="{figure(value)}">{html}</output></dd></div>'
    )


def flops_html(n: int | Fraction) -> str:
    """FLOPs in scientific notation as HTML, as papers quote them.

    >>> flops_html(42 * 10**21)
    '4.20 × 10<sup>22</sup> FLOPs'
    """
    mantissa, exponent = f"{float(n):.2e}".split("e")
    return f"{mantissa} × 10<sup>{int(exponent)}</sup> FLOPs"


def table_html(head: tuple[str, ...], rows: Sequence[tuple[str, ...]], caption: str = "") -> str:
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    th = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f'<div class="table-scroll" tabindex="0" role="region" '
        f'aria-label="{escape(caption or head[0])}">'
        f'<table class="tool-table">{cap}<thead><tr>{th}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def list_html(items: list[str]) -> str:
    return '<ul class="tool-steps">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def gpu_field(default: str) -> Field:
    return Field(
        "gpu",
        "GPU",
        "Bandwidth and peak BF16 TFLOPS come from nnmem's GPU catalog.",
        "choice",
        default,
        options=gpu_options(need_flops=True),
    )


def preset_scenario(preset: str, **settings: object) -> Scenario:
    return parse({"model": "preset", "preset": preset, **settings})


PERCENT = "a percentage from 0.1 to 100"


def as_share(value: Decimal | str | Problem) -> Fraction:
    assert isinstance(value, Decimal)
    return Fraction(value) / 100
