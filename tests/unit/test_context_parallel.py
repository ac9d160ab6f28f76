"""Context parallelism (``context_parallel``) against values derived by hand.

Sources: torch torch/distributed/tensor/experimental/_context_parallel/_attention.py
(``_context_parallel_buffers`` shards the inputs along the sequence;
``_templated_ring_attention_backward`` accumulates q, k and v gradients in fp32 and, with
the default all-gather rotater, gathers every rank's keys and values at once),
_load_balancer.py ``_HeadTailLoadBalancer`` (2·cp chunks), and torchtitan's
dp_shard_cp mesh (FSDP2 shards over the context-parallel ranks too).

The model is Llama 3.1 8B (catalog preset): h = q width = 4,096, L = 32, V = 128,256.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.models.transformer.assembly import ring_attention_terms
from nnmem.models.transformer.context import context
from nnmem.scenario import parse
from nnmem.solvers import max_seq_len
from nnmem.web.form import read

H, L, V = 4_096, 32, 128_256
TT = {
    "model": "preset",
    "preset": "llama-3.1-8b",
    "precision": "amp_bf16",
    "stack": "fsdp2",
    "num_gpus": 8,
    "checkpointing": "full",
}


def saved(**settings: Any) -> int:
    return estimate(parse({**TT, **settings})).saved_activation_bytes


def test_each_rank_runs_its_share_of_the_sequence() -> None:
    """With cp ranks, every activation and the loss are those of seq_len / cp tokens:
    the estimate at 65,536 tokens over 2 ranks is the one at 32,768 on one."""
    assert saved(seq_len=65_536, context_parallel=2) == saved(seq_len=32_768)
    assert saved(seq_len=262_144, context_parallel=8) == saved(seq_len=32_768)
    share = context(parse({**TT, "seq_len": 65_536, "context_parallel": 2})).sizes["s"]
    assert share == 32_768


def test_ring_attention_gathers_every_rank_s_keys_and_values() -> None:
    """b = 1, s_l = 32,768, q = 4,096, cp = 2: keys and values of both ranks in bf16,
    2·2·32,768·4,096·2 = 1,073,741,824 B, and fp32 dq, dk, dv, 3·32,768·4,096·4 =
    1,610,612,736 B: 2,684,354,560 B in all."""
    c = context(parse({**TT, "seq_len": 65_536, "context_parallel": 2}))
    (term,) = ring_attention_terms(c)
    assert term.bytes == 1_073_741_824 + 1_610_612_736 == 2_684_354_560
    assert ring_attention_terms(context(parse({**TT, "seq_len": 65_536}))) == []


def test_fsdp2_shards_over_the_context_parallel_ranks() -> None:
    s = parse({**TT, "seq_len": 65_536, "context_parallel": 4})
    assert s.data_parallel == 8
    assert any("4 context-parallel ranks holds 16,384" in n for n in estimate(s).notes)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"seq_len": 8_190, "context_parallel": 4}, "divisible by 8"),
        ({"seq_len": 8_160, "context_parallel": 3, "num_gpus": 8}, "must divide"),
        ({"seq_len": 8_192, "context_parallel": 2, "stack": "plain"}, "fsdp2 stack"),
        ({"context_parallel": 0}, "from 1 to 1,024"),
    ],
)
def test_bad_values_name_the_field(data: dict[str, Any], words: str) -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**TT, **data})
    assert [p.key for p in caught.value.problems] == ["context_parallel"]
    assert words in str(caught.value)


def test_inactive_outside_decoder_training() -> None:
    assert "context_parallel" not in parse(TT).inactive_fields()
    served = parse({"model": "preset", "preset": "llama-3.1-8b", "mode": "inference"})
    assert "context_parallel" in served.inactive_fields()
    bert = parse({"model": "preset", "preset": "bert-base-uncased"})
    assert "context_parallel" in bert.inactive_fields()


def test_longest_sequence_grows_by_whole_chunks() -> None:
    """The longest sequence is a multiple of 2·cp = 8 tokens."""
    n = max_seq_len(parse({**TT, "context_parallel": 4}), 80 * 10**9)
    assert n > 0
    assert n % 8 == 0


def test_round_trip_cli_and_form(capsys: pytest.CaptureFixture[str]) -> None:
    s = parse({**TT, "seq_len": 65_536, "context_parallel": 2})
    assert s.to_dict(compact=True)["context_parallel"] == 2
    assert parse(s.to_dict()) == s
    args = ["--preset", "llama-3.1-8b", "--precision", "amp_bf16", "--seq-len", "65536"]
    flags = ["--stack", "fsdp2", "--num-gpus", "8", "--set", "checkpointing=full"]
    assert main([*args, *flags, "--context-parallel", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tensor_peak_bytes"] == estimate(s).tensor_peak_bytes
    fields = {
        "describe": "fields",
        "preset": "llama-3.1-8b",
        "precision": "amp_bf16",
        "stack": "fsdp2",
        "num_gpus": "8",
        "context_parallel": "2",
    }
    reading = read(fields)
    assert reading.scenario is not None
    assert reading.scenario.context_parallel == 2
    assert "context_parallel" not in reading.inactive
