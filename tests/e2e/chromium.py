"""Find a Chromium for the end-to-end tests.

    python tests/e2e/chromium.py --check   # exit 0 when one is found

Order: the CHROMIUM_PATH environment variable, then Playwright's own browser when it
was installed (``playwright install chromium``), then the system's Chromium.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SYSTEM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Flags for a closed network: without the background-networking ones Chromium keeps
# trying to reach its update and sync services.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def playwright_chromium() -> str | None:
    """The path of Playwright's own Chromium, if it was downloaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        path = playwright.chromium.executable_path
    return path if Path(path).exists() else None


def executable() -> str | None:
    """The Chromium to launch: a path, or None for Playwright's own build.

    Raises LookupError when there is none.
    """
    override = os.environ.get("CHROMIUM_PATH")
    if override:
        if not Path(override).exists():
            raise LookupError(f"CHROMIUM_PATH={override} does not exist")
        return override
    if playwright_chromium():
        return None
    for name in SYSTEM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise LookupError("no Chromium found: apt-get install -y chromium, or set CHROMIUM_PATH")


if __name__ == "__main__":
    try:
        print(executable() or "Playwright's own Chromium")
    except LookupError as error:
        print(error, file=sys.stderr)
        raise SystemExit(1) from None
