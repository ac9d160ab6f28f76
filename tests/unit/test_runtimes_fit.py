"""What fits: the ranking over the catalog, checked against the buffers it reports."""

import pytest

from nnmem.runtimes import fit
from nnmem.runtimes import llamacpp as lc

GIB = 2**30


def test_llamacpp_best_fit_is_within_the_card():
    r = fit.what_fits([24 * GIB], "llama_cpp", 8192, 1)
    top = r[0]
    assert top.fits == "gpu"
    assert top.gpu_bytes <= 24 * GIB
    # ranked: whole-GPU fits first, larger models first among them
    gpu = [f for f in r if f.fits == "gpu"]
    assert [f.params for f in gpu] == sorted((f.params for f in gpu), reverse=True)
    assert "-ngl" in top.command


def test_small_model_gets_f16_and_matches_the_placement():
    r = {f.model_id: f for f in fit.what_fits([24 * GIB], "llama_cpp", 4096, 2)}
    q = r["qwen2.5-0.5b"]
    assert q.fmt == "F16"
    a, lw = fit._weights("qwen2.5-0.5b", "F16")
    ctx = lc.Context(n_ctx=8192, n_seq_max=2, flash_attn=True)
    p = lc.place(a, lw, ctx, a.layers + 1)
    assert q.gpu_bytes == p.gpu_bytes[0]
    assert q.command.endswith("-c 8192 -ngl 25 -fa on -np 2")


def test_tiny_card_spills_to_ram_or_fails():
    r = fit.what_fits([GIB // 2], "llama_cpp", 4096, 1, ram=8 * GIB)
    assert all(f.fits != "gpu" or f.gpu_bytes <= GIB // 2 for f in r)
    assert {f.fits for f in r} <= {"gpu", "gpu+ram", "ram", "no"}
    assert any(f.fits in ("gpu+ram", "ram") for f in r)


def test_vllm_llama_8b_serves_eight_users_on_80_gib():
    r = {f.model_id: f for f in fit.what_fits([80 * GIB], "vllm", 16384, 8)}
    f = r["llama-3.1-8b"]
    assert f.fmt == "bf16"
    assert f.command.startswith("vllm serve meta-llama/Llama-3.1-8B")
    assert "--max-num-seqs 8" in f.command


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match="runtime: 'tgi'"):
        fit.what_fits([GIB], "tgi", 4096)
    with pytest.raises(ValueError, match="gpus"):
        fit.what_fits([], "vllm", 4096)
