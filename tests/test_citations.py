"""Every document a citation names is in this repository or is a named framework's file.

Code, data, tests and pages cite primary sources: a paper, or a framework's file and
function. A citation of a note that is not in the repository leads nowhere, so the names of
Markdown documents mentioned anywhere must resolve to a file here, unless the citation says
which framework's documentation it is.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("nnmem", "content", "tests", "benchmarks", "site_src")
TOP_FILES = ("README.md", "build.py", "content_helpers.py", "Makefile", "pyproject.toml")
SUFFIXES = {".py", ".md", ".json", ".j2", ".js", ".mjs", ".html", ".toml", ".txt", ".sh"}
# Markdown files of other projects that a citation names with their project.
EXTERNAL_DOCS = {
    "model_memory_anatomy.md",  # huggingface/transformers docs/source/en
    "perf_train_gpu_one.md",  # huggingface/transformers docs/source/en
    "llm_tutorial_optimization.md",  # huggingface/transformers docs/source/en
    "README.md",  # e.g. llama.cpp tools/quantize/README.md; our own READMEs too
    "docs/gguf.md",  # ggml-org/ggml: the GGUF format specification
    "empirical-vllm-memory-results.md",  # llm-d: vLLM start-up logs on H100s
    "benchmarks/llama3_h100_202412_torchtitan.md",  # pytorch/torchtitan
    "benchmarks/llama3-8b_h200_202506_trainy-whitefiber.md",  # pytorch/torchtitan
    "benchmarks_03_2024.md",  # AnswerDotAI/fsdp_qlora
    "docs/source/accelerate/deepspeed.md",  # huggingface/peft: DeepSpeed guide
}
NOTES_OUTSIDE = re.compile(
    r"shared research|research/|anchors(-2026)?\.md|measuring-memory\.md|pyodide-recipe\.md"
    r"|formulas\.md\s*§"
)
MARKDOWN_NAME = re.compile(r"[\w./-]*[\w-]\.md\b")


def scanned_files(folders: tuple[str, ...] = SCANNED) -> list[Path]:
    files = [ROOT / name for name in TOP_FILES if (ROOT / name).is_file()]
    for folder in folders:
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.is_file()
            and p.suffix in SUFFIXES
            and "node_modules" not in p.parts
            and "__pycache__" not in p.parts
        ]
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


def repo_markdown() -> set[str]:
    names: set[str] = set()
    for path in ROOT.rglob("*.md"):
        if ".venv" in path.parts or "node_modules" in path.parts:
            continue
        rel = path.relative_to(ROOT).as_posix()
        names.add(rel)
        names.add(path.name)
    return names


def test_no_citation_names_a_note_outside_the_repository() -> None:
    found = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in NOTES_OUTSIDE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert not found, "citations of notes outside the repository:\n" + "\n".join(found)


def test_every_markdown_document_named_exists() -> None:
    known = repo_markdown() | EXTERNAL_DOCS
    missing = []
    # Tests build throwaway pages (about.md, x.md); their citations are checked above.
    for path in scanned_files(tuple(f for f in SCANNED if f != "tests")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in MARKDOWN_NAME.finditer(text):
            name = match.group(0)
            if "://" in text[max(0, match.start() - 60) : match.start()]:
                continue  # part of a URL
            tail = name.split("/")[-1]
            if name in known or tail in known or name.lstrip("./") in known:
                continue
            line = text.count("\n", 0, match.start()) + 1
            missing.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not missing, "documents named but not in the repository:\n" + "\n".join(missing)
