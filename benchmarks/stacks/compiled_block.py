"""What a compiled Llama block saves for backward, on the CPU.

``python -m benchmarks.stacks.compiled_block`` (torch only) builds one Llama decoder block
as torchtune writes it (modules/rms_norm.py ``RMSNorm``: ``x.float()``, normalize,
``.type_as(x)``, then ``* scale``; RoPE in fp32; SDPA; ``w2(silu(w1(x)) * w3(x))``) in
pure bf16, and prints the distinct tensors autograd saves (a ``saved_tensors_hooks`` pack
hook, the parameters left out) in eager mode and under ``torch.compile``; then the same
under torchtitan's per-op selective checkpointing policy (torchtitan
models/llama3/infra/parallelize.py ``_apply_ac_to_transformer_block``, option "op": save
every other ``aten.mm`` and the attention kernel's outputs), compiled.

Measured with torch 2.13 (CPU), b 2, s 64, h 256, 4 heads of 64, 2 KV heads, f 704,
N = b·s = 128 tokens:
- eager, 1,510,400 B: four N·f bf16 (gate, SiLU, up, product), two N·h fp32 (each
  norm's upcast input), four N·h bf16 (each norm's normalized and scaled outputs), q,
  k, v and the attention output, the log-sum-exp and two rstd: nnmem's llama_layer rows;
- compiled, 1,068,032 B: three N·f (SiLU recomputed), the block's input and the residual
  after attention in bf16 in place of the two fp32 upcasts, no normalized outputs:
  442,368 B = N·(2f + 8h) less, the rows of ``tables._compiled_rmsnorm`` and the MLP's;
- per-op policy, compiled: the block's input, the q, v and gate outputs, the attention
  output and log-sum-exp; the down projection's output (7th mm), which no backward op
  reads, is not kept (``assembly.per_op_rows`` under compile).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

B, S, H, HEADS, KV_HEADS, FF = 2, 64, 256, 4, 2, 704
D = H // HEADS


class RMSNorm(nn.Module):
    """torchtune modules/rms_norm.py RMSNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.eps = 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_fp32 = x.float()
        normed = (x_fp32 * torch.rsqrt(x_fp32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)
        return normed * self.scale


def rope(x: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    """torchtune modules/position_embeddings.py RotaryPositionalEmbeddings.forward."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    c = cache.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack(
        [
            xs[..., 0] * c[..., 0] - xs[..., 1] * c[..., 1],
            xs[..., 1] * c[..., 0] + xs[..., 0] * c[..., 1],
        ],
        -1,
    )
    return out.flatten(3).type_as(x)


class Block(nn.Module):
    """torchtune TransformerSelfAttentionLayer with a Llama 3 attention and FeedForward."""

    def __init__(self) -> None:
        super().__init__()
        self.sa_norm, self.mlp_norm = RMSNorm(H), RMSNorm(H)
        self.q = nn.Linear(H, H, bias=False)
        self.k = nn.Linear(H, KV_HEADS * D, bias=False)
        self.v = nn.Linear(H, KV_HEADS * D, bias=False)
        self.o = nn.Linear(H, H, bias=False)
        self.w1 = nn.Linear(H, FF, bias=False)
        self.w3 = nn.Linear(H, FF, bias=False)
        self.w2 = nn.Linear(FF, H, bias=False)
        theta = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
        freqs = torch.outer(torch.arange(S).float(), theta)
        self.register_buffer("cache", torch.stack([freqs.cos(), freqs.sin()], -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.sa_norm(x)
        q = rope(self.q(h).view(B, S, HEADS, D), self.cache).transpose(1, 2)
        k = rope(self.k(h).view(B, S, KV_HEADS, D), self.cache).transpose(1, 2)
        v = self.v(h).view(B, S, KV_HEADS, D).transpose(1, 2)
        k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
        v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(attn.transpose(1, 2).reshape(B, S, H))
        m = self.mlp_norm(x)
        return x + self.w2(F.silu(self.w1(m)) * self.w3(m))


def _op_policy() -> Any:
    """torchtitan's per-op policy, with the CPU's SDPA kernel in its save list."""
    aten = torch.ops.aten
    save = {aten.mm.default, aten._scaled_dot_product_flash_attention_for_cpu.default}
    counts: dict[str, int] = defaultdict(int)

    def policy(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        key = f"{'recompute' if ctx.is_recompute else 'forward'}_mm_count"
        if func == aten.mm.default:
            counts[key] += 1
        keep = func in save and not (func == aten.mm.default and counts[key] % 2 == 0)
        return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def saved(block: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Print the distinct non-parameter tensors one forward saves, and their bytes."""
    x = torch.randn(B, S, H, dtype=torch.bfloat16, requires_grad=True)
    fn(x).sum().backward()  # compiles, where compiled
    found: dict[int, tuple[tuple[int, ...], str, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dim():
            storage = t.untyped_storage()
            size = max(storage.nbytes(), found.get(storage.data_ptr(), ((), "", 0))[2])
            found[storage.data_ptr()] = (tuple(t.shape), str(t.dtype)[6:], size)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    params = {p.untyped_storage().data_ptr() for p in [*block.parameters(), *block.buffers()]}
    kept = {k: v for k, v in found.items() if k not in params}
    print(f"  {sum(v[2] for v in kept.values()):,} B")
    for ptr, (shape, dtype, size) in sorted(kept.items(), key=lambda kv: -kv[1][2]):
        print(f"    {shape} {dtype} {size:,}{' (the input)' if ptr == x.data_ptr() else ''}")


def main() -> int:
    torch.manual_seed(0)
    block = Block().to(torch.bfloat16)
    print(f"torch {torch.__version__}; N = b·s = {B * S}, h {H}, f {FF}")
    print("eager:")
    saved(block, block)
    print("compiled:")
    saved(block, torch.compile(block))
    print("per-op policy, compiled (the policy's eager store is not a saved tensor):")

    def op_checkpointed(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = checkpoint(block, x, use_reentrant=False, context_fn=_op_policy)
        return out

    saved(block, torch.compile(op_checkpointed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
