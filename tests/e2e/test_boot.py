"""A later visit starts Python from the memory snapshot the first visit kept, and answers
as CPython does."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from site_helpers import READY_TIMEOUT_MS, expect_total, page_fields, wait_ready

SNAPSHOTS = "nnmem-python-memory"
KEPT = f"async () => (await (await caches.open({SNAPSHOTS!r})).keys()).length"


def test_second_visit_restores_python_and_answers_the_same(browser: Browser, site_url: str) -> None:
    context = browser.new_context()
    first = context.new_page()
    first.goto(site_url)
    wait_ready(first)
    expect(first.locator("#engine")).to_have_attribute("data-start", "fresh")
    expect(first.locator("#engine")).to_have_attribute(
        "data-kept", "true", timeout=READY_TIMEOUT_MS
    )
    assert first.evaluate(KEPT) == 1
    first.close()

    later = context.new_page()
    later.goto(f"{site_url}?describe=fields&preset=llama-3.1-8b&batch_size=2&gpu=h100-sxm-80gb")
    wait_ready(later)
    expect(later.locator("#engine")).to_have_attribute("data-start", "snapshot")
    expect_total(later, page_fields(later))
    later.fill("#f-batch_size", "3")
    expect(later.locator("#f-batch_size")).to_have_value("3")
    expect_total(later, page_fields(later))
    assert later.evaluate(KEPT) == 1
    context.close()
