"""The result's hero: the components stacked to scale against the chosen card.

One bar, as inline SVG, and the headline above it ("Fits: 4.79 GB of 23.19 GB",
"Needs 493.64 GB: 32× this card"). The bar's scale is the larger of the scenario's total
and the card's usable memory, so a scenario that fits shows the room left and one that
does not shows how far it runs past the card. The line the verdict judges against (the
usable memory less the headroom kept free) is marked; the share past it is hatched and
named in the legend, so the overflow is never told by colour alone. Colours come from the
page's CSS (``.bar-<key>``, ``.cap-*``), so dark mode restyles them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from nnmem.render.markup import escape
from nnmem.render.text import sharing_gpus
from nnmem.result import Estimate
from nnmem.units import human, percent

WIDTH = 400  # the viewBox's width: the bar spans all of it
_FONT = 14
_CHAR_EM = 0.6  # wider than a sans-serif face's average character, so labels never touch
_TOP = 20  # the capacity line's label sits above the bar
_BAR = 30


@dataclass(frozen=True)
class Card:
    """The card a scenario is judged against: what the verdict may fill of it.

    ``budget`` is the usable memory less the headroom kept free (what
    :func:`nnmem.solvers.budget_for` gives). A run split over several GPUs is judged
    per GPU: every figure is one GPU's.
    """

    name: str
    usable: int
    budget: int
    runs: bool = True  # False when the card cannot compute in the chosen precision


def times(need: int, budget: int) -> str:
    """How many of the card the scenario needs, rounded up: to a tenth below ten, to a
    whole number from ten.

    >>> times(493_640_000_000, 15_461_882_265), times(30, 20), times(21, 20)
    ('32', '1.5', '1.1')
    """
    ratio = Fraction(need, budget)
    tenths = math.ceil(ratio * 10)
    if tenths >= 100:
        return f"{math.ceil(ratio):,}"
    return f"{tenths // 10}.{tenths % 10}"


def _per_gpu(estimate: Estimate) -> str:
    """ " per GPU of 8" where the run is split, so that every figure is one GPU's."""
    gpus = sharing_gpus(estimate.scenario)
    return f" per GPU of {gpus:,}" if gpus > 1 else ""


def _kept(estimate: Estimate) -> str:
    return f"{float(estimate.scenario.headroom_percent):g}%"


def headline_html(estimate: Estimate, card: Card | None, binary: bool = False) -> str:
    """The verdict in one line over the bar, the total in it as ``<output id="total">``.

    >>> import re
    >>> from nnmem import GenericModel, Scenario, estimate
    >>> bert = estimate(Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128))
    >>> re.sub("<[^>]+>", "", headline_html(bert, Card("RTX 4090", 24 * 2**30, 23_192_823_398)))
    'Fits: 4.79 GB of 23.19 GB'
    >>> re.sub("<[^>]+>", "", headline_html(bert, Card("RTX 3050", 4 * 2**30, 3_865_470_566)))
    'Needs 4.79 GB: 1.3× this card'
    """
    need = estimate.total_bytes
    total = (
        f'<output id="total" for="calc" data-bytes="{need}">{escape(human(need, binary))}</output>'
    )
    if card is None:
        return f'<p class="capacity-headline" data-fit="none">Needs {total}{_per_gpu(estimate)}</p>'
    per = _per_gpu(estimate)
    budget = escape(human(card.budget, binary))
    if need <= card.budget:
        word = "Fits" if card.runs else "Fits in memory, but cannot run"
        return f'<p class="capacity-headline" data-fit="yes">{word}{per}: {total} of {budget}</p>'
    return (
        f'<p class="capacity-headline" data-fit="no">Needs {total}{per}: '
        f"{times(need, card.budget)}× this card</p>"
    )


def _text_width(text: str) -> float:
    return len(text) * _FONT * _CHAR_EM


def capacity_svg(estimate: Estimate, card: Card | None, binary: bool = False) -> str:
    """The components at the peak stacked in one bar, to scale against ``card``.

    A component's width is its bytes over the scale (the larger of the total and the
    card's usable memory) times :data:`WIDTH`, to a tenth of a unit; a component too
    narrow to see is still named in the description and in :func:`legend_html`. Without
    a card the bar is the total alone.
    """
    components = [c for c in estimate.components if c.bytes > 0]
    need = estimate.total_bytes
    scale = max(need, card.usable) if card is not None else need
    scale = scale or 1

    def px(n: int) -> float:
        return round(WIDTH * n / scale, 1)

    parts: list[str] = []
    top = _TOP if card is not None else 2  # room for the line's label, with a card
    bottom = top + _BAR
    if card is not None:
        parts.append(
            f'<rect class="cap-track" x="0.5" y="{top + 0.5}" width="{px(card.usable) - 1:g}" '
            f'height="{_BAR - 1}" rx="3" fill="none" stroke="currentColor"/>'
        )
    x = 0.0
    for c in components:
        width = px(c.bytes)
        parts.append(
            f'<rect class="bar bar-{c.key}" data-key="{c.key}" x="{x:g}" y="{top}" '
            f'width="{width:g}" height="{_BAR}"/>'
        )
        x = round(x + width, 1)
    if card is not None:
        line = px(card.budget)
        if need <= card.budget < card.usable:  # past the budget, the overflow's hatch shows
            parts.append(
                f'<rect class="cap-free" x="{line:g}" y="{top}" '
                f'width="{round(px(card.usable) - line, 1):g}" height="{_BAR}" '
                'fill="url(#cap-free-hatch)"/>'
            )
        if need > card.budget:
            parts.append(
                f'<rect class="cap-over" x="{line:g}" y="{top - 3}" '
                f'width="{round(px(need) - line, 1):g}" height="{_BAR + 6}" '
                'fill="url(#cap-over-hatch)"/>'
            )
        parts.append(
            f'<line class="cap-line" x1="{line:g}" x2="{line:g}" y1="{top - 6}" '
            f'y2="{bottom + 4}" stroke="currentColor" stroke-width="2"/>'
        )
        # The card's name and what the verdict may fill of it (per GPU: the headline and
        # the title say so).
        label = f"{card.name}: {human(card.budget, binary)}"
        # Ending at the line where it fits to its left; otherwise starting after the line,
        # or as far right as keeps it inside the viewBox (never past its left edge).
        wide = _text_width(label)
        if line > WIDTH / 2 and wide <= line - 4:
            anchor, at = "end", line - 4
        else:
            anchor, at = "start", max(0.0, min(line + 4, WIDTH - wide))
        parts.append(
            f'<text class="cap-label" x="{round(at, 1):g}" y="{top - 7}" '
            f'text-anchor="{anchor}">{escape(label)}</text>'
        )
    height = bottom + (6 if card is not None else 2)
    # The hatches, only those drawn: the overflow's red stripes, the headroom's grey ones.
    defs = ""
    if "cap-over-hatch" in "".join(parts):
        defs += (
            '<pattern id="cap-over-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect class="cap-over-fill" width="6" height="6" '
            'fill="none"/><line class="cap-over-stripe" x1="0" y1="0" x2="0" y2="6" '
            'stroke="currentColor" stroke-width="3"/></pattern>'
        )
    if "cap-free-hatch" in "".join(parts):
        defs += (
            '<pattern id="cap-free-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><line class="cap-free-stripe" x1="0" y1="0" x2="0" '
            'y2="6" stroke="currentColor" stroke-width="1.5"/></pattern>'
        )
    defs = f"<defs>{defs}</defs>" if defs else ""
    return (
        f'<svg class="capacity" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="capacity-title capacity-desc" fill="currentColor" '
        f'font-size="{_FONT}"><title id="capacity-title">{escape(_title(estimate, card, binary))}'
        f'</title><desc id="capacity-desc">{escape(_summary(estimate, binary))}</desc>'
        f"{defs}{''.join(parts)}</svg>"
    )


def legend_html(estimate: Estimate, card: Card | None, binary: bool = False) -> str:
    """The bar's key as a list of text: the overflow first where there is one, each
    component with its size, then the headroom kept free where it fits. A component
    whose sliver is too narrow to see is named here all the same. Each name links to
    its entry in the page's glossary (``#what-<key>``), which says what it is.
    """
    need = estimate.total_bytes
    items = []
    if card is not None and need > card.budget:
        over = escape(human(need - card.budget, binary))
        items.append(
            f'<li class="cap-key-over"><span class="swatch swatch-over" aria-hidden="true">'
            f"</span>Over the card by {over}</li>"
        )
    for c in estimate.components:
        if c.bytes <= 0:
            continue
        items.append(
            f'<li data-key="{c.key}"><span class="swatch bar-{c.key}" aria-hidden="true">'
            f'</span><a href="#what-{c.key}">{escape(c.label)}</a> '
            f"{escape(human(c.bytes, binary))}</li>"
        )
    if card is not None and need <= card.budget < card.usable:
        free = escape(human(card.usable - card.budget, binary))
        items.append(
            f'<li class="cap-key-free"><span class="swatch swatch-free" aria-hidden="true">'
            f"</span>Kept free ({_kept(estimate)}) {free}</li>"
        )
    return f'<ul class="cap-legend" aria-label="Key to the bar">{"".join(items)}</ul>'


def _title(estimate: Estimate, card: Card | None, binary: bool) -> str:
    """The verdict in words, for a screen reader: what the headline and the bar say."""
    need = estimate.total_bytes
    if card is None:
        return f"Needs {human(need, binary)}; pick a GPU to compare it with its memory."
    per = _per_gpu(estimate)
    free = f", after keeping {_kept(estimate)} free" if card.usable > card.budget else ""
    room = f"{card.name} has {human(card.budget, binary)}{per} to fill{free}"
    if need <= card.budget:
        cannot = " in memory, but the card cannot run it" if not card.runs else ""
        return (
            f"Fits{cannot}: needs {human(need, binary)}{per}; {room}, "
            f"{human(card.budget - need, binary)} to spare."
        )
    return (
        f"Does not fit: needs {human(need, binary)}{per}, {times(need, card.budget)}× this "
        f"card; {room}, {human(need - card.budget, binary)} short."
    )


def _summary(estimate: Estimate, binary: bool) -> str:
    total = estimate.total_bytes
    parts = "; ".join(
        f"{c.label} {human(c.bytes, binary)} ({percent(c.bytes, total)})"
        for c in estimate.components
        if c.bytes > 0
    )
    return f"Made of: {parts}."
