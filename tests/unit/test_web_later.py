"""nnmem.web.later: the second bundle, unpacked on the first import that needs it."""

from __future__ import annotations

import importlib
import io
import lzma
import shutil
import sys
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nnmem.web.later import Later, fetch_later, fetch_later_from_js, unpack_now


def counted(bundle: bytes) -> tuple[Callable[[], bytes], list[int]]:
    """A loader of ``bundle``, and the list it adds a 1 to on each load."""
    loads: list[int] = []

    def load() -> bytes:
        loads.append(1)
        return bundle

    return load, loads


def packed(files: dict[str, str]) -> bytes:
    """A second bundle as build.py makes one: a zip compressed whole with xz."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return lzma.compress(buffer.getvalue())


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path holding the first half of a package, ``half_pkg``."""
    (tmp_path / "half_pkg").mkdir()
    (tmp_path / "half_pkg" / "__init__.py").write_text("")
    (tmp_path / "half_pkg" / "here.py").write_text("WHERE = 'first'\n")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, Later)]
    for name in [m for m in sys.modules if m == "half_pkg" or m.startswith("half_pkg.")]:
        del sys.modules[name]


def test_the_bundle_comes_once_on_the_first_import_it_holds(folder: Path) -> None:
    load, loads = counted(
        packed({"half_pkg/rest/__init__.py": "", "half_pkg/rest/more.py": "N = 7\n"})
    )
    fetch_later(load, str(folder), "half_pkg")
    importlib.import_module("half_pkg.here")
    assert loads == []  # found on disk: nothing fetched
    assert importlib.import_module("half_pkg.rest.more").N == 7
    assert loads == [1]
    assert [f.unpacked for f in sys.meta_path if isinstance(f, Later)] == [True]
    with pytest.raises(ModuleNotFoundError, match=r"half_pkg\.nowhere"):
        importlib.import_module("half_pkg.nowhere")
    assert loads == [1]


def test_other_packages_never_fetch(folder: Path) -> None:
    def load() -> bytes:
        raise AssertionError("fetched for a module outside the package")

    fetch_later(load, str(folder), "half_pkg")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("not_half_pkg_at_all")


def test_a_failed_fetch_is_tried_again_on_the_next_import(folder: Path) -> None:
    answers = [OSError("the rest of the package could not be downloaded (HTTP 503)")]
    bundle = packed({"half_pkg/late.py": "WHERE = 'second'\n"})

    def load() -> bytes:
        if answers:
            raise answers.pop()
        return bundle

    fetch_later(load, str(folder), "half_pkg")
    with pytest.raises(OSError, match="HTTP 503"):
        importlib.import_module("half_pkg.late")
    assert importlib.import_module("half_pkg.late").WHERE == "second"


class _Uint8Array:
    """What Pyodide hands Python for a JavaScript Uint8Array: bytes by ``to_bytes``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def to_bytes(self) -> bytes:
        return self.data


def test_the_worker_loads_the_bundle_by_name_only_when_needed(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finder holds the bundle's name; the worker's nnmemLaterBundle (here a fake
    ``js`` module) is called on the first import that needs it, once, and a second
    fetch_later_from_js, as after a heap restored from a snapshot, leaves one finder."""
    bundle = packed({"half_pkg/late.py": "WHERE = 'second'\n"})
    asked: list[str] = []

    def later_bundle(name: str) -> _Uint8Array:
        asked.append(name)
        return _Uint8Array(bundle)

    monkeypatch.setitem(sys.modules, "js", types.SimpleNamespace(nnmemLaterBundle=later_bundle))
    fetch_later_from_js("assets/nnmem-later-x.zip.xz", str(folder), "half_pkg")
    fetch_later_from_js("assets/nnmem-later-x.zip.xz", str(folder), "half_pkg")
    assert sum(isinstance(f, Later) for f in sys.meta_path) == 1
    assert asked == []
    assert importlib.import_module("half_pkg.late").WHERE == "second"
    assert asked == ["assets/nnmem-later-x.zip.xz"]
    assert sum(isinstance(f, Later) for f in sys.meta_path) == 1


def test_unpacking_at_once_leaves_a_finder_that_never_loads(folder: Path) -> None:
    def load() -> bytes:
        raise AssertionError("fetched although unpacked already")

    fetch_later(load, str(folder), "half_pkg")
    unpack_now(packed({"half_pkg/late.py": "WHERE = 'second'\n"}), str(folder), "half_pkg")
    assert [f.unpacked for f in sys.meta_path if isinstance(f, Later)] == [True]
    assert importlib.import_module("half_pkg.late").WHERE == "second"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("half_pkg.nowhere")


@pytest.fixture
def zipped(tmp_path: Path) -> Iterator[Path]:
    """The first half of ``zip_pkg`` imported from a zip on sys.path, as the page imports
    the first bundle; the second is unpacked into ``tmp_path / "site"``."""
    archive = tmp_path / "first.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zip_pkg/__init__.py", "")
        z.writestr("zip_pkg/sub/__init__.py", "")
        z.writestr("zip_pkg/sub/here.py", "WHERE = 'first'\n")
    (tmp_path / "site").mkdir()
    sys.path.insert(0, str(archive))
    yield tmp_path / "site"
    sys.path.remove(str(archive))
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, Later)]
    for name in [m for m in sys.modules if m == "zip_pkg" or m.startswith("zip_pkg.")]:
        del sys.modules[name]


def test_the_second_half_is_found_beside_a_zipped_first(zipped: Path) -> None:
    """A package of the zip lists only the zip in its ``__path__``: the finder finds the
    second bundle's modules under it, and in the second's own packages, in folders."""
    bundle = packed(
        {
            "zip_pkg/sub/late.py": "WHERE = 'second'\n",
            "zip_pkg/rest/__init__.py": "",
            "zip_pkg/rest/more.py": "N = 7\n",
        }
    )
    fetch_later(lambda: bundle, str(zipped), "zip_pkg")
    assert importlib.import_module("zip_pkg.sub.here").WHERE == "first"
    late = importlib.import_module("zip_pkg.sub.late")
    assert late.WHERE == "second"
    assert late.__file__ == str(zipped / "zip_pkg" / "sub" / "late.py")
    assert importlib.import_module("zip_pkg.rest.more").N == 7


def test_a_restored_heap_loads_the_second_half_again(zipped: Path) -> None:
    """After a heap restored from a snapshot the files are gone: fetch_later again (as the
    worker does) loads the bundle on the next import of a module of it."""
    load, loads = counted(
        packed({"zip_pkg/sub/late.py": "A = 1\n", "zip_pkg/sub/later.py": "B = 2\n"})
    )
    fetch_later(load, str(zipped), "zip_pkg")
    assert importlib.import_module("zip_pkg.sub.late").A == 1
    shutil.rmtree(zipped / "zip_pkg")  # the file system of a fresh page
    fetch_later(load, str(zipped), "zip_pkg")
    assert importlib.import_module("zip_pkg.sub.later").B == 2
    assert loads == [1, 1]
