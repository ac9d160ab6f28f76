"""The memory features a training loop switches on, against values derived by hand.

The model is Llama 3.2 1B (catalog preset): h = 2,048, L = 16, V = 128,256, tied
embeddings, so its largest parameter is the embedding, V·h = 262,668,288 values.
Sources: torchtune torchtune/modules/loss/ce_chunked_output_loss.py
CEWithChunkedOutputLoss and modules/transformer.py TransformerDecoder.chunked_output
(chunked cross-entropy); modules/optim.py OptimizerInBackward and training/memory.py
register_optim_in_bwd_hooks (optimizer in backward); training/_activation_offloading.py
OffloadActivations (activation offloading).
"""

from __future__ import annotations

from typing import Any

import pytest

from nnmem.cli import main
from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.result import Estimate
from nnmem.scenario import parse
from nnmem.web.form import read

V, H, L = 128_256, 2_048, 16
LLAMA_1B = {"model": "preset", "preset": "llama-3.2-1b", "precision": "bf16"}


def run(**settings: Any) -> Estimate:
    return estimate(parse({**LLAMA_1B, **settings}))


def term(e: Estimate, phase: str, label: str) -> int:
    """The bytes of the term whose label starts with ``label`` at ``phase``."""
    terms = next(p for p in e.phases if p.name == phase).terms
    return next(t.bytes for t in terms if t.label.startswith(label))


# --- chunked cross-entropy -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq_len", "chunks", "chunk_tokens"),
    [
        (4096, 8, 512),  # torchtune's default num_output_chunks=8
        (4100, 8, 513),  # tensor_split: the first chunks take the remainder
        (4096, 1, 4096),  # one chunk
    ],
)
def test_chunked_loss_holds_one_chunk_gradient(
    seq_len: int, chunks: int, chunk_tokens: int
) -> None:
    """The compiled chunks save the 16-bit logits whole (b·s·V × 2 B) with the int64 labels
    and two fp32 values per token (b·s × (8 + 8) B); backward makes one chunk's 16-bit
    gradient and one fp32 sum per token at a time: b·⌈s/n⌉ × (V × 2 + 4) B. With a frozen
    head (LoRA) that is the backward's peak; a trainable head's is the next test's."""
    e = run(seq_len=seq_len, loss="chunked", loss_chunks=chunks, finetune="lora")
    assert term(e, "loss", "logits chunks saved") == seq_len * V * 2 + seq_len * (8 + 8)
    assert term(e, "backward", "one chunk's logits gradient") == chunk_tokens * (V * 2 + 4)


def test_chunked_loss_with_a_trainable_head_peaks_at_the_head() -> None:
    """Every chunk's loss runs backward before the head's matmuls (autograd runs the node
    made last first), and the second chunk's head gradient is added to the first out of
    place: at 4,096 tokens in 8 chunks the 6 chunks still waiting hold 6 × 512 × V × 2 B
    = 788,004,864 B of logits gradients beside three V·h × 2 B head gradients,
    3 × 525,336,576 = 1,576,009,728 B; the loss's own peak, every chunk's logits and one
    chunk's gradient, is 1,050,738,688 + 131,336,192 B, less by 1,181,939,712 B."""
    e = run(seq_len=4096, loss="chunked", loss_chunks=8)
    waiting = term(e, "backward", "logits gradients of the 6 chunks")
    assert waiting == 6 * 512 * V * 2 == 788_004_864
    assert term(e, "backward", "head weight gradients") == 3 * V * H * 2 == 1_576_009_728
    at_loss = term(e, "loss", "logits chunks saved") + 512 * (V * 2 + 4)
    assert at_loss == 1_050_738_688 + 131_336_192
    assert waiting + 1_576_009_728 - at_loss == 1_181_939_712


def test_chunked_loss_against_the_standard_one() -> None:
    """The standard loss upcasts all of b·s·V (4,096 × 128,256 × 4 B = 2,101,346,304 B)
    beside the 16-bit logits and saves an fp32 log-softmax of that size; the compiled
    chunks make no fp32 copy, so the loss phase holds the 16-bit logits once, with 16 bytes
    a token of labels and statistics where the log-softmax kept 8 of labels."""
    plain, chunked = run(seq_len=4096), run(seq_len=4096, loss="chunked")
    assert term(plain, "loss", "logits and their fp32 copy") == 4096 * V * (2 + 4)
    assert term(plain, "loss", "log-softmax saved") == 4096 * V * 4 + 4096 * 8
    labels = [t.label for p in chunked.phases for t in p.terms]
    assert not any("fp32 copy" in label for label in labels)

    def loss_bytes(e: Estimate) -> int:
        return next(p for p in e.phases if p.name == "loss").bytes

    assert loss_bytes(plain) - loss_bytes(chunked) == 4096 * V * (2 + 4 + 4 - 2) - 4096 * 8


# --- optimizer in backward -----------------------------------------------------------------


def test_optimizer_in_backward_holds_the_largest_gradient() -> None:
    """Each gradient is stepped and freed as backward makes it: the largest alive is the
    embedding's, V·h × 2 B = 525,336,576 B, beside a foreach step over that tensor alone
    (one copy of it, the same bytes); no optimizer-step phase holds every gradient."""
    e = run(seq_len=128, optimizer_in_backward=True)
    assert [p.name for p in e.phases] == ["forward", "loss", "backward"]
    assert term(e, "backward", "gradient of the largest parameter") == V * H * 2 == 525_336_576
    assert term(e, "backward", "foreach step") == 525_336_576
    plain = run(seq_len=128)
    assert (
        next(p for p in plain.phases if p.name == "optimizer_step").by_key()["gradients"]
        == 1_235_814_400 * 2
    )


def test_optimizer_in_backward_with_fused_adamw_adds_no_step() -> None:
    e = run(seq_len=128, optimizer_in_backward=True, optimizer_impl="fused")
    assert e.component_sizes()["gradients"] == 525_336_576
    assert "temporaries" not in {t.key for p in e.phases for t in p.terms if "step" in t.label}


def test_optimizer_in_backward_refuses_accumulation() -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**LLAMA_1B, "optimizer_in_backward": True, "grad_accum_steps": 4})
    (problem,) = caught.value.problems
    assert problem.key == "optimizer_in_backward"
    assert "4 micro-batches" in problem.message


def test_optimizer_in_backward_applies_to_the_plain_loop_only() -> None:
    """A sharding stack has its own step: the key is not read there, and hidden."""
    ddp = parse({**LLAMA_1B, "stack": "ddp", "num_gpus": 2, "optimizer_in_backward": True})
    assert "optimizer_in_backward" in ddp.inactive_fields()
    plain = parse({**LLAMA_1B, "optimizer_in_backward": True})
    assert "optimizer_in_backward" not in plain.inactive_fields()
    assert "zero_grad" in plain.inactive_fields()


# --- activation offloading ------------------------------------------------------------------


def test_offloaded_checkpoint_inputs_go_to_host_memory() -> None:
    """With full checkpointing each layer saves its input, b·s·h × 2 B = 16,777,216 B at
    4,096 tokens: all 16 go to pinned CPU memory (268,435,456 B), and so do the rows
    outside the layers but the head's input: rotary cos and sin (2 × s·d × 2 B =
    1,048,576), the final norm's fp32 input (b·s·h × 4 = 33,554,432), rsqrt (b·s × 4 =
    16,384) and output (16,777,216) and the position ids (s × 8 = 32,768), 51,429,376 B.
    The final norm packs its fp32 input and rsqrt twice each and its output once: the
    last 5 packs, whose GPU tensors the forward stash keeps (50,348,032 B)."""
    e = run(seq_len=4096, checkpointing="full", activation_offload=True)
    assert e.host_bytes == L * 4096 * H * 2 + 51_429_376 == 319_864_832
    stash = term(e, "forward", "the tensors of the last 5 packs")
    assert stash == 4096 * H * 4 + 4096 * 4 + 4096 * H * 2 == 50_348_032
    assert term(e, "forward", "input of the output head") == 4096 * H * 2
    kept = run(seq_len=4096, checkpointing="full")
    assert term(kept, "forward", "saved checkpointed input") == 268_435_456
    assert kept.host_bytes == 0


def test_offload_keeps_the_final_norms_tensors_in_the_stash() -> None:
    """The last 5 packs are the final norm's (fp32 input and rsqrt twice, output once), so
    the stash holds b·s·h × 4 + b·s × 4 + b·s·h × 2 = 3,146,752 B at 256 tokens and
    nothing of the layers; with a frozen head and norm (LoRA) the norm packs 4 times and
    the fifth is the last layer's input, b·s·h × 2 B. The stash is gone before any layer
    runs backward; the host holds every layer's tensors and the rows outside them but
    the head's input (b·s·h × 2 = 1,048,576 B)."""
    e = run(seq_len=256, activation_offload=True)
    stash = term(e, "forward", "the tensors of the last 5 packs")
    assert stash == 256 * H * 4 + 256 * 4 + 256 * H * 2 == 3_146_752
    assert not any(
        "stash" in t.label for t in next(p for p in e.phases if p.name == "backward").terms
    )
    plain = run(seq_len=256)
    saved = term(plain, "forward", "saved ")
    outside = term(plain, "forward", "embeddings, final norm and head inputs")
    assert e.host_bytes == saved + outside - 256 * H * 2
    lora = run(seq_len=4096, checkpointing="full", activation_offload=True, finetune="lora")
    stash = term(lora, "forward", "the tensors of the last 5 packs")
    assert stash == 4096 * H * 4 + 4096 * 4 + 4096 * H * 2 == 50_348_032


# --- the schema, the CLI and the page --------------------------------------------------------


def test_round_trip_and_inactive_rules() -> None:
    s = parse({**LLAMA_1B, "loss": "chunked", "loss_chunks": 16, "activation_offload": True})
    assert parse(s.to_dict()) == s
    assert s.to_dict(compact=True)["loss_chunks"] == 16
    assert "loss_chunks" in parse({**LLAMA_1B}).inactive_fields()
    generic = parse({"params_millions": 1000, "loss": "chunked", "activation_offload": True})
    off = set(generic.inactive_fields())
    assert {"loss", "loss_chunks", "optimizer_in_backward", "activation_offload"} <= off
    served = parse({**LLAMA_1B, "mode": "inference"})
    assert "activation_offload" in served.inactive_fields()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"loss": "apple_cce"}, "loss"),
        ({"loss": "chunked", "loss_chunks": 0}, "loss_chunks"),
        ({"optimizer_in_backward": "maybe"}, "optimizer_in_backward"),
        ({"activation_offload": 2}, "activation_offload"),
        ({"paged_optimizer": "paged"}, "paged_optimizer"),
    ],
)
def test_bad_values_name_their_field(data: dict[str, Any], key: str) -> None:
    with pytest.raises(NnmemError) as caught:
        parse({**LLAMA_1B, **data})
    assert [p.key for p in caught.value.problems] == [key]


def test_cli_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--preset", "llama-3.2-1b", "--precision", "bf16", "--seq-len", "4096"]
    flags = ["--set", "checkpointing=full", "--activation-offload", "true", "--json"]
    assert main([*args, *flags, "--loss", "chunked", "--loss-chunks", "8"]) == 0
    out = capsys.readouterr().out
    assert '"host_bytes": 319864832' in out


def test_the_form_reads_the_features() -> None:
    fields = {
        "describe": "fields",
        "preset": "llama-3.2-1b",
        "precision": "bf16",
        "loss": "chunked",
        "loss_chunks": "4",
        "optimizer_in_backward": "on",
        "activation_offload": "on",
    }
    reading = read(fields)
    assert reading.scenario is not None
    assert reading.scenario.loss_chunks == 4
    assert reading.scenario.optimizer_in_backward
    assert reading.scenario.activation_offload
    assert "loss_chunks" not in reading.inactive
    assert "zero_grad" in reading.inactive


# --- paged optimizers (bitsandbytes) ---------------------------------------------------------

# Llama 3.2 1B's parameters under 100,000 values are its 33 RMSNorm weights of h = 2,048
# values (two per layer and the final norm): 67,584 values; the rest, 1,235,746,816, are
# in tensors bitsandbytes pages (get_state_buffer: p.numel() >= 1e5).
SMALL, BIG = 33 * H, 1_235_814_400 - 33 * H


def test_paged_adamw_keeps_fp32_states_in_unified_memory() -> None:
    """PagedAdamW keeps two fp32 states (optim_bits=32) whatever the weights' type: the
    large parameters' 8 B per value in unified memory, beside the GPU figure
    (9,885,974,528 B); the norms' on the GPU (540,672 B); the kernels add nothing."""
    e = run(seq_len=128, paged_optimizer=True)
    assert e.host_bytes == 8 * BIG == 9_885_974_528
    assert e.component_sizes()["optimizer_state"] == 8 * SMALL == 540_672
    step = next(p for p in e.phases if p.name == "optimizer_step").by_key()
    assert "temporaries" not in step


def test_paged_adamw_8bit_pages_the_uint8_states_only() -> None:
    """PagedAdamW8bit: the uint8 states of large parameters are paged (2 B per value,
    2,471,493,632 B); their fp32 absmax per 256 values (BIG / 32 = 38,617,088 B) and the
    norms' fp32 states (under min_8bit_size = 4,096 values) stay on the GPU."""
    e = run(seq_len=128, optimizer="adamw_8bit", paged_optimizer=True)
    assert e.host_bytes == 2 * BIG == 2_471_493_632
    assert e.component_sizes()["optimizer_state"] == BIG // 32 + 8 * SMALL == 39_157_760


def test_paged_optimizer_applies_where_one_process_holds_the_optimizer() -> None:
    plain = parse({**LLAMA_1B, "paged_optimizer": True})
    assert "paged_optimizer" not in plain.inactive_fields()
    for other in ({"optimizer": "sgd"}, {"stack": "ddp", "num_gpus": 2}, {"sharding": "zero2"}):
        assert "paged_optimizer" in parse({**LLAMA_1B, **other}).inactive_fields()
    trainer = parse({**LLAMA_1B, "stack": "hf_trainer", "optimizer": "adamw_8bit"})
    assert "paged_optimizer" not in trainer.inactive_fields()


# --- Liger's fused linear cross-entropy ------------------------------------------------------


def test_fused_linear_loss_makes_one_chunk_of_logits() -> None:
    """Liger chunks the b·s = 4,096 tokens by next_power_of_2(⌈4,096 / ⌈V/h⌉⌉) =
    next_power_of_2(⌈4,096 / 63⌉ = 66) = 128 rows: one chunk of logits is 128 × V × 2 B
    = 32,833,536 B, beside one fp32 loss per token (16,384 B). Forward already makes the
    hidden states' gradient (b·s·h × 2 B = 16,777,216 B) and the head weight's (V·h × 2 B
    = 525,336,576 B), kept to backward; the logits are never whole."""
    e = run(seq_len=4096, loss="fused_linear")
    assert term(e, "loss", "one chunk of logits") == 128 * V * 2 + 4096 * 4 == 32_849_920
    assert term(e, "loss", "gradients made by the fused loss") == 16_777_216 + 525_336_576
    forward = next(p for p in e.phases if p.name == "forward").by_key()
    assert "logits" not in forward


def test_fused_linear_loss_with_a_frozen_head() -> None:
    """LoRA leaves the head frozen: Liger makes no grad_weight."""
    e = run(seq_len=4096, loss="liger", finetune="lora")
    assert term(e, "loss", "gradients made by the fused loss") == 4096 * H * 2


def test_a_cpu_step_has_nothing_to_offload_or_page() -> None:
    """OffloadActivations packs only accelerator tensors, and bitsandbytes' get_state_buffer
    does not page on the CPU: both keys are hidden and read as off there."""
    s = {"device": "cpu", "seq_len": 128, "checkpointing": "full"}
    on = run(**s, activation_offload=True, paged_optimizer=True)
    assert {"activation_offload", "paged_optimizer"} <= set(on.scenario.inactive_fields())
    assert on.host_bytes == 0
    assert on.total_bytes == run(**s).total_bytes


# --- Apple's Cut Cross-Entropy ---------------------------------------------------------------


def test_cut_cross_entropy_keeps_one_value_a_token() -> None:
    """CCE saves one fp32 log-sum-exp and the int64 target per token (4,096 × 12 B =
    49,152 B) and no logits; its backward writes de (b·s·h × 2 B = 16,777,216 B) and dc
    (V·h × 2 B = 525,336,576 B) in the weights' type (the default 'cce' impl)."""
    e = run(seq_len=4096, loss="cce")
    assert term(e, "loss", "saved by Cut Cross-Entropy") == 4096 * (4 + 8) == 49_152
    assert term(e, "backward", "gradients CCE's backward writes") == 16_777_216 + 525_336_576
    assert "logits" not in next(p for p in e.phases if p.name == "forward").by_key()
    lora = run(seq_len=4096, loss="cut_cross_entropy", finetune="lora")
    assert term(lora, "backward", "gradients CCE's backward writes") == 16_777_216
