"""The calculator's "Memory over the step" chart in Chromium: it follows the form once in
view, a newer input cancels the chart of an older one, and its toggle shows what
expandable_segments:True saves without changing the total."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, BrowserContext, Page, expect

from nnmem.estimate import allocator_config
from nnmem.render.timeline_svg import StepTrace, saving_text, timeline_svg, trace_step
from nnmem.scenario import parse
from nnmem.timeline import replayed_events
from site_helpers import (
    DEFAULT_FORM,
    DEFAULT_TOTAL,
    expect_total,
    fill_form,
    open_form,
    page_fields,
    show_chart,
    wait_ready,
)


def cpython_trace(values: dict[str, str]) -> StepTrace:
    """The chart's replay in this CPython, for the same scenario."""
    scenario = parse(values)
    return trace_step(replayed_events(scenario), allocator_config(scenario))


def test_batch_size_redraws_the_step_and_the_toggle_shows_the_saving(calculator: Page) -> None:
    before = cpython_trace(DEFAULT_FORM)
    after = cpython_trace({**DEFAULT_FORM, "batch_size": "64"})
    assert after.reserved_peak > before.reserved_peak  # the test can tell them apart
    show_chart(calculator)
    figure = calculator.locator("#part-timeline figure.timeline-figure")
    expect(figure).to_have_attribute("data-reserved-peak", str(before.reserved_peak))
    expect(figure).to_have_attribute("data-events", str(before.count))

    fill_form(calculator, {"batch_size": "64"})
    show_chart(calculator)
    expect(figure).to_have_attribute("data-reserved-peak", str(after.reserved_peak))
    expect(figure).to_have_attribute("data-allocated-peak", str(after.allocated_peak))
    expect(calculator.locator("#part-timeline desc")).to_contain_text("Reserved memory peaks at")
    expect(calculator.locator("#part-timeline .tl-peak-label tspan").first).to_have_text(
        f"Peak {after.reserved_peak / 1e9:.2f} GB reserved"
    )

    saving = calculator.locator("#part-timeline p.tl-saving")
    dashed = calculator.locator("#part-timeline path.tl-expandable")
    total = calculator.locator("#total").get_attribute("data-bytes")
    expect(saving).to_be_hidden()
    expect(dashed).to_be_hidden()
    calculator.check("#timeline-expandable")
    expect(saving).to_be_visible()
    expect(saving).to_have_text(saving_text(after))
    expect(dashed).to_be_visible()
    # A view: the toggle sends nothing and leaves the total as it was.
    expect(calculator.locator("#total")).to_have_attribute("data-bytes", total or "")
    calculator.uncheck("#timeline-expandable")
    expect(saving).to_be_hidden()


def test_expandable_segments_setting_swaps_the_lines(calculator: Page) -> None:
    """Set in the advanced settings, expandable_segments:True draws the reserved line with
    it, and the toggle's dashed line is the step without it."""
    on = cpython_trace({**DEFAULT_FORM, "expandable_segments": "true"})
    fill_form(calculator, {"expandable_segments": "true"})
    show_chart(calculator)
    figure = calculator.locator("#part-timeline figure.timeline-figure")
    expect(figure).to_have_attribute("data-reserved-peak", str(on.reserved_peak))
    expect(figure).to_have_attribute("data-compared-peak", str(on.compared_peak))
    calculator.check("#timeline-expandable")
    expect(calculator.locator("#part-timeline p.tl-saving")).to_have_text(saving_text(on))
    expect(calculator.locator("#part-timeline .tl-legend li.tl-expandable")).to_have_text(
        "Reserved without expandable_segments"
    )
    calculator.uncheck("#timeline-expandable")
    fill_form(calculator, {"expandable_segments": "false"})


def test_example_chart_names_its_phases(calculator: Page) -> None:
    """The live chart names the phases CPython's does (the load is too narrow for its
    name), in order."""
    expect(calculator.locator("#total")).to_have_attribute("data-bytes", str(DEFAULT_TOTAL))
    show_chart(calculator)
    expect(calculator.locator("#part-timeline svg.timeline")).to_have_attribute("role", "img")
    svg = timeline_svg(cpython_trace(DEFAULT_FORM))
    names = re.findall(r'class="tl-phase-label"[^>]*>([^<]+)<', svg)
    assert names[0] == "Forward"
    expect(calculator.locator("#part-timeline .tl-phase-label")).to_have_text(names)


def test_phone_shows_the_step_legibly(browser: Browser, site_url: str) -> None:
    """At 390 x 844 the section is no wider than the screen and its chart's text is at
    least 9 px tall, as the other charts' is."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    page.check("#timeline-expandable")
    show_chart(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator(".timeline-box").bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 390
    smallest = page.evaluate(
        """() => Math.min(...[...document.querySelectorAll('#part-timeline svg.timeline text')]
             .map((t) => t.getBoundingClientRect().height).filter((h) => h > 0))"""
    )
    assert smallest >= 9, f"step chart text is {smallest:.1f} px tall on a phone"
    context.close()


# Every message the page posts to its worker, and the worker itself, kept for the test.
RECORD_WORKER = """
window.__posted = [];
const postMessage = Worker.prototype.postMessage;
Worker.prototype.postMessage = function (message, ...rest) {
  window.__worker = this;
  window.__posted.push(message);
  return postMessage.call(this, message, ...rest);
};
"""


def _recorded_calculator(browser: Browser, site_url: str) -> tuple[BrowserContext, Page]:
    """The calculator live in a new context that records what the page posts to its
    worker (``RECORD_WORKER``), with its full form open."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(RECORD_WORKER)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    open_form(page)
    return context, page


def chart_requests(page: Page) -> list[int]:
    """The ids of the requests whose chart the page asked the worker for."""
    ids: list[int] = page.evaluate(
        "window.__posted.filter((m) => m.part === 'chart').map((m) => m.id)"
    )
    return ids


def test_chart_is_asked_for_once_in_view(browser: Browser, site_url: str) -> None:
    """Out of view, a new answer leaves the chart drawing and asks nothing (its modules
    stay in the second bundle, not downloaded); scrolled into view, the chart of the
    answer on screen comes."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(RECORD_WORKER)
    page = context.new_page()
    later: list[str] = []
    context.on("request", lambda r: later.append(r.url) if "nnmem-later-" in r.url else None)
    page.goto(site_url)
    wait_ready(page)
    open_form(page)
    fill_form(page, {"batch_size": "8"})
    results = page.locator("#results")
    expect(results).to_have_attribute(
        "data-complete", page.get_attribute("#results", "data-asked") or ""
    )
    box = page.locator("#part-timeline")
    expect(box).to_have_attribute("data-chart", "drawing")
    expect(box).to_have_attribute("aria-busy", "true")
    page.wait_for_timeout(500)  # well past the pause after an answer
    assert chart_requests(page) == []
    assert later == []
    expect(box).to_have_attribute("data-chart", "drawing")

    show_chart(page)
    trace = cpython_trace({**DEFAULT_FORM, "batch_size": "8"})
    expect(box.locator("figure.timeline-figure")).to_have_attribute(
        "data-reserved-peak", str(trace.reserved_peak)
    )
    expect(box).not_to_have_attribute("data-chart", "drawing")
    expect(box).not_to_have_attribute("aria-busy", "true")
    assert chart_requests(page) == [int(page.get_attribute("#results", "data-asked") or 0)]
    assert len(later) == 1  # the chart's modules came with the second bundle
    context.close()


def test_newer_input_cancels_a_stale_chart(browser: Browser, site_url: str) -> None:
    """An input within the pause after an answer cancels that answer's chart: only the
    newest is asked for and drawn; and the worker skips a chart whose request is no
    longer the newest."""
    context, page = _recorded_calculator(browser, site_url)
    show_chart(page)
    # Batch 8, and the moment its answer is complete, batch 9: 8's chart is never asked.
    # A MutationObserver sees data-complete change in the task that wrote it, before the
    # pause's timer can run, however loaded the machine (a frame can come later than that).
    first = page.evaluate(
        """() => new Promise((resolve) => {
          const results = document.getElementById("results");
          const box = document.getElementById("f-batch_size");
          const set = (value) => {
            box.value = value;
            box.dispatchEvent(new Event("input", { bubbles: true }));
          };
          set("8");
          const id = results.dataset.asked;
          const watch = new MutationObserver(() => {
            if (results.dataset.complete !== id) return;
            watch.disconnect();
            set("9");
            resolve(Number(id));
          });
          watch.observe(results, { attributes: true, attributeFilter: ["data-complete"] });
        })"""
    )
    show_chart(page)
    newest = int(page.get_attribute("#results", "data-asked") or 0)
    assert newest == first + 1
    asked = chart_requests(page)
    assert first not in asked
    assert asked[-1] == newest
    trace = cpython_trace({**DEFAULT_FORM, "batch_size": "9"})
    expect(page.locator("#part-timeline figure.timeline-figure")).to_have_attribute(
        "data-reserved-peak", str(trace.reserved_peak)
    )
    # Asked straight, the worker answers the newest request's chart and skips an older one.
    replies = page.evaluate(
        """([stale, newest]) => new Promise((resolve) => {
          const worker = window.__worker;
          const got = [];
          const fields = window.__posted.filter((m) => m.id === newest && !m.part)[0].fields;
          worker.addEventListener("message", ({ data }) => {
            if (data.part !== "chart") return;
            got.push(data.id);
            if (data.id === newest) resolve(got);
          });
          for (const id of [stale, newest]) {
            worker.postMessage({ type: "request", id, page: "calculator", part: "chart", fields });
          }
        })""",
        [first, newest],
    )
    assert replies == [newest]
    context.close()


def test_replayed_total_fetches_the_chart_modules(browser: Browser, site_url: str) -> None:
    """With the allocator replayed for the total, the first part itself needs the
    timeline and the allocator model: the worker fetches the second bundle then, and the
    total is CPython's."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    later: list[str] = []
    context.on("request", lambda r: later.append(r.url) if "nnmem-later-" in r.url else None)
    page.goto(site_url)
    wait_ready(page)
    open_form(page)
    assert later == []
    fill_form(page, {"allocator_replay": "true"})
    expect(page.locator("#results")).to_have_attribute(
        "data-complete", page.get_attribute("#results", "data-asked") or ""
    )
    expect_total(page, page_fields(page))
    assert len(later) == 1
    context.close()


def test_the_rest_of_an_answer_waits_for_its_first_part_on_the_page(
    browser: Browser, site_url: str
) -> None:
    """The worker sends a calculator answer's rest (verdict, solvers, plot) only once the
    page says it has painted the first part, so the two do not compete for the CPU; the
    page says so after each first part it paints."""
    context, page = _recorded_calculator(browser, site_url)
    fill_form(page, {"batch_size": "9"})
    newest = int(page.get_attribute("#results", "data-asked") or 0)
    expect(page.locator("#results")).to_have_attribute("data-complete", str(newest))
    painted = page.evaluate("window.__posted.filter((m) => m.type === 'painted').map((m) => m.id)")
    assert painted[-1] == newest
    # Asked straight: the first part alone until the worker is told it is painted.
    parts = page.evaluate(
        """(id) => new Promise((resolve) => {
          const worker = window.__worker;
          const got = [];
          const asked = window.__posted.filter((m) => m.type === "request" && !m.part);
          const fields = asked.pop().fields;
          worker.addEventListener("message", ({ data }) => {
            if (data.id !== id) return;
            got.push(data.part);
            if (data.part === "first") {
              setTimeout(() => {
                got.push("told");
                worker.postMessage({ type: "painted", id });
              }, 500);
            }
            if (data.part === "rest") resolve(got);
          });
          worker.postMessage({ type: "request", id, page: "calculator", fields });
        })""",
        newest + 1000,
    )
    assert parts == ["first", "told", "rest"]
    context.close()
