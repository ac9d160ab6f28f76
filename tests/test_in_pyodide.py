"""The unit tests and doctests again, inside real Pyodide (Python 3.14) under Node.

The browser runs nnmem on Pyodide's Python, not on the host's 3.11, so every unit test
must pass on both.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "pyodide" / "run_pytest.mjs"


def test_unit_tests_pass_inside_pyodide() -> None:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "pyodide").is_dir():
        pytest.fail("Node and the npm Pyodide are needed: run `make setup`")
    if not list((ROOT / ".pyodide-wheels").glob("pytest-*.whl")):
        pytest.fail("pytest wheels for Pyodide are missing: run `make setup`")
    run = subprocess.run(
        [node, str(RUNNER), "-q", "tests/unit", "nnmem"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "running inside Pyodide: Python 3.14" in output
    assert "on emscripten" in output
    passed = re.search(r"(\d+) passed", output)
    assert passed is not None, output
    assert int(passed.group(1)) > 100, output
