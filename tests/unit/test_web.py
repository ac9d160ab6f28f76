"""The browser's one entry point: JSON in, JSON out, never a traceback."""

from __future__ import annotations

import json
import re
from html import unescape
from itertools import pairwise
from typing import Any
from xml.etree import ElementTree

from nnmem.estimate import estimate
from nnmem.render.capacity import capacity_svg, headline_html
from nnmem.render.html import table_html
from nnmem.scenario import SETTINGS, parse
from nnmem.solvers import max_batch, max_seq_len, min_gpus
from nnmem.units import human
from nnmem.web import handle
from nnmem.web.calculator import (
    DEFAULT_FIELDS,
    DEFAULT_SCENARIO,
    FORM_SECTIONS,
    prerender,
)
from nnmem.web.form import FIELDS, START_FIELDS

SVG = "{http://www.w3.org/2000/svg}"


def ask(payload: object) -> dict[str, Any]:
    reply = json.loads(handle(json.dumps(payload)))
    assert isinstance(reply, dict)
    return reply


def test_default_fields_are_the_brief_bert_example() -> None:
    reply = ask({"fields": DEFAULT_FIELDS})
    assert reply["ok"] is True
    assert reply["total_bytes"] == 4_794_973_004  # see test_estimate: BERT-base example
    assert reply["download"]["estimate"]["tensor_peak_bytes"] == 3_811_416_576
    assert reply["total_text"] == "4.79 GB"
    assert reply["total_detail"] == ("4,794,973,004 bytes; tensors peak at 3.81 GB in the forward")
    assert "optimizer" not in reply["inactive"]


def test_reply_carries_the_same_fragments_the_build_prerenders() -> None:
    result = estimate(parse(DEFAULT_SCENARIO))
    reply = ask({"fields": DEFAULT_FIELDS})
    assert reply["html"]["table"] == table_html(result, links=True)
    assert reply["html"]["headline"] == headline_html(result, None)
    assert capacity_svg(result, None) in reply["html"]["capacity"]


def test_errors_name_fields_and_hide_what_does_not_apply() -> None:
    fields = {**DEFAULT_FIELDS, "params_millions": "", "mode": "inference", "batch_size": "x"}
    reply = ask({"fields": fields})
    assert reply["ok"] is False
    assert [e["field"] for e in reply["errors"]] == ["params_millions", "batch_size"]
    assert "optimizer" in reply["inactive"]


def test_malformed_requests_get_a_plain_answer() -> None:
    """Every request that is not a fields object gets the same plain reply, in the one
    shape every page's answer has."""
    assert json.loads(handle("not json"))["errors"] == [
        {
            "field": "fields",
            "message": "The request is not valid JSON: Expecting value at line 1, column 1.",
        }
    ]
    for request in ("[]", '{"fields": 3}', '{"nothing": 1}'):
        assert json.loads(handle(request)) == {
            "ok": False,
            "errors": [{"field": "fields", "message": "The request must hold a fields object."}],
            "inactive": [],
            "fill": {},
            "html": {},
            "values": {},
        }


def test_form_describes_every_schema_field_once() -> None:
    form = [*START_FIELDS, *(f for section in FORM_SECTIONS for f in section.fields)]
    keys = [f.key for f in form]
    assert len(keys) == len(set(keys))
    assert {*SETTINGS, "params_millions", "hidden_size", "num_layers"} <= set(keys)
    precision = next(f for f in form if f.key == "precision")
    assert precision.options[:5] == (
        ("fp32", "FP32"),
        ("amp_bf16", "BF16 mixed precision (AMP)"),
        ("amp_fp16", "FP16 mixed precision (AMP)"),
        ("bf16", "BF16"),
        ("fp16", "FP16"),
    )
    assert all(f.hint.endswith(".") for f in form)


# --- the page's request: {"fields": {...}} -------------------------------------------------

# Llama 3.1 8B served in bf16, batch 4 of 4,096 tokens, on an RTX 4090 (24 GiB).
SERVE = {
    **DEFAULT_FIELDS,
    "describe": "fields",
    "preset": "llama-3.1-8b",
    "mode": "inference",
    "precision": "bf16",
    "batch_size": "4",
    "seq_len": "4096",
    "gpu": "rtx-4090",
    "headroom_percent": "0",  # the hand counts below fill the whole card
}
BUDGET = 24 * 2**30


def page(fields: dict[str, str]) -> dict[str, Any]:
    return ask({"fields": fields})


def test_reply_has_every_part_the_page_paints() -> None:
    reply = page(SERVE)
    assert reply["ok"] is True
    assert reply["errors"] == []
    assert set(reply["html"]) == {
        "headline",
        "capacity",
        "table",
        "plot",
        "verdict",
        "solvers",
        "suggestions",
        "phases",
        "formula",
        "notes",
        "runtime",
        "timeline",
    }
    assert set(reply["download"]) == {"scenario", "estimate", "gpu", "verdict", "solvers"}


def test_total_by_hand_for_the_served_llama() -> None:
    """Tensors at the prefill peak, by the cited formulas (see test_transformer):
    weights 8,030,261,248 × 2 B; KV cache 2 × 32 × 4 × 8 × 4,096 × 128 × 2 B;
    MLP working set (8·b·s·h + 6·b·s·f + 8·b·s + 4·s·d) B with b = 4, s = 4,096,
    h = 4,096, f = 14,336, d = 128. Overheads: 5% of that, one cuBLAS workspace of
    8,519,680 B (Ada, not Hopper) and a 740 MiB context."""
    weights = 8_030_261_248 * 2
    kv = 2 * 32 * 4 * 8 * 4096 * 128 * 2
    work = 8 * 4 * 4096 * 4096 + 6 * 4 * 4096 * 14336 + 8 * 4 * 4096 + 4 * 4096 * 128
    tensors = weights + kv + work
    total = tensors + tensors * 5 // 100 + 8_519_680 + 740 * 2**20
    assert total == 21_948_676_915
    reply = page(SERVE)
    assert reply["total_bytes"] == total
    assert reply["total_text"] == "21.95 GB"


def test_verdict_and_solvers_match_the_solvers_and_the_hand_count() -> None:
    """Each extra sequence of 4,096 tokens adds 536,870,912 B of KV cache and
    486,572,032 B of MLP working set (8·s·h + 6·s·f + 8·s), so with
    c = 16,060,522,496 + 2,097,152 the total is t(b) = T + ⌊T/20⌋ + 532,807,680 with
    T = c + 1,023,442,944·b: t(7) = 24,920,863,948 fits in 24 GiB = 25,769,803,776;
    t(8) = 25,995,479,040 does not. The largest batch is 7."""
    reply = page(SERVE)
    scenario = parse(
        {
            "model": "preset",
            "preset": "llama-3.1-8b",
            "mode": "inference",
            "precision": "bf16",
            "batch_size": 4,
            "seq_len": 4096,
        }
    )
    assert max_batch(scenario, BUDGET, "rtx-4090") == 7
    headroom = BUDGET - 21_948_676_915
    assert headroom == 3_821_126_861
    verdict = reply["html"]["verdict"]
    assert f'data-fit="yes" data-headroom="{headroom}"' in verdict
    assert "leaving 3.82 GB (15%) to spare" in verdict
    solvers = reply["html"]["solvers"]
    assert '<div data-solver="max_batch" data-value="7">' in solvers
    longest = max_seq_len(scenario, BUDGET, "rtx-4090")
    assert f'<div data-solver="max_seq_len" data-value="{longest}">' in solvers
    assert f"{longest:,} tokens" in solvers
    assert '<div data-solver="min_gpus" data-value="1">' in solvers
    assert reply["download"]["verdict"] == {
        "fits": True,
        "budget_bytes": BUDGET,
        "need_bytes": 21_948_676_915,
        "headroom_bytes": headroom,
    }
    assert reply["download"]["solvers"]["max_batch"] == 7
    assert reply["download"]["solvers"]["max_seq_len"] == longest


def test_does_not_fit_says_by_how_much_and_how_many_gpus() -> None:
    fields = {**SERVE, "batch_size": "16"}
    reply = page(fields)
    need = reply["total_bytes"]
    short = need - BUDGET
    assert short > 0
    assert f'data-fit="no" data-headroom="{-short}"' in reply["html"]["verdict"]
    assert f"{human(short)} more than the GPU has" in reply["html"]["verdict"]
    scenario = parse({**reply["download"]["scenario"]})
    plan = min_gpus(scenario, BUDGET, "rtx-4090")
    assert plan is not None
    assert f'data-solver="min_gpus" data-value="{plan.num_gpus}"' in reply["html"]["solvers"]


def test_no_gpu_asks_for_one() -> None:
    reply = page({**SERVE, "gpu": ""})
    assert reply["html"]["verdict"] == (
        '<p class="verdict" data-fit="none">Pick a GPU to see whether this fits.</p>'
    )
    assert reply["html"]["solvers"].startswith('<p class="solvers-none">')
    assert reply["download"]["gpu"] is None
    assert reply["html"]["suggestions"] == ""  # nothing to change without a GPU to fit


def test_suggestions_carry_page_field_changes_that_apply() -> None:
    """Each button's data-apply holds page fields; applying one gives the saving shown."""
    fields = {**DEFAULT_FIELDS, "gpu": "t4", "batch_size": "256", "seq_len": "512"}
    reply = page(fields)
    items = re.findall(
        r'<li data-key="([\w-]+)" data-saved="(\d+)" data-risk="(\w+)"[^>]*>.*?'
        r'data-apply="([^"]+)"',
        reply["html"]["suggestions"],
    )
    assert items
    order = ["none", "low", "medium", "high"]
    ranks = [(order.index(risk), -int(saved)) for _, saved, risk, _ in items]
    assert ranks == sorted(ranks)
    for _, saved, _, apply in items:
        changes = json.loads(unescape(apply))
        assert all(isinstance(v, str) for v in changes.values())
        assert set(changes) <= set(FIELDS)
        after = page({**fields, **changes})
        assert after["total_bytes"] == reply["total_bytes"] - int(saved)


def test_units_switch_applies_everywhere() -> None:
    """4,794,973,004 B / 2^30 = 4.4656 GiB; weights 440,000,000 B / 2^20 = 419.6 MiB."""
    gb = page({**DEFAULT_FIELDS, "gpu": "rtx-4090"})
    gib = page({**DEFAULT_FIELDS, "gpu": "rtx-4090", "units": "gib"})
    assert (gb["total_text"], gib["total_text"]) == ("4.79 GB", "4.47 GiB")
    assert gib["total_detail"] == "4,794,973,004 bytes; tensors peak at 3.55 GiB in the forward"
    html = gib["html"]
    assert "Memory (GiB)" in html["table"]
    assert (
        '<th scope="row"><a href="#what-weights">Model weights</a></th><td>419.6</td><td>0.41</td>'
        in html["table"]
    )
    assert "Model weights 419.6 MiB (9.2%)" in html["capacity"]  # 440.0 / 4,795.0 MB
    # 4,794,973,004 B of 21.6 GiB (24 GiB usable less 10%): 4.47 GiB of 21.60 GiB
    assert re.sub("<[^>]+>", "", html["headline"]) == "Fits: 4.47 GiB of 21.60 GiB"
    assert "Memory (GiB)" in html["plot"]
    # 10% headroom by default: 24 GiB usable, 21.6 GiB to fill
    assert "(24.00 GiB usable; 21.60 GiB after keeping 10% free)" in html["verdict"]
    assert "(25.77 GB usable; 23.19 GB after keeping 10% free)" in gb["html"]["verdict"]
    assert "= 419.6 MiB" in html["formula"]
    assert "<td>3.55 GiB</td>" in html["phases"]
    short = page({**DEFAULT_FIELDS, "gpu": "t4", "units": "gib", "batch_size": "256"})
    assert re.search(r"saves [\d.]+ (GiB|MiB)", short["html"]["suggestions"])
    for name in (
        "headline",
        "capacity",
        "table",
        "plot",
        "verdict",
        "formula",
        "phases",
        "suggestions",
    ):
        shown = re.sub(r'<span class="source">.*?</span>', "", html[name])  # citations
        assert not re.search(r"\d (GB|MB)\b", shown), name


def test_plot_spans_the_fit_and_marks_the_current_point() -> None:
    reply = page(SERVE)
    root = ElementTree.fromstring(reply["html"]["plot"])
    assert root.get("role") == "img"
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "plot-tick"]
    assert ticks == ["0", "10", "20", "30", "40", "1", "5", "10"]  # GB up, batch across
    gpu = [
        list(t.itertext()) for t in root.iter(f"{SVG}text") if t.get("class") == "plot-gpu-label"
    ]
    assert gpu == [["NVIDIA GeForce RTX 4090", "25.77 GB usable"]]
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert desc.text is not None
    assert "at batch size 14;" in desc.text  # twice the largest batch that fits (7)
    assert "the current batch size, 4, needs 21.95 GB" in desc.text
    assert "up to 7 of those plotted fit" in desc.text
    seq = page({**SERVE, "plot": "seq_len"})
    assert "Sequence length (tokens)" in seq["html"]["plot"]


Box = tuple[float, float, float, float]  # left, top, right, bottom


def _text_box(text: ElementTree.Element, font: float) -> Box:
    """A text's box at 0.6 em a character (wider than sans-serif faces' average), from
    the cap height above the first baseline to the descenders under the last."""
    lines = text.findall(f"{SVG}tspan") or [text]
    width = max(len("".join(line.itertext())) for line in lines) * font * 0.6
    baselines = [float(line.get("y") or 0) for line in lines]
    if text.get("transform") == "rotate(-90)":  # the memory axis: x and y swap
        centre, baseline = -float(text.get("x") or 0), float(text.get("y") or 0)
        return (baseline - font, centre - width / 2, baseline + font / 4, centre + width / 2)
    x = float(text.get("x") or 0)
    left = {"end": x - width, "middle": x - width / 2}.get(text.get("text-anchor") or "", x)
    return (left, min(baselines) - font, left + width, max(baselines) + font / 4)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_the_gpu_label_is_clear_of_the_curve_the_point_and_the_axis_titles() -> None:
    """The hobbyist's Llama 3.1 8B served on an RTX 4090, plotted against the sequence:
    the label was one 58-character line (about 450 units at 13 × 0.6 a character, wider
    than the 400-unit plot) over the curve, the current point and the memory axis's
    title. Now every point of the curve (sampled along each segment) and the current
    point's dot stay outside its box, and its box overlaps no axis title, tick label or
    the dashed GPU line."""
    for axis in ("seq_len", "batch_size"):
        reply = page(
            {
                **DEFAULT_FIELDS,
                "describe": "fields",
                "preset": "llama-3.1-8b",
                "mode": "inference",
                "precision": "bf16",
                "batch_size": "1",
                "seq_len": "2048",
                "gpu": "rtx-4090",
                "plot": axis,
            }
        )
        root = ElementTree.fromstring(reply["html"]["plot"])
        texts = list(root.iter(f"{SVG}text"))
        (label,) = [t for t in texts if t.get("class") == "plot-gpu-label"]
        box = _text_box(label, float(label.get("font-size") or 0))
        assert box[0] >= 0  # inside the 400-unit viewBox
        assert box[2] <= 400
        others = [_text_box(t, 14) for t in texts if t is not label]
        assert not [b for b in others if _overlap(box, b)]
        line = root.find(f"{SVG}polyline")
        assert line is not None
        points = [tuple(map(float, p.split(","))) for p in (line.get("points") or "").split()]
        for (x0, y0), (x1, y1) in pairwise(points):
            for i in range(101):
                x, y = x0 + (x1 - x0) * i / 100, y0 + (y1 - y0) * i / 100
                assert not (box[0] - 2 <= x <= box[2] + 2 and box[1] - 2 <= y <= box[3] + 2)
        dot = root.find(f"{SVG}circle")
        assert dot is not None
        cx, cy, r = (float(dot.get(k) or 0) for k in ("cx", "cy", "r"))
        assert not _overlap(box, (cx - r, cy - r, cx + r, cy + r))
        gpu_line = root.find(f"{SVG}line[@class='plot-gpu']")
        assert gpu_line is not None
        assert not box[1] <= float(gpu_line.get("y1") or 0) <= box[3]
        assert list(label.itertext()) == [
            "NVIDIA GeForce RTX 4090",
            "less 10% headroom: 23.19 GB usable",
        ]


def test_plot_of_a_cnn_falls_back_to_the_batch() -> None:
    reply = page({**DEFAULT_FIELDS, "describe": "cnn", "cnn": "resnet50", "plot": "seq_len"})
    assert reply["ok"] is True
    assert ">Batch size</text>" in reply["html"]["plot"]


def test_sharded_total_is_per_gpu() -> None:
    reply = page(
        {
            **DEFAULT_FIELDS,
            "describe": "fields",
            "preset": "llama-3.1-8b",
            "num_gpus": "8",
            "sharding": "zero3",
            "precision": "amp_bf16",
        }
    )
    assert "DeepSpeed ZeRO-3 across 8 ranks" in reply["html"]["notes"]
    assert "figures are per rank." in reply["html"]["notes"]


def test_prerender_is_the_default_reply() -> None:
    assert prerender() == page(DEFAULT_FIELDS)
    assert prerender()["total_text"] == "4.79 GB"


def test_each_apply_button_names_its_change() -> None:
    """The page's status after Apply or Use repeats the button's data-label: the
    suggestion's own label or the solver's value, never the verb on the button."""
    reply = page({**DEFAULT_FIELDS, "gpu": "t4", "batch_size": "256"})
    items = re.findall(
        r'<span class="label">([^<]+)</span>.*?data-label="([^"]+)"', reply["html"]["suggestions"]
    )
    assert items
    assert all(shown == label for shown, label in items)
    # Llama 3.1 8B serving 4 × 4,096 tokens on an RTX 4090: the largest batch is 7 (see
    # the hand count above), which its Use button sets.
    solvers = re.findall(r'data-label="([^"]+)"', page(SERVE)["html"]["solvers"])
    assert solvers[0] == "batch size 7"


def test_what_to_change_shows_only_where_it_does_not_fit() -> None:
    """BERT-base training at batch 32 (4.79 GB) fits a T4: nothing to change, so no list
    and no title; at batch 256 it does not, and the list comes under its title."""
    fits = page({**DEFAULT_FIELDS, "gpu": "t4"})
    assert 'data-fit="yes"' in fits["html"]["verdict"]
    assert fits["html"]["suggestions"] == ""
    short = page({**DEFAULT_FIELDS, "gpu": "t4", "batch_size": "256"})
    assert 'data-fit="no"' in short["html"]["verdict"]
    assert short["html"]["suggestions"].startswith('<h3 class="suggest-title">What to change')
    assert "<button" in short["html"]["suggestions"]
