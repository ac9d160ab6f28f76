"""Transformers: what a training step saves and holds, and what inference keeps.

The package reads top down: :mod:`.context` (what every row reads), :mod:`.tables` (the
rows, family by family) and :mod:`.assembly` (the phases of a step built from them).

Each family's layer is a list of :class:`~nnmem.models.tensors.Row` s, one per tensor that
autograd saves for backward, transcribed from the Hugging Face ``transformers`` modeling
code (``models/<family>/modeling_<family>.py``) and PyTorch's backward formulas
(``tools/autograd/derivatives.yaml``), and checked tensor by tensor against live-tensor
traces of PyTorch 2.13 and transformers 5.24 (``benchmarks/accuracy/inventory.md``).
Rows carry width classes (:mod:`nnmem.models.tensors`), so one table serves fp32, autocast and
pure 16-bit training on a GPU or a CPU.

Rules that decide which rows exist:

- a linear layer saves its input only to compute its weight gradient, so frozen layers
  (a LoRA base) do not (``tag="linear:…"``);
- under autocast each ``F.linear`` casts its own copy of the input to 16-bit, so three
  projections of one tensor save three copies; pure 16-bit saves the tensor once;
- dropout with p > 0 saves a mask: a bool on CUDA, the scaled noise on the CPU;
- memory-efficient attention (SDPA) saves q, k, v, the output and an fp32 log-sum-exp,
  never the s×s scores; eager attention saves the softmax and the probabilities;
- full checkpointing keeps only each layer's input and recomputes the layer in backward.
"""

from nnmem.models.transformer.assembly import (
    activations,
    build,
    build_inference,
    build_training,
    kv_cache_term,
    weight_terms,
)
from nnmem.models.transformer.context import Ctx, context

__all__ = [
    "Ctx",
    "activations",
    "build",
    "build_inference",
    "build_training",
    "context",
    "kv_cache_term",
    "weight_terms",
]
