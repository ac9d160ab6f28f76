"""python -m nnmem --safetensors / --gguf: the headers read, the estimate, and the errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from test_readers import gguf, llama_31_8b_gguf, write_llama_repo

from nnmem.cli import main


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def test_safetensors_folder_matches_the_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_llama_repo(tmp_path)
    args = ["--mode", "inference", "--seq-len", "4096", "--json"]
    assert main(["--safetensors", str(tmp_path), *args]) == 0
    mine = _json(capsys)
    assert main(["--preset", "llama-3.1-8b", "--precision", "bf16", *args]) == 0
    preset = _json(capsys)
    assert mine["total_bytes"] == preset["total_bytes"]
    assert mine["components"] == preset["components"]
    checkpoint = mine["checkpoint"]
    assert isinstance(checkpoint, dict)
    assert checkpoint["tensor_bytes"] == 16_060_522_496
    assert checkpoint["parameters"] == 8_030_261_248
    assert "checkpoint" not in preset


def test_safetensors_text_report_names_the_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_llama_repo(tmp_path)
    assert main(["--safetensors", str(tmp_path / "model.safetensors.index.json")]) == 0
    out = capsys.readouterr().out
    assert (
        "Checkpoint (safetensors, 4 files): 291 tensors, 8,030,261,248 parameters, "
        "16,060,522,496 bytes of tensors (BF16 16,060,522,496 B)" in out
    )
    assert "BF16 weights: P × 2 B = 8,030,261,248 × 2 B" in out  # training in bf16


def test_gguf_quantized_file_is_served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, _ = llama_31_8b_gguf()
    blob, total = gguf(meta, [("token_embd.weight", [4096, 16], 0)])
    (tmp_path / "m.gguf").write_bytes(blob)
    assert main(["--gguf", str(tmp_path / "m.gguf"), "--json"]) == 0
    data = _json(capsys)
    scenario = data["scenario"]
    assert isinstance(scenario, dict)
    # general.file_type 15 is Q4_K_M, which only serves: the mode follows.
    assert (scenario["precision"], scenario["mode"]) == ("q4_k_m", "inference")
    checkpoint = data["checkpoint"]
    assert isinstance(checkpoint, dict)
    assert checkpoint["file_bytes"] == total == len(blob)
    # The weights term is the tensors' stored bytes: 16 rows of 4,096 F32 values.
    assert scenario["checkpoint_bytes"] == {"F32": 16 * 4096 * 4}
    components = data["components"]
    assert isinstance(components, list)
    weights = [c for c in components if c["key"] == "weights"]
    assert weights[0]["bytes"] == checkpoint["tensor_bytes"] == 262_144
    # A flag still wins over what the file says.
    assert main(["--gguf", str(tmp_path / "m.gguf"), "--precision", "bf16", "--json"]) == 0
    scenario = _json(capsys)["scenario"]
    assert isinstance(scenario, dict)
    assert (scenario["precision"], scenario["mode"]) == ("bf16", "training")


@pytest.mark.parametrize(
    ("flag", "name", "content", "message"),
    [
        ("--gguf", "bad.gguf", b"GGML" + bytes(20), "bad.gguf: the file starts with b'GGML'"),
        (
            "--gguf",
            "huge.gguf",
            b"GGUF" + struct.pack("<IQQ", 3, 2**60, 0),
            "huge.gguf: the tensor count is 1,152,921,504,606,846,976",
        ),
        (
            "--safetensors",
            "cut.safetensors",
            struct.pack("<Q", 500) + b"{}",
            "cut.safetensors: the header length is 500 bytes but the file has only 2",
        ),
    ],
)
def test_bad_files_exit_2_naming_the_flag(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    name: str,
    content: bytes,
    message: str,
) -> None:
    (tmp_path / name).write_bytes(content)
    assert main([flag, str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nnmem: error: {flag}: {message}")
    assert "Traceback" not in err


def test_a_gguf_without_the_architecture_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blob, _ = gguf([("general.architecture", 8, "llama")], [])
    (tmp_path / "bare.gguf").write_bytes(blob)
    assert main(["--gguf", str(tmp_path / "bare.gguf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnmem: error: --gguf: config.json needs hidden_size")


def test_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--safetensors", "/nonexistent/dir"]) == 2
    assert "nnmem: error: --safetensors: Cannot read /nonexistent/dir" in capsys.readouterr().err
