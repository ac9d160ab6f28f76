"""FSDP2's MixedPrecisionPolicy dtypes as schema keys (fsdp_param_dtype,
fsdp_reduce_dtype).

torch/distributed/fsdp/_fully_shard/_fsdp_api.py MixedPrecisionPolicy: param_dtype is
the type of the unsharded (all-gathered) parameters, _fsdp_param.py
FSDPParam.init_unsharded_param (``self.param_dtype or self.orig_dtype``), and of the
forward's inputs (cast_forward_inputs); reduce_dtype is the type of the reduce-scatter's
input, _fsdp_collectives.py foreach_reduce (``reduce_dtype or grad_dtype``).

A generic 1B model of 8 units on 4 ranks: a unit is Ψ/8 = 125,000,000 values; the
shards are fp32 under AMP (Ψ/4 × 4 B).
"""

from __future__ import annotations

import json

import pytest

from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.result import Estimate
from nnmem.scenario import parse

PSI = 10**9
UNIT = PSI // 8
BILLION = {"params_millions": 1000, "hidden_size": 1024, "num_layers": 8, "seq_len": 128}
FSDP = {**BILLION, "stack": "fsdp2", "num_gpus": 4}


def run(**settings: str) -> Estimate:
    return estimate(parse({**FSDP, **settings}))


def phase(e: Estimate, name: str) -> dict[str, int]:
    return next(p for p in e.phases if p.name == name).by_key()


def test_auto_is_torchtitans_policy_under_amp():
    # bf16 gathered units, one unit's unsharded gradients reduced in fp32
    auto = run(precision="amp_bf16")
    named = run(precision="amp_bf16", fsdp_param_dtype="bf16", fsdp_reduce_dtype="fp32")
    assert auto.to_dict()["phases"] == named.to_dict()["phases"]
    assert phase(auto, "forward")["gathered_weights"] == UNIT * 2 == 250_000_000
    assert phase(auto, "backward")["gradients"] == UNIT * 4


def test_bf16_reduce_halves_the_unsharded_gradients():
    e = run(precision="amp_bf16", fsdp_reduce_dtype="bf16")
    # the reduce-scatter input: one unit's gradients at 2 B; the sharded gradients stay
    # in the stored fp32 (4Ψ/4)
    assert phase(e, "backward")["gradients"] == UNIT * 2 == 250_000_000
    assert phase(e, "optimizer_step")["gradients"] == PSI


def test_fp32_param_dtype_gathers_fp32_units_under_autocast():
    e = run(precision="amp_bf16", fsdp_param_dtype="fp32")
    # forward keeps the last all-gather output, backward the current and prefetched unit
    # on top: 4 B each; gradients then come in fp32, the reduce type being the param's
    assert phase(e, "forward")["gathered_weights"] == UNIT * 4 == 500_000_000
    assert phase(e, "backward")["gathered_weights"] == 3 * UNIT * 4
    assert phase(e, "backward")["gradients"] == UNIT * 4
    # autocast casts the gathered fp32 weights, as it does any fp32 weight
    assert "autocast_copies" in e.component_sizes()
    assert "autocast_copies" not in run(precision="amp_bf16").component_sizes()


LLAMA = {
    "model": "transformer",
    "config": {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 4096,
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": False,
    },
    "batch_size": 2,
    "seq_len": 128,
    "stack": "fsdp2",
    "num_gpus": 2,
}


def llama(**settings: str) -> Estimate:
    return estimate(parse({**LLAMA, **settings}))


def test_bf16_param_dtype_over_fp32_weights_computes_in_bf16():
    # precision fp32 with param_dtype bf16 is the AMP default's policy: the same step,
    # every activation in bf16 (cast_forward_inputs) and no autocast copy
    e = llama(precision="fp32", fsdp_param_dtype="bf16")
    amp = llama(precision="amp_bf16")
    assert e.to_dict()["phases"] == amp.to_dict()["phases"]
    # the root (2·4,096·256 + 256) and the last layer's output (725,504) in bf16
    assert phase(e, "forward")["gathered_weights"] == (2_097_408 + 725_504) * 2
    assert e.saved_activation_bytes < llama(precision="fp32").saved_activation_bytes


def test_fp32_param_dtype_over_bf16_weights_computes_in_fp32():
    e = llama(precision="bf16", fsdp_param_dtype="fp32")
    assert phase(e, "forward")["gathered_weights"] == (2_097_408 + 725_504) * 4
    assert phase(e, "optimizer_step")["weights"] == 4_999_424 * 2 // 2  # bf16 shards
    assert e.saved_activation_bytes == llama(precision="fp32").saved_activation_bytes


def test_keys_apply_to_fsdp2_only():
    for stack in ("plain", "ddp", "hf_trainer"):
        off = parse({**BILLION, "stack": stack}).inactive_fields()
        assert {"fsdp_param_dtype", "fsdp_reduce_dtype"} <= set(off)
    off = parse(FSDP).inactive_fields()
    assert not {"fsdp_param_dtype", "fsdp_reduce_dtype"} & set(off)


def test_bad_dtype_is_named():
    with pytest.raises(NnmemError) as raised:
        parse({**FSDP, "fsdp_reduce_dtype": "int8"})
    message = str(raised.value)
    assert "FSDP reduce dtype" in message
    assert "auto, fp32, bf16, fp16" in message


def test_cli_flags(capsys: pytest.CaptureFixture[str]):
    args = ["--params", "1000", "--hidden-size", "1024", "--layers", "8", "--seq-len", "128"]
    args += ["--stack", "fsdp2", "--num-gpus", "4", "--precision", "amp_bf16", "--json"]
    assert main([*args, "--fsdp-reduce-dtype", "bf16"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"]["fsdp_reduce_dtype"] == "bf16"
    backward = next(p for p in data["phases"] if p["name"] == "backward")
    assert backward["by_component"]["gradients"] == UNIT * 2
