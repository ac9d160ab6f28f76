"""What torch's loss-parallel cross-entropy holds, on the CPU.

``python -m benchmarks.stacks.loss_parallel`` (torch only) runs the local computations
``loss_parallel()`` dispatches a vocabulary-sharded cross-entropy to
(torch/distributed/tensor/parallel/loss.py: ``_log_softmax`` in forward, then
``_nll_loss_and_log_softmax_backward``, into which the nll and log-softmax backward are
fused) on one rank's shard of fp32-upcast bf16 logits, as torchtitan's loss calls it
(``cross_entropy(pred.flatten(0, 1).float(), labels.flatten(0, 1))``), over a one-rank
gloo group, and prints the live bytes (``benchmarks.accuracy.tracker.LiveBytesTracker``)
per logit of the shard, counted from the bf16 logits alone.

Measured with torch 2.13 (CPU), 128 tokens × 1,000 logits, above the bf16 logits: 12.02 B
a logit at the loss (their fp32 copy, ``shifted = x - max`` and ``exp(shifted)``, all
fp32) and 16.03 in backward (the saved fp32 log-softmax, ``grad_input = zeros_like(x)``,
``exp(x)`` and ``grad_input + exp(x)``). aten's own kernels hold 8 and 12 (the fp32 copy
and the saved log-softmax; two fp32 gradients beside it): the loss-parallel path keeps
one fp32 tensor of the shard more in each (``assembly.loss_terms``, ``LOSS_PARALLEL``).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import loss as tp_loss

from benchmarks.accuracy.tracker import LiveBytesTracker

TOKENS, V = 128, 1000


def main() -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29631")
    dist.init_process_group("gloo", rank=0, world_size=1)
    mesh = init_device_mesh("cpu", (1,))
    torch.manual_seed(0)
    logits = torch.randn(TOKENS, V, dtype=torch.bfloat16)
    labels = torch.randint(0, V, (TOKENS,))
    live = LiveBytesTracker()
    with live:
        for tensor in (logits, labels):
            live.register(tensor)
        live.set_phase("loss")
        upcast = logits.float()
        log_probs = tp_loss._log_softmax(upcast, 1, False, mesh, 0)
        del upcast  # the .float() copy: nothing saves it
        loss, total = tp_loss._nll_loss_forward(
            log_probs, labels, None, None, 1, -100, log_probs.shape, 1, mesh, 0
        )
        live.set_phase("backward")
        grad = tp_loss._nll_loss_and_log_softmax_backward(
            torch.ones(()), log_probs, labels, None, 1, -100, total, log_probs.shape, 1, mesh, 0
        )
        del log_probs  # the log-softmax node frees its saved result
        grad16 = grad.to(torch.bfloat16)  # ToCopyBackward into the bf16 logits
        del grad, grad16, loss
    report = live.phase_report()
    live.close()
    dist.destroy_process_group()
    start = report["loss"]["start_bytes"]  # the bf16 logits and the int64 labels
    print(f"torch {torch.__version__}; {TOKENS} tokens × {V} logits; bytes a logit above them:")
    for phase in ("loss", "backward"):
        print(f"  {phase}: {(report[phase]['peak_bytes'] - start) / (TOKENS * V):.2f}")


if __name__ == "__main__":
    main()
