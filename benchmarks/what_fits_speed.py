"""Time the "what fits my GPU" page in headless Chromium and print the figures.

    .venv/bin/python benchmarks/what_fits_speed.py [--gpus all|few] [--cards 1,8]

Builds the site under /nnmem/, serves it on 127.0.0.1, opens ``what-fits.html`` and,
once Python is live, chooses every GPU of the page's list in turn, for each runtime and
card count. Each answer ranks the whole catalog (the models of ``data/models.json``). A
figure is the time from the request the page posts to its worker to the painted ranking
(the page's ``nnmem:tool`` measure), so the form's 120 ms typing debounce is not in it.
Prints the median, 95th percentile and slowest answer per runtime, the slowest cases,
and the time from navigation to the first live ranking.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from localserver import serve  # noqa: E402

import build  # noqa: E402
from chromium import CHROMIUM_ARGS, executable  # noqa: E402
from nnmem.web.tools.what_fits import RUNTIMES, _gpu_options  # noqa: E402

BASE = "/nnmem/"
READY_MS = 120_000
ANSWER_MS = 30_000
FEW = ("rtx-3060-12gb", "rtx-4090", "a100-sxm-80gb", "h100-sxm-80gb", "h200")


def measures(page: Page) -> int:
    return int(page.evaluate("performance.getEntriesByName('nnmem:tool').length"))


def answer(page: Page, field: str, value: str) -> float:
    """Set one field and wait for the ranking it asks for; its time in ms."""
    before = measures(page)
    page.select_option(f"#t-{field}", value) if field != "num_gpus" else page.fill(
        f"#t-{field}", value
    )
    page.wait_for_function(
        f"performance.getEntriesByName('nnmem:tool').length > {before}", timeout=ANSWER_MS
    )
    return float(page.evaluate("performance.getEntriesByName('nnmem:tool').at(-1).duration"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", choices=("all", "few"), default="all")
    parser.add_argument("--cards", default="1,8", help="comma-separated card counts")
    args = parser.parse_args()
    gpus = [g for g, _ in _gpu_options() if args.gpus == "all" or g in FEW]
    cards = [c for c in args.cards.split(",") if c]

    with tempfile.TemporaryDirectory() as tmp:
        build.build(Path(tmp) / BASE.strip("/"), base_path=BASE)
        server = serve(Path(tmp))
        url = f"http://127.0.0.1:{server.server_address[1]}{BASE}what-fits.html"
        path = executable()
        launch = {"args": CHROMIUM_ARGS, **({"executable_path": path} if path else {})}
        times: dict[str, list[tuple[float, str]]] = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(**launch)
            page = browser.new_page(bypass_csp=True)  # for wait_for_function's eval
            page.goto(url)
            page.wait_for_function(
                "document.querySelector('#tool-results')?.dataset.state === 'live'",
                timeout=READY_MS,
            )
            first = float(page.evaluate("performance.now()"))
            first_answer = float(
                page.evaluate("performance.getEntriesByName('nnmem:tool').at(-1).duration")
            )
            version = browser.version
            for runtime, _ in RUNTIMES:
                answer(page, "runtime", runtime)
                for n in cards:
                    answer(page, "num_gpus", n)
                    for gpu in gpus:
                        ms = answer(page, "gpu", gpu)
                        times.setdefault(runtime, []).append((ms, f"{gpu} x{n}"))
            browser.close()
        server.shutdown()

    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Chromium {version}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"navigation to the first live ranking: {first:,.0f} ms (its answer {first_answer:,.0f} ms)"
    )
    print(f"{'runtime':10} {'answers':>8} {'median':>8} {'p95':>8} {'slowest':>8}  slowest case")
    for runtime, got in times.items():
        ms = [t for t, _ in got]
        worst = max(got)
        print(
            f"{runtime:10} {len(ms):>8} {statistics.median(ms):>6.0f} ms {pct(ms, 0.95):>5.0f} ms"
            f" {worst[0]:>5.0f} ms  {worst[1]}"
        )
    every = [t for got in times.values() for t, _ in got]
    over = sum(1 for t in every if t > 1000)
    print(f"answers over 1 s: {over} of {len(every)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
