"""site_src/nnmem_start.py: the page's import of nnmem with its dataclasses' methods
compiled at build. Runs in CPython and in Pyodide, whose dataclasses write one text per
class (3.13 on) where CPython 3.11 writes one per method: the table works the same."""

from __future__ import annotations

import dataclasses
import importlib.util
import marshal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, ModuleType

import pytest

START = Path(__file__).resolve().parents[2] / "site_src" / "nnmem_start.py"

CLASSES = """
from dataclasses import dataclass, field

@dataclass(frozen=True, order=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default=(), compare=False)

@dataclass
class Box:
    name: str
    size: float = 1.5
"""
OTHER = """
from dataclasses import dataclass

@dataclass
class Other:
    label: str
    weight: int = 3
"""


def _start() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nnmem_start", START)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path for test modules, which are forgotten afterwards."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _inner_codes(table: dict[str, CodeType]) -> list[CodeType]:
    """The functions' code inside each table entry (the methods dataclasses makes)."""
    found = []
    for code in table.values():
        for outer in code.co_consts:
            if isinstance(outer, CodeType):
                found += [c for c in outer.co_consts if isinstance(c, CodeType)]
    return found


def test_recorded_methods_are_the_texts_compiled_as_exec_compiles_them(modules: Path) -> None:
    (modules / "recorded_a.py").write_text(CLASSES)
    start = _start()
    table = marshal.loads(start.record(["recorded_a"]))
    assert table
    for text, code in table.items():
        assert "__create_fn__" in text
        assert code == compile(text, "<string>", "exec", dont_inherit=True)
        assert code.co_filename == "<string>"
    assert not hasattr(dataclasses, "exec")


def test_a_class_made_from_the_table_takes_its_code_and_behaves_the_same(modules: Path) -> None:
    """The same classes in another module: every text is found, every method's code is
    the table's, and the instances compare, print, hash and freeze as without it."""
    (modules / "recorded_b.py").write_text(CLASSES)
    (modules / "tabled_b.py").write_text(CLASSES)
    start = _start()
    table = marshal.loads(start.record(["recorded_b"]))
    assert start.import_with_table(table, ["tabled_b"]) == []
    plain, tabled = sys.modules["recorded_b"], sys.modules["tabled_b"]
    inner = _inner_codes(table)
    assert any(tabled.Point.__init__.__code__ is code for code in inner)
    assert any(tabled.Box.__eq__.__code__ is code for code in inner)
    assert not any(plain.Point.__init__.__code__ is code for code in inner)
    p, q = tabled.Point(1, 2, ("a",)), tabled.Point(1, 3)
    assert repr(p) == "Point(x=1, y=2, tags=('a',))"
    assert p == tabled.Point(1, 2)
    assert p < q
    assert hash(p) == hash(tabled.Point(1, 2, ("b",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[misc]
    assert repr(tabled.Box("b")) == repr(plain.Box("b")) == "Box(name='b', size=1.5)"
    assert tabled.Box("b") == tabled.Box("b", 1.5) != tabled.Box("b", 2)


def test_a_text_the_table_lacks_is_compiled_as_before(modules: Path) -> None:
    (modules / "recorded_c.py").write_text(CLASSES)
    (modules / "other_c.py").write_text(OTHER)
    start = _start()
    table = marshal.loads(start.record(["recorded_c"]))
    missed = start.import_with_table(table, ["other_c"])
    assert missed
    assert all("label" in text or "weight" in text for text in missed)
    other = sys.modules["other_c"].Other
    assert repr(other("w")) == "Other(label='w', weight=3)"
    assert not any(other.__init__.__code__ is code for code in _inner_codes(table))


def test_exec_is_dataclasses_own_again_after_a_failed_import(modules: Path) -> None:
    (modules / "broken_d.py").write_text(CLASSES + "\nraise RuntimeError('broken')\n")
    start = _start()
    with pytest.raises(RuntimeError, match="broken"):
        start.import_with_table({}, ["broken_d"])
    assert not hasattr(dataclasses, "exec")
