"""The runtime setting: schema, estimate, page fields and CLI flags, with values worked
out by hand from the allocating code each term cites (nnmem/runtimes/serve.py)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from nnmem import catalog, estimate, parse
from nnmem.errors import NnmemError
from nnmem.formats import Format, bits
from nnmem.scenario import Mode, Runtime
from nnmem.web import handle
from nnmem.web.form import DEFAULT_FIELDS

LLAMA_8B = {"model": "preset", "preset": "llama-3.1-8b", "mode": "inference"}
H100 = "h100-sxm-80gb"


def served(runtime: str, **extra: object) -> dict[str, object]:
    return {**LLAMA_8B, "runtime": runtime, **extra}


# --- vLLM ------------------------------------------------------------------------------------


def test_vllm_kv_blocks_by_hand() -> None:
    # Llama-3.1-8B: 32 layers, 8 KV heads of 128. A 64-token page of one layer holds
    # 64 × 8 × (128 + 128) × 2 B = 262,144 B (AttentionSpec.page_size_bytes); one block of
    # the single group spans 32 layers: 8,388,608 B. 16,000 tokens need ceil(16000/64) = 250
    # blocks per request; 4 requests 1,000 blocks.
    e = estimate(parse(served("vllm", precision="bf16", seq_len=16000, batch_size=4)), H100)
    assert e.runtime is not None
    assert e.runtime["bytes_per_block"] == 64 * 8 * 256 * 2 * 32 == 8_388_608
    assert e.runtime["blocks_per_request"] == 250
    assert e.component("kv_cache").bytes == 1000 * 8_388_608


def test_vllm_weights_split_over_tensor_and_pipeline_ranks() -> None:
    params = catalog.models()["llama-3.1-8b"].params
    one = estimate(parse(served("vllm", precision="bf16")), H100)
    four = estimate(parse(served("vllm", precision="bf16", tensor_parallel=2, pipeline_parallel=2)))
    assert one.component("weights").bytes == params * 2
    assert four.component("weights").bytes == math.ceil(params * 2 / 4)


def test_vllm_total_is_need_over_utilization() -> None:
    # vLLM takes ceil(card × util) (request_memory), so the card must hold need / util.
    e = estimate(parse(served("vllm", precision="bf16", gpu_memory_utilization="0.8")), H100)
    need = sum(c.bytes for c in e.components if c.key != "outside_share")
    assert e.total_bytes == math.ceil(Fraction(need) / Fraction(4, 5))


def test_vllm_capacity_matches_the_largest_batch_the_solver_finds() -> None:
    e = estimate(parse(served("vllm", precision="bf16", seq_len=16000)), H100)
    assert e.runtime is not None
    assert e.runtime["starts"] is True
    # KV budget 0.92 x the card - weights - profile peak - non-torch, in 8 MiB blocks
    card = catalog.gpus()[H100].usable_bytes
    budget = math.ceil(card * 0.92) - sum(
        c.bytes for c in e.components if c.key in ("weights", "activations", "non_torch")
    )
    assert e.runtime["kv_budget_bytes"] == budget
    assert e.runtime["num_blocks"] == budget // 8_388_608
    assert e.runtime["max_concurrency"] == round(budget // 8_388_608 / 250, 2)


def test_vllm_start_up_failure_is_reported() -> None:
    # Llama-3.3-70B in bf16 (141 GB) cannot start on one 80 GiB card.
    e = estimate(parse({**served("vllm", precision="bf16"), "preset": "llama-3.3-70b"}), H100)
    assert e.runtime is not None
    assert e.runtime["starts"] is False
    assert "no memory is left for the cache blocks" in e.runtime["failure"]


# --- llama.cpp -------------------------------------------------------------------------------


def test_llamacpp_kv_cache_by_hand() -> None:
    # f16: per layer and cell K = V = 8 × 128 × 2 B = 2,048 B; 32 layers × 4,096 cells.
    e = estimate(parse(served("llama_cpp", seq_len=4096)))
    assert e.component("kv_cache").bytes == 32 * 4096 * 2 * 2048 == 536_870_912
    # q8_0: a row of 1,024 values is 32 blocks of 34 B = 1,088 B (ggml type_traits).
    q8 = estimate(parse(served("llama_cpp", seq_len=4096, type_k="q8_0", type_v="q8_0")))
    assert q8.component("kv_cache").bytes == 32 * 4096 * 2 * 1088


def test_llamacpp_parallel_slots_share_one_context() -> None:
    # -np 4 with -c 4 × 2,048: the same 8,192 cells as one sequence of 8,192.
    four = estimate(parse(served("llama_cpp", seq_len=2048, batch_size=4)))
    one = estimate(parse(served("llama_cpp", seq_len=8192)))
    assert four.component("kv_cache").bytes == one.component("kv_cache").bytes
    assert four.runtime is not None
    assert four.runtime["ollama"] == {"num_ctx": 2048, "OLLAMA_NUM_PARALLEL": 4}
    assert "-c 8192" in four.runtime["command"]
    assert "-np 4" in four.runtime["command"]


def test_llamacpp_offload_moves_layers_to_ram() -> None:
    full = estimate(parse(served("llama_cpp")))
    half = estimate(parse(served("llama_cpp", n_gpu_layers=16)))
    assert full.runtime is not None
    assert half.runtime is not None
    assert full.runtime["n_gpu_layers"] == 33  # 32 blocks and the output layer
    assert half.component("weights").bytes < full.component("weights").bytes
    assert half.runtime["ram_bytes"] > full.runtime["ram_bytes"]
    # what leaves the GPU (weights and their KV) arrives in RAM, and the CPU backend
    # reserves a compute buffer of its own once a layer runs there
    moved = sum(full.runtime["vram_bytes"]) - sum(half.runtime["vram_bytes"])
    compute = full.component("compute_buffer").bytes
    assert half.runtime["ram_bytes"] - full.runtime["ram_bytes"] == moved + compute


def test_llamacpp_largest_ngl_on_a_small_card() -> None:
    e = estimate(parse({**served("llama_cpp", gguf_type="f16"), "preset": "llama-3.1-70b"}), H100)
    assert e.runtime is not None
    # F16 70B is about 141 GB: only part of the 81 layers fit 80 GiB
    assert 0 < e.runtime["largest_ngl"] < 81


def test_ollama_and_lm_studio_are_llama_cpp() -> None:
    base = estimate(parse(served("llama_cpp")))
    for preset in ("ollama", "lm_studio"):
        assert estimate(parse(served(preset))).total_bytes == base.total_bytes


# --- the schema: what applies, what does not, and bad values ---------------------------------


def test_inactive_fields_follow_the_runtime() -> None:
    t = parse(served("transformers"))
    v = parse(served("vllm", precision="bf16"))
    ll = parse(served("llama_cpp"))
    train = parse({**served("vllm"), "mode": "training", "precision": "amp_bf16"})
    assert {"block_size", "type_k", "gguf_type"} <= set(t.inactive_fields())
    assert "block_size" not in v.inactive_fields()
    assert {"type_k", "new_tokens", "num_gpus"} <= set(v.inactive_fields())
    assert {"precision", "kv_cache_dtype", "tensor_parallel"} <= set(ll.inactive_fields())
    assert "type_k" not in ll.inactive_fields()
    assert {"runtime", "block_size", "type_k"} <= set(train.inactive_fields())


@pytest.mark.parametrize("runtime", ["transformers", "vllm", "llama_cpp"])
def test_hidden_fields_do_not_change_the_estimate(runtime: str) -> None:
    s = parse(served(runtime, precision="bf16"))
    base = estimate(s, H100).total_bytes
    changes = {
        "block_size": 16,
        "type_k": parse(served("llama_cpp", type_k="q4_0")).type_k,
        "gguf_type": parse(served("llama_cpp", gguf_type="q8_0")).gguf_type,
        "gpu_memory_utilization": Decimal("0.5"),
        "n_ubatch": 64,
        "new_tokens": 512,
        "cuda_context_mib": 1,
    }
    for key, value in changes.items():
        if key in s.inactive_fields():
            assert estimate(replace(s, **{key: value}), H100).total_bytes == base, key


def test_training_ignores_the_runtime() -> None:
    data = {**LLAMA_8B, "mode": "training", "precision": "amp_bf16"}
    assert (
        estimate(parse({**data, "runtime": "vllm"})).total_bytes
        == estimate(parse(data)).total_bytes
    )


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"params_millions": 7000, "mode": "inference", "runtime": "vllm"}, "runtime", "decoder"),
        (served("llama_cpp", type_v="q8_0", flash_attn="off"), "type_v", "flash attention"),
        (served("vllm", kv_cache_dtype="fp32"), "kv_cache_dtype", "not fp32"),
        (served("vllm", precision="q4_k_m"), "precision", "vLLM"),
        (served("vllm", gpu_memory_utilization="1.5"), "gpu_memory_utilization", "at most 1"),
        (served("llama_cpp", type_k="q3_k"), "type_k", "K cache type"),
        ({**served("llama_cpp"), "preset": "gpt2"}, "runtime", "not"),
    ],
)
def test_bad_runtime_values_name_their_field(
    data: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(NnmemError) as caught:
        parse(data)
    problem = caught.value.problems[0]
    assert problem.key == field
    assert words in problem.message


def test_round_trip_keeps_the_runtime_settings() -> None:
    s = parse(served("ollama", n_gpu_layers=12, type_k="q8_0", gguf_type="q5_k_m"))
    back = parse(s.to_dict())
    assert back == s
    assert back.runtime is Runtime.OLLAMA
    assert back.mode is Mode.INFERENCE
    assert s.to_dict(compact=True)["n_gpu_layers"] == 12


# --- formats ---------------------------------------------------------------------------------


def test_mxfp4_and_nvfp4_bits() -> None:
    # MXFP4: 32 E2M1 values and one E8M0 scale; NVFP4: 16 E2M1 values and one E4M3 scale.
    assert bits(Format.MXFP4) == Fraction(4 * 32 + 8, 32) == Fraction(17, 4)
    assert bits(Format.NVFP4) == Fraction(4 * 16 + 8, 16) == Fraction(9, 2)
    # Llama-3.1-8B: linear layers 32 × (2·4096² + 2·4096·1024 + 3·4096·14336) =
    # 6,979,321,856 at 4.25 bits; the other 1,050,939,392 parameters in 16-bit.
    e = estimate(parse({**LLAMA_8B, "precision": "mxfp4"}))
    assert e.component("weights").bytes == 6_979_321_856 * 17 // 32 + 1_050_939_392 * 2


# --- the page and the CLI --------------------------------------------------------------------


def page(**fields: str) -> dict[str, object]:
    base = {**DEFAULT_FIELDS, "describe": "fields", "preset": "llama-3.1-8b", "mode": "inference"}
    reply: dict[str, object] = json.loads(handle(json.dumps({"fields": {**base, **fields}})))
    return reply


def test_page_shows_runtime_controls_only_where_they_apply() -> None:
    t = page()
    v = page(runtime="vllm", precision="bf16")
    ll = page(runtime="ollama")
    train = page(mode="training")
    assert isinstance(t["inactive"], list)
    assert isinstance(v["inactive"], list)
    assert isinstance(ll["inactive"], list)
    assert isinstance(train["inactive"], list)
    assert "runtime" not in t["inactive"]
    assert "block_size" in t["inactive"]
    assert "block_size" not in v["inactive"]
    assert "type_k" in v["inactive"]
    assert "type_k" not in ll["inactive"]
    assert "block_size" in ll["inactive"]
    assert "runtime" in train["inactive"]


def test_page_paints_the_runtime_section() -> None:
    reply = page(runtime="vllm", precision="bf16", gpu=H100, seq_len="16000", batch_size="4")
    assert reply["ok"] is True
    html = reply["html"]
    assert isinstance(html, dict)
    assert 'data-runtime="max_concurrency"' in html["runtime"]
    assert "vllm serve meta-llama/Llama-3.1-8B --max-model-len 16000" in html["runtime"]
    assert page()["html"]["runtime"] == ""  # type: ignore[index]


def test_cli_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from nnmem.cli import main

    code = main(
        ["--preset", "llama-3.1-8b", "--mode", "inference", "--runtime", "llama_cpp",
         "--seq-len", "4096", "-ngl", "10", "-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on",
         "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"]["n_gpu_layers"] == 10
    assert out["runtime"]["command"].startswith("llama-server")
    assert "-ngl 10 -ctk q8_0 -ctv q8_0 -fa on" in out["runtime"]["command"]
    code = main(["--preset", "qwen3-8b", "--mode", "inference", "--runtime", "vllm",
                 "--precision", "bf16", "--gpu-memory-utilization", "0.85", "--block-size",
                 "16", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["scenario"]["gpu_memory_utilization"] == 0.85
    assert out["scenario"]["block_size"] == 16


def test_a_hidden_precision_does_not_block_llama_cpp() -> None:
    # precision is not a llama.cpp setting (gguf_type is): a training-only value there
    # neither raises nor changes the estimate
    amp = estimate(parse(served("llama_cpp", precision="amp_bf16")))
    assert amp.total_bytes == estimate(parse(served("llama_cpp"))).total_bytes
