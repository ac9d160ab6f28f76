"""site_src/static/hub.js under Node's test runner, against a fake Hub (no network).

Covers a single-file and a sharded repository, a gated one (401, with and without a
token), a missing file, a rate limit, a slow reply, a network failure, a server that
ignores Range, and a dropped file read in growing slices.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_hub_js() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node is needed for the JavaScript tests: see README.md")
    run = subprocess.run(
        [node, "--test", "tests/js/hub.test.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "# pass 8" in output, output
    assert "# fail 0" in output, output
