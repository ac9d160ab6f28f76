"""DeepSpeed ZeRO-1/2/3 with a peft LoRA model and a client optimizer, on the CPU.

``python -m benchmarks.stacks.zero_lora STAGE {adamw,sgd}`` (torch, transformers, peft,
deepspeed from ``requirements.txt``) builds a 2-layer Llama (hidden 256, 4 heads, 2 KV
heads of 64, vocabulary 1,024), puts peft LoRA r = 8 on q_proj and v_proj, and hands
DeepSpeed a torch optimizer over the adapters (``optimizer=``, as HF Trainer does when
the DeepSpeed config names none) with bf16 on, over 2 ``gloo`` processes with the CPU
accelerator. After two steps it prints rank 0's parameter types and the bytes of
``bit16_groups_flat``, ``single_partition_of_fp32_groups`` and the client optimizer's
tensor state (the scalar ``step`` left out).

Measured with DeepSpeed 0.19.8, torch 2.13 (CPU), peft 0.21.0, transformers 5.24.0:
Ψ_t = 2 × (8·256 + 256·8 + 8·256 + 128·8) = 14,336 adapter values and 1,975,552 frozen.
The whole model is fp32 when built and every parameter is bf16 after
``deepspeed.initialize`` (the frozen base 3,951,104 B = 2 × 1,975,552). On each rank,
stage 1 and 2 alike: ``bit16_groups_flat`` 28,672 B (2Ψ_t), the fp32 partition 28,672 B
(4Ψ_t/2, ``partition_size`` 7,168); AdamW's exp_avg and exp_avg_sq 57,344 B (8Ψ_t/2);
SGD's momentum_buffer 28,672 B (4Ψ_t/2).

Stage 3 (same versions) partitions every parameter: on each rank the frozen ones'
``ds_tensor`` 1,975,552 B (2 × 1,975,552 ÷ 2, bf16) and the adapters' 14,336 B (2Ψ_t/2);
``fp32_partitioned_groups_flat`` 28,672 B (4Ψ_t/2); AdamW's state 57,344 B, SGD's
momentum 28,672 B, as for stages 1 and 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch
import torch.multiprocessing as mp

WORLD = 2


def _tensor_bytes(value: Any) -> int:
    items = value if isinstance(value, list) else [value]
    return sum(t.numel() * t.element_size() for t in items if isinstance(t, torch.Tensor))


def _rank(rank: int, port: int, stage: int, optimizer_name: str, queue: Any) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "LOCAL_WORLD_SIZE": str(WORLD),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "DS_ACCELERATOR": "cpu",
        }
    )
    import deepspeed
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    deepspeed.init_distributed(dist_backend="gloo")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1024,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    model = get_peft_model(LlamaForCausalLM(config), lora)
    train = [p for p in model.parameters() if p.requires_grad]
    client = (
        torch.optim.AdamW(train, lr=1e-4, foreach=False)
        if optimizer_name == "adamw"
        else torch.optim.SGD(train, lr=1e-2, momentum=0.9, foreach=False)
    )
    ds_config = {
        "train_micro_batch_size_per_gpu": 2,
        "bf16": {"enabled": True},
        "zero_optimization": {"stage": stage, "reduce_bucket_size": 10_000},
        "zero_allow_untested_optimizer": True,
    }
    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=client, config=ds_config)
    ids = torch.randint(0, 1024, (2, 32))
    for _ in range(2):
        engine.backward(engine(input_ids=ids, labels=ids).loss)
        engine.step()
    params = list(engine.module.parameters())
    state = optimizer.optimizer.state
    if stage == 3:
        # Every parameter's own partition (ds_tensor), frozen ones included; the fp32
        # partitions stage3.py builds for the trainable ones only.
        queue.put(
            {
                "rank": rank,
                "stage": stage,
                "optimizer": optimizer_name,
                "trainable": sum(p.ds_numel for p in params if p.requires_grad),
                "frozen": sum(p.ds_numel for p in params if not p.requires_grad),
                "dtypes": sorted({str(p.ds_tensor.dtype) for p in params}),
                "frozen_partitions": sum(
                    _tensor_bytes(p.ds_tensor) for p in params if not p.requires_grad
                ),
                "trainable_partitions": sum(
                    _tensor_bytes(p.ds_tensor) for p in params if p.requires_grad
                ),
                "fp32_partition": _tensor_bytes(optimizer.fp32_partitioned_groups_flat),
                "state": sum(
                    _tensor_bytes(v) for s in state.values() for v in s.values() if v.numel() > 1
                ),
            }
        )
        return
    queue.put(
        {
            "rank": rank,
            "stage": stage,
            "optimizer": optimizer_name,
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "frozen": sum(p.numel() for p in params if not p.requires_grad),
            "frozen_bytes": sum(
                p.numel() * p.element_size() for p in params if not p.requires_grad
            ),
            "dtypes": sorted({str(p.dtype) for p in params}),
            "bit16_groups_flat": _tensor_bytes(optimizer.bit16_groups_flat),
            "fp32_partition": _tensor_bytes(optimizer.single_partition_of_fp32_groups),
            "partition_size": [int(x) for x in optimizer.partition_size],
            "state": sum(
                _tensor_bytes(v) for s in state.values() for v in s.values() if v.numel() > 1
            ),
        }
    )


def main() -> None:
    stage, name = int(sys.argv[1]), sys.argv[2]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_rank, args=(r, 29740 + stage, stage, name, queue)) for r in range(WORLD)
    ]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=600) for _ in procs), key=lambda r: r["rank"])
    for p in procs:
        p.join()
    print(json.dumps(results[0]))


if __name__ == "__main__":
    main()
