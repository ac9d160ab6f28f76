"""The seven user tasks of the answer-first redesign, each a script a user follows from
the live page in headless Chromium: the answer (CPython nnmem's for the page's own
fields, or for the scenario the task names) and the interactions it took, at most 3."""

from __future__ import annotations

import json
import re

import pytest
from conftest import guard_requests
from playwright.sync_api import Browser, Page, expect

from nnmem import catalog
from nnmem.estimate import estimate
from nnmem.scenario import parse
from site_helpers import cpython_reply, page_fields, wait_ready

pytestmark = pytest.mark.e2e
PHONE = {"width": 390, "height": 844}
MOST = 3  # interactions after the page is live (the "Done when")


class User:
    """A user's clicks, typing and picks on the page, counted."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.steps = 0

    def choose(self, intent: str) -> None:
        """Click one of the three intents by its visible name."""
        self.page.locator("label.intent", has_text=intent).click()
        self.steps += 1

    def type(self, selector: str, text: str) -> None:
        """Type (or paste) text into a box."""
        self.page.locator(selector).fill(text)
        self.steps += 1

    def pick(self, selector: str, value: str) -> None:
        """Pick an option of a menu."""
        self.page.locator(selector).select_option(value)
        self.steps += 1

    def click(self, selector: str) -> None:
        """Click a button."""
        self.page.locator(selector).click()
        self.steps += 1


def settled(page: Page) -> dict[str, object]:
    """CPython's reply for the page's fields once the page shows that answer complete
    (total, summary, verdict and suggestions) for its newest request, the fields read
    again while answers still come (a box's answer sets other fields, such as the GPU)."""
    reply: dict[str, object] = {}
    for _ in range(80):
        reply = cpython_reply(page_fields(page))
        results = page.locator("#results")
        newest = results.get_attribute("data-asked")
        done = results.get_attribute("data-pending") is None
        done = done and newest is not None and results.get_attribute("data-complete") == newest
        shown = page.locator("#total").get_attribute("data-bytes")
        line = page.locator("#start-summary").text_content()
        if reply["ok"] and done and (shown, line) == (str(reply["total_bytes"]), reply["summary"]):
            return reply
        page.wait_for_timeout(250)
    raise AssertionError(f"the page never settled on CPython's answer: {reply}")


@pytest.fixture
def fresh(page: Page, site_url: str) -> Page:
    """A newly opened calculator, live: the state a user starts a task from."""
    guard_requests(page.context)
    page.goto(site_url)
    wait_ready(page)
    return page


def test_student_qlora_on_a_4060_ti_fits_in_three_steps(fresh: Page) -> None:
    """A student with an RTX 4060 Ti 16 GB wants to QLoRA Llama 3.1 8B at 2,048 tokens:
    Fine-tune, the model's name, the card's name. The intent sets QLoRA's recipe (NF4
    base, rank-16 adapters, checkpointing, batch 2, 2,048 tokens) and the page says it
    fits, as CPython does for the same fields; the summary names every setting."""
    user = User(fresh)
    user.choose("Fine-tune")
    user.type("#f-start_model", "Llama 3.1 8B")
    user.type("#f-start_hardware", "RTX 4060 Ti 16GB")
    reply = settled(fresh)
    fields = page_fields(fresh)
    assert (fields["precision"], fields["finetune"], fields["checkpointing"]) == (
        "nf4_dq",
        "lora",
        "full",
    )
    assert (fields["seq_len"], fields["gpu"]) == ("2048", "rtx-4060-ti-16gb")
    assert str(reply["verdict_text"]).startswith("fits: ")
    expect(fresh.locator("#part-verdict .verdict")).to_have_attribute("data-fit", "yes")
    expect(fresh.locator("#start-summary")).to_have_text(str(reply["summary"]))
    for setting in ("QLoRA rank 16", "full checkpointing", "batch 2", "sequence 2,048"):
        assert setting in str(reply["summary"])
    assert user.steps <= MOST


def test_hobbyist_8_gb_card_gets_the_verdict_and_the_quantized_answer(fresh: Page) -> None:
    """A hobbyist with an 8 GB card wants a 7–8B chat model at 8k context: Run / chat,
    the model, "8 GB". One conversation of 8,192 tokens in BF16 does not fit, as CPython
    says; the list of changes gives each quantized format's total, CPython's for the
    same fields in that format, with its own verdict."""
    user = User(fresh)
    user.choose("Run / chat")
    user.type("#f-start_model", "Llama 3.1 8B")
    user.type("#f-start_hardware", "8 GB")
    reply = settled(fresh)
    fields = page_fields(fresh)
    assert (fields["mode"], fields["batch_size"], fields["seq_len"]) == ("inference", "1", "8192")
    assert (fields["precision"], fields["gpu"], fields["gpu_gb"]) == ("bf16", "custom", "8")
    assert str(reply["verdict_text"]).startswith("does not fit")
    expect(fresh.locator("#mini-verdict")).to_contain_text(str(reply["verdict_text"]))
    for key in ("quantize-nf4_dq", "quantize-q4_k_m"):
        item = fresh.locator(f"#part-suggestions li[data-key='{key}']")
        quantized = cpython_reply({**fields, "precision": key.removeprefix("quantize-")})
        saved = int(str(reply["total_bytes"])) - int(str(quantized["total_bytes"]))
        expect(item).to_have_attribute("data-saved", str(saved))
        fits = str(quantized["verdict_text"]).startswith("fits")
        expect(item).to_have_attribute("data-fits", str(fits).lower())
    assert user.steps <= MOST


def test_zero3_on_eight_a100s_from_a_pasted_config(fresh: Page) -> None:
    """An engineer pastes Llama 3.1 8B's config.json, types "8 × A100 80GB" and picks
    ZeRO-3: the config's bfloat16 gives BF16 AMP, and the total is CPython's, per GPU,
    which the summary says with the count and the card."""
    config = json.dumps(catalog.models()["llama-3.1-8b"].config)
    user = User(fresh)
    user.type("#f-start_model", config)
    user.type("#f-start_hardware", "8 × A100 80GB")
    user.pick("#f-sharding", "zero3")
    reply = settled(fresh)
    fields = page_fields(fresh)
    assert (fields["describe"], fields["precision"], fields["num_gpus"]) == (
        "config",
        "amp_bf16",
        "8",
    )
    summary = str(reply["summary"])
    assert "ZeRO-3" in summary
    assert "per GPU of 8" in summary
    assert summary.endswith("on 8 × NVIDIA A100 SXM4 80GB")
    expect(fresh.locator("#start-summary")).to_have_text(summary)
    assert user.steps <= MOST


def test_a_shared_link_reopens_the_same_first_screen(
    fresh: Page, browser: Browser, site_url: str
) -> None:
    """A team lead's pasted-config scenario, shared: the link opens in a fresh context
    with no interaction at all on the same intent, model, summary and total."""
    config = json.dumps(catalog.models()["qwen2.5-7b"].config)
    fresh.locator("label.intent", has_text="Train").click()
    fresh.locator("#f-start_model").fill(config)
    fresh.locator("#f-start_hardware").fill("2 x RTX 3090")
    reply = settled(fresh)
    expect(fresh).to_have_url(re.compile(r"[?&]intent=train(&|$)"))
    expect(fresh).to_have_url(re.compile(r"#config="))
    link = fresh.url
    context = browser.new_context()
    guard_requests(context)
    other = context.new_page()
    other.goto(link)
    wait_ready(other)
    expect(other.locator("input[name=intent][value=train]")).to_be_checked()
    expect(other.locator("#total")).to_have_attribute("data-bytes", str(reply["total_bytes"]))
    expect(other.locator("#start-summary")).to_have_text(str(reply["summary"]))
    expect(other.locator("#f-start_hardware")).to_have_value("NVIDIA GeForce RTX 3090")
    context.close()


def test_seven_b_typed_derives_its_shape(fresh: Page) -> None:
    """The brief's Llama-7B typed as "7B" in the model box: one step. BERT's 768 × 12
    are cleared (the status says why), the fields show the shape the size gives, and
    the total is CPython's for 7,000M parameters with a derived shape."""
    user = User(fresh)
    user.type("#f-start_model", "7B")
    reply = settled(fresh)
    fields = page_fields(fresh)
    assert (fields["hidden_size"], fields["num_layers"]) == ("", "")
    expect(fresh.locator("#action-status")).to_have_text(
        "Width and depth now follow the size: 768 × 12 layers is about 85M parameters, not 7.00B."
    )
    expect(fresh.locator("#f-hidden_size")).to_have_attribute("placeholder", "4,204 from the size")
    expect(fresh.locator("#f-num_layers")).to_have_attribute("placeholder", "33 from the size")
    own = estimate(parse({"params_millions": 7000, "batch_size": 32, "seq_len": 128}))
    assert reply["total_bytes"] == own.total_bytes
    assert user.steps <= MOST


def test_on_a_phone_the_answer_follows_the_choice(browser: Browser, site_url: str) -> None:
    """At 390 × 844, after choosing Run / chat and a card, the total starts within the
    first screen, and once it is scrolled past the bar at the bottom carries it with
    the verdict."""
    context = browser.new_context(viewport=PHONE)
    guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    user = User(page)
    user.choose("Run / chat")
    user.type("#f-start_hardware", "RTX 4090")
    reply = settled(page)
    page.evaluate("window.scrollTo(0, 0)")
    total = page.locator("#total").bounding_box()
    assert total is not None
    assert total["y"] + total["height"] <= PHONE["height"]
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    expect(page.locator("#mini-total")).to_be_visible()
    expect(page.locator("#mini-verdict")).to_have_text(f"· {reply['verdict_text']}")
    assert user.steps <= MOST
    context.close()


@pytest.mark.parametrize(
    ("chip", "scenario"),
    [
        (
            "BERT-base training",
            {"model": "preset", "preset": "bert-base-uncased", "precision": "fp32",
             "batch_size": 32, "seq_len": 128},
        ),
        (
            "Llama-7B inference",
            {"model": "preset", "preset": "llama-2-7b", "mode": "inference",
             "precision": "fp16", "batch_size": 1, "seq_len": 1024, "new_tokens": 1024},
        ),
    ],
)  # fmt: skip
def test_the_examples_are_one_click_each(fresh: Page, chip: str, scenario: dict) -> None:
    """The seed's two worked examples (content/examples.md §1 and §2) as chips: one click
    gives the example's total, as CPython estimates that scenario, after other choices."""
    fresh.locator("label.intent", has_text="Fine-tune").click()
    fresh.locator("#f-start_model").fill("Qwen2.5 7B")
    settled(fresh)
    user = User(fresh)
    user.click(f"button.chip:has-text('{chip}')")
    expect(fresh.locator("#total")).to_have_attribute(
        "data-bytes", str(estimate(parse(scenario)).total_bytes)
    )
    expect(fresh.locator("#action-status")).to_have_text(f"Example: {chip}.")
    assert user.steps == 1


def test_the_full_form_is_one_click_away(fresh: Page) -> None:
    """ "Adjust everything" is closed on arrival and opens with one keyboard press,
    every field of the form inside it."""
    expect(fresh.locator("#f-batch_size")).to_be_hidden()
    fresh.locator("#adjust > summary").focus()
    fresh.keyboard.press("Enter")
    expect(fresh.locator("#f-batch_size")).to_be_visible()
    expect(fresh.locator("#f-preset")).to_be_visible()
