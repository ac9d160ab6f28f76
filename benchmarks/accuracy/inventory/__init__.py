"""Symbolic inventory of what a training or inference step saves and holds at its peaks.

Each setting runs the harness's own step (``runner._training_step``, or a prefill and a
decode step as in ``runner._measure_inference``) under ``FakeTensorMode`` at probe sizes
where every dimension is a different number, so that each tensor shape can be written in
symbols (``(b, s, 3h)``, ``(b, a, s, s)``, ``(b·s, V)``). Every storage gets a record of
who made it and when, every saved storage a record of who saved it, and each phase keeps
the live set at its local maxima. The symbolic rows are summed and checked against the
harness's measured bytes, at the probe size and at one real case of ``measured.json``.

How each row is attributed:

* **module path**: forward pre-hooks and forward hooks (``always_call=True``) on every
  named module keep a stack of the modules whose forward is running. A checkpointed
  layer's forward is also pushed while ``torch.utils.checkpoint`` runs or replays it.
* **calling function**: a ``TorchFunctionMode`` keeps the torch-level function being
  run (``F.linear``, ``torch.matmul``, ``Tensor.float``, ``F.cross_entropy``...). The
  mode is switched off inside its own handler, so this is the outermost torch call,
  the one the model's Python code made.
* **autograd node**: right after each torch-level call returns, the new autograd nodes
  behind its outputs are walked once and each node's ``_saved_*`` fields are read, which
  names the node holding each saved storage (``MmBackward0``, ``NativeDropoutBackward0``,
  ``LogSoftmaxBackward0``...). The node's ``metadata`` keeps the module path and call,
  so that tensors made in backward (``torch._C._current_autograd_node()``) are named
  after the forward code they differentiate. Inside a checkpointed layer the saved
  fields are not read: reading them would start the recomputation.
* **storage shape**: the shape of the op result that first returned the storage,
  replaced by a later full-size view of higher rank (``(b·s, h)`` becomes ``(b, s, h)``).
  Outputs of ``_foreach_*`` ops are named after the parameter of the same list position.

The peak of a phase at the probe size need not be the peak at a real size (at the probe
the vocabulary is small, so the logits rarely decide it). Each phase therefore keeps one
live set per distinct moment (the op and module path that made the last allocation
before memory fell, in the first or last layer or outside the layers), the sets are
written in symbols with the layer counts generalised (``L``, ``L-1``, ``1``), and the
report lists the moments that are the maximum at the probe, at the real case, or at the
real case with a 4× longer or shorter sequence or batch 1.

Usage (repository root, accuracy venv)::

    python -m benchmarks.accuracy.inventory                 # every setting, checks only
    python -m benchmarks.accuracy.inventory --only gpt2     # settings whose key contains
    python -m benchmarks.accuracy.inventory --write         # also rewrite inventory.md
"""

from __future__ import annotations
