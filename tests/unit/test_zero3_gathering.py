"""DeepSpeed ZeRO-3's gathering settings against values derived by hand.

Source: deepspeed/runtime/zero/partitioned_param_coordinator.py fetch_sub_module (the
running module's parameters, prefetch up to stage3_prefetch_bucket_size, never more than
stage3_max_live_parameters available; what is reused within max_reuse_distance kept) and
parameter_offload.py (parameters under stage3_param_persistence_threshold kept whole);
defaults from deepspeed/runtime/zero/config.py: 5e7, 1e9, 1e5 elements.

Llama 3.1 8B over 8 GPUs in bf16: the largest module is the embedding, 128,256 × 4,096 =
525,336,576 parameters; the norms are the parameters under 1e5 elements, 65 × 4,096 =
266,240; k_proj and v_proj are 4,194,304 each.
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.scenario import parse

Z3 = {
    "model": "preset",
    "preset": "llama-3.1-8b",
    "precision": "amp_bf16",
    "stack": "deepspeed",
    "sharding": "zero3",
    "num_gpus": 8,
    "checkpointing": "full",
}


def forward(label: str, **settings: Any) -> int:
    phase = next(p for p in estimate(parse({**Z3, **settings})).phases if p.name == "forward")
    return sum(t.bytes for t in phase.terms if t.label.startswith(label))


GATHERED = "gathered modules"
WHOLE = "small parameters kept whole"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # min(1e9, 525,336,576 + 5e7 + 1e9 / 2) = 1e9 parameters, 2 B each
        ({}, 2_000_000_000),
        ({"stage3_max_live_parameters": 200_000_000}, 400_000_000),
        # no prefetch, cap lifted: (525,336,576 + 5e8) × 2 B
        (
            {"stage3_prefetch_bucket_size": 0, "stage3_max_live_parameters": 2_000_000_000},
            2_050_673_152,
        ),
    ],
)
def test_gathered_modules_follow_the_bucket_and_the_cap(
    settings: dict[str, Any], expected: int
) -> None:
    assert forward(GATHERED, **settings) == expected


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (100_000, 266_240 * 2),  # the norms
        (0, 0),
        (10_000_000, (266_240 + 64 * 4_194_304) * 2),  # and every k_proj and v_proj
    ],
)
def test_persistence_threshold_keeps_small_parameters_whole(threshold: int, expected: int) -> None:
    assert forward(WHOLE, stage3_param_persistence_threshold=threshold) == expected


def test_read_only_under_zero3() -> None:
    keys = {
        "stage3_prefetch_bucket_size",
        "stage3_max_live_parameters",
        "stage3_param_persistence_threshold",
    }
    assert not keys & set(parse(Z3).inactive_fields())
    assert keys <= set(parse({**Z3, "sharding": "zero2"}).inactive_fields())
    assert keys <= set(parse({**Z3, "stack": "fsdp2", "sharding": "none"}).inactive_fields())


@pytest.mark.parametrize(
    "key",
    [
        "stage3_prefetch_bucket_size",
        "stage3_max_live_parameters",
        "stage3_param_persistence_threshold",
    ],
)
def test_bad_values_name_the_field(key: str) -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**Z3, key: -1})
    assert [p.key for p in caught.value.problems] == [key]


def test_cli_and_form(capsys: pytest.CaptureFixture[str]) -> None:
    from nnmem.cli import main
    from nnmem.web.form import read

    args = ["--preset", "llama-3.1-8b", "--precision", "amp_bf16", "--stack", "deepspeed"]
    flags = ["--sharding", "zero3", "--num-gpus", "8", "--set", "checkpointing=full"]
    assert main([*args, *flags, "--stage3-max-live-parameters", "200000000", "--json"]) == 0
    assert '"stage3_max_live_parameters": 200000000' in capsys.readouterr().out
    fields = {
        "describe": "fields",
        "preset": "llama-3.1-8b",
        "precision": "amp_bf16",
        "stack": "deepspeed",
        "sharding": "zero3",
        "num_gpus": "8",
        "stage3_prefetch_bucket_size": "0",
    }
    reading = read(fields)
    assert reading.scenario is not None
    assert reading.scenario.stage3_prefetch_bucket_size == 0
    assert "stage3_prefetch_bucket_size" not in reading.inactive
