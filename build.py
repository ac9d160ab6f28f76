"""Build the static site: content/*.md through site_src/ templates into _site/.

    python build.py [--out _site] [--base-path /nnmem/]

Phases, in order: clean the output folder, load the content, compute the prerendered
results with nnmem, render every page, then write pages, assets, the Pyodide core and
the nnmem bundle. Everything is gathered before anything is written, so a template
error leaves no half-built site behind.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markdown

from nnmem.estimate import estimate
from nnmem.scenario import parse
from nnmem.web import DEFAULT_SCENARIO, FORM, render

ROOT = Path(__file__).resolve().parent
PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
SITE_NAME = "nnmem"
# Fixed zip timestamps make the bundle, and so its content hash, reproducible.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """The site cannot be built; the message says what to fix."""


@dataclass(frozen=True)
class Page:
    """One content page: where it goes and what it says."""

    source: Path
    output: str  # path inside the site, e.g. "index.html"
    template: str
    title: str
    description: str
    body_html: str


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


def load_content(content_dir: Path) -> list[Page]:
    """Read every content/*.md page with its front matter."""
    pages = []
    for source in sorted(content_dir.glob("*.md")):
        meta, body = read_front_matter(source.read_text(encoding="utf-8"))
        missing = {"title", "description"} - meta.keys()
        if missing:
            raise BuildError(f"{source.name}: front matter lacks {', '.join(sorted(missing))}")
        html = markdown.markdown(
            body, extensions=["tables", "fenced_code", "attr_list", "toc"], output_format="html"
        )
        pages.append(
            Page(
                source=source,
                output=meta.get("output", f"{source.stem}.html"),
                template=meta.get("template", "page.html.j2"),
                title=meta["title"],
                description=meta["description"],
                body_html=html,
            )
        )
    return pages


def bundle_nnmem(package_dir: Path) -> bytes:
    """Zip the nnmem package (sources and data, no caches) for Pyodide to unpack."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package_dir.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            name = path.relative_to(package_dir.parent).as_posix()
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def short_hash(data: bytes) -> str:
    """The first 10 hex digits of the data's SHA-256, for cache-busting names."""
    return hashlib.sha256(data).hexdigest()[:10]


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


def relative_root(output: str) -> str:
    """The page-relative prefix that leads from ``output`` back to the site root.

    >>> relative_root("index.html"), relative_root("guide/index.html")
    ('./', '../')
    """
    depth = output.count("/")
    return "./" if depth == 0 else "../" * depth


def render_page(
    env: jinja2.Environment, template: str, context: dict[str, Any], source: str
) -> bytes:
    """Render one template, turning a Jinja failure into a BuildError that names it."""
    try:
        return env.get_template(template).render(context).encode("utf-8")
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
) -> Site:
    """Build the whole site into ``out`` and return what was written."""
    base = normalise_base_path(base_path)
    templates = templates or root / "site_src" / "templates"
    static = root / "site_src" / "static"
    pyodide_dir = root / "node_modules" / "pyodide"
    missing = [name for name in PYODIDE_FILES if not (pyodide_dir / name).is_file()]
    if missing:
        raise BuildError(
            f"Pyodide core files missing from {pyodide_dir} ({', '.join(missing)}): run npm ci"
        )

    # Load: content, the nnmem bundle, the assets and the prerendered default result.
    pages = load_content(content or root / "content")
    bundle = bundle_nnmem(root / "nnmem")
    site = Site()
    bundle_name = f"assets/nnmem-{short_hash(bundle)}.zip"
    site.files[bundle_name] = bundle
    assets: dict[str, str] = {}
    for path in sorted(static.iterdir()):
        data = path.read_bytes()
        site.files[f"assets/{path.name}"] = data
        assets[path.name] = f"assets/{path.name}?v={short_hash(data)}"
    for name in PYODIDE_FILES:
        site.copies[f"pyodide/{name}"] = pyodide_dir / name
    default = render(estimate(parse(DEFAULT_SCENARIO)))

    # Render: every content page, then the 404 page with absolute URLs.
    env = make_environment(templates)
    common = {
        "site_name": SITE_NAME,
        "base_path": base,
        "assets": assets,
        "bundle": bundle_name,
        "form": FORM,
        "values": DEFAULT_SCENARIO,
        "result": default,
    }
    for page in pages:
        context = {**common, "page": page, "root": relative_root(page.output)}
        site.files[page.output] = render_page(env, page.template, context, page.source.name)
    context = {**common, "page": None, "root": base}
    site.files["404.html"] = render_page(env, "404.html.j2", context, "404.html.j2")
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
    args = parser.parse_args(argv)
    try:
        site = build(args.out, args.base_path)
    except BuildError as error:
        print(f"build.py: error: {error}", file=sys.stderr)
        return 1
    print(f"built {len(site.files) + len(site.copies)} files into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
