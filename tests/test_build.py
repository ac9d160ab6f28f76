"""build.py: exact output, base paths, prerendered numbers and template failures."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import build
from nnmem.estimate import estimate
from nnmem.result import COMPONENTS
from nnmem.scenario import parse
from nnmem.web.calculator import DEFAULT_SCENARIO

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "site_src" / "templates"
COMPILE_ZIP = ROOT / "site_src" / "compile_zip.py"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "_site"
    build.build(out)
    return out


@pytest.fixture(scope="module")
def sub_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sub") / "_site"
    build.build(out, base_path="/nnmem/")
    return out


def files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


# The core's folder carries its version, the one package.json pins.
CORE = f"pyodide-{json.loads((ROOT / 'package.json').read_text())['dependencies']['pyodide']}/"


def test_scripts_import_the_versions_of_their_imports(site: Path) -> None:
    """A changed engine.js reaches the calculator even from a browser's cache."""
    calculator = (site / "assets" / "calculator.js").read_text()
    engine = (site / "assets" / "engine.js").read_bytes()
    assert re.search(rf'from ?"\./engine\.js\?v={build.short_hash(engine)}"', calculator)


def test_the_worker_imports_the_core_from_its_versioned_folder(site: Path) -> None:
    """worker.js imports Pyodide with its own module graph, from the folder named with
    the core's version, and the page starts it before rendering (blocking="render")."""
    worker = (site / "assets" / "worker.js").read_text()
    assert re.search(rf'from ?"\.\./{re.escape(CORE)}pyodide\.mjs"', worker)
    assert build.CORE_IMPORT not in worker
    assert (site / CORE / "pyodide.mjs").is_file()
    head = (site / "index.html").read_text().split("</head>")[0]
    boot = re.search(r"<script [^>]*boot\.js[^>]*>", head)
    assert boot
    assert 'blocking="render"' in boot.group(0)
    assert 'fetchpriority="high"' in boot.group(0)


def test_scripts_and_styles_ship_minified(site: Path) -> None:
    """The page's scripts and styles go out without comments or indentation (esbuild),
    and keep what other files use by name: the worker's export, the lazy imports."""
    for name in ("calculator.js", "worker.js", "style.css"):
        source = (ROOT / "site_src" / "static" / name).read_text()
        shipped = (site / "assets" / name).read_text()
        assert "// " in source or "/* " in source
        assert len(shipped) < 0.8 * len(source), name
        assert not re.search(r"^\s*(//|/\*)", shipped, re.M), name
    worker = (site / "assets" / "worker.js").read_text()
    assert "export function growMemoryTo" in worker  # tests/e2e/test_boot.py imports it
    calculator = (site / "assets" / "calculator.js").read_text()
    assert re.search(r'import\("\./reader\.js\?v=[0-9a-f]{10}"\)', calculator)


def test_exact_file_list(site: Path) -> None:
    listing = files(site)
    bundles = {
        name
        for name in listing
        if re.fullmatch(r"assets/nnmem-([0-9a-f]{10}\.zip|later-[0-9a-f]{10}\.zip\.xz)", name)
    }
    assert len(bundles) == 2  # the first bundle and the second (see build.LATER)
    pages = {
        build.read_front_matter(p.read_text())[0].get("output", f"{p.stem}.html")
        for p in (ROOT / "content").glob("*.md")
    }
    assert {"index.html", "guide.html", "formulas.html", "examples.html", "faq.html"} <= pages
    assert listing - bundles - pages == {
        ".nojekyll",
        "404.html",
        "sitemap.xml",
        "robots.txt",
        "assets/guide.css",
        "assets/calculator.js",
        "assets/compare.js",  # the calculator's Compare (calculator.js loads it)
        "assets/compare.css",
        "assets/form.js",
        "assets/hub.js",  # the Hub and local-file readers (reader.js loads it)
        "assets/reader.js",
        "assets/engine.js",
        "assets/theme.js",
        "assets/tables.js",  # the scroll hint on tables wider than their box
        "assets/tool.js",
        "assets/tools.css",
        "assets/worker.js",
        "assets/boot.js",
        "assets/style.css",
        "assets/favicon.svg",
        f"{CORE}pyodide.mjs",
        f"{CORE}pyodide.asm.mjs",
        f"{CORE}pyodide.asm.wasm",
        f"{CORE}python_stdlib.zip",
        f"{CORE}pyodide-lock.json",
    }


def test_pyodide_core_is_copied_unchanged(site: Path) -> None:
    for name in build.PYODIDE_FILES:
        if name == build.STDLIB:
            continue  # trimmed: see the next test
        copied = (site / CORE / name).read_bytes()
        assert copied == (ROOT / "node_modules" / "pyodide" / name).read_bytes(), name


def test_stdlib_holds_every_module_nnmem_imports(site: Path) -> None:
    """The trimmed standard library keeps each module an import in nnmem names, each
    listed module, and Pyodide's own packages; trimmed, its source is more than 1 MB
    smaller, and compiled it is still smaller than Pyodide's whole zip."""
    full = (ROOT / "node_modules" / "pyodide" / build.STDLIB).read_bytes()
    assert len(full) - len(build.trim_stdlib(full, build.read_stdlib_modules(ROOT))) > 1_000_000
    trimmed = (site / CORE / build.STDLIB).read_bytes()
    assert len(trimmed) < len(full)
    with zipfile.ZipFile(io.BytesIO(trimmed)) as archive:
        names = set(archive.namelist())
    with zipfile.ZipFile(io.BytesIO(full)) as archive:
        stdlib = set(archive.namelist())

    def present(module: str) -> bool:  # as bytecode (see the next test)
        path = module.replace(".", "/")
        return f"{path}.pyc" in names or f"{path}/__init__.pyc" in names

    def in_stdlib_zip(module: str) -> bool:
        path = module.replace(".", "/")
        return f"{path}.py" in stdlib or f"{path}/__init__.py" in stdlib

    imported = set()
    for source in (ROOT / "nnmem").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module)
    wanted = {m for m in imported if not m.startswith("nnmem") and in_stdlib_zip(m)}
    wanted |= {m for m in build.read_stdlib_modules(ROOT) if in_stdlib_zip(m)}
    assert {"json", "fractions", "dataclasses", "_pyodide", "pyodide"} <= wanted
    assert sorted(m for m in wanted if not present(m)) == []


def test_stdlib_ships_as_bytecode_that_pyodide_runs(site: Path, tmp_path: Path) -> None:
    """Each module of the trimmed standard library is there as a .pyc of Pyodide's
    Python, with its date, and nothing else changed; Pyodide boots from it under Node
    and imports nnmem's standard-library modules from bytecode."""
    full = (ROOT / "node_modules" / "pyodide" / build.STDLIB).read_bytes()
    trimmed = build.trim_stdlib(full, build.read_stdlib_modules(ROOT))
    shipped = (site / CORE / build.STDLIB).read_bytes()
    with (
        zipfile.ZipFile(io.BytesIO(trimmed)) as before,
        zipfile.ZipFile(io.BytesIO(shipped)) as after,
    ):
        expected = [
            (i.filename + "c" if i.filename.endswith(".py") else i.filename, i.date_time)
            for i in before.infolist()
        ]
        assert [(i.filename, i.date_time) for i in after.infolist()] == expected
        headers = {after.read(n)[:16] for n, _ in expected if n.endswith(".pyc")}
        plain = [n for n, _ in expected if not n.endswith((".pyc", "/"))]
        assert all(after.read(n) == before.read(n) for n in plain)
    # One magic number (the Python that compiled them), flags 0 and no source stamp.
    (header,) = headers
    assert header[4:] == bytes(12)
    core = tmp_path / "core"
    shutil.copytree(site / CORE, core)
    script = tmp_path / "boot.mjs"
    script.write_text(
        f'const {{ loadPyodide }} = await import("{(core / "pyodide.mjs").as_uri()}");\n'
        f'const py = await loadPyodide({{ indexURL: "{core.as_posix()}/" }});\n'
        "console.log(py.runPython(`import fractions, importlib.util, json\n"
        "f'{fractions.__spec__.origin} {importlib.util.MAGIC_NUMBER.hex()} "
        "{json.__spec__.origin} {fractions.Fraction(3, 6)}'`));\n",
        encoding="utf-8",
    )
    run = subprocess.run(["node", str(script)], capture_output=True, text=True, check=True)
    origin, magic, json_origin, half = run.stdout.split()
    assert origin.endswith("python314.zip/fractions.pyc")
    assert json_origin.endswith("python314.zip/json/__init__.pyc")
    assert bytes.fromhex(magic) == header[:4]
    assert half == "1/2"


def test_prerendered_default_result(site: Path) -> None:
    """The page carries the BERT-base numbers computed at build time by nnmem."""
    html = (site / "index.html").read_text()
    total = estimate(parse(DEFAULT_SCENARIO)).total_bytes
    assert total == 4_794_973_004
    assert f'<output id="total" for="calc" data-bytes="{total}">4.79 GB</output>' in html
    assert (
        '<p class="total-detail" id="total-detail">4,794,973,004 bytes; tensors peak at '
        "3.81 GB in the forward</p>"
    ) in html
    assert (
        '<tr data-key="weights"><th scope="row"><a href="#what-weights">Model weights</a></th>'
        "<td>440.0</td>"
        "<td>0.44</td><td>9.2%</td></tr>"  # 440.0 of 4,795.0 MB
    ) in html
    # No GPU chosen: the bar is the total alone, activations (2,491,416,576 B) after
    # weights and optimizer state, 400 × 2,491,416,576 / 4,794,973,004 = 207.84 wide.
    assert 'data-key="activations" x="110.1" y="2" width="207.8"' in html
    assert '<p class="capacity-headline" data-fit="none">Needs <output id="total"' in html
    assert '<tr data-phase="forward" class="peak">' in html
    assert 'value="110"' in html
    assert 'value="32"' in html


def test_every_component_links_to_its_paragraph(site: Path) -> None:
    """Each component nnmem names has a paragraph in the page's glossary, and the names
    in the table and the bar's key link to it."""
    html = (site / "index.html").read_text()
    for key in COMPONENTS:
        assert f'<div id="what-{key}" tabindex="-1"><dt>' in html, key
    assert '<a href="#what-activations">Activations</a> 2.49 GB</li>' in html  # the key
    assert "<dt>What are activations?</dt><dd><p>The intermediate results" in html


def test_a_missing_glossary_entry_fails_the_build(tmp_path: Path) -> None:
    source = tmp_path / "components.md"
    source.write_text("## weights: What are the weights?\nThe parameters.\n")
    with pytest.raises(build.BuildError, match=r"missing: gradients; unknown: \)$"):
        build.load_glossary(source, ["weights", "gradients"])


def test_root_build_uses_page_relative_urls(site: Path) -> None:
    html = (site / "index.html").read_text()
    assert re.search(r'href="\./assets/style\.css\?v=[0-9a-f]{10}"', html)
    assert re.search(r'src="\./assets/calculator\.js\?v=[0-9a-f]{10}"', html)
    assert f'data-pyodide="./{CORE}"' in html
    assert not re.search(r'(href|src)="/', html), "index.html must not use absolute URLs"
    not_found = (site / "404.html").read_text()
    assert re.search(r'href="/assets/style\.css\?v=', not_found)
    assert 'href="/">memory calculator</a>' in not_found


def test_base_path_changes_only_the_404_page(site: Path, tmp_path: Path) -> None:
    """With the same public address, the base path changes nothing but the 404 page."""
    sub_site = tmp_path / "_site"
    build.build(sub_site, base_path="/nnmem/", site_url=build.normalise_site_url(None, "/"))
    assert (sub_site / "index.html").read_bytes() == (site / "index.html").read_bytes()
    not_found = (sub_site / "404.html").read_text()
    assert re.search(r'href="/nnmem/assets/style\.css\?v=[0-9a-f]{10}"', not_found)
    assert 'href="/nnmem/">memory calculator</a>' in not_found
    assert 'href="/">' not in not_found


@pytest.mark.parametrize(
    ("given", "normalised"),
    [("/", "/"), ("", "/"), ("nnmem", "/nnmem/"), ("/nnmem", "/nnmem/"), ("/a/b/", "/a/b/")],
)
def test_base_path_is_normalised(given: str, normalised: str) -> None:
    assert build.normalise_base_path(given) == normalised


@pytest.mark.parametrize("bad", ["/../x/", "/a b/", "/<x>/", "/./"])
def test_bad_base_path_is_refused(bad: str) -> None:
    with pytest.raises(build.BuildError, match="must be URL path segments"):
        build.normalise_base_path(bad)


def _bundles(site: Path) -> tuple[bytes, bytes]:
    """The first bundle and the second, as the site holds them."""
    (first,) = (site / "assets").glob("nnmem-[0-9a-f]*.zip")
    (later,) = (site / "assets").glob("nnmem-later-*.zip.xz")
    for bundle, name in ((first, "nnmem-{}.zip"), (later, "nnmem-later-{}.zip.xz")):
        digest = hashlib.sha256(bundle.read_bytes()).hexdigest()[:10]
        assert bundle.name == name.format(digest)
    return first.read_bytes(), later.read_bytes()


# A first visit: the calculator's example and Llama 3.1 8B on an H100, each in the two
# parts the page asks for at once (the step chart waits until it is scrolled into view).
FIRST_VISIT = """
import json, sys
import nnmem_start
assert nnmem_start.start() == [], "a dataclass method the bundle's table lacks"
from nnmem.web import handle
from nnmem.web.calculator import DEFAULT_FIELDS
llama = {**DEFAULT_FIELDS, "preset": "llama-3.1-8b", "precision": "amp_bf16",
         "batch_size": "4", "seq_len": "4096", "gpu": "h100-sxm-80gb"}
for fields in (DEFAULT_FIELDS, llama):
    for part in ("first", "rest"):
        assert json.loads(handle(json.dumps({"fields": fields, "part": part})))["ok"]
print(" ".join(sorted(m for m in sys.modules if m.startswith("nnmem"))))
"""


def _in_pyodide(site: Path, tmp_path: Path, code: str) -> str:
    """What ``code`` prints in Pyodide under Node, booted from the site's core (with
    columns left out of new code, as the build compiles it) with the site's first
    bundle put on sys.path by the site's own worker.js (its ``putOnPath``), both bundles
    readable at /bundles/first.zip and /bundles/later.zip.xz, and the repository at
    /project."""
    first, later = _bundles(site)
    (tmp_path / "first.zip").write_bytes(first)
    (tmp_path / "later.zip.xz").write_bytes(later)
    (tmp_path / "code.py").write_text(code, encoding="utf-8")
    script = tmp_path / "run.mjs"
    script.write_text(
        'import fs from "node:fs";\n'
        "globalThis.self = globalThis; // the worker's global, which it sets handlers on\n"
        f'const {{ putOnPath }} = await import("{(site / "assets" / "worker.js").as_uri()}");\n'
        f'const {{ loadPyodide }} = await import("{(site / CORE / "pyodide.mjs").as_uri()}");\n'
        f'const py = await loadPyodide({{ indexURL: "{(site / CORE).as_posix()}/", '
        'env: { PYTHONNODEBUGRANGES: "1" } });\n'
        f'py.mountNodeFS("/project", "{ROOT.as_posix()}");\n'
        'py.FS.mkdir("/bundles");\n'
        'for (const name of ["first.zip", "later.zip.xz"]) {\n'
        f"  py.FS.writeFile(`/bundles/${{name}}`, fs.readFileSync(`{tmp_path}/${{name}}`));\n"
        "}\n"
        'putOnPath(py, py.FS.readFile("/bundles/first.zip"));\n'
        f'py.runPython(fs.readFileSync("{(tmp_path / "code.py").as_posix()}", "utf8"));\n',
        encoding="utf-8",
    )
    run = subprocess.run(["node", str(script)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


# The second bundle, loaded on the first import of a module of it, as in the worker; the
# step chart asked for, then the tools; and a failure's traceback inside nnmem.
WITH_LATER = """
import json, site, sys, traceback
from nnmem.web import handle, later
from nnmem.web.calculator import DEFAULT_FIELDS
target = site.getsitepackages()[0]
later.fetch_later(lambda: open("/bundles/later.zip.xz", "rb").read(), target)
request = {"fields": DEFAULT_FIELDS, "part": "chart"}
assert "timeline-figure" in json.loads(handle(json.dumps(request)))["html"]["timeline"]
from nnmem.web.tools import TOOLS
import nnmem.web
from nnmem.scenario import parse
try:
    parse({"batch_size": "x"})
except Exception:
    failure = traceback.format_exc()
print(json.dumps({"tools": len(TOOLS), "origin": nnmem.web.__spec__.origin,
                  "target": target, "traceback": failure}))
"""


def test_bundles_are_reproducible_and_a_first_visit_needs_only_the_first(
    site: Path, tmp_path: Path
) -> None:
    """Two builds give the same bytes; in Pyodide, the first bundle alone answers a first
    visit, and the second adds the tools, which nnmem.web.later unpacks on their first
    import. The modules run from bytecode, and a traceback still names their lines."""
    first, later = _bundles(site)
    assert (first, later) == build.bundle_nnmem(ROOT / "nnmem")
    with build.unpack_bundle(first) as archive:
        names = archive.namelist()
        # Deflated entry by entry: zipimport inflates each as it imports it.
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    assert "nnmem/__init__.pyc" in names
    assert not any("__pycache__" in n or n.endswith(".py") for n in names)
    visit, after = _in_pyodide(site, tmp_path, FIRST_VISIT + WITH_LATER).splitlines()[-2:]
    imported = set(visit.split())
    assert {"nnmem.web.calculator", "nnmem.solvers", "nnmem.render.svg"} <= imported
    assert not any(m.startswith(build.LATER) for m in imported)
    found = json.loads(after)
    assert found["tools"] >= 5
    # Imported from the first bundle's zip, as the standard library is from Pyodide's.
    assert found["origin"] == f"{found['target']}/nnmem.zip/nnmem/web/__init__.pyc"
    # The code names the file and the line in the repository; no columns (no carets).
    lines = (ROOT / "nnmem" / "validation.py").read_text(encoding="utf-8").splitlines()
    line = lines.index("        raise NnmemError(found)") + 1
    where = f'File "{found["target"]}/nnmem/validation.py", line {line}, in raise_if'
    assert where in found["traceback"]
    assert "NnmemError: Model size is required" in found["traceback"]
    assert "^^^" not in found["traceback"]


def test_the_default_first_answer_imports_no_transformer_code() -> None:
    """The default form describes its model by a parameter count: nnmem.web and the first
    part of that answer leave the transformer's modules unimported (nnmem.builders imports
    them with the first transformer), so Python compiles less before a visit's answer."""
    code = (
        "import json, sys\n"
        "from nnmem.web import handle\n"
        "from nnmem.web.calculator import DEFAULT_FIELDS\n"
        "request = {'fields': DEFAULT_FIELDS, 'part': 'first'}\n"
        "assert json.loads(handle(json.dumps(request)))['ok']\n"
        "print(' '.join(m for m in sys.modules if m.startswith('nnmem.models.transformer')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert run.stdout.split() == []


def test_bundles_split_the_modules(site: Path) -> None:
    """The second bundle holds what a first visit's answer never imports (build.LATER):
    the step chart, the model reader, Compare, Import JSON, the tools, the serving
    runtimes and the CNNs; the first holds the rest and the data."""
    first, later = (set(build.unpack_bundle(b).namelist()) for b in _bundles(site))
    first, later = ({n.removesuffix("c") for n in names} for names in (first, later))
    assert first.isdisjoint(later)
    assert {
        "nnmem/web/__init__.py",
        "nnmem/web/calculator.py",
        "nnmem/web/later.py",
        "nnmem/estimate.py",
        "nnmem/solvers.py",
        "nnmem/render/svg.py",
        "nnmem/data/models.json",
        "nnmem/data/gpus.json",
    } <= first
    assert {
        "nnmem/web/checkpoint.py",
        "nnmem/web/compare.py",
        "nnmem/web/saved.py",
        "nnmem/web/step_chart.py",
        "nnmem/timeline.py",
        "nnmem/allocator.py",
        "nnmem/render/timeline_svg.py",
        "nnmem/web/tools/__init__.py",
        "nnmem/tools.py",
        "nnmem/readers/gguf.py",
        "nnmem/runtimes/vllm.py",
        "nnmem/models/cnn/__init__.py",
    } <= later
    modules = {n.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for n in later}
    assert all(module.startswith(build.LATER) for module in modules)


def _without_docstrings(tree: ast.AST) -> str:
    """The tree less its docstrings and its functions' annotations, as shipped; a
    dataclass's docstring is ".", which spares dataclasses from writing one."""
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            node.annotation = None
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
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
        if isinstance(node, ast.ClassDef) and any(
            ast.unparse(d).split("(")[0] in ("dataclass", "dataclasses.dataclass")
            for d in node.decorator_list
        ):
            node.body.insert(0, ast.Expr(ast.Constant(".")))
    return ast.dump(tree)


def test_bundle_ships_the_tested_code_and_data(site: Path, tmp_path: Path) -> None:
    """Each shipped module is the code Pyodide's Python compiles from the repository's
    source less its docstrings and its functions' annotations, each data file the same
    JSON; the command line, which no page imports, stays out. Its size is printed by
    benchmarks/site_speed.py, not held here."""
    shipped = {}
    for bundle in _bundles(site):
        with build.unpack_bundle(bundle) as archive:
            shipped |= {name: archive.read(name) for name in archive.namelist()}
    modules = sorted(n.removesuffix("c") for n in shipped if n.endswith(".pyc"))
    assert build.START in modules  # from site_src/, to site-packages' top
    modules = [m.replace(build.START, f"site_src/{build.START}") for m in modules]
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nnmem").rglob("*.py")}
    # The allocator model ships: the step chart replays the timeline through it.
    assert sources - set(modules) == {"nnmem/__main__.py", "nnmem/cli.py"}
    for name, data in shipped.items():
        if name == "nnmem_start.methods":
            continue  # checked in Pyodide below
        if not name.endswith(".pyc"):
            assert re.fullmatch(r"nnmem/data/\w+\.json", name)
            assert json.loads(data) == json.loads((ROOT / name).read_text(encoding="utf-8"))
    # What the build leaves out of each module's tree, held against an independent
    # reading (here, in CPython) ...
    spec = importlib.util.spec_from_file_location("compile_zip", COMPILE_ZIP)
    assert spec
    assert spec.loader
    compile_zip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compile_zip)
    for name in modules:
        source = (ROOT / name).read_text(encoding="utf-8")
        assert ast.dump(compile_zip.bare_tree(source)) == _without_docstrings(ast.parse(source))
    # ... and, in Pyodide, each shipped .pyc is that tree compiled, line numbers and all.
    differ = """
import io, lzma, marshal, site, sys, zipfile
sys.path.insert(0, "/project/site_src")
from compile_zip import compile_module
target = site.getsitepackages()[0]
shipped = {}
for bundle, decompress in (("/bundles/first.zip", bytes),
                           ("/bundles/later.zip.xz", lzma.decompress)):
    with zipfile.ZipFile(io.BytesIO(decompress(open(bundle, "rb").read()))) as z:
        shipped |= {n: z.read(n) for n in z.namelist() if n.endswith(".pyc")}
        if "first" in bundle:
            methods = marshal.loads(z.read("nnmem_start.methods"))
wrong = []
for name, data in sorted(shipped.items()):
    path = f"/project/{name[:-1]}".replace("/nnmem_start", "/site_src/nnmem_start")
    source = open(path, "rb").read()
    expected = compile_module(source, f"{target}/{name[:-1]}", bare=True)
    if marshal.loads(data[16:]) != expected:
        wrong.append(name)
# The dataclass methods: each text with its code as exec compiles it.
wrong += [t for t, c in methods.items() if c != compile(t, "<string>", "exec", dont_inherit=True)]
print(len(shipped), len(methods), wrong)
"""
    out = _in_pyodide(site, tmp_path, differ).splitlines()[-1].split(" ", 2)
    assert out[0] == str(len(modules))
    assert int(out[1]) >= 20  # the first visit's classes: every one is found (FIRST_VISIT)
    assert out[2] == "[]"


def test_missing_template_variable_fails_the_build(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    page = templates / "page.html.j2"
    body = page.read_text().replace("{{ page.body_html | safe }}", "{{ undefined_thing }}")
    page.write_text(body)
    content = tmp_path / "content"
    content.mkdir()
    (content / "about.md").write_text("---\ntitle: About\ndescription: d\n---\nHi\n")
    out = tmp_path / "_site"
    with pytest.raises(build.BuildError) as caught:
        build.build(out, templates=templates, content=content)
    assert str(caught.value) == ("about.md: template page.html.j2: 'undefined_thing' is undefined")
    assert not out.exists(), "a failed build must not leave a half-written site"


def test_content_needs_front_matter(tmp_path: Path) -> None:
    (tmp_path / "bad.md").write_text("---\ntitle: Only a title\n---\nBody\n")
    with pytest.raises(build.BuildError, match=r"bad\.md: front matter lacks description"):
        build.load_content(tmp_path)


def test_missing_pyodide_names_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    with pytest.raises(build.BuildError, match="run npm ci"):
        build.build(tmp_path / "_site", root=root)


def test_command_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build.py"),
            "--out",
            str(tmp_path / "o"),
            "--base-path",
            "/x/",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert re.match(r"built \d+ files into ", run.stdout)
    assert 'href="/x/assets/style.css' in (tmp_path / "o" / "404.html").read_text()


def test_prerendered_step_chart(site: Path) -> None:
    """The calculator's "Memory over the step" section holds the example's chart, built
    by nnmem, with its expandable_segments toggle, off."""
    from nnmem.render.timeline_svg import trace_step
    from nnmem.timeline import replayed_events

    html = (site / "index.html").read_text()
    section = html[html.index('<section class="timeline-box"') :]
    section = section[: section.index("</section>")]
    assert '<h2 id="step-chart-title">Memory over the step</h2>' in section
    assert re.search(r'<input id="timeline-expandable" type="checkbox"(?! checked)', section)
    trace = trace_step(replayed_events(parse(DEFAULT_SCENARIO)))
    assert f'data-reserved-peak="{trace.reserved_peak}"' in section
    assert '<title id="timeline-title">Memory over the step</title>' in section
