"""What torchtune's chunked cross-entropy keeps, eager and compiled, on the CPU.

``python -m benchmarks.stacks.chunked_loss`` (torch only) runs the loss as torchtune's
``CEWithChunkedOutputLoss`` does (torchtune/modules/loss/ce_chunked_output_loss.py): the
head applied to each of 8 slices of the tokens (``TransformerDecoder.chunked_output``),
then ``F.cross_entropy(logits.float(), labels, reduction="sum")`` one chunk at a time,
``compute_cross_entropy`` compiled as the class asks. It prints, for each way:

- the tensors the loss saves for backward (a ``saved_tensors_hooks`` pack hook);
- the order in which backward reaches each chunk's logits and the head;
- for the compiled loss, the buffers Inductor's generated code allocates in the forward
  and backward kernels.

Measured with torch 2.13 (CPU): eager, each chunk saves two fp32 tensors of its rows × V
(the upcast and the log-softmax); compiled, its bf16 logits, the int64 labels and two fp32
values per row (the maximum and the log-sum-exp), and the kernels allocate only those
per-row values and, in backward, the chunk's bf16 gradient. Backward reaches every
chunk's logits before the head's weight and input.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch._inductor.utils import run_and_get_code

B, S, H, V, CHUNKS = 2, 64, 32, 1000, 8


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """torchtune's compute_cross_entropy."""
    return F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")


def run(compiled: bool) -> tuple[list[str], list[str]]:
    """(what the loss saves, the order backward reaches the tensors) for one way."""
    loss_fn = torch.compile(cross_entropy) if compiled else cross_entropy
    torch.manual_seed(0)
    weight = torch.randn(V, H, dtype=torch.bfloat16, requires_grad=True)
    hidden = torch.randn(B, S, H, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (B, S))
    chunks = [c @ weight.t() for c in hidden.tensor_split(CHUNKS, dim=1)]
    saved: list[str] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}")
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        total = torch.zeros(())
        for logits, target in zip(chunks, labels.tensor_split(CHUNKS, dim=1), strict=True):
            total = total + loss_fn(logits.reshape(-1, V), target.reshape(-1))
    order: list[str] = []
    for i, chunk in enumerate(chunks):
        chunk.register_hook(lambda g, i=i: order.append(f"logits[{i}]"))
    weight.register_hook(lambda g: order.append("head weight"))
    hidden.register_hook(lambda g: order.append("head input"))
    total.backward()
    return saved, order


def kernel_buffers() -> list[str]:
    """The buffers the compiled loss's generated forward and backward code allocate."""
    loss_fn = torch.compile(cross_entropy)
    logits = torch.randn(B * S // CHUNKS, V, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (B * S // CHUNKS,))
    _, codes = run_and_get_code(lambda: loss_fn(logits, labels).backward())
    found = []
    for code in codes:
        found += re.findall(r"empty_strided_\w+\((\([^)]*\)), \([^)]*\), (torch\.\w+)\)", code)
    return [f"{shape} {dtype.removeprefix('torch.')}" for shape, dtype in found]


def main() -> None:
    print(f"torch {torch.__version__}; rows per chunk {B * S // CHUNKS}, V {V}")
    for compiled in (False, True):
        saved, order = run(compiled)
        way = "compiled" if compiled else "eager"
        print(f"{way}: saved by the first chunk's loss: {saved[: len(saved) // CHUNKS]}")
        print(f"{way}: backward order: {', '.join(order)}")
    print(f"compiled: buffers its kernels allocate: {kernel_buffers()}")


if __name__ == "__main__":
    main()
