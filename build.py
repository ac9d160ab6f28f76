"""Build the static site: content/*.md through site_src/ templates into _site/.

    python build.py [--out _site] [--base-path /nnmem/] [--site-url https://host/nnmem/]

Phases, in order: clean the output folder, load the content, compute the prerendered
results with nnmem, render every page, then write pages, assets, the Pyodide core and
the nnmem bundle. Everything is gathered before anything is written, so a template
error leaves no half-built site behind.

Content pages are Markdown with ``key: value`` front matter. Their body is first a
Jinja template (see :mod:`content`): every number in the text is computed there by
nnmem, so the guide can never disagree with the calculator.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import html
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markdown

import content_helpers
from nnmem import catalog
from nnmem.result import COMPONENTS
from nnmem.web.calculator import (
    DEFAULT_FIELDS,
    FORM_SECTIONS,
    PRESETS,
    VIEW_FIELDS,
    gpu_groups,
    prerender,
)
from nnmem.web.compare import READY
from nnmem.web.form import INTENT_BLURBS, START_FIELDS, precision_groups
from nnmem.web.start import EXAMPLES, example_attribute
from nnmem.web.tools import prerender as prerender_tool

ROOT = Path(__file__).resolve().parent
PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
SITE_NAME = "nnmem"
# The site's public address when neither --site-url nor this variable gives it; the
# placeholder is where `make serve` serves the site.
SITE_URL_ENV = "NNMEM_SITE_URL"
LOCAL_ORIGIN = "http://127.0.0.1:8000"
MARKDOWN_EXTENSIONS = ["tables", "fenced_code", "attr_list", "toc"]
# How Python-Markdown's tables aligns a column (markdown/extensions/tables.py).
_ALIGN_STYLE = re.compile(r' style="text-align: (left|right|center);"')
# Fixed zip timestamps make the bundle, and so its content hash, reproducible.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """The site cannot be built; the message says what to fix."""


@dataclass(frozen=True)
class Page:
    """One content page: where it goes, what it says and where the navigation lists it."""

    source: Path
    output: str  # path inside the site, e.g. "index.html"
    template: str
    title: str
    description: str
    body_html: str
    meta: dict[str, str] = field(default_factory=dict)  # the whole front matter
    json_ld: str = ""  # structured data for the head, e.g. a schema.org FAQPage

    @property
    def nav_order(self) -> float | None:
        """Position in the navigation (front matter ``nav``), or None to leave it out."""
        return float(self.meta["nav"]) if "nav" in self.meta else None

    @property
    def nav_title(self) -> str:
        """The page's name in the navigation (``nav_title``, else its title)."""
        return self.meta.get("nav_title", self.title)

    @property
    def nav_group(self) -> str:
        """The footer group the page is listed under (``nav_group``; tools by default)."""
        return self.meta.get("nav_group", "Tools" if "tool" in self.meta else "Learn")


@dataclass(frozen=True)
class NavLink:
    """One entry of the site navigation."""

    output: str
    title: str
    group: str


@dataclass
class Site:
    """Everything to write, gathered before writing."""

    files: dict[str, bytes] = field(default_factory=dict)
    copies: dict[str, Path] = field(default_factory=dict)


def normalise_base_path(base_path: str) -> str:
    """Return the base path with exactly one leading and one trailing slash.

    >>> normalise_base_path("nnmem"), normalise_base_path("/"), normalise_base_path("/a/b/")
    ('/nnmem/', '/', '/a/b/')
    """
    parts = [p for p in base_path.strip().split("/") if p]
    if any(p in {".", ".."} or not re.fullmatch(r"[A-Za-z0-9._~-]+", p) for p in parts):
        raise BuildError(f"base path {base_path!r} must be URL path segments like /nnmem/")
    return "/" + "".join(f"{p}/" for p in parts)


def read_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Split ``key: value`` lines between leading ``---`` fences from the Markdown body.

    >>> read_front_matter("---\\ntitle: Hi\\n---\\n# Body\\n")
    ({'title': 'Hi'}, '# Body\\n')
    """
    if not text.startswith("---\n"):
        return {}, text
    head, _, body = text[4:].partition("\n---\n")
    meta = {}
    for line in head.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            raise BuildError(f"front matter line {line!r} is not 'key: value'")
        meta[key.strip()] = value.strip()
    return meta, body


def load_content(content_dir: Path, helpers: dict[str, Any] | None = None) -> list[Page]:
    """Read every content/*.md page: front matter, then the body through Jinja and Markdown.

    ``helpers`` are the functions the body may call (``content.helpers()`` by default).
    """
    helpers = content_helpers.helpers() if helpers is None else helpers
    pages = []
    for source in sorted(content_dir.glob("*.md")):
        meta, body = read_front_matter(source.read_text(encoding="utf-8"))
        missing = {"title", "description"} - meta.keys()
        if missing:
            raise BuildError(f"{source.name}: front matter lacks {', '.join(sorted(missing))}")
        if "nav" in meta and not re.fullmatch(r"-?\d+(\.\d+)?", meta["nav"]):
            raise BuildError(
                f"{source.name}: front matter nav must be a number (got {meta['nav']!r})"
            )
        output = meta.get("output", f"{source.stem}.html")
        body_html = render_markdown(body, helpers, source.name, relative_root(output))
        pages.append(
            Page(
                source=source,
                output=output,
                template=meta.get("template", "page.html.j2"),
                title=meta["title"],
                description=meta["description"],
                body_html=body_html,
                meta=meta,
                json_ld=faq_json_ld(body_html) if meta.get("schema") == "FAQPage" else "",
            )
        )
    return pages


def render_markdown(body: str, helpers: dict[str, Any], source: str, root: str = "./") -> str:
    """Render a page body: Jinja first (numbers, math, tables), then Markdown.

    Helpers return raw HTML (MathML, tables) as placeholders that Markdown leaves alone;
    they are put back afterwards, a block one in place of the paragraph that holds it.
    """
    stash = content_helpers.Stash()
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    env.globals.update(helpers)
    env.globals["raw"] = stash.keep
    env.globals["math"] = stash.math
    env.globals["table"] = stash.table
    env.globals["root"] = root
    try:
        text = env.from_string(body).render()
    except jinja2.TemplateError as error:
        raise BuildError(f"{source}: {error}") from error
    except content_helpers.ContentError as error:
        raise BuildError(f"{source}: {error}") from error
    body_html = markdown.markdown(
        text,
        extensions=MARKDOWN_EXTENSIONS,
        # A [TOC] marker lists the sections and questions, not the page's own title.
        extension_configs={"toc": {"toc_depth": "2-3"}},
    )
    # The Content-Security-Policy allows no inline style: a column's alignment is a class.
    return stash.restore(_ALIGN_STYLE.sub(r' class="align-\1"', body_html))


@dataclass(frozen=True)
class Entry:
    """One component's explanation beside the result: "What are activations?"."""

    key: str
    question: str
    html: str


_ENTRY = re.compile(r"^## (\w+): (.+)$", re.MULTILINE)


def load_glossary(path: Path, keys: list[str]) -> list[Entry]:
    """Read the components' explanations (``## key: question`` then a paragraph), one
    for each of ``keys`` and in their order."""
    text = re.sub(r"<!--.*?-->", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    heads = list(_ENTRY.finditer(text))
    found = {}
    for head, after in zip(heads, [*heads[1:], None], strict=True):
        body = text[head.end() : after.start() if after else len(text)].strip()
        html = markdown.markdown(body, extensions=MARKDOWN_EXTENSIONS)
        found[head[1]] = Entry(head[1], head[2].strip(), html)
    missing = [k for k in keys if k not in found]
    unknown = [k for k in found if k not in keys]
    if missing or unknown:
        raise BuildError(
            f"{path.name}: every component needs one entry (missing: {', '.join(missing)}; "
            f"unknown: {', '.join(unknown)})"
        )
    return [found[k] for k in keys]


def _plain_text(fragment: str) -> str:
    """The text of an HTML fragment: tags dropped, entities read, spaces collapsed."""
    spaced = re.sub(r"</?(p|li|ul|ol|tr|td|th|table|h[1-6]|br)\b[^>]*>", " ", fragment)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", spaced)).split())


def faq_json_ld(body_html: str) -> str:
    """A schema.org FAQPage from a page whose questions are its ``<h3>`` headings.

    Each answer is the text up to the next heading, so the structured data is made from
    the very words the page shows.

    >>> print(faq_json_ld('<h3 id="q">Why?</h3><p>Because <code>x</code>.</p><h2>End</h2>'))
    {"@context": "https://schema.org", "@type": "FAQPage", "mainEntity": [{"@type": \
"Question", "name": "Why?", "acceptedAnswer": {"@type": "Answer", "text": "Because x."}}]}
    """
    parts = re.split(r"<h([23])[^>]*>(.*?)</h\1>", body_html, flags=re.S)
    entities = []
    for i in range(1, len(parts) - 2, 3):
        level, heading, answer = parts[i], parts[i + 1], parts[i + 2]
        if level == "3":
            entities.append(
                {
                    "@type": "Question",
                    "name": _plain_text(heading),
                    "acceptedAnswer": {"@type": "Answer", "text": _plain_text(answer)},
                }
            )
    data = {"@context": "https://schema.org", "@type": "FAQPage", "mainEntity": entities}
    # "<" escaped so no answer can close the script element it is written into.
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")


def tool_context(page: Page) -> dict[str, Any] | None:
    """The prerendered tool of a page whose front matter names one (``tool: training-cost``)."""
    name = page.meta.get("tool")
    if not name:
        return None
    try:
        return prerender_tool(name)
    except ValueError as error:
        raise BuildError(f"{page.source.name}: {error}") from error


# The package the page's Python starts from: the bundles ship what it imports, no more.
WEB_PACKAGE = "nnmem.web"
# The first bundle's one module outside the package: the worker imports nnmem through it,
# with the methods its dataclasses need compiled at build (site_src/nnmem_start.py).
START = "nnmem_start.py"
# What a first visit's answer never imports: the step chart (its timeline, the allocator
# model and its drawing, asked for only once the chart is in view), the model reader,
# Compare, Import JSON, the tools, the serving runtimes and the CNNs. They travel in a
# second bundle that the page's worker fetches on the first import of one of them (see
# nnmem.web.later); a scenario with allocator_replay on fetches it for its total.
LATER = (
    "nnmem.allocator",
    "nnmem.models.cnn",
    "nnmem.readers",
    "nnmem.render.timeline_svg",
    "nnmem.runtimes",
    "nnmem.timeline",
    "nnmem.tools",
    "nnmem.web.checkpoint",
    "nnmem.web.compare",
    "nnmem.web.links",
    "nnmem.web.saved",
    "nnmem.web.step_chart",
    "nnmem.web.tools",
)


def module_files(package_dir: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file, with the
    packages that hold them."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            named |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
    found = set()
    for dotted in named:
        parts = dotted.split(".")
        found |= {".".join(parts[:end]) for end in range(1, len(parts) + 1)} & known
    return found


def web_modules(package_dir: Path, start: str = WEB_PACKAGE) -> set[str]:
    """The modules the page can reach: ``start``, its submodules and every module they
    import, at the top of a file or inside a function (the CLI, say, is left out)."""
    files = module_files(package_dir)
    known = set(files)
    todo = [m for m in files if m == start or m.startswith(f"{start}.")]
    reached: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += _imports(module, files[module], known)
    return reached


def shipped_json(text: str) -> str:
    """A data file without the indentation that only a reader of the file needs."""
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def split_modules(package_dir: Path) -> tuple[set[str], set[str]]:
    """The modules a page can import, split into the first bundle's and the second's
    (those under ``LATER``)."""
    reached = web_modules(package_dir)
    later = {m for m in reached if any(m == p or m.startswith(f"{p}.") for p in LATER)}
    return reached - later, later


def _pack(files: dict[str, Path], root: Path, record: bool = False) -> bytes:
    """The files under their names in site-packages, as the page runs them, in a zip of
    stored entries: the modules compiled without their docstrings and functions'
    annotations (see ``compile_bytecode`` and site_src/compile_zip.py's ``bare_tree``),
    the data as ``shipped_json`` writes it; with the dataclass methods their import
    writes where ``record`` (see site_src/nnmem_start.py)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, path in files.items():
            text = path.read_text(encoding="utf-8")
            shipped = text if path.suffix == ".py" else shipped_json(text)
            info = zipfile.ZipInfo(name, ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, shipped.encode("utf-8"))
    return compile_bytecode(buffer.getvalue(), root, "site-packages", record=record)


def xz(stored: bytes) -> bytes:
    """``stored`` compressed whole with xz, as the second bundle travels."""
    # A dictionary no larger than the zip compresses it as well as preset 9's 64 MiB one,
    # and spares the page's decoder from allocating the rest.
    window = max(1 << 12, 1 << (len(stored) - 1).bit_length())
    # pb=0: neither the bytecode nor the JSON has a 2- or 4-byte alignment for the position
    # bits to learn (0.1 kB less than the default pb=2).
    options = {
        "id": lzma.FILTER_LZMA2,
        "preset": 9 | lzma.PRESET_EXTREME,
        "dict_size": window,
        "pb": 0,
    }
    return lzma.compress(stored, filters=[options])


def deflated(stored: bytes) -> bytes:
    """The zip ``stored`` with each entry deflated, as the first bundle travels: Python's
    zipimport inflates a module as it imports it (with zlib, which Pyodide's start has
    already run for its standard library), so the worker writes the file as fetched and
    decodes nothing first. Zstandard over the whole zip was 76 kB smaller (214 kB against
    290 kB), but decoding it cost 9-65 ms (median 27) of every cold visit in Chromium
    here, on the path to the first answer, where this costs 2-10 ms; the download runs
    beside Pyodide's start, which it does not delay."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(stored)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
    ):
        for info in source.infolist():
            archive.writestr(info, source.read(info), zipfile.ZIP_DEFLATED, 9)
    return buffer.getvalue()


def bundle_nnmem(package_dir: Path) -> tuple[bytes, bytes]:
    """Pack what the page imports of the nnmem package, and its data, for Pyodide: the
    first bundle, which every page loads, and the second (see ``LATER``).

    Modules no page reaches (the command line) stay out; the code goes compiled,
    without docstrings, the data without indentation. The first is a zip of deflated
    entries (``deflated``) that Python imports from as it is (worker.js puts it on
    sys.path); the second, decoded only when first needed, is a zip compressed whole
    with xz (``xz``), which finds what the modules share, and is unpacked with lzma and
    zipfile (nnmem.web.later). Compiled, the modules cost a cold visit no compiling,
    where as source they cost about 200 ms in Chromium here.
    """
    first, later = split_modules(package_dir)
    files = module_files(package_dir)
    root = package_dir.parent

    def named(paths: list[Path]) -> dict[str, Path]:
        return {path.relative_to(root).as_posix(): path for path in sorted(paths)}

    data = list((package_dir / "data").glob("*.json"))
    start = root / "site_src" / START
    return (
        deflated(
            _pack(
                {START: start, **named([files[name] for name in first] + data)},
                root,
                record=True,
            )
        ),
        xz(_pack(named([files[name] for name in later]), root)),
    )


# The first four bytes of a zip's first entry (APPNOTE.TXT, section 4.3.7).
ZIP_MAGIC = b"PK\x03\x04"


def unpack_bundle(bundle: bytes) -> zipfile.ZipFile:
    """The zip of a bundle: the first is one, the second holds one compressed with xz."""
    if bundle.startswith(ZIP_MAGIC):
        return zipfile.ZipFile(io.BytesIO(bundle))
    return zipfile.ZipFile(io.BytesIO(lzma.decompress(bundle)))


def short_hash(data: bytes) -> str:
    """The first 10 hex digits of the data's SHA-256, for cache-busting names."""
    return hashlib.sha256(data).hexdigest()[:10]


# A module's relative import of another asset: ``from "./engine.js"``.
# A script's import of the Pyodide core, from its folder in the site (see build()).
CORE_IMPORT = '"../pyodide/pyodide.mjs"'
_IMPORT = re.compile(r'(from\s+|import\s*\(\s*)"\./([\w.-]+\.m?js)"')


# Scripts and styles go out minified: comments, spaces and local names cut by esbuild
# (pinned in package.json), which keeps every export, string and import path.
MINIFIED = {".js": "js", ".mjs": "js", ".css": "css"}


def minify(name: str, data: bytes, esbuild: Path) -> bytes:
    """``data`` minified by esbuild when ``name`` is a script or a style sheet."""
    loader = MINIFIED.get(Path(name).suffix)
    if loader is None:
        return data
    done = subprocess.run(
        [str(esbuild), "--minify", f"--loader={loader}", "--charset=utf8", "--log-level=error"],
        input=data,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"site_src/static/{name}: {done.stderr.decode('utf-8', 'replace')}")
    return done.stdout


def versioned_assets(static: Path, site: Site, esbuild: Path, core: str) -> dict[str, str]:
    """Add every static file to ``site``, minified, and return its versioned URL by name.

    The version is a hash of the file's content; a script's relative imports are
    rewritten to the versions of what they import, so a change anywhere reaches every
    page that loads it through any chain of imports, and an import of the Pyodide core
    (``CORE_IMPORT``) to the folder ``core``, which names its version.
    """
    sources = {path.name: path.read_bytes() for path in sorted(static.iterdir())}
    assets: dict[str, str] = {}
    while len(assets) < len(sources):
        progressed = False
        for name, data in sources.items():
            if name in assets:
                continue
            text = data.decode("utf-8") if name.endswith((".js", ".mjs")) else None
            if text is not None and CORE_IMPORT in text:
                text = text.replace(CORE_IMPORT, f'"../{core}pyodide.mjs"')
                data = text.encode("utf-8")
            needs = {m.group(2) for m in _IMPORT.finditer(text)} if text else set()
            if not needs <= assets.keys():
                continue
            if text is not None and needs:
                text = _IMPORT.sub(
                    lambda m: f'{m.group(1)}"./{assets[m.group(2)].removeprefix("assets/")}"',
                    text,
                )
                data = text.encode("utf-8")
            data = minify(name, data, esbuild)
            site.files[f"assets/{name}"] = data
            assets[name] = f"assets/{name}?v={short_hash(data)}"
            progressed = True
        if not progressed:
            left = ", ".join(sorted(sources.keys() - assets.keys()))
            raise BuildError(f"site_src/static: scripts import each other in a cycle: {left}")
    return assets


STDLIB = "python_stdlib.zip"


def read_stdlib_modules(root: Path) -> list[str]:
    """The standard-library modules the page's Python imports, one a line, as
    site_src/stdlib_modules.mjs lists them."""
    text = (root / "site_src" / "stdlib-modules.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def trim_stdlib(stdlib: bytes, modules: list[str]) -> bytes:
    """Pyodide's standard-library zip with only ``modules`` and their packages.

    The page's Python never imports most of the standard library (asyncio, email, xml,
    unittest, ...); leaving it out saves about 1.6 MB of the visit. Entries keep their
    stored dates and compression, so the output is reproducible.
    """
    wanted: set[str] = set()
    for module in modules:
        parts = module.split(".")
        for end in range(1, len(parts) + 1):
            base = "/".join(parts[:end])
            wanted |= {f"{base}.py", f"{base}/__init__.py", f"{base}/"}
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(stdlib)) as source,
        zipfile.ZipFile(buffer, "w") as archive,
    ):
        for info in source.infolist():
            if info.filename in wanted:
                archive.writestr(info, source.read(info))
    return buffer.getvalue()


def compile_bytecode(archive: bytes, root: Path, where: str, record: bool = False) -> bytes:
    """The zip ``archive`` with its modules as bytecode, compiled by Pyodide's Python
    under Node (site_src/compile_pyc.mjs, site_src/compile_zip.py), their code naming
    the files where the page's Python finds them: in the standard library's zip
    (``where="stdlib"``) or in site-packages (``"site-packages"``, the nnmem bundles).

    Pyodide 314.0.7 ships its standard library as source, so every boot compiled each
    module it imports: 1.3 s of a 2.0 s boot of the bare core in Node here. nnmem's own
    modules were compiled on each cold visit too, 60% of the page's import of nnmem.
    The code keeps line numbers but not columns (PYTHONNODEBUGRANGES): the trimmed
    standard library is 1.36 MB compiled (0.91 MB as source, 1.71 MB with columns,
    2.55 MB Pyodide's whole zip). With ``record``, the zip gains the dataclass methods
    that importing it writes (see site_src/nnmem_start.py). The result is kept under
    node_modules/.cache, keyed by the input, the place, ``record``, Pyodide's version
    and the scripts.
    """
    scripts = [
        root / "site_src" / "compile_pyc.mjs",
        root / "site_src" / "compile_zip.py",
        root / "site_src" / "nnmem_start.py",
    ]
    pyodide_dir = root / "node_modules" / "pyodide"
    key = hashlib.sha256(archive)
    key.update(f"{where}\0{record}\0{pyodide_version(pyodide_dir)}".encode())
    for script in scripts:
        key.update(script.read_bytes())
    cached = root / "node_modules" / ".cache" / "nnmem" / f"pyc-{key.hexdigest()[:20]}.zip"
    if cached.is_file():
        return cached.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source, compiled = Path(tmp) / "in.zip", Path(tmp) / "out.zip"
        source.write_bytes(archive)
        run = subprocess.run(
            ["node", str(scripts[0]), str(source), str(compiled), where]
            + (["--record"] if record else []),
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode:
            # Node prints the whole minified Pyodide with an error: the end says what failed.
            raise BuildError(f"compiling to bytecode failed: {run.stderr[-2000:]}")
        data = compiled.read_bytes()
    partial = cached.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(cached)  # whole or absent, for builds running side by side
    return data


def pyodide_version(pyodide_dir: Path) -> str:
    """The version of the Pyodide core, from its npm package."""
    data = json.loads((pyodide_dir / "package.json").read_text(encoding="utf-8"))
    return str(data["version"])


def make_environment(templates: Path) -> jinja2.Environment:
    """A Jinja environment that escapes HTML and fails on any undefined variable."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def normalise_site_url(site_url: str | None, base: str) -> str:
    """The site's absolute address ending in one slash: the option, else the
    environment's NNMEM_SITE_URL, else the local server's address under the base path.

    >>> normalise_site_url("https://docs.example.test/nnmem", "/nnmem/")
    'https://docs.example.test/nnmem/'
    >>> normalise_site_url("http://127.0.0.1:8000", "/")
    'http://127.0.0.1:8000/'
    """
    url = (site_url or os.environ.get(SITE_URL_ENV) or LOCAL_ORIGIN + base).strip()
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
        raise BuildError(
            f"site URL {url!r} must be an absolute http(s) address like https://host/nnmem/"
        )
    return url.rstrip("/") + "/"


def canonical_url(site_url: str, output: str) -> str:
    """The absolute address of a page; index pages are addressed by their folder.

    >>> canonical_url("https://h.test/n/", "index.html"), canonical_url("https://t/", "faq.html")
    ('https://h.test/n/', 'https://t/faq.html')
    """
    return site_url + re.sub(r"(^|/)index\.html$", r"\1", output)


def navigation(pages: list[Page]) -> list[NavLink]:
    """The pages that ask for a place in the navigation (``nav`` front matter), in order.

    The home page always comes first, as "Calculator" unless it names itself.
    """
    listed = sorted(
        (p for p in pages if p.nav_order is not None or p.output == "index.html"),
        key=lambda p: (p.output != "index.html", p.nav_order or 0.0, p.title),
    )
    return [
        NavLink(
            p.output,
            p.nav_title if "nav_title" in p.meta or p.output != "index.html" else "Calculator",
            p.nav_group,
        )
        for p in listed
    ]


def sitemap_xml(urls: list[str]) -> bytes:
    """A sitemaps.org URL set listing ``urls``."""
    entries = "".join(f"  <url><loc>{html.escape(u)}</loc></url>\n" for u in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{entries}</urlset>\n"
    ).encode()


def robots_txt(site_url: str) -> bytes:
    """Let every crawler in and point it at the sitemap."""
    return f"User-agent: *\nAllow: /\n\nSitemap: {site_url}sitemap.xml\n".encode()


def relative_root(output: str) -> str:
    """The page-relative prefix that leads from ``output`` back to the site root.

    >>> relative_root("index.html"), relative_root("guide/index.html")
    ('./', '../')
    """
    depth = output.count("/")
    return "./" if depth == 0 else "../" * depth


# Elements whose text keeps its spaces as written (or may, under a white-space rule).
_KEEP_SPACES = re.compile(r"<(pre|textarea|script|style|code)\b.*?</\1>", re.S | re.I)


def compact_html(text: str) -> str:
    """The page without the templates' indentation: each line's leading spaces go, which
    renders the same (a run of white space between words or tags shows as one space, and a
    line break stays), except inside the elements that keep theirs, left as they are.

    >>> compact_html("<ul>\\n  <li>a</li>\\n</ul>\\n<pre>\\n  kept</pre>")
    '<ul>\\n<li>a</li>\\n</ul>\\n<pre>\\n  kept</pre>'
    """
    out, at = [], 0
    for kept in _KEEP_SPACES.finditer(text):
        out += [re.sub(r"\n[ \t]+", "\n", text[at : kept.start()]), kept.group(0)]
        at = kept.end()
    out.append(re.sub(r"\n[ \t]+", "\n", text[at:]))
    return "".join(out)


def render_page(
    env: jinja2.Environment, template: str, context: dict[str, Any], source: str
) -> bytes:
    """Render one template, turning a Jinja failure into a BuildError that names it; the
    output goes without its indentation (``compact_html``)."""
    try:
        return compact_html(env.get_template(template).render(context)).encode("utf-8")
    except jinja2.UndefinedError as error:
        raise BuildError(f"{source}: template {template}: {error.message}") from error
    except jinja2.TemplateError as error:
        raise BuildError(f"{source}: template {template}: {error}") from error


def build(
    out: Path,
    base_path: str = "/",
    root: Path = ROOT,
    templates: Path | None = None,
    content: Path | None = None,
    site_url: str | None = None,
) -> Site:
    """Build the whole site into ``out`` and return what was written."""
    base = normalise_base_path(base_path)
    site_url = normalise_site_url(site_url, base)
    templates = templates or root / "site_src" / "templates"
    static = root / "site_src" / "static"
    pyodide_dir = root / "node_modules" / "pyodide"
    missing = [name for name in PYODIDE_FILES if not (pyodide_dir / name).is_file()]
    if missing:
        raise BuildError(
            f"Pyodide core files missing from {pyodide_dir} ({', '.join(missing)}): run npm ci"
        )
    esbuild = root / "node_modules" / ".bin" / "esbuild"
    if not esbuild.is_file():
        raise BuildError(f"esbuild missing from {esbuild.parent}: run npm ci")

    # Load: content, the nnmem bundle, the assets and the prerendered default result.
    pages = load_content(content or root / "content")
    glossary = load_glossary(root / "content" / "glossary" / "components.md", list(COMPONENTS))
    bundle, later = bundle_nnmem(root / "nnmem")
    site = Site()
    bundle_name = f"assets/nnmem-{short_hash(bundle)}.zip"
    site.files[bundle_name] = bundle
    later_name = f"assets/nnmem-later-{short_hash(later)}.zip.xz"
    site.files[later_name] = later
    # The core's folder names its version, so a browser may keep it as long as it likes.
    core = f"pyodide-{pyodide_version(pyodide_dir)}/"
    assets = versioned_assets(static, site, esbuild, core)
    for name in PYODIDE_FILES:
        site.copies[f"{core}{name}"] = pyodide_dir / name
    stdlib = (pyodide_dir / STDLIB).read_bytes()
    site.files[f"{core}{STDLIB}"] = compile_bytecode(
        trim_stdlib(stdlib, read_stdlib_modules(root)), root, "stdlib"
    )
    del site.copies[f"{core}{STDLIB}"]
    default = prerender()

    # Render: every content page, then the 404 page with absolute URLs.
    env = make_environment(templates)
    common = {
        "site_name": SITE_NAME,
        "base_path": base,
        "assets": assets,
        "bundle": bundle_name,
        "later": later_name,
        "core": core,
        "sections": FORM_SECTIONS,
        "view_fields": VIEW_FIELDS,
        "start_fields": {f.key: f for f in START_FIELDS},
        "intent_blurbs": INTENT_BLURBS,
        "examples": [(label, example_attribute(fields)) for label, fields in EXAMPLES],
        "gpu_names": [card.name for card in catalog.gpus().values()],
        "presets": PRESETS,
        "gpu_groups": gpu_groups(),
        "precision_groups": precision_groups(),
        "compare_ready": [(key, label) for key, (label, _) in READY.items()],
        "values": DEFAULT_FIELDS,
        "result": default,
        "glossary": glossary,
        "nav": navigation(pages),
        "site_url": site_url,
    }
    for page in pages:
        context = {
            **common,
            "page": page,
            "root": relative_root(page.output),
            "canonical": canonical_url(site_url, page.output),
            "tool": tool_context(page),
        }
        site.files[page.output] = render_page(env, page.template, context, page.source.name)
    context = {**common, "page": None, "root": base, "canonical": ""}
    site.files["404.html"] = render_page(env, "404.html.j2", context, "404.html.j2")
    site.files["sitemap.xml"] = sitemap_xml([canonical_url(site_url, p.output) for p in pages])
    site.files["robots.txt"] = robots_txt(site_url)
    site.files[".nojekyll"] = b""

    # Write: only now does the output folder change.
    if out.exists():
        shutil.rmtree(out)
    for name, data in site.files.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for name, source in site.copies.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return site


def main(argv: list[str] | None = None) -> int:
    """Build from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_site", help="output folder")
    parser.add_argument(
        "--base-path", default="/", help="URL path the site is served under, e.g. /nnmem/"
    )
    parser.add_argument(
        "--site-url",
        default=None,
        help=f"the site's public address for canonical links and the sitemap, e.g. "
        f"https://host/nnmem/ (default: ${SITE_URL_ENV}, else {LOCAL_ORIGIN}<base path>)",
    )
    args = parser.parse_args(argv)
    try:
        site = build(args.out, args.base_path, site_url=args.site_url)
    except BuildError as error:
        print(f"build.py: error: {error}", file=sys.stderr)
        return 1
    print(f"built {len(site.files) + len(site.copies)} files into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
