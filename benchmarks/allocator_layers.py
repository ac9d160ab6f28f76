"""Show that repeated layers leave the caching allocator in a repeating state.

    .venv/bin/python benchmarks/allocator_layers.py [CASE_ID ...]

Replays a recorded trace (``benchmarks/accuracy/traces/``) through ``nnmem.allocator``
and prints, at the start of every layer of the forward (the ``layer:N`` marks) of step 1
(a cold cache) and of step 2,
the allocated and reserved totals, their change since the previous layer, and whether
the free blocks of the large pool are the previous layer's plus a constant set (the
same sizes, with one layer's worth added). Where the changes are constant from some
layer k on, the layers after k can be summarised as (L - k) times one layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.accuracy import allocator_replay
from nnmem.allocator import CachingAllocator

MIB = 2**20
DEFAULT = (
    "llama-3.2-1b.train.bf16.adamw.sdpa.b1.s2048",
    "gpt2-medium.train.fp32.adamw.eager.b4.s512",
    "llama-2-7b.infer.bf16.sdpa.b1.ctx4096",
)


def layer_states(case_id: str, span: int) -> list[tuple[int, int, int, tuple[int, ...]]]:
    """(layer, allocated, reserved, free large-block sizes) at each layer start of the
    forward (or prefill) of measured span ``span`` (1: step 1, cold cache; 2: step 2)."""
    trace = allocator_replay.load_trace(case_id)["trace"]
    allocator = CachingAllocator()
    live = {}
    next_id = 0
    resets = 0
    seen: set[int] = set()
    workspaces: set[str] = set()
    phase = "setup"
    states = []
    first = allocator.malloc(allocator_replay.INIT_TENSOR_BYTES)
    allocator.free(first)
    for item in trace:
        if isinstance(item, int):
            if item >= 0:
                live[next_id] = allocator.malloc(item)
                next_id += 1
            else:
                allocator.free(live.pop(-item - 1))
        elif item.startswith("phase:"):
            phase = item[6:]
        elif item.startswith("reset:"):
            resets += 1
        elif item.startswith("op:") and item[3:] in allocator_replay.CUBLAS_OPS:
            thread = "autograd" if phase == "backward" else "main"
            if thread not in workspaces:
                workspaces.add(thread)
                allocator.malloc(allocator_replay.CUBLAS_WORKSPACE_BYTES)
        elif item.startswith("layer:") and resets == span and phase in ("forward", "prefill"):
            layer = int(item[6:])
            if layer in seen:
                continue
            seen.add(layer)
            free = tuple(sorted(size for size, _ in allocator.large.keys))
            states.append((layer, allocator.allocated, allocator.reserved, free))
    return states


def main(argv: list[str]) -> int:
    for case_id, span in [(c, s) for c in argv or DEFAULT for s in (1, 2)]:
        print(f"{case_id}, span {span}")
        print(f"{'layer':>5} {'allocated MiB':>14} {'d':>8} {'reserved MiB':>13} {'d':>8}  free")
        previous = None
        for layer, allocated, reserved, free in layer_states(case_id, span):
            if previous is None:
                print(f"{layer:5d} {allocated / MIB:14.1f} {'':8} {reserved / MIB:13.1f}")
            else:
                _, a0, r0, f0 = previous
                same = "same" if free == f0 else f"{len(free)} blocks"
                print(
                    f"{layer:5d} {allocated / MIB:14.1f} {(allocated - a0) / MIB:+8.1f} "
                    f"{reserved / MIB:13.1f} {(reserved - r0) / MIB:+8.1f}  {same}"
                )
            previous = (layer, allocated, reserved, free)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
