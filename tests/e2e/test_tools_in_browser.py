"""The related tools' pages in headless Chromium, served under /nnmem/ on 127.0.0.1.

The site is built from the tool pages alone, so these tests follow the tools whatever
state the other pages are in. Every expected value is what nnmem in this CPython answers
for the same inputs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from localserver import serve
from playwright.sync_api import Page, Route, expect

import build
from nnmem.web import handle
from nnmem.web.tools import defaults
from site_helpers import BASE, READY_TIMEOUT_MS

pytestmark = pytest.mark.e2e

TOOL_PAGES = (
    "gpu-vram-guide",
    "pytorch-memory",
    "parameter-count",
    "inference-latency",
    "training-cost",
    "model-compression",
    "what-fits",
)


@pytest.fixture(scope="module")
def tools_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tool pages built for the /nnmem/ base path and served on 127.0.0.1."""
    content = tmp_path_factory.mktemp("content")
    for name in TOOL_PAGES:
        shutil.copy(build.ROOT / "content" / f"{name}.md", content)
    root = tmp_path_factory.mktemp("www")
    build.build(root / BASE.strip("/"), base_path=BASE, content=content)
    server = serve(root)
    yield f"http://127.0.0.1:{server.server_address[1]}{BASE}"
    server.shutdown()
    server.server_close()


def open_live(page: Page, url: str) -> None:
    """Open a calculator page and wait until Python has answered its form."""
    page.goto(url)
    expect(page.locator("#engine")).to_have_attribute(
        "data-state", "ready", timeout=READY_TIMEOUT_MS
    )
    expect(page.locator("#tool-results")).to_have_attribute("data-state", "live")


def expected(tool: str, changes: dict[str, str]) -> dict[str, str]:
    """What CPython's nnmem answers for the tool's defaults with ``changes``."""
    reply = json.loads(handle(json.dumps({"page": tool, "fields": {**defaults(tool), **changes}})))
    assert reply["ok"], reply
    values: dict[str, str] = reply["values"]
    return values


def problem(tool: str, changes: dict[str, str]) -> dict[str, str]:
    """The first problem CPython's nnmem reports for the tool's defaults with ``changes``."""
    reply = json.loads(handle(json.dumps({"page": tool, "fields": {**defaults(tool), **changes}})))
    assert not reply["ok"], reply
    first: dict[str, str] = reply["errors"][0]
    return first


def set_field(page: Page, key: str, value: str) -> None:
    control = page.locator(f"#t-{key}")
    if control.evaluate("el => el.tagName") == "SELECT":
        control.select_option(value)
    else:
        control.fill(value)


LIVE_CASES = [
    pytest.param(
        "inference-latency",
        {"preset": "qwen2.5-7b", "precision": "awq", "gpu": "rtx-4090", "batch_size": "8"},
        ("tokens_per_s", "batch_tokens_per_s", "prefill_s", "total_s"),
        ("new_tokens", "-5"),
        id="inference-latency",
    ),
    pytest.param(
        "training-cost",
        {"params_billions": "70", "tokens_billions": "1400", "gpu": "a100-sxm-80gb"},
        ("flops", "gpu_hours", "days", "cost"),
        ("mfu", "150"),
        id="training-cost",
    ),
    pytest.param(
        "parameter-count",
        {"num_local_experts": "8", "intermediate_size": "14336"},
        ("total", "active"),
        ("num_key_value_heads", "5"),
        id="parameter-count",
    ),
    pytest.param(
        "what-fits",
        {"gpu": "h100-sxm-80gb", "runtime": "vllm", "users": "4"},
        ("best", "count"),
        ("users", "0"),
        id="what-fits",
    ),
]


@pytest.mark.parametrize(("tool", "changes", "keys", "bad"), LIVE_CASES)
def test_calculator_goes_live_recomputes_and_places_errors(
    page: Page,
    tools_url: str,
    outside_requests: list[str],
    tool: str,
    changes: dict[str, str],
    keys: tuple[str, ...],
    bad: tuple[str, str],
) -> None:
    """The prerendered defaults match nnmem; a change recomputes to CPython's value; a bad
    value gets nnmem's message next to its field and the last result stays, marked stale."""
    before = expected(tool, {})
    page.goto(f"{tools_url}{tool}.html")
    # Prerendered at build time, readable before Python loads.
    expect(page.locator(f"#r-{keys[0]}")).to_have_attribute("data-value", before[keys[0]])
    open_live(page, f"{tools_url}{tool}.html")
    for key, value in changes.items():
        set_field(page, key, value)
    after = expected(tool, changes)
    for key in keys:
        expect(page.locator(f"#r-{key}")).to_have_attribute("data-value", after[key])
    assert after[keys[0]] != before[keys[0]]

    key, value = bad
    set_field(page, key, value)
    message = problem(tool, {**changes, key: value})
    assert message["field"] == key
    expect(page.locator(f"#err-{key}")).to_have_text(message["message"])
    expect(page.locator(f"#t-{key}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#tool-results")).to_have_attribute("data-state", "stale")
    expect(page.locator(f"#r-{keys[0]}")).to_have_attribute("data-value", after[keys[0]])


def test_parameter_count_reads_a_pasted_config(
    page: Page, tools_url: str, outside_requests: list[str]
) -> None:
    """GPT-2's config.json gives the 124,439,808 parameters of GPT2LMHeadModel; broken JSON
    is named next to the text box; a catalog model gives its published count."""
    open_live(page, f"{tools_url}parameter-count.html")
    expect(page.locator("#t-config")).to_be_hidden()
    set_field(page, "source", "config")
    expect(page.locator("#t-hidden_size")).to_be_hidden()
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
            "vocab_size": 50257, "n_positions": 1024}  # fmt: skip
    set_field(page, "config", json.dumps(gpt2))
    expect(page.locator("#r-total")).to_have_attribute("data-value", "124439808")
    set_field(page, "config", '{"n_embd": 768,')
    expect(page.locator("#err-config")).to_contain_text("config.json is not valid JSON")
    set_field(page, "source", "preset")
    set_field(page, "preset", "t5-small")
    expect(page.locator("#r-total")).to_have_attribute("data-value", "60506624")


def test_gpu_table_sorts_by_clicking_and_keyboard(
    page: Page, tools_url: str, outside_requests: list[str]
) -> None:
    """A column heading's button sorts the rows and says so in aria-sort; a second press,
    here from the keyboard, reverses the order."""
    page.goto(f"{tools_url}gpu-vram-guide.html")
    table = page.locator("#gpu-table")
    memory = table.locator("thead th").nth(2)
    expect(memory).to_have_attribute("aria-sort", "none")
    memory.get_by_role("button").click()
    expect(memory).to_have_attribute("aria-sort", "ascending")
    values = table.locator("tbody tr td:nth-child(3)").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.sort))"
    )
    assert values == sorted(values)
    assert values[0] < values[-1]
    memory.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(memory).to_have_attribute("aria-sort", "descending")
    values = table.locator("tbody tr td:nth-child(3)").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.sort))"
    )
    assert values == sorted(values, reverse=True)
    name = table.locator("thead th").nth(0)
    name.get_by_role("button").click()
    expect(name).to_have_attribute("aria-sort", "ascending")
    expect(memory).to_have_attribute("aria-sort", "none")


def test_prerendered_result_stays_when_the_runtime_fails(
    page: Page, tools_url: str, outside_requests: list[str]
) -> None:
    """Without the nnmem package the page says so plainly and keeps the built result."""

    def missing(route: Route) -> None:
        route.fulfill(status=404, body="not found")

    page.route("**/assets/nnmem-*.zip*", missing)
    page.goto(f"{tools_url}training-cost.html")
    engine = page.locator("#engine")
    expect(engine).to_have_attribute("data-state", "error", timeout=READY_TIMEOUT_MS)
    expect(engine).to_contain_text("could not start")
    expect(page.locator("#r-flops")).to_have_attribute(
        "data-value", expected("training-cost", {})["flops"]
    )


def test_link_holds_the_inputs_that_differ_from_the_defaults(
    page: Page, tools_url: str, outside_requests: list[str]
) -> None:
    """A shared link fills the form (an unknown GPU is sent as typed and named next to its
    field); each change then rewrites the link."""
    page.goto(f"{tools_url}training-cost.html?params_billions=13&gpu=abacus")
    expect(page.locator("#t-params_billions")).to_have_value("13")
    expect(page.locator("#engine")).to_have_attribute(
        "data-state", "ready", timeout=READY_TIMEOUT_MS
    )
    message = problem("training-cost", {"params_billions": "13", "gpu": "abacus"})
    expect(page.locator("#err-gpu")).to_have_text(message["message"])
    set_field(page, "gpu", "a100-sxm-80gb")
    after = expected("training-cost", {"params_billions": "13", "gpu": "a100-sxm-80gb"})
    expect(page.locator("#r-cost")).to_have_attribute("data-value", after["cost"])
    expect(page).to_have_url(f"{tools_url}training-cost.html?params_billions=13&gpu=a100-sxm-80gb")


def test_what_fits_ranks_the_catalog_and_shows_ram_only_for_llama_cpp(
    page: Page, tools_url: str, outside_requests: list[str]
) -> None:
    """The ranking lists the model CPython names first, with its launch command; the system
    RAM control shows for llama.cpp only; more cards let a larger model run."""
    open_live(page, f"{tools_url}what-fits.html")
    expect(page.locator("#t-ram_gb")).to_be_visible()
    first = page.locator("#tool-results tbody tr").first
    best = expected("what-fits", {})["best_model"]
    expect(first.locator("[data-model]")).to_have_attribute("data-model", best)
    expect(first.locator("code")).to_contain_text("llama-server -m")
    set_field(page, "runtime", "vllm")
    expect(page.locator("#t-ram_gb")).to_be_hidden()
    after = expected("what-fits", {"runtime": "vllm"})
    expect(page.locator("#r-best")).to_have_attribute("data-value", after["best"])
    expect(first.locator("code")).to_contain_text("vllm serve")
    set_field(page, "num_gpus", "8")
    more = expected("what-fits", {"runtime": "vllm", "num_gpus": "8"})
    assert int(more["best"]) > int(after["best"])
    expect(page.locator("#r-best")).to_have_attribute("data-value", more["best"])
