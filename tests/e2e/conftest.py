"""End-to-end fixtures: the built site served under /nnmem/ on 127.0.0.1, Chromium
found on this machine, and a guard that fails any test whose page reaches past
127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from localserver import serve
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, expect

import build
from chromium import CHROMIUM_ARGS, executable
from site_helpers import BASE, DEFAULT_TOTAL, reset_form, wait_ready

# A loaded machine (CI's two cores running the suite) can take longer than Playwright's
# default 5 s for an answer that takes 0.1 s idle; a wait still fails, only later.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def served_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose nnmem/ subfolder holds the site built for the /nnmem/ base path."""
    root = tmp_path_factory.mktemp("www")
    build.build(root / BASE.strip("/"), base_path=BASE)
    return root


@pytest.fixture(scope="session")
def site_url(served_root: Path) -> Iterator[str]:
    """The site's URL, served on a free port of 127.0.0.1 for the whole session."""
    server = serve(served_root)
    yield f"http://127.0.0.1:{server.server_address[1]}{BASE}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Launch this machine's Chromium with flags for a closed network."""
    try:
        path = executable()
    except LookupError as error:
        pytest.exit(str(error), returncode=2)
    args = {
        **browser_type_launch_args,
        "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS],
    }
    if path:
        args["executable_path"] = path
    return args


# Console reports of the Content-Security-Policy blocking something, from every page of
# every test; a test that leaves one fails (no_csp_violation below).
CSP_VIOLATIONS: list[str] = []


def _on_console(message: ConsoleMessage) -> None:
    if "Content Security Policy" in message.text:
        CSP_VIOLATIONS.append(f"{message.page.url if message.page else ''}: {message.text}")


def watch_csp(target: BrowserContext | Page) -> None:
    """Record the CSP violations ``target``'s pages report on the console."""
    target.on("console", _on_console)


_new_context, _new_page = Browser.new_context, Browser.new_page


def _watched_context(self: Browser, *args: Any, **kwargs: Any) -> BrowserContext:
    context = _new_context(self, *args, **kwargs)
    watch_csp(context)
    return context


def _watched_page(self: Browser, *args: Any, **kwargs: Any) -> Page:
    page = _new_page(self, *args, **kwargs)
    watch_csp(page)
    return page


# Every context and page the tests open, through a fixture or by hand, is watched.
Browser.new_context = _watched_context  # type: ignore[method-assign]
Browser.new_page = _watched_page  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def no_csp_violation() -> Iterator[None]:
    """Fail a test during which any page reported a CSP violation."""
    CSP_VIOLATIONS.clear()
    yield
    found = list(CSP_VIOLATIONS)
    CSP_VIOLATIONS.clear()
    assert found == [], f"Content-Security-Policy violations: {found}"


def guard_requests(context: BrowserContext) -> list[str]:
    """Abort every request of ``context`` that leaves 127.0.0.1 and list it."""
    seen: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname == "127.0.0.1":
            route.fallback()
        else:
            seen.append(url)
            route.abort()

    context.route("**/*", guard)
    return seen


@pytest.fixture
def outside_requests(context: BrowserContext) -> Iterator[list[str]]:
    """Guard this test's context; the test fails if any request left 127.0.0.1."""
    seen = guard_requests(context)
    yield seen
    assert seen == [], f"requests left 127.0.0.1: {seen}"


@pytest.fixture(scope="session")
def shared_calculator(
    browser: Browser, browser_context_args: dict[str, Any], site_url: str
) -> Iterator[tuple[Page, list[str]]]:
    """One loaded calculator page that many tests reuse, so Pyodide starts once."""
    context = browser.new_context(**browser_context_args)
    seen = guard_requests(context)
    page = context.new_page()
    page.goto(site_url)
    wait_ready(page)
    yield page, seen
    context.close()


@pytest.fixture
def calculator(shared_calculator: tuple[Page, list[str]]) -> Iterator[Page]:
    """The ready calculator, its form reset to the example inputs."""
    page, seen = shared_calculator
    reset_form(page)
    expect(page.locator("#results")).to_have_attribute("data-state", "live")
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(DEFAULT_TOTAL))
    yield page
    assert seen == [], f"requests left 127.0.0.1: {seen}"
