"""The page under attack and under failure, in Chromium, behind its Content-Security-Policy.

- Over 200 hostile URL states (script payloads in every parameter, names that live on
  ``Object.prototype``, broken percent-encoding, huge and deeply nested values): nothing
  runs, nothing leaves 127.0.0.1, the page keeps its form and its prerendered result.
  The same states then go through the live engine, whose every reply is painted.
- The runtime failing: WebAssembly blocked, the nnmem bundle missing, a wrong MIME type,
  a slow network. Each leaves the prerendered result and a plain message.
Every test also fails on any console report of a CSP violation (conftest.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from nnmem.units import human
from nnmem.web.calculator import DEFAULT_FIELDS
from site_helpers import DEFAULT_FORM, DEFAULT_TOTAL, cpython_estimate, fill_form, reset_form

CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; connect-src 'self'"
)
# The calculator's model reader may read a model's headers from the Hugging Face Hub
# (and its download hosts) when the user clicks; no other page connects beyond the site.
HUB_HOSTS = " https://huggingface.co https://*.huggingface.co https://*.hf.co"
PAYLOADS = (
    '<img src=x onerror="window.__pwned=1">',
    '"><svg onload=window.__pwned=1><nnmem-probe>',
    "' onfocus='window.__pwned=1' autofocus='",
    "javascript:window.__pwned=1",
    "</script><script>window.__pwned=1</script>",
    "{{7*7}}${7*7}<nnmem-probe onprobe=1>",
    '{"model_type": "<img src=x onerror=window.__pwned=1>", "hidden_size": 64}',
    "\u202e\u0000\ud7ff<nnmem-probe>",
)
NAMES = [n for n in DEFAULT_FIELDS if n not in ("describe", "units", "plot")]
PROTOTYPE = ("__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "prototype")


def _states() -> list[str]:
    """Query strings, each a hostile state of the page's URL."""
    states = [urlencode(dict.fromkeys(NAMES, p)) for p in PAYLOADS]
    for i, name in enumerate([*DEFAULT_FIELDS, "model", *PROTOTYPE]):
        for j in range(3):
            payload = PAYLOADS[(i + j) % len(PAYLOADS)]
            describe = ("simple", "fields", "config", "cnn")[(i + j) % 4]
            states.append(urlencode({"describe": describe, name: payload}))
    for name in PROTOTYPE:
        states.append(f"{name}=1&{name}[x]=2&describe=config&config=%7B%7D")
    states += [
        "%",
        "%%%",
        "%E0%A4%A",
        "%FF%FE",
        "a=%00",
        "=",
        "&&&",
        "==&==",
        "describe=%FF",
        "batch_size=%C0%AF",
        "describe=cnn&cnn=" + quote("[" * 5000),
        "describe=config&config=" + quote("[" * 5000),
        "describe=config&config=" + quote('{"hidden_size": ' + "9" * 5000 + "}"),
        "batch_size=" + "9" * 5000,
        "seq_len=-1",
        "seq_len=1e999",
        "seq_len=NaN",
        "params_millions=" + "1" * 20_000,
        "preset=" + quote("../../etc/passwd"),
        "gpu=" + quote("<img src=x onerror=window.__pwned=1>"),
        "units=" + quote("<b>"),
        "plot=" + quote('"><script>window.__pwned=1</script>'),
        "model=preset&preset=" + quote("<script>window.__pwned=1</script>"),
        "model=cnn&cnn="
        + quote(
            '{"input": [3, 8, 8], "layers": [{"type": "relu", '
            '"name": "<img src=x onerror=window.__pwned=1>"}]}'
        ),
        "model=transformer&config=" + quote('{"model_type": "<nnmem-probe>"}'),
        "describe=fields&describe=cnn&describe=config",
        "&".join(f"k{i}=v{i}" for i in range(2000)),
        "batch_size=1&batch_size=%3Cscript%3E",
    ]
    return states


STATES = _states()

# Anything a payload could have put in the page: the marker, an element it names, an
# event handler or a javascript: link.
_INJECTED = ", ".join(
    (
        "nnmem-probe",
        "script:not([src]):not([type])",
        'img[src="x"]',
        "[onprobe]",
        "[onerror]",
        "[onload]",
        "[onfocus]",
        'a[href^="javascript"]',
    )
)
# What _hostile_page_ok reads, in one call: a state is checked per load or per reply.
_PAGE_JS = f"""() => ({{
  pwned: window.__pwned ?? null,
  injected: [...document.querySelectorAll('{_INJECTED}')].map((el) => el.outerHTML.slice(0, 120)),
  forms: document.querySelectorAll("#calc").length,
  totals: [...document.querySelectorAll("#total")].map((el) => el.innerText),
}})"""


def _hostile_page_ok(page: Page, dialogs: list[str]) -> None:
    got = page.evaluate(_PAGE_JS)
    assert got["pwned"] is None
    assert dialogs == []
    assert got["injected"] == []
    assert got["forms"] == 1
    assert len(got["totals"]) == 1
    assert got["totals"][0].strip()


def test_there_are_at_least_200_hostile_states() -> None:
    assert len(STATES) >= 200
    assert len(set(STATES)) == len(STATES)


def test_every_page_carries_the_policy(served_root: Path) -> None:
    pages = sorted((served_root / "nnmem").rglob("*.html"))
    assert pages
    for path in pages:
        text = path.read_text(encoding="utf-8")
        calculator = path == served_root / "nnmem" / "index.html"
        policy = CSP + (HUB_HOSTS if calculator else "")
        assert f'<meta http-equiv="Content-Security-Policy" content="{policy}">' in text, path
        assert 'style="' not in text, path  # the policy allows no inline style


# Pages loading hostile states side by side: a load mostly waits on the browser's
# processes, so three in flight took a quarter less time than one after another here.
TABS = 3


def test_hostile_url_states_run_nothing_and_keep_the_page(browser: Browser, site_url: str) -> None:
    """Every state read by the page as it loads (the engine held back, so that each load
    is quick): nothing runs, nothing leaves, the form and the prerendered result stay."""
    context = browser.new_context()
    seen: list[str] = []
    # Only what leaves 127.0.0.1 comes to Python: the site's own files load untouched.
    context.route(_OUTSIDE, lambda route: (seen.append(route.request.url), route.abort()))
    context.route("**/worker.js*", lambda route: route.fulfill(status=503, body=""))
    dialogs: list[str] = []
    errors: list[str] = []
    tabs = [context.new_page() for _ in range(TABS)]
    for page in tabs:
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))
    checked = 0
    for first in range(0, len(STATES), TABS):
        loading = list(zip(tabs, STATES[first : first + TABS], strict=False))
        for page, state in loading:  # each goes on loading while the next is asked for
            page.goto(f"{site_url}?{state}", wait_until="commit")
        for page, _ in loading:
            page.wait_for_load_state("domcontentloaded")
            expect(page.locator("#engine")).to_have_attribute("data-state", "error")
            _hostile_page_ok(page, dialogs)
            assert page.locator("#total").get_attribute("data-bytes") == str(DEFAULT_TOTAL)
            checked += 1
    context.close()
    assert checked == len(STATES)
    assert seen == []
    assert errors == []


# Any URL but the site's own on 127.0.0.1 and the page's data: and blob: URLs.
_OUTSIDE = re.compile(r"^(?!(data:|blob:|https?://127\.0\.0\.1:[0-9]+/))")


def _guard(route: Route, seen: list[str]) -> None:
    url = route.request.url
    if url.startswith(("data:", "blob:")) or "//127.0.0.1:" in url:
        route.fallback()
    else:
        seen.append(url)
        route.abort()


_AWAIT_REPLY = "() => document.getElementById('results').dataset.state !== 'probe'"


def test_hostile_states_through_the_live_engine_paint_nothing_foreign(
    shared_calculator: tuple[Page, list[str]],
) -> None:
    """The same values typed into the live calculator: each reply is painted, nothing in
    it runs, and afterwards the example inputs give the example total again."""
    page, seen = shared_calculator
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # Named controls only: the model reader's own inputs have no name and send nothing.
    controls = set(page.evaluate("[...document.getElementById('calc').elements].map(e => e.name)"))
    controls.discard("")
    sent = 0
    for state in STATES:
        values = {k: v for k, v in _pairs(state) if k in controls and k not in ("units", "plot")}
        if not values:
            continue
        reset_form(page)
        page.evaluate("document.getElementById('results').dataset.state = 'probe'")
        fill_form(page, values)
        page.wait_for_function(_AWAIT_REPLY, timeout=30_000)
        sent += 1
        _hostile_page_ok(page, dialogs)
    assert sent >= 150
    reset_form(page)
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(DEFAULT_TOTAL))
    assert seen == []


def _pairs(state: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(state, keep_blank_values=True)


# --- the runtime failing -----------------------------------------------------------------

PYTHON_WORDS = re.compile(r"Traceback|\w+Error\b|Exception|undefined|\[object ")


def _failed_plainly(page: Page) -> None:
    engine = page.locator("#engine")
    expect(engine).to_have_attribute("data-state", "error", timeout=60_000)
    text = engine.inner_text()
    assert text.startswith("The calculator engine could not start: ")
    assert "You can still read the result below" in text
    assert not PYTHON_WORDS.search(text), text
    expect(page.locator("#total")).to_have_text(human(cpython_estimate(DEFAULT_FORM).total_bytes))
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(DEFAULT_TOTAL))
    assert page.locator("#part-table table").count() == 1  # the prerendered breakdown


def _context(browser: Browser) -> tuple[BrowserContext, list[str]]:
    context = browser.new_context()
    seen: list[str] = []
    context.route("**/*", lambda route: _guard(route, seen))
    return context, seen


def test_webassembly_blocked_leaves_a_readable_page(browser: Browser, site_url: str) -> None:
    """Pyodide hangs once its wasm is refused, so the page gives up at its 30 s load
    timeout; the page's clock is moved past it once the refusal has had time to be seen."""
    context, seen = _context(browser)
    blocked: list[str] = []

    def block(route: Route) -> None:
        blocked.append(route.request.url)
        route.abort("blockedbyclient")

    context.route("**/*.wasm", block)
    page = context.new_page()
    page.clock.install()
    page.goto(site_url)
    expect(page.locator("#engine")).to_have_attribute("data-state", "loading")
    for _ in range(300):  # the worker asks for the wasm and is refused
        if blocked:
            break
        page.wait_for_timeout(100)
    assert blocked, "the wasm was never asked for"
    page.wait_for_timeout(1_000)  # a failure the page reports at once would show now
    page.clock.fast_forward(31_000)
    _failed_plainly(page)
    context.close()
    assert seen == []


def test_a_missing_bundle_leaves_a_readable_page(browser: Browser, site_url: str) -> None:
    context, seen = _context(browser)
    context.route("**/assets/nnmem-*.zip*", lambda route: route.fulfill(status=404, body="gone"))
    page = context.new_page()
    page.goto(site_url)
    _failed_plainly(page)
    context.close()
    assert seen == []


def test_a_wrong_mime_type_leaves_a_readable_page(browser: Browser, site_url: str) -> None:
    context, seen = _context(browser)

    def as_text(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-type": "text/plain"})

    context.route("**/pyodide.mjs", as_text)
    page = context.new_page()
    page.goto(site_url)
    _failed_plainly(page)
    context.close()
    assert seen == []


def test_a_slow_network_shows_the_result_at_once_and_then_goes_live(
    browser: Browser, site_url: str
) -> None:
    context, seen = _context(browser)

    def slowly(route: Route) -> None:
        time.sleep(2)
        route.fallback()

    context.route("**/pyodide/**", slowly)
    page = context.new_page()
    page.goto(site_url)
    # While the runtime crawls in: the prerendered result, and the loading stage in words.
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(DEFAULT_TOTAL))
    expect(page.locator("#engine")).to_have_attribute("data-state", "loading")
    assert page.locator("#engine-text").inner_text().strip()
    expect(page.locator("#engine")).to_have_attribute("data-state", "ready", timeout=90_000)
    expect(page.locator("#results")).to_have_attribute("data-state", "live")
    context.close()
    assert seen == []
