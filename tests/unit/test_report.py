"""Rendering an estimate: the text report, the table, the SVG plot, phases and formula."""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree import ElementTree

import pytest

from nnmem import Estimate, GenericModel, Mode, Precision, Scenario, estimate, parse
from nnmem.render.html import formula_html, phases_html, table_html
from nnmem.render.svg import plot_svg
from nnmem.render.text import describe, table_text, text, total_label

BERT = estimate(Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128))
LLAMA = estimate(Scenario(GenericModel(7_000_000_000, 4096, 32), Mode.INFERENCE, Precision.FP16))
LLAMA_31 = estimate(
    parse({"model": "preset", "preset": "llama-3.1-8b", "precision": "amp_bf16", "seq_len": 2048})
)
SVG = "{http://www.w3.org/2000/svg}"


def test_table_matches_golden(golden: Callable[[str, str], None]) -> None:
    golden("table_bert_base.html", table_html(BERT))
    golden("table_bert_base_binary.html", table_html(BERT, binary=True))


def test_table_rows_and_total() -> None:
    """Components at the forward peak, overheads after, the total last."""
    rows = re.findall(
        r'<tr data-key="(\w+)"[^>]*><th scope="row">(.*?)</th>(.*?)</tr>', table_html(BERT)
    )
    cells = {key: re.findall(r"<td>([^<]+)</td>", rest) for key, _, rest in rows}
    assert cells["weights"] == ["440.0", "0.44", "9.2%"]
    assert cells["gradients"] == ["0.0", "0.00", "0.0%"]
    assert cells["activations"] == ["2,491.4", "2.49", "52.0%"]
    assert cells["cuda_context"] == ["775.9", "0.78", "16.2%"]
    assert cells["total"] == ["4,795.0", "4.79", "100.0%"]
    labels = {key: label for key, label, _ in rows}
    assert (
        labels["gradients"] == 'Gradients <span class="aside">440.0 MB in the optimizer step</span>'
    )


def test_binary_units() -> None:
    assert "Memory (GiB)" in table_html(BERT, binary=True)
    assert "<td>4.47</td><td>100.0%</td>" in table_html(BERT, binary=True)


def test_phases_table_marks_the_peak() -> None:
    html = phases_html(BERT)
    assert '<tr data-phase="forward" class="peak">' in html
    assert (
        '<tr data-phase="optimizer_step"><th scope="row">Optimizer step</th><td>2.20 GB</td>'
        in html
    )


def test_formula_shows_the_numbers_used() -> None:
    html = formula_html(BERT)
    assert "<code>L × s × b × h × 66 B = 12 × 128 × 32 × 768 × 66 B = 2.49 GB</code>" in html
    assert "2.49 GB at the peak" not in html  # activations are at their size
    assert "0 B at the peak (forward); 440.0 MB in the optimizer step." in html


def test_labels_are_escaped() -> None:
    assert "<script" not in formula_html(LLAMA_31)
    assert "&lt;" not in table_html(BERT)


def test_describe() -> None:
    assert describe(LLAMA.scenario) == (
        "Inference · 7,000M parameters · FP16 · batch 1 · sequence 512"
    )
    assert describe(LLAMA_31.scenario) == (
        "Training · Llama 3.1 8B · BF16 mixed precision (AMP) · Adam / AdamW · batch 1 · "
        "sequence 2,048"
    )


def test_text_report() -> None:
    report = text(BERT)
    assert report.splitlines()[2].startswith("Total estimated memory: 4.79 GB (4,794,973,004 bytes")
    lines = table_text(BERT).splitlines()
    assert lines[0] == "Component          Memory (MB)  Memory (GB)  % of total"
    assert lines[-1] == "Total                  4,795.0         4.79      100.0%"
    assert "  Forward             3.81 GB  <- peak" in report.splitlines()


def _served(batch: int) -> Estimate:
    return estimate(
        parse(
            {
                "model": "preset",
                "preset": "llama-3.1-8b",
                "mode": "inference",
                "precision": "bf16",
                "batch_size": batch,
                "seq_len": 4096,
            }
        ),
        "rtx-4090",
    )


SERVED = [_served(b) for b in (1, 2, 4, 7, 8, 11, 14)]


def test_plot_matches_golden(golden: Callable[[str, str], None]) -> None:
    gpu = 24 * 2**30
    golden(
        "plot_llama_serving_rtx4090.svg",
        plot_svg(SERVED, "batch_size", SERVED[2], gpu, "NVIDIA GeForce RTX 4090"),
    )
    golden(
        "plot_llama_serving_rtx4090_binary.svg",
        plot_svg(SERVED, "batch_size", SERVED[2], gpu, "NVIDIA GeForce RTX 4090", binary=True),
    )
    golden("plot_bert_base_no_gpu.svg", plot_svg([BERT], "batch_size", BERT))


def test_plot_is_accessible_and_styled_by_classes() -> None:
    """The line, the GPU line and the current point carry classes for the page's CSS and
    fall back to currentColor, so dark mode restyles them."""
    svg = plot_svg(SERVED, "batch_size", SERVED[2], 24 * 2**30, "NVIDIA GeForce RTX 4090")
    root = ElementTree.fromstring(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "plot-svg-title plot-svg-desc"
    assert root.get("viewBox") == "0 0 400 270"
    assert root.get("font-size") == "14"
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == "Memory against batch size"
    classes = {el.get("class") for el in root.iter()}
    assert {"plot-line", "plot-gpu", "plot-gpu-label", "plot-point", "plot-tick"} <= classes
    assert "#" not in svg  # no fixed colours
    # t(b) = T + ⌊T/20⌋ + 532,807,680 with T = 16,062,619,648 + 1,023,442,944·b (see
    # test_web): t(1) = 18,724,831,641 B, t(14) = 32,694,827,827 B.
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert desc.text == (
        "Total memory from 18.72 GB at batch size 1 to 32.69 GB at batch size 14; the "
        "current batch size, 4, needs 21.95 GB. NVIDIA GeForce RTX 4090 has 25.77 GB "
        "usable: up to 7 of those plotted fit."
    )


def test_plot_points_follow_the_totals() -> None:
    """y = top - height × total / axis top: the axis tops at 40 GB (the next 10 GB tick
    above 1.08 × 32.44 GB), the plot area spans 206 units from y = 14."""
    root = ElementTree.fromstring(plot_svg(SERVED, "batch_size", SERVED[2]))
    line = root.find(f"{SVG}polyline")
    assert line is not None
    ys = [float(p.split(",")[1]) for p in (line.get("points") or "").split()]
    expected = [round(14 + 206 - 206 * e.total_bytes / 40e9, 1) for e in SERVED]
    assert ys == expected


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"finetune": "lora", "lora_rank": 8}, "LoRA rank 8"),
        ({"finetune": "lora", "precision": "nf4"}, "QLoRA rank 16"),
        ({"checkpointing": "full"}, "full checkpointing"),
        ({"checkpointing": "selective"}, "selective checkpointing"),
        ({"sharding": "zero3", "num_gpus": 8}, "ZeRO-3 / FSDP"),
    ],
)
def test_the_summary_names_the_settings_that_change_the_memory(
    settings: dict[str, object], named: str
) -> None:
    """Adapters, checkpointing and sharding cut the memory most: the summary line says
    when each is on, so a total far from the full run's is not a mystery."""
    scenario = parse({"model": "preset", "preset": "llama-3.1-8b", **settings})
    assert named in describe(scenario).split(" · ")
    plain_run = describe(parse({"model": "preset", "preset": "llama-3.1-8b"}))
    assert named not in plain_run


@pytest.mark.parametrize(
    ("settings", "label"),
    [
        ({}, "Total estimated memory"),
        ({"sharding": "zero3", "num_gpus": 8}, "Total estimated memory per GPU (of 8)"),
        (
            {"mode": "inference", "precision": "bf16", "runtime": "vllm", "tensor_parallel": 2},
            "Total estimated memory per GPU (of 2)",
        ),
    ],
)
def test_the_headline_says_per_gpu(settings: dict[str, object], label: str) -> None:
    """Split over several GPUs, every figure is one GPU's: the headline says so."""
    scenario = parse({"model": "preset", "preset": "llama-3.1-8b", **settings})
    assert total_label(scenario) == label
