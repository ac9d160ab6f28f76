"""The batch layout (``packing``) against values derived by hand.

The model is Llama 3.2 1B (catalog preset): h = 2,048, L = 16, a = 32 heads of d = 64.
Sources:
- transformers masking_utils.py sdpa_mask: a (b, 1, s, s) bool mask once a row is
  padded (_ignore_causal_mask_sdpa skips it only when no token is masked); eager_mask
  builds its float mask for every layout; find_packed_sequence_indices reads packed rows
  from position_ids when no attention mask is given.
- torch aten/src/ATen/native/transformers/attention.cpp scaled_dot_product_attention:
  convert_boolean_attn_mask makes a bias of the query's type on every call, and
  preprocess_mask pads its last dimension to 16 for the memory-efficient kernel, whose
  backward reads it (derivatives.yaml: attn_bias saved).
- TRL trl/trainer/sft_config.py (packing, packing_strategy "bfd" by default,
  padding_free) and sft_trainer.py (padding_free = args.padding_free or packing with
  "bfd"; DataCollatorForLanguageModeling concatenates the rows and returns position_ids
  with no attention_mask); transformers data/data_collator.py DataCollatorWithFlattening.
- torchtune torchtune/modules/attention_utils.py packed_block_causal_mask: a flex-attention
  BlockMask where CUDA allows it, else create_block_causal_mask's (b, s, s) bool mask.
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.result import Estimate
from nnmem.scenario import Packing, parse
from nnmem.web.form import read

L, A, D = 16, 32, 64
LLAMA_1B = {
    "model": "preset",
    "preset": "llama-3.2-1b",
    "mode": "training",
    "precision": "amp_bf16",
    "batch_size": 4,
    "seq_len": 1000,
}
B, S = 4, 1000
S16 = 1008  # 1,000 rounded up to a multiple of 16


def run(**settings: Any) -> Estimate:
    return estimate(parse({**LLAMA_1B, **settings}))


def acts(e: Estimate, label: str) -> int:
    """The bytes of the forward phase's activations term whose label starts with ``label``."""
    terms = next(p for p in e.phases if p.name == "forward").terms
    return next(t.bytes for t in terms if t.key == "activations" and t.label.startswith(label))


LAYERS = "saved per layer"
OUTSIDE = "embeddings, final norm"


# --- the auto rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "used"),
    [
        ("hf_trainer", Packing.PADDED),
        ("trl_sft", Packing.PADDED),
        ("plain", Packing.OFF),
        ("ddp", Packing.OFF),
        ("fsdp2", Packing.OFF),
        ("deepspeed", Packing.OFF),
    ],
)
def test_auto_pads_under_the_hf_stacks_only(stack: str, used: Packing) -> None:
    extra = {"sharding": "zero2", "num_gpus": 2} if stack == "deepspeed" else {}
    s = parse({**LLAMA_1B, "stack": stack, **extra})
    assert s.packing is Packing.AUTO
    assert s.packing_used is used


def test_a_stated_layout_is_kept_under_any_stack() -> None:
    s = parse({**LLAMA_1B, "stack": "trl_sft", "packing": "padding_free"})
    assert s.packing_used is Packing.PADDING_FREE
    assert parse({**LLAMA_1B, "packing": "padded"}).packing_used is Packing.PADDED


def test_auto_under_the_trainer_is_padded_in_bytes() -> None:
    assert (
        run(stack="hf_trainer").total_bytes == run(stack="hf_trainer", packing="padded").total_bytes
    )
    assert run().total_bytes == run(packing="off").total_bytes


# --- padded rows ----------------------------------------------------------------------------


def test_padded_rows_save_a_bias_per_layer() -> None:
    """Each layer's SDPA call saves its own bias: b·s·s16 in bf16 (the query's type under
    autocast): 4 · 1,000 · 1,008 · 2 = 8,064,000 B, × 16 layers = 129,024,000 B."""
    assert acts(run(packing="padded"), LAYERS) - acts(run(packing="off"), LAYERS) == (
        L * B * S * S16 * 2
    )
    assert L * B * S * S16 * 2 == 129_024_000
    # the bool mask dies with the model's forward: nothing outside the layers
    assert acts(run(packing="padded"), OUTSIDE) == acts(run(packing="off"), OUTSIDE)


def test_a_sequence_of_a_multiple_of_16_is_not_padded() -> None:
    """s = 1,024: the bias is b·s² × 2 B a layer: 4 · 1,048,576 · 2 × 16 = 134,217,728 B."""
    padded, off = run(packing="padded", seq_len=1024), run(packing="off", seq_len=1024)
    assert acts(padded, LAYERS) - acts(off, LAYERS) == L * B * 1024 * 1024 * 2 == 134_217_728


def test_the_bias_takes_the_compute_type() -> None:
    """fp32 training: a 4-byte bias, 16 · 4 · 1,000 · 1,008 · 4 = 258,048,000 B."""
    padded, off = run(packing="padded", precision="fp32"), run(packing="off", precision="fp32")
    assert acts(padded, LAYERS) - acts(off, LAYERS) == L * B * S * S16 * 4 == 258_048_000


def test_checkpointing_keeps_the_bool_mask_not_the_biases() -> None:
    """A checkpointed layer keeps only its input; the bool mask is an input of every
    recompute, held once: b·s·s × 1 B = 4,000,000 B."""
    padded = run(packing="padded", checkpointing="full")
    off = run(packing="off", checkpointing="full")
    assert acts(padded, "saved checkpointed input") == acts(off, "saved checkpointed input")
    assert acts(padded, OUTSIDE) - acts(off, OUTSIDE) == B * S * S * 1 == 4_000_000


def test_per_op_checkpointing_recomputes_the_bias() -> None:
    """torchtitan's per-op policy saves the kernel's outputs, not its bias (an input made
    by the conversion, recomputed): only the bool mask is held."""
    padded = run(packing="padded", checkpointing="per_op")
    off = run(packing="off", checkpointing="per_op")
    assert acts(padded, "saved per-op") == acts(off, "saved per-op")
    assert acts(padded, OUTSIDE) - acts(off, OUTSIDE) == B * S * S


def test_selective_recompute_drops_the_bias_with_the_attention_core() -> None:
    padded = run(packing="padded", checkpointing="selective")
    off = run(packing="off", checkpointing="selective")
    assert acts(padded, LAYERS) == acts(off, LAYERS)


def test_eager_attention_is_the_same_padded_or_not() -> None:
    """eager_mask builds its float mask for every layout and the add saves none of it."""
    for layout in ("padded", "packed"):
        assert run(attention="eager", packing=layout).total_bytes == (
            run(attention="eager", packing="off").total_bytes
        )


# --- packed rows ------------------------------------------------------------------------------


def test_packed_under_the_trainer_holds_what_full_rows_hold() -> None:
    """TRL's wrapped packing: full rows, an all-ones attention mask, no 4-D mask."""
    for stack in ("hf_trainer", "trl_sft"):
        assert run(stack=stack, packing="packed").total_bytes == (
            run(stack=stack, packing="off").total_bytes
        )


def test_packed_under_the_plain_loop_holds_torchtune_s_block_mask() -> None:
    """Flex attention's BlockMask for b = 2, s = 4,096, n = 32 blocks a row: four (b, n)
    int32 counts (1,024 B) and four (b, n, n) int32 index tensors (32,768 B), with the
    document ids and the input positions, (b, s) int64 each (65,536 B): 164,864 B."""
    settings = {"batch_size": 2, "seq_len": 4096, "precision": "bf16"}
    packed, off = run(packing="packed", **settings), run(packing="off", **settings)
    blocks = 4 * 2 * 32 * 4 + 4 * 2 * 32 * 32 * 4
    positions = 2 * 2 * 4096 * 8
    assert acts(packed, OUTSIDE) - acts(off, OUTSIDE) == blocks + positions == 164_864
    assert acts(packed, LAYERS) == acts(off, LAYERS)


def test_packed_on_the_cpu_holds_a_bool_mask_and_a_bias_per_layer() -> None:
    """No flex attention off CUDA: create_block_causal_mask's (b, s, s) bool mask and the
    input positions in the batch (4,000,000 + 32,000 B), and each layer's fp32 bias,
    unpadded on the CPU: 16 · 4 · 1,000² · 4 = 256,000,000 B."""
    cpu = {"device": "cpu", "precision": "fp32"}
    packed, off = run(packing="packed", **cpu), run(packing="off", **cpu)
    assert acts(packed, OUTSIDE) - acts(off, OUTSIDE) == B * S * S + B * S * 8
    assert acts(packed, LAYERS) - acts(off, LAYERS) == L * B * S * S * 4 == 256_000_000


# --- padding-free ----------------------------------------------------------------------------


def test_padding_free_sdpa_grows_only_the_rotary_tables() -> None:
    """One row of b·s tokens: every per-token tensor keeps its bytes; the rotary cos and
    sin follow the position ids, (1, b·s, d) in place of (1, s, d), fp32 under autocast:
    2 · (4,000 − 1,000) · 64 · 4 = 1,536,000 B more."""
    flat, off = run(packing="padding_free"), run(packing="off")
    assert acts(flat, LAYERS) == acts(off, LAYERS)
    assert acts(flat, OUTSIDE) - acts(off, OUTSIDE) == 2 * (B * S - S) * D * 4 == 1_536_000


def test_padding_free_eager_scores_grow_with_the_batch() -> None:
    """Eager scores of one row of T = b·s tokens: a·T² against b·a·s² elements a layer;
    the fp32 softmax (4 B) and its bf16 cast (2 B) are saved: 16 · 6 · 32 · (4,000² −
    4 · 1,000²) = 36,864,000,000 B more."""
    flat = run(packing="padding_free", attention="eager")
    off = run(packing="off", attention="eager")
    grown = L * 6 * A * ((B * S) ** 2 - B * S**2)
    assert acts(flat, LAYERS) - acts(off, LAYERS) == grown == 36_864_000_000


# --- where the key applies, how it is read ------------------------------------------------------


def test_the_key_applies_to_a_decoder_language_model_in_training() -> None:
    assert "packing" not in parse(LLAMA_1B).inactive_fields()
    inference = {**LLAMA_1B, "mode": "inference", "precision": "bf16"}
    assert "packing" in parse(inference).inactive_fields()
    bert = {"model": "preset", "preset": "bert-base-uncased"}
    assert "packing" in parse(bert).inactive_fields()
    generic = {"model": "generic", "params_millions": 1000}
    assert "packing" in parse(generic).inactive_fields()


def test_a_bad_value_names_the_field_and_the_values() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**LLAMA_1B, "packing": "bfd"})
    (problem,) = caught.value.problems
    assert problem.key == "packing"
    assert problem.message == (
        'Packing must be one of auto, off, padded, packed, padding_free (got "bfd").'
    )


@pytest.mark.parametrize(
    ("raw", "value"),
    [("none", Packing.OFF), ("Padding-Free", Packing.PADDING_FREE), ("PACKED", Packing.PACKED)],
)
def test_aliases_and_case(raw: str, value: Packing) -> None:
    assert parse({**LLAMA_1B, "packing": raw}).packing is value


def test_the_schema_round_trip_keeps_the_layout() -> None:
    s = parse({**LLAMA_1B, "packing": "padding_free"})
    assert s.to_dict(compact=True)["packing"] == "padding_free"
    assert parse(s.to_dict()) == s
    assert "packing" not in parse(LLAMA_1B).to_dict(compact=True)  # auto, the default


def test_cli_flag(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--preset", "llama-3.2-1b", "--precision", "amp_bf16", "--batch-size", "4"]
    args += ["--seq-len", "1000", "--json"]
    assert main([*args, "--packing", "padded"]) == 0
    padded = capsys.readouterr().out
    assert f'"total_bytes": {run(packing="padded").total_bytes}' in padded
    assert main([*args, "--packing", "bfd"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "nnmem: error: --packing: Packing must be one of auto, off, padded, packed, "
        'padding_free (got "bfd").'
    ]


def test_the_form_reads_the_layout() -> None:
    fields = {
        "describe": "fields",
        "preset": "llama-3.2-1b",
        "mode": "training",
        "precision": "amp_bf16",
        "packing": "padding_free",
    }
    reading = read(fields)
    assert reading.scenario is not None
    assert reading.scenario.packing is Packing.PADDING_FREE
    assert "packing" not in reading.inactive
    inference = read({**fields, "mode": "inference", "precision": "bf16"})
    assert "packing" in inference.inactive


def test_the_estimate_says_which_layout_it_counts() -> None:
    assert any(n.startswith("Padded rows:") for n in run(packing="padded").notes)
    flat = run(packing="padding_free").notes
    assert any("one row of 4,000 tokens" in n for n in flat)
    assert not any(n.startswith(("Padded", "Packed", "Padding-free")) for n in run().notes)
