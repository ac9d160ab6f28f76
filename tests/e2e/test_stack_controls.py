"""The training-stack controls in the calculator: each shows only where it applies, and
the page's answer is the engine's, host RAM included."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from nnmem.estimate import estimate
from nnmem.scenario import parse
from nnmem.units import human
from site_helpers import DEFAULT_FORM, cpython_reply, expect_total, fill_form, page_fields

pytestmark = pytest.mark.e2e

STACK_ONLY = {
    "ddp": {"gradient_as_bucket_view"},
    "fsdp2": {"reshard_after_forward", "cpu_offload", "fsdp_param_dtype", "fsdp_reduce_dtype"},
    "deepspeed": {"reduce_bucket_size", "offload_param", "offload_optimizer"},
}
ALL = set().union(*STACK_ONLY.values())


def _open_advanced(page: Page) -> None:
    page.evaluate("document.querySelectorAll('details.advanced').forEach(d => d.open = true)")


def _field(page: Page, key: str):  # type: ignore[no-untyped-def]
    return page.locator(f".field[data-field={key}]")


def test_stack_controls_appear_only_where_they_apply(calculator: Page) -> None:
    _open_advanced(calculator)
    expect(_field(calculator, "stack")).to_be_visible()
    for key in ALL:  # the plain loop on one GPU has none of them
        expect(_field(calculator, key)).to_be_hidden()
    for stack, own in STACK_ONLY.items():
        fill_form(calculator, {"stack": stack, "sharding": "zero3", "num_gpus": "8"})
        for key in ALL:
            if key in own:
                expect(_field(calculator, key)).to_be_visible()
            else:
                expect(_field(calculator, key)).to_be_hidden()
    # DDP and FSDP2 shard as they do: the ZeRO stage is DeepSpeed's alone.
    fill_form(calculator, {"stack": "fsdp2"})
    expect(_field(calculator, "sharding")).to_be_hidden()
    fill_form(calculator, {"stack": "hf_trainer", "sharding": "none"})
    expect(_field(calculator, "optimizer_impl")).to_be_hidden()  # fused AdamW
    fill_form(calculator, {"mode": "inference", "precision": "bf16"})
    expect(_field(calculator, "stack")).to_be_hidden()


def test_zero3_offload_total_and_host_ram_match_the_engine(calculator: Page) -> None:
    values = {
        "precision": "amp_bf16",
        "stack": "deepspeed",
        "sharding": "zero3",
        "num_gpus": "8",
        "offload_optimizer": "true",
        "offload_param": "true",
    }
    fill_form(calculator, values)
    expected = estimate(parse({**DEFAULT_FORM, **values}))
    expect(calculator.locator("#total")).to_have_attribute("data-bytes", str(expected.total_bytes))
    host = calculator.locator("#part-table tr[data-key=host] td").first
    expect(host).to_have_text(f"{expected.host_bytes / 1e6:,.1f}")
    expect(calculator.locator("#total-detail")).to_contain_text(
        f"host RAM {human(expected.host_bytes)}"
    )


def test_expert_parallel_shows_for_moe_training_and_the_total_is_the_engine_s(
    calculator: Page,
) -> None:
    """The degree is offered only where a mixture of experts trains; set, the page's
    total is CPython's for the same fields."""
    _open_advanced(calculator)
    expect(_field(calculator, "expert_parallel")).to_be_hidden()  # a dense default model
    calculator.locator("#f-preset").fill("mixtral-8x7b")
    expect(calculator.locator("#f-cfg_num_local_experts")).to_have_value("8")
    values = {"mode": "training", "precision": "bf16", "stack": "ddp", "num_gpus": "8"}
    fill_form(calculator, {**values, "batch_size": "1", "seq_len": "4096"})
    expect(_field(calculator, "expert_parallel")).to_be_visible()
    fill_form(calculator, {"expert_parallel": "8"})
    reply = expect_total(calculator, page_fields(calculator))
    whole = cpython_reply({**page_fields(calculator), "expert_parallel": "1"})
    assert int(str(reply["total_bytes"])) < int(str(whole["total_bytes"]))
    fill_form(calculator, {"expert_parallel": "1", "mode": "inference"})
    expect(_field(calculator, "expert_parallel")).to_be_hidden()


def test_sync_module_states_shows_only_where_fsdp_v1_shards(calculator: Page) -> None:
    """FSDP (v1) under ZeRO-3 sharding of a LoRA run wraps with sync_module_states; the
    default form (one GPU, unsharded) and an unsharded LoRA run have no such option."""
    _open_advanced(calculator)
    sync = _field(calculator, "sync_module_states")
    expect(sync).to_be_hidden()
    lora = {"describe": "fields", "preset": "llama-2-7b", "finetune": "lora"}
    fill_form(calculator, {**lora, "sharding": "zero3", "num_gpus": "2"})
    expect(sync).to_be_visible()
    fill_form(calculator, {"sharding": "none"})
    expect(sync).to_be_hidden()


def test_packing_shows_for_a_decoder_in_training_and_the_total_is_the_engine_s(
    calculator: Page,
) -> None:
    """The batch layout is offered where a decoder language model trains (not for the
    default BERT, nor at inference); under the HF Trainer its auto layout is padded rows,
    and the page's total is CPython's for the same fields."""
    _open_advanced(calculator)
    packing = _field(calculator, "packing")
    expect(packing).to_be_hidden()  # BERT, an encoder
    llama = {"describe": "fields", "preset": "llama-3.2-1b", "mode": "training"}
    fill_form(calculator, {**llama, "precision": "amp_bf16", "stack": "hf_trainer"})
    expect(packing).to_be_visible()
    auto = expect_total(calculator, page_fields(calculator))
    fill_form(calculator, {"packing": "off"})
    off = expect_total(calculator, page_fields(calculator))
    assert int(str(auto["total_bytes"])) > int(str(off["total_bytes"]))  # the padding mask
    fill_form(calculator, {"mode": "inference", "precision": "bf16"})
    expect(packing).to_be_hidden()


def test_float8_controls_show_only_where_they_apply_and_the_total_is_the_engine_s(
    calculator: Page,
) -> None:
    """FP8 training is offered for a transformer's training; its float8 all-gather only
    with FSDP2 and torchao; set, the page's total is CPython's for the same fields."""
    _open_advanced(calculator)
    fp8, gather = _field(calculator, "float8_training"), _field(calculator, "float8_all_gather")
    model = {"describe": "fields", "preset": "llama-3.2-1b", "mode": "training"}
    fill_form(calculator, {**model, "precision": "amp_bf16", "batch_size": "1"})
    expect(fp8).to_be_visible()
    expect(gather).to_be_hidden()
    fill_form(calculator, {"stack": "fsdp2", "num_gpus": "8", "float8_training": "torchao"})
    expect(gather).to_be_visible()
    fill_form(calculator, {"float8_all_gather": "true"})
    reply = expect_total(calculator, page_fields(calculator))
    bf16 = cpython_reply({**page_fields(calculator), "float8_all_gather": "false"})
    assert int(str(reply["total_bytes"])) < int(str(bf16["total_bytes"]))
    fill_form(calculator, {"float8_training": "transformer_engine"})
    expect(gather).to_be_hidden()
    fill_form(calculator, {"mode": "inference", "precision": "bf16"})
    expect(fp8).to_be_hidden()


def test_trl_brings_its_checkpointing_and_bf16(calculator: Page) -> None:
    """TRL's SFTConfig defaults gradient_checkpointing=True and bf16=True: picking the
    trl_sft stack over an fp32 run without checkpointing sets both controls."""
    fill_form(calculator, {"precision": "fp32", "checkpointing": "none"})
    _open_advanced(calculator)
    calculator.select_option("#f-stack", "trl_sft")
    expect(calculator.locator("#f-checkpointing")).to_have_value("full")
    expect(calculator.locator("#f-precision")).to_have_value("amp_bf16")


def test_fsdp_mixed_precision_total_matches_the_engine(calculator: Page) -> None:
    """FSDP2's MixedPrecisionPolicy dtypes, set in the form: the page's total is CPython's
    and differs from the default policy's."""
    base = {"precision": "amp_bf16", "stack": "fsdp2", "num_gpus": "4"}
    values = {**base, "fsdp_param_dtype": "fp32", "fsdp_reduce_dtype": "bf16"}
    fill_form(calculator, values)
    expected = estimate(parse({**DEFAULT_FORM, **values}))
    assert expected.total_bytes != estimate(parse({**DEFAULT_FORM, **base})).total_bytes
    expect(calculator.locator("#total")).to_have_attribute("data-bytes", str(expected.total_bytes))


def test_offload_devices_show_with_their_offload_and_nvme_matches_the_engine(
    calculator: Page,
) -> None:
    """DeepSpeed's offload device controls appear only once their offload is on; on
    NVMe the page's total, host RAM and NVMe rows are CPython's for the same fields."""
    _open_advanced(calculator)
    devices = ("offload_optimizer_device", "offload_param_device")
    base = {"precision": "amp_bf16", "stack": "deepspeed", "sharding": "zero3", "num_gpus": "8"}
    fill_form(calculator, base)
    for key in devices:
        expect(_field(calculator, key)).to_be_hidden()
    fill_form(calculator, {"offload_optimizer": "true"})
    expect(_field(calculator, "offload_optimizer_device")).to_be_visible()
    expect(_field(calculator, "offload_param_device")).to_be_hidden()
    values = {
        **base,
        "offload_optimizer": "true",
        "offload_optimizer_device": "nvme",
        "offload_param": "true",
        "offload_param_device": "nvme",
    }
    fill_form(calculator, values)
    for key in devices:
        expect(_field(calculator, key)).to_be_visible()
    expected = estimate(parse({**DEFAULT_FORM, **values}))
    assert expected.nvme_bytes > 0
    expect(calculator.locator("#total")).to_have_attribute("data-bytes", str(expected.total_bytes))
    nvme = calculator.locator("#part-table tr[data-key=nvme] td").first
    expect(nvme).to_have_text(f"{expected.nvme_bytes / 1e6:,.1f}")
    expect(calculator.locator("#total-detail")).to_contain_text(
        f"host RAM {human(expected.host_bytes)}; NVMe {human(expected.nvme_bytes)}"
    )
