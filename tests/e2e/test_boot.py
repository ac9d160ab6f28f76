"""How the engine boots in headless Chromium: a first visit starts Python fresh and keeps
its heap in the browser's Cache Storage after its first complete answer; a repeat visit
in the same browser starts from that heap and answers as CPython does, the second bundle
included; a damaged heap is dropped and the page starts fresh."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from conftest import guard_requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from nnmem.web import handle
from nnmem.web.tools import defaults
from site_helpers import (
    BASE,
    READY_TIMEOUT_MS,
    expect_total,
    fill_form,
    open_form,
    page_fields,
    wait_ready,
)

pytestmark = pytest.mark.e2e

CACHE = "nnmem-python-memory"


@pytest.fixture
def visitor(browser: Browser, browser_context_args: dict[str, Any]) -> Iterator[BrowserContext]:
    """One visitor's browser: its pages share Cache Storage, as a tab opened later does."""
    context = browser.new_context(**browser_context_args)
    seen = guard_requests(context)
    yield context
    context.close()
    assert seen == [], f"requests left 127.0.0.1: {seen}"


def visit(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    wait_ready(page)
    return page


def first_visit(context: BrowserContext, url: str) -> None:
    """A fresh start that answers, keeps its heap, and is closed."""
    page = visit(context, url)
    engine = page.locator("#engine")
    expect(engine).to_have_attribute("data-start", "fresh")
    expect(engine).to_have_attribute("data-kept", timeout=READY_TIMEOUT_MS)
    assert int(engine.get_attribute("data-kept") or 0) >= 30 * 2**20  # the whole heap
    keys = page.evaluate(f"caches.open({CACHE!r}).then(c => c.keys()).then(k => k.map(r => r.url))")
    assert len(keys) == 1
    # The page notes its key, which the next visit's worker looks for (boot.js).
    assert page.evaluate(f"localStorage.getItem({CACHE!r})") == keys[0]
    page.close()


def test_a_repeat_visit_starts_from_the_kept_heap(visitor: BrowserContext, site_url: str) -> None:
    first_visit(visitor, site_url)
    page = visit(visitor, site_url)
    engine = page.locator("#engine")
    expect(engine).to_have_attribute("data-start", "snapshot")
    expect_total(page, page_fields(page))
    # A restored heap keeps nothing more: the one kept stays the only one.
    page.wait_for_timeout(300)
    assert engine.get_attribute("data-kept") is None
    # A model of the second bundle (nnmem.models.cnn, build.LATER): its finder, put in
    # place again after the restore, loads it through the worker.
    open_form(page)
    fill_form(page, {"describe": "cnn", "cnn": "resnet50", "batch_size": "16"})
    expect(page.locator("#results")).to_have_attribute("data-state", "live")
    reply = expect_total(page, page_fields(page))
    assert reply["total_bytes"] > 0
    # A tool page, which unpacks the second bundle at once, starts from the same heap.
    tool = visitor.new_page()
    tool.goto(f"{site_url}training-cost.html")
    expect(tool.locator("#engine")).to_have_attribute(
        "data-state", "ready", timeout=READY_TIMEOUT_MS
    )
    expect(tool.locator("#engine")).to_have_attribute("data-start", "snapshot")
    tool.fill("#t-params_billions", "70")
    fields = {**defaults("training-cost"), "params_billions": "70"}
    want = json.loads(handle(json.dumps({"page": "training-cost", "fields": fields})))
    assert want["ok"], want
    expect(tool.locator("#r-gpu_hours")).to_have_attribute(
        "data-value", want["values"]["gpu_hours"]
    )


def test_the_worker_starts_from_the_name_the_page_gives_it(
    visitor: BrowserContext, site_url: str
) -> None:
    """The page posts nothing to start its worker: what Python starts from travels as the
    worker's name (boot.js), and a name that is not that JSON is reported, not waited on."""
    page = visit(visitor, site_url)
    worker = page.get_attribute("script[data-worker]", "data-worker")
    reply = page.evaluate(
        """(url) => new Promise((resolve) => {
            const worker = new Worker(new URL(url, document.baseURI),
                                      { type: "module", name: "{not json" });
            worker.onmessage = (event) => resolve(event.data);
            setTimeout(() => resolve(null), 10000);
        })""",
        worker,
    )
    assert reply == {"type": "error", "text": "the page gave the engine a name it cannot read"}


def test_a_heap_the_page_has_no_note_of_is_not_looked_for(
    visitor: BrowserContext, site_url: str
) -> None:
    """Without the page's note of a kept heap (a first visit, a new build, storage
    cleared), the worker starts Python at once, without asking Cache Storage, and notes
    the heap it keeps, which the visit after it starts from."""
    first_visit(visitor, site_url)
    page = visitor.new_page()
    page.goto(f"{site_url}404.html")  # a page of the site that starts no engine
    page.evaluate(f"localStorage.removeItem({CACHE!r})")
    page.close()
    page = visit(visitor, site_url)
    engine = page.locator("#engine")
    expect(engine).to_have_attribute("data-start", "fresh")
    expect(engine).to_have_attribute("data-kept", timeout=READY_TIMEOUT_MS)
    page.close()
    again = visit(visitor, site_url)
    expect(again.locator("#engine")).to_have_attribute("data-start", "snapshot")
    expect_total(again, page_fields(again))


def test_a_damaged_heap_is_dropped_and_python_starts_fresh(
    visitor: BrowserContext, site_url: str
) -> None:
    first_visit(visitor, site_url)
    # Damaged from a page of the site that starts no engine, which could keep a new heap.
    page = visitor.new_page()
    page.goto(f"{site_url}404.html")
    damaged = page.evaluate(
        """async (name) => {
          const cache = await caches.open(name);
          const [key] = await cache.keys();
          const garbage = new Uint8Array(1 << 20).map((_, i) => (i * 7919) & 255);
          await cache.put(key, new Response(garbage));
          return key.url;
        }""",
        CACHE,
    )
    assert damaged.endswith(".memory")
    page.close()
    page = visit(visitor, site_url)
    engine = page.locator("#engine")
    expect(engine).to_have_attribute("data-start", "fresh")
    expect_total(page, page_fields(page))
    fill_form(page, {"batch_size": "3"})
    expect_total(page, page_fields(page))
    # The damaged heap is gone and this fresh start keeps a sound one in its place.
    expect(engine).to_have_attribute("data-kept", timeout=READY_TIMEOUT_MS)
    page.close()
    again = visit(visitor, site_url)
    expect(again.locator("#engine")).to_have_attribute("data-start", "snapshot")
    expect_total(again, page_fields(again))


GROWN_HEAP = """async ({ indexURL, worker }) => {
  const { loadPyodide } = await import(indexURL + "pyodide.mjs");
  const first = await loadPyodide({ indexURL, _makeSnapshot: true });
  first.runPython("kept = bytes(range(256)) * (64 << 10)");  // 16 MiB the heap must hold
  const snapshot = first.makeMemorySnapshot();
  let plain;
  try {
    await loadPyodide({ indexURL, _loadSnapshot: snapshot });
    plain = "restored";
  } catch (error) {
    plain = String(error);
  }
  const { growMemoryTo } = await import(worker);
  const restore = growMemoryTo(snapshot.length);
  let grown;
  try {
    grown = await loadPyodide({ indexURL, _loadSnapshot: snapshot });
  } finally {
    restore();
  }
  return { bytes: snapshot.length, plain, kept: grown.runPython("f'{len(kept)} {kept[-1]}'") };
}"""


def test_a_heap_past_the_initial_wasm_memory_is_restored_once_grown(
    page: Page, served_root: Path, site_url: str
) -> None:
    """Pyodide's wasm starts with 30 MiB of memory whatever the snapshot's size: a heap
    that grew past it is restored only through worker.js's growMemoryTo."""
    index = (served_root / BASE.strip("/") / "index.html").read_text(encoding="utf-8")
    core, worker = (
        urljoin(site_url, re.findall(rf'data-{name}="([^"]+)"', index)[0])
        for name in ("pyodide", "worker")
    )
    page.goto(f"{site_url}404.html")  # a page of the site that starts no engine
    got = page.evaluate(GROWN_HEAP, {"indexURL": core, "worker": worker})
    assert got["bytes"] > 32 * 2**20  # past the 30 MiB the wasm starts with
    assert "RangeError" in got["plain"]
    assert got["kept"] == f"{16 * 2**20} 255"
