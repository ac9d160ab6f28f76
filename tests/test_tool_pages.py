"""The related tools' pages: built from their front matter, prerendered by nnmem."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import build
from nnmem.web import handle
from nnmem.web.tools import defaults

TOOL_PAGES = {
    "gpu-vram-guide": "gpu-guide",
    "pytorch-memory": "pytorch-memory",
    "parameter-count": "parameter-count",
    "inference-latency": "inference-latency",
    "training-cost": "training-cost",
    "model-compression": "compression",
    "what-fits": "what-fits",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tool pages alone, built under /nnmem/."""
    content = tmp_path_factory.mktemp("content")
    for name in TOOL_PAGES:
        shutil.copy(build.ROOT / "content" / f"{name}.md", content)
    out = tmp_path_factory.mktemp("site")
    build.build(out, base_path="/nnmem/", content=content)
    return out


def test_each_page_names_its_tool_and_has_a_place_in_the_navigation() -> None:
    for name, tool in TOOL_PAGES.items():
        meta, _ = build.read_front_matter((build.ROOT / "content" / f"{name}.md").read_text())
        assert meta["tool"] == tool
        assert 50 <= float(meta["nav"]) <= 60
        assert meta["nav_title"]


@pytest.mark.parametrize(
    "tool", ["training-cost", "inference-latency", "parameter-count", "what-fits"]
)
def test_calculator_pages_hold_the_default_answer(site: Path, tool: str) -> None:
    page = next(p for p, t in TOOL_PAGES.items() if t == tool)
    html = (site / f"{page}.html").read_text()
    reply = json.loads(handle(json.dumps({"page": tool, "fields": defaults(tool)})))
    for key, value in reply["values"].items():
        if f'id="r-{key}"' in html:
            assert f'id="r-{key}" data-value="{value}"' in html
    assert f'data-tool="{tool}"' in html
    assert 'id="tool-form"' in html


def test_placeholders_are_all_filled(site: Path) -> None:
    for name in TOOL_PAGES:
        html = (site / f"{name}.html").read_text()
        assert re.search(r"\[\[\w+\]\]", html) is None, name
    guide = (site / "gpu-vram-guide.html").read_text()
    assert 'id="gpu-table"' in guide
    assert 'id="tool-form"' not in guide  # a prerendered page, no form


def test_pytorch_memory_guide_draws_the_example_step(site: Path) -> None:
    """The guide's chart is the calculator's, for the guide's example, under its own ids."""
    from nnmem.render.timeline_svg import saving_text, trace_step
    from nnmem.scenario import parse
    from nnmem.timeline import replayed_events
    from nnmem.web.tools.pytorch_memory import PYTORCH_EXAMPLE

    html = (site / "pytorch-memory.html").read_text()
    trace = trace_step(replayed_events(parse(PYTORCH_EXAMPLE)))
    assert f'data-reserved-peak="{trace.reserved_peak}"' in html
    assert 'aria-labelledby="guide-timeline-title guide-timeline-desc"' in html
    assert saving_text(trace) in html


def test_unknown_tool_stops_the_build(tmp_path: Path) -> None:
    content = tmp_path / "content"
    content.mkdir()
    (content / "x.md").write_text(
        "---\ntitle: X\ndescription: X.\ntemplate: tool.html.j2\ntool: abacus\n---\nText\n"
    )
    expected = re.escape("x.md: unknown tool 'abacus': choose one of parameter-count")
    with pytest.raises(build.BuildError, match=expected):
        build.build(tmp_path / "out", content=content)


def test_tool_figures_follow_the_gpu_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Doubling the H100's bandwidth in the catalog doubles the decode speed the latency
    page prerenders (batch 1 is memory-bound): no figure is typed into the page."""
    from dataclasses import replace

    from nnmem import catalog
    from nnmem.web.tools import prerender

    before = float(prerender("inference-latency")["reply"]["values"]["tokens_per_s"])
    gpus = dict(catalog.gpus())
    h100 = gpus["h100-sxm-80gb"]
    assert h100.bandwidth_bytes_per_s is not None
    gpus["h100-sxm-80gb"] = replace(h100, bandwidth_bytes_per_s=2 * h100.bandwidth_bytes_per_s)
    monkeypatch.setattr(catalog, "gpus", lambda: gpus)
    after = float(prerender("inference-latency")["reply"]["values"]["tokens_per_s"])
    assert after == pytest.approx(2 * before, rel=1e-5)
