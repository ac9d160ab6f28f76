"""An estimate as SVG: the memory plot (the capacity bar is nnmem.render.capacity)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from nnmem.render.markup import escape
from nnmem.result import Estimate
from nnmem.units import human

# A 400-unit viewBox with 14-unit text: on a phone (about 350 px of plot) the text still
# renders at about 12 px. Colours come from the page's CSS classes; the presentation
# attributes are only the fallback (currentColor), so dark mode restyles everything.
_WIDTH = 400
_FONT = 14

_PLOT_HEIGHT = 270
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 12, 14, 50  # margins around the plot area
_AXIS_LABELS = {"batch_size": "Batch size", "seq_len": "Sequence length (tokens)"}


def _nice_step(span: float, ticks: int) -> float:
    """A 1, 2, 2.5 or 5 × 10^k step that cuts ``span`` into about ``ticks`` parts."""
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _tick_text(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _count_text(n: int) -> str:
    """An axis count, short enough for a phone.

    >>> [_count_text(n) for n in (512, 8_000, 60_000, 1_500_000)]
    ['512', '8,000', '60k', '1.5M']
    """
    if n >= 1_000_000:
        return f"{n / 1_000_000:g}M"
    if n >= 10_000:
        return f"{n / 1000:g}k"
    return f"{n:,}"


# The GPU's label: 13-unit text in two lines. Its box is estimated from the text: 0.6 em
# a character is wider than the average of sans-serif faces (Arial's digits and lowercase
# are 0.5 to 0.56 em), so a box drawn clear of the curve is clear on screen too.
_LABEL_FONT = 13
_LABEL_LINE = 15  # from the first baseline to the second
_CHAR_EM = 0.6
Box = tuple[float, float, float, float]  # left, top, right, bottom


def label_box(lines: Sequence[str], x: float, y: float, anchor: str) -> Box:
    """The box of ``lines`` of GPU label set at ``x`` (start or end), first baseline ``y``.

    >>> label_box(["RTX 4090", "24 GB usable"], 388, 100, "end")
    (294.4, 87, 388, 118.25)
    """
    width = max(len(line) for line in lines) * _LABEL_FONT * _CHAR_EM
    left = x - width if anchor == "end" else x
    bottom = y + _LABEL_LINE * (len(lines) - 1) + _LABEL_FONT / 4  # descenders
    return (round(left, 2), y - _LABEL_FONT, x if anchor == "end" else x + width, bottom)


def _meets(box: Box, p: tuple[float, float], q: tuple[float, float]) -> bool:
    """Whether the segment p–q crosses the box (Liang–Barsky clipping)."""
    low, high = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for step, room in (
        (-dx, p[0] - box[0]),
        (dx, box[2] - p[0]),
        (-dy, p[1] - box[1]),
        (dy, box[3] - p[1]),
    ):
        if step == 0:
            if room < 0:
                return False
            continue
        t = room / step
        if step < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


def _place_label(
    lines: Sequence[str],
    line_y: float,
    curve: Sequence[tuple[float, float]],
    area: Box,
) -> tuple[float, float, str]:
    """Where the GPU label goes: at either end of its line, above or below it, or moved
    up or down the plot area, the nearest spot whose box is clear of the curve (its
    points and the current point's dot lie on it), the line itself and the plot's edges,
    inside which the tick labels and axis titles never are. With no clear spot, above
    the line at its right end, where its halo keeps it readable."""
    pad = 6  # half the curve's stroke, the dot's radius beyond it, and a gap
    first = line_y - 6 - _LABEL_LINE * (len(lines) - 1)  # the last line's baseline 6 above
    segments = list(pairwise(curve)) or [(curve[0], curve[0])]  # one point: the dot alone
    spots = [(abs(dy), dy) for dy in range(-int(area[3]), int(area[3]), 2)]
    for _, dy in sorted(spots):
        for x, anchor in ((area[2], "end"), (area[0] + 4, "start")):
            y = first + dy
            box = label_box(lines, x, y, anchor)
            if box[0] < area[0] or box[1] < area[1] or box[3] > area[3]:
                continue
            if box[1] - 3 < line_y < box[3] + 3:
                continue
            grown = (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad)
            if any(_meets(grown, p, q) for p, q in segments):
                continue
            return x, y, anchor
    return area[2], first, "end"


def plot_svg(
    estimates: Sequence[Estimate],
    axis: str,
    current: Estimate,
    capacity: int | None = None,
    gpu_name: str = "",
    binary: bool = False,
    gpu_note: str = "",
) -> str:
    """Total memory against the batch size or the sequence length, as an inline SVG.

    ``estimates`` are the same scenario at several values of ``axis`` (``batch_size`` or
    ``seq_len``); ``current`` is the one the user set, marked with a dot. ``capacity``
    (the GPU's usable bytes) is drawn as a horizontal line labelled with ``gpu_name`` and
    ``gpu_note`` ("less 10% headroom"), clear of the curve and the axis titles.
    """
    points = sorted(
        {getattr(e.scenario, axis): e.total_bytes for e in [*estimates, current]}.items()
    )
    x_now, y_now = getattr(current.scenario, axis), current.total_bytes
    x_max = max(p[0] for p in points)
    y_top = max([p[1] for p in points] + [capacity or 0]) * 1.08 or 1
    big = 2**30 if binary else 10**9
    unit, size = ("GiB", big) if binary else ("GB", big)
    if y_top < big:
        unit, size = ("MiB", 2**20) if binary else ("MB", 10**6)
    step = _nice_step(y_top / size, 4)
    y_top = math.ceil(y_top / size / step) * step * size
    x_step = max(1, math.ceil(_nice_step(x_max - 1, 5))) if x_max > 1 else 1
    width, height = _WIDTH - _LEFT - _RIGHT, _PLOT_HEIGHT - _TOP - _BOTTOM

    def px(x: int) -> float:
        return _LEFT + (width * (x - 1) / (x_max - 1) if x_max > 1 else width / 2)

    def py(y: float) -> float:
        return _TOP + height - height * y / y_top

    parts = []
    y_ticks = round(y_top / size / step)
    for i in range(y_ticks + 1):
        y = py(i * step * size)
        parts.append(
            f'<line class="plot-grid" x1="{_LEFT}" x2="{_LEFT + width}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="currentColor" stroke-opacity="0.15"/>'
            f'<text class="plot-tick" x="{_LEFT - 6}" y="{y + 5:.1f}" text-anchor="end">'
            f"{_tick_text(i * step)}</text>"
        )
    xs = [1, *range(x_step, x_max + 1, x_step)] if x_step > 1 else list(range(1, x_max + 1))
    if len(xs) > 1 and px(xs[1]) - px(xs[0]) < 30:
        xs = xs[1:]  # 1 and the first step would overlap
    for x in xs:
        text = _count_text(x)
        # A label that would run past the right edge ends at it instead.
        at, anchor = f"{px(x):.1f}", "middle"
        if px(x) + 4.5 * len(text) > _WIDTH:
            at, anchor = f"{_WIDTH - 1}", "end"
        parts.append(
            f'<text class="plot-tick" x="{at}" y="{_TOP + height + 20}" '
            f'text-anchor="{anchor}">{text}</text>'
        )
    axis_label = _AXIS_LABELS.get(axis, axis)
    parts.append(
        f'<line class="plot-axis" x1="{_LEFT}" x2="{_LEFT + width}" y1="{_TOP + height}" '
        f'y2="{_TOP + height}" stroke="currentColor"/>'
        f'<text class="plot-label" x="{_LEFT + width / 2:.1f}" y="{_PLOT_HEIGHT - 6}" '
        f'text-anchor="middle">{escape(axis_label)}</text>'
        f'<text class="plot-label" transform="rotate(-90)" x="{-(_TOP + height / 2):.1f}" '
        f'y="16" text-anchor="middle">Memory ({unit})</text>'
    )
    labels = []  # drawn last, over the curve
    curve = [(round(px(x), 1), round(py(y), 1)) for x, y in points]
    if capacity:
        y = round(py(capacity), 1)
        usable = f"{human(capacity, binary)} usable"
        lines = [gpu_name, f"{gpu_note}: {usable}" if gpu_note else usable] if gpu_name else ["GPU"]
        # Clear of the curve, so neither hides the other; the halo (stroke in the page's
        # background colour, drawn under the fill) is for the dashed line behind it.
        x, first, anchor = _place_label(lines, y, curve, (_LEFT, 0, _LEFT + width, _TOP + height))
        parts.append(
            f'<line class="plot-gpu" x1="{_LEFT}" x2="{_LEFT + width}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="currentColor" stroke-width="2" stroke-dasharray="6 4"/>'
        )
        spans = "".join(
            f'<tspan x="{x:g}" y="{first + i * _LABEL_LINE:.1f}">{escape(text)}</tspan>'
            for i, text in enumerate(lines)
        )
        labels.append(
            f'<text class="plot-gpu-label" x="{x:g}" y="{first:.1f}" text-anchor="{anchor}" '
            f'font-size="{_LABEL_FONT}" paint-order="stroke" stroke-width="4" '
            f'stroke-linejoin="round">{spans}</text>'
        )
    line = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in curve)
    parts.append(
        f'<polyline class="plot-line" points="{line}" fill="none" stroke="currentColor" '
        'stroke-width="2.5" stroke-linejoin="round"/>'
        f'<circle class="plot-point" cx="{px(x_now):.1f}" cy="{py(y_now):.1f}" r="5.5"/>'
    )
    name = axis_label.split(" (")[0].lower()
    desc = (
        f"Total memory from {human(points[0][1], binary)} at {name} {points[0][0]:,} to "
        f"{human(points[-1][1], binary)} at {name} {x_max:,}; the current {name}, "
        f"{x_now:,}, needs {human(y_now, binary)}."
    )
    if capacity:
        fitting = [x for x, y in points if y <= capacity]
        reach = (
            f"up to {max(fitting):,} of those plotted fit"
            if fitting
            else "none of those plotted fit"
        )
        named = f"{gpu_name} {gpu_note}".strip() if gpu_name else "The GPU"
        desc += f" {named} has {human(capacity, binary)} usable: {reach}."
    return (
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_WIDTH} {_PLOT_HEIGHT}" role="img" '
        f'aria-labelledby="plot-svg-title plot-svg-desc" fill="currentColor" '
        f'font-size="{_FONT}"><title id="plot-svg-title">Memory against {escape(name)}</title>'
        f'<desc id="plot-svg-desc">{escape(desc)}</desc>'
        f"{''.join(parts)}{''.join(labels)}</svg>"
    )
