"""Golden files: rendered HTML and SVG compared byte for byte, rewritten only on request.

Rewrite them with ``pytest --update-golden`` or ``NNMEM_UPDATE_GOLDEN=1 pytest``, then
read the diff before committing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/unit/golden/* from the current output instead of comparing",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare ``text`` with golden/<name>, or rewrite it under --update-golden."""
    update = bool(request.config.getoption("--update-golden")) or (
        os.environ.get("NNMEM_UPDATE_GOLDEN") == "1"
    )

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if update:
            path.write_text(text, encoding="utf-8")
            return
        assert path.exists(), f"no golden file {name}: run pytest --update-golden"
        assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"

    return check
