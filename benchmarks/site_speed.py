"""Measure the calculator page in headless Chromium and print the figures.

    .venv/bin/python benchmarks/site_speed.py [--runs 5] [--recalcs 40]

Builds the site under /nnmem/, serves it on 127.0.0.1 and, per run, opens it in a fresh
browser context (an empty cache, as for a first visit). It prints:

- first paint: when the prerendered result is on screen (First Contentful Paint);
- engine ready: when Pyodide and nnmem have loaded in the worker (``nnmem:ready`` mark);
- recalculation: from a form change to the painted result (``nnmem:compute`` measures);
- transfer size: bytes served for one visit, raw and as gzip would send them.

Timings are medians over the runs, in milliseconds from the start of navigation.
"""

from __future__ import annotations

import argparse
import gzip
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

BASE = "/nnmem/"


def one_visit(page: Page, url: str, recalcs: int) -> dict[str, float]:
    """Load the page, wait for the engine, change the batch size ``recalcs`` times."""
    page.goto(url)
    page.wait_for_selector('#engine[data-state="ready"]', timeout=60_000)
    page.wait_for_selector('#results[data-state="live"]')
    first_paint = page.evaluate(
        "performance.getEntriesByName('first-contentful-paint')[0].startTime"
    )
    ready = page.evaluate("performance.getEntriesByName('nnmem:ready')[0].startTime")
    page.evaluate("performance.clearMeasures('nnmem:compute')")
    for i in range(recalcs):
        request = str(int(page.get_attribute("#results", "data-request") or 0) + 1)
        page.fill("#f-batch_size", str(8 + i % 7))
        page.wait_for_selector(f'#results[data-request="{request}"]')
    durations = page.evaluate("performance.getEntriesByName('nnmem:compute').map(e => e.duration)")
    return {
        "first_paint": first_paint,
        "ready": ready,
        "recalc_median": statistics.median(durations),
        "recalc_p95": sorted(durations)[int(0.95 * (len(durations) - 1))],
    }


def transfer_sizes(site: Path, paths: list[str]) -> dict[str, tuple[int, int]]:
    """Raw and gzip-compressed bytes of each file a visit requested."""
    sizes = {}
    for path in paths:
        data = (site / path).read_bytes()
        sizes[path] = (len(data), len(gzip.compress(data, compresslevel=6)))
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--recalcs", type=int, default=40)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / BASE.strip("/")
        build.build(site, base_path=BASE)
        server = serve(Path(tmp))
        url = f"http://127.0.0.1:{server.server_address[1]}{BASE}"
        path = executable()
        visits, requested = [], set()
        with sync_playwright() as playwright:
            launch = {"args": CHROMIUM_ARGS, **({"executable_path": path} if path else {})}
            browser = playwright.chromium.launch(**launch)
            for _ in range(args.runs):
                context = browser.new_context()
                page = context.new_page()
                page.on(
                    "request",
                    lambda r: requested.add(r.url.split("?")[0].removeprefix(url)),
                )
                visits.append(one_visit(page, url, args.recalcs))
                context.close()
            version = browser.version
            browser.close()
        server.shutdown()
        sizes = transfer_sizes(site, sorted(p if p else "index.html" for p in requested))

    def median(key: str) -> float:
        return statistics.median(v[key] for v in visits)

    print(f"Chromium {version}, {args.runs} first visits, {args.recalcs} recalculations each")
    print(f"time to first painted result  {median('first_paint'):8.0f} ms")
    print(f"time until the worker ready   {median('ready'):8.0f} ms")
    print(f"recalculation, median         {median('recalc_median'):8.1f} ms")
    print(f"recalculation, 95th pct       {median('recalc_p95'):8.1f} ms")
    raw = sum(r for r, _ in sizes.values())
    packed = sum(c for _, c in sizes.values())
    print(f"transfer size                 {raw / 1e6:8.2f} MB raw, {packed / 1e6:.2f} MB gzip")
    for name, (size, gzipped) in sizes.items():
        print(f"  {name:34} {size:>11,} B raw {gzipped:>11,} B gzip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
