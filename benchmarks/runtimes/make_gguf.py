"""Write F16 GGUF files with real model shapes and random weights, then quantize them.

The weights are random (one shared pool of N(0, 0.02) values, sliced per tensor), the
shapes are the real models' (``shapes.py``). The quantized files come from llama.cpp's
own quantizer (``llama_model_quantize`` through llama-cpp-python), so each file type
holds the tensor-type mixture llama.cpp picks for it.

    python -m benchmarks.runtimes.make_gguf --out /tmp/nnmem-gguf
"""

from __future__ import annotations

import argparse
import ctypes
import os
from pathlib import Path

import gguf
import numpy as np

from benchmarks.runtimes.shapes import SHAPES

# The file types written for every shape; llama.cpp's LLAMA_FTYPE_* numbers.
FTYPES = {
    "Q8_0": 7,
    "Q6_K": 18,
    "Q5_K_M": 17,
    "Q4_K_M": 15,
    "Q4_K_S": 14,
    "Q4_0": 2,
    "Q3_K_M": 12,
    "Q2_K": 10,
    "IQ4_XS": 30,
    "MXFP4_MOE": 38,
}


def _pool(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float16)


def write_f16(name: str, path: Path) -> None:
    s = SHAPES[name]
    arch = str(s["arch"])
    h, L, nh, nkv, hd, ff, V = (
        int(s["hidden"]),  # type: ignore[call-overload]
        int(s["layers"]),  # type: ignore[call-overload]
        int(s["heads"]),  # type: ignore[call-overload]
        int(s["kv_heads"]),  # type: ignore[call-overload]
        int(s["head_dim"]),  # type: ignore[call-overload]
        int(s["ffn"]),  # type: ignore[call-overload]
        int(s["vocab"]),  # type: ignore[call-overload]
    )
    E = int(s.get("experts", 0))  # type: ignore[call-overload]
    fe = int(s.get("expert_ffn", 0))  # type: ignore[call-overload]
    pool = _pool(max(V * h, ff * h, nh * hd * h, E * fe * h))
    ones = np.ones(max(h, hd), dtype=np.float32)

    def mat(rows: int, cols: int, n: int = 0) -> np.ndarray:
        if n:
            return pool[: n * rows * cols].reshape(n, rows, cols)
        return pool[: rows * cols].reshape(rows, cols)

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name + "-random")
    w.add_context_length(int(s["ctx_train"]))  # type: ignore[call-overload]
    w.add_embedding_length(h)
    w.add_block_count(L)
    w.add_feed_forward_length(ff)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(V)
    if E:
        w.add_expert_count(E)
        w.add_expert_used_count(int(s["experts_used"]))  # type: ignore[call-overload]
        w.add_expert_feed_forward_length(fe)
    if "sliding_window" in s:
        w.add_sliding_window(int(s["sliding_window"]))  # type: ignore[call-overload]
    w.add_file_type(1)  # LLAMA_FTYPE_MOSTLY_F16
    w.add_tokenizer_model("no_vocab")

    # numpy shape is (rows, cols) = (out, in); GGUF stores ne = (in, out).
    w.add_tensor("token_embd.weight", mat(V, h))
    w.add_tensor("output_norm.weight", ones[:h])
    if not s["tied"]:
        w.add_tensor("output.weight", mat(V, h))
    for i in range(L):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones[:h])
        w.add_tensor(p + "attn_q.weight", mat(nh * hd, h))
        w.add_tensor(p + "attn_k.weight", mat(nkv * hd, h))
        w.add_tensor(p + "attn_v.weight", mat(nkv * hd, h))
        w.add_tensor(p + "attn_output.weight", mat(h, nh * hd))
        if s["qkv_bias"]:
            w.add_tensor(p + "attn_q.bias", np.zeros(nh * hd, dtype=np.float32))
            w.add_tensor(p + "attn_k.bias", np.zeros(nkv * hd, dtype=np.float32))
            w.add_tensor(p + "attn_v.bias", np.zeros(nkv * hd, dtype=np.float32))
        if arch in ("gemma3", "qwen3moe"):
            w.add_tensor(p + "attn_q_norm.weight", ones[:hd])
            w.add_tensor(p + "attn_k_norm.weight", ones[:hd])
        if arch == "gemma3":
            w.add_tensor(p + "post_attention_norm.weight", ones[:h])
            w.add_tensor(p + "post_ffw_norm.weight", ones[:h])
        w.add_tensor(p + "ffn_norm.weight", ones[:h])
        if E:
            # numpy (E, out, in) = GGUF ne (in, out, E); the router stays f32
            w.add_tensor(p + "ffn_gate_inp.weight", np.zeros((E, h), dtype=np.float32))
            w.add_tensor(p + "ffn_gate_exps.weight", mat(fe, h, E))
            w.add_tensor(p + "ffn_up_exps.weight", mat(fe, h, E))
            w.add_tensor(p + "ffn_down_exps.weight", mat(h, fe, E))
            continue
        w.add_tensor(p + "ffn_gate.weight", mat(ff, h))
        w.add_tensor(p + "ffn_up.weight", mat(ff, h))
        w.add_tensor(p + "ffn_down.weight", mat(h, ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src: Path, dst: Path, ftype: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = int(os.environ.get("NNMEM_THREADS", "2"))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"quantize {src.name} -> {dst.name} failed: {rc}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/nnmem-gguf"))
    ap.add_argument("--only", nargs="*", default=list(SHAPES))
    ap.add_argument("--ftypes", nargs="*", default=list(FTYPES))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name in a.only:
        f16 = a.out / f"{name}-F16.gguf"
        if not f16.exists():
            print("writing", f16, flush=True)
            write_f16(name, f16)
        for ft in a.ftypes:
            dst = a.out / f"{name}-{ft}.gguf"
            if not dst.exists():
                print("quantizing", dst, flush=True)
                quantize(f16, dst, FTYPES[ft])


if __name__ == "__main__":
    main()
