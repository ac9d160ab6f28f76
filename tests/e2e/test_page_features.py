"""The calculator's features in headless Chromium: presets, URL state, sharing, the GPU
verdict, suggestions, units, theme, print, phone layout and hostile links."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from nnmem.catalog import models
from nnmem.estimate import estimate
from nnmem.scenario import parse
from nnmem.units import human
from nnmem.web.calculator import DEFAULT_FIELDS
from site_helpers import (
    cpython_reply,
    expect_total,
    fill_form,
    html_text,
    page_fields,
    text_of,
    wait_ready,
)

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
PAYLOADS = (
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned = 1">',
)


def test_preset_fills_the_fields_and_matches_cpython(calculator: Page) -> None:
    """Picking Llama 3 8B fills the architecture fields from its config.json; the total
    equals CPython's preset estimate, and an edited field changes it as nnmem says."""
    llama = models()["llama-3-8b"]
    calculator.locator("#f-preset").fill("llama-3-8b")
    expect(calculator.locator("[data-field=cfg_hidden_size]")).to_be_visible()
    expect(calculator.locator("#f-cfg_hidden_size")).to_have_value(str(llama.config["hidden_size"]))
    expect(calculator.locator("#f-cfg_num_key_value_heads")).to_have_value("8")
    expect(calculator.locator("[data-field=params_millions]")).to_be_hidden()
    fields = page_fields(calculator)
    reply = expect_total(calculator, fields)
    preset = cpython_reply({**fields, "describe": "fields", "preset": "llama-3-8b"})
    assert reply["total_bytes"] == preset["total_bytes"]
    # The fields the preset filled are derived: the URL names the preset, not them.
    query = parse_qs(urlsplit(calculator.url).query)
    assert query["preset"] == ["llama-3-8b"]
    assert not any(name.startswith("cfg_") for name in query)

    calculator.locator("#f-cfg_num_hidden_layers").fill("16")
    edited = expect_total(calculator, page_fields(calculator))
    assert int(str(edited["total_bytes"])) < int(str(reply["total_bytes"]))
    expect(calculator).to_have_url(re.compile(r"[?&]cfg_num_hidden_layers=16(&|$)"))
    assert [n for n in parse_qs(urlsplit(calculator.url).query) if n.startswith("cfg_")] == [
        "cfg_num_hidden_layers"
    ]


def test_inference_shows_only_the_options_that_apply(calculator: Page) -> None:
    """The optimizer belongs to training; generated tokens to inference."""
    expect(calculator.locator("[data-field=optimizer]")).to_be_visible()
    fill_form(calculator, {"mode": "inference"})
    expect(calculator.locator("[data-field=optimizer]")).to_be_hidden()
    expect(calculator.locator("[data-field=new_tokens]")).to_be_attached()
    expect_total(calculator, page_fields(calculator))


def test_url_holds_the_state_and_restores_it(calculator: Page, browser: Browser) -> None:
    """Every change lands in the query string; opening that URL elsewhere restores the
    same fields and the same total."""
    fill_form(calculator, {"precision": "bf16", "batch_size": "8", "seq_len": "512"})
    calculator.locator("#f-gpu").select_option("rtx-4090")
    expect(calculator).to_have_url(re.compile(r"[?&]gpu=rtx-4090"))  # the last change
    query = parse_qs(urlsplit(calculator.url).query)
    assert query["seq_len"] == ["512"]
    assert query["precision"] == ["bf16"]
    assert query["batch_size"] == ["8"]
    assert query["gpu"] == ["rtx-4090"]
    fields = page_fields(calculator)
    total = calculator.locator("#total").get_attribute("data-bytes")

    other = browser.new_page()
    other.goto(calculator.url)
    wait_ready(other)
    assert page_fields(other) == fields
    expect(other.locator("#total")).to_have_attribute("data-bytes", total or "")
    other.close()


def test_copy_link_puts_the_url_on_the_clipboard(calculator: Page) -> None:
    """The button copies the page's URL, which holds the inputs."""
    calculator.context.grant_permissions(["clipboard-read", "clipboard-write"])
    fill_form(calculator, {"batch_size": "4"})
    expect(calculator).to_have_url(re.compile(r"[?&]batch_size=4(&|$)"))
    calculator.locator("#copy-link").click()
    expect(calculator.locator("#action-status")).to_contain_text("Link copied")
    assert calculator.evaluate("navigator.clipboard.readText()") == calculator.url


def test_download_json_holds_the_scenario_and_the_estimate(calculator: Page) -> None:
    """The file is the CPython reply's download object, byte-identical in meaning."""
    fill_form(calculator, {"batch_size": "16"})
    reply = expect_total(calculator, page_fields(calculator))
    with calculator.expect_download() as info:
        calculator.locator("#download-json").click()
    saved = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert saved == reply["download"]
    assert saved["scenario"]["batch_size"] == 16


def test_gpu_verdict_and_solvers_equal_cpython(calculator: Page) -> None:
    """The verdict, largest batch and longest sequence are CPython's, to the digit."""
    fill_form(calculator, {"precision": "amp_bf16", "batch_size": "64", "seq_len": "512"})
    calculator.locator("#f-gpu").select_option("rtx-4090")
    reply = expect_total(calculator, page_fields(calculator))
    html = reply["html"]
    assert isinstance(html, dict)
    for part in ("verdict", "solvers", "suggestions"):
        expect(calculator.locator(f"#part-{part}")).to_have_text(html_text(html[part]))
    assert text_of(calculator.locator("#part-verdict"))


def test_applying_a_suggestion_changes_the_fields_and_the_total(calculator: Page) -> None:
    """One click applies the top change; the form and the total follow."""
    fill_form(calculator, {"batch_size": "256", "seq_len": "512"})
    calculator.locator("#f-gpu").select_option("rtx-3060-12gb")
    expect_total(calculator, page_fields(calculator))
    button = calculator.locator("#part-suggestions button.apply").first
    expect(button).to_be_visible()
    changes = json.loads(button.get_attribute("data-apply") or "{}")
    assert changes
    button.focus()
    calculator.keyboard.press("Enter")  # keyboard works as well as a click
    fields = page_fields(calculator)
    for name, value in changes.items():
        assert fields[name] == str(value)
    expect_total(calculator, fields)
    expect(calculator.locator("#action-status")).to_contain_text("Applied")


def test_gib_toggle_applies_everywhere(calculator: Page) -> None:
    """GiB divides by 2**30: the total, the table header and the capacity bar all switch."""
    total = int(calculator.locator("#total").get_attribute("data-bytes") or 0)
    calculator.locator("label:has(input[name=units][value=gib])").click()
    expect(calculator.locator("#total")).to_have_text(human(total, binary=True))
    expect(calculator.locator("#part-table thead")).to_contain_text("GiB")
    expect(calculator.locator("#part-capacity")).to_contain_text("GiB")
    expect_total(calculator, page_fields(calculator))
    calculator.locator("label:has(input[name=units][value=gb])").click()
    expect(calculator.locator("#total")).to_have_text(human(total))


def test_dark_mode_toggle_switches_and_is_remembered(calculator: Page) -> None:
    """The header button flips the theme, and a reload keeps the choice."""
    toggle = calculator.locator("#theme-toggle")
    light = calculator.evaluate("getComputedStyle(document.body).backgroundColor")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    dark = calculator.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark != light
    calculator.reload()
    wait_ready(calculator)
    expect(calculator.locator("html")).to_have_attribute("data-theme", "dark")
    calculator.locator("#theme-toggle").click()
    expect(calculator.locator("html")).to_have_attribute("data-theme", "light")


def test_print_shows_inputs_result_table_and_bar(calculator: Page) -> None:
    """The print stylesheet keeps what a printout needs and drops the controls."""
    calculator.emulate_media(media="print")
    try:
        for selector in ("#calc", "#total", "#part-table table", "#part-capacity svg"):
            expect(calculator.locator(selector)).to_be_visible()
        for selector in ("#copy-link", "#theme-toggle", "#engine"):
            expect(calculator.locator(selector)).to_be_hidden()
    finally:
        calculator.emulate_media(media="screen")


def test_phone_layout_has_no_sideways_scrolling(browser: Browser, site_url: str) -> None:
    """At 390 x 844 nothing is wider than the screen and the SVG text stays legible."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{site_url}?{urlencode({'gpu': 'rtx-4090'})}")
    wait_ready(page)
    for details in page.locator("details").all():
        details.evaluate("d => d.open = true")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    smallest = page.evaluate(
        """() => Math.min(...[...document.querySelectorAll('#part-capacity text, #part-plot text')]
             .map((t) => t.getBoundingClientRect().height).filter((h) => h > 0))"""
    )
    assert smallest >= 9, f"SVG text is {smallest:.1f} px tall on a phone"
    # While the total is out of sight (scrolled past, on a phone) a bar shows it.
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    bar = page.locator("#mini-total")
    expect(bar).to_be_visible()
    expect(bar).to_contain_text(page.locator("#total").inner_text())
    page.evaluate("window.scrollTo(0, 0)")
    expect(bar).to_be_hidden()
    context.close()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_url_parameters_are_reported_and_never_run(
    browser: Browser, site_url: str, payload: str
) -> None:
    """A script payload in every parameter: nothing executes, the page stays up, and every
    field it reaches shows its own message."""
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # The start panel's two boxes are not read from a link: they show what the form holds
    # (nnmem.web.start reads a box only when it is edited), so they have no message.
    names = [
        n
        for n in DEFAULT_FIELDS
        if n not in ("describe", "units", "plot", "start_model", "start_hardware")
    ]
    page.goto(f"{site_url}?{urlencode(dict.fromkeys(names, payload))}")
    expect(page.locator("#engine")).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(page.locator("#results")).to_have_attribute("data-state", "stale")
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    assert page.locator("img[src=x]").count() == 0
    visible = [
        name
        for name in names
        if page.locator(f"[data-field={name}]").is_visible() and page.locator(f"#f-{name}").count()
    ]
    assert visible, "no field is visible"
    for name in visible:
        expect(page.locator(f"#err-{name}")).not_to_be_empty()
    body = page.locator("body").inner_text()
    for word in ("Traceback", "undefined", "NaN"):
        assert word not in body
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations_on_any_page(
    browser: Browser, site_url: str, served_root: Path, scheme: str
) -> None:
    """axe-core (npm, pinned) on every built page, in light and dark mode; the calculator
    and the live tools once their engine has painted its answer."""
    site = served_root / "nnmem"
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    context = browser.new_context(color_scheme=scheme)  # type: ignore[arg-type]
    page = context.new_page()
    problems: list[str] = []
    for name in pages:
        page.goto(site_url + ("" if name == "index.html" else name))
        if page.locator("#engine").count():  # a calculator: check it live, as painted
            expect(page.locator("#engine")).to_have_attribute("data-state", "ready", timeout=60_000)
        # Evaluated, not added as a <script>: the page's CSP refuses inline scripts.
        page.evaluate(AXE.read_text(encoding="utf-8"))
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        for violation in result["violations"]:
            if violation["impact"] in ("serious", "critical"):
                targets = [n["target"] for n in violation["nodes"]][:3]
                problems.append(f"{name}: {violation['id']} {violation['help']} {targets}")
    context.close()
    assert problems == []


def test_every_worked_example_opens_the_calculator_on_its_scenario(
    browser: Browser, site_url: str
) -> None:
    """Each "Open in the calculator" link of the examples page gives the total that
    CPython nnmem computes for the scenario in its query string."""
    page = browser.new_page()
    page.goto(f"{site_url}examples.html")
    links = page.eval_on_selector_all(
        "main a[href*='?']", "els => els.map((a) => a.href).filter((h) => h.includes('model='))"
    )
    assert len(links) >= 6
    for link in links:
        scenario = dict(parse_qsl(urlsplit(link).query))
        gpu = scenario.pop("gpu", "")
        expected = estimate(parse(scenario), gpu or None).total_bytes
        page.goto(link)
        wait_ready(page)
        expect(page.locator("#total")).to_have_attribute("data-bytes", str(expected))
        if gpu:  # the examples that name a card open with its verdict
            expect(page.locator("#f-gpu")).to_have_value(gpu)
            expect(page.locator("#part-verdict .verdict")).to_have_attribute(
                "data-fit", re.compile("yes|no")
            )
    page.close()
