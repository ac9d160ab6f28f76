"""Sequence parallelism, loss parallelism and the compiled loss, against hand values.

Sources: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", arXiv 2205.05198, §4.2.2 (sequence parallelism divides what tensor parallelism
leaves whole by t); torchtitan torchtitan/models/llama3/infra/parallelize.py
apply_tp (SequenceParallel on the norms, PrepareModuleInput gathering the attention and
feed-forward inputs, the output head ColwiseParallel with Shard(-1) under loss_parallel);
torch/distributed/tensor/parallel/loss.py (the vocabulary-sharded cross-entropy);
torchtitan/components/loss.py build_cross_entropy_loss (the compiled loss), with what it
keeps measured by benchmarks/stacks/compiled_loss.py.

Llama 3.1 70B: L = 80, h = 8,192, head_dim 128. Llama 3.1 8B: V = 128,256.
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.models.transformer.assembly import activations
from nnmem.models.transformer.context import context
from nnmem.result import Estimate
from nnmem.scenario import parse
from nnmem.solvers import max_seq_len
from nnmem.web.form import read

L70, H70, D = 80, 8_192, 128
V = 128_256
S = 8_192
TP = 8


def _70b(**settings: Any) -> dict[str, Any]:
    return {
        "model": "preset",
        "preset": "llama-3.1-70b",
        "precision": "bf16",
        "batch_size": 1,
        "seq_len": S,
        "checkpointing": "full",
        "num_gpus": TP,
        "tensor_parallel": TP,
        **settings,
    }


def _8b(**settings: Any) -> Estimate:
    base = {"model": "preset", "preset": "llama-3.1-8b", "precision": "amp_bf16"}
    return estimate(parse({**base, "batch_size": 1, "seq_len": S, **settings}))


def term(e: Estimate, phase: str, label: str) -> int:
    """The bytes of the term whose label starts with ``label`` at ``phase``."""
    terms = next(p for p in e.phases if p.name == phase).terms
    return next(t.bytes for t in terms if t.label.startswith(label))


def acts(**settings: Any) -> dict[str, int]:
    found = activations(context(parse(_70b(**settings)))).terms
    return {t.label: t.bytes for t in found}


# --- sequence parallelism ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sp", "expected"),
    [
        (False, L70 * S * H70 * 2),  # 10,737,418,240 B: every rank keeps the whole input
        (True, L70 * S * H70 * 2 // TP),  # 1,342,177,280 B: Shard(1) over the 8 ranks
    ],
)
def test_checkpointed_layer_inputs_split_by_the_sequence(sp: bool, expected: int) -> None:
    """Full checkpointing keeps each layer's bf16 input, L·b·s·h × 2 B; with sequence
    parallelism each tensor-parallel rank keeps its 1/t of the sequence (§4.2.2)."""
    assert acts(sequence_parallel=sp)["saved checkpointed input"] == expected


def test_the_head_input_stays_gathered() -> None:
    """Outside the layers, the final norm's fp32 input (4 B), rsqrt (4 B per token) and
    bf16 output (2 B) are split by t; the head's input, which ColwiseParallel all-gathers
    (input_layouts=Shard(1)), stays whole (2 B); the rotary tables (4·s·d) and position
    ids (8·s) are replicated: (6/8 + 2)·s·h + 4/8·s + 4·s·d + 8·s = 188,813,312 B."""
    outside = acts(sequence_parallel=True)["embeddings, final norm and head inputs"]
    expected = (6 * S * H70) // TP + 2 * S * H70 + 4 * S // TP + 4 * S * D + 8 * S
    assert outside == expected == 188_813_312
    whole = acts()["embeddings, final norm and head inputs"]
    assert whole == 8 * S * H70 + 4 * S + 4 * S * D + 8 * S == 541_163_520


def test_per_op_checkpointing_keeps_the_partial_down_output_whole() -> None:
    """Per-op selective checkpointing saves the down projection's matmul output, which a
    RowwiseParallel layer makes whole on every rank before its reduce-scatter: with
    sequence parallelism only the block's input (2·b·s·h) is split; the q, v and gate
    outputs and the attention's are split by heads or MLP columns either way. The layers
    keep L·2·s·h·(1 − 1/8) = 9,395,240,960 B less."""
    off = acts(checkpointing="per_op")["saved per-op selective checkpoint"]
    on = acts(checkpointing="per_op", sequence_parallel=True)["saved per-op selective checkpoint"]
    assert off - on == L70 * (2 * S * H70 - 2 * S * H70 // TP) == 9_395_240_960


def test_sequence_parallelism_needs_a_divisible_sequence() -> None:
    with pytest.raises(NnmemError) as caught:
        parse(_70b(seq_len=8_190, sequence_parallel=True))
    assert [p.key for p in caught.value.problems] == ["sequence_parallel"]
    assert "8,190" in str(caught.value)


# --- loss parallelism --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss_parallel", "vocab"),
    [(False, V), (True, V // TP)],  # 128,256 / 8 = 16,032 per rank
)
def test_loss_parallel_shards_the_logits_by_vocabulary(loss_parallel: bool, vocab: int) -> None:
    """The eager loss saves the fp32 log-softmax (4·b·s·V) and the int64 labels (8·b·s);
    under loss_parallel V is the rank's vocabulary shard."""
    e = _8b(num_gpus=TP, tensor_parallel=TP, loss_parallel=loss_parallel)
    assert term(e, "loss", "log-softmax saved") == 4 * S * vocab + 8 * S


def test_loss_parallel_holds_one_fp32_shard_more_at_the_loss_and_in_backward() -> None:
    """aten's kernels: the bf16 logits and their fp32 copy (6·b·s·V) at the loss, two fp32
    gradients (8·b·s·V) in backward. torch's loss_parallel path (tensor/parallel/loss.py;
    benchmarks/stacks/loss_parallel.py measured 12.02 and 16.03 B a logit above the bf16
    logits): _log_softmax also keeps shifted = x − max (4·b·s·V'), and the fused backward
    holds zeros, exp(x) and their sum (12·b·s·V'), V' = 16,032."""
    plain = _8b(num_gpus=TP, tensor_parallel=TP)
    assert term(plain, "loss", "logits and their fp32 copy") == 6 * S * V
    assert term(plain, "backward", "gradients of the loss") == 8 * S * V
    e = _8b(num_gpus=TP, tensor_parallel=TP, loss_parallel=True)
    shard = V // TP
    assert term(e, "loss", "logits and their fp32 copy") == 6 * S * shard
    assert term(e, "loss", "shifted logits") == 4 * S * shard == 525_336_576
    assert term(e, "backward", "zeros, exp and their sum") == 12 * S * shard == 1_576_009_728


# --- the compiled loss -------------------------------------------------------------------


def test_compiled_loss_keeps_16_bit_logits_and_no_fp32_copy() -> None:
    """Compiled, the loss saves the bf16 logits (2·b·s·V), the int64 labels and two fp32
    values per token (16·b·s): 2,101,477,376 B; backward writes one bf16 gradient and one
    fp32 value per token: 2,101,379,072 B. The eager loss saves 4,202,758,144 B."""
    e = _8b(loss="compiled")
    assert term(e, "loss", "logits saved by the compiled") == 2 * S * V + 16 * S == 2_101_477_376
    assert term(e, "backward", "the logits' gradient") == 2 * S * V + 4 * S == 2_101_379_072
    eager = _8b()
    assert term(eager, "loss", "log-softmax saved") == 4 * S * V + 8 * S == 4_202_758_144


# --- the options themselves --------------------------------------------------------------


def test_the_flags_apply_only_with_tensor_parallelism() -> None:
    one = parse({"model": "preset", "preset": "llama-3.1-8b"})
    assert {"sequence_parallel", "loss_parallel"} <= set(one.inactive_fields())
    split = parse(_70b(sequence_parallel=True, loss_parallel=True))
    assert not {"sequence_parallel", "loss_parallel"} & set(split.inactive_fields())
    served = parse({**_70b(), "mode": "inference"})
    assert {"sequence_parallel", "loss_parallel"} <= set(served.inactive_fields())


def test_round_trip() -> None:
    s = parse(_70b(sequence_parallel=True, loss_parallel=True, loss="compiled"))
    data = s.to_dict(compact=True)
    assert data["sequence_parallel"] is True
    assert data["loss_parallel"] is True
    assert data["loss"] == "compiled"
    assert parse(data) == s


def test_cli_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--preset", "llama-3.1-70b", "--precision", "bf16", "--seq-len", "8192"]
    flags = ["--num-gpus", "8", "--set", "tensor_parallel=8", "--set", "checkpointing=full"]
    on = ["--sequence-parallel", "true", "--loss-parallel", "true", "--loss", "compiled"]
    assert main([*args, *flags, *on, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"sequence_parallel": true' in out
    assert '"loss_parallel": true' in out


def test_the_form_reads_and_hides_them() -> None:
    fields = {
        "describe": "fields",
        "preset": "llama-3.1-70b",
        "precision": "bf16",
        "num_gpus": "8",
        "tensor_parallel": "8",
        "sequence_parallel": "on",
        "loss_parallel": "on",
    }
    reading = read(fields)
    assert reading.scenario is not None
    assert reading.scenario.sequence_parallel
    assert reading.scenario.loss_parallel
    assert "sequence_parallel" not in reading.inactive
    hidden = read({**fields, "num_gpus": "1", "tensor_parallel": "1"})
    assert {"sequence_parallel", "loss_parallel"} <= set(hidden.inactive)


def test_the_longest_sequence_divides_over_the_ranks() -> None:
    s = parse(_70b(sequence_parallel=True, loss_parallel=True, num_gpus=64))
    longest = max_seq_len(s, 200 * 2**30, "h100-sxm-80gb")
    assert longest > 0
    assert longest % TP == 0
