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


def test_the_usual_fixes_together_are_one_suggestion() -> None:
    """The student's QLoRA (Llama 3.1 8B, NF4 base, batch 32 × 2,048 tokens, no
    checkpointing) on an RTX 4060 Ti 16GB needs 132 GB: checkpointing alone or halving the
    batch leave it far over. One suggestion turns checkpointing on and takes the largest
    batch that then fits, with accumulation keeping the effective batch of 32: derived
    here by trying each batch with the engine, and checked to be the first it offers."""
    from nnmem.catalog import gpu
    from nnmem.solvers import budget_for, judge

    student = parse(
        {
            "model": "preset",
            "preset": "llama-3.1-8b",
            "precision": "nf4",
            "finetune": "lora",
            "batch_size": 32,
            "seq_len": 2048,
        }
    )
    card = gpu("rtx-4060-ti-16gb")
    assert card is not None
    budget = budget_for(student, card.usable_bytes)
    assert total(student, card.id) > budget
    on = parse({**student.to_dict(), "checkpointing": "full", "grad_accum_steps": 2})
    largest = max(b for b in range(1, 33) if total(replace(on, batch_size=b), card.id) <= budget)
    steps = -(-32 // largest)
    after = total(replace(on, batch_size=largest, grad_accum_steps=steps), card.id)
    assert (largest, steps) == (2, 16)
    first = judge(student, card.id).suggestions[0]
    assert first.key == "checkpointing-batch"
    assert first.changes == {"checkpointing": "full", "batch_size": 2, "grad_accum_steps": 16}
    assert first.label == (
        "Batch 2 with gradient checkpointing and 16× gradient accumulation (same effective batch)"
    )
    assert (first.total_bytes, first.fits) == (after, True)
    # Each fix alone leaves it over the budget.
    alone = {s.key: s.fits for s in judge(student, card.id).suggestions}
    assert alone["checkpointing"] is False
    assert alone["accumulate"] is False


def test_no_combined_plan_where_checkpointing_alone_fits() -> None:
    """Where checkpointing alone brings the batch as set under the budget, the list has
    that single change and no combined one."""
    from nnmem.solvers import judge

    bert = parse(
        {
            "params_millions": 110,
            "hidden_size": 768,
            "num_layers": 12,
            "batch_size": 160,
            "seq_len": 512,
        }
    )
    fit = judge(bert, "rtx-4090")
    fixes = {s.key: s.fits for s in fit.suggestions}
    assert fit.fits is False
    assert fixes["checkpointing"] is True
    assert "checkpointing-batch" not in fixes
