"""DeepSpeed's offload device ``nvme`` (ZeRO-Infinity): what goes to swap files on NVMe
and what host RAM keeps, against values derived by hand from DeepSpeed 0.19.8.

Llama 3.1 8B: Ψ = 8,030,261,248 parameters; on 8 ranks each holds ⌈Ψ/8⌉ =
1,003,782,656 values of every partition. Sources (nnmem/stacks.py names each):
- stage3.py ``_create_fp32_partitions`` and ``_swap_out_offload_fp32_gradients``: the fp32
  master, m, v and fp32 gradients go to NVMe, 16 B per value of the partition;
- swap_tensor/optimizer_utils.py ``OptimizerSwapper.__init__``: ``buffer_count`` (4)
  pinned fp32 buffers of the largest sub-group, here ``sub_group_size`` = 1e9 values
  (1e9 is a whole number of 256-value io-alignment units);
- stage3.py ``grad_partitions_flat_buffer``: 16-bit gradients stay in host RAM (2 B);
- swap_tensor/partitioned_param_swapper.py ``_configure_aio``: 5 pinned buffers of
  1e8 values rounded up to 512 (1024 B of 2-byte values): 100,000,256 × 2 B each;
- stage3.py ``_create_param_groups_fp16_flat_cpu_memory``: a pinned flat buffer of
  min(⌈Ψ/N⌉, max_in_cpu = 1e9) 16-bit values; beyond max_in_cpu the partitions stay on
  NVMe and ``reserve_partitioned_swap_space`` pins the largest sub-group's parameters at
  their whole size: N × sub_group_size values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nnmem import stacks
from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.render.text import table_text, text, total_detail
from nnmem.result import Estimate
from nnmem.scenario import parse
from nnmem.web import handle
from nnmem.web.form import DEFAULT_FIELDS

PSI = 8_030_261_248
PART = 1_003_782_656  # ⌈Ψ/8⌉
assert PART * 8 == PSI
EMBED = 128_256 * 4_096
LLAMA3_8B = stacks.ModelSizes(
    params=PSI,
    unit_params=(PSI - 2 * EMBED - 4_096) // 32,
    root_params=2 * EMBED + 4_096,
    largest_tensor=EMBED,
    persistent_params=65 * 4_096,
    units=32,
)
OPT_POOL = 4 * 1_000_000_000 * 4  # 16,000,000,000
PARAM_BUFFERS = 5 * 100_000_256 * 2  # 1,000,002,560
ZERO3 = {
    "model": "preset",
    "preset": "llama-3.1-8b",
    "precision": "amp_bf16",
    "stack": "deepspeed",
    "sharding": "zero3",
    "num_gpus": 8,
    "batch_size": 1,
    "seq_len": 1024,
}


def run(**settings: Any) -> Estimate:
    return estimate(parse({**ZERO3, **settings}))


def zero3(**offload: Any) -> stacks.StackStates:
    return stacks.zero(LLAMA3_8B, stage=3, gpus=8, **offload)


def test_optimizer_on_nvme_moves_master_states_and_fp32_gradients() -> None:
    on_cpu = zero3(offload_optimizer=True)
    s = zero3(offload_optimizer=True, optimizer_device="nvme")
    # 12 B (master, m, v) + 4 B (fp32 gradient) per value of the partition
    assert s.nvme_bytes == 12 * PART + 4 * PART == 16_060_522_496
    # host RAM: the 16-bit gradients and the 4 pinned fp32 swap buffers
    assert s.cpu_bytes == 2 * PART + OPT_POOL == 18_007_565_312
    assert on_cpu.cpu_bytes == 18 * PART == 18_068_087_808
    assert on_cpu.nvme_bytes == 0
    # the GPU holds the same but for one 5e8-value bucket's gradient partitions in fp32
    # (4 B × 5e8 ÷ 8) between the reduce and the swap-out, in backward
    for phase in ("forward", "optimizer_step"):
        assert s.by_key(phase) == on_cpu.by_key(phase)
    assert s.by_key("backward") == {**on_cpu.by_key("backward"), "temporaries": 250_000_000}


def test_params_beyond_max_in_cpu_stay_on_nvme() -> None:
    s = zero3(offload_optimizer=True, offload_param=True, param_device="nvme")
    assert s.nvme_bytes == 2 * PART == 2_007_565_312
    # CPU optimizer (16 B), 16-bit gradients (2 B), parameter swap buffers, the
    # max_in_cpu flat buffer left empty (2e9 B), the write-back buffer 8 × 1e9 × 2 B
    expected = 18 * PART + PARAM_BUFFERS + 2 * 10**9 + 8 * 10**9 * 2
    assert s.cpu_bytes == expected == 37_068_090_368
    both = zero3(
        offload_optimizer=True, offload_param=True, optimizer_device="nvme", param_device="nvme"
    )
    assert both.nvme_bytes == 18 * PART == 18_068_087_808
    assert both.cpu_bytes == 2 * PART + OPT_POOL + PARAM_BUFFERS + 2 * 10**9 + 16 * 10**9
    assert both.cpu_bytes == 37_007_567_872


def test_params_within_max_in_cpu_are_read_back_into_host_ram() -> None:
    """Ψ = 10⁹ on 8 ranks: 1.25·10⁸ values per rank, under max_in_cpu, so the partitions
    are on NVMe (written by zero.Init) and back in the pinned flat buffer."""
    sizes = stacks.ModelSizes(10**9, 10**8, 10**8, 10**7)
    s = stacks.zero(sizes, stage=3, gpus=8, offload_param=True, param_device="nvme")
    assert s.nvme_bytes == 2 * 10**9 // 8
    assert s.cpu_bytes == 2 * 10**9 // 8 + PARAM_BUFFERS
    cpu = stacks.zero(sizes, stage=3, gpus=8, offload_param=True)
    assert s.gpu_bytes("forward") == cpu.gpu_bytes("forward")


def test_a_partition_under_one_mib_is_not_swapped() -> None:
    """OptimizerSwapper.is_swappable_tensor: under max(MIN_AIO_BYTES, block_size) = 1 MiB
    the sub-group stays in host RAM; the pool is allocated all the same."""
    sizes = stacks.ModelSizes(800_000, 100_000, 100_000, 100_000)
    s = stacks.zero(sizes, stage=3, gpus=8, offload_optimizer=True, optimizer_device="nvme")
    assert s.nvme_bytes == 0
    # 100,000 values: master, m, v, fp32 and 16-bit gradients (18 B), and a pool of
    # 4 buffers of 100,096 values (100,000 rounded up to 256) × 4 B
    assert s.cpu_bytes == 18 * 100_000 + 4 * 100_096 * 4


def test_the_engine_refuses_nvme_where_deepspeed_has_no_swapper() -> None:
    with pytest.raises(ValueError, match="stage 3"):
        stacks.zero(LLAMA3_8B, stage=2, gpus=8, offload_optimizer=True, optimizer_device="nvme")
    with pytest.raises(ValueError, match="needs offload_param on"):
        zero3(param_device="nvme")
    with pytest.raises(ValueError, match="cpu or nvme"):
        zero3(offload_optimizer=True, optimizer_device="disk")


def test_the_estimate_shows_nvme_beside_host_ram() -> None:
    cpu = run(offload_optimizer=True)
    e = run(offload_optimizer=True, offload_optimizer_device="nvme")
    gpu = {p.name: p.bytes for p in e.phases}
    assert gpu == {
        p.name: p.bytes + (250_000_000 if p.name == "backward" else 0) for p in cpu.phases
    }
    assert e.nvme_bytes == 16 * PART
    assert e.host_bytes == 2 * PART + OPT_POOL
    data = e.to_dict()
    assert data["nvme_bytes"] == 16_060_522_496
    assert data["host_bytes"] == 18_007_565_312
    assert "nvme_bytes" not in cpu.to_dict()
    assert data["scenario"]["offload_optimizer_device"] == "nvme"
    assert "; NVMe 16.06 GB" in total_detail(e)
    assert "NVMe swap files, beside the GPU: 16.06 GB" in table_text(e)
    assert "  NVMe swap files = 16.06 GB" in text(e)


def test_both_offloads_on_nvme_in_the_estimate() -> None:
    e = run(
        offload_optimizer=True,
        offload_param=True,
        offload_optimizer_device="nvme",
        offload_param_device="nvme",
    )
    assert e.nvme_bytes == 18 * PART
    assert e.host_bytes == 37_007_567_872
    assert any("max_in_cpu" in n for n in e.notes)


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        ({"offload_optimizer_device": "nvme"}, "offload_optimizer_device", "offload_optimizer"),
        ({"offload_param_device": "nvme"}, "offload_param_device", "offload_param"),
        (
            {"sharding": "zero2", "offload_optimizer": True, "offload_optimizer_device": "nvme"},
            "offload_optimizer_device",
            "zero3",
        ),
        ({"offload_optimizer": True, "offload_optimizer_device": "ssd"}, "", "cpu"),
    ],
)
def test_bad_devices_name_their_field(settings: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(NnmemError) as caught:
        run(**settings)
    problem = caught.value.problems[0]
    assert problem.key == (key or "offload_optimizer_device")
    assert words in problem.message


def test_a_device_applies_only_where_its_offload_is_on() -> None:
    off = set(parse(ZERO3).inactive_fields())
    assert {"offload_optimizer_device", "offload_param_device"} <= off
    both = {"offload_optimizer": True, "offload_param": True}
    on = set(parse({**ZERO3, **both}).inactive_fields())
    assert not {"offload_optimizer_device", "offload_param_device"} & on
    # ZeRO-2 has no parameter offload, so no parameter offload device either
    z2 = set(parse({**ZERO3, **both, "sharding": "zero2"}).inactive_fields())
    assert "offload_param_device" in z2
    assert "offload_optimizer_device" not in z2


def test_cli_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--preset", "llama-3.1-8b", "--precision", "amp_bf16", "--stack", "deepspeed"]
    args += ["--sharding", "zero3", "--num-gpus", "8", "--offload-optimizer", "true"]
    assert main([*args, "--offload-optimizer-device", "nvme", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nvme_bytes"] == 16_060_522_496
    args += ["--offload-param", "true", "--offload-param-device", "nvme"]
    assert main([*args, "--offload-optimizer-device", "nvme"]) == 0
    out_text = capsys.readouterr().out
    assert "NVMe 18.07 GB" in out_text
    assert "host RAM 37.01 GB" in out_text


def test_the_page_shows_an_nvme_row_and_hides_the_device_until_offload() -> None:
    fields = {
        **DEFAULT_FIELDS,
        "precision": "amp_bf16",
        "stack": "deepspeed",
        "sharding": "zero3",
        "num_gpus": "8",
    }
    reply = json.loads(handle(json.dumps({"fields": fields})))
    assert {"offload_optimizer_device", "offload_param_device"} <= set(reply["inactive"])
    on = {**fields, "offload_optimizer": "true", "offload_optimizer_device": "nvme"}
    reply = json.loads(handle(json.dumps({"fields": on})))
    assert reply["ok"], reply["errors"]
    assert "offload_optimizer_device" not in reply["inactive"]
    assert 'data-key="nvme"' in "".join(reply["html"].values())
    # a hidden nvme left in the form once the offload is off does not block the answer
    left = {**on, "offload_optimizer": "false"}
    reply = json.loads(handle(json.dumps({"fields": left})))
    assert reply["ok"], reply["errors"]
    assert 'data-key="nvme"' not in "".join(reply["html"].values())
