"""The calculator page in headless Chromium, served under /nnmem/ on 127.0.0.1."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, Route, expect

from nnmem.render.text import describe
from nnmem.units import human
from site_helpers import DEFAULT_FORM, cpython_estimate, fill_form, wait_ready

pytestmark = pytest.mark.e2e

SCENARIOS = [
    pytest.param(
        {
            "params_millions": "7000",
            "hidden_size": "4096",
            "num_layers": "32",
            "mode": "inference",
            "precision": "fp16",
            "batch_size": "1",
            "seq_len": "2048",
        },
        id="llama-7b-inference-fp16",
    ),
    pytest.param(
        {
            "params_millions": "124.439808",
            "hidden_size": "768",
            "num_layers": "12",
            "mode": "training",
            "precision": "bf16",
            "optimizer": "adamw",
            "batch_size": "8",
            "seq_len": "1024",
        },
        id="gpt2-training-bf16",
    ),
    pytest.param(
        {
            "params_millions": "1,500",
            "hidden_size": "2048",
            "num_layers": "24",
            "mode": "training",
            "precision": "fp32",
            "optimizer": "sgd_momentum",
            "batch_size": "4",
            "seq_len": "512",
        },
        id="sgd-momentum-thousands-separator",
    ),
    pytest.param(
        {
            "params_millions": "70000",
            "hidden_size": "8192",
            "num_layers": "80",
            "mode": "inference",
            "precision": "int4",
            "batch_size": "16",
            "seq_len": "4096",
        },
        id="70b-int4",
    ),
]


def test_prerendered_result_shows_before_the_engine_is_ready(
    page: Page, site_url: str, outside_requests: list[str]
) -> None:
    """The build's CPython result is on screen while Pyodide is still downloading."""
    held: list[Route] = []
    page.context.route("**/pyodide.asm.wasm", lambda route: held.append(route))
    page.goto(site_url)
    default = cpython_estimate(DEFAULT_FORM)
    expect(page.locator("#total")).to_have_text(human(default.total_bytes))
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(default.total_bytes))
    expect(page.locator("#part-table tr[data-key=weights] td").first).to_have_text("440.0")
    expect(page.locator("#part-capacity svg rect.bar-activations")).to_be_visible()
    expect(page.locator("#engine")).to_have_attribute("data-state", "loading")
    expect(page.locator("#engine")).to_contain_text("Python")
    expect(page.locator("#engine-progress")).to_have_attribute("value", "1")  # stage 1 of 3
    expect(page.locator("#results")).to_have_attribute("data-state", "prerendered")
    page.wait_for_timeout(300)
    assert len(held) == 1, "the runtime download was not held back"
    held[0].fallback()
    wait_ready(page)
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(default.total_bytes))


@pytest.mark.parametrize("values", SCENARIOS)
def test_form_total_equals_cpython(calculator: Page, values: dict[str, str]) -> None:
    """Filling the form gives exactly what nnmem computes in CPython."""
    fill_form(calculator, values)
    expected = cpython_estimate({**DEFAULT_FORM, **values})
    total = calculator.locator("#total")
    expect(total).to_have_attribute("data-bytes", str(expected.total_bytes))
    expect(total).to_have_text(human(expected.total_bytes))
    expect(calculator.locator("#scenario-line")).to_have_text(describe(expected.scenario))
    for component in expected.components:
        row = calculator.locator(f"#part-table tr[data-key={component.key}] td").first
        expect(row).to_have_text(f"{component.bytes / 1e6:,.1f}")


def test_precision_and_mode_update_the_table_and_bar(calculator: Page) -> None:
    """Mixed precision adds 16-bit weight copies and halves activations; pure bf16 halves
    the weights; inference drops gradients, optimizer state and the optimizer field."""
    weights_mb = calculator.locator("#part-table tr[data-key=weights] td").first
    acts_mb = calculator.locator("#part-table tr[data-key=activations] td").first
    chart_desc = calculator.locator("#part-capacity desc")
    expect(weights_mb).to_have_text("440.0")  # 110M × 4 B, fp32
    expect(acts_mb).to_have_text("2,491.4")  # 12 × 128 × 32 × 768 × 66 B
    expect(chart_desc).to_contain_text("Model weights 440.0 MB")

    calculator.select_option("#f-precision", "amp_bf16")
    expect(acts_mb).to_have_text("1,283.5")  # 34 B instead of 66
    expect(calculator.locator("#part-table tr[data-key=autocast_copies] td").first).to_have_text(
        "220.0"
    )
    expect(weights_mb).to_have_text("440.0")  # the fp32 weights stay
    expect(calculator.locator("#part-capacity rect.bar-autocast_copies")).to_be_visible()

    calculator.select_option("#f-precision", "bf16")
    expect(weights_mb).to_have_text("220.0")  # 110M × 2 B
    expect(calculator.locator("#part-formula [data-key=weights] code")).to_contain_text(
        "110,000,000 × 2 B"
    )
    expect(chart_desc).to_contain_text("Model weights 220.0 MB")

    calculator.select_option("#f-mode", "inference")
    expect(weights_mb).to_have_text("220.0")
    expect(calculator.locator("#part-table tr[data-key=gradients]")).to_have_count(0)
    expect(calculator.locator("#part-table tr[data-key=optimizer_state]")).to_have_count(0)
    expect(calculator.locator(".field[data-field=optimizer]")).to_be_hidden()
    expect(calculator.locator("#part-phases tr[data-phase=prefill]")).to_have_class("peak")

    calculator.select_option("#f-mode", "training")
    expect(calculator.locator(".field[data-field=optimizer]")).to_be_visible()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", "0", "Batch size must be a whole number from 1 to 1,000,000 (got 0)."),
        ("batch_size", "2.5", "Batch size must be a whole number from 1 to 1,000,000 (got 2.5)."),
        ("seq_len", "", "Sequence length is required: enter a whole number from 1 to 10,000,000."),
        (
            "params_millions",
            "abc",
            "Model size must be a number of millions of parameters above 0 and at most "
            '10,000,000, or a count with its unit such as 7B or 350M (got "abc").',
        ),
        (
            "params_millions",
            "-7",
            "Model size must be a number of millions of parameters above 0 and at most "
            "10,000,000, or a count with its unit such as 7B or 350M (got -7).",
        ),
        (
            "hidden_size",
            "1e9",
            "Hidden dimension must be a whole number from 1 to 1,000,000 (got 1e9).",
        ),
        (
            "num_layers",
            "NaN",
            'Number of layers must be a whole number from 1 to 100,000 (got "NaN").',
        ),
    ],
)
def test_bad_value_shows_its_message_and_keeps_the_last_result(
    calculator: Page, key: str, value: str, message: str
) -> None:
    """The message names the field, sits next to it, and the last good total stays."""
    before = calculator.locator("#total").get_attribute("data-bytes")
    calculator.fill(f"#f-{key}", value)
    error = calculator.locator(f".field[data-field={key}] .error")
    expect(error).to_have_text(message)
    expect(calculator.locator(f"#f-{key}")).to_have_attribute("aria-invalid", "true")
    expect(calculator.locator("#results")).to_have_attribute("data-state", "stale")
    expect(calculator.locator("#stale")).to_be_visible()
    expect(calculator.locator("#total")).to_have_attribute("data-bytes", before or "")
    shown = calculator.locator("#answer").inner_text() + calculator.locator("#results").inner_text()
    assert "NaN" not in shown
    assert "undefined" not in calculator.locator("body").inner_text()
    assert "Traceback" not in calculator.locator("body").inner_text()

    calculator.fill(f"#f-{key}", DEFAULT_FORM[key])
    expect(error).to_be_empty()
    expect(calculator.locator("#results")).to_have_attribute("data-state", "live")
    expect(calculator.locator(f"#f-{key}")).not_to_have_attribute("aria-invalid", "true")


def test_a_new_problem_in_the_field_being_typed_in_is_not_left_under_the_bar(
    calculator: Page,
) -> None:
    """Typing a bad value into a field at the bottom of the screen shows its message above
    the answer's bar, which stays fixed there."""
    calculator.evaluate("document.getElementById('adjust').open = true")
    field = calculator.locator("#f-seq_len")
    # Put the field at the very bottom of the screen, as a user scrolling down might.
    field.evaluate("el => el.scrollIntoView({block: 'end'})")
    calculator.evaluate("window.scrollBy(0, -2)")
    field.fill("-5")
    error = calculator.locator(".field[data-field=seq_len] .error")
    expect(error).to_contain_text("Sequence length must be")
    bar = calculator.locator("#mini-total")
    expect(bar).to_be_visible()
    calculator.wait_for_timeout(300)  # a smooth scroll, where the browser makes one
    message_box = error.bounding_box()
    bar_box = bar.bounding_box()
    assert message_box is not None
    assert bar_box is not None
    assert message_box["y"] + message_box["height"] <= bar_box["y"] + 1


def test_training_with_an_inference_format_names_the_precision_field(calculator: Page) -> None:
    """INT8 cannot train: the precision field says so and what to pick instead."""
    calculator.select_option("#f-precision", "int8")
    expect(calculator.locator(".field[data-field=precision] .error")).to_have_text(
        "Precision INT8 (LLM.int8) stores weights for inference only. To train, choose FP32, "
        "BF16 mixed precision (AMP), FP16 mixed precision (AMP), BF16 or FP16. To train "
        "adapters over it as a frozen base (QLoRA), set Fine-tuning to LoRA adapters with a "
        "catalog model or a config.json. Or set the mode to Inference."
    )
    calculator.select_option("#f-mode", "inference")
    expect(calculator.locator(".field[data-field=precision] .error")).to_be_empty()
    expect(calculator.locator("#part-table tr[data-key=weights] td").first).to_have_text("110.0")


def test_every_request_stays_on_127_0_0_1(
    page: Page, site_url: str, outside_requests: list[str]
) -> None:
    """The page loads Pyodide and nnmem from its own server and nothing else."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(site_url)
    wait_ready(page)
    names = {url.split("?")[0].rsplit("/", 1)[-1] for url in urls}
    assert {"pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip"} <= names
    assert any(re.fullmatch(r"nnmem-[0-9a-f]{10}\.zip", name) for name in names)
    assert all(url.startswith(site_url) for url in urls), urls


def test_engine_that_cannot_load_says_so_and_keeps_the_result(
    page: Page, site_url: str, outside_requests: list[str]
) -> None:
    """A worker script that fails to load ends in a plain message at once."""
    page.context.route("**/worker.js*", lambda route: route.fulfill(status=404, body="gone"))
    page.goto(site_url)
    engine = page.locator("#engine")
    expect(engine).to_have_attribute("data-state", "error")
    expect(engine).to_contain_text("The calculator engine could not start")
    expect(page.locator("#total")).to_have_text(human(cpython_estimate(DEFAULT_FORM).total_bytes))


def test_engine_that_never_arrives_times_out_after_30_seconds(
    page: Page, site_url: str, outside_requests: list[str]
) -> None:
    """A runtime download that hangs (as a wrong MIME type makes it) ends in a message."""
    held: list[Route] = []
    page.context.route("**/pyodide.asm.wasm", lambda route: held.append(route))
    page.clock.install()
    page.goto(site_url)
    expect(page.locator("#engine")).to_have_attribute("data-state", "loading")
    page.clock.fast_forward(31_000)
    expect(page.locator("#engine")).to_have_attribute("data-state", "error")
    expect(page.locator("#engine")).to_contain_text("it did not load within 30 seconds")
    expect(page.locator("#total")).to_have_text(human(cpython_estimate(DEFAULT_FORM).total_bytes))
    for route in held:
        route.abort()


def test_not_found_page_works_under_the_base_path(
    page: Page, site_url: str, outside_requests: list[str]
) -> None:
    """404.html links back with absolute /nnmem/ URLs, so it works at any depth."""
    page.goto(f"{site_url}404.html")
    expect(page.locator("h1")).to_have_text("Page not found")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgba(0, 0, 0, 0)", "the stylesheet did not load"
    page.click("text=memory calculator")
    expect(page).to_have_url(site_url)


def test_runtime_section_follows_mode_and_runtime(calculator: Page) -> None:
    """The runtime controls appear for inference only, each runtime's own settings with it;
    vLLM's and llama.cpp's answers come with their figures and launch command, equal to
    CPython's."""
    section = calculator.locator("section.form-section:has(#f-runtime)")
    expect(section).to_be_hidden()  # training: no runtime
    fill_form(calculator, {"describe": "fields", "preset": "llama-3.1-8b", "mode": "inference",
                           "precision": "bf16", "batch_size": "4", "seq_len": "16000"})  # fmt: skip
    expect(section).to_be_visible()
    expect(calculator.locator(".field[data-field=block_size]")).to_be_hidden()
    calculator.select_option("#f-runtime", "vllm")
    expect(calculator.locator(".field[data-field=block_size]")).to_be_visible()
    expect(calculator.locator(".field[data-field=type_k]")).to_be_hidden()
    runtime = calculator.locator("#part-runtime section.runtime")
    expect(runtime).to_have_attribute("data-engine", "vllm")
    expect(runtime.locator("[data-runtime=command]")).to_contain_text("vllm serve")
    expected = cpython_estimate({"model": "preset", "preset": "llama-3.1-8b",
                                 "mode": "inference", "precision": "bf16", "batch_size": "4",
                                 "seq_len": "16000", "runtime": "vllm"})  # fmt: skip
    expect(calculator.locator("#total")).to_have_attribute("data-bytes", str(expected.total_bytes))
    calculator.select_option("#f-runtime", "ollama")
    expect(calculator.locator(".field[data-field=type_k]")).to_be_visible()
    expect(calculator.locator(".field[data-field=precision]")).to_be_hidden()
    expect(runtime).to_have_attribute("data-engine", "llama_cpp")
    expect(runtime.locator("[data-runtime=ollama]")).to_contain_text("OLLAMA_NUM_PARALLEL=4")
    calculator.select_option("#f-mode", "training")
    expect(section).to_be_hidden()
    expect(calculator.locator("#part-runtime")).to_be_empty()
