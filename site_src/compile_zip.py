"""A zip of Python modules with each module's source replaced by its bytecode.

Run by site_src/compile_pyc.mjs inside the Python that will import the modules
(Pyodide's, under Node), since a ``.pyc`` is only read by the Python version that wrote
it; build.py ships the results as the page's python_stdlib.zip and in the nnmem bundles.
Only the standard library is used: this file runs in CPython's tests too.

zipimport looks for ``name.pyc`` before ``name.py`` (``_zip_searchorder`` in
Lib/zipimport.py) and, finding no source beside a timestamp ``.pyc``, runs its code
without a staleness check (``_unmarshal_code``); in a folder, a ``.pyc`` with no source
beside it is run by ``SourcelessFileLoader``. Either way importing it is a
``marshal.loads`` where the source was a ``compile``.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import marshal
import zipfile
from types import CodeType

# The header of a timestamp-checked .pyc (PEP 552): the magic number, flags 0, then the
# source's mtime and size, left 0: there is no source in the zip to check them against.
HEADER = importlib.util.MAGIC_NUMBER + bytes(12)


def _is_dataclass(node: ast.ClassDef) -> bool:
    """Whether the class is under ``@dataclass`` or ``@dataclass(...)``."""
    for decorator in node.decorator_list:
        called = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
        if name == "dataclass":
            return True
    return False


class _Docstrings(ast.NodeTransformer):
    """Drop the docstrings of a module, its classes and functions, and the annotations
    of the functions' arguments and results (those of a class's fields stay: dataclasses
    read them). Nothing on the page reads them; the doctests run in the repository.

    A dataclass keeps a one-character docstring instead: without one,
    ``dataclasses._process_class`` writes the class's signature into ``__doc__`` with
    ``inspect.signature``, 11 ms of the page's import of nnmem in Pyodide."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            for argument in (
                *arguments.posonlyargs,
                *arguments.args,
                *arguments.kwonlyargs,
                *filter(None, (arguments.vararg, arguments.kwarg)),
            ):
                argument.annotation = None
            node.returns = None
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.ClassDef) and _is_dataclass(node):
            node.body.insert(0, ast.Expr(ast.Constant(".")))
        return node


def bare_tree(source: str | bytes) -> ast.Module:
    """The module's tree less its docstrings and its functions' annotations (a
    dataclass's docstring is "."); every node left keeps its line in ``source``, so a
    traceback names the lines of the file in the repository.

    >>> tree = bare_tree("'D.'\\n\\ndef f(x: int) -> int:  # why\\n    'L.'\\n    return x\\n")
    >>> print(ast.unparse(tree))
    def f(x):
        return x
    >>> tree.body[0].body[0].lineno
    5
    """
    return ast.fix_missing_locations(_Docstrings().visit(ast.parse(source)))


def compile_module(source: str | bytes, filename: str, bare: bool = False) -> CodeType:
    """The code of a module, as the import system would compile its source, or from
    its ``bare_tree`` where ``bare``."""
    tree = bare_tree(source) if bare else source
    return compile(tree, filename, "exec", dont_inherit=True)


def compile_zip(source: bytes, mount: str, bare: bool = False) -> bytes:
    """``source``, a zip, with every ``.py`` entry compiled to a ``.pyc`` entry of the
    same date and compression (deflated at level 9, or stored), from its ``bare_tree``
    where ``bare``; other entries are copied as they are. Code objects name their file
    ``mount/<entry>``, the path the source would have been compiled from once the zip's
    files are at ``mount`` (as a zip on ``sys.path``, or unpacked into a folder), so
    tracebacks read as before (line numbers kept).

    >>> import io, zipfile
    >>> buffer = io.BytesIO()
    >>> with zipfile.ZipFile(buffer, "w") as z:
    ...     z.writestr("m.py", "'''Doc.'''\\nx = 6 * 7\\n")
    ...     z.writestr("data.txt", "kept")
    >>> with zipfile.ZipFile(io.BytesIO(compile_zip(buffer.getvalue(), "/lib/z.zip"))) as z:
    ...     names, pyc, text = z.namelist(), z.read("m.pyc"), z.read("data.txt")
    >>> names, text, pyc[:16] == HEADER
    (['m.pyc', 'data.txt'], b'kept', True)
    >>> code = marshal.loads(pyc[16:])
    >>> space = {}
    >>> exec(code, space)
    >>> code.co_filename, space["x"], space["__doc__"]
    ('/lib/z.zip/m.py', 42, 'Doc.')
    >>> with zipfile.ZipFile(io.BytesIO(compile_zip(buffer.getvalue(), "/s", bare=True))) as z:
    ...     exec(marshal.loads(z.read("m.pyc")[16:]), space := {})
    >>> space["x"], space.get("__doc__")
    (42, None)
    """
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(source)) as archive,
        zipfile.ZipFile(out, "w") as compiled,
    ):
        for info in archive.infolist():
            data = archive.read(info)
            if not info.filename.endswith(".py"):
                compiled.writestr(info, data)
                continue
            code = compile_module(data, f"{mount}/{info.filename}", bare)
            entry = zipfile.ZipInfo(info.filename + "c", info.date_time)
            entry.external_attr = info.external_attr
            compiled.writestr(
                entry,
                HEADER + marshal.dumps(code),
                compress_type=info.compress_type,
                compresslevel=9 if info.compress_type == zipfile.ZIP_DEFLATED else None,
            )
    return out.getvalue()
