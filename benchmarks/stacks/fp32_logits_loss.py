"""What transformers 4.37's causal-LM loss holds, on the CPU.

``python -m benchmarks.stacks.fp32_logits_loss`` (torch only) runs the tail of
transformers 4.37.2 ``LlamaForCausalLM.forward`` (models/llama/modeling_llama.py lines
1201-1215: ``logits = self.lm_head(hidden_states)``, ``logits = logits.float()``, the
shifted ``.contiguous()`` copy and ``CrossEntropyLoss``) over bf16 hidden states and a
frozen bf16 head, keeps the returned logits through backward as fsdp_qlora's loop keeps
``output``, and prints the live bytes above the inputs at the loss and in backward
(``benchmarks.accuracy.tracker.LiveBytesTracker``), in bytes per logit (b·s·V).

Measured with torch 2.13 (CPU), b 2, s 64, h 64, V 1000: 11.88 at the loss, which is
4 + 8·63/64 (the fp32 logits; the shifted copy and the log-softmax, b·(s-1)·V values
each), and 15.81 in backward, 4 + 12·63/64 (the fp32 logits; the log-softmax and its two
gradients): the ``fp32_logits`` loss's terms, 12 and 16 with s rows for s-1
(``nnmem.models.transformer.assembly._fp32_logits_terms``).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.accuracy.tracker import LiveBytesTracker

B, S, H, V = 2, 64, 64, 1000


def main() -> None:
    torch.manual_seed(0)
    head = nn.Linear(H, V, bias=False, dtype=torch.bfloat16).requires_grad_(False)
    hidden = torch.randn(B, S, H, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (B, S))
    live = LiveBytesTracker()
    with live:
        for tensor in (hidden, labels, head.weight):
            live.register(tensor)
        live.set_phase("loss")
        logits = head(hidden)
        logits = logits.float()
        shift_logits = logits[..., :-1, :].contiguous()
        shift_labels = labels[..., 1:].contiguous()
        loss = nn.CrossEntropyLoss()(shift_logits.view(-1, V), shift_labels.view(-1))
        del shift_logits, shift_labels
        live.set_phase("backward")
        loss.backward()
        del logits  # the loop's output = None, after the step
    report = live.phase_report()
    live.close()
    start = report["loss"]["start_bytes"]
    per_logit = B * S * V
    print(f"torch {torch.__version__}; b {B}, s {S}, V {V}; bytes per logit above the inputs:")
    for phase in ("loss", "backward"):
        above = report[phase]["peak_bytes"] - start
        print(f"  {phase}: {above / per_logit:.2f}")


if __name__ == "__main__":
    main()
