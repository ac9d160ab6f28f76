"""Shared helpers for the end-to-end tests."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from playwright.sync_api import Locator, Page, expect

from nnmem.estimate import estimate
from nnmem.result import Estimate
from nnmem.scenario import parse
from nnmem.web import handle
from nnmem.web.calculator import DEFAULT_FIELDS, DEFAULT_SCENARIO

BASE = "/nnmem/"
READY_TIMEOUT_MS = 60_000
# The example inputs as the form holds them, and the total they give.
DEFAULT_FORM = {key: str(value) for key, value in DEFAULT_SCENARIO.items() if key != "model"}
DEFAULT_TOTAL = estimate(parse(DEFAULT_FORM)).total_bytes

# Sets controls by name as a user would (radios checked, selects chosen, text typed),
# hidden ones too, then sends one input event so the page recalculates once.
_FILL_JS = """
(values) => {
  const form = document.getElementById("calc");
  let last = null;
  for (const [name, value] of Object.entries(values)) {
    const els = [...form.elements].filter((el) => el.name === name);
    if (!els.length) throw new Error(`no control named ${name}`);
    for (const el of els) {
      if (el.type === "radio") el.checked = el.value === value;
      else if (el.type === "checkbox") el.checked = value === "true";
      else el.value = value;
    }
    last = els.find((el) => el.type !== "radio" || el.checked) || els[0];
  }
  if (last) last.dispatchEvent(new Event("input", { bubbles: true }));
}
"""


def wait_ready(page: Page) -> None:
    """Wait until the Python engine has loaded and painted a live result."""
    expect(page.locator("#engine")).to_have_attribute(
        "data-state", "ready", timeout=READY_TIMEOUT_MS
    )
    expect(page.locator("#results")).to_have_attribute("data-state", "live")


def fill_form(page: Page, values: dict[str, str]) -> None:
    """Set controls of the form by field name, in one go."""
    page.evaluate(_FILL_JS, values)


def show_chart(page: Page) -> None:
    """Scroll the step chart into view, which asks for it, and wait until the chart of the
    newest request is painted."""
    page.locator(".timeline-box").scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const r = document.getElementById('results').dataset;"
        " return r.asked !== undefined && r.chart === r.asked; }",
        timeout=30_000,
    )


def reset_form(page: Page) -> None:
    """Put every control back to the page's defaults, the full form open."""
    fill_form(page, {k: v for k, v in DEFAULT_FIELDS.items() if k != "preset"})
    fill_form(page, {"preset": DEFAULT_FIELDS["preset"]})
    open_form(page)


def open_form(page: Page) -> None:
    """Open "Adjust everything", the full form under the start panel, as a click does."""
    page.evaluate("document.getElementById('adjust').open = true")


def cpython_estimate(values: dict[str, str]) -> Estimate:
    """What nnmem in this CPython says for the same schema values."""
    return estimate(parse(values))


def page_fields(page: Page) -> dict[str, str]:
    """Every control's value as the page would send it."""
    fields: dict[str, str] = page.evaluate(
        """() => {
          const out = {};
          for (const el of document.getElementById("calc").elements) {
            if (!el.name) continue;
            if (el.type === "radio") { if (el.checked) out[el.name] = el.value; }
            else if (el.type === "checkbox") out[el.name] = el.checked ? "true" : "false";
            else out[el.name] = el.value;
          }
          return out;
        }"""
    )
    return fields


def cpython_reply(fields: dict[str, str]) -> dict[str, Any]:
    """What nnmem.web.handle in this CPython answers for the same page fields."""
    reply: dict[str, Any] = json.loads(handle(json.dumps({"fields": fields})))
    return reply


def expect_total(page: Page, fields: dict[str, str]) -> dict[str, object]:
    """The page's total equals what CPython nnmem answers for the page's own fields."""
    reply = cpython_reply(fields)
    assert reply["ok"], reply
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(reply["total_bytes"]))
    expect(page.locator("#total")).to_have_text(str(reply["total_text"]))
    return reply


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(fragment: str) -> str:
    """The text of an HTML fragment, whitespace collapsed, as a browser shows it."""
    parser = _Text()
    parser.feed(fragment)
    return squash("".join(parser.parts))


def squash(text: str) -> str:
    """Collapse runs of whitespace to one space."""
    return re.sub(r"\s+", " ", text).strip()


def text_of(locator: Locator) -> str:
    """A locator's text content, whitespace collapsed."""
    return squash(locator.text_content() or "")
