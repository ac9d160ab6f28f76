"""What torchtitan's compiled cross-entropy keeps, on the CPU.

``python -m benchmarks.stacks.compiled_loss`` (torch only) runs the loss as torchtitan
builds it with compile on (torchtitan/components/loss.py ``build_cross_entropy_loss``:
``torch.compile(cross_entropy_loss)``, which is ``F.cross_entropy(pred.flatten(0, 1)
.float(), labels.flatten(0, 1))``) over 16-bit logits, and prints the tensors it saves
for backward (a ``saved_tensors_hooks`` pack hook) and the buffers Inductor's generated
forward and backward code allocate.

Measured with torch 2.13 (CPU), logits (2, 64, 1000) bf16: it saves the bf16 logits, the
int64 labels and two fp32 values per token (the maximum and the log-sum-exp), and a
scalar; the kernels allocate only per-token fp32 values, scalars and, in backward, one
bf16 gradient of the logits. No fp32 copy of the logits is made or kept.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch._inductor.utils import run_and_get_code

B, S, V = 2, 64, 1000


def cross_entropy_loss(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """torchtitan's cross_entropy_loss."""
    return F.cross_entropy(pred.flatten(0, 1).float(), labels.flatten(0, 1))


def main() -> None:
    loss_fn = torch.compile(cross_entropy_loss)
    torch.manual_seed(0)
    pred = torch.randn(B, S, V, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (B, S))
    saved: list[str] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}")
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(pred, labels)
    print(f"torch {torch.__version__}; logits {(B, S, V)} bfloat16")
    print(f"saved for backward: {saved}")
    _, codes = run_and_get_code(lambda: loss_fn(pred, labels).backward())
    found = []
    for code in codes:
        found += re.findall(r"empty_strided_\w+\((\([^)]*\)), \([^)]*\), (torch\.\w+)\)", code)
    print(f"buffers its kernels allocate: {[f'{s} {d}' for s, d in found]}")


if __name__ == "__main__":
    main()
