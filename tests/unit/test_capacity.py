"""The capacity bar: the components stacked to scale against the chosen card.

A component's width is ``round(400 × bytes / scale, 1)`` in the 400-unit viewBox, where
the scale is the larger of the total and the card's usable memory; the capacity line
sits at ``400 × budget / scale``, the budget being the usable memory less the 10%
headroom kept free by default (``int(usable × 90 / 100)``, nnmem.solvers.budget_for).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree import ElementTree

import pytest

from nnmem import catalog, estimate, parse
from nnmem.render.capacity import Card, capacity_svg, headline_html, legend_html, times
from nnmem.result import Estimate
from nnmem.solvers import budget_for
from nnmem.web.calculator import DEFAULT_SCENARIO

SVG = "{http://www.w3.org/2000/svg}"
BERT_FIELDS = DEFAULT_SCENARIO  # BERT-base training, batch 32 × 128 tokens, FP32, AdamW
LLAMA_AMP = {"model": "preset", "preset": "llama-3.1-8b", "precision": "amp_bf16", "seq_len": 2048}
# ZeRO-3 over 8 A100s with full checkpointing: every figure is one GPU's.
ZERO3 = {**LLAMA_AMP, "sharding": "zero3", "num_gpus": 8, "batch_size": 4, "checkpointing": "full"}


def judged(fields: dict[str, object], gpu_id: str | None) -> tuple[Estimate, Card | None]:
    scenario = parse(fields)
    result = estimate(scenario, gpu_id)
    gpu = catalog.gpu(gpu_id) if gpu_id else None
    if gpu is None:
        return result, None
    return result, Card(gpu.name, gpu.usable_bytes, budget_for(scenario, gpu.usable_bytes))


FITS = judged(BERT_FIELDS, "rtx-4090")
OVER = judged(LLAMA_AMP, "rtx-4060-ti-16gb")
NO_GPU = judged(BERT_FIELDS, None)
PER_GPU = judged(ZERO3, "a100-sxm-80gb")


def plain(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def widths(svg: str) -> dict[str, float]:
    """The width of each component's rect in the bar (the legend's swatches left out)."""
    root = ElementTree.fromstring(svg)
    return {
        str(r.get("data-key")): float(r.get("width", "nan"))
        for r in root.iter(f"{SVG}rect")
        if r.get("data-key")
    }


def line_x(svg: str) -> float:
    line = ElementTree.fromstring(svg).find(f"{SVG}line[@class='cap-line']")
    assert line is not None
    return float(line.get("x1", "nan"))


@pytest.mark.parametrize(
    ("name", "case", "binary"),
    [
        ("capacity_fits_rtx4090.svg", FITS, False),
        ("capacity_fits_rtx4090_binary.svg", FITS, True),
        ("capacity_overflows_rtx4060ti.svg", OVER, False),
        ("capacity_no_gpu.svg", NO_GPU, False),
        ("capacity_per_gpu_of_8.svg", PER_GPU, False),
    ],
)
def test_capacity_bar_matches_golden(
    golden: Callable[[str, str], None],
    name: str,
    case: tuple[Estimate, Card | None],
    binary: bool,
) -> None:
    golden(name, capacity_svg(*case, binary=binary))


def test_capacity_key_matches_golden(golden: Callable[[str, str], None]) -> None:
    golden("capacity_key_overflows_rtx4060ti.html", legend_html(*OVER))
    golden("capacity_key_fits_rtx4090.html", legend_html(*FITS))


def test_a_scenario_that_fits_is_drawn_against_the_card() -> None:
    """BERT-base (4,794,973,004 B) on an RTX 4090: 24 GiB = 25,769,803,776 B usable is the
    scale; weights 440,000,000 B are 400 × 440,000,000 / 25,769,803,776 = 6.83 units,
    activations 2,491,416,576 B 38.67; the line at 23,192,823,398 B is at 360.0."""
    result, card = FITS
    svg = capacity_svg(result, card)
    assert widths(svg)["weights"] == 6.8
    assert widths(svg)["activations"] == 38.7
    assert widths(svg)["optimizer_state"] == 13.7  # 880,000,000 B: 13.66
    assert line_x(svg) == 360.0
    assert plain(headline_html(result, card)) == "Fits: 4.79 GB of 23.19 GB"
    assert "cap-free" in svg
    assert "cap-over" not in svg
    # 25,769,803,776 - 23,192,823,398 B = 2.58 GB kept free
    assert "Kept free (10%) 2.58 GB</li>" in legend_html(result, card)


def test_a_scenario_that_overflows_runs_past_the_line_in_a_hatch() -> None:
    """Llama 3.1 8B, AMP, on an RTX 4060 Ti 16GB: the total (169,428,471,808 B) is the
    scale. Weights 32,121,044,992 B take 400 × 32.12 / 169.43 = 75.83 units; the line at
    the budget, int(16 GiB × 0.9) = 15,461,882,265 B, sits at 36.50; past it, to the
    bar's end, the overflow is hatched and named: 153,966,589,543 B = 153.97 GB over.
    The total is 10.96 cards, rounded up to 11."""
    result, card = OVER
    svg = capacity_svg(result, card)
    assert widths(svg)["weights"] == 75.8
    assert widths(svg)["optimizer_state"] == 151.7  # 64,242,089,984 B: 151.66
    assert line_x(svg) == 36.5
    over = ElementTree.fromstring(svg).find(f"{SVG}rect[@class='cap-over']")
    assert over is not None
    assert (over.get("x"), over.get("width"), over.get("fill")) == (
        "36.5",
        "363.5",
        "url(#cap-over-hatch)",
    )
    # The overflow in words too, not by colour alone, first in the key.
    assert 'aria-hidden="true"></span>Over the card by 153.97 GB</li>' in legend_html(result, card)
    assert plain(headline_html(result, card)) == "Needs 169.43 GB: 11× this card"


def test_a_component_too_small_to_see_is_still_named() -> None:
    """The cuBLAS workspace (17,039,360 B) of the 169.43 GB overflow is 400 × 17,039,360 /
    169,428,471,808 = 0.04 units: no width to draw, but the key and the description name
    it, the key with a link to what it is."""
    result, card = OVER
    svg = capacity_svg(result, card)
    assert widths(svg)["cublas_workspace"] == 0.0
    assert '<a href="#what-cublas_workspace">cuBLAS workspace</a> 17.0 MB</li>' in legend_html(
        result, card
    )
    desc = ElementTree.fromstring(svg).find(f"{SVG}desc")
    assert desc is not None
    assert "cuBLAS workspace 17.0 MB (0.0%)" in str(desc.text)


def test_without_a_gpu_the_bar_is_the_total_alone() -> None:
    """No card: the total (4,794,973,004 B) is the scale, weights 400 × 440,000,000 /
    4,794,973,004 = 36.71 units, and no capacity line."""
    result, card = NO_GPU
    svg = capacity_svg(result, card)
    assert widths(svg)["weights"] == 36.7
    assert widths(svg)["activations"] == 207.8  # 2,491,416,576 B: 207.84
    assert "cap-line" not in svg
    assert plain(headline_html(result, card)) == "Needs 4.79 GB"
    title = ElementTree.fromstring(svg).find(f"{SVG}title")
    assert title is not None
    assert title.text == "Needs 4.79 GB; pick a GPU to compare it with its memory."


def test_per_gpu_figures_say_so() -> None:
    """ZeRO-3 over 8 A100 80GB: each GPU holds 36,583,511,526 B against 80 GiB usable
    (85,899,345,920 B, the scale); the line at int(80 GiB × 0.9) = 77,309,411,328 B sits
    at 360.0; optimizer state 12,045,391,872 B is 56.09 units."""
    result, card = PER_GPU
    svg = capacity_svg(result, card)
    assert widths(svg)["optimizer_state"] == 56.1
    assert line_x(svg) == 360.0
    assert plain(headline_html(result, card)) == "Fits per GPU of 8: 36.58 GB of 77.31 GB"
    assert "NVIDIA A100 SXM4 80GB: 77.31 GB</text>" in svg  # the line's label
    title = ElementTree.fromstring(svg).find(f"{SVG}title")
    assert title is not None
    assert str(title.text).startswith("Fits: needs 36.58 GB per GPU of 8; NVIDIA A100")
    # 31 characters at 14 × 0.6 units are 260.4 wide: it ends 4 left of the line.
    assert 'class="cap-label" x="356" y="13" text-anchor="end"' in svg


def test_a_name_too_long_for_the_left_of_the_line_starts_after_it() -> None:
    """A 44-character label is 44 × 14 × 0.6 = 369.6 units, more than the 356 left of a
    line at 360: it starts at 400 - 369.6 = 30.4, whole inside the viewBox."""
    result, card = FITS
    assert card is not None
    long = Card("A" * 34, card.usable, card.budget)  # "A…A: 23.19 GB", 44 characters
    svg = capacity_svg(result, long)
    assert 'class="cap-label" x="30.4" y="13" text-anchor="start"' in svg


def test_the_bar_is_an_image_with_its_verdict_and_components_in_words() -> None:
    result, card = OVER
    root = ElementTree.fromstring(capacity_svg(result, card))
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "capacity-title capacity-desc"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert title.text == (
        "Does not fit: needs 169.43 GB, 11× this card; NVIDIA GeForce RTX 4060 Ti 16GB has "
        "15.46 GB to fill, after keeping 10% free, 153.97 GB short."
    )
    assert str(desc.text).startswith("Made of: Model weights 32.12 GB (19.0%); Gradients")


def test_text_stays_legible_on_a_phone() -> None:
    """A 390 px phone leaves about 350 px for the bar: 14-unit text in a 400-unit viewBox
    renders at 14 × 350 / 400 = 12.25 px. Colours fall back to currentColor."""
    root = ElementTree.fromstring(capacity_svg(*OVER))
    assert (root.get("viewBox") or "").split()[2] == "400"
    assert root.get("font-size") == "14"
    assert root.get("fill") == "currentColor"
    for label in root.iter(f"{SVG}text"):
        assert label.get("font-size") is None


@pytest.mark.parametrize(
    ("need", "budget", "shown"),
    [(21, 20, "1.1"), (30, 20, "1.5"), (199, 20, "10"), (201, 20, "11"), (10**6, 3, "333,334")],
)
def test_times_rounds_up(need: int, budget: int, shown: str) -> None:
    """21/20 = 1.05 → 1.1; 199/20 = 9.95 → 10.0 shown as a whole number from ten."""
    assert times(need, budget) == shown
