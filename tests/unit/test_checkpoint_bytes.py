"""The checkpoint's stored bytes as the weights term (the ``checkpoint_bytes`` key).

The expected figures are the headers' own bytes: a GGUF tensor takes ``ne[0] / block ×
block bytes`` per row (ggml ``type_traits``), a safetensors tensor numel × its dtype's
bytes; the fixtures are the ones tests/unit/test_readers.py writes.
"""

from __future__ import annotations

import json

import pytest
from test_readers import gguf, llama_31_8b_gguf, safetensors

from nnmem import NnmemError, estimate, parse
from nnmem.readers import read_gguf, read_header
from nnmem.readers.checkpoint import QUANTIZED, SCALES, WEIGHTS, from_gguf, from_safetensors


def _weights(data: dict[str, object]) -> tuple[int, list[str]]:
    component = estimate(parse(data)).component("weights")
    return component.bytes, [t.label for t in component.terms]


def _llama_q4km() -> dict[str, object]:
    meta, tensors = llama_31_8b_gguf()
    header, total = gguf(meta, tensors, data=False)
    return from_gguf(read_gguf(header, "Llama-3.1-8B-Q4_K_M.gguf", size=total)).scenario


def test_a_gguf_counts_its_tensors_to_the_byte() -> None:
    scenario = _llama_q4km()
    q4k, q6k_row, f32 = 2_304, 3_360, 4 * 4096 * 65
    by_type = {
        "Q4_K": q4k * (128_256 + 32 * (4096 + 1024 + 4096 + 14336 * 2)),
        "Q6_K": q6k_row * (32 * 1024 + 128_256) + 11_760 * 32 * 4096,
        "F32": f32,
    }
    assert scenario["precision"] == "q4_k_m"
    assert scenario["checkpoint_bytes"] == dict(sorted(by_type.items(), key=lambda kv: -kv[1]))
    got, labels = _weights({**scenario, "mode": "inference"})
    assert got == sum(by_type.values())
    assert labels == [f"{k} as stored in the checkpoint" for k in scenario["checkpoint_bytes"]]
    # Without the headers the Q4_K_M whole-file average is used: a different figure.
    average, _ = _weights({**scenario, "mode": "inference", "checkpoint_bytes": None})
    assert average != got


def test_tensor_parallel_divides_the_stored_bytes() -> None:
    scenario = {**_llama_q4km(), "mode": "inference", "num_gpus": 2, "tensor_parallel": 2}
    got, _ = _weights(scenario)
    parts = _llama_q4km()["checkpoint_bytes"]
    assert isinstance(parts, dict)
    assert got == sum(-(-n // 2) for n in parts.values())


def test_gptq_uses_its_packed_bytes_and_scales() -> None:
    p = "model.layers.0.mlp.up_proj."
    h = read_header(
        safetensors(
            [
                (p + "qweight", "I32", [32, 512]),
                (p + "qzeros", "I32", [2, 64]),
                (p + "scales", "F16", [2, 512]),
                (p + "g_idx", "I32", [256]),
                ("model.norm.weight", "F16", [256]),
            ]
        )
    )
    got = from_safetensors([h], {"quantization_config": {"quant_method": "gptq", "bits": 4}})
    parts = {QUANTIZED: 65_536, SCALES: 3_584, WEIGHTS: 512}
    assert got.scenario["checkpoint_bytes"] == parts
    assert got.scenario["precision"] == "gptq"
    generic = {"params_millions": 0.131328, "hidden_size": 256, "num_layers": 1}
    weights, labels = _weights({**generic, **got.scenario, "model": "generic", "mode": "inference"})
    assert weights == 65_536 + 3_584 + 512
    assert labels == [f"{k} as stored in the checkpoint" for k in parts]


def test_a_float_checkpoint_carries_no_bytes_and_a_float_precision_ignores_them() -> None:
    h = read_header(safetensors([("model.embed_tokens.weight", "BF16", [8, 4])]))
    assert "checkpoint_bytes" not in from_safetensors([h]).scenario
    stored = {"weights": 123}
    data = {"params_millions": 1, "mode": "inference", "checkpoint_bytes": stored}
    assert _weights({**data, "precision": "bf16"})[0] == 2_000_000
    assert _weights({**data, "precision": "int8"})[0] == 123
    assert "checkpoint_bytes" in parse({**data, "precision": "bf16"}).inactive_fields()
    assert "checkpoint_bytes" not in parse({**data, "precision": "int8"}).inactive_fields()


def test_a_qlora_base_is_the_stored_bytes() -> None:
    data = {
        "model": "preset",
        "preset": "llama-3.1-8b",
        "precision": "nf4",
        "finetune": "lora",
        "checkpoint_bytes": {"quantized weights": 4_000_000_000, "weights": 1_000_000_000},
    }
    base = estimate(parse(data)).component("weights").terms[0]
    assert (base.label, base.bytes) == ("frozen base weights", 5_000_000_000)
    without = estimate(parse({**data, "checkpoint_bytes": None})).component("weights")
    assert without.terms[0].bytes != 5_000_000_000  # the nf4 average otherwise


def test_the_key_reads_json_text_and_round_trips() -> None:
    text = json.dumps({"Q4_K": 10, "F32": "12"})
    s = parse(
        {"params_millions": 1, "precision": "q4_k_m", "mode": "inference", "checkpoint_bytes": text}
    )
    assert s.checkpoint_bytes == (("Q4_K", 10), ("F32", 12))
    assert s.to_dict()["checkpoint_bytes"] == {"Q4_K": 10, "F32": 12}
    assert parse(s.to_dict()) == s
    assert "checkpoint_bytes" not in parse({"params_millions": 1}).to_dict()


@pytest.mark.parametrize(
    ("raw", "part"),
    [
        ("[1, 2]", "with 1 to 64 entries"),
        ({}, None),
        ({"w": -1}, 'got -1 for "w"'),
        ({"w": 1.5}, 'got 1.5 for "w"'),
        ({"w": True}, 'got true for "w"'),
        ({"w": 2**51}, "whole numbers from 0 to 1,125,899,906,842,624"),
        ({"": 1}, "each name is 1 to 64 characters"),
        ({str(i): 1 for i in range(65)}, "with 1 to 64 entries"),
        ("{", "Checkpoint bytes is not valid JSON"),
        ("[" * 5000, "nested too deeply"),
    ],
)
def test_bad_checkpoint_bytes_name_the_field(raw: object, part: str | None) -> None:
    data = {"params_millions": 1, "mode": "inference", "precision": "int8"}
    if part is None:
        assert parse({**data, "checkpoint_bytes": raw}).checkpoint_bytes == ()
        return
    with pytest.raises(NnmemError) as caught:
        parse({**data, "checkpoint_bytes": raw})
    problem = caught.value.problems[0]
    assert problem.field == "checkpoint_bytes"
    assert part in problem.message
