"""Measure the calculator page in headless Chromium and print the figures.

    .venv/bin/python benchmarks/site_speed.py [--runs 5] [--recalcs 30]

Builds the site under /nnmem/ and serves it on 127.0.0.1 with GitHub Pages' caching
header (``Cache-Control: max-age=600``). Each run opens a browser on a new profile on
disk (an empty cache: the cold visit) and then visits again with it (the warm visit).
For both it measures, in milliseconds from the start of navigation:

- static paint: First Contentful Paint of a plain copy of the page with its scripts
  stripped, the baseline no script can beat;
- bare boot: a worker that only runs ``loadPyodide()`` on the same core files, the floor
  for the engine, and the same on Pyodide's five files as its npm package ships them
  (the site trims the standard library and ships it as bytecode, see build.py);
- the static copy beside a bare boot: the static copy with the bare worker made by an
  inline script at the top of its head, so that the bare boot runs beside the page's own
  parsing, style, layout and paint, with no script of the page's: what rendering the page
  costs Python's start on this machine's cores, before any of the calculator's own work;
- when each page made its worker (the worker's time origin), so that the calculator's
  gap to the bare boot splits into the worker made later, Python's start slower beside
  the page's own work, and the worker's own part after it;
- the calculator's first paint, worker ready (``nnmem:ready``) and first live result
  (``nnmem:live``), and how Python started (``#engine[data-start]``: "fresh", or
  "snapshot" where a warm visit restores the heap the cold one kept in Cache Storage,
  which the cold visit waits for, ``#engine[data-kept]``), and the worker's own stages
  after ``loadPyodide()`` in the same visit (its ``nnmem:worker:*`` marks: the bundle
  awaited, unpacked, nnmem imported), which do not depend on how fast that visit's
  Pyodide booted (or was restored);
- recalculation: from a form change to the painted total (``nnmem:compute``) and to the
  painted complete answer, verdict and plot included (``nnmem:complete``), for the default
  form and for Llama 3.1 8B with an H100 chosen, typed once the page is idle (its loaded
  answer complete and its step chart drawn);
- transfer: bytes the server sent per visit (it does not compress; gzip sizes are given
  per file, and the bytes beyond the five core files with text gzipped as GitHub Pages
  sends it) and how many requests it answered.

Each run visits the five pages in turn, starting one further along the list each run.
Every figure is the median over the runs (recalculations: median and 95th percentile of
all of them). The machine's load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from localserver import QuietHandler  # noqa: E402

import build  # noqa: E402
from chromium import CHROMIUM_ARGS, executable  # noqa: E402

BASE = "/nnmem/"
GPU_QUERY = (
    "?describe=fields&preset=llama-3.1-8b&precision=amp_bf16&batch_size=4&seq_len=4096"
    "&gpu=h100-sxm-80gb"
)
READY_MS = 120_000
STAGES = ("stage downloaded", "stage unpacked", "stage imported-nnmem", "stage after boot")
FIGURES = ("paint", "boot", "worker", "booted", "ready", "live", *STAGES)

BARE_PAGE = """<!doctype html><meta charset="utf-8"><title>bare boot</title>
<script type="module">
const worker = new Worker(new URL("bare-worker.js", document.baseURI), { type: "module" });
worker.onmessage = () => performance.mark("bare:ready");
</script>
"""
BARE_WORKER = """import { loadPyodide } from "%s";
await loadPyodide({ indexURL: new URL("%s", self.location.href).href });
self.postMessage("ready");
"""


class Counter:
    """Bytes and requests the server answered since the last reset."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.sent = 0
            self.requests = 0
            self.not_modified = 0
            self.paths: set[str] = set()

    def add(self, path: str, sent: int, status: int) -> None:
        with self.lock:
            self.sent += sent
            self.requests += 1
            self.not_modified += status == 304
            self.paths.add(path.split("?")[0])


def serve(root: Path, counter: Counter) -> Any:
    """Serve ``root`` like GitHub Pages caches it, counting what is sent."""
    import functools
    from http.server import ThreadingHTTPServer

    class Handler(QuietHandler):
        def end_headers(self) -> None:
            self.send_header("Cache-Control", "max-age=600")
            super().end_headers()

        def send_response(self, code: int, message: str | None = None) -> None:
            self._status = code
            super().send_response(code, message)

        def copyfile(self, source: Any, outputfile: Any) -> None:
            data = source.read()
            outputfile.write(data)
            counter.add(self.path, len(data), self._status)

        def send_head(self) -> Any:
            result = super().send_head()
            if result is None and getattr(self, "_status", 200) == 304:
                counter.add(self.path, 0, 304)
            return result

    handler = functools.partial(Handler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def add_baselines(site: Path) -> None:
    """The static copy (scripts stripped) and the bare-boot pages, beside index.html: one
    on the site's core, one on Pyodide's five files as its npm package ships them (its
    whole standard library, as source) in ``pyodide-shipped/``."""
    html = (site / "index.html").read_text(encoding="utf-8")
    static = re.sub(r"<script\b.*?</script>", "", html, flags=re.S)
    static = re.sub(r'<link rel="(modulepreload|preload)"[^>]*>', "", static)
    (site / "static.html").write_text(static, encoding="utf-8")
    core = re.search(r'data-pyodide="([^"]+)"', html)
    assert core, "index.html names no Pyodide folder"
    folder = core.group(1)
    (site / "bare.html").write_text(BARE_PAGE, encoding="utf-8")
    (site / "bare-worker.js").write_text(
        BARE_WORKER % (f"./{folder.removeprefix('./')}pyodide.mjs", folder), encoding="utf-8"
    )
    # The bare worker beside the static copy: made first thing, by an inline script (the
    # copy's Content-Security-Policy, which forbids one, left out of this baseline only).
    beside = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", static)
    starter = re.search(r"<script type=\"module\">.*?</script>", BARE_PAGE, flags=re.S)
    assert starter, "the bare page has no script"
    (site / "static-bare.html").write_text(
        beside.replace('<meta charset="utf-8">', '<meta charset="utf-8">' + starter.group(0), 1),
        encoding="utf-8",
    )
    shipped = site / "pyodide-shipped"
    shipped.mkdir()
    for name in build.PYODIDE_FILES:
        shutil.copyfile(ROOT / "node_modules" / "pyodide" / name, shipped / name)
    (site / "shipped.html").write_text(
        BARE_PAGE.replace("bare-worker.js", "shipped-worker.js"), encoding="utf-8"
    )
    (site / "shipped-worker.js").write_text(
        BARE_WORKER % ("./pyodide-shipped/pyodide.mjs", "./pyodide-shipped/"), encoding="utf-8"
    )


def entry(page: Page, name: str, kind: str = "mark") -> float:
    """The start time of the first performance entry ``name``, waiting for it."""
    page.wait_for_function(
        f"() => performance.getEntriesByName({name!r}).length > 0", timeout=READY_MS, polling=20
    )
    got: float = page.evaluate(f"performance.getEntriesByName({name!r})[0].startTime")
    return got


def fcp(page: Page) -> float:
    return entry(page, "first-contentful-paint")


def recalc(page: Page, recalcs: int, value: Callable[[int], str]) -> dict[str, list[float]]:
    """Change the batch size ``recalcs`` times, waiting each time for the whole answer."""
    # The batch field sits in the form that "Adjust everything" folds away.
    page.evaluate("document.getElementById('adjust').open = true")
    # Typing starts once the page is idle: the loaded answer complete, and its step chart
    # drawn where the box is in view (asked for 150 ms after the answer, see
    # calculator.js), so no keystroke waits behind the page's own first work.
    page.wait_for_function(
        "() => { const r = document.getElementById('results').dataset;"
        " return r.request && r.complete === r.request; }",
        timeout=READY_MS,
    )
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => { const box = document.getElementById('part-timeline');"
        " const shown = (box.closest('.timeline-box') || box).getBoundingClientRect();"
        " const d = document.getElementById('results').dataset;"
        " return shown.bottom <= 0 || shown.top >= innerHeight"
        " || box.dataset.chart !== 'drawing' || d.chart === d.request; }",
        timeout=READY_MS,
    )
    page.evaluate("performance.clearMeasures()")
    for i in range(recalcs):
        request = int(page.get_attribute("#results", "data-request") or 0) + 1
        page.fill("#f-batch_size", value(i))
        page.wait_for_function(
            "n => { const r = document.getElementById('results').dataset;"
            " return Number(r.complete ?? r.request) >= n; }",
            arg=request,
            timeout=30_000,
            polling="raf",
        )
    out = {}
    for name in ("nnmem:compute", "nnmem:complete"):
        out[name] = page.evaluate(f"performance.getEntriesByName({name!r}).map(e => e.duration)")
    if not out["nnmem:complete"]:  # a page that answers in one step
        out["nnmem:complete"] = out["nnmem:compute"]
    return out


def worker_started(page: Page) -> float:
    """When the page's worker was made, in ms from the page's navigation: the worker's
    time origin is its creation (HTML's "worker global scope" time origin)."""
    origins = (
        page.workers[0].evaluate("performance.timeOrigin"),
        page.evaluate("performance.timeOrigin"),
    )
    return float(origins[0] - origins[1])


def visit(context: BrowserContext, url: str, counter: Counter, what: str) -> dict[str, Any]:
    """One navigation; the figures it gives and what the server sent for it."""
    page = context.new_page()
    counter.reset()
    page.goto(url)
    got: dict[str, Any] = {}
    if what == "static":
        got["paint"] = fcp(page)
    elif what in ("bare", "shipped", "beside"):
        got["boot"] = entry(page, "bare:ready")
        got["worker"] = worker_started(page)
    else:
        got["paint"] = fcp(page)
        got["ready"] = entry(page, "nnmem:ready")
        got["live"] = entry(page, "nnmem:live")
        got["start"] = page.get_attribute("#engine", "data-start")
        if got["start"] == "fresh":  # the heap it keeps for the warm visit
            page.wait_for_selector("#engine[data-kept]", state="attached", timeout=READY_MS)
        marks = dict(
            page.workers[0].evaluate(
                "performance.getEntriesByType('mark').map(m => [m.name, m.startTime])"
            )
        )
        stages = ("booted", "downloaded", "unpacked", "imported-nnmem")
        at = [marks[f"nnmem:worker:{stage}"] for stage in stages]
        got["worker"] = worker_started(page)
        got["booted"] = got["worker"] + at[0]
        for stage, start, end in zip(stages[1:], at, at[1:], strict=False):
            got[f"stage {stage}"] = end - start
        got["stage after boot"] = at[-1] - at[0]
    page.wait_for_load_state("load")
    got["bytes"], got["requests"], got["revalidated"] = (
        counter.sent,
        counter.requests,
        counter.not_modified,
    )
    got["paths"] = set(counter.paths)
    got["page"] = page
    return got


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--recalcs", type=int, default=30)
    args = parser.parse_args()

    rows: dict[str, list[float]] = {}
    recalcs: dict[str, list[float]] = {}
    sent: dict[str, list[int]] = {}
    paths: set[str] = set()
    starts: dict[str, list[str]] = {}

    def note(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / BASE.strip("/")
        build.build(site, base_path=BASE)
        add_baselines(site)
        counter = Counter()
        server = serve(Path(tmp), counter)
        url = f"http://127.0.0.1:{server.server_address[1]}{BASE}"
        path = executable()
        with sync_playwright() as playwright:
            launch = {"args": CHROMIUM_ARGS, **({"executable_path": path} if path else {})}
            version = ""
            visits = (
                ("static", "static.html"),
                ("bare", "bare.html"),
                ("shipped", "shipped.html"),
                ("beside", "static-bare.html"),
                ("page", ""),
            )
            for run in range(args.runs):
                # Each run starts one later in the list, so that no page always follows
                # the same one: a visit right after the heaviest (Pyodide's own core,
                # 2.2 s of CPU-bound boot) started 20-70 ms slower here (8 rounds).
                turn = run % len(visits)
                for what, target in visits[turn:] + visits[:turn]:
                    # A profile on disk, as a visitor's browser has: an in-memory one
                    # does not keep the 9.6 MB wasm file between visits.
                    with tempfile.TemporaryDirectory() as profile:
                        context = playwright.chromium.launch_persistent_context(profile, **launch)
                        version = context.browser.version if context.browser else version
                        for visit_kind in ("cold", "warm"):
                            got = visit(context, url + target, counter, what)
                            page = got.pop("page")
                            if "start" in got:
                                starts.setdefault(visit_kind, []).append(got.pop("start"))
                            for key in FIGURES:
                                if key in got:
                                    note(f"{what} {key} {visit_kind}", got[key])
                            sent.setdefault(f"{what} {visit_kind}", []).append(got["bytes"])
                            note(f"{what} requests {visit_kind}", got["requests"])
                            note(f"{what} revalidated {visit_kind}", got["revalidated"])
                            if what == "page" and visit_kind == "cold":
                                paths |= got["paths"]
                                for name, durations in recalc(
                                    page, args.recalcs, lambda i: str(8 + i % 7)
                                ).items():
                                    recalcs.setdefault(f"default {name}", []).extend(durations)
                            page.close()
                        if what == "page":
                            page = context.new_page()
                            page.goto(url + GPU_QUERY)
                            entry(page, "nnmem:live")
                            for name, durations in recalc(
                                page, args.recalcs, lambda i: str(2 + i % 7)
                            ).items():
                                recalcs.setdefault(f"H100 {name}", []).extend(durations)
                            page.close()
                        context.close()
        server.shutdown()
        files = sorted(paths)
        sizes = {}
        for p in files:
            local = Path(tmp) / p.lstrip("/")
            if local.is_dir():
                local = local / "index.html"
            if local.is_file():
                data = local.read_bytes()
                sizes[p.removeprefix(BASE)] = (len(data), len(gzip.compress(data, 6)))
        core_dir = re.search(r'data-pyodide="(?:\./)?([^"]+)"', (site / "index.html").read_text())
        core = core_dir.group(1) if core_dir else "pyodide/"
        core_bytes = sum((site / core / n).stat().st_size for n in build.PYODIDE_FILES)
    load_after = os.getloadavg()

    def med(key: str) -> str:
        values = rows.get(key)
        return f"{statistics.median(values):8.0f}" if values else "       -"

    print(
        f"Chromium {version}; {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.runs} runs, {args.recalcs} recalculations per form per run"
    )
    print(
        "load average (1/5/15 min) before "
        + "/".join(f"{x:.1f}" for x in load_before)
        + ", after "
        + "/".join(f"{x:.1f}" for x in load_after)
    )
    for kind, how in starts.items():
        print(
            f"Python started, {kind} visits: "
            + ", ".join(f"{how.count(s)} {s}" for s in sorted(set(how)))
        )
    print(f"{'ms from navigation (median)':34} {'cold':>8} {'warm':>8}")
    for label, key in (
        ("static copy: first paint", "static paint"),
        ("bare loadPyodide(): worker made", "bare worker"),
        ("bare loadPyodide(): ready", "bare boot"),
        ("the same, Pyodide's own core", "shipped boot"),
        ("the same beside the static copy", "beside boot"),
        ("calculator: first paint", "page paint"),
        ("calculator: worker made", "page worker"),
        ("calculator: Python started", "page booted"),
        ("calculator: worker ready", "page ready"),
        ("calculator: first live result", "page live"),
    ):
        print(f"{label:34} {med(key + ' cold')} {med(key + ' warm')}")
    for label, key in (
        ("worker: bundle awaited after boot", "stage downloaded"),
        ("worker: bundle unpacked", "stage unpacked"),
        ("worker: nnmem imported (ready)", "stage imported-nnmem"),
        ("worker: ready minus its own boot", "stage after boot"),
    ):
        print(f"{label:34} {med(f'page {key} cold')} {med(f'page {key} warm')}")

    def gap(label: str, later: list[float] | None, earlier: list[float] | None) -> None:
        """The median of each run's own difference, with the runs: the machine's speed
        drifts between runs (the bare boot of the same files ranged 1.0-1.3 s within
        minutes here)."""
        if later and earlier:
            gaps = [a - b for a, b in zip(later, earlier, strict=True)]
            print(
                f"{label}: median {statistics.median(gaps):.0f} ms"
                f" (runs: {', '.join(f'{g:.0f}' for g in gaps)})"
            )

    for kind in ("cold", "warm"):
        ready = rows.get(f"page ready {kind}")
        bare = rows.get(f"bare boot {kind}")
        gap(f"worker ready minus bare boot, {kind}", ready, bare)
        gap(
            f"worker ready minus bare boot of Pyodide's own core, {kind}",
            ready,
            rows.get(f"shipped boot {kind}"),
        )
        # The cold gap in three: the worker made later than the bare one, Python's start
        # taking longer beside the page's own work (two cores here), and the worker's
        # own part after it. Each run's own split, medians of each part.
        parts = [rows.get(f"{k} {kind}") for k in ("page worker", "bare worker", "page booted")]
        if ready and bare and all(parts):
            made, bare_made, booted = parts
            later = [m - b for m, b in zip(made, bare_made, strict=True)]
            slower = [
                (x - m) - (b - bm)
                for x, m, b, bm in zip(booted, made, bare, bare_made, strict=True)
            ]
            own = [r - x for r, x in zip(ready, booted, strict=True)]
            print(
                f"  of which, {kind}: worker made later {statistics.median(later):.0f} ms,"
                f" Python's start slower {statistics.median(slower):.0f} ms,"
                f" the worker's own part {statistics.median(own):.0f} ms (medians)"
            )
        # What the page's rendering alone costs Python's start (the bare boot beside the
        # static copy, against the bare page's), and the calculator's gap to that floor.
        beside = rows.get(f"beside boot {kind}")
        gap(f"bare boot beside the static copy minus bare boot, {kind}", beside, bare)
        gap(f"worker ready minus bare boot beside the static copy, {kind}", ready, beside)
        paint = rows.get(f"page paint {kind}")
        static = rows.get(f"static paint {kind}")
        if paint and static:
            gaps = [r - b for r, b in zip(paint, static, strict=True)]
            print(f"first paint minus static, {kind}: median {statistics.median(gaps):.0f} ms")
    print(f"{'recalculation, ms':34} {'median':>8} {'p95':>8} {'n':>5}")
    for key, values in recalcs.items():
        if values:
            print(
                f"{key:34} {statistics.median(values):8.1f} {pct(values, 0.95):8.1f}"
                f" {len(values):5}"
            )
    print(f"{'bytes sent per visit (median)':34} {'cold':>11} {'warm':>11}  requests, 304s")
    for what in ("static", "bare", "shipped", "beside", "page"):
        cold = statistics.median(sent[f"{what} cold"])
        warm = statistics.median(sent[f"{what} warm"])
        print(
            f"{what:34} {cold:11,.0f} {warm:11,.0f}  "
            f"{med(what + ' requests cold').strip()}/{med(what + ' requests warm').strip()}, "
            f"{med(what + ' revalidated cold').strip()}/{med(what + ' revalidated warm').strip()}"
        )
    print(
        f"the five core files: {core_bytes:,} B; page cold minus core: "
        f"{statistics.median(sent['page cold']) - core_bytes:,.0f} B"
    )
    # GitHub Pages sends text compressed (Content-Encoding: gzip); this server does not.
    text = (".html", ".js", ".mjs", ".css", ".json", ".svg", "/")
    extra = sum(
        packed if name.endswith(text) or name == "" else raw
        for name, (raw, packed) in sizes.items()
        if not name.startswith(core)
    )
    print(f"beyond the core, text gzipped as GitHub Pages sends it: {extra:,} B")
    print("files of a cold calculator visit (raw, gzip):")
    for name, (raw, packed) in sizes.items():
        print(f"  {name:44} {raw:>11,} {packed:>11,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
