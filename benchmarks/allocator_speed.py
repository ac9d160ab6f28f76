"""Time the caching-allocator replay on the recorded accuracy traces and on nnmem's
own timelines.

    .venv/bin/python benchmarks/allocator_speed.py

Prints, for every trace in ``benchmarks/accuracy/traces/``, its events and the fastest
replay time (of 7 runs) in CPython, largest first, and the rate in events per
millisecond. Then, for a few scenarios up to Llama-70B, the events of
``nnmem.timeline.step_events`` and the time to make them, and the time of
``nnmem.timeline.replay_step`` (the load, two training steps or prefill and decode,
replayed). A step's replay must fit the page's recalculation budget; this says how
many events that allows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.accuracy import allocator_replay
from nnmem import parse
from nnmem.allocator import replay
from nnmem.timeline import replay_step, step_events

LLAMA_70B = {
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}
LLAMA_1B = {
    **LLAMA_70B,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
}
BASE = {"model": "transformer", "batch_size": 1, "seq_len": 4096, "device": "cuda"}
TIMELINES: dict[str, dict[str, object]] = {
    "Llama-3.2-1B shape, AMP AdamW": {**BASE, "config": LLAMA_1B, "precision": "amp_bf16"},
    "Llama-70B, LoRA, checkpointing": {
        **BASE,
        "config": LLAMA_70B,
        "precision": "bf16",
        "finetune": "lora",
        "checkpointing": "full",
    },
    "Llama-70B, ZeRO-3 over 64 GPUs": {
        **BASE,
        "config": LLAMA_70B,
        "precision": "amp_bf16",
        "sharding": "zero3",
        "num_gpus": 64,
    },
    "Llama-70B, inference, 16 tokens": {
        **BASE,
        "config": LLAMA_70B,
        "precision": "bf16",
        "mode": "inference",
        "new_tokens": 16,
    },
}


def best_ms(events: list[tuple[object, ...]], repeat: int = 7) -> float:
    """Fastest wall time of ``replay(events)`` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        replay(events)
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def main() -> int:
    rows = []
    for path in sorted(allocator_replay.TRACE_DIR.glob("*.json.gz")):
        case_id = path.name.removesuffix(".json.gz")
        entry = allocator_replay.load_trace(case_id)
        spans = ("step1", "step2") if "train" in case_id or "lora" in case_id else ("a", "b")
        events = list(allocator_replay.events(entry["trace"], spans))
        rows.append((len(events), case_id, best_ms(events), path.stat().st_size))
    rows.sort(reverse=True)
    print(f"{'trace':58} {'events':>7} {'KiB':>5} {'ms':>7} {'events/ms':>10}")
    for count, case_id, ms, size in rows:
        print(f"{case_id:58} {count:7d} {size / 1024:5.0f} {ms:7.2f} {count / ms:10.0f}")
    total_events = sum(r[0] for r in rows)
    total_ms = sum(r[2] for r in rows)
    total_kib = sum(r[3] for r in rows) / 1024
    rate = total_events / total_ms
    print(f"{'all':58} {total_events:7d} {total_kib:5.0f} {total_ms:7.2f} {rate:10.0f}")
    print()
    print(f"{'timeline':40} {'events':>7} {'make ms':>8} {'replay_step ms':>15}")
    for name, fields in TIMELINES.items():
        scenario = parse(fields)
        events = step_events(scenario, "h200-sxm-141gb")
        make = fastest_ms(lambda s=scenario: step_events(s, "h200-sxm-141gb"))
        whole = fastest_ms(lambda s=scenario: replay_step(s, "h200-sxm-141gb"))
        print(f"{name:40} {len(events):7d} {make:8.2f} {whole:15.2f}")
    return 0


def fastest_ms(run: Callable[[], object], repeat: int = 7) -> float:
    """Fastest wall time of ``run()`` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


if __name__ == "__main__":
    sys.exit(main())
