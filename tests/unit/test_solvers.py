"""Solvers: the largest batch and sequence, the fewest GPUs, what to change to fit."""

from __future__ import annotations

from dataclasses import replace

from nnmem import GenericModel, Scenario, parse
from nnmem.solvers import fits, max_batch, max_seq_len, min_gpus, suggestions, total

BERT = Scenario(GenericModel(110_000_000, 768, 12), batch_size=32, seq_len=128)
GIB = 2**30
OVERHEAD = 2 * (4096 * 1024 * 2 + 16 * 1024 * 8) + 740 * 2**20  # cuBLAS ×2 + context


def test_max_batch_solves_the_forward_line() -> None:
    """Forward peak: 1,320,000,000 B of weights and Adam state + 77,856,768 B per sample
    (12 × 128 × 768 × 66), plus 5% reserve and the fixed overheads (two cuBLAS
    workspaces, 17,039,360 B, and the 740 MiB context). In 16 GiB:
    (17,179,869,184 − 792,985,600) / 1.05 = 15,606,555,794 B → (15,606,555,794 − 1.32e9) /
    77,856,768 = 183.5 → 183."""
    budget = 16 * GIB
    assert max_batch(BERT, budget) == 183
    assert fits(replace(BERT, batch_size=183), budget)
    assert not fits(replace(BERT, batch_size=184), budget)


def test_max_seq_len() -> None:
    """Same line in the sequence: 19,464,192 B per token at batch 32:
    14,286,555,794 / 19,464,192 = 733.99 → 733 tokens."""
    budget = 16 * GIB
    assert max_seq_len(BERT, budget) == 733
    assert not fits(replace(BERT, seq_len=734), budget)


def test_nothing_fits_gives_zero() -> None:
    assert max_batch(BERT, 1 * GIB) == 0
    assert max_seq_len(BERT, 1 * GIB) == 0


def test_learned_positions_cap_the_sequence() -> None:
    gpt2 = parse({"model": "preset", "preset": "gpt2", "precision": "bf16"})
    assert max_seq_len(gpt2, 80 * GIB) == 1024


def test_fewest_gpus_with_zero3() -> None:
    llama = parse(
        {"model": "preset", "preset": "llama-3.1-8b", "precision": "amp_bf16", "seq_len": 4096}
    )
    budget = 80 * GIB
    plan = min_gpus(llama, budget)
    assert plan is not None
    assert plan.sharding.value == "zero3"
    assert fits(plan, budget)
    assert not fits(replace(plan, num_gpus=plan.num_gpus - 1), budget)


def test_fewest_gpus_for_inference_uses_tensor_parallelism() -> None:
    llama = parse(
        {
            "model": "preset",
            "preset": "llama-3.1-70b",
            "mode": "inference",
            "precision": "bf16",
            "seq_len": 4096,
        }
    )
    plan = min_gpus(llama, 80 * GIB)
    assert plan is not None
    assert (plan.tensor_parallel, plan.num_gpus) == (2, 2)


def test_suggestions_are_ranked_by_risk_then_by_what_they_save() -> None:
    """Pure bf16 halves everything: peak 220 + 440 + 1,283 MB (34 B activations) against
    3,811 MB, the largest saving; but without fp32 master weights small updates round away
    (Zamirai et al. 2020, arXiv 2010.06192), so it ranks after every exact or low-risk
    change. Checkpointing is exact and comes first."""
    found = suggestions(BERT, 3 * GIB)
    keys = [s.key for s in found]
    assert keys[0] == "checkpointing"
    assert found[0].risk == "none"
    bf16 = next(s for s in found if s.key == "bf16")
    assert bf16.risk == "high"
    assert bf16.saved_bytes == max(s.saved_bytes for s in found)
    assert all(s.risk != "high" for s in found[: keys.index("bf16")])
    assert "lora" not in keys  # a bare parameter count has no layers to adapt
    base = total(BERT)
    for s in found:
        after = total(parse({**BERT.to_dict(), **s.changes}))
        assert s.saved_bytes == base - after > 0
        assert s.fits == (after <= 3 * GIB)
        assert s.risk_note
    order = ["none", "low", "medium", "high"]
    ranks = [(order.index(s.risk), -s.saved_bytes) for s in found]
    assert ranks == sorted(ranks)


def test_suggestions_for_inference_quantize() -> None:
    llama = parse(
        {
            "model": "preset",
            "preset": "llama-3.1-8b",
            "mode": "inference",
            "precision": "bf16",
            "seq_len": 8192,
        }
    )
    keys = {s.key for s in suggestions(llama, 16 * GIB)}
    assert {"quantize-nf4_dq", "quantize-awq", "kv-fp8", "shorter"} <= keys


def test_a_typed_capacity_is_judged_as_the_catalog_card_of_that_size() -> None:
    """An 8 GB card typed in is read by the catalog's rule (nnmem/data/README.md, "Memory"):
    8 GiB = 8,589,934,592 B, all usable as no driver reserve is published, the RTX 4060's
    usable memory. Everything judged on it equals the RTX 4060's verdict, solvers and
    suggestions, for the hobbyist's Llama 3.1 8B in BF16 at 8,192 tokens (it does not fit)."""
    from nnmem.solvers import judge

    s = parse(
        {
            "model": "preset",
            "preset": "llama-3.1-8b",
            "mode": "inference",
            "precision": "bf16",
            "batch_size": 1,
            "seq_len": 8192,
        }
    )
    typed, card = judge(s, "custom-8gb"), judge(s, "rtx-4060")
    assert typed.usable == card.usable == 8 * GIB
    assert typed.budget == card.budget == 8 * GIB * 9 // 10  # 10% headroom kept free
    assert not typed.fits
    assert typed.gpu_name == "Custom 8 GB card"
    other = {"gpu", "gpu_name"}
    assert {k: v for k, v in typed.to_dict().items() if k not in other} == {
        k: v for k, v in card.to_dict().items() if k not in other
    }
    assert typed.suggestions
    assert typed.suggestions == card.suggestions
