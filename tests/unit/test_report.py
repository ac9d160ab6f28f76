"""Rendering an estimate: the text report, the table, the SVG chart and the formula."""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree import ElementTree

from nnmem import GenericModel, Mode, Precision, Scenario, estimate
from nnmem.report import chart_svg, describe, formula_html, table_html, table_text, text

BERT = estimate(Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128))
LLAMA = estimate(Scenario(GenericModel(7_000_000_000, 4096, 32), Mode.INFERENCE, Precision.FP16))


def test_chart_matches_golden(golden: Callable[[str, str], None]) -> None:
    golden("chart_bert_base.svg", chart_svg(BERT))
    golden("chart_llama_7b_inference.svg", chart_svg(LLAMA))


def test_table_matches_golden(golden: Callable[[str, str], None]) -> None:
    golden("table_bert_base.html", table_html(BERT))


def test_chart_bars_are_scaled_to_the_largest_component() -> None:
    """Activations (2,491.4 MB) fill the 300-unit bar area; weights get 440/2491.4 of it."""
    root = ElementTree.fromstring(chart_svg(BERT))
    widths = {
        rect.get("class", "").split()[-1]: float(rect.get("width", "nan"))
        for rect in root.iter("{http://www.w3.org/2000/svg}rect")
    }
    assert widths == {
        "bar-weights": 53.0,  # 300 × 440,000,000 / 2,491,416,576 = 52.98
        "bar-gradients": 53.0,
        "bar-optimizer_state": 106.0,  # 105.96
        "bar-activations": 300.0,
    }


def test_chart_is_accessible_svg() -> None:
    svg = chart_svg(LLAMA)
    root = ElementTree.fromstring(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "chart-title chart-desc"
    desc = root.find("{http://www.w3.org/2000/svg}desc")
    assert desc is not None
    assert desc.text == (
        "Model weights 14.00 GB (99.7%); Gradients 0 B (0.0%); Optimizer state 0 B (0.0%); "
        "Activations 37.7 MB (0.3%)."
    )


def test_table_rows_and_total() -> None:
    rows = re.findall(
        r'<tr data-key="(\w+)"><th scope="row">([^<]+)</th>(.*?)</tr>', table_html(BERT)
    )
    cells = {key: re.findall(r"<td>([^<]+)</td>", rest) for key, _, rest in rows}
    assert cells == {
        "weights": ["440.0", "0.44", "10.3%"],
        "gradients": ["440.0", "0.44", "10.3%"],
        "optimizer_state": ["880.0", "0.88", "20.7%"],
        "activations": ["2,491.4", "2.49", "58.6%"],
        "total": ["4,251.4", "4.25", "100.0%"],
    }


def test_formula_shows_the_numbers_used() -> None:
    html = formula_html(BERT)
    assert "<code>L × s × b × h × 66 B = 12 × 128 × 32 × 768 × 66 B = 2.49 GB</code>" in html
    assert "<code>= 440.0 MB + 440.0 MB + 880.0 MB + 2.49 GB = 4.25 GB</code>" in html
    assert html.count('class="source"') == 4


def test_labels_are_escaped() -> None:
    """Only nnmem's own strings reach the HTML, and they are escaped anyway."""
    assert "<script" not in formula_html(BERT)
    assert "&lt;" not in table_html(BERT)


def test_describe() -> None:
    assert describe(LLAMA.scenario) == (
        "Inference · 7,000M parameters · FP16 · batch 1 · sequence 512"
    )
    mixed = Scenario(GenericModel(124_439_808, 768, 12), precision=Precision.BF16)
    assert describe(mixed) == (
        "Training · 124.44M parameters · BF16 mixed precision · Adam / AdamW · batch 1 · "
        "sequence 512"
    )


def test_text_report() -> None:
    report = text(BERT)
    assert report.splitlines()[2] == "Total estimated memory: 4.25 GB (4,251,416,576 bytes)"
    assert table_text(BERT).splitlines() == [
        "Component        Memory (MB)  Memory (GB)  % of total",
        "---------------  -----------  -----------  ----------",
        "Model weights          440.0         0.44       10.3%",
        "Gradients              440.0         0.44       10.3%",
        "Optimizer state        880.0         0.88       20.7%",
        "Activations          2,491.4         2.49       58.6%",
        "---------------  -----------  -----------  ----------",
        "Total                4,251.4         4.25      100.0%",
    ]
    assert "  Activations     = L × s × b × h × 66 B = 12 × 128 × 32 × 768 × 66 B = 2.49 GB" in (
        report.splitlines()
    )
