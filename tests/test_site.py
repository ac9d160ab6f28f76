"""The built site as a whole: links, HTML validity, page metadata, navigation, and
content whose numbers follow the engine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

import pytest

import build
import content_helpers
from nnmem import formats
from nnmem.formats import Format
from nnmem.scenario import parse
from nnmem.web.links import query_string

ROOT = Path(__file__).resolve().parents[1]
BASE = "/nnmem/"
SITE_URL = "https://docs.example.test/nnmem/"
VNU = ROOT / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "_site"
    build.build(out, base_path=BASE, site_url=SITE_URL)
    return out


def pages(out: Path) -> list[Path]:
    return sorted(out.rglob("*.html"))


class Links(HTMLParser):
    """Every href and src of a page, its ids, and its head metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()
        self.meta: dict[str, str] = {}
        self.canonical: str | None = None
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.urls += [a[k] for k in ("href", "src") if k in a]
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "meta" and ("name" in a or "property" in a):
            self.meta[a.get("name") or a["property"]] = a.get("content", "")
        if tag == "link" and a.get("rel") == "canonical":
            self.canonical = a["href"]
        self._in_title = tag == "title" and not self.title  # the head's, not an SVG's

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def parsed(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_every_href_and_src_resolves_inside_the_site(site: Path) -> None:
    """Served under /nnmem/, every link leads to a file of the site (and an id in it)."""
    broken = []
    for page in pages(site):
        here = f"http://127.0.0.1{BASE}{page.relative_to(site).as_posix()}"
        for url in parsed(page).urls:
            if url.startswith(SITE_URL):
                url = BASE + url.removeprefix(SITE_URL)
            target = urlsplit(urljoin(here, url))
            if target.scheme not in ("http", "https") or target.netloc != "127.0.0.1":
                broken.append(f"{page.name}: {url} leaves the site")
                continue
            if not target.path.startswith(BASE):
                broken.append(f"{page.name}: {url} is outside {BASE}")
                continue
            file = site / unquote(target.path.removeprefix(BASE))
            if target.path.endswith("/"):
                file = file / "index.html"
            if not file.is_file():
                broken.append(f"{page.name}: {url} has no file")
            elif target.fragment and target.fragment not in parsed(file).ids:
                broken.append(f"{page.name}: {url} has no such id")
    assert broken == []


def test_every_page_has_title_description_canonical_and_open_graph(site: Path) -> None:
    for page in pages(site):
        if page.name == "404.html":
            continue
        head = parsed(page)
        output = page.relative_to(site).as_posix()
        assert head.title.strip().endswith("· nnmem"), output
        assert len(head.meta["description"]) > 50, output
        assert head.canonical == build.canonical_url(SITE_URL, output)
        assert head.meta["og:url"] == head.canonical
        assert head.meta["og:title"] == head.title.strip().removesuffix(" · nnmem")
        assert head.meta["og:description"] == head.meta["description"]
        assert head.meta["og:type"] in {"website", "article"}


def test_404_page_is_not_indexed(site: Path) -> None:
    head = parsed(site / "404.html")
    assert head.meta["robots"] == "noindex"
    assert head.canonical is None


def test_sitemap_and_robots(site: Path) -> None:
    sitemap = (site / "sitemap.xml").read_text()
    locations = re.findall(r"<loc>(.*?)</loc>", sitemap)
    expected = {
        build.canonical_url(SITE_URL, p.relative_to(site).as_posix())
        for p in pages(site)
        if p.name != "404.html"
    }
    assert set(locations) == expected
    assert SITE_URL in locations  # the home page by its folder, not index.html
    assert (site / "robots.txt").read_text() == (
        f"User-agent: *\nAllow: /\n\nSitemap: {SITE_URL}sitemap.xml\n"
    )


def test_site_url_defaults_to_the_local_server_under_the_base_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(build.SITE_URL_ENV, raising=False)
    assert build.normalise_site_url(None, "/nnmem/") == "http://127.0.0.1:8000/nnmem/"
    monkeypatch.setenv(build.SITE_URL_ENV, "https://h.test/x")
    assert build.normalise_site_url(None, "/nnmem/") == "https://h.test/x/"
    with pytest.raises(build.BuildError, match="absolute http"):
        build.normalise_site_url("h.test/x", "/")


def test_navigation_links_every_page_from_every_page(site: Path) -> None:
    names = ["", "guide.html", "formulas.html", "examples.html", "faq.html", "accuracy.html"]
    for page in pages(site):
        if page.name == "404.html":
            continue
        nav = re.search(r'<nav class="site-nav".*?</nav>', page.read_text(), re.S)
        assert nav is not None
        hrefs = re.findall(r'href="\./([^"]*)"', nav.group(0))
        assert hrefs[: len(names)] == names, page.name
        current = re.findall(r'href="\./([^"]*)" aria-current="page"', nav.group(0))
        assert current == ["" if page.name == "index.html" else page.name]


def test_a_new_page_with_nav_front_matter_appears_in_the_navigation(tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(ROOT / "content", content)
    (content / "vram.md").write_text(
        "---\ntitle: GPU VRAM notes\nnav_title: GPUs\nnav: 35\ndescription: d\n---\nText\n"
    )
    out = tmp_path / "_site"
    build.build(out, content=content, site_url=SITE_URL)
    html = (out / "guide.html").read_text()
    nav = re.search(r'<nav class="site-nav".*?</nav>', html, re.S)
    assert nav is not None
    assert re.findall(r'href="\./([^"]*)"', nav.group(0))[3:5] == ["examples.html", "vram.html"]
    assert "vram.html" in (out / "sitemap.xml").read_text()


def test_nav_must_be_a_number(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("---\ntitle: X\ndescription: d\nnav: first\n---\n")
    with pytest.raises(build.BuildError, match=r"x\.md: front matter nav must be a number"):
        build.load_content(tmp_path)


@pytest.mark.skipif(shutil.which("java") is None, reason="the Nu HTML Checker needs java")
def test_every_page_passes_the_nu_html_checker(site: Path) -> None:
    assert VNU.is_file(), f"{VNU} is missing: run npm ci"
    run = subprocess.run(
        ["java", "-jar", str(VNU), "--errors-only", "--format", "json", *map(str, pages(site))],
        capture_output=True,
        text=True,
        check=False,
    )
    messages = json.loads(run.stderr or '{"messages": []}')["messages"]
    assert [f"{m.get('url')}: {m['message']}" for m in messages] == []
    assert run.returncode == 0


# --- content follows the engine -------------------------------------------------------------


def test_equations_are_mathml_without_scripts(site: Path) -> None:
    html = (site / "formulas.html").read_text()
    assert html.count("<math") >= 10
    assert '<math display="block">' in html
    # No script draws the maths; the only scripts are the theme toggle and the wide
    # tables' scroll hint, which every page loads.
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == [
        re.search(r'<script src="\./assets/theme\.js\?v=[0-9a-f]{10}">', html)[0],
        re.search(r'<script src="\./assets/tables\.js\?v=[0-9a-f]{10}" defer>', html)[0],
    ]


def test_faq_structured_data_matches_the_questions(site: Path) -> None:
    html = (site / "faq.html").read_text()
    data = json.loads(
        re.search(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)[1]
    )
    assert data["@type"] == "FAQPage"
    questions = [q["name"] for q in data["mainEntity"]]
    headings = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h3[^>]*>(.*?)</h3>", html)]
    assert questions == [h.replace("&quot;", '"') for h in headings]
    assert len(questions) >= 8
    assert "Why does nvidia-smi show more than the calculator?" in questions
    assert all(q["acceptedAnswer"]["text"] for q in data["mainEntity"])


def test_examples_show_the_engine_figures_and_link_to_the_calculator(site: Path) -> None:
    html = (site / "examples.html").read_text()
    bert = content_helpers.example(
        model="preset", preset="bert-base-uncased", precision="fp32", batch_size=32, seq_len=128
    )
    assert f"<strong>Estimate: {bert.total}</strong>" in html
    link = "./index.html?" + bert.query.replace("&", "&amp;")
    assert f'href="{link}"' in html
    assert html.count('class="calc-link"') == 6


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "preset", "preset": "llama-3-8b", "precision": "nf4_dq", "finetune": "lora"},
        {"model": "generic", "params_millions": 7000, "mode": "inference", "precision": "int8"},
        {
            "model": "preset",
            "preset": "llama-3-70b",
            "num_gpus": 8,
            "sharding": "zero3",
            "offload_optimizer": True,
        },
        {
            "model": "transformer",
            "config": {
                "model_type": "gpt2",
                "n_embd": 64,
                "n_layer": 2,
                "n_head": 2,
                "vocab_size": 100,
            },
        },
    ],
)
def test_query_string_reads_back_as_the_same_scenario(fields: dict[str, object]) -> None:
    scenario = parse(fields)
    assert parse(dict(parse_qsl(query_string(scenario)))) == scenario


def test_content_follows_an_engine_constant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change NF4's bits per weight in the engine: the QLoRA example's text changes too.

    NF4 with double quantization stores 4 + 8/64 + 32/(64·256) bits per weight (QLoRA,
    arXiv 2305.14314 §3); pretending it takes 8 bits must raise the base weights shown.
    """
    qlora = {
        "model": "preset",
        "preset": "llama-3-8b",
        "precision": "nf4_dq",
        "finetune": "lora",
        "lora_targets": "all_linear",
        "lora_rank": 16,
        "batch_size": 1,
        "seq_len": 2048,
        "checkpointing": "full",
    }
    before_text = build.load_content(ROOT / "content")
    before = content_helpers.example(**qlora)
    examples_before = next(p for p in before_text if p.output == "examples.html").body_html
    assert f"so the weights take {before.size('weights')} instead of" in examples_before
    assert "(4.127 bits per quantized weight" in examples_before

    info = formats.FORMATS[Format.NF4_DQ]
    monkeypatch.setitem(formats.FORMATS, Format.NF4_DQ, replace(info, bits=Fraction(8)))
    after = content_helpers.example(**qlora)
    assert after.bytes("weights") > before.bytes("weights")
    examples_after = next(
        p for p in build.load_content(ROOT / "content") if p.output == "examples.html"
    ).body_html
    assert f"so the weights take {after.size('weights')} instead of" in examples_after
    assert "(8 bits per quantized weight" in examples_after
    assert f"<strong>Estimate: {after.total}</strong>: it" in examples_after
    assert examples_after != examples_before


def test_accuracy_page_lists_every_case_with_its_error(site: Path) -> None:
    """Each row of accuracy.json is on the page: measured, estimated and the signed error."""
    html = (site / "accuracy.html").read_text()
    data = json.loads((ROOT / "benchmarks" / "accuracy" / "accuracy.json").read_text())
    cuda = json.loads((ROOT / "benchmarks" / "accuracy" / "accuracy_cuda.json").read_text())
    assert html.count("<tr data-case=") == len(data["rows"]) + len(cuda["rows"])
    row = next(r for r in data["rows"] if r["metric"] == "peak" and r["error"] != 0)
    cells = re.search(
        rf'<tr data-case="{re.escape(row["case"])}" data-metric="peak">.*?</tr>', html
    )
    assert cells is not None
    assert f'<td class="num">{content_helpers.signed_percent(row["error"])}</td>' in cells[0]
    assert f'<td class="num">{content_helpers.human(row["measured"])}</td>' in cells[0]
    cases = {r["case"] for r in data["rows"]}
    assert f"<p>{len(cases)} cases, {len(data['rows'])} figures;" in html
    assert "Measured on a GPU" in html


def test_accuracy_page_shows_cuda_runs_when_they_exist(tmp_path: Path) -> None:
    """A comparison file with the same row schema gets its own section and table."""
    rows = [
        {
            "case": "gpt2-small.train.fp32.adamw.eager.b1.s128.cuda",
            "metric": "peak",
            "measured": 2_000_000_000,
            "estimated": 2_040_000_000,
            "error": 0.02,
            "note": "",
            "within_tolerance": True,
        },
    ]
    path = tmp_path / "accuracy_cuda.json"
    path.write_text(json.dumps({"rows": rows, "tolerance": {"peak": 0.05}}))
    helpers = content_helpers.helpers() | {"accuracy_cuda": content_helpers.load_accuracy(path)}
    page = next(
        p for p in build.load_content(ROOT / "content", helpers) if p.output == "accuracy.html"
    )
    assert '<h2 id="measured-on-a-gpu">Measured on a GPU</h2>' in page.body_html
    assert "(1 case; largest peak error +2.00%)" in page.body_html
    assert 'data-case="gpt2-small.train.fp32.adamw.eager.b1.s128.cuda"' in page.body_html
    assert content_helpers.load_accuracy(tmp_path / "missing.json") is None


def test_pager_leads_through_the_navigation_in_order(site: Path) -> None:
    """Each page's previous and next links are its neighbours in the header navigation."""
    nav = re.search(r'<nav class="site-nav".*?</nav>', (site / "guide.html").read_text(), re.S)
    assert nav is not None
    order = re.findall(r'href="\./([^"]*)"', nav.group(0))
    for i, href in enumerate(order[1:], start=1):
        html = (site / href).read_text()
        if 'class="pager"' not in html:  # pages with their own template
            continue
        prev = re.search(r'rel="prev" href="\./([^"]*)"', html)
        assert prev is not None
        assert prev[1] == order[i - 1], href
        following = re.search(r'rel="next" href="\./([^"]*)"', html)
        assert (following[1] if following else None) == (
            order[i + 1] if i + 1 < len(order) else None
        ), href
