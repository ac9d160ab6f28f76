"""The training-cost tool: compute, time and price of a training run (6·N·D)."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from nnmem import catalog, tools
from nnmem.errors import Problem
from nnmem.render.markup import escape
from nnmem.units import fixed
from nnmem.validation import shown, whole
from nnmem.web.fields import Field
from nnmem.web.tools import common
from nnmem.web.tools.common import Tool, Values

# --- training cost ------------------------------------------------------------------------

TC_PARAMS = common.decimal(
    "params_billions",
    "Model size",
    "0.001",
    "100000",
    "a number of billions of parameters from 0.001 to 100,000",
)
TC_TOKENS = common.decimal(
    "tokens_billions",
    "Training tokens",
    "0.001",
    "10000000",
    "a number of billions of tokens from 0.001 to 10,000,000",
)
TC_GPUS = whole("num_gpus", "Number of GPUs", 1_000_000)
TC_MFU = common.decimal("mfu", "Utilisation (MFU)", "0.1", "100", common.PERCENT)
TC_PRICE = common.decimal(
    "price_per_gpu_hour", "Price per GPU-hour", "0", "1000000", "a price from 0 to 1,000,000"
)


_CURRENCY = re.compile(r"[^\W\d_]{1,8}|[^\w\s<>&\"']{1,3}")


def currency(values: Values) -> str | Problem:
    """The currency the price is in, as the cost is printed with it: a code or a symbol.

    >>> currency({"currency": " eur "}), currency({"currency": "€"}), currency({})
    ('EUR', '€', '')
    >>> currency({"currency": "12"}).message
    'Currency must be a code such as USD or EUR, or a symbol such as $ or € (got 12).'
    """
    raw = values.get("currency")
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return ""
    if not _CURRENCY.fullmatch(text):
        return Problem(
            "currency",
            "Currency must be a code such as USD or EUR, or a symbol such as $ or € "
            f"(got {shown(raw)}).",
        )
    return text.upper()


def _priced(amount: str, unit: str) -> str:
    """An amount with its currency: a symbol before it ($2.50), a code after (2.50 EUR)."""
    if not unit:
        return amount
    return f"{unit}{amount}" if not unit.isalpha() else f"{amount} {unit}"


def training_cost(values: Values) -> dict[str, Any]:
    """Compute, GPU-hours, days and cost from ``6·N·D`` (:mod:`nnmem.tools`)."""
    v = common.read_all(
        params=common.number(TC_PARAMS, values),
        tokens=common.number(TC_TOKENS, values),
        gpu=common.choice("gpu", "GPU", common.gpu_options(need_flops=True), values),
        gpus=common.number(TC_GPUS, values),
        mfu=common.number(TC_MFU, values),
        price=common.number(TC_PRICE, values),
        currency=currency(values),
    )
    unit = escape(v["currency"])
    gpu = catalog.gpus()[v["gpu"]]
    assert gpu.fp16_tflops
    params = int(v["params"] * 10**9)
    tokens = int(v["tokens"] * 10**9)
    run = tools.training_run(
        params,
        tokens,
        Fraction(str(gpu.fp16_tflops)),
        common.as_share(v["mfu"]),
        int(v["gpus"]),
        Fraction(v["price"]),
    )
    flops, gpu_hours, days, cost = run.flops, run.gpu_hours, run.days, run.cost
    optimal = tools.chinchilla_tokens(params)
    figures = [
        common.figure_html("flops", "Training compute", flops, common.flops_html(flops)),
        common.figure_html("gpu_hours", "GPU-hours", gpu_hours, f"{fixed(gpu_hours, 0)} GPU-hours"),
        common.figure_html(
            "days", f"Wall clock on {int(v['gpus']):,} GPUs", days, f"{fixed(days, 1)} days"
        ),
        common.figure_html("cost", "Cost", cost, _priced(fixed(cost, 0), unit)),
    ]
    steps = [
        f"C = 6 · N · D = 6 × {params:,} × {tokens:,} = {common.flops_html(flops)}.",
        f"Achieved rate per GPU: {gpu.fp16_tflops:,} TFLOPS (dense "
        f"{(gpu.tflops_format or 'fp16').upper()} peak of the "
        f"{escape(gpu.name)}) × {v['mfu']}% = {fixed(run.achieved_tflops, 1)} TFLOPS, that is "
        f"{fixed(run.tokens_per_second_per_gpu, 0)} training tokens per second per "
        "GPU: compare it with your run's throughput to check the utilisation.",
        f"GPU-hours = C ÷ rate ÷ 3,600 = {fixed(gpu_hours, 0)}; cost = GPU-hours × "
        f"{_priced(str(v['price']), unit)} per hour = {_priced(fixed(cost, 0), unit)}.",
        f"For reference, Chinchilla's compute-optimal budget for this size is about 20 tokens "
        f"per parameter: {fixed(Fraction(optimal, 10**9), 0)}B tokens.",
    ]
    html = f'<dl class="figures">{"".join(figures)}</dl>' + common.list_html(steps)
    return {
        "html": html,
        "values": {
            "flops": common.figure(flops),
            "gpu_hours": common.figure(gpu_hours),
            "days": common.figure(days),
            "cost": common.figure(cost),
        },
    }


TOOL = Tool(
    (
        Field(
            "params_billions",
            "Model size",
            "Parameters N, in billions.",
            "number",
            "7",
            "billion",
        ),
        Field(
            "tokens_billions",
            "Training tokens",
            "Tokens D seen in training, in billions (Llama 2 used 2,000).",
            "number",
            "2000",
            "billion",
        ),
        common.gpu_field("h100-sxm-80gb"),
        Field(
            "num_gpus",
            "Number of GPUs",
            "GPUs training together.",
            "number",
            "64",
            inputmode="numeric",
        ),
        Field(
            "mfu",
            "Utilisation (MFU)",
            "Share of peak FLOPS achieved; large runs report 35-55%.",
            "number",
            "40",
            "%",
        ),
        Field(
            "price_per_gpu_hour",
            "Price per GPU-hour",
            "What one GPU costs per hour, in the currency below.",
            "number",
            "2.50",
        ),
        Field(
            "currency",
            "Currency",
            "The price's currency, printed with the cost: a code (USD, EUR) or a symbol.",
            "text",
            "USD",
        ),
    ),
    training_cost,
)
