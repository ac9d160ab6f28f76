"""python -m nnmem: flags, scenario files, JSON output and errors that name the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnmem.cli import main


def test_llama_inference_from_the_brief(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "7000", "--precision", "fp16", "--mode", "inference"]) == 0
    out = capsys.readouterr().out
    assert "Model weights = P × 2 B = 7,000,000,000 × 2 B = 14.00 GB" in " ".join(out.split())
    assert "Assumed hidden dimension 4,204 and 33 layers" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--params",
        "110",
        "--hidden-size",
        "768",
        "--layers",
        "12",
        "--batch-size",
        "32",
        "--seq-len",
        "128",
        "--json",
    ]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_bytes"] == 4_251_416_576
    assert {c["key"]: c["bytes"] for c in data["components"]}["optimizer_state"] == 880_000_000


def test_scenario_file_with_flag_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bert.json"
    path.write_text(
        json.dumps(
            {
                "params_millions": 110,
                "hidden_size": 768,
                "num_layers": 12,
                "batch_size": 32,
                "seq_len": 128,
            }
        )
    )
    assert main(["--scenario", str(path), "--batch-size", "16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"]["batch_size"] == 16
    # activations halve with the batch: 2,491,416,576 / 2
    assert data["components"][3]["bytes"] == 1_245_708_288


def test_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "0", "--mode", "train"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "nnmem: error: --params: Model size must be a number of millions of parameters above 0 "
        "and at most 10,000,000 (got 0).",
        'nnmem: error: --mode: Mode must be one of training, inference (got "train").',
    ]


def test_unreadable_scenario_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{")
    assert main(["--scenario", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"nnmem: error: --scenario: cannot read {path}")
    path.write_text("[1]")
    assert main(["--scenario", str(path)]) == 2
    assert "must hold a JSON object" in capsys.readouterr().err


def test_no_model_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "give --params MILLIONS or --scenario FILE" in capsys.readouterr().err
