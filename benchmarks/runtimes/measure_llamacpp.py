"""Load GGUF files on the CPU with llama.cpp and record the buffer sizes it logs.

For every file: its tensors (name, GGUF type, shape, bytes) read with ``gguf``'s
reader, and a grid of contexts created with llama.cpp through llama-cpp-python's
low-level binding. Each context's log lines give the model buffer, the KV buffer
(total, K and V, cells, layers), the output buffer and the compute buffer, in MiB with
two decimals (llama.cpp's own ``%8.2f`` of ``bytes/1024/1024``).

Each file is measured in a child process whose stderr (where ggml logs) is captured,
with a marker line written before each context.

    python -m benchmarks.runtimes.measure_llamacpp --gguf /tmp/nnmem-gguf \
        --out benchmarks/runtimes/measured_llamacpp.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

TYPE_IDS = {"f16": 1, "q8_0": 8, "q4_0": 2}
MARK = "@@NNMEM-CTX "


def grid(name: str, ftype: str) -> list[dict[str, Any]]:
    """The contexts created for one file.

    Every file gets the default context (n_ctx 4096) for its model buffer. The F16
    and Q4_K_M files also get the full grid: context, K/V types, micro-batch, flash
    attention, parallel sequences (unified KV or one stream per sequence).
    """
    base = {
        "n_ctx": 4096,
        "n_batch": 2048,
        "n_ubatch": 512,
        "type_k": "f16",
        "type_v": "f16",
        "flash_attn": False,
        "n_seq_max": 1,
        "kv_unified": True,
        # llama_context_default_params() sets swa_full; llama-server and llama-cli
        # default to --swa-full off (common/common.h), which is what is measured.
        "swa_full": False,
    }
    out = [dict(base)]
    if ftype not in ("F16", "Q4_K_M"):
        return out
    for n_ctx, kv, fa, ub in itertools.product(
        (512, 4096, 16384), ("f16", "q8_0", "q4_0"), (False, True), (128, 512)
    ):
        if kv != "f16" and not fa:
            continue  # a quantized V cache needs flash attention
        c = dict(base, n_ctx=n_ctx, type_k=kv, type_v=kv, flash_attn=fa, n_ubatch=ub)
        if c not in out:
            out.append(c)
    # A quantized K with an f16 V works without flash attention.
    out.append(dict(base, type_k="q8_0"))
    for n_seq, unified, fa in itertools.product((2, 4), (True, False), (False, True)):
        out.append(dict(base, n_ctx=8192, n_seq_max=n_seq, kv_unified=unified, flash_attn=fa))
    out.append(dict(base, n_ctx=4096, n_batch=512, n_ubatch=512))
    out.append(dict(base, n_ctx=4096, n_batch=4096, n_ubatch=2048))
    out.append(dict(base, n_ctx=16384, swa_full=True))
    return out


def child(path: str, contexts: list[dict[str, Any]]) -> None:
    """Runs in the child: load the model once, create each context, log markers."""
    import llama_cpp as lc

    lc.llama_backend_init()
    mp = lc.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_mmap = True
    os.write(2, (MARK + "model\n").encode())
    model = lc.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise SystemExit("model load failed")
    for i, c in enumerate(contexts):
        cp = lc.llama_context_default_params()
        cp.n_ctx = c["n_ctx"]
        cp.n_batch = c["n_batch"]
        cp.n_ubatch = c["n_ubatch"]
        cp.n_seq_max = c["n_seq_max"]
        cp.kv_unified = c["kv_unified"]
        cp.swa_full = c["swa_full"]
        cp.type_k = TYPE_IDS[c["type_k"]]
        cp.type_v = TYPE_IDS[c["type_v"]]
        cp.flash_attn_type = (
            lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if c["flash_attn"]
            else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cp.n_threads = cp.n_threads_batch = 2
        os.write(2, f"{MARK}{i}\n".encode())
        ctx = lc.llama_init_from_model(model, cp)
        if ctx:
            lc.llama_free(ctx)
        else:
            os.write(2, b"@@NNMEM-FAILED\n")
    lc.llama_model_free(model)


MIB = r"([0-9.]+) MiB"
PATTERNS = {
    "model_mib": re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+" + MIB),
    "kv_buffer_mib": re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+" + MIB),
    "output_mib": re.compile(r"llama_context:\s+(\S+)\s+output buffer size =\s+" + MIB),
    "compute_mib": re.compile(r"(\w+):\s+(\S+) compute buffer size =\s+" + MIB),
}
# Logged when the context is freed, with four decimals.
COMPUTE_EXACT = re.compile(r"(\S+) compute buffer size is\s+([0-9.]+) MiB")
KV_LINE = re.compile(
    r"llama_kv_cache: size =\s+([0-9.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+)/\s*(\d+) "
    r"seqs\), K \((\w+)\):\s+([0-9.]+) MiB, V \((\w+)\):\s+([0-9.]+) MiB"
)


def parse(block: str) -> dict[str, Any]:
    """The buffer sizes in one context's log block."""
    r: dict[str, Any] = {"kv": [], "compute": {}, "output": {}}
    for line in block.splitlines():
        m = KV_LINE.search(line)
        if m:
            r["kv"].append(
                {
                    "size_mib": float(m[1]),
                    "cells": int(m[2]),
                    "layers": int(m[3]),
                    "n_seq_max": int(m[4]),
                    "n_stream": int(m[5]),
                    "type_k": m[6],
                    "k_mib": float(m[7]),
                    "type_v": m[8],
                    "v_mib": float(m[9]),
                }
            )
            continue
        m = PATTERNS["kv_buffer_mib"].search(line)
        if m:
            r.setdefault("kv_buffers", []).append({"buffer": m[1], "mib": float(m[2])})
            continue
        m = PATTERNS["output_mib"].search(line)
        if m:
            r["output"][m[1]] = float(m[2])
            continue
        m = COMPUTE_EXACT.search(line)
        if m:
            r.setdefault("compute_exact", {})[m[1]] = float(m[2])
            continue
        m = PATTERNS["compute_mib"].search(line)
        if m:
            r["compute"][m[2]] = float(m[3])
            continue
        if "graph nodes" in line or "graph splits" in line:
            r.setdefault("graph", []).append(line.strip())
    return r


def measure_file(path: Path, contexts: list[dict[str, Any]]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.runtimes.measure_llamacpp", "--child", str(path)],
        input=json.dumps(contexts),
        capture_output=True,
        text=True,
        check=False,
    )
    log = proc.stderr
    parts = log.split(MARK)
    model_block = next((p for p in parts if p.startswith("model")), "")
    model: dict[str, float] = {}
    for line in model_block.splitlines():
        m = PATTERNS["model_mib"].search(line)
        if m:
            model[m[1]] = float(m[2])
    runs = []
    for p in parts:
        head, _, body = p.partition("\n")
        if not head.strip().isdigit():
            continue
        i = int(head)
        r = parse(body)
        r["failed"] = "@@NNMEM-FAILED" in body
        r["context"] = contexts[i]
        runs.append(r)
    return {"model_buffers_mib": model, "contexts": runs, "returncode": proc.returncode}


def tensors(path: Path) -> list[dict[str, Any]]:
    import gguf

    rd = gguf.GGUFReader(str(path))
    return [
        {
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(x) for x in t.shape],
            "bytes": int(t.n_bytes),
        }
        for t in rd.tensors
    ]


def versions() -> dict[str, Any]:
    import gguf
    import llama_cpp

    try:
        from importlib.metadata import version

        gv = version("gguf")
    except Exception:  # pragma: no cover - metadata missing
        gv = getattr(gguf, "__version__", "?")
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "gguf": gv,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": platform.platform(),
        "backend": "CPU (ggml-cpu), n_gpu_layers=0, mmap on",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path, default=Path("/tmp/nnmem-gguf"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("measured_llamacpp.json"))
    ap.add_argument("--child")
    ap.add_argument("--only", nargs="*", help="shapes to measure (default: all)")
    ap.add_argument("--merge", action="store_true", help="keep other shapes' entries in --out")
    a = ap.parse_args()
    if a.child:
        child(a.child, json.loads(sys.stdin.read()))
        return
    from benchmarks.runtimes.make_gguf import FTYPES
    from benchmarks.runtimes.shapes import SHAPES

    files = []
    if a.merge and a.out.exists():
        keep = set(SHAPES) - set(a.only or SHAPES)
        files = [f for f in json.loads(a.out.read_text())["files"] if f["model"] in keep]
    for name in a.only or SHAPES:
        for ft in ["F16", *FTYPES]:
            p = a.gguf / f"{name}-{ft}.gguf"
            if not p.exists():
                print("missing", p, file=sys.stderr)
                continue
            print("measuring", p.name, flush=True)
            ctxs = grid(name, ft)
            rec = {"model": name, "ftype": ft, "file_bytes": p.stat().st_size}
            rec["tensors"] = tensors(p)
            rec.update(measure_file(p, ctxs))
            files.append(rec)
    out = {"versions": versions(), "shapes": SHAPES, "files": files}
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
