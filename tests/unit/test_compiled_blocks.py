"""Compiled blocks (``torch_compile``) against values derived by hand.

Measured with torch 2.13 on the CPU (benchmarks/stacks/compiled_block.py, a torchtune
Llama block in bf16): under torch.compile each RMSNorm saves its 16-bit input and rstd in
place of its fp32 upcast and its normalized output, and SiLU(gate) is recomputed, so a
layer saves b·s·(2·f + 8·h) bytes less; under torchtitan's per-op policy the down
projection's output (b·s·h, 16-bit), which no backward op reads, is not kept.

The model is Llama 3.2 1B (catalog preset): h = 2,048, f = 8,192, L = 16.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.result import Estimate
from nnmem.scenario import Mode, ModelKind, inactive_fields, parse
from nnmem.web.form import read

H, F, L, S = 2_048, 8_192, 16, 1_024
LLAMA_1B = {"model": "preset", "preset": "llama-3.2-1b", "precision": "bf16", "seq_len": S}


def run(**settings: Any) -> Estimate:
    return estimate(parse({**LLAMA_1B, **settings}))


def saved_less(**settings: Any) -> int:
    """Saved activation bytes the eager step holds above the compiled one."""
    eager = run(**settings).saved_activation_bytes
    return eager - run(**settings, torch_compile=True).saved_activation_bytes


def test_compiled_layers_save_the_norm_inputs_in_16_bit_and_drop_silu() -> None:
    """Pure bf16, no checkpointing: L·b·s·(2f + 8h) = 16 × 1,024 × 32,768 B less."""
    assert saved_less() == 536_870_912
    assert saved_less(batch_size=2) == 2 * 536_870_912


def test_full_checkpointing_recomputes_one_compiled_layer() -> None:
    """Full AC saves only the layer input either way; the layer recomputed in backward is
    b·s·(2f + 8h) = 1,024 × 32,768 B smaller."""
    assert saved_less(checkpointing="full") == 0
    eager, compiled = run(checkpointing="full"), run(checkpointing="full", torch_compile=True)

    def recomputed(e: Estimate) -> int:
        backward = next(p for p in e.phases if p.name == "backward")
        return next(t.bytes for t in backward.terms if t.label.startswith("one layer recomputed"))

    assert recomputed(eager) - recomputed(compiled) == 33_554_432


def test_per_op_checkpointing_under_compile_drops_the_down_output() -> None:
    """torchtitan's policy saves the 7th mm (down projection); compiled, no backward op
    reads it: L·b·s·h × 2 B = 16 × 1,024 × 2,048 × 2 B less."""
    settings = {"precision": "amp_bf16", "stack": "fsdp2", "num_gpus": 8}
    assert saved_less(**settings, checkpointing="per_op") == 67_108_864


def test_autocast_keeps_the_eager_tensors_with_a_note() -> None:
    """Only 16-bit compute was measured: under autocast the rows stay eager."""
    assert saved_less(precision="amp_bf16") == 0
    notes = run(precision="amp_bf16", torch_compile=True).notes
    assert any("under autocast the eager tensors are shown" in n for n in notes)


@pytest.mark.parametrize(
    ("config", "applies"),
    [
        ({"model_type": "llama"}, True),
        ({"model_type": "gemma2"}, False),  # its normalized output stays fp32
        ({"model_type": "gpt2", "rms_norm": False, "gated_mlp": False}, False),
    ],
)
def test_the_key_applies_to_llama_style_blocks(config: dict[str, Any], applies: bool) -> None:
    s = parse({**LLAMA_1B, "torch_compile": True})
    model = s.model
    for key, value in config.items():
        object.__setattr__(model, key, value)
    off = inactive_fields(ModelKind.PRESET, Mode.TRAINING, model, s.finetune, s.precision)
    assert ("torch_compile" not in off) is applies


def test_bad_value_names_the_field() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**LLAMA_1B, "torch_compile": "yes please"})
    assert [p.key for p in caught.value.problems] == ["torch_compile"]


def test_round_trip_cli_and_form(capsys: pytest.CaptureFixture[str]) -> None:
    s = parse({**LLAMA_1B, "torch_compile": True})
    assert s.to_dict(compact=True)["torch_compile"] is True
    assert parse(s.to_dict()) == s
    args = ["--preset", "llama-3.2-1b", "--precision", "bf16", "--seq-len", str(S)]
    assert main([*args, "--torch-compile", "true", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"]["torch_compile"] is True
    assert out["tensor_peak_bytes"] == run(torch_compile=True).tensor_peak_bytes
    reading = read(
        {"describe": "fields", "preset": "llama-3.2-1b", "precision": "bf16", "torch_compile": "on"}
    )
    assert reading.scenario is not None
    assert reading.scenario.torch_compile
    assert "torch_compile" not in reading.inactive
