"""A static file server on 127.0.0.1 with the MIME types Pyodide needs."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class QuietHandler(SimpleHTTPRequestHandler):
    """Serve files as GitHub Pages would type them, without request logging.

    A wrong type for .wasm or .mjs makes Pyodide hang rather than fail, so they are set
    here explicitly instead of trusting the machine's mime.types.
    """

    extensions_map = {  # noqa: RUF012 - the base class declares it as a plain dict
        **SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(root: Path) -> ThreadingHTTPServer:
    """Serve ``root`` on a free port of 127.0.0.1 from a daemon thread; shut it down after."""
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
