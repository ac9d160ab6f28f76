"""A bare parameter count with width and depth, shaped as a GPT layer stack."""

from __future__ import annotations

from nnmem.formats import bits
from nnmem.models.step import (
    HF_ANATOMY,
    KORTHIKANTI,
    Built,
    Step,
    apply_states,
    gradients_held,
    model_states,
    param_bytes,
    training_phases,
)
from nnmem.models.stored import stored_weight_terms
from nnmem.optimizers import Trainable
from nnmem.result import phases_of, total
from nnmem.scenario import LABELS, Checkpointing, GenericModel, Mode, Precision, Scenario
from nnmem.terms import product


def generic_tensors(m: GenericModel, width: int) -> list[Trainable]:
    """A GPT-shaped tensor list for a bare parameter count: per layer the attention
    (4·h²) and MLP (8·h²) matrices, the rest as one embedding-like matrix."""
    h, layers = m.hidden_size, m.num_layers
    tensors = []
    in_layers = 12 * h * h * layers
    if in_layers <= m.params:
        tensors += [Trainable((h, h), width, 4 * layers), Trainable((4 * h, h), width, 2 * layers)]
        rest = m.params - in_layers
        if rest >= h:
            tensors.append(Trainable((rest // h, h), width))
        if rest % h:
            tensors.append(Trainable((rest % h,), width))
    else:
        tensors.append(Trainable((m.params,), width))
    return tensors


def build(s: Scenario) -> Built:
    """A parameter count with width and depth: Korthikanti's per-layer activations."""
    m = s.model
    assert isinstance(m, GenericModel)
    notes: list[str] = []
    shape = {
        "hidden_size": f"hidden dimension {m.hidden_size:,}",
        "num_layers": f"{m.num_layers:,} layers",
    }
    if m.derived:
        notes.append(
            "Assumed "
            + " and ".join(shape[k] for k in m.derived)
            + " from the parameter count (a layer holds about 12·h² parameters; "
            "h ≈ 128·L); give the real values for exact activations."
        )
    sb = [("s", s.seq_len), ("b", s.batch_size)]
    if s.mode is Mode.INFERENCE:
        fmt = s.precision.weight_format
        weights = stored_weight_terms(s) or [
            product(
                "weights",
                f"{LABELS[s.precision]} weights",
                [("P", m.params)],
                bits(fmt, s.group_size) / 8,
                HF_ANATOMY,
            )
        ]
        width = s.precision.compute_bytes
        working = product(
            "activations",
            "one layer's working set: input, MLP up-projection and activation",
            [*sb, ("h", m.hidden_size)],
            9 * width,
            "Korthikanti et al. 2022 §4.1 MLP terms; without autograd each layer's tensors "
            "are freed before the next layer runs",
        )
        notes.append(
            "The parameter-count model has no KV cache or logits: describe the "
            "architecture (config.json or a catalog model) to include them."
        )
        return Built(phases_of(("prefill", [*weights, working])), notes)

    width = param_bytes(s.precision)
    tensors = generic_tensors(m, width)
    st = model_states(s, tensors)
    notes += st.notes
    casts = []
    if s.precision.is_amp:
        casts = [
            product(
                "autocast_copies",
                "16-bit copies autocast makes of the weights",
                [("P", m.params)],
                2,
                HF_ANATOMY,
            )
        ]
    fp32 = s.precision is Precision.FP32
    layer_bytes = 66 if fp32 else 34  # fp32 doubles the 32 two-byte terms; masks stay 1 B
    if s.checkpointing in (Checkpointing.FULL, Checkpointing.PER_OP, Checkpointing.EVERY_N):
        saved = [
            product(
                "activations",
                "each layer's input, kept by checkpointing",
                [("L", m.num_layers), *sb, ("h", m.hidden_size)],
                4 if fp32 else 2,
                "Korthikanti et al. 2022 §5: full recomputation keeps 2·s·b·h per layer",
            )
        ]
        if s.checkpointing is Checkpointing.EVERY_N:
            # torchtitan layer SAC: ⌊L/n⌋ layers keep their input, the rest everything.
            wrapped = m.num_layers // min(s.checkpoint_every, m.num_layers)
            saved = [
                product(
                    "activations",
                    "checkpointed input of every n-th layer",
                    [("⌊L/n⌋", wrapped), *sb, ("h", m.hidden_size)],
                    4 if fp32 else 2,
                    "torchtitan models/llama3/infra/parallelize.py "
                    "_apply_ac_to_transformer_block, selective_ac_option 'n'",
                ),
                product(
                    "activations",
                    "saved by the layers not checkpointed",
                    [("L−⌊L/n⌋", m.num_layers - wrapped), *sb, ("h", m.hidden_size)],
                    layer_bytes,
                    KORTHIKANTI,
                ),
            ]
        if s.checkpointing is Checkpointing.PER_OP:
            # The input, the q, v (h wide in this GPT shape), up (4h) and down (h)
            # matmul outputs and the attention output: 9·h values per token.
            saved = [
                product(
                    "activations",
                    "input, every other matmul output and the attention output per layer",
                    [("L", m.num_layers), *sb, ("9·h", 9 * m.hidden_size)],
                    4 if fp32 else 2,
                    "torchtitan models/llama3/infra/parallelize.py "
                    "_apply_ac_to_transformer_block, selective_ac_option 'op'",
                )
            ]
        recompute = [
            product(
                "temporaries",
                "one layer recomputed in backward",
                [*sb, ("h", m.hidden_size)],
                layer_bytes,
                KORTHIKANTI,
            )
        ]
    else:
        saved = [
            product(
                "activations",
                "saved for backward by every layer",
                [("L", m.num_layers), *sb, ("h", m.hidden_size)],
                layer_bytes,
                KORTHIKANTI,
            )
        ]
        recompute = []
    step = apply_states(
        Step(
            casts=casts,
            saved=saved,
            backward_extra=recompute,
            accumulating=s.grad_accum_steps > 1,
            grads_in_forward=gradients_held(s)[0],
        ),
        st,
    )
    notes.append(
        "The parameter-count model assumes a GPT-style layer (MLP width 4h, "
        "dropout) and memory-efficient attention, and has no logits term; describe "
        "the architecture for exact activations."
    )
    return Built(training_phases(step), notes, total(saved), tuple(st.host), tuple(st.nvme))
