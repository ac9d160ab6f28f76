"""Where TRL's SFTTrainer peaks with its default SFTConfig, on the CPU.

``python -m benchmarks.stacks.trl_fused_head`` reruns ``trl_sft.defaults`` of
``measure.py`` (the small Llama, batch 2, TRL 1.16.0, transformers 5.24.0, torch 2.13)
and prints the live bytes (``benchmarks.stacks.common.StackTracker``) at the start of a
step, when the backbone (embeddings, layers, final norm) returns, at forward's peak and
at backward's peak, step 3.

TRL 1.16's ``SFTTrainer.compute_loss`` calls the model with ``fused_lm_head=True``
(trl/trainer/utils.py ``add_fused_lm_head``): the head and the log-probabilities run in
``_ChunkedLogProbFunction`` (trl/kernels/chunked_logprob.py), which on a device without
Triton (``_use_triton``) takes its torch-ops path over all b·(s-1) positions.

With ``--stub-folds`` the three torch-ops helpers that CUDA replaces with allocation-free
kernels are stubbed (``without_cpu_folds``), so the live bytes are those of the tensors
TRL's Python code allocates: what nnmem's ``trl_sft`` stack models
(nnmem/models/transformer/assembly.py ``_trl_fused_head_terms``). ``--write`` stores the
figures under the mode's key in ``trl_fused_head.json``.

Measured (CPU, 2026-12-06): the step starts at 60,005,804 B; the backbone returns at
67,708,332 B (bf16 autocast copies of the layers' weights and the checkpointed layer
inputs).
- Defaults: forward peaks at 98,284,090 B inside the fused head and backward at
  115,410,320 B, the run's peak, in the head's backward.
- Folds stubbed: forward peaks at 86,851,170 B and backward at 85,239,184 B. nnmem gives
  86,974,720 B (loss) and 85,362,944 B (backward's start), +0.14% each: it counts b·s =
  256 positions where TRL projects b·(s − 1) = 254 (134,234 B, mostly two rows of the
  32,768-wide tile), and the run holds about 10.7 kB of batch tensors and counters more.
- So the CPU's fold temporaries are 11,432,920 B in forward and 30,171,136 B in
  backward, about 2.7 and 7.2 fp32 tiles of 254 × 4,096 × 4 = 4,161,536 B: those of
  ``_forward_tile``, ``_backward_tile`` and ``_addmm_fp32``'s ``.float()`` copies, which
  a CUDA device with Triton does not make and nnmem does not count.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.stacks import runs
from benchmarks.stacks.common import BATCH, SEQ, StackTracker, build_llama


def without_cpu_folds() -> None:
    """Stub the torch-ops helpers that a CUDA device with Triton does not run.

    trl/kernels/chunked_logprob.py folds each tile with ``_forward_kernel`` and
    ``_backward_kernel`` under Triton and accumulates with ``torch.addmm(...,
    out_dtype=torch.float32)`` on CUDA, none of which allocates; on a CPU it runs
    ``_forward_tile``, ``_backward_tile`` and ``_addmm_fp32``'s ``.float()`` copies, which
    hold fp32 tiles. With the three stubbed to do nothing, every tensor TRL's Python code
    allocates is still made, at its size and time, and the live bytes are those of a
    device that needs no temporaries to fold a tile (the values are meaningless)."""
    from trl.kernels import chunked_logprob

    def nothing(*_: Any, **__: Any) -> None:
        return None

    chunked_logprob._forward_tile = nothing
    chunked_logprob._backward_tile = nothing
    chunked_logprob._addmm_fp32 = nothing


def main(stub_folds: bool = False) -> dict[str, Any]:
    if stub_folds:
        without_cpu_folds()
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tok = runs._tokenizer()
    data = Dataset.from_dict({"text": runs._texts(12)})
    tracker = StackTracker()
    marks: dict[str, int] = {}

    class Phases(TrainerCallback):  # type: ignore[misc]
        def on_pre_optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            tracker.set_phase("optimizer_step")

    with tempfile.TemporaryDirectory() as out, tracker, tracker.watching_resize():
        tracker.set_phase("setup")
        model = build_llama()
        config = SFTConfig(
            output_dir=out,
            max_steps=3,
            per_device_train_batch_size=BATCH,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            logging_strategy="no",
            max_length=SEQ,
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=data,
            processing_class=tok,
            callbacks=[Phases()],
        )
        compute_loss = trainer.compute_loss

        def tracked(*args: Any, **kwargs: Any) -> Any:
            tracker.reset_phases()
            tracker.set_phase("forward")
            marks["step_start"] = tracker.current
            loss = compute_loss(*args, **kwargs)
            tracker.set_phase("backward")
            return loss

        def backbone_done(*_: Any) -> None:
            if tracker.phase == "forward":
                marks["backbone_output"] = tracker.current

        trainer.compute_loss = tracked  # type: ignore[method-assign]
        model.model.register_forward_hook(backbone_done)
        trainer.train()
        report = tracker.phase_report()
    tracker.close()
    return marks | {
        "forward_peak": report["forward"]["peak_bytes"],
        "backward_peak": report["backward"]["peak_bytes"],
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
        "gradient_checkpointing_kwargs": trainer.args.gradient_checkpointing_kwargs,
        "bf16": bool(trainer.args.bf16),
    }


OUT = Path(__file__).with_name("trl_fused_head.json")


if __name__ == "__main__":
    import sys

    stub = "--stub-folds" in sys.argv
    figures = main(stub_folds=stub)
    print(json.dumps(figures, indent=1))
    if "--write" in sys.argv:
        stored = json.loads(OUT.read_text(encoding="utf-8")) if OUT.exists() else {}
        stored["stub_folds" if stub else "defaults"] = figures
        OUT.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n", encoding="utf-8")
