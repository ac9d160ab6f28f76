"""Screenshots of the calculator's first screen for each intent, desktop and phone.

    .venv/bin/python benchmarks/answer_first_shots.py [OUT_DIR]

Builds the site into a temporary folder, serves it on 127.0.0.1, and in Chromium (light
mode) picks each intent on a fresh page at 1280 × 900 and at 390 × 844, then saves
``<intent>-desktop.png`` and ``<intent>-phone.png`` in OUT_DIR (``shots/answer-first``
by default). Prints, for each, where the result and its verdict start and whether the
verdict is on screen: the phone layout's "within one screen" figure.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from localserver import serve  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

import build  # noqa: E402
from chromium import CHROMIUM_ARGS, executable  # noqa: E402
from nnmem.defaults import Intent  # noqa: E402

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
READY_MS = 120_000


def settle(page: Page) -> None:
    """Wait for the engine and for the answer to the last choice, verdict included."""
    expect(page.locator("#engine")).to_have_attribute("data-state", "ready", timeout=READY_MS)
    expect(page.locator("#results")).to_have_attribute("data-state", "live", timeout=READY_MS)
    page.wait_for_function(
        "() => !document.getElementById('results').dataset.pending", timeout=READY_MS
    )


def main(out: Path) -> None:
    """Take the six screenshots into ``out`` and print where the result sits."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        build.build(Path(tmp) / "nnmem", base_path="/nnmem/")
        server = serve(Path(tmp))
        url = f"http://127.0.0.1:{server.server_address[1]}/nnmem/?gpu=rtx-4090"
        chromium = executable()  # before Playwright starts: it asks a Playwright of its own
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            for device, (width, height) in SIZES.items():
                context = browser.new_context(
                    viewport={"width": width, "height": height}, color_scheme="light"
                )
                page = context.new_page()
                page.goto(url)
                settle(page)
                for intent in Intent:
                    page.locator(f"input[name=intent][value={intent.value}]").check()
                    page.locator("#f-start_model").fill("Llama 3.1 8B")
                    page.wait_for_timeout(300)
                    settle(page)
                    page.evaluate("window.scrollTo(0, 0)")
                    page.wait_for_timeout(200)
                    path = out / f"{intent.value}-{device}.png"
                    page.screenshot(path=str(path))
                    top = page.evaluate(
                        "() => document.querySelector('.total-box').getBoundingClientRect().top"
                    )
                    bar = page.locator("#mini-total")
                    verdict = page.locator("#mini-verdict").text_content()
                    print(
                        f"{path.name}: result at {top:.0f} px of a {height} px screen; "
                        f"bar {'shown' if bar.is_visible() else 'hidden'}: {verdict}"
                    )
                context.close()
            browser.close()
        server.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("shots/answer-first"))
