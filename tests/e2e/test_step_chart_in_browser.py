"""The calculator's "Memory over the step" chart in Chromium: it follows the form, and its
toggle shows what expandable_segments:True saves without changing the total."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from nnmem.estimate import allocator_config
from nnmem.render.timeline_svg import StepTrace, saving_text, timeline_svg, trace_step
from nnmem.scenario import parse
from nnmem.timeline import replayed_events
from site_helpers import DEFAULT_FORM, DEFAULT_TOTAL, fill_form, wait_ready


def cpython_trace(values: dict[str, str]) -> StepTrace:
    """The chart's replay in this CPython, for the same scenario."""
    scenario = parse(values)
    return trace_step(replayed_events(scenario), allocator_config(scenario))


def test_batch_size_redraws_the_step_and_the_toggle_shows_the_saving(calculator: Page) -> None:
    before = cpython_trace(DEFAULT_FORM)
    after = cpython_trace({**DEFAULT_FORM, "batch_size": "64"})
    assert after.reserved_peak > before.reserved_peak  # the test can tell them apart
    figure = calculator.locator("#part-timeline figure.timeline-figure")
    expect(figure).to_have_attribute("data-reserved-peak", str(before.reserved_peak))
    expect(figure).to_have_attribute("data-events", str(before.count))

    fill_form(calculator, {"batch_size": "64"})
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
