"""The calculator answers the question people arrive with, in headless Chromium: models
found by the names people type, honest defaults that follow the choices made, and status
text that says what happened."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urlsplit

import pytest
from conftest import guard_requests
from playwright.sync_api import Browser, Page, Route, expect

from nnmem.catalog import models
from site_helpers import (
    cpython_reply,
    expect_total,
    fill_form,
    open_form,
    page_fields,
    text_of,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def expect_settled_total(page: Page, changes: dict[str, str]) -> dict[str, object]:
    """The page's total is CPython's for the fields it holds once the answers settle,
    and the reply's second part (verdict, solvers, suggestions, plot) has been painted.

    Python may rewrite other fields after an edit (a size typed over the example's shape
    clears its width and depth), so the fields are read again until the page's total and
    CPython's for those fields agree."""
    reply: dict[str, object] = {}
    for _ in range(60):
        reply = cpython_reply({**page_fields(page), **changes})
        assert reply["ok"], reply
        settled = page.locator("#results").get_attribute("data-pending") is None
        total = page.locator("#total").get_attribute("data-bytes")
        if settled and total == str(reply["total_bytes"]):
            return reply  # the total and the later parts (verdict, solvers) are this answer's
        page.wait_for_timeout(250)
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(reply["total_bytes"]))
    return reply


@pytest.mark.parametrize("typed", ["Llama 3.1 8B", "llama3.1 8b", "meta-llama/Llama-3.1-8B"])
def test_a_preset_typed_by_its_name_is_found(calculator: Page, typed: str) -> None:
    """The catalog's display name (any case or spacing) or the Hub id picks the model, as
    its id does: the architecture fields fill in from its config.json and the total is
    CPython's for the preset."""
    calculator.locator("#f-preset").fill(typed)
    expect(calculator.locator("input[name=describe][value=fields]")).to_be_checked()
    expect(calculator.locator("#f-cfg_hidden_size")).to_have_value("4096")
    expect(calculator.locator("#err-preset")).to_have_text("")
    fields = page_fields(calculator)
    reply = expect_total(calculator, {**fields, "preset": "llama-3.1-8b"})
    assert str(reply["description"]).split(" · ")[1] == "Llama 3.1 8B"


@pytest.mark.parametrize(("typed", "millions"), [("7B", "7000"), ("7 B", "7000"), ("350M", "350")])
def test_the_size_takes_a_unit(calculator: Page, typed: str, millions: str) -> None:
    """A size typed as model names give it (7B, 350M) is that many parameters: the total
    equals CPython's for the same size in millions."""
    calculator.locator("#f-params_millions").fill(typed)
    expect(calculator.locator("#err-params_millions")).to_have_text("")
    reply = expect_settled_total(calculator, {"params_millions": millions})
    expect(calculator.locator("#scenario-line")).to_have_text(str(reply["description"]))


def test_a_size_with_an_unknown_unit_names_the_field(calculator: Page) -> None:
    """A unit the size does not take is refused next to the field, saying what it takes."""
    calculator.locator("#f-params_millions").fill("7Q")
    expect(calculator.locator("#err-params_millions")).to_have_text(
        "Model size must be a number of millions of parameters above 0 and at most "
        '10,000,000, or a count with its unit such as 7B or 350M (got "7Q").'
    )


def test_a_picked_llm_runs_in_its_own_dtype_and_inference_runs_one_sequence(
    calculator: Page,
) -> None:
    """Llama 3.1 8B's checkpoint is bfloat16: picking it for training sets BF16 AMP, and
    switching to inference sets pure BF16 and batch 1 instead of the form's training
    batch of 32. The total is CPython's for the page's fields, and the link keeps them."""
    calculator.locator("#f-preset").fill("llama-3.1-8b")
    expect(calculator.locator("#f-precision")).to_have_value("amp_bf16")
    expect(calculator.locator("#f-batch_size")).to_have_value("32")
    calculator.select_option("#f-mode", "inference")
    expect(calculator.locator("#f-precision")).to_have_value("bf16")
    expect(calculator.locator("#f-batch_size")).to_have_value("1")
    fields = page_fields(calculator)
    reply = expect_total(calculator, fields)
    assert "batch 1" in str(reply["description"])
    expect(calculator).to_have_url(re.compile(r"[?&]batch_size=1(&|$)"))
    expect(calculator).to_have_url(re.compile(r"[?&]precision=bf16(&|$)"))


def test_nf4_for_training_turns_on_qlora_with_a_note(calculator: Page) -> None:
    """The student's QLoRA: Llama 3.1 8B, NF4 chosen while training. Instead of an error
    in internal ids, LoRA adapters and checkpointing turn on, the status says so, and
    the total is CPython's for the page's fields."""
    calculator.locator("#f-preset").fill("Llama 3.1 8B")
    expect(calculator.locator("#f-precision")).to_have_value("amp_bf16")
    calculator.select_option("#f-precision", "nf4")
    expect(calculator.locator("#f-finetune")).to_have_value("lora")
    expect(calculator.locator("#f-checkpointing")).to_have_value("full")
    expect(calculator.locator("#action-status")).to_have_text(
        "Turned on LoRA adapters (QLoRA: the quantized weights stay frozen) and gradient "
        "checkpointing, as QLoRA recipes do; the adapters' settings are under Advanced options."
    )
    expect(calculator.locator("#err-precision")).to_have_text("")
    expect(calculator.locator("#results")).to_have_attribute("data-state", "live")
    expect_total(calculator, page_fields(calculator))


def test_applying_a_fix_says_what_was_applied(calculator: Page) -> None:
    """After Apply, the status names the change (the suggestion's own label), not the
    word on the button; after Use, the solver's value."""
    calculator.locator("#f-batch_size").fill("256")
    calculator.locator("#f-gpu").select_option("t4")
    expect_settled_total(calculator, {})  # the suggestions are this answer's
    item = calculator.locator("#part-suggestions li").first
    label = text_of(item.locator(".label"))
    item.locator("button.apply").click()
    expect(calculator.locator("#action-status")).to_have_text(f"Applied: {label}.")
    calculator.locator("#f-batch_size").fill("1")
    expect_settled_total(calculator, {})  # the solvers are batch 1's
    use = calculator.locator("#part-solvers [data-solver=max_batch] button.apply")
    value = use.get_attribute("data-label") or ""
    assert value.startswith("batch size ")
    use.click()
    expect(calculator.locator("#action-status")).to_have_text(f"Applied: {value}.")


def test_what_to_change_shows_only_when_it_does_not_fit(calculator: Page) -> None:
    """No GPU, or a GPU the run fits: no "What to change to fit". A run too big for the
    GPU: the ranked list under its title."""
    title = calculator.get_by_text("What to change to fit")
    expect(calculator.locator("#part-verdict .verdict")).to_have_attribute("data-fit", "none")
    expect(title).to_have_count(0)
    expect(calculator.locator("#part-suggestions li")).to_have_count(0)
    calculator.locator("#f-gpu").select_option("t4")
    expect(calculator.locator("#part-verdict .verdict")).to_have_attribute("data-fit", "yes")
    expect(title).to_have_count(0)
    calculator.locator("#f-batch_size").fill("256")
    expect(calculator.locator("#part-verdict .verdict")).to_have_attribute("data-fit", "no")
    expect(title).to_be_visible()
    expect(calculator.locator("#part-suggestions li").first).to_be_visible()


def test_a_split_run_says_per_gpu_in_the_headline(calculator: Page) -> None:
    """ZeRO-3 over 8 GPUs: the headline over the total says it is one GPU's, and the
    summary names the sharding; back on one GPU the headline is the plain total."""
    label = calculator.locator("#total-label")
    expect(label).to_have_text("Total estimated memory")
    fill_form(calculator, {"sharding": "zero3", "num_gpus": "8"})
    expect(label).to_have_text("Total estimated memory per GPU (of 8)")
    expect(calculator.locator("#scenario-line")).to_contain_text("ZeRO-3 / FSDP")
    fill_form(calculator, {"sharding": "none", "num_gpus": "1"})
    expect(label).to_have_text("Total estimated memory")


def test_the_summary_names_qlora_and_checkpointing(calculator: Page) -> None:
    """After NF4 turns QLoRA on, the summary line says QLoRA and checkpointing."""
    calculator.locator("#f-preset").fill("llama-3.1-8b")
    # As a user would, pick NF4 once the preset's answer has filled its fields in.
    expect(calculator.locator("#f-cfg_hidden_size")).to_have_value("4096")
    calculator.select_option("#f-precision", "nf4")
    line = calculator.locator("#scenario-line")
    expect(line).to_contain_text("QLoRA rank 16 · full checkpointing")


def test_an_engine_that_failed_offers_retry(page: Page, site_url: str) -> None:
    """When the engine cannot start, a Retry button loads the page again, and with the
    cause gone the calculator goes live with the link's inputs."""
    gone = "**/worker.js*"
    page.context.route(gone, lambda route: route.fulfill(status=404, body="gone"))
    page.goto(f"{site_url}?batch_size=4")
    expect(page.locator("#engine")).to_have_attribute("data-state", "error")
    retry = page.locator("#engine-retry")
    expect(retry).to_be_visible()
    page.context.unroute(gone)
    retry.click()
    wait_ready(page)
    expect(page.locator("#engine-retry")).to_be_hidden()
    expect(page.locator("#f-batch_size")).to_have_value("4")


def test_a_link_carries_a_pasted_config(calculator: Page, browser: Browser) -> None:
    """The team lead's link: a pasted config.json (Llama 3.1 8B's) goes into the URL's
    fragment, compressed, and the link opens in a fresh context with the same config,
    mode and total, which is CPython's, instead of "Config is required"."""
    text = json.dumps(models()["llama-3.1-8b"].config, indent=2)
    fill_form(calculator, {"describe": "config", "config": text})
    calculator.locator("#f-gpu").select_option("a100-sxm-80gb")  # a later answer
    expect(calculator).to_have_url(re.compile(r"#config=[\w-]+$"))
    # The same config as a preset filled it in, then made the model: it travels too.
    calculator.locator("#f-preset").fill("llama-3.1-8b")
    # The preset's answer makes it the model (its fields, the same 4096 as the config's):
    # only then is a click on "config" a change. Clicked before, on the radio still
    # checked, it asked nothing, and the preset's answer then took the model.
    expect(calculator.locator("input[name=describe][value=fields]")).to_be_checked()
    expect(calculator.locator("#f-cfg_hidden_size")).to_have_value("4096")
    expect(calculator.locator("#f-config")).to_have_value(text)
    calculator.locator("label:has(input[name=describe][value=config])").click()
    expect(calculator.locator("#err-config")).to_have_text("")
    expect(calculator).to_have_url(re.compile(r"#config=[\w-]+$"))
    url = calculator.url
    assert "config=" not in urlsplit(url).query
    assert len(urlsplit(url).fragment) < len(quote(text)) / 2  # shorter than in a query
    fields = page_fields(calculator)
    reply = expect_total(calculator, fields)

    context = browser.new_context()
    guard_requests(context)
    fresh = context.new_page()
    fresh.goto(url)
    wait_ready(fresh)
    expect(fresh.locator("input[name=describe][value=config]")).to_be_checked()
    expect(fresh.locator("#f-config")).to_have_value(text)
    expect(fresh.locator("#total")).to_have_attribute("data-bytes", str(reply["total_bytes"]))
    expect(fresh.locator("#err-config")).to_have_text("")
    expect(fresh.locator("#results")).not_to_have_attribute("data-link", "loading")
    context.close()


def test_a_link_greys_the_example_result_while_it_loads(
    page: Page, site_url: str, outside_requests: list[str]
) -> None:
    """Until the engine computes the link's inputs, the prerendered example result is
    greyed and labelled, not shown in full contrast as if it were the link's."""
    held: list[Route] = []
    page.context.route("**/pyodide.asm.wasm", lambda route: held.append(route))
    page.goto(f"{site_url}?batch_size=4")
    expect(page.locator("#engine")).to_have_attribute("data-state", "loading")
    expect(page.locator("#results")).to_have_attribute("data-link", "loading")
    expect(page.locator("#stale")).to_have_text(
        "The link's inputs will be calculated as soon as the engine has loaded."
    )
    opacity = page.locator("#part-headline").evaluate("(box) => getComputedStyle(box).opacity")
    assert float(opacity) < 1
    # The bar at the bottom shows no total until the link's is worked out.
    expect(page.locator("#mini-total-value")).to_have_text("—")
    expect(page.locator("#mini-verdict")).to_have_text("· working out the link's inputs")
    for route in held:
        route.abort()


PHONE = {"width": 366, "height": 800}


def test_on_a_phone_the_bar_carries_the_verdict_and_clears_on_error(
    browser: Browser, site_url: str
) -> None:
    """At 366 px the bar at the bottom shows the verdict beside the total, CPython's,
    and a field in error empties it instead of leaving the last total standing."""
    context = browser.new_context(viewport=PHONE)
    guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    page.locator("#f-gpu").select_option("rtx-4090")
    expect(page.locator("#part-verdict .verdict")).to_have_attribute("data-fit", "yes")
    # The total sits within the first screen now: the bar shows once it is scrolled past.
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    bar = page.locator("#mini-total")
    expect(bar).to_be_visible()
    reply = cpython_reply(page_fields(page))
    assert str(reply["verdict_text"]).startswith("fits: ")
    expect(page.locator("#mini-verdict")).to_have_text(f"· {reply['verdict_text']}")
    expect(page.locator("#mini-total-value")).to_have_text(str(reply["total_text"]))
    open_form(page)
    page.locator("#f-batch_size").fill("0")
    expect(page.locator("#mini-total-value")).to_have_text("—")
    expect(page.locator("#mini-verdict")).to_have_text("· fix the highlighted field")
    context.close()


@pytest.mark.parametrize("tool", ["gpu-vram-guide", "parameter-count"])
def test_on_a_phone_wide_tables_scroll_in_their_box_with_a_hint(
    browser: Browser, site_url: str, tool: str
) -> None:
    """At 366 px the page does not scroll sideways; a table wider than its box scrolls
    inside it, a hint above it says so, and its first column stays put."""
    context = browser.new_context(viewport=PHONE)
    guard_requests(context)
    page = context.new_page()
    page.goto(f"{site_url}{tool}.html")
    box = page.locator(".table-scroll").first
    expect(box).to_have_attribute("data-overflow", "true")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert box.evaluate("(b) => b.scrollWidth > b.clientWidth")
    # The row's name stays in view while the other columns scroll beneath it.
    first = box.locator("tbody tr").first.locator("> :first-child")
    left = first.evaluate("(c) => c.getBoundingClientRect().left")
    box.evaluate("(b) => { b.scrollLeft = 200; }")
    assert first.evaluate("(c) => getComputedStyle(c).position") == "sticky"
    assert abs(first.evaluate("(c) => c.getBoundingClientRect().left") - left) < 1
    hint = box.evaluate("(b) => getComputedStyle(b, '::before').content")
    assert "Scroll sideways for more columns" in hint
    context.close()


def test_a_table_an_answer_repaints_is_marked_and_a_status_line_is_not_watched(
    browser: Browser, site_url: str
) -> None:
    """On a phone the calculator's breakdown table fits its box, and is marked so once a
    new answer paints it anew, while a change outside every table's box (the status
    line) does not make the page read its layout again."""
    context = browser.new_context(viewport=PHONE)
    guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    box = page.locator("#part-table")
    assert box.evaluate("(b) => b.scrollWidth <= b.clientWidth + 1")
    expect(box).not_to_have_attribute("data-overflow", "true")
    # Marked wrongly by hand: a change elsewhere leaves the mark, a new answer corrects it.
    box.evaluate("(b) => { b.dataset.overflow = 'true'; }")
    page.evaluate("document.getElementById('engine-text').textContent = 'changed'")
    page.wait_for_timeout(300)  # many frames, where a new mark would have come
    expect(box).to_have_attribute("data-overflow", "true")
    open_form(page)
    page.locator("#f-batch_size").fill("3")
    expect(box).not_to_have_attribute("data-overflow", "true")
    context.close()


def test_the_status_line_is_not_live_over_an_error(calculator: Page) -> None:
    """While a field is wrong the result is held at the last valid inputs: the status
    line says so instead of "Live", and says "Live" again once the field is fixed."""
    status = calculator.locator("#engine-text")
    expect(status).to_have_text("Live: the result updates as you type.")
    calculator.locator("#f-batch_size").fill("0")
    expect(calculator.locator("#err-batch_size")).not_to_be_empty()
    expect(status).to_have_text(
        "Held: the result is for the last valid inputs until the highlighted field is fixed."
    )
    calculator.locator("#f-batch_size").fill("4")
    expect(status).to_have_text("Live: the result updates as you type.")


def test_a_new_size_clears_the_examples_shape(calculator: Page) -> None:
    """Typing 7000M over the example's 768 × 12 layers empties width and depth, so they
    follow the size (the hint's promise), says so, and the total is CPython's for the
    size alone."""
    calculator.locator("#f-params_millions").fill("7000")
    expect(calculator.locator("#f-hidden_size")).to_have_value("")
    expect(calculator.locator("#f-num_layers")).to_have_value("")
    expect(calculator.locator("#action-status")).to_have_text(
        "Width and depth now follow the size: 768 × 12 layers is about 85M parameters, not 7.00B."
    )
    expect_total(calculator, page_fields(calculator))


def test_on_a_phone_a_presets_fields_fold(browser: Browser, site_url: str) -> None:
    """At 366 px a picked preset's thirteen architecture fields fold under one summary, and
    the answer, above the form, starts within the first screen; a problem in one of the
    fields opens the group."""
    context = browser.new_context(viewport=PHONE)
    guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    open_form(page)
    page.locator("#f-preset").fill("Llama 3.1 8B")
    group = page.locator("#arch-fields")
    expect(group).to_be_visible()
    expect(page.locator("#f-cfg_hidden_size")).to_have_value("4096")
    expect(page.locator("#f-cfg_hidden_size")).to_be_hidden()
    top = page.evaluate("document.getElementById('answer').getBoundingClientRect().top + scrollY")
    assert top < PHONE["height"]
    fill_form(page, {"cfg_hidden_size": "0"})
    expect(page.locator("#err-cfg_hidden_size")).not_to_be_empty()
    expect(page.locator("#f-cfg_hidden_size")).to_be_visible()
    context.close()


def test_a_typed_capacity_is_judged_as_a_card_of_that_size(
    calculator: Page, browser: Browser
) -> None:
    """The hobbyist's 8 GB card typed in: "Custom capacity" shows a GB field, a bad value
    is named there, and 8 GB gets CPython's verdict, the one the catalog's RTX 4060 8 GB
    gets (same usable memory, same rule). The link keeps the capacity."""
    capacity = calculator.locator("#f-gpu_gb")
    expect(capacity).to_be_hidden()
    fill_form(calculator, {"batch_size": "256"})  # too big for 8 GB: suggestions too
    calculator.locator("#f-gpu").select_option("custom")
    expect(capacity).to_be_visible()
    capacity.fill("0")
    expect(calculator.locator("#err-gpu_gb")).to_contain_text(
        "Custom capacity must be the card's memory in GB as its maker quotes it"
    )
    capacity.fill("8 GB")
    expect(calculator.locator("#err-gpu_gb")).to_have_text("")
    reply = expect_settled_total(calculator, {})
    card = cpython_reply({**page_fields(calculator), "gpu": "rtx-4060"})
    assert reply["download"]["gpu"]["usable_bytes"] == 8 * 2**30
    assert reply["verdict_text"] == card["verdict_text"]
    assert str(reply["verdict_text"]).startswith("does not fit")
    expect(calculator.locator("#mini-verdict")).to_contain_text(str(reply["verdict_text"]))
    expect(calculator.locator("#part-verdict .verdict")).to_have_attribute("data-fit", "no")
    expect(calculator.locator("#part-verdict")).to_contain_text("Custom 8 GB card")
    expect(calculator.locator("#part-suggestions li").first).to_be_visible()
    expect(calculator).to_have_url(re.compile(r"[?&]gpu=custom&gpu_gb=8(\+|%20)GB(&|$)"))

    context = browser.new_context()
    guard_requests(context)
    fresh = context.new_page()
    fresh.goto(calculator.url)
    wait_ready(fresh)
    expect(fresh.locator("#f-gpu_gb")).to_have_value("8 GB")
    expect(fresh.locator("#mini-verdict")).to_contain_text(str(reply["verdict_text"]))
    context.close()
    calculator.locator("#f-gpu").select_option("rtx-4060")
    expect(capacity).to_be_hidden()


def test_the_gpu_picker_is_three_tabs_from_the_top(page: Page, site_url: str) -> None:
    """From the top of the page, Tab reaches a "Skip to the GPU and the verdict" link
    (shown when focused) second; Enter on it and one more Tab is the GPU picker: 3 Tab
    presses, not the 31 through the whole form."""
    page.goto(site_url)
    wait_ready(page)
    tabs = 0
    focused = ""
    while focused != "f-gpu" and tabs < 40:
        page.keyboard.press("Tab")
        tabs += 1
        focused = page.evaluate("document.activeElement.id")
        if page.evaluate("document.activeElement.getAttribute('href')") == "#fit":
            skip = page.locator("a.skip[href='#fit']")
            expect(skip).to_have_text("Skip to the GPU and the verdict")
            assert (skip.bounding_box() or {}).get("x", -1) >= 0  # on screen while focused
            page.keyboard.press("Enter")
    assert (focused, tabs) == ("f-gpu", 3)
