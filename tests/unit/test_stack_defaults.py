"""The settings a stack brings when they are not given (nnmem.scenario.stack_defaults).

TRL 1.16's SFTConfig defaults gradient_checkpointing=True and bf16=True
(trl/trainer/base_config.py _BaseConfig), and the CPU run of its defaults recorded both
(benchmarks/stacks/measured_stacks.json trl_sft.defaults). peft's
prepare_model_for_kbit_training defaults use_gradient_checkpointing=True
(src/peft/utils/other.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nnmem.estimate import estimate
from nnmem.scenario import Checkpointing, Precision, parse
from nnmem.web.form import follow_edit

ROOT = Path(__file__).resolve().parents[2]
BILLION = {"params_millions": 1000, "hidden_size": 1024, "num_layers": 8, "seq_len": 128}
SMALL_LLAMA: dict[str, Any] = {
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
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
    },
    "device": "cpu",
    "batch_size": 2,
    "seq_len": 128,
    "optimizer": "adamw",
}


def test_trl_sft_takes_sftconfigs_checkpointing_and_bf16():
    run = json.loads((ROOT / "benchmarks/stacks/measured_stacks.json").read_text())["cases"]
    measured = run["trl_sft.defaults"]
    assert (measured["gradient_checkpointing"], measured["bf16"]) == (True, True)
    s = parse({**BILLION, "stack": "trl_sft"})
    assert (s.checkpointing, s.precision) == (Checkpointing.FULL, Precision.AMP_BF16)
    # What is given stands.
    s = parse({**BILLION, "stack": "trl_sft", "checkpointing": "none", "precision": "fp32"})
    assert (s.checkpointing, s.precision) == (Checkpointing.NONE, Precision.FP32)
    # Other stacks keep the schema's defaults.
    for stack in ("plain", "hf_trainer", "fsdp2"):
        s = parse({**BILLION, "stack": stack})
        assert (s.checkpointing, s.precision) == (Checkpointing.NONE, Precision.FP32)


@pytest.mark.parametrize("stack", ["hf_trainer", "trl_sft"])
def test_qlora_on_the_trainers_checkpoints_as_peft_does(stack: str):
    qlora = {**SMALL_LLAMA, "finetune": "lora", "precision": "nf4", "stack": stack}
    assert parse(qlora).checkpointing is Checkpointing.FULL
    assert parse({**qlora, "checkpointing": "none"}).checkpointing is Checkpointing.NONE
    # the plain loop calls no prepare_model_for_kbit_training
    assert parse({**qlora, "stack": "plain"}).checkpointing is Checkpointing.NONE
    # 16-bit LoRA is not prepared for k-bit training
    lora = {**qlora, "precision": "amp_bf16"}
    expected = Checkpointing.FULL if stack == "trl_sft" else Checkpointing.NONE
    assert parse(lora).checkpointing is expected


@pytest.mark.parametrize(
    "given",
    [{}, {"checkpointing": "none"}, {"precision": "fp32"}, {"checkpointing": "per_op"}],
)
def test_compact_form_reads_back_the_same(given: dict[str, str]):
    s = parse({**BILLION, "stack": "trl_sft", **given})
    compact = s.to_dict(compact=True)
    assert parse(compact) == s
    for key, value in given.items():
        assert compact[key] == value
    if not given:
        assert "checkpointing" not in compact
        assert "precision" not in compact


def test_trl_default_keeps_each_layers_fp32_input():
    # Checkpointing every layer, torch's checkpoint keeps only each layer's input: under
    # autocast over fp32 weights the residual stream is fp32, b·s·h·4 = 2·128·256·4 =
    # 262,144 B a layer, so two layers more hold 524,288 B more.
    def saved(layers: int) -> int:
        config = {**SMALL_LLAMA["config"], "num_hidden_layers": layers}
        return estimate(
            parse({**SMALL_LLAMA, "config": config, "stack": "trl_sft"})
        ).saved_activation_bytes

    assert saved(4) - saved(2) == 2 * 2 * 128 * 256 * 4 == 524_288


def test_form_follows_a_switch_to_trl():
    fields = {"changed": "stack", "stack": "trl_sft", "precision": "fp32", "checkpointing": "none"}
    assert follow_edit(fields) == {"checkpointing": "full", "precision": "amp_bf16"}
    kept = {**fields, "precision": "bf16", "checkpointing": "every_n"}
    assert follow_edit(kept) == {}
