"""A zip of Python modules with each module's source replaced by its bytecode.

Run by site_src/compile_stdlib.mjs inside the Python that will import the modules
(Pyodide's, under Node), since a ``.pyc`` is only read by the Python version that wrote
it; build.py ships the result as the page's python_stdlib.zip. Only the standard library
is used: this file runs in CPython's tests too.

zipimport looks for ``name.pyc`` before ``name.py`` (``_zip_searchorder`` in
Lib/zipimport.py) and, finding no source beside a timestamp ``.pyc``, runs its code
without a staleness check (``_unmarshal_code``): importing it is a ``marshal.loads``
where the source was a ``compile``.
"""

from __future__ import annotations

import importlib.util
import io
import marshal
import zipfile

# The header of a timestamp-checked .pyc (PEP 552): the magic number, flags 0, then the
# source's mtime and size, left 0: there is no source in the zip to check them against.
HEADER = importlib.util.MAGIC_NUMBER + bytes(12)


def compile_zip(source: bytes, mount: str) -> bytes:
    """``source``, a zip, with every ``.py`` entry compiled to a ``.pyc`` entry of the
    same date; other entries are copied as they are. Code objects name their file
    ``mount/<entry>``, the path the source would have been compiled from once the zip is
    on ``sys.path`` at ``mount``, so tracebacks read as before (line numbers kept).

    >>> import io, zipfile
    >>> buffer = io.BytesIO()
    >>> with zipfile.ZipFile(buffer, "w") as z:
    ...     z.writestr("m.py", "x = 6 * 7\\n")
    ...     z.writestr("data.txt", "kept")
    >>> with zipfile.ZipFile(io.BytesIO(compile_zip(buffer.getvalue(), "/lib/z.zip"))) as z:
    ...     names, pyc, text = z.namelist(), z.read("m.pyc"), z.read("data.txt")
    >>> names, text, pyc[:16] == HEADER
    (['m.pyc', 'data.txt'], b'kept', True)
    >>> code = marshal.loads(pyc[16:])
    >>> space = {}
    >>> exec(code, space)
    >>> code.co_filename, space["x"]
    ('/lib/z.zip/m.py', 42)
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
            code = compile(data, f"{mount}/{info.filename}", "exec", dont_inherit=True)
            entry = zipfile.ZipInfo(info.filename + "c", info.date_time)
            entry.external_attr = info.external_attr
            compiled.writestr(
                entry,
                HEADER + marshal.dumps(code),
                compress_type=zipfile.ZIP_DEFLATED,
                compresslevel=9,
            )
    return out.getvalue()
