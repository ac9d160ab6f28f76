"""Time the "Memory over the step" chart, and each part of the calculator's reply.

    .venv/bin/python benchmarks/timeline_speed.py
    node benchmarks/engine_speed_pyodide.mjs timeline_speed.py   # inside Pyodide

For each scenario of benchmarks/page_speed.py: the events (nnmem.timeline), the two
replays and the downsampling (nnmem.render.timeline_svg.trace_step), the SVG; then the
reply's first part (the total, painted first), its second part (the plot, the verdict
and the suggestions), its third (the chart, asked once it is in view) and the whole, each
with the step replayed afresh.
Medians of repeated runs, in milliseconds.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # page_speed, also under runpy

from page_speed import REQUESTS

from nnmem.render.timeline_svg import timeline_html, trace_step
from nnmem.timeline import replayed_events
from nnmem.web import handle, step_chart
from nnmem.web.calculator import DEFAULT_FIELDS
from nnmem.web.form import read

REPEAT = 11


def median_ms(run: Callable[[], object]) -> float:
    """Median wall time of ``run()`` over REPEAT runs, after a warm-up; each run replays
    the step afresh (the chart keeps its last trace for a change of view)."""
    run()
    times = []
    for _ in range(REPEAT):
        step_chart._last = None
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    print(f"{platform.python_implementation()} {platform.python_version()} on {sys.platform}")
    head = ("events", "n", "replays", "svg", "first", "rest", "chart", "all")
    print(f"{'request':34}" + "".join(f"{h:>9}" for h in head) + f"   (ms, median of {REPEAT})")
    for name, changes in REQUESTS.items():
        fields = {**DEFAULT_FIELDS, **changes}
        page = read(fields)
        assert page.scenario is not None
        scenario, gpu = page.scenario, page.gpu or None
        events = replayed_events(scenario, gpu)
        cells = [median_ms(partial(replayed_events, scenario, gpu)), float(len(events))]
        if events:
            trace = trace_step(events)
            cells += [
                median_ms(partial(trace_step, events)),
                median_ms(partial(timeline_html, trace)),
            ]
        else:
            cells += [0.0, 0.0]
        for part in ("first", "rest", "chart", "all"):
            request = json.dumps({"fields": fields, "part": part})
            cells.append(median_ms(partial(handle, request)))
        print(
            f"{name:34}"
            + "".join(f"{c:9.1f}" if i != 1 else f"{int(c):9d}" for i, c in enumerate(cells))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
