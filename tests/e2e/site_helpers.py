"""Shared helpers for the end-to-end tests."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from nnmem.estimate import Estimate, estimate
from nnmem.scenario import parse
from nnmem.web import DEFAULT_SCENARIO

BASE = "/nnmem/"
READY_TIMEOUT_MS = 60_000
# The example inputs as the form holds them, and the total they give.
DEFAULT_FORM = {key: str(value) for key, value in DEFAULT_SCENARIO.items() if key != "model"}
DEFAULT_TOTAL = estimate(parse(DEFAULT_FORM)).total_bytes


def wait_ready(page: Page) -> None:
    """Wait until the Python engine has loaded and painted a live result."""
    expect(page.locator("#engine")).to_have_attribute(
        "data-state", "ready", timeout=READY_TIMEOUT_MS
    )
    expect(page.locator("#results")).to_have_attribute("data-state", "live")


def fill_form(page: Page, values: dict[str, str]) -> None:
    """Set each field of the form, by schema key, as a user would."""
    for key, value in values.items():
        control = page.locator(f"#f-{key}")
        if control.evaluate("el => el.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)


def cpython_estimate(values: dict[str, str]) -> Estimate:
    """What nnmem in this CPython says for the same form values."""
    return estimate(parse(values))
