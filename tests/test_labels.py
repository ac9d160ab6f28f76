"""Every option the calculator offers, and every option label a page prints, is the label
its own option type defines (``nnmem.scenario.OPTION_LABELS``).

One shared table keyed by ``StrEnum`` members once let equal values of different types
overwrite each other: the checkpointing menu offered "None (each GPU holds everything)"
and the guide printed "Gradient checkpointing | Full fine-tuning".
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

import build
import content_helpers
from nnmem.scenario import OPTION_LABELS, SPECS
from nnmem.validation import ChoiceSpec
from nnmem.web.form import FORM_SECTIONS, VIEW_FIELDS

ROOT = Path(__file__).resolve().parents[1]
CHOICES = {
    key: spec for key, spec in SPECS.items() if isinstance(spec, ChoiceSpec) and key != "model"
}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("site") / "_site"
    build.build(out)
    return (out / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("site-guide") / "_site"
    build.build(out)
    raw = (out / "guide.html").read_text(encoding="utf-8")
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " | ", raw)))


def own_label(key: str, value: str) -> str:
    spec = CHOICES[key]
    return OPTION_LABELS[spec.enum][spec.enum(value)]


def test_every_form_option_has_its_own_types_label() -> None:
    fields = [f for section in FORM_SECTIONS for f in section.fields] + list(VIEW_FIELDS)
    checked = 0
    for field in fields:
        if field.key not in CHOICES:
            continue
        for value, label in field.options:
            assert label == own_label(field.key, value), (field.key, value, label)
            checked += 1
    assert checked >= 30


def test_every_rendered_select_option_has_its_own_types_label(index: str) -> None:
    checked = 0
    for key in CHOICES:
        select = re.search(rf'<select id="f-{key}"[^>]*>(.*?)</select>', index, re.S)
        if select is None:
            continue
        for value, label in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select[1]):
            assert html.unescape(label) == own_label(key, value), (key, value, label)
            checked += 1
    assert checked >= 30
    assert (
        "None (each GPU holds everything)"
        not in re.search(r'<select id="f-checkpointing".*?</select>', index, re.S)[0]
    )  # type: ignore[index]


def test_every_label_a_page_asks_for_is_its_own_types() -> None:
    """Each ``label(value, type)`` in content/*.md with literal arguments, and every option
    of the types the pages print, gives that type's own label."""
    for page in sorted((ROOT / "content").glob("*.md")):
        for value, enum in re.findall(r'label\("(\w+)"(?:, "(\w+)")?\)', page.read_text()):
            key = enum or "precision"
            assert content_helpers.label(value, key) == own_label(key, value), (page.name, value)
    for key in ("checkpointing", "optimizer", "precision", "sharding", "finetune"):
        for member in CHOICES[key].enum:
            assert content_helpers.label(member.value, key) == own_label(key, member.value)


def test_the_guide_prints_checkpointing_labels_not_fine_tuning_ones(guide: str) -> None:
    rows = re.findall(r"Gradient checkpointing \| \| ([^|]+?) \|", guide)
    assert [r.strip() for r in rows] == [
        own_label("checkpointing", c) for c in ("none", "selective", "full")
    ]
    assert "Full fine-tuning" not in " ".join(rows)
