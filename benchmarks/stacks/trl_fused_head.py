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

Measured (CPU): the step starts at 60,005,804 B; the backbone returns at 67,708,332 B
(bf16 autocast copies of the layers' weights and the checkpointed layer inputs); forward
peaks at 98,284,090 B inside the fused head, 30,575,758 B above the backbone's output,
about 29 B per logit (b·(s-1)·V = 2 · 127 · 4,096 = 1,040,384 logits, about seven fp32
copies of them); backward peaks at 115,410,320 B, the run's peak, in the head's backward,
before the last layer is recomputed. nnmem's standard loss holds the bf16 logits, their
fp32 upcast and the log-softmax (about 10 B per logit at the loss), so the run's peak is
the head's, which nnmem does not model.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from benchmarks.stacks import runs
from benchmarks.stacks.common import BATCH, SEQ, StackTracker, build_llama


def main() -> dict[str, Any]:
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


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
