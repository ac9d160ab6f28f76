"""Expert parallelism (``expert_parallel``) against values derived by hand.

Sources: Megatron-LM megatron/core/transformer/moe/moe_layer.py and experts.py (each
expert-parallel rank builds num_moe_experts // expert_model_parallel_size experts; the
router, attention, norms, embeddings and head are whole on every rank) and
token_dispatcher.py ``MoEAlltoAllTokenDispatcher`` (permuted tokens sent by all_to_all
into a buffer of the tokens received; balanced routing, no capacity factor).

The model is Mixtral-8x7B (catalog preset): h = 4,096, f = 14,336, L = 32, 8 experts,
top-2, 8 key/value heads of 128, V = 32,000.
- Each expert: gate, up and down, 3 · 4,096 · 14,336 = 176,160,768 parameters; the
  routed experts of all layers 8 · 32 · 176,160,768 = 45,097,156,608.
- The rest: embedding and head 2 · 32,000 · 4,096 = 262,144,000; per layer q and o
  2 · 4,096², k and v 2 · 1,024 · 4,096, router 8 · 4,096, two norms 2 · 4,096:
  41,984,000, times 32 = 1,343,488,000; the final norm 4,096. 1,605,636,096 in all.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.models.transformer.assembly import all_to_all_terms
from nnmem.models.transformer.context import context
from nnmem.scenario import parse
from nnmem.web.form import read

EXPERTS = 45_097_156_608
REST = 1_605_636_096
MX = {
    "model": "preset",
    "preset": "mixtral-8x7b",
    "mode": "training",
    "precision": "bf16",
    "stack": "ddp",
    "num_gpus": 8,
    "batch_size": 1,
    "seq_len": 4_096,
}


@pytest.mark.parametrize("ep", [1, 2, 4, 8])
def test_each_rank_holds_its_share_of_the_experts(ep: int) -> None:
    """Pure bf16 with AdamW: 2 bytes of weight and of gradient and 4 of m and v per
    parameter held, the experts over ep ranks and the rest whole. At ep 8:
    1,605,636,096 + 5,637,144,576 = 7,242,780,672 parameters, 14,485,561,344 B of weights."""
    held = REST + EXPERTS // ep
    sizes = estimate(parse({**MX, "expert_parallel": ep})).component_sizes()
    assert sizes["weights"] == 2 * held
    assert sizes["gradients"] == 2 * held
    assert sizes["optimizer_state"] == 4 * held


def test_mixtral_weights_at_two_four_and_eight_ranks() -> None:
    """The per-GPU bf16 weights written out: 2 · (1,605,636,096 + 45,097,156,608 / ep)."""
    weights = {
        ep: estimate(parse({**MX, "expert_parallel": ep})).component_sizes()["weights"]
        for ep in (2, 4, 8)
    }
    assert weights == {2: 48_308_428_800, 4: 25_759_850_496, 8: 14_485_561_344}


def test_all_to_all_holds_the_tokens_sent_and_received() -> None:
    """b = 1, s = 4,096, top-2, h = 4,096 in bf16: the permuted tokens sent and those
    received, 2 · 1 · 4,096 · 2 · 4,096 · 2 = 134,217,728 B."""
    (term,) = all_to_all_terms(context(parse({**MX, "expert_parallel": 2})))
    assert term.bytes == 134_217_728
    assert all_to_all_terms(context(parse(MX))) == []
    # In a layer's backward, beside its saved tensors; gone before forward's logits.
    phases = estimate(parse({**MX, "expert_parallel": 2, "checkpointing": "full"})).phases
    held = {p.name: [t.bytes for t in p.terms if "all-to-all" in t.label] for p in phases}
    assert held == {"forward": [], "loss": [], "backward": [134_217_728], "optimizer_step": []}


def test_fsdp2_shards_the_experts_over_the_rest_of_the_data_parallel_ranks() -> None:
    """torchtitan apply_fsdp shards a rank's E/ep experts over dp/ep ranks: the shard is
    the whole model's over 8 ranks, (1,605,636,096 + 45,097,156,608) / 8 = 5,837,849,088
    parameters, 11,675,698,176 B in bf16, at every degree. The block each all-gather
    brings holds E/ep experts: 41,984,000 + 8 · 176,160,768 / ep parameters, in bf16
    2,902,540,288 B at ep 1 and 436,289,536 B at ep 8."""
    fsdp = {**MX, "stack": "fsdp2"}
    for ep, block in ((1, 2_902_540_288), (8, 436_289_536)):
        phase = estimate(parse({**fsdp, "expert_parallel": ep})).phases[0]
        terms = {t.label: t.bytes for t in phase.terms}
        assert terms["sharded parameters"] == 11_675_698_176
        assert terms["all-gather output kept for the next group"] == block


def test_balanced_routing_keeps_each_rank_s_expert_activations() -> None:
    """Each rank receives as many token copies as it sends, so its saved activations
    are those of one rank without expert parallelism."""
    one = estimate(parse(MX)).saved_activation_bytes
    assert estimate(parse({**MX, "expert_parallel": 4})).saved_activation_bytes == one


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"expert_parallel": 3, "num_gpus": 6}, "divide the model's 8 experts"),
        ({"expert_parallel": 4, "num_gpus": 6}, "multiple of the expert-, tensor-"),
        ({"expert_parallel": 2, "tensor_parallel": 2, "num_gpus": 6}, "product (4)"),
        ({"expert_parallel": 2, "sharding": "zero2", "stack": "deepspeed"}, "fsdp2 stack"),
        ({"expert_parallel": 2, "sharding": "zero3", "stack": "plain"}, "sharding none"),
        ({"expert_parallel": 0}, "from 1 to 1,024"),
    ],
)
def test_bad_values_name_the_field(data: dict[str, Any], words: str) -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**MX, **data})
    assert "expert_parallel" in [p.key for p in caught.value.problems]
    assert words in str(caught.value)


def test_inactive_outside_moe_training() -> None:
    assert "expert_parallel" not in parse(MX).inactive_fields()
    dense = parse({**MX, "preset": "llama-3.1-8b"})
    assert "expert_parallel" in dense.inactive_fields()
    served = parse({"model": "preset", "preset": "mixtral-8x7b", "mode": "inference"})
    assert "expert_parallel" in served.inactive_fields()


def test_round_trip_cli_and_form(capsys: pytest.CaptureFixture[str]) -> None:
    s = parse({**MX, "expert_parallel": 8})
    assert s.to_dict(compact=True)["expert_parallel"] == 8
    assert parse(s.to_dict()) == s
    args = ["--preset", "mixtral-8x7b", "--mode", "training", "--precision", "bf16"]
    flags = ["--stack", "ddp", "--num-gpus", "8", "--batch-size", "1", "--seq-len", "4096"]
    assert main([*args, *flags, "--expert-parallel", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tensor_peak_bytes"] == estimate(s).tensor_peak_bytes
    fields = {
        "describe": "fields",
        "preset": "mixtral-8x7b",
        "mode": "training",
        "precision": "bf16",
        "stack": "ddp",
        "num_gpus": "8",
        "expert_parallel": "8",
    }
    reading = read(fields)
    assert reading.scenario is not None
    assert reading.scenario.expert_parallel == 8
    assert "expert_parallel" not in reading.inactive
