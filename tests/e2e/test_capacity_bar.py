"""The answer first, in headless Chromium: the capacity bar and its verdict head the
result, stay within one screen of a phone's top, follow the user in the bar at the
bottom, and open the explanations on demand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import guard_requests
from playwright.sync_api import Browser, Locator, Page, expect

from site_helpers import cpython_reply, fill_form, open_form, page_fields, wait_ready

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}


def in_viewport(locator: Locator, height: int) -> bool:
    """Whether the element lies wholly between the screen's top and bottom."""
    box = locator.bounding_box()
    assert box is not None
    return box["y"] >= 0 and box["y"] + box["height"] <= height


def settled(page: Page) -> dict[str, object]:
    """CPython's reply for the page's fields, once the page has painted all of it. The
    fields are read again until the page's total is CPython's for them: an answer may
    still be filling controls (a preset's precision) when the first read happens."""
    reply: dict[str, object] = {}
    for _ in range(200):  # up to 40 s on a loaded machine
        expect(page.locator("#results")).not_to_have_attribute("data-pending", "true")
        reply = cpython_reply(page_fields(page))
        if page.locator("#total").get_attribute("data-bytes") == str(reply["total_bytes"]):
            break
        page.wait_for_timeout(200)
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(reply["total_bytes"]))
    return reply


def test_on_a_phone_the_verdict_is_within_one_screen_of_the_top(
    browser: Browser, site_url: str
) -> None:
    """At 390 × 844, after picking Llama 3.1 8B and an RTX 4060 Ti 16GB, the headline
    with its verdict (CPython's: it needs 11 of this card, in AMP it does not fit) and
    the bar lie within the first screen; scrolled down to the form, the bar at the
    bottom carries the same verdict and the total."""
    context = browser.new_context(viewport=PHONE)
    guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    open_form(page)  # the preset field sits under "Adjust everything", after the answer
    page.locator("#f-preset").fill("llama-3.1-8b")
    page.locator("#f-gpu").select_option("rtx-4060-ti-16gb")
    headline = page.locator(".capacity-headline")
    # The example's BERT fits this card: "no" is the preset's answer, not the page's first.
    expect(headline).to_have_attribute("data-fit", "no")
    reply = settled(page)
    expect(headline).to_contain_text(f"Needs {reply['total_text']}")
    expect(headline).to_contain_text(re.compile(r": [\d.,]+× this card$"))
    page.evaluate("window.scrollTo(0, 0)")
    assert in_viewport(headline, PHONE["height"])
    assert in_viewport(page.locator("#part-capacity svg"), PHONE["height"])
    expect(page.locator("#mini-total")).to_be_hidden()  # the answer itself is in view

    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    bar = page.locator("#mini-total")
    expect(bar).to_be_visible()
    assert in_viewport(bar, PHONE["height"])
    expect(page.locator("#mini-total-value")).to_have_text(str(reply["total_text"]))
    expect(page.locator("#mini-verdict")).to_have_text(f"· {reply['verdict_text']}")
    context.close()


def test_on_a_wide_screen_the_bar_follows_too(browser: Browser, site_url: str) -> None:
    """At 1280 × 900 the bar at the bottom shows once the answer scrolls away, with the
    prompt to pick a GPU where none is chosen."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    bar = page.locator("#mini-total")
    expect(bar).to_be_hidden()
    page.locator("#f-optimizer").scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, 1200)")
    expect(bar).to_be_visible()
    expect(page.locator("#mini-verdict")).to_have_text("· pick a GPU to see whether it fits")
    context.close()


def test_a_fix_applied_from_the_suggestions_says_what_changed(calculator: Page) -> None:
    """ "What to change" shows only while it does not fit; applying a change names it."""
    fill_form(calculator, {"batch_size": "512"})
    calculator.locator("#f-gpu").select_option("rtx-4090")
    expect(calculator.locator(".capacity-headline")).to_have_attribute("data-fit", "no")
    first = calculator.locator("#part-suggestions li").first
    label = first.locator(".label").inner_text()
    first.locator("button.apply").click()
    expect(calculator.locator("#action-status")).to_have_text(f"Applied: {label}.")
    fill_form(calculator, {"batch_size": "1"})
    expect(calculator.locator(".capacity-headline")).to_have_attribute("data-fit", "yes")
    expect(calculator.locator("#part-suggestions")).to_be_empty()
    calculator.locator("#f-gpu").select_option("")


def test_a_component_name_opens_its_paragraph(calculator: Page) -> None:
    """ "Activations" in the table opens "What are activations?" under the folded
    glossary and puts the focus there; the URL keeps its fragment."""
    glossary = calculator.locator("#what-counts")
    expect(glossary).not_to_have_attribute("open", "")
    url = calculator.url
    calculator.locator('#part-table a[href="#what-activations"]').click()
    entry = calculator.locator("#what-activations")
    expect(entry).to_be_visible()
    expect(entry).to_be_focused()
    expect(entry).to_contain_text("What are activations?")
    assert calculator.url == url
    glossary.evaluate("(d) => { d.open = false; }")


def test_the_formula_and_phases_open_on_demand(calculator: Page) -> None:
    """Folded, yet in the page: their text is there to find before they are opened."""
    formula = calculator.locator("#formula")
    expect(formula.locator("#part-formula")).to_be_hidden()
    expect(formula.locator("#part-formula")).to_contain_text("110,000,000 × 4 B")
    formula.locator("summary").click()
    expect(formula.locator("#part-formula")).to_be_visible()
    formula.locator("summary").click()
    expect(calculator.locator("#phases #part-phases")).to_be_hidden()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_is_clean_with_the_bar_over_the_card_and_everything_open(
    browser: Browser, site_url: str, scheme: str
) -> None:
    """axe-core with the overflow hatched in red, its key, and every fold open."""
    context = browser.new_context(color_scheme=scheme)  # type: ignore[arg-type]
    guard_requests(context)
    page = context.new_page()
    page.goto(f"{site_url}?gpu=t4&batch_size=256")
    wait_ready(page)
    expect(page.locator(".capacity-headline")).to_have_attribute("data-fit", "no")
    for details in page.locator(".results details").all():
        details.evaluate("(d) => { d.open = true; }")
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    problems = [
        f"{v['id']} {v['help']} {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    context.close()
    assert problems == []
