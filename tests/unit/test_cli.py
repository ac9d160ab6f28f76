"""python -m nnmem: flags, scenario files, JSON output and errors that name the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnmem.cli import main


def test_llama_inference_from_the_brief(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "7000", "--precision", "fp16", "--mode", "inference"]) == 0
    out = capsys.readouterr().out
    assert "FP16 weights: P × 2 B = 7,000,000,000 × 2 B = 14.00 GB" in out
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
    assert data["total_bytes"] == 4_794_973_004
    sizes = {c["key"]: c["size"] for c in data["components"]}
    assert sizes["optimizer_state"] == 880_000_000
    assert sizes["gradients"] == 440_000_000


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
    sizes = {c["key"]: c["size"] for c in data["components"]}
    assert sizes["activations"] == 1_245_708_288


def test_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "0", "--mode", "train"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "nnmem: error: --params: Model size must be a number of millions of parameters above 0 "
        "and at most 10,000,000, or a count with its unit such as 7B or 350M (got 0).",
        'nnmem: error: --mode: Mode must be one of training, inference (got "train").',
    ]


def test_unreadable_scenario_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{")
    assert main(["--scenario", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"nnmem: error: --scenario: Cannot read {path}")
    path.write_text("[1]")
    assert main(["--scenario", str(path)]) == 2
    assert "must hold a JSON object" in capsys.readouterr().err


def test_no_model_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "describe the model: --params, --preset, --config, --cnn or --scenario" in (
        capsys.readouterr().err
    )


def test_preset_with_settings_and_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--preset",
        "llama-3.1-8b",
        "--mode",
        "inference",
        "--precision",
        "bf16",
        "--seq-len",
        "8192",
        "--batch-size",
        "8",
        "--set",
        "new_tokens=1024",
        "--set",
        "headroom_percent=0",
        "--gpu",
        "rtx-4090",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Does not fit on NVIDIA GeForce RTX 4090 (24.00 GiB usable)" in out
    assert "Largest batch that fits: 3" in out
    assert "Fewest GPUs: 2 (tensor parallel 2)" in out


def test_set_errors_name_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "110", "--set", "checkpointing=half"]) == 2
    assert capsys.readouterr().err.startswith("nnmem: error: --set checkpointing: ")


def test_lists(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-presets"]) == 0
    assert "llama-3.1-8b" in capsys.readouterr().out
    assert main(["--list-gpus"]) == 0
    assert "h100-sxm-80gb" in capsys.readouterr().out


def test_stack_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """DeepSpeed ZeRO-2 with offload on 8 GPUs, Ψ = 10⁹: the host holds the fp32
    master, m and v (12Ψ/8) and the fp32 gradient partition (4Ψ/8), 2 GB."""
    args = ["--params", "1000", "--hidden-size", "1024", "--layers", "8", "--seq-len", "128"]
    args += ["--precision", "amp_bf16", "--stack", "deepspeed", "--sharding", "zero2"]
    args += ["--num-gpus", "8", "--offload-optimizer", "true", "--reduce-bucket-size", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "host RAM 2.00 GB" in out
    assert "Host memory (CPU RAM), beside the GPU: 2.00 GB" in out
    assert "Communication buffers" not in out  # a zero-sized bucket


def test_stack_flag_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "110", "--stack", "megatron"]) == 2
    assert capsys.readouterr().err.startswith("nnmem: error: --stack: ")
    assert main(["--params", "110", "--stack", "ddp", "--gradient-as-bucket-view", "x"]) == 2
    assert capsys.readouterr().err.startswith("nnmem: error: --gradient-as-bucket-view: ")


def test_step_flags_set_their_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """--checkpointing, --checkpoint-every, --tensor-parallel and --optimizer-impl set the
    schema keys that --set sets, to the same estimate."""
    base = ["--preset", "llama-3.2-1b", "--precision", "amp_bf16", "--json"]
    pairs = [
        (
            ["--checkpointing", "every_n", "--checkpoint-every", "4"],
            ["checkpointing=every_n", "checkpoint_every=4"],
        ),
        (["--tensor-parallel", "2", "--num-gpus", "2"], ["tensor_parallel=2", "num_gpus=2"]),
        (["--optimizer-impl", "fused"], ["optimizer_impl=fused"]),
    ]
    for flags, sets in pairs:
        assert main([*base, *flags]) == 0
        by_flag = json.loads(capsys.readouterr().out)
        assert main([*base, *[a for kv in sets for a in ("--set", kv)]]) == 0
        by_set = json.loads(capsys.readouterr().out)
        assert by_flag == by_set
        for kv in sets:
            key, value = kv.split("=")
            assert str(by_flag["scenario"][key]) == value
    # vLLM's name for the degree reads the same field.
    assert main([*base, "--tensor-parallel-size", "2", "--num-gpus", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["scenario"]["tensor_parallel"] == 2


def test_step_flag_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "110", "--checkpointing", "half"]) == 2
    assert capsys.readouterr().err.startswith("nnmem: error: --checkpointing: ")
    assert main(["--params", "110", "--optimizer-impl", "turbo"]) == 2
    assert capsys.readouterr().err.startswith("nnmem: error: --optimizer-impl: ")


def test_a_pipeline_error_names_what_the_user_can_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """torchtitan runs one micro-batch per pipeline stage by default: a batch of 1 cannot
    feed 2 stages. The error names the batch (left at its default, so by its flag) and
    pipeline_microbatches as a way out, not a --set the user never typed."""
    args = ["--preset", "llama-3.2-1b", "--precision", "amp_bf16", "--stack", "fsdp2"]
    args += ["--num-gpus", "2", "--pipeline-parallel-size", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnmem: error: --batch-size: A batch of 1 cannot be cut into the 2 ")
    assert "choose a batch_size that is a multiple of 2, or set pipeline_microbatches to 1." in err
    assert "--set" not in err
    assert main([*args, "--pipeline-microbatches", "2", "--batch-size", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnmem: error: --pipeline-microbatches: A batch of 3 cannot be cut")
    assert main([*args, "--pipeline-microbatches", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--batch-size", "2"]) == 0


def test_an_error_in_the_scenario_file_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"params_millions": 110, "checkpointing": "half"}))
    assert main(["--scenario", str(path)]) == 2
    assert capsys.readouterr().err.startswith("nnmem: error: --scenario checkpointing: ")
