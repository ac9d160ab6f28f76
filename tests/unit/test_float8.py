"""FP8 training (``float8_training``, ``float8_all_gather``) against values derived by hand
from the stacks' code (nnmem/models/transformer/float8.py cites each):

* torchao float8_linear.py ``matmul_with_hp_or_float8_args.forward`` saves
  ``(input_hp, weight_hp_t)``: the saved activations do not change, and under autocast
  ``Float8Linear`` makes no 16-bit copy of a converted weight; the head is left in 16-bit
  (torchtitan float8.py ``module_filter_fn``).
* Transformer Engine module/linear.py ``_Linear.forward`` saves the FP8 input (1 B per
  value) and ``weight_t_fp8`` (1 B per linear parameter); each linear layer keeps a
  DelayedScaling ``fp8_meta``: 4 × (1,024 × 5 + 2 × 5) = 20,520 B.
* torchao fsdp_utils.py ``WeightWithDynamicFloat8CastTensor``: FSDP2 all-gathers the
  linear weights at 1 B per parameter.

The model is a two-layer Llama: h = 256, f = 704, 4 heads of 64, 2 KV heads (k and v are
128 wide), V = 1,000, head untied. Per layer the linear weights are q 65,536 + k 32,768 +
v 32,768 + o 65,536 + gate, up and down 3 × 180,224 = 737,280 values (1,474,560 for the
two layers, 14 linear layers); the two norms add 512, so an FSDP2 block is 737,792.
Batch 2 × 64 tokens: N = 128.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem import stacks
from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.models.transformer import float8
from nnmem.result import Estimate
from nnmem.scenario import Float8Training, parse
from nnmem.web.form import read

TINY = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "tie_word_embeddings": False,
}
BASE = {
    "model": "transformer",
    "config": TINY,
    "precision": "amp_bf16",
    "batch_size": 2,
    "seq_len": 64,
}
H, F, Q, N, L = 256, 704, 256, 2 * 64, 2
LINEAR = 2 * (65_536 + 32_768 + 32_768 + 65_536 + 3 * 180_224)  # 1,474,560
HEAD = 1_000 * 256


def run(**settings: Any) -> Estimate:
    return estimate(parse({**BASE, **settings}))


def _terms(e: Estimate, phase: str, key: str) -> list[tuple[str, int]]:
    (found,) = [p for p in e.phases if p.name == phase]
    return [(t.label, t.bytes) for t in found.terms if t.key == key]


# --- what each stack converts ------------------------------------------------------------


def test_the_converted_linear_weights_are_the_layers_2d_weights() -> None:
    model = parse(BASE).model
    assert float8.layer_linear_weights(model) == LINEAR == 1_474_560
    assert float8.linear_layers(model) == 7 * L


def test_te_scaling_state_is_20520_bytes_per_linear_layer() -> None:
    assert float8.META_BYTES == 4 * (1_024 * 5 + 2 * 5) == 20_520
    added = run(float8_training="te").component_sizes()["weights"]
    assert added - run().component_sizes()["weights"] == 14 * 20_520


# --- saved activations ---------------------------------------------------------------------


def test_torchao_saves_the_16_bit_inputs_as_nn_linear_does() -> None:
    assert run(float8_training="torchao").saved_activation_bytes == run().saved_activation_bytes


def test_te_saves_each_linear_input_in_fp8() -> None:
    """Under autocast a layer saves three 16-bit copies of the q, k, v input, two of the
    gate and up input and the down input; in FP8 each is 1 B a value, not 2, and the o
    projection's FP8 input comes beside the attention output SDPA keeps:
    N·(3h + 2h + f − q) = 128 × 1,728 = 221,184 B a layer."""
    saved = run().saved_activation_bytes - run(float8_training="te").saved_activation_bytes
    assert saved == L * N * (3 * H + 2 * H + F - Q) == 442_368


def test_te_saves_the_same_inputs_under_pure_bf16() -> None:
    """Pure bf16 saves one copy per input: N·(h + h + f − q) less a layer."""
    pure = {"precision": "bf16"}
    saved = run(**pure).saved_activation_bytes
    fp8 = run(**pure, float8_training="te").saved_activation_bytes
    assert saved - fp8 == L * N * (H + H + F - Q) == 245_760


def test_full_checkpointing_keeps_only_the_layer_inputs_either_way() -> None:
    full = {"checkpointing": "full"}
    assert (
        run(**full, float8_training="te").saved_activation_bytes
        == run(**full).saved_activation_bytes
    )


# --- weight copies -------------------------------------------------------------------------


def test_autocast_copies_without_fp8_are_every_matmul_weight() -> None:
    assert run().component_sizes()["autocast_copies"] == 2 * (LINEAR + HEAD) == 3_461_120


def test_torchao_leaves_only_the_heads_16_bit_copy() -> None:
    e = run(float8_training="torchao")
    assert e.component_sizes()["autocast_copies"] == 2 * HEAD == 512_000


def test_te_adds_an_fp8_transposed_copy_of_every_linear_weight() -> None:
    e = run(float8_training="transformer_engine")
    assert e.component_sizes()["autocast_copies"] == 2 * HEAD + LINEAR == 1_986_560
    assert dict(_terms(e, "backward", "autocast_copies")) == {
        "16-bit copy of the head's weight": 512_000,
        "FP8 transposed copies of the layers' linear weights, saved for backward": LINEAR,
    }


def test_te_full_checkpointing_saves_no_fp8_weight() -> None:
    """A checkpointed forward runs without grad, so _Linear saves nothing."""
    e = run(float8_training="te", checkpointing="full")
    for phase in ("forward", "backward"):
        assert _terms(e, phase, "autocast_copies") == [
            ("16-bit copy of the head's weight", 512_000)
        ]


def test_te_layer_sac_keeps_the_copies_of_the_layers_not_checkpointed() -> None:
    """every_n with n = 2 over 2 layers checkpoints one: half the copies wait."""
    e = run(float8_training="te", checkpointing="every_n", checkpoint_every=2)
    assert e.component_sizes()["autocast_copies"] == 2 * HEAD + LINEAR // 2


# --- backward casts ------------------------------------------------------------------------


def _casts(e: Estimate) -> int:
    (casts,) = [b for label, b in _terms(e, "backward", "temporaries") if "FP8 casts" in label]
    return casts


def test_torchao_eager_backward_holds_every_cast_of_its_largest_linear() -> None:
    """gate (256 → 704): grad_output twice, input and weight: 2·N·f + N·h + f·h."""
    assert _casts(run(float8_training="torchao")) == 2 * N * F + N * H + F * H == 393_216


def test_torchao_compiled_backward_frees_each_cast_after_its_gemm() -> None:
    """max(N·f + f·h, N·f + N·h) for the gate, the largest."""
    e = run(float8_training="torchao", precision="bf16", torch_compile=True)
    assert _casts(e) == max(N * F + F * H, N * F + N * H) == 270_336


def test_te_backward_casts_grad_output_and_its_transpose() -> None:
    assert _casts(run(float8_training="te")) == 2 * N * F == 180_224


# --- FSDP2 float8 all-gather ---------------------------------------------------------------


def test_float8_all_gather_halves_the_gathered_linear_weights() -> None:
    fsdp = {"stack": "fsdp2", "num_gpus": 2, "float8_training": "torchao"}
    plain = dict(_terms(run(**fsdp), "backward", "gathered_weights"))
    fp8 = dict(_terms(run(**fsdp, float8_all_gather=True), "backward", "gathered_weights"))
    block, norms = 737_280 + 512, 512
    assert plain["unsharded current block and 1 prefetched"] == 2 * block * 2
    assert fp8["unsharded current block and 1 prefetched"] == 2 * (737_280 + 2 * norms)
    assert fp8["all-gather output kept for the next group"] == 737_280 + 2 * norms
    # the root (embedding, final norm, head) is gathered in 16-bit either way
    key = "unsharded root (embeddings, final norm, head)"
    assert fp8[key] == plain[key] == 2 * (2 * HEAD + 256)


def test_torchtitan_float8_without_all_gather_leaves_e1_unchanged() -> None:
    """torchtitan's Llama 3.1 8B FSDP2 run, compiled, per-op AC (E1): Float8 without the
    all-gather saves the same tensors, as the measurements (77.0 and 76.8 GiB) say."""
    e1 = {
        "model": "preset",
        "preset": "llama-3.1-8b",
        "precision": "amp_bf16",
        "batch_size": 2,
        "seq_len": 8192,
        "checkpointing": "per_op",
        "stack": "fsdp2",
        "num_gpus": 8,
        "torch_compile": True,
    }
    off = estimate(parse(e1))
    fp8 = estimate(parse({**e1, "float8_training": "torchao"}))
    assert fp8.tensor_peak_bytes == off.tensor_peak_bytes


def test_e5_all_gather_takes_three_blocks_linear_bytes_off_the_peak() -> None:
    """E5 (64 H200): the kept all-gather output, the current and the prefetched block,
    each 218,103,808 linear weights at 1 B instead of 2."""
    e5 = {
        "model": "preset",
        "preset": "llama-3.1-8b",
        "precision": "amp_bf16",
        "batch_size": 2,
        "seq_len": 8192,
        "checkpointing": "per_op",
        "stack": "fsdp2",
        "num_gpus": 64,
        "torch_compile": True,
        "loss": "compiled",
        "float8_training": "torchao",
    }
    off = estimate(parse(e5)).tensor_peak_bytes
    on = estimate(parse({**e5, "float8_all_gather": True})).tensor_peak_bytes
    assert off - on == 3 * 218_103_808


def test_e5_32_to_64_gpus_drops_half_what_sharding_predicts() -> None:
    """Between E5's rows only the sharded states change, 16 B per parameter ÷ N: 1.87 GiB
    from 32 to 64 GPUs; the measurements drop 47.96 − 46.97 = 0.99 GiB (the 64-GPU miss)."""
    llama = stacks.ModelSizes(8_030_261_248, 218_112_000, 1_050_677_248, 525_336_576, units=32)

    def sharded(n: int) -> int:
        s = stacks.fsdp2(llama, gpus=n, compute_bytes=2, reduce_bytes=4)
        return s.gpu_bytes("optimizer_step") - s.by_key("optimizer_step")["temporaries"]

    drop = (sharded(32) - sharded(64)) / 2**30
    assert drop == pytest.approx(16 * 8_030_261_248 / 64 / 2**30, abs=1e-6)
    assert drop == pytest.approx(1.87, abs=0.005)
    measured = 47.96 - 46.97
    assert drop - measured == pytest.approx(0.88, abs=0.005)


# --- schema, validation, CLI and form ------------------------------------------------------


def test_aliases_and_round_trip() -> None:
    s = parse({**BASE, "float8_training": "TE"})
    assert s.float8_training is Float8Training.TRANSFORMER_ENGINE
    assert parse({**BASE, "float8_training": "ao"}).float8_training is Float8Training.TORCHAO
    assert parse(s.to_dict()) == s


def test_a_bad_value_names_the_field() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**BASE, "float8_training": "fp4"})
    (problem,) = caught.value.problems
    assert problem.key == "float8_training"
    assert problem.message == (
        'FP8 training must be one of off, torchao, transformer_engine (got "fp4").'
    )


def test_float8_all_gather_needs_fsdp2_and_torchao() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**BASE, "stack": "ddp", "num_gpus": 2, "float8_all_gather": True})
    (problem,) = caught.value.problems
    assert problem.key == "float8_all_gather"
    assert problem.message == (
        "FP8 all-gather is torchao's enable_fsdp_float8_all_gather: it needs the fsdp2 stack "
        "and float8_training torchao (got stack ddp, float8_training off): choose both, or "
        "turn it off."
    )
    with pytest.raises(NnmemError):
        parse({**BASE, "stack": "fsdp2", "float8_training": "te", "float8_all_gather": True})


def test_te_refuses_per_op_checkpointing() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**BASE, "float8_training": "te", "checkpointing": "per_op"})
    (problem,) = caught.value.problems
    assert problem.key == "float8_training"
    assert "per-op selective checkpointing" in problem.message


@pytest.mark.parametrize(
    ("settings", "off"),
    [
        ({}, {"float8_all_gather"}),
        ({"stack": "fsdp2", "float8_training": "torchao"}, set()),
        ({"stack": "fsdp2", "float8_training": "te"}, {"float8_all_gather"}),
        ({"finetune": "lora"}, {"float8_training", "float8_all_gather"}),
        ({"device": "cpu"}, {"float8_training", "float8_all_gather"}),
        ({"mode": "inference", "precision": "bf16"}, {"float8_training", "float8_all_gather"}),
    ],
)
def test_keys_show_only_where_they_apply(settings: dict[str, Any], off: set[str]) -> None:
    hidden = set(parse({**BASE, **settings}).inactive_fields())
    assert hidden & {"float8_training", "float8_all_gather"} == off


def test_cli_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--preset", "llama-3.2-1b", "--precision", "amp_bf16", "--seq-len", "256"]
    fsdp = [*args, "--stack", "fsdp2", "--num-gpus", "2"]
    fp8 = ["--float8-training", "torchao", "--float8-all-gather", "true"]
    assert main([*fsdp, *fp8, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"]["float8_training"] == "torchao"
    assert out["scenario"]["float8_all_gather"] is True
    assert main([*args, *fp8]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnmem: error: --float8-all-gather: FP8 all-gather is torchao's")


def test_form_controls_and_a_hidden_all_gather_does_not_block() -> None:
    fields = {"describe": "fields", "preset": "llama-3.2-1b", "precision": "amp_bf16"}
    shown = read({**fields, "stack": "fsdp2", "num_gpus": "2", "float8_training": "torchao"})
    assert {"float8_training", "float8_all_gather"}.isdisjoint(shown.inactive)
    plain = read({**fields, "float8_training": "torchao", "float8_all_gather": "true"})
    assert "float8_all_gather" in plain.inactive
    assert plain.scenario is not None
    assert not plain.problems
    assert plain.scenario.float8_training is Float8Training.TORCHAO
