"""Compare, Import JSON and complete links in headless Chromium: pinned scenarios side by
side with CPython's figures, the comparison shared by its link, a downloaded file read
back to the same total, and a CNN's layer list carried by the link."""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import guard_requests
from playwright.sync_api import Browser, Page, expect

from nnmem.web import handle
from site_helpers import expect_total, fill_form, open_form, page_fields, reset_form, wait_ready

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
TINY_CNN = {
    "input": [3, 32, 32],
    "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 10},
    ],
}


def cpython_compare(fields: dict[str, Any]) -> dict[str, Any]:
    """What nnmem.web.handle in this CPython answers for the same comparison."""
    reply: dict[str, Any] = json.loads(handle(json.dumps({"page": "compare", "fields": fields})))
    assert reply["ok"], reply
    return reply


@pytest.fixture(scope="module")
def page(browser: Browser, site_url: str) -> Iterator[Page]:
    """A calculator of this module's own, so its pinned scenarios meet no other test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    seen = guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    yield page
    context.close()
    assert seen == [], f"requests left 127.0.0.1: {seen}"


@pytest.fixture
def calc(page: Page) -> Page:
    """The module's calculator with the example inputs and nothing pinned."""
    for _ in range(3):
        remove = page.locator("#compare-table button[data-remove]")
        if not remove.count():
            break
        before = remove.count()
        remove.first.click()
        expect(page.locator("#compare-table button[data-remove]")).to_have_count(before - 1)
    reset_form(page)
    expect(page.locator("#results")).to_have_attribute("data-state", "live")
    return page


def totals(page: Page) -> list[str]:
    cells = page.locator("#compare-table td.compare-total")
    return [c.get_attribute("data-bytes") or "" for c in cells.all()]


def test_two_pinned_scenarios_show_cpythons_totals_and_travel_in_the_link(
    calc: Page, browser: Browser
) -> None:
    """Pin batch 8, then batch 16 on an RTX 4090: two columns whose totals are CPython's
    separate estimates, the second with its difference from the first; the link opens the
    same comparison in a fresh context."""
    fill_form(calc, {"batch_size": "8"})
    first = expect_total(calc, page_fields(calc))
    calc.locator("#compare-add").click()
    expect(calc.locator("#compare-table td.compare-total")).to_have_count(1)
    expect(calc.locator("#action-status")).to_contain_text("Added as scenario A")
    fill_form(calc, {"batch_size": "16", "gpu": "rtx-4090"})
    second = expect_total(calc, page_fields(calc))
    calc.locator("#compare-add").click()
    expect(calc.locator("#compare-table td.compare-total")).to_have_count(2)
    assert totals(calc) == [str(first["total_bytes"]), str(second["total_bytes"])]
    want = cpython_compare(
        {"scenarios": [{"batch_size": "8"}, {"batch_size": "16", "gpu": "rtx-4090"}]}
    )
    diff = second["total_bytes"] - first["total_bytes"]
    assert want["columns"][1]["diff_bytes"] == diff
    expect(calc.locator("#compare-table tr[data-key=total] td").nth(1)).to_contain_text(
        f"{want['columns'][1]['total_text']} (+"
    )
    expect(calc.locator("#compare-table .compare-verdict").nth(1)).to_have_text(
        want["columns"][1]["verdict"]
    )
    url = calc.url
    assert "compare=" in urlsplit(url).fragment

    context = browser.new_context()
    guard_requests(context)
    fresh = context.new_page()
    fresh.goto(url)
    wait_ready(fresh)
    expect(fresh.locator("#compare-table td.compare-total")).to_have_count(2)
    assert totals(fresh) == totals(calc)
    context.close()


def test_a_ready_comparison_and_remove(calc: Page) -> None:
    """The ready "Full fine-tune vs LoRA vs QLoRA" on Llama 3.1 8B gives CPython's three columns;
    Remove takes one out and the rest stay."""
    calc.locator("#f-preset").fill("llama-3.1-8b")
    expect(calc.locator("#f-cfg_hidden_size")).to_have_value("4096")
    fields = page_fields(calc)
    calc.locator("#compare button[data-ready=finetune]").click()
    expect(calc.locator("#compare-table td.compare-total")).to_have_count(3)
    want = cpython_compare({"scenarios": [fields], "ready": "finetune"})
    assert totals(calc) == [str(c["total_bytes"]) for c in want["columns"]]
    fill_form(calc, {"units": "gib"})  # the same scenarios, in binary units
    gib = cpython_compare({"scenarios": want["states"], "units": "gib"})
    expect(calc.locator("#compare-table td.compare-total").first).to_contain_text(
        gib["columns"][0]["total_text"]
    )
    assert gib["columns"][0]["total_text"].endswith("GiB")
    fill_form(calc, {"units": "gb"})
    expect(calc.locator("#compare-table td.compare-total").first).to_contain_text(
        want["columns"][0]["total_text"]
    )
    calc.get_by_role("button", name="Remove scenario B").click()
    expect(calc.locator("#compare-table td.compare-total")).to_have_count(2)
    assert totals(calc) == [str(want["columns"][i]["total_bytes"]) for i in (0, 2)]
    expect(calc.locator("#compare-table")).to_be_focused()


def test_download_then_import_gives_the_same_total(calc: Page, tmp_path: Path) -> None:
    """A file Download JSON wrote, imported into a reset form, restores the scenario: the
    same total, GPU and fields."""
    calc.locator("#f-preset").fill("qwen2.5-7b")
    expect(calc.locator("#f-cfg_hidden_size")).to_have_value("3584")
    fill_form(calc, {"batch_size": "2", "seq_len": "1024", "gpu": "a100-sxm-80gb"})
    reply = expect_total(calc, page_fields(calc))
    with calc.expect_download() as info:
        calc.locator("#download-json").click()
    saved = tmp_path / "nnmem-estimate.json"
    saved.write_text(Path(info.value.path()).read_text(encoding="utf-8"), encoding="utf-8")
    reset_form(calc)
    expect(calc.locator("#total")).not_to_have_attribute("data-bytes", str(reply["total_bytes"]))
    calc.locator("#import-file").set_input_files(saved)
    expect(calc.locator("#total")).to_have_attribute("data-bytes", str(reply["total_bytes"]))
    expect(calc.locator("#f-gpu")).to_have_value("a100-sxm-80gb")
    expect(calc.locator("#import-error")).to_have_text("")
    expect(calc.locator("#action-status")).to_contain_text("Imported nnmem-estimate.json")


def test_import_names_what_is_wrong_in_a_bad_file(calc: Page, tmp_path: Path) -> None:
    """A file that is not Download JSON's, or holds a bad value, gets its message beside
    the button, naming the field; the form is left as it was."""
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"scenario": {"model": "generic", "params_millions": 7000, "batch_size": 0}})
    )
    calc.locator("#import-file").set_input_files(bad)
    expect(calc.locator("#import-error")).to_contain_text(
        "bad.json: The file's scenario.batch_size: Batch size"
    )
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    calc.locator("#import-file").set_input_files(other)
    expect(calc.locator("#import-error")).to_contain_text('needs a "scenario" object')
    expect(calc.locator("#f-batch_size")).to_have_value("32")


def test_a_link_carries_a_cnn_layer_list(calc: Page, browser: Browser) -> None:
    """A CNN given as a JSON layer list goes into the fragment, compressed, not the query,
    and opens in a fresh context with the same total."""
    text = json.dumps(TINY_CNN, indent=2)
    fill_form(calc, {"describe": "cnn", "cnn": text})
    reply = expect_total(calc, page_fields(calc))
    expect(calc).to_have_url(re.compile(r"#cnn=[\w-]+$"))
    url = calc.url
    assert "cnn=" not in urlsplit(url).query
    context = browser.new_context()
    guard_requests(context)
    fresh = context.new_page()
    fresh.goto(url)
    wait_ready(fresh)
    expect(fresh.locator("input[name=describe][value=cnn]")).to_be_checked()
    expect(fresh.locator("#f-cnn")).to_have_value(text)
    expect(fresh.locator("#total")).to_have_attribute("data-bytes", str(reply["total_bytes"]))
    context.close()


def test_a_config_too_long_for_a_link_says_so(calc: Page) -> None:
    """A pasted config whose packed form passes the link's limit is left out of the link,
    with the limit and Download JSON named."""
    noise = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=90_000))
    config = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 2, "note": noise}
    fill_form(calc, {"describe": "config", "config": json.dumps(config)})
    status = calc.locator("#action-status")
    expect(status).to_contain_text("too long for a link")
    expect(status).to_contain_text("64,000")
    expect(status).to_contain_text("Download JSON")
    assert "config=" not in urlsplit(calc.url).fragment


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations_in_compare(
    browser: Browser, site_url: str, scheme: str
) -> None:
    """axe-core on the calculator with a ready comparison painted, light and dark."""
    context = browser.new_context(color_scheme=scheme)  # type: ignore[arg-type]
    guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    page.locator("#compare button[data-ready=gpus]").click()
    expect(page.locator("#compare-table td.compare-total")).to_have_count(2)
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "axe.run(document.getElementById('compare'), {resultTypes: ['violations']})"
    )
    problems = [
        f"{v['id']} {v['help']} {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    context.close()
    assert problems == []


def test_on_a_phone_the_table_scrolls_inside_its_box_with_a_cue(
    browser: Browser, site_url: str
) -> None:
    """At 390 px three columns scroll sideways inside the table's box, under a line that
    says so; the page itself does not scroll sideways."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    open_form(page)  # the preset field sits under "Adjust everything"
    page.locator("#f-preset").fill("llama-3.1-8b")
    expect(page.locator("#f-cfg_hidden_size")).to_have_value("4096")
    page.locator("#compare button[data-ready=finetune]").click()
    expect(page.locator("#compare-table td.compare-total")).to_have_count(3)
    expect(page.locator("#compare-cue")).to_be_visible()
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= 390
    context.close()


def test_a_comparison_asked_with_an_edit_leaves_the_verdict_to_come(calc: Page) -> None:
    """A ready comparison clicked in the same moment as an edit: the worker still sends
    the calculator's second part (verdict, solvers), which a newer request skips, since
    a comparison is no newer calculator request."""
    fill_form(calc, {"gpu": "rtx-4090"})
    calc.evaluate(
        """() => {
          const batch = document.getElementById("f-batch_size");
          batch.value = "12";
          batch.dispatchEvent(new Event("input", { bubbles: true }));
          document.querySelector("#compare button[data-ready=gpus]").click();
        }"""
    )
    expect(calc.locator("#compare-table td.compare-total")).to_have_count(2)
    reply = expect_total(calc, page_fields(calc))
    request = calc.locator("#results").get_attribute("data-request")
    expect(calc.locator("#results")).to_have_attribute("data-complete", request or "")
    expect(calc.locator("#mini-verdict")).to_contain_text(reply["verdict_text"])


LAZY = {"compare.js", "compare.css", "reader.js", "hub.js"}


def test_compare_and_the_reader_load_on_first_use(browser: Browser, site_url: str) -> None:
    """A first view fetches neither Compare's script and table styles nor the model
    reader's scripts; the first click on Add to compare fetches Compare's and pins the
    scenario, styled; Enter in the model id fetches the reader's, which answers."""
    context = browser.new_context()
    fetched: list[str] = []
    context.on("request", lambda r: fetched.append(urlsplit(r.url).path.rsplit("/", 1)[-1]))
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    assert not LAZY & set(fetched)
    # The empty box keeps its look without compare.css (style.css holds it).
    assert page.eval_on_selector("#compare", "e => getComputedStyle(e).borderStyle") == "solid"

    page.click("#compare-add")
    expect(page.locator("#compare-status")).to_contain_text("Added as scenario A")
    assert {"compare.js", "compare.css"} <= set(fetched)
    assert not {"reader.js", "hub.js"} & set(fetched)
    table = page.locator("#compare-table table.compare-table")
    expect(table).to_have_css("border-collapse", "separate")

    open_form(page)
    page.fill("#model-id", "not a model id")
    page.press("#model-id", "Enter")
    expect(page.locator("#reader-error")).to_contain_text('"not a model id" is not a model id')
    assert {"reader.js", "hub.js"} <= set(fetched)
    context.close()
