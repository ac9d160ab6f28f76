"""What the pages say agrees with the engine and the sources they cite.

Each check holds a sentence that was once wrong: a formula printed next to a number it does
not give, a context longer than the model's, an allocator described wrongly, a published
measurement shown without its source.
"""

from __future__ import annotations

import html
import re
from fractions import Fraction
from pathlib import Path

import pytest

import build
import content_helpers
from content_helpers import example


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "_site"
    build.build(out)
    return out


def text(site: Path, page: str) -> str:
    """A page's visible text, tags removed, entities decoded."""
    raw = (site / page).read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))


def evaluate(formula: str, values: dict[str, int]) -> Fraction:
    """The bytes a printed formula such as ``(4·b·s·V + 8·b·s) B`` gives for ``values``."""
    expression = formula.replace(" B", "").replace("·", "*")
    for symbol, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expression = re.sub(rf"\b{re.escape(symbol)}\b", str(value), expression)
    assert re.fullmatch(r"[\d\s()+*]+", expression), expression
    return Fraction(eval(expression))  # digits, brackets, + and * only


@pytest.mark.parametrize("precision", ["fp32", "amp_bf16", "bf16"])
def test_the_logits_formula_gives_the_logits_number(precision: str) -> None:
    """The formula the pages print for the loss is the one that gives the engine's bytes."""
    e = example(
        model="preset", preset="llama-3-8b", precision=precision, batch_size=1, seq_len=4096
    )
    values = {"b": 1, "s": 4096, "V": 128_256}
    assert evaluate(e.formula("logits"), values) == e.bytes("logits")


def test_amp_logits_hold_ten_bytes_per_score() -> None:
    """transformers loss_utils.py ForCausalLMLoss: bf16 logits (2 B), their .float() copy
    (4 B) and cross_entropy's fp32 log-softmax (4 B): 10·b·s·V, plus 8·b·s of targets and
    per-token losses. Llama 3 8B at 4,096 tokens: 10 · 4,096 · 128,256 + 8 · 4,096."""
    e = example(model="preset", preset="llama-3-8b", precision="amp_bf16", seq_len=4096)
    assert e.bytes("logits") == 10 * 4096 * 128_256 + 8 * 4096


def test_formulas_page_prints_the_engine_formula(site: Path) -> None:
    page = text(site, "formulas.html")
    e = example(model="preset", preset="llama-3-8b", precision="amp_bf16", seq_len=4096)
    assert f"M_logits = {e.formula('logits')}" in page
    assert e.size("logits") in page
    assert "arrives at the same" not in page
    assert "18 bytes per parameter at most" in page


def test_llama_2_is_never_given_more_than_its_context(site: Path) -> None:
    """Llama 2's config.json: max_position_embeddings 4,096."""
    page = text(site, "faq.html")
    assert "Llama 2 7B (32 key/value heads) needs" in page
    assert re.search(
        r"Llama 2 7B \(32 key/value heads\) needs [\d.]+ [GM]B of cache for 4,096", page
    )


def test_the_allocator_is_described_as_its_source_allocates(site: Path) -> None:
    """c10/cuda/CUDACachingAllocator.cpp get_allocation_size: ≤ 1 MiB from 2 MiB segments,
    1-10 MiB from 20 MiB segments, larger rounded up to 2 MiB."""
    faq = text(site, "faq.html")
    assert "large ones in 2 MB segments" not in faq
    assert "1 MiB or less from 2 MiB segments" in faq
    assert "1 to 10 MiB from 20 MiB segments" in faq


def test_four_bit_share_is_computed(site: Path) -> None:
    q = example(model="preset", preset="llama-3-8b", mode="inference", precision="bf16")
    nf4 = content_helpers.percent(q.but(precision="nf4").bytes("weights"), q.bytes("weights"))
    for page in ("guide.html", "model-compression.html"):
        body = text(site, page)
        assert "a little more than a quarter" not in body
        assert nf4 in body


def test_gemma_3_cache_names_its_phase(site: Path) -> None:
    e = example(
        model="preset", preset="gemma-3-1b", mode="inference", precision="bf16", seq_len=32768
    )
    assert e.phase_bytes("kv_cache", "decode") < e.phase_bytes("kv_cache", "prefill")
    guide = text(site, "guide.html")
    assert e.phase_size("kv_cache", "prefill") in guide
    assert e.phase_size("kv_cache", "decode") in guide


def test_published_checks_hold_their_tolerance() -> None:
    """The table on the accuracy page: every published figure within its tolerance."""
    checks = content_helpers.published_checks()
    assert len(checks) == 13
    for check in checks:
        assert abs(check.error) <= check.tolerance, check.what


def test_accuracy_page_explains_every_gpu_row_marked_no(site: Path) -> None:
    cuda = content_helpers.accuracy_cuda()
    if cuda is None:
        pytest.skip("no GPU comparison in this checkout")
    page = text(site, "accuracy.html")
    for row in cuda.outside:
        assert cuda.cause(row), (row["case"], row["metric"])
        assert row["case"] in page
    assert "Published measurements" in page
    assert "no measured validation yet" in page


def test_bert_example_says_its_head_and_reconciles_4_26_gb(site: Path) -> None:
    page = text(site, "examples.html")
    assert "masked-language-model pre-training" in page
    assert "BertForSequenceClassification" in page
    assert "4.26 GB" in page


def test_gpu_guide_labels_its_units_and_formats(site: Path) -> None:
    page = text(site, "gpu-vram-guide.html")
    assert "Usable memory (GiB)" in page
    assert "65.0 FP16" in page  # T4: no BF16, its 65 TFLOPS are FP16
    assert "989.4 BF16" in page
    assert "BF16 TFLOPS" not in page


def test_gguf_is_disabled_while_the_mode_is_training(site: Path) -> None:
    page = (site / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<option value="q4_k_m"[^>]*data-inference-only disabled', page)
    assert not re.search(r'<option value="amp_bf16"[^>]*disabled', page)
