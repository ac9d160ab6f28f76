"""The README documents every scenario key the schema accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnmem.scenario import KNOWN_KEYS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", KNOWN_KEYS)
def test_schema_key_is_documented(key: str) -> None:
    assert f"`{key}`" in README
