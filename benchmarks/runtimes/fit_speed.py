"""Time nnmem.runtimes.fit.what_fits over the whole catalog (prints seconds).

.venv/bin/python -m benchmarks.runtimes.fit_speed
"""

from __future__ import annotations

import time

from nnmem import catalog
from nnmem.runtimes import fit

GIB = 2**30


def main() -> None:
    gpus = catalog.gpus()
    cases = [
        ("llama_cpp", [gpus["rtx-4090"].memory_bytes], 8192, 1, 64 * GIB),
        ("llama_cpp", [gpus["rtx-3060-12gb"].memory_bytes], 32768, 4, 16 * GIB),
        ("llama_cpp", [gpus["rtx-3090"].memory_bytes] * 2, 16384, 2, 128 * GIB),
        ("vllm", [gpus["h100-sxm-80gb"].memory_bytes], 16384, 8, 0),
        ("vllm", [gpus["l40s"].memory_bytes] * 2, 32768, 16, 0),
    ]
    for runtime, vram, ctx, users, ram in cases:
        t = time.perf_counter()
        r = fit.what_fits(vram, runtime, ctx, users, ram)
        dt = time.perf_counter() - t
        top = r[0]
        print(
            f"{runtime:9} {len(vram)}x{vram[0] / GIB:5.1f} GiB ctx {ctx:6} users {users:3}:"
            f" {dt:6.3f} s, {sum(f.fits != 'no' for f in r)}/{len(r)} run;"
            f" best {top.model_id} {top.fmt} ({top.fits})"
        )


if __name__ == "__main__":
    main()
