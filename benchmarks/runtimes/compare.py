"""Print nnmem's llama.cpp and vLLM figures against the measured ones, per row.

.venv/bin/python -m benchmarks.runtimes.compare
"""

from __future__ import annotations

import json
from pathlib import Path

from nnmem import catalog
from nnmem.runtimes import llamacpp as lc
from nnmem.runtimes import vllm
from nnmem.runtimes.models import serve_model

MIB = 2**20
GIB = 2**30
HERE = Path(__file__).parent


def llamacpp() -> None:
    data = json.loads((HERE / "measured_llamacpp.json").read_text())
    print("llama.cpp (CPU):", data["versions"]["llama_cpp_python"], data["versions"]["cpu"])
    worst: dict[str, float] = {"model": 0, "repack": 0, "k": 0, "v": 0, "output": 0, "compute": 0}
    n = 0
    for f in data["files"]:
        shape = data["shapes"][f["model"]]
        cfg = dict(catalog.models()[shape.get("catalog", f["model"])].config)
        cfg["num_hidden_layers"] = shape["layers"]
        a = lc.GgufArch.from_config(cfg)
        ts = lc.f16_tensors(a) if f["ftype"] == "F16" else lc.quantized_tensors(a, f["ftype"])
        real = {t["name"]: t["type"] for t in f["tensors"]}
        same = sum(real[t.name] == t.type for t in ts)
        bufs = f["model_buffers_mib"]
        ours = lc.model_bytes(ts) / MIB
        rep = lc.cpu_repack_bytes(ts) / MIB
        print(
            f"  {f['model']:13} {f['ftype']:7} types {same}/{len(real)}  weights {ours:9.2f} MiB"
            f"  mapped {bufs['CPU_Mapped']:9.2f}"
            f"  repack {rep:7.2f}/{bufs.get('CPU_REPACK', 0):7.2f}"
        )
        if "CPU_REPACK" not in bufs:
            worst["model"] = max(worst["model"], abs(ours / bufs["CPU_Mapped"] - 1))
        if rep:
            worst["repack"] = max(worst["repack"], abs(rep / bufs["CPU_REPACK"] - 1))
        for r in f["contexts"]:
            n += 1
            c = lc.Context(**r["context"])
            k, v = lc.kv_bytes(a, c)
            mk = sum(x["k_mib"] for x in r["kv"])
            mv = sum(x["v_mib"] for x in r["kv"])
            out = lc.output_bytes(a, c) / MIB
            comp = lc.compute_buffer_bytes(a, c) / MIB
            mc = sum((r.get("compute_exact") or r["compute"]).values())
            worst["k"] = max(worst["k"], abs(k / MIB / mk - 1))
            worst["v"] = max(worst["v"], abs(v / MIB / mv - 1))
            worst["output"] = max(worst["output"], abs(out / sum(r["output"].values()) - 1))
            e = comp / mc - 1
            worst["compute"] = max(worst["compute"], abs(e))
            if f["ftype"] in ("F16",):
                cc = r["context"]
                fa, swa = int(cc["flash_attn"]), int(cc.get("swa_full", False))
                print(
                    f"    n_ctx {cc['n_ctx']:5} {cc['type_k']}/{cc['type_v']} fa {fa}"
                    f" ub {cc['n_ubatch']:4} np {cc['n_seq_max']}{'u' if cc['kv_unified'] else 's'}"
                    f" swa_full {swa}  KV {(k + v) / MIB:8.2f}/{mk + mv:8.2f}"
                    f"  compute {comp:8.2f}/{mc:8.2f} ({e:+.1%})"
                )
    print(f"  {n} contexts; worst relative errors:", {k: f"{v:.2%}" for k, v in worst.items()})


E11 = [
    ("llama-3.1-8b", "bf16", 1, 51.38),
    ("qwen3-0.6b", "bf16", 1, 64.45),
    ("gpt-oss-20b", "mxfp4", 1, 50.28),
    ("gpt-oss-120b", "mxfp4", 1, 3.33),
    ("qwen3-32b", "bf16", 1, 4.45),
    ("llama-3.3-70b", "fp8", 2, 32.0),
    ("llama-3.3-70b", "fp8", 1, -1.44),
]


def e11() -> None:
    print("vLLM, llm-d empirical results (H100 79.18 GiB, util 0.9, max_model_len 16000):")
    for model, fmt, tp, kv in E11:
        m = serve_model(model, fmt)
        s = vllm.Serve(
            gpu_memory_bytes=int(79.18 * GIB),
            max_model_len=16000,
            gpu_memory_utilization=0.9,
            tensor_parallel_size=tp,
            block_size=16,
        )
        b = vllm.budget(m, s)
        ours = vllm.capacity(m, s, b.kv)
        logged = vllm.capacity(m, s, int(kv * GIB))
        err = ours.tokens / logged.tokens - 1 if logged.tokens else float("nan")
        print(
            f"  {model:14} TP{tp} weights {b.weights / GIB:6.2f} act {b.activation / GIB:5.2f}"
            f" KV {b.kv / GIB:6.2f}/{kv:6.2f} GiB  tokens {ours.tokens:9,}/{logged.tokens:9,}"
            f"  concurrency {ours.max_concurrency:6.2f}/{logged.max_concurrency:6.2f} ({err:+.1%})"
            f"  starts {vllm.starts(b, ours)}"
        )


if __name__ == "__main__":
    llamacpp()
    e11()
