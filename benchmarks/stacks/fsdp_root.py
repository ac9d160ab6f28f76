"""FSDP (v1)'s root unit stays unsharded from forward to the end of backward, on the CPU.

``python -m benchmarks.stacks.fsdp_root`` (torch only) wraps a small LM (embedding, two
blocks, head) in ``FullyShardedDataParallel`` with FULL_SHARD over 2 ``gloo`` processes,
the blocks as their own units (``ModuleWrapPolicy``, as fsdp_qlora's
``transformer_auto_wrap_policy`` wraps the decoder layers), and prints the bytes of each
unit's unsharded flat parameter (``_full_param_padded``) after forward, in backward and
after it.

Measured with torch 2.13 (CPU): the root (embedding and head, 128,000 fp32 values)
holds 512,000 bytes after forward and in backward, 0 after backward; a block holds 0
after forward (``_runtime_utils.py _post_forward_reshard`` frees every unit's but the
root's).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp import ShardingStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

V, H, PORT = 1000, 64, "29657"


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(H, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(x)


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(H, V, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def unsharded_bytes(unit: FSDP) -> int:
    return unit._handle.flat_param._full_param_padded.untyped_storage().size()


def run(rank: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=PORT)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = FSDP(
        TinyLM(),
        auto_wrap_policy=ModuleWrapPolicy({Block}),
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        device_id=torch.device("cpu"),
        use_orig_params=False,
    )
    block = model.blocks[0]
    out = model(torch.randint(0, V, (2, 16)))

    def report(when: str) -> None:
        if rank == 0:
            print(f"{when}: root {unsharded_bytes(model):,} B, block {unsharded_bytes(block):,} B")

    report("after forward")

    def in_backward(grad: torch.Tensor) -> torch.Tensor:
        report("in backward")
        return grad

    out.register_hook(in_backward)
    out.sum().backward()
    report("after backward")
    dist.destroy_process_group()


def main() -> None:
    print(f"torch {torch.__version__}; root: {2 * V * H:,} fp32 values (embedding and head)")
    mp.spawn(run, nprocs=2)


if __name__ == "__main__":
    main()
