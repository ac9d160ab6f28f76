"""The page's first import of nnmem, with the methods that dataclasses writes for each
class already compiled.

``@dataclass`` writes the source of a class's ``__init__``, ``__repr__``, ``__eq__``
and the rest as text and compiles it with ``exec`` (``_FuncBuilder.add_fns_to_class``
in Lib/dataclasses.py; ``_create_fn`` before Python 3.13). That is the compiler run
again on every visit for the same classes: 27 of them while the page's worker imports
nnmem, about half of that import in Pyodide under Node (40-80 ms of 110-170 ms).

The text depends only on the class, so build.py runs :func:`record` once, in Pyodide,
on the first bundle, and ships what it returns in the bundle as ``TABLE``: each text
with its code, compiled as ``exec`` would compile it. The worker then imports nnmem
through :func:`import_with_table`, which shadows ``exec`` in the dataclasses module
while the import runs: a text found in the table runs its code, any other text is
compiled as before, so a class the table does not know (a changed module, a later
bundle) is made exactly as without it.

This module has no ``from __future__`` import on purpose: ``exec`` of a text inherits
the future flags of the function that calls it, and dataclasses' own module has none.
"""

import dataclasses
import importlib
import marshal
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import CodeType
from typing import Any

# The table's file, beside this module in the first bundle's zip.
TABLE = "nnmem_start.methods"
# What the worker imports first: the page's door and the second bundle's finder.
MODULES = ("nnmem.web.later", "nnmem.web")


def compiled(text: str) -> CodeType:
    """``text`` compiled as ``exec(text, ...)`` compiles it from dataclasses' module:
    file name "<string>", no future flags."""
    return compile(text, "<string>", "exec", dont_inherit=True)


@contextmanager
def _dataclasses_exec(run: Callable[[str, dict[str, Any], dict[str, Any]], None]) -> Iterator[None]:
    """Have dataclasses call ``run`` where it calls ``exec``, until the block ends."""
    dataclasses.exec = run  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]


def record(modules: Sequence[str] = MODULES) -> bytes:
    """Import ``modules`` (none imported yet) and return, marshalled, every method text
    dataclasses compiled meanwhile, each with its code: an empty table misses them all."""
    return marshal.dumps({text: compiled(text) for text in import_with_table({}, modules)})


def import_with_table(table: Mapping[str, CodeType], modules: Sequence[str] = MODULES) -> list[str]:
    """Import ``modules`` with the methods ``table`` holds taken from it; return the
    texts it did not hold, compiled as ``exec`` always did."""
    missed: list[str] = []

    def run(text: str, globals: dict[str, Any], locals: dict[str, Any]) -> None:
        code = table.get(text)
        if code is None:
            missed.append(text)
            code = compiled(text)
        exec(code, globals, locals)

    with _dataclasses_exec(run):
        for name in modules:
            importlib.import_module(name)
    return missed


def start() -> list[str]:
    """The worker's import of nnmem, with the table shipped beside this module, in the
    bundle's zip (none: every text is compiled); returns the texts the table missed."""
    table: dict[str, CodeType] = {}
    assert __spec__ is not None
    assert __spec__.loader is not None
    path = os.path.join(os.path.dirname(__file__), TABLE)
    try:
        raw = __spec__.loader.get_data(path)  # type: ignore[attr-defined]
    except OSError:
        pass
    else:
        table = marshal.loads(raw)
    return import_with_table(table)
