"""The page's second bundle: the modules a first visit never imports, fetched on the
first import of one of them.

The site ships the modules a page can import in two bundles (see ``LATER`` in
build.py): the first holds what the calculator's answers import, the second the step
chart, the model reader, Compare, Import JSON, the tools, the serving runtimes and the
CNNs. The page's Python imports the first from its zip, on ``sys.path`` (worker.js); the
second is a zip compressed whole with xz, unpacked into folders. :func:`fetch_later` puts
a finder at the end of ``sys.meta_path``: when a module of the package is found nowhere
else, the finder has the second bundle loaded, unpacks it and finds the module in its
folder, which a package of the first bundle does not list in its ``__path__`` (its zip).
In the page's worker :func:`fetch_later_from_js` loads it through the worker's
``nnmemLaterBundle``, a synchronous request, called only then: Python holds no
JavaScript object meanwhile, which Pyodide requires of a heap it keeps as a memory
snapshot (see worker.js).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType


def unpack(packed: bytes, target: str) -> None:
    """Extract a bundle into ``target`` and let the import system see its files."""
    # Imported here: a first visit, which needs no second bundle, spares their import.
    import io
    import lzma
    import zipfile

    # The names are ASCII: read as UTF-8, they spare the import of the cp437 codec.
    with zipfile.ZipFile(io.BytesIO(lzma.decompress(packed)), metadata_encoding="utf-8") as z:
        z.extractall(target)
    # The finders of the folders there listed them before these files came: drop them, and
    # new ones list them again. (importlib.invalidate_caches would too, but it imports
    # importlib.metadata, which the page never needs.)
    for folder in [path for path in sys.path_importer_cache if path.startswith(target)]:
        del sys.path_importer_cache[folder]


class Later(MetaPathFinder):
    """Finds the modules of ``package`` that no other finder knows in their folders under
    ``target``, unpacking there the bundle ``load`` returns on the first such import
    (none where ``unpacked``)."""

    def __init__(
        self, load: Callable[[], bytes], target: str, package: str, unpacked: bool = False
    ) -> None:
        self.load = load
        self.target = target
        self.package = package
        self.unpacked = unpacked

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith(f"{self.package}."):
            return None
        if not self.unpacked:
            # A failed load raises here and leaves the finder waiting, so a later import
            # tries again; the bundle is unpacked once.
            unpack(bytes(self.load()), self.target)
            self.unpacked = True
        folder = os.path.join(self.target, *fullname.split(".")[:-1])
        return PathFinder.find_spec(fullname, [folder], target)


def fetch_later(load: Callable[[], bytes], target: str, package: str = "nnmem") -> None:
    """Unpack the bundle ``load`` returns into ``target`` when a module of ``package``
    that no other finder knows is first imported.

    >>> import io, lzma, tempfile, zipfile
    >>> folder = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(folder, "demo_pkg"))
    >>> open(os.path.join(folder, "demo_pkg", "__init__.py"), "w").close()
    >>> archive = io.BytesIO()
    >>> with zipfile.ZipFile(archive, "w") as z:
    ...     z.writestr("demo_pkg/rest.py", "ANSWER = 42\\n")
    >>> loads = []
    >>> def load():
    ...     loads.append(1)
    ...     return lzma.compress(archive.getvalue())
    >>> sys.path.insert(0, folder)
    >>> fetch_later(load, folder, "demo_pkg")
    >>> from demo_pkg.rest import ANSWER
    >>> ANSWER, len(loads)
    (42, 1)
    >>> import demo_pkg.missing
    Traceback (most recent call last):
    ...
    ModuleNotFoundError: No module named 'demo_pkg.missing'
    >>> len(loads), sys.path.pop(0) == folder
    (1, True)
    """
    # One finder per package: a heap restored from a snapshot may hold one already.
    stop_fetching(package)
    sys.meta_path.append(Later(load, target, package))


def stop_fetching(package: str = "nnmem") -> None:
    """Drop the finders :func:`fetch_later` put in place for ``package``."""
    sys.meta_path[:] = [
        f for f in sys.meta_path if not (isinstance(f, Later) and f.package == package)
    ]


def unpack_now(packed: bytes, target: str, package: str = "nnmem") -> None:
    """Extract the second bundle into ``target`` at once, with the finder that finds its
    modules there and never loads it again."""
    unpack(packed, target)
    stop_fetching(package)
    sys.meta_path.append(Later(_unpacked, target, package, unpacked=True))


def _unpacked() -> bytes:
    raise AssertionError("the second bundle is unpacked already")


def load_from_js(name: str) -> bytes:
    """The bundle at ``name``, as the worker's ``nnmemLaterBundle`` downloads it."""
    import js  # type: ignore[import-not-found]  # Pyodide's module of the worker's globals

    return bytes(js.nnmemLaterBundle(name).to_bytes())


def fetch_later_from_js(name: str, target: str, package: str = "nnmem") -> None:
    """:func:`fetch_later` with the bundle at ``name`` loaded by the worker's
    ``nnmemLaterBundle`` on the first import that needs it (:func:`load_from_js`); the
    finder holds the name, a string, and no JavaScript object.

    >>> import types
    >>> asked = []
    >>> class Bytes:
    ...     def to_bytes(self):
    ...         return b"packed"
    >>> def bundle(name):
    ...     asked.append(name)
    ...     return Bytes()
    >>> real = sys.modules.get("js")  # Pyodide's own, where the doctests run there
    >>> sys.modules["js"] = types.SimpleNamespace(nnmemLaterBundle=bundle)
    >>> fetch_later_from_js("assets/nnmem-later-0123456789.zip.xz", "/nowhere", "demo_js")
    >>> fetch_later_from_js("assets/nnmem-later-0123456789.zip.xz", "/nowhere", "demo_js")
    >>> finders = [f for f in sys.meta_path if isinstance(f, Later) and f.package == "demo_js"]
    >>> len(finders), asked
    (1, [])
    >>> finders[0].load(), asked
    (b'packed', ['assets/nnmem-later-0123456789.zip.xz'])
    >>> stop_fetching("demo_js")
    >>> if real is None: del sys.modules["js"]
    ... else: sys.modules["js"] = real
    >>> [f for f in sys.meta_path if isinstance(f, Later) and f.package == "demo_js"]
    []
    """
    fetch_later(partial(load_from_js, name), target, package)
