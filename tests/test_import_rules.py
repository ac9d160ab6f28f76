"""The import rules of the package, read from the source with ``ast``.

- ``nnmem`` imports only the standard library and itself: never ``build``,
  ``content_helpers``, ``benchmarks``, ``jinja2``, ``torch`` or any other package. The
  one exception is Pyodide's own ``js`` module (the worker's globals), inside a function
  of ``nnmem.web``, the browser's adapter, where it always exists.
- The engine (everything outside ``nnmem.render``, ``nnmem.web`` and ``nnmem.cli``) never
  imports ``nnmem.render`` or ``nnmem.web``; ``nnmem.render`` never imports ``nnmem.web``.
- No two modules of ``nnmem`` import each other, directly or round a longer loop, at the
  top of the file or inside a function.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ("nnmem.render", "nnmem.web", "nnmem.cli")
# Pyodide's built-in modules, which only the browser's adapter may import.
PYODIDE_MODULES = {"js"}


def module_name(path: Path, root: Path) -> str:
    """``nnmem/web/tools/__init__.py`` -> ``nnmem.web.tools``."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path, modules: set[str]) -> list[tuple[int, str]]:
    """Every module a file imports, with its line: ``from a import b`` is ``a.b`` where
    that is a module of ``modules``, else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((node.lineno, sub if sub in modules else base))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    """Each import in ``root/nnmem`` that breaks a rule, as ``path:line: why``."""
    files = sorted((root / "nnmem").rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    found = []
    graph: dict[str, set[str]] = {}
    for path in files:
        here = module_name(path, root)
        rel = path.relative_to(root)
        for line, name in imports(path, root, modules):
            top = name.partition(".")[0]
            if top != "nnmem":
                browser = _within(here, "nnmem.web") and top in PYODIDE_MODULES
                if top not in sys.stdlib_module_names and top != "__future__" and not browser:
                    found.append(f"{rel}:{line}: imports {name}, not the standard library")
                continue
            adapter = any(_within(here, a) for a in ADAPTERS)
            if not adapter and any(_within(name, a) for a in ("nnmem.render", "nnmem.web")):
                found.append(f"{rel}:{line}: the engine imports {name}")
            if _within(here, "nnmem.render") and _within(name, "nnmem.web"):
                found.append(f"{rel}:{line}: nnmem.render imports {name}")
            if name in modules and name != here:
                graph.setdefault(here, set()).add(name)
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return sorted(set(found))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop through each strongly connected group of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_package_keeps_the_import_rules() -> None:
    """Today's tree breaks no rule."""
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    ("path", "source", "why"),
    [
        ("nnmem/planted.py", "import torch\n", "imports torch, not the standard library"),
        ("nnmem/planted.py", "from jinja2 import Template\n", "imports jinja2"),
        ("nnmem/planted.py", "def f():\n    import build\n", "imports build"),
        ("nnmem/planted.py", "from nnmem.web import handle\n", "the engine imports nnmem.web"),
        ("nnmem/planted.py", "from nnmem import render\n", "the engine imports nnmem.render"),
        ("nnmem/render/planted.py", "import nnmem.web\n", "nnmem.render imports nnmem.web"),
        ("nnmem/terms.py", "from nnmem.estimate import estimate\n", "import cycle"),
    ],
)
def test_a_planted_import_is_caught(tmp_path: Path, path: str, source: str, why: str) -> None:
    """A copy of the package with one forbidden import added fails the check."""
    for file in (ROOT / "nnmem").rglob("*.py"):
        target = tmp_path / file.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(file.read_text(encoding="utf-8"), encoding="utf-8")
    planted = tmp_path / path
    old = planted.read_text(encoding="utf-8") if planted.exists() else ""
    planted.write_text(old + source, encoding="utf-8")
    assert any(why in v for v in violations(tmp_path)), violations(tmp_path)
