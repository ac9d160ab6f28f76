"""From the tables to the phases of a step: LoRA, checkpointing, the loss, the weights,
the training step and inference (prefill and a decode step with the KV cache)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from nnmem import stacks
from nnmem.formats import Format, bits, is_float, is_gguf
from nnmem.models.architecture import (
    Family,
    Transformer,
    layer_params,
    parameter_counts,
    parameter_tensors,
)
from nnmem.models.architecture import Tensor as ParamTensor
from nnmem.models.step import (
    Built,
    gradients_held,
    model_states,
    stepped_in_backward,
    zero_applies,
)
from nnmem.models.stored import stored_weight_terms
from nnmem.models.tensors import Row, as_term, total_bytes
from nnmem.models.transformer import cache, float8
from nnmem.models.transformer.context import (
    COMPILED_BLOCK,
    HF,
    HF_CACHE,
    HF_LOSS,
    LLAMA_INFERENCE,
    SOFTCAP,
    TRL_FUSED_HEAD,
    ZERO_SOURCE,
    Ctx,
    _softcap,
    context,
    context_parallel,
    expert_parallel,
    packing,
    softcap_notes,
    trl_fused_head,
)
from nnmem.models.transformer.tables import (
    final_norm_rows,
    layer_tables,
    mask_outside_rows,
    norm_packs,
    outside_rows,
)
from nnmem.optimizers import Trainable
from nnmem.result import Phase, phases_of, total
from nnmem.scenario import (
    LABELS,
    Attention,
    Checkpointing,
    Finetune,
    Logits,
    LoraDtype,
    LoraTargets,
    Loss,
    Mode,
    Packing,
    PipelineSchedule,
    Precision,
    Scenario,
    Sharding,
    Stack,
    compile_applies,
    in_backward_applies,
    language_model,
    pipeline_microbatches,
    pipeline_stages_per_rank,
)
from nnmem.terms import Term, product

FSDP_FROZEN_GATHER = (
    "PyTorch torch/distributed/fsdp/_flat_param.py FlatParamHandle.unshard: each unit's "
    "flat parameter all-gathered in its stored dtype; _runtime_utils.py _prefetch_handle "
    "with BackwardPrefetch.BACKWARD_PRE (the default) gathers the next unit ahead; "
    "parameters that do not require grad get no gradient"
)

# --- LoRA, checkpointing and selective recomputation ----------------------------------------


def adapters(c: Ctx) -> list[tuple[str, str, int, int]]:
    """(name, input width symbol, in features, out features) of each adapted linear layer
    in one layer, as peft wraps them."""
    t = c.t
    if c.lora is None:
        return []
    q, kv, h, f = t.q_width, t.kv_width, t.hidden, t.intermediate
    fused = t.model_type in ("gpt2", "gpt_bigcode")
    table = {
        "q": ("h", h, q),
        "k": ("h", h, kv),
        "v": ("h", h, kv),
        "o": ("q", q, h),
        "gate": ("h", h, f),
        "up": ("h", h, f),
        "down": ("f", f, h),
    }
    result = []
    if fused and c.lora & {"q", "k", "v"}:
        result.append(("c_attn", "h", h, q + 2 * kv))  # GPT-2 fuses q, k, v in one Conv1D
    for name in ("q", "k", "v", "o", "gate", "up", "down"):
        if name in c.lora and not (fused and name in ("q", "k", "v")):
            dims, n_in, n_out = table[name]
            result.append((name, dims, n_in, n_out))
    return result


# Adapted layers that read the same input tensor (the normed hidden states, the MLP input).
_SAME_INPUT = {"q": "qkv", "k": "qkv", "v": "qkv", "gate": "gate_up", "up": "gate_up"}


def lora_rows(c: Ctx, x: str = "s") -> list[Row]:
    """What each adapter saves: its fp32 input (after lora_dropout) and lora_B's input."""
    if lora_width(c.s) == 2:  # adapters in the model's 16-bit type (lora_dtype "model")
        return _model_dtype_lora_rows(c, x)
    rows = []
    for name, width, _, _ in adapters(c):
        dims = ("b", x, width)
        if c.lora_dropout > 0:
            rows.append(Row(f"{name} adapter dropout mask", dims, "mask_f32"))
        rows.append(Row(f"{name} adapter input in fp32", dims, "f32"))
        rows.append(Row(f"{name} lora_B input", ("b", x, "r"), "f32"))
    return rows


def _model_dtype_lora_rows(c: Ctx, x: str) -> list[Row]:
    # Adapters in the model's type (torchtune torchtune/modules/peft/lora.py LoRALinear:
    # lora_a and lora_b are nn.Linear built under the recipe's set_default_dtype) take
    # the layer's input as it is, with no cast: lora_a saves that tensor, one per input
    # the adapted layers share, and nothing more where a bitsandbytes base keeps it
    # already. lora_dropout above 0 gives each adapter its own dropped copy and mask;
    # lora_b saves its (b, s, r) input.
    rows = []
    shared: set[str] = set()
    for name, width, _, _ in adapters(c):
        dims = ("b", x, width)
        if c.lora_dropout > 0:
            rows.append(Row(f"{name} adapter dropout mask", dims, "mask_act"))
            rows.append(Row(f"{name} adapter input after dropout", dims, "act"))
        elif c.s.precision not in BNB_FORMATS and _SAME_INPUT.get(name, name) not in shared:
            shared.add(_SAME_INPUT.get(name, name))
            rows.append(Row(f"{name} adapter input", dims, "act"))
        rows.append(Row(f"{name} lora_B input", ("b", x, "r"), "act"))
    return rows


BNB_SAVES_INPUT = (
    "bitsandbytes bitsandbytes/autograd/_functions.py MatMul4Bit.forward (ctx.tensors = "
    "(A, B)) and MatMul8bitLt.forward (ctx.tensors = (CAt, subA, A)) whenever A or B needs "
    "a gradient, so a frozen 4-bit or 8-bit linear layer keeps its input for backward once "
    "the hidden states carry the adapters' gradients"
)
# The inputs of the layers' linear projections, which bitsandbytes quantizes (the head and
# MoE experts stay 16-bit: get_keys_to_not_convert, replace_with_bnb_linear).
_QUANTIZED_LINEARS = frozenset(
    {
        "linear:qkv",
        "linear:q",
        "linear:kv",
        "linear:o",
        "linear:gate_up",
        "linear:up",
        "linear:down",
    }
)


def _bnb_kept_inputs(c: Ctx) -> frozenset[str]:
    """Tags of the linear inputs a bitsandbytes 4-bit or 8-bit base keeps under LoRA."""
    if c.s.precision not in BNB_FORMATS:
        return frozenset()
    if c.t.family is Family.MOE:
        return frozenset({"linear:qkv", "linear:o"})
    return _QUANTIZED_LINEARS


def trainable_filter(c: Ctx, rows: list[Row]) -> list[Row]:
    """Drop what only frozen weights' gradients would need (a LoRA base), but the inputs a
    bitsandbytes layer saves whatever its weight (:data:`BNB_SAVES_INPUT`)."""
    if c.lora is None:
        return rows
    kept = _bnb_kept_inputs(c)
    return [r for r in rows if r.tag in kept or not r.tag.startswith(("linear:", "norm"))]


def selective(rows: list[Row]) -> list[Row]:
    """Selective recomputation drops the attention core: every score-shaped tensor."""
    seq = {"s", "t", "s16"}
    return [r for r in rows if sum(d in seq for d in r.dims) < 2]


TORCHTITAN_SAC = (
    "torchtitan torchtitan/models/llama3/infra/parallelize.py _apply_ac_to_transformer_block "
    "(selective_ac_option 'op'): the block is checkpointed with a policy that saves the "
    "outputs of every other aten.mm and of the SDPA kernel, and recomputes the rest"
)


TORCHTITAN_LAYER_SAC = (
    "torchtitan torchtitan/models/llama3/infra/parallelize.py _apply_ac_to_transformer_block "
    "(selective_ac_option 'n', layer SAC): ptd_checkpoint_wrapper on every n-th block"
)


def per_op_rows(c: Ctx, x: str = "s") -> list[Row]:
    """What torchtitan's per-op selective checkpointing keeps per layer: the block's
    input, the outputs of the 1st, 3rd, 5th and 7th matmuls of a Llama block (q, v,
    gate and down projections) and the attention kernel's output and log-sum-exp. A
    compiled block does not keep the down projection's output, which no backward op
    reads (measured: benchmarks/stacks/compiled_block.py, the policy under compile)."""
    rows = [
        Row("layer input kept by checkpointing", ("b", x, "h"), "res"),
        Row("q projection output", ("b", x, "q"), "act"),
        Row("v projection output", ("b", x, "kv"), "act"),
        Row("gate projection output", ("b", x, "f"), "act"),
        Row("down projection output", ("b", x, "h"), "act", tag=PARTIAL),
        Row("attention output", ("b", "a", x, "d"), "act"),
        Row("softmax log-sum-exp", ("b", "a", x), "f32"),
    ]
    return [r for r in rows if not (c.compiled and r.tag == PARTIAL)]


def checkpoint_rows(c: Ctx, x: str = "s") -> list[Row]:
    """What full checkpointing keeps per layer: the layer's input."""
    return [Row("layer input kept by checkpointing", ("b", x, "h"), "res")]


# --- pipeline parallelism -------------------------------------------------------------------

TORCHTITAN_SPLIT = (
    "torchtitan torchtitan/parallelisms/pipelining_utils.py generate_split_points: "
    "⌊L/stages⌋ layers to the first stage, one more to each middle stage while L mod "
    "stages lasts, the rest to the last; pipeline_llama.py _build_stage keeps the "
    "embedding on the first stage and the final norm and head on the last"
)
PIPELINE_SCHEDULES = (
    "torch torch/distributed/pipelining/schedules.py: ScheduleGPipe runs every "
    "micro-batch forward before any backward; Schedule1F1B warms up with min(m, p − r) "
    "forwards on rank r, then alternates one backward and one forward; "
    "ScheduleInterleaved1F1B warms up with (v − 1)·p + 2·(p − 1 − r) forwards of its v "
    "stages in rounds of p micro-batches and runs one more before its first backward "
    "(Narayanan et al. 2021, arXiv 2104.04473, §2.2; Korthikanti et al. 2022, §4.2.3)"
)


@dataclass(frozen=True)
class Stage:
    """One pipeline rank: the layers it holds, and the layer-forwards whose saved tensors
    wait for backward at its peak."""

    rank: int
    layers: int  # layers of its stages (their parameters)
    saved_layers: int  # layer-forwards waiting for backward, over its micro-batches
    in_flight: int  # forward chunks (a micro-batch through one stage) at the peak
    first: bool  # holds the embedding
    last: bool  # holds the final norm and the head
    last_chunks: int  # chunks of the last stage (with the head and the loss) in flight
    microbatch: int  # sequences per micro-batch
    stage_layers: tuple[int, ...] = ()  # the layers of each of its stages
    stage_ids: tuple[int, ...] = ()  # its stages' indices (torchtitan stage_ids_this_rank)
    chunk_stages: tuple[int, ...] = ()  # the stage of each forward chunk in flight
    stages: int = 1  # stages in the whole pipeline
    microbatches: int = 1  # micro-batches per step


def split_layers(layers: int, stages: int) -> list[int]:
    """Layers per stage as torchtitan's generate_split_points cuts them.

    >>> split_layers(126, 8)
    [15, 16, 16, 16, 16, 16, 16, 15]
    """
    base, extra = divmod(layers, stages)
    sizes = [base]
    for _ in range(stages - 2):
        sizes.append(base + 1 if extra > 0 else base)
        extra -= 1 if extra > 0 else 0
    if stages > 1:
        sizes.append(layers - sum(sizes))
    return sizes


def pipeline_rank(s: Scenario, t: Transformer, r: int) -> Stage:
    """What pipeline rank ``r`` holds, and what waits there for backward at its peak."""
    p, v = s.pipeline_parallel, pipeline_stages_per_rank(s.pipeline_schedule)
    m = pipeline_microbatches(s)
    per_stage = split_layers(t.layers, p * v)
    mine = [r + k * p for k in range(v)]  # torchtitan stage_ids_this_rank, "loop" style
    if s.pipeline_schedule is PipelineSchedule.GPIPE:
        chunks = [mine[0]] * m
    elif s.pipeline_schedule is PipelineSchedule.ONE_F_ONE_B:
        chunks = [mine[0]] * min(m, p - r)
    else:
        warmup = (v - 1) * p + 2 * (p - 1 - r)
        count = min(m * v, warmup + 1)
        chunks = [mine[(k // p) % v] for k in range(count)]
    last = p * v - 1
    return Stage(
        rank=r,
        layers=sum(per_stage[i] for i in mine),
        saved_layers=sum(per_stage[i] for i in chunks),
        in_flight=len(chunks),
        first=r == 0,
        last=r == p - 1,
        last_chunks=chunks.count(last),
        microbatch=s.batch_size // m,
        stage_layers=tuple(per_stage[i] for i in mine),
        stage_ids=tuple(mine),
        chunk_stages=tuple(chunks),
        stages=p * v,
        microbatches=m,
    )


def pipeline_ranks(s: Scenario, t: Transformer) -> list[Stage]:
    """The ranks that can be heaviest: the first (embedding, most in flight), the last
    (head and loss) and the middle rank with the most layer-forwards waiting."""
    p = s.pipeline_parallel
    first, last = pipeline_rank(s, t, 0), pipeline_rank(s, t, p - 1)
    middle = [pipeline_rank(s, t, r) for r in range(1, p - 1)]
    busiest = max(middle, key=lambda st: (st.saved_layers, st.layers), default=None)
    return [first, *([busiest] if busiest else []), last]


PIPELINE_RECV = (
    "torch 2.13 torch/distributed/pipelining/stage.py PipelineStage._setup_forward_recv_info: "
    "every stage but the first makes one receive buffer per micro-batch (_make_tensor_from_meta "
    "for each chunk_id in range(num_microbatches)) and keeps them across steps; a micro-batch "
    "in flight uses its buffer as its first layer's input (_retrieve_recv_activations), "
    "counted with the saved activations"
)
PIPELINE_GRAD_RECV = (
    "torch 2.13 torch/distributed/pipelining/stage.py _PipelineStageBase."
    "_setup_backward_recv_info and PipelineStage._create_grad_recv_info: every stage but the "
    "last makes one buffer per micro-batch for the gradient of its output and keeps them "
    "across steps"
)
PIPELINE_FWD_CACHE = (
    "torch 2.13 torch/distributed/pipelining/stage.py _PipelineStageBase.forward_one_chunk: "
    "fwd_cache keeps each micro-batch's stage output until backward_one_chunk pops it (the "
    "last stage's output, the logits, is the loss's; torchtitan trainer.py "
    "forward_backward_step steps with return_outputs=False, so output_chunks keeps none)"
)


def pipeline_buffer_terms(c: Ctx, stage: Stage, x: str = "s") -> tuple[list[Term], list[Term]]:
    """What torch.distributed.pipelining allocates on one rank beyond its layers' saved
    tensors, each the hidden states of a micro-batch at a stage boundary (b·s·h, split
    along the sequence under sequence parallelism): the receive buffers for activations
    and for gradients, kept across steps (comm buffers), and the stage outputs its
    in-flight micro-batches keep for backward (activations)."""
    m, last = stage.microbatches, stage.stages - 1
    boundary = parallel_split(c, [Row("a micro-batch at a stage boundary", ("b", x, "h"), "res")])
    # Offloading moves the saved copy to the CPU; the stage's buffer stays on the GPU.
    offloaded = c.s.activation_offload and not c.cpu
    waiting = {i: 0 if offloaded else stage.chunk_stages.count(i) for i in stage.stage_ids}
    received = sum(m - waiting[i] for i in stage.stage_ids if i != 0)
    grads = m * sum(1 for i in stage.stage_ids if i != last)
    outputs = sum(1 for i in stage.chunk_stages if i != last)
    buffers = [
        as_term(
            "comm_buffers",
            "pipeline receive buffers, one per micro-batch"
            if offloaded
            else "pipeline receive buffers of the micro-batches not in flight",
            boundary,
            c.sizes,
            c.widths,
            PIPELINE_RECV,
            times=("n_recv", received),
        ),
        as_term(
            "comm_buffers",
            "pipeline receive buffers for output gradients, one per micro-batch",
            boundary,
            c.sizes,
            c.widths,
            PIPELINE_GRAD_RECV,
            times=("n_grad", grads),
        ),
    ]
    kept = [
        as_term(
            "activations",
            "stage outputs kept for backward",
            boundary,
            c.sizes,
            c.widths,
            PIPELINE_FWD_CACHE,
            times=("n_out", outputs),
        )
    ]
    return [b for b in buffers if b.bytes], [k for k in kept if k.bytes]


def stage_tensors(t: Transformer, stage: Stage) -> list[ParamTensor]:
    """The parameters one pipeline rank holds: its layers' and, on the first rank, the
    embedding; on the last, the final norm and the head (a tied head its own copy)."""
    held = []
    for tensor in parameter_tensors(t):
        if "*" in tensor.name:
            per_layer = tensor.count // max(t.layers, 1)
            held.append(ParamTensor(tensor.name, tensor.shape, per_layer * stage.layers))
        elif tensor.name.startswith(("embed", "position", "token_type")):
            if stage.first or (stage.last and t.tied_embeddings):
                held.append(tensor)
        elif stage.last:
            held.append(tensor)
    return held


def _pipeline_note(s: Scenario, stage: Stage) -> str:
    """What the estimate of a pipeline shows: its heaviest rank."""
    schedule = LABELS[s.pipeline_schedule]
    layers = " + ".join(str(n) for n in stage.stage_layers)
    return (
        f"Pipeline over {s.pipeline_parallel} ranks ({schedule}, "
        f"{pipeline_microbatches(s)} micro-batches of {stage.microbatch}): the figures are "
        f"rank {stage.rank}'s, the heaviest, with {layers} layers and "
        f"{stage.in_flight} micro-batch forwards waiting for backward at its peak."
    )


@dataclass(frozen=True)
class Activations:
    """Per-layer and outside rows of one model, as terms, with the first layer's rows."""

    terms: list[Term]
    bytes: int
    one_layer: list[Row]  # a layer's full rows (what a recompute rebuilds)
    x: str  # the sequence symbol of the loss (s, or t for T5)
    layer_terms: int = 0  # how many of ``terms`` come from the layers (the rest: outside)
    # The tensors the heaviest layer keeps for backward, bytes each
    layer_tensors: tuple[int, ...] = ()
    # Of the outside rows: the final norm's (saved last before the head) and the head's
    # input; empty where the model has no final norm before a language-model head.
    tail_rows: tuple[Row, ...] = ()
    head_rows: tuple[Row, ...] = ()


def activations(c: Ctx, stage: Stage | None = None) -> Activations:
    """The tensors a training step saves for backward, as terms; on a pipeline rank, its
    layer-forwards waiting for backward, and the outside rows only on the last stage."""
    t, s = c.t, c.s
    terms = []
    one: list[Row] = []
    heaviest: tuple[int, ...] = ()
    for label, depth, rows in layer_tables(c):
        x = "t" if depth == "L" and t.family is Family.ENCODER_DECODER else "s"
        rows = float8.saved_rows(s, trainable_filter(c, rows) + lora_rows(c, x))
        if s.checkpointing is Checkpointing.SELECTIVE:
            rows = selective(rows)
        one += parallel_split(c, rows)
        n = t.encoder_layers if depth == "L_enc" else t.layers
        if stage is not None:
            depth, n = "L_saved", stage.saved_layers
        kept = checkpoint_rows(c, x) if s.checkpointing is Checkpointing.FULL else rows
        source = f"{HF}; {COMPILED_BLOCK}" if c.compiled else HF
        if s.checkpointing is Checkpointing.PER_OP:
            kept, source = per_op_rows(c, x), TORCHTITAN_SAC
            if c.compiled:
                source = f"{TORCHTITAN_SAC}; {COMPILED_BLOCK}"
        if s.checkpointing is Checkpointing.EVERY_N:
            # torchtitan _apply_ac_to_transformer_block (layer SAC): a counter from 1 per
            # block, checkpointed when count % n == 0: ⌊L/n⌋ blocks keep their input only.
            every = min(s.checkpoint_every, n)
            wrapped = n // every
            rows, full = parallel_split(c, rows), parallel_split(c, checkpoint_rows(c, x))
            heaviest = max(heaviest, _tensor_bytes(c, rows), key=sum)
            terms.append(
                as_term(
                    "activations",
                    f"saved by the {n - wrapped} layers not checkpointed",
                    rows,
                    c.sizes,
                    c.widths,
                    HF,
                    times=(f"{depth}−⌊{depth}/n⌋", n - wrapped),
                )
            )
            terms.append(
                as_term(
                    "activations",
                    f"checkpointed input of every {every}th layer",
                    full,
                    c.sizes,
                    c.widths,
                    TORCHTITAN_LAYER_SAC,
                    times=(f"⌊{depth}/n⌋", wrapped),
                )
            )
            continue
        kept = parallel_split(c, kept)
        heaviest = max(heaviest, _tensor_bytes(c, kept), key=sum)
        what = {
            Checkpointing.FULL: "checkpointed input",
            Checkpointing.PER_OP: "per-op selective checkpoint",
        }.get(s.checkpointing, label)
        terms.append(
            as_term(
                "activations", f"saved {what}", kept, c.sizes, c.widths, source, times=(depth, n)
            )
        )
    layer_terms = len(terms)
    outside = parallel_split(c, trainable_filter(c, outside_rows(c)))
    if stage is not None and not stage.last_chunks:
        # torchtitan pipeline_llama _build_stage: only the last stage keeps the final norm
        # and the output head; the embedding's output is the first layer's input.
        outside = []
    if (
        s.checkpointing in (Checkpointing.FULL, Checkpointing.PER_OP, Checkpointing.EVERY_N)
        and t.learned_positions == 0
        and t.family in (Family.DECODER, Family.MOE)
    ):
        outside.append(Row("position ids passed to the first layer", ("s",), "i64"))
    checkpointed = s.checkpointing in (
        Checkpointing.FULL,
        Checkpointing.PER_OP,
        Checkpointing.EVERY_N,
    )
    outside += mask_outside_rows(c, checkpointed)
    outside_term = as_term(
        "activations", "embeddings, final norm and head inputs", outside, c.sizes, c.widths, HF
    )
    if stage is not None and stage.last_chunks > 1:
        outside_term = outside_term.scaled(
            Fraction(stage.last_chunks), f"× {stage.last_chunks} micro-batches"
        )
    terms.append(outside_term)
    x = "t" if t.family is Family.ENCODER_DECODER else "s"
    tail: list[Row] = []
    if outside and t.family in (Family.DECODER, Family.MOE):
        tail = parallel_split(c, trainable_filter(c, final_norm_rows(c)))
    head = [r for r in outside if r.tag == "linear:head"]
    return Activations(terms, total(terms), one, x, layer_terms, heaviest, tuple(tail), tuple(head))


def packing_notes(c: Ctx) -> list[str]:
    """What the batch layout adds, in words (see context.mask_kind)."""
    layout = packing(c.s)
    if layout is Packing.PADDING_FREE:
        return [
            f"Padding-free: the batch runs as one row of {c.sizes['s']:,} tokens with "
            "position ids and no attention mask (FlashAttention's variable-length kernel)."
        ]
    return {
        "padding": [
            "Padded rows: SDPA takes transformers' bool padding mask, which each layer's "
            "call converts to a bias in the compute type that the memory-efficient kernel "
            "saves for backward; a checkpointed layer keeps the bool mask instead."
        ],
        "block": [
            "Packed rows: torchtune's block-causal bool mask, converted to a bias by each "
            "layer's SDPA call."
        ],
        "flex": ["Packed rows: torchtune's block-causal mask as a flex-attention BlockMask."],
    }.get(c.mask, [])


def _tensor_bytes(c: Ctx, rows: list[Row]) -> tuple[int, ...]:
    """Each tensor the rows stand for, in bytes."""
    sizes: list[int] = []
    for r in rows:
        whole = r.elements(c.sizes) * c.widths.of(r.width)
        # A whole tensor's bytes are an int already: no Fraction to make and round.
        sizes += [whole if r.share == 1 else math.ceil(r.share * whole)] * r.count
    return tuple(sizes)


TORCHTUNE_OFFLOAD = (
    "torchtune torchtune/training/_activation_offloading.py OffloadActivations: a "
    "saved_tensors_hooks pack_tensor copies every saved activation of 1,024 bytes or more "
    "into pinned CPU memory (torch.empty_like(pin_memory=True)); the forward stash keeps "
    "the GPU tensors of the last max_fwd_stash_size=5 packs until their copy is done "
    "(pack_tensor frees older ids as each new one comes), the first backward node that "
    "unpacks frees the rest (its hook: 'if there are still things in the fwd_stash, get "
    "rid of them as we're in bwd now'), and backward brings each tensor back for the "
    "node that reads it; get_act_offloading_ctx_manager leaves the output head's saved "
    "tensors on the GPU (NoOpManager). torch.autograd.graph.save_on_cpu moves the same "
    "tensors"
)


STASH = 5  # OffloadActivations(max_fwd_stash_size=5)


def offloaded(c: Ctx, acts: Activations) -> tuple[list[Term], list[Term]]:
    """(what the GPU keeps at the loss, what pinned CPU memory holds) of the saved
    activations when they are offloaded. Everything saved under the context goes to the
    CPU; the GPU keeps the head's input (not offloaded) and the forward stash: the
    tensors of the last 5 packs, which are the final norm's (packed after the layers) and,
    for the slots left, the last layer's. In backward the stash is gone before the layers
    run (see TORCHTUNE_OFFLOAD) and each tensor brought back lives while its layer runs,
    as a recomputed or running layer's tensors do."""
    layers, outside = acts.terms[: acts.layer_terms], acts.terms[acts.layer_terms :]
    host = [
        Term(t.key, f"{t.label}, in pinned CPU memory", t.bytes, t.formula, t.substituted, t.source)
        for t in layers
    ]
    # The stash: each final-norm tensor once however often it is packed, then the
    # largest tensors of the last layers for the slots left (full checkpointing packs one
    # tensor a layer, its input).
    tail = list(acts.tail_rows)
    packs = sum(norm_packs(r) for r in tail)
    each = acts.layer_tensors
    left = max(STASH - packs, 0)
    layers_spanned = -(-left // len(each)) if each else 0
    largest = sorted(each * layers_spanned, reverse=True)[:left]
    tail_bytes = [
        math.ceil(r.share * r.elements(c.sizes) * c.widths.of(r.width))
        for r in tail
        for _ in range(r.count)
    ]
    parts = [*tail_bytes, *largest]
    stash = Term(
        "activations",
        f"the tensors of the last {STASH} packs, kept on the GPU (forward stash)",
        sum(parts),
        f"the final norm's {len(tail_bytes)} tensors ({packs} packs) and the "
        f"{len(largest)} largest of the last layer",
        " + ".join(f"{b:,} B" for b in parts) or "0 B",
        TORCHTUNE_OFFLOAD,
    )
    kept = [stash]
    if acts.tail_rows or acts.head_rows:
        head = as_term(
            "activations", "input of the output head", list(acts.head_rows), c.sizes, c.widths, HF
        )
        rest = sum(t.bytes for t in outside) - head.bytes
        host.append(
            Term(
                "activations",
                "embeddings and final norm, in pinned CPU memory",
                rest,
                "outside rows less the head's input",
                f"{rest:,} B",
                TORCHTUNE_OFFLOAD,
            )
        )
        kept.append(head)
    else:
        kept += outside
    return kept, host


# Rows tensor parallelism leaves whole that sequence parallelism does not split either: the
# inputs of column-parallel projections, which torchtitan's PrepareModuleInput
# (desired_input_layouts=Replicate()) all-gathers before the projections save them, and
# a row-parallel matmul's output before its reduce-scatter (RowwiseParallel,
# output_layouts=Shard(1)). Megatron-LM keeps the sharded input instead and gathers it
# again in backward (tensor_parallel/layers.py LinearWithGradAccumulationAndAsyncCommunication).
PARTIAL = "tp:partial"
GATHERED = frozenset(
    {"linear:qkv", "linear:q", "linear:kv", "linear:gate_up", "linear:up", "linear:head"}
    | {"linear:router", PARTIAL}
)
TP_SPLIT_DIMS = frozenset({"a", "a_kv", "f", "fs", "q", "kv", "E"})


def parallel_split(c: Ctx, rows: list[Row]) -> list[Row]:
    """The rows as one tensor-parallel rank holds them, with sequence parallelism if on."""
    tp = c.s.tensor_parallel
    if tp == 1:
        return rows
    rows = _tp_split(rows, tp)
    return _sp_split(rows, tp) if c.s.sequence_parallel else rows


def _sp_split(rows: list[Row], tp: int) -> list[Row]:
    # Sequence parallelism splits what tensor parallelism leaves whole along the sequence:
    # the layer inputs, the norms and the dropout masks (Korthikanti et al. 2022, arXiv
    # 2205.05198, §4.2.2: sbh·(34/t + 5as/(ht)) with t the tensor-parallel degree;
    # torchtitan parallelize_llama: SequenceParallel() on attention_norm, ffn_norm and
    # norm, and the blocks' outputs as Shard(1)). Rows without a batch-by-sequence shape
    # (rotary tables, position ids) are replicated.
    return [
        Row(r.what, r.dims, r.width, r.count, r.tag, r.share / tp)
        if "b" in r.dims
        and ("s" in r.dims or "t" in r.dims)
        and not TP_SPLIT_DIMS & set(r.dims)
        and r.tag not in GATHERED
        else r
        for r in rows
    ]


def _tp_split(rows: list[Row], tp: int) -> list[Row]:
    # Megatron tensor parallelism splits the heads and the MLP width; norm inputs,
    # dropout masks and the inputs of column-parallel projections stay whole (Korthikanti
    # et al. 2022 §4.2.1: sbh·(10 + 24/t + 5as/(ht))).
    return [
        Row(r.what, r.dims, r.width, r.count, r.tag, r.share / tp)
        if TP_SPLIT_DIMS & set(r.dims)
        else r
        for r in rows
    ]


# --- context parallelism -------------------------------------------------------------------

RING_ATTENTION = (
    "torch torch/distributed/tensor/experimental/_context_parallel/_attention.py "
    "_templated_ring_attention_backward: grad_query, grad_key and grad_value accumulate "
    "in fp32 (_cp_options.convert_to_f32), and the key/value rotater of the default "
    "rotate method (_RotateMethod.ALL_GATHER, torchtitan's context_parallel_rotate_method "
    "'allgather') all-gathers every rank's torch.cat of key and value at once "
    "(_AllGatherRotater.exchange_buffers); torchtitan's Attention repeats the key/value "
    "heads to every query head (repeat_kv) before the kernel"
)


def ring_attention_terms(c: Ctx) -> list[Term]:
    """What one layer's ring-attention backward adds on a context-parallel rank: the
    keys and values of all cp ranks, gathered, and the fp32 gradient accumulators."""
    cp = context_parallel(c.s)
    if cp < 2:
        return []
    rows = [
        Row("keys and values of every context-parallel rank", ("b", "s", "q"), "act", 2 * cp),
        Row("fp32 accumulators of the query, key and value gradients", ("b", "s", "q"), "f32", 3),
    ]
    return [
        as_term(
            "temporaries",
            "ring attention: gathered keys and values, fp32 gradient accumulators",
            parallel_split(c, rows),
            c.sizes,
            c.widths,
            RING_ATTENTION,
        )
    ]


# --- expert parallelism --------------------------------------------------------------------

EXPERT_SHARDS = (
    "Megatron-LM megatron/core/transformer/moe/experts.py GroupedMLP and SequentialMLP: each "
    "rank builds num_local_experts = num_moe_experts // expert_model_parallel_size "
    "experts (moe_layer.py MoELayer), their gradients and optimizer state with them "
    "(torchtitan ExpertParallel._partition_fn: Shard(0) over the experts); the "
    "router, attention, norms, embeddings and head stay whole on every expert-parallel rank"
)
ALL_TO_ALL = (
    "Megatron-LM megatron/core/transformer/moe/token_dispatcher.py "
    "MoEAlltoAllTokenDispatcher: token_permutation permutes each token once per chosen "
    "expert (moe_utils.permute, tokens x top_k rows of hidden) and all_to_all sends them "
    "over the expert-parallel group into a new buffer of the tokens its local experts "
    "receive; token_unpermutation sends the expert outputs back the same way. Balanced "
    "routing assumed: each rank receives tokens x top_k rows (the count is data-dependent), "
    "with no capacity factor (transformer_config.py moe_expert_capacity_factor None, no "
    "token dropped). torchtitan torchtitan/distributed/expert_parallel.py ExpertParallel "
    "does the same: _token_dispatch all_to_all_single_autograd of the routed input, "
    "_token_combine back, experts sharded on dim 0 (_partition_fn Shard(0)), no drop"
)


FSDP2_EXPERTS = (
    "torchtitan torchtitan/models/llama4/infra/parallelize.py apply_fsdp: with ep_degree "
    "above 1 each MoE block's experts are fully_shard-ed on the dp_shard_mod_ep mesh "
    "(data-parallel ranks / ep, torchtitan/distributed/parallel_dims.py), the rest of the "
    "block on dp_shard_cp: a rank's E/ep experts over dp/ep ranks give the same shard, "
    "P_experts/dp, as without expert parallelism, while each all-gather brings E/ep experts"
)


def expert_shard(tensors: Sequence[ParamTensor], ep: int) -> list[ParamTensor]:
    """The parameter tensors one expert-parallel rank holds: the routed experts' count
    over ``ep``, the rest whole (:data:`EXPERT_SHARDS`)."""
    if ep < 2:
        return list(tensors)
    return [
        ParamTensor(p.name, p.shape, p.count // ep) if ".experts." in p.name else p for p in tensors
    ]


def all_to_all_terms(c: Ctx) -> list[Term]:
    """One MoE layer's all-to-all buffers on an expert-parallel rank: the permuted tokens
    it sends and the tokens it receives, each b·s·k rows of h (:data:`ALL_TO_ALL`)."""
    if expert_parallel(c.s) < 2:
        return []
    rows = [Row("permuted tokens sent and tokens received", ("b", "s", "k", "h"), "act", 2)]
    return [
        as_term(
            "temporaries",
            "all-to-all buffers of one MoE layer (dispatch or combine)",
            rows,
            c.sizes,
            c.widths,
            ALL_TO_ALL,
        )
    ]


# --- the loss ------------------------------------------------------------------------------


def _lm(t: Transformer) -> bool:
    return t.head.value in ("causal_lm", "masked_lm", "seq2seq_lm")


def loss_vocab(s: Scenario, t: Transformer) -> int:
    """The vocabulary width of one rank's logits: its shard under loss parallelism.

    torchtitan parallelize_llama: the output head is ColwiseParallel with
    output_layouts=Shard(-1) under loss_parallel(), whose cross-entropy
    (torch/distributed/tensor/parallel/loss.py _log_softmax, _nll_loss_forward and their
    backward) works on each rank's vocabulary shard: every logits tensor of the loss is
    V/t wide. Megatron-LM's vocab_parallel_cross_entropy does the same."""
    if _lm(t) and s.loss_parallel and s.tensor_parallel > 1:
        return -(-t.vocab // s.tensor_parallel)
    return t.vocab


def loss_terms(c: Ctx, x: str) -> tuple[list[Term], list[Term], list[Term], list[Term]]:
    """(saved by the loss, logits at the end of forward, extra at the loss peak, extra at
    the start of backward)."""
    t = c.t
    vocab_parallel = _lm(t) and c.s.loss_parallel and c.s.tensor_parallel > 1
    if vocab_parallel:
        c = replace(c, sizes={**c.sizes, "V": loss_vocab(c.s, t)})
    if not _lm(t):
        rows = [Row("log-softmax over the labels", ("b", "c"), "f32")]
        saved = [as_term("logits", "saved by the loss", rows, c.sizes, c.widths, HF)]
        return saved, [], [], []
    if trl_fused_head(c.s, t):
        return _trl_fused_head_terms(c, x)
    if c.s.loss is Loss.CHUNKED:
        return _chunked_loss_terms(c, x)
    if c.s.loss is Loss.FUSED_LINEAR:
        return _fused_linear_terms(c, x)
    if c.s.loss is Loss.CCE:
        return _cce_terms(c, x)
    if c.s.loss is Loss.COMPILED:
        return _chunked_loss_terms(c, x, 1, TORCHTITAN_COMPILED)
    if c.s.loss is Loss.FP32_LOGITS and t.head.value == "causal_lm":
        return _fp32_logits_terms(c, x)
    upcast = t.head.value == "causal_lm" or c.amp or c.widths.act == 4
    lw = "f32" if upcast else "act"
    dims = ("b", x, "V")
    saved = [
        as_term(
            "logits",
            "log-softmax saved by the loss",
            [
                Row("log-softmax of the logits", dims, lw),
                Row("labels", ("b", x), "i64"),
            ],
            c.sizes,
            c.widths,
            HF_LOSS,
        )
    ]
    logits = [as_term("logits", "logits", [Row("logits", dims, "act")], c.sizes, c.widths, HF_LOSS)]
    if _softcap(t, "final_logit_softcapping"):
        capped = as_term(
            "logits",
            "final-logit softcap: tanh output saved for backward",
            [Row("tanh of the scaled logits", dims, "act")],
            c.sizes,
            c.widths,
            SOFTCAP,
        )
        saved.append(capped)
        logits.append(capped)
    copy = [Row("fp32 copy of the logits", dims, "f32")] if upcast and c.widths.act != 4 else []
    loss_extra = [
        as_term(
            "logits",
            "logits and their fp32 copy",
            [Row("logits", dims, "act"), *copy],
            c.sizes,
            c.widths,
            HF_LOSS,
        )
    ]
    grads = [
        as_term(
            "temporaries",
            "gradients of the loss and the log-softmax",
            [Row("logits gradients", dims, lw, 2)],
            c.sizes,
            c.widths,
            HF_LOSS,
        )
    ]
    if vocab_parallel:
        loss_extra.append(
            as_term(
                "logits",
                "shifted logits (x − max) of the sharded log-softmax",
                [Row("shifted logits", dims, lw)],
                c.sizes,
                c.widths,
                LOSS_PARALLEL,
            )
        )
        grads = [
            as_term(
                "temporaries",
                "zeros, exp and their sum in the fused loss-parallel backward",
                [Row("logits gradients", dims, lw, 3)],
                c.sizes,
                c.widths,
                LOSS_PARALLEL,
            )
        ]
    return saved, logits, loss_extra, grads


LOSS_PARALLEL = (
    "torch torch/distributed/tensor/parallel/loss.py, which loss_parallel() dispatches the "
    "sharded cross-entropy to: _log_softmax keeps shifted = x − max beside the fp32 logits "
    "and the result while exp(shifted) is summed; _nll_loss_and_log_softmax_backward "
    "(nll and log-softmax backward fused) holds grad_input = zeros_like(x), exp(x) and "
    "grad_input + exp(x) beside the saved log-softmax. Measured: "
    "benchmarks/stacks/loss_parallel.py (torch 2.13), 12 and 16 B a logit of the shard "
    "above the 16-bit logits, where aten's kernels hold 8 and 12"
)


HF_FP32_LOGITS = (
    "transformers 4.37.2 models/llama/modeling_llama.py LlamaForCausalLM.forward, line 1202 "
    "(logits = logits.float(), also in 4.44; 4.45 under `if labels is not None`, 4.46 "
    "moved it into loss_utils.py ForCausalLMLoss): the model returns its logits in fp32, "
    "which the loop's output holds through backward (fsdp_qlora train.py sets output = "
    "None after the step); line 1207 (shift_logits = logits[..., :-1, :].contiguous()) "
    "copies them for CrossEntropyLoss, whose log_softmax saves an fp32 result. Backward: "
    "nll_loss's and log_softmax's fp32 gradients (s-1 rows each, counted as s). Measured: "
    "benchmarks/stacks/fp32_logits_loss.py (torch 2.13)"
)


def _fp32_logits_terms(c: Ctx, x: str) -> tuple[list[Term], list[Term], list[Term], list[Term]]:
    """The loss terms of transformers' causal LMs up to 4.45: fp32 logits returned and
    held, a shifted fp32 copy at the loss, and the standard cross-entropy behind them."""
    dims = ("b", x, "V")
    held = Row("fp32 logits the model returns", dims, "f32")
    saved = [
        as_term(
            "logits",
            "fp32 logits and the log-softmax saved by the loss",
            [held, Row("log-softmax of the logits", dims, "f32"), Row("labels", ("b", x), "i64")],
            c.sizes,
            c.widths,
            HF_FP32_LOGITS,
        )
    ]
    # Line 1202 makes the fp32 copy while the head's 16-bit output still lives; a model
    # run in fp32 returns the head's output itself (.float() is a no-op).
    made = [Row("logits from the head", dims, "act")] if c.widths.act != 4 else []
    logits = [
        as_term(
            "logits", "logits and their fp32 copy", [*made, held], c.sizes, c.widths, HF_FP32_LOGITS
        )
    ]
    shifted = [
        as_term(
            "logits",
            "shifted fp32 copy of the logits",
            [Row("shift_logits (contiguous)", dims, "f32")],
            c.sizes,
            c.widths,
            HF_FP32_LOGITS,
        )
    ]
    grads = [
        as_term(
            "temporaries",
            "gradients of the loss and the log-softmax",
            [Row("logits gradients", dims, "f32", 2)],
            c.sizes,
            c.widths,
            HF_FP32_LOGITS,
        )
    ]
    return saved, logits, shifted, grads


# trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE and trl/trainer/utils.py
# _CHUNKED_LOGPROB_CHUNK_SIZE: the tile buffer's rows and columns.
TRL_TILE_TOKENS = 4096
TRL_TILE_VOCAB = 32768

TRL_CHUNKED_LOGPROB = (
    "TRL 1.16 trl/kernels/chunked_logprob.py _ChunkedLogProbFunction: forward allocates "
    "seven fp32 per-token statistics and mm_buf = empty(min(N, TOKEN_CHUNK_SIZE = 4096), "
    "chunk_size = 32768) in the compute type (the autocast type, else the hidden states'), "
    "whatever the vocabulary; each token chunk is cast to it (hidden[...].to(compute_dtype)) "
    "and each vocabulary chunk of the weight too, for the torch.mm into the tile; the "
    "Triton kernel (_forward_kernel) folds the tile into the statistics in registers; "
    "save_for_backward keeps hidden, targets, log_z and the entropy. backward allocates "
    "fp32 zeros for grad_hidden (N, h) and, when the head trains, grad_weight (V, h), "
    "mm_buf again, the same casts, recomputes each tile and turns it into the logits' "
    "gradient in place (_backward_kernel), accumulates in fp32 (torch.addmm out_dtype on "
    "CUDA) and returns grad_hidden.to(hidden.dtype) and grad_weight.to(weight.dtype) while "
    "the fp32 ones still live. N = n = b·(s − 1), the positions with a next-token label "
    "(on CUDA only those whose label is not −100 are projected: n is the most)"
)


def _trl_fused_head_terms(c: Ctx, x: str) -> tuple[list[Term], list[Term], list[Term], list[Term]]:
    """The loss terms of TRL's SFTTrainer (:data:`TRL_FUSED_HEAD`,
    :data:`TRL_CHUNKED_LOGPROB`): no logits; the tile buffer and the casts while the head
    runs, its saved hidden states through backward, its fp32 gradients at backward's start.

    Only the tensors TRL's Python code allocates are counted. On a device without Triton
    (a CPU) the tiles are folded by torch ops instead (_forward_tile, _backward_tile), whose
    fp32 temporaries of a tile's size, and the fp32 copies _addmm_fp32 makes off CUDA, are
    not modelled: the CUDA kernels hold none."""
    s, t, w = c.s, c.t, c.widths
    # n = b·(s − 1): add_fused_lm_head scores hidden_states[:, :-1] against labels[:, 1:]
    tokens = c.sizes["b"] * max(c.sizes[x] - 1, 1)
    sizes = {**c.sizes, "n": tokens}
    rows = min(tokens, TRL_TILE_TOKENS)
    cols = min(t.vocab, TRL_TILE_VOCAB)
    head_width = _param_width(s)
    trains_head = c.lora is None
    src = TRL_CHUNKED_LOGPROB
    hidden = Row("hidden states the head saves (hidden_states[mask])", ("n", "h"), "res")
    saved = [
        as_term(
            "logits",
            "saved by TRL's fused LM head",
            [
                hidden,
                Row("targets", ("n",), "i64"),
                Row("log-sum-exp and entropy per token", ("n",), "f32", 2),
                # masked_scatter (masked_fill off Triton) saves the label mask
                Row("label mask", ("n",), "bool"),
            ],
            sizes,
            w,
            f"{TRL_FUSED_HEAD}; {src}",
        )
    ]

    def tiles(key: str) -> list[Term]:
        # mm_buf, and the casts into the compute type that feed each torch.mm
        made = [
            product(
                key,
                "TRL's tile buffer (mm_buf)",
                [(f"min(n, {TRL_TILE_TOKENS:,})", rows), (f"{TRL_TILE_VOCAB:,}", TRL_TILE_VOCAB)],
                w.act,
                src,
            )
        ]
        if w.res != w.act:
            made.append(
                product(
                    key,
                    "a token chunk of the hidden states in the compute type",
                    [(f"min(n, {TRL_TILE_TOKENS:,})", rows), ("h", t.hidden)],
                    w.act,
                    src,
                )
            )
        if head_width != w.act:
            made.append(
                product(
                    key,
                    "a vocabulary chunk of the head's weight in the compute type",
                    [(f"min(V, {TRL_TILE_VOCAB:,})", cols), ("h", t.hidden)],
                    w.act,
                    src,
                )
            )
        return made

    # While the head runs, the backbone's output (last_hidden_state) still lives in
    # _fused_forward beside its copy, with the seven per-token statistics.
    running = as_term(
        "logits",
        "backbone output and per-token statistics while the head runs",
        [
            Row("backbone output (last_hidden_state)", ("b", x, "h"), "res"),
            Row("running max, sums and target logits", ("n",), "f32", 7),
        ],
        sizes,
        w,
        src,
    )
    extra = [running, *tiles("logits")]
    made = [
        Row("fp32 gradient of the hidden states", ("n", "h"), "f32"),
        Row("gradient of the log-probabilities", ("n",), "f32"),
    ]
    if w.res != 4:
        made.append(Row("grad_hidden.to(hidden.dtype)", ("n", "h"), "res"))
    grads = [as_term("temporaries", "TRL's fused head backward", made, sizes, w, src)]
    if trains_head:
        grads.append(
            product(
                "temporaries",
                "fp32 gradient of the head's weight (grad_weight)",
                [("V", t.vocab), ("h", t.hidden)],
                4,
                src,
            )
        )
        if head_width != 4:
            grads.append(
                product(
                    "temporaries",
                    "grad_weight.to(weight.dtype)",
                    [("V", t.vocab), ("h", t.hidden)],
                    head_width,
                    src,
                )
            )
    grads += tiles("temporaries")
    return saved, [], extra, grads


TORCHTUNE_CHUNKED = (
    "torchtune torchtune/modules/transformer.py TransformerDecoder.chunked_output: the head "
    "runs on each of num_output_chunks slices of the tokens (tensor_split), so every chunk "
    "of the logits is made in forward; torchtune/modules/loss/ce_chunked_output_loss.py "
    "CEWithChunkedOutputLoss.compute_cross_entropy upcasts and takes the cross-entropy of "
    "one chunk at a time, compiled as its docstring asks. Measured (benchmarks/stacks/"
    "chunked_loss.py, torch 2.13): each compiled chunk saves its 16-bit logits, the int64 "
    "labels and two fp32 values per token, its kernels make no fp32 copy, its backward "
    "writes only the chunk's 16-bit gradient, and backward reaches every chunk before the "
    "head (each chunk's saved logits are freed as its gradient is made)"
)


TORCHTITAN_COMPILED = (
    "torchtitan torchtitan/components/loss.py build_cross_entropy_loss: with compile on, "
    "cross_entropy_loss (F.cross_entropy(pred.flatten(0, 1).float(), labels)) is wrapped "
    "in torch.compile. Measured (benchmarks/stacks/compiled_loss.py, torch 2.13): the "
    "compiled loss saves the 16-bit logits, the int64 labels and two fp32 values per "
    "token, its kernels make no fp32 copy, and its backward writes one 16-bit gradient "
    "of the logits"
)


def _chunked_loss_terms(
    c: Ctx, x: str, chunks: int = 0, source: str = TORCHTUNE_CHUNKED
) -> tuple[list[Term], list[Term], list[Term], list[Term]]:
    """The loss terms of torchtune's chunked cross-entropy, compiled: the 16-bit logits
    whole, and in backward one chunk of ⌈tokens / loss_chunks⌉ at a time. A compiled
    loss over the whole logits (torchtitan's) is the same with one chunk."""
    whole_loss = source is TORCHTITAN_COMPILED  # one loss over the whole logits
    chunks = chunks or c.s.loss_chunks
    chunk = -(-c.sizes[x] // chunks)  # tensor_split: the first chunks are largest
    sizes = {**c.sizes, "u": chunk}
    dims = ("b", x, "V")
    one = dims if whole_loss else ("b", "u", "V")
    name = "logits" if whole_loss else "logits chunks"
    whole = [Row("logits" if whole_loss else "logits, every chunk", dims, "act")]
    saved = [
        as_term(
            "logits",
            f"{name} saved by the compiled loss",
            [
                *whole,
                Row("labels", ("b", x), "i64"),
                Row("per-token maximum and log-sum-exp", ("b", x), "f32", 2),
            ],
            sizes,
            c.widths,
            source,
        )
    ]
    logits = [as_term("logits", name, whole, sizes, c.widths, source)]
    if _softcap(c.t, "final_logit_softcapping"):
        capped = as_term(
            "logits",
            "final-logit softcap: tanh output saved for backward",
            [Row("tanh of the scaled logits", dims, "act")],
            sizes,
            c.widths,
            SOFTCAP,
        )
        saved.append(capped)
        logits.append(capped)
    what = "the logits' gradient" if whole_loss else "one chunk's logits gradient"
    grads = [
        as_term(
            "temporaries",
            f"{what} and its per-token sum",
            [Row(f"gradient of {name}", one, "act"), Row("per-token sum", one[:2], "f32")],
            sizes,
            c.widths,
            source,
        )
    ]
    return saved, logits, [], grads


AUTOGRAD_HEAD_GRADS = (
    "torch torch/csrc/autograd/engine.cpp ReadyQueue (CompareNodeTaskTime: the node with "
    "the higher sequence_nr runs first) and input_buffer.cpp accumulate: the chunks' loss "
    "nodes, made after the head's, all run before any chunk's head matmul, so every "
    "chunk's logits gradient waits for it; each matmul's weight gradient reaches the "
    "weight's AccumulateGrad buffer as a transposed view (FunctionsManual.cpp "
    "mm_mat2_backward returns grad.t().mm(mat1).t() for the column-major weight.t(), "
    "TBackward transposes it back), whose base shares its storage, so "
    "can_accumulate_inplace fails and the second chunk's gradient is added out of place "
    "(old_var + var: three weight-sized tensors at once); later chunks add in place"
)


def chunked_head_terms(c: Ctx, acts: Activations) -> list[Term]:
    """What torchtune's chunked loss holds when a trainable head runs backward: the
    gradients of the chunks not yet through the head and three head-sized weight
    gradients (see AUTOGRAD_HEAD_GRADS), at the second chunk, the heaviest moment."""
    s, t = c.s, c.t
    n = s.loss_chunks
    if s.loss is not Loss.CHUNKED or not _lm(t) or not acts.head_rows or n < 2:
        return []
    if s.tensor_parallel > 1:
        return []  # a vocabulary-parallel head is not modelled here
    chunk = -(-c.sizes[acts.x] // n)
    sizes = {**c.sizes, "u": chunk}
    waiting = as_term(
        "temporaries",
        f"logits gradients of the {n - 2} chunks still waiting for the head",
        [Row("gradient of a chunk of the logits", ("b", "u", "V"), "act", n - 2)],
        sizes,
        c.widths,
        AUTOGRAD_HEAD_GRADS,
    )
    weight = product(
        "gradients",
        "head weight gradients: the first chunk's, the second's and their sum",
        [("3", 3), ("V", t.vocab), ("h", t.hidden)],
        c.widths.act,
        AUTOGRAD_HEAD_GRADS,
    )
    return [waiting, weight]


LIGER_FLCE = (
    "Liger-Kernel src/liger_kernel/ops/fused_linear_cross_entropy.py "
    "fused_linear_cross_entropy_forward: the tokens in chunks of "
    "next_power_of_2(⌈b·s / ⌈V/h⌉⌉) rows, each chunk's logits made, turned into their "
    "gradient in place by the cross-entropy kernel and multiplied into grad_input "
    "(zeros_like(_input)) and grad_weight (zeros_like(weight), when the head trains), which "
    "are saved for backward and only scaled there; loss_1d holds one fp32 loss per token"
)


def _fused_linear_terms(c: Ctx, x: str) -> tuple[list[Term], list[Term], list[Term], list[Term]]:
    """The loss terms of Liger's fused linear cross-entropy: no whole logits; the input's
    and the head's gradients made in forward, one chunk of logits at a time."""
    tokens = c.sizes["b"] * c.sizes[x]
    inc_factor = -(-c.t.vocab // c.t.hidden)
    wanted = -(-tokens // inc_factor)
    rows = min(1 << (wanted - 1).bit_length(), tokens)  # triton.next_power_of_2, sliced to BT
    sizes = {**c.sizes, "u": rows}
    made = [Row("gradient of the hidden states", ("b", x, "h"), "act")]
    if c.lora is None:  # a frozen head (LoRA) gets no grad_weight
        width = "f32" if _param_width(c.s) == 4 else "f16"
        made.append(Row("gradient of the head weight", ("V", "h"), width))
    saved = [
        as_term("logits", "gradients made by the fused loss", made, sizes, c.widths, LIGER_FLCE)
    ]
    chunk = [Row("one chunk of logits", ("u", "V"), "act"), Row("loss per token", ("b", x), "f32")]
    extra = [as_term("logits", "one chunk of logits", chunk, sizes, c.widths, LIGER_FLCE)]
    return saved, [], extra, []


APPLE_CCE = (
    "apple/ml-cross-entropy cut_cross_entropy/cce.py LinearCrossEntropyFunction: the forward "
    "kernel (cce_lse_forward.py) keeps one fp32 log-sum-exp per token and saves it with the "
    "hidden states, the classifier and the targets; cce_backward.py cce_backward_kernel "
    "recomputes the logits block by block on chip and writes de (zeros_like(e)) and dc "
    "(zeros_like(c), when the head trains), in their own types under the default 'cce' impl"
)


def _cce_terms(c: Ctx, x: str) -> tuple[list[Term], list[Term], list[Term], list[Term]]:
    """The loss terms of Apple's Cut Cross-Entropy: no logits in memory; a log-sum-exp per
    token saved, and backward writes the hidden states' and the head's gradients."""
    kept = [Row("log-sum-exp per token", ("b", x), "f32"), Row("targets", ("b", x), "i64")]
    saved = [as_term("logits", "saved by Cut Cross-Entropy", kept, c.sizes, c.widths, APPLE_CCE)]
    made = [Row("gradient of the hidden states", ("b", x, "h"), "act")]
    if c.lora is None:  # a frozen head gets no dc
        width = "f32" if _param_width(c.s) == 4 else "f16"
        made.append(Row("gradient of the head weight", ("V", "h"), width))
    grads = [
        as_term(
            "temporaries", "gradients CCE's backward writes", made, c.sizes, c.widths, APPLE_CCE
        )
    ]
    return saved, [], [], grads


# --- weights -------------------------------------------------------------------------------

QUANTIZED_SOURCE = (
    "transformers quantizers keep embeddings, the output head, norms and biases in 16-bit "
    "(get_keys_to_not_convert); the linear layers take the format's bits per weight"
)


def _linear_weights(t: Transformer) -> int:
    """Elements of the layers' linear weights: what quantizers convert."""
    return sum(
        p.elements
        for p in parameter_tensors(t)
        if p.name.startswith(("layers.", "encoder.", "decoder."))
        and p.name.endswith(".weight")
        and len(p.shape) == 2
        and "norm" not in p.name
        and "relative_bias" not in p.name
    )


def _matmul_weights(t: Transformer) -> int:
    """Elements of every weight a matmul reads (what autocast casts to 16-bit)."""
    count = _linear_weights(t)
    for p in parameter_tensors(t):
        if p.name.startswith(
            ("lm_head", "mlm.transform", "classifier", "pooler", "patch")
        ) and p.name.endswith(".weight"):
            count += p.elements
    if t.tied_embeddings and _lm(t):
        count += t.vocab * t.hidden  # the embedding serves as the output head
    return count


BNB_DEQUANT = (
    "bitsandbytes matmul_4bit: for more than one token it dequantizes the 4-bit weight to "
    "the compute type (dequantize_4bit) for the matmul, one weight at a time"
)


# bitsandbytes formats: transformers' replace_with_bnb_linear (integrations/bitsandbytes.py)
# swaps nn.Linear and Conv1D modules only.
BNB_FORMATS = (Precision.INT8, Precision.NF4, Precision.NF4_DQ)
BNB_MOE = (
    "transformers 5.24 integrations/bitsandbytes.py replace_with_bnb_linear replaces only "
    "nn.Linear and Conv1D; the Mixtral and Qwen3-MoE experts are fused 3-D nn.Parameters "
    "(modeling_mixtral.py MixtralExperts.gate_up_proj and down_proj) and the router a "
    "bare nn.Parameter, so they stay in 16-bit"
)


def _unconverted_experts(s: Scenario, t: Transformer) -> int:
    """Elements of the MoE experts and router that a bitsandbytes load leaves in 16-bit."""
    if s.precision not in BNB_FORMATS or t.family is not Family.MOE:
        return 0
    return sum(
        p.elements for p in parameter_tensors(t) if ".experts." in p.name or ".router." in p.name
    )


def dequant_terms(s: Scenario, t: Transformer) -> list[Term]:
    """The 16-bit copy of the largest linear weight that bitsandbytes 4-bit makes."""
    if s.precision not in (Precision.NF4, Precision.NF4_DQ):
        return []
    moe = t.family is Family.MOE  # its experts stay 16-bit: nothing to dequantize
    largest = max(
        (
            p.numel
            for p in parameter_tensors(t)
            if p.name.startswith(("layers.", "encoder.", "decoder."))
            and len(p.shape) == 2
            and not (moe and (".experts." in p.name or ".router." in p.name))
        ),
        default=0,
    )
    return [
        product(
            "temporaries",
            "largest linear weight dequantized to 16-bit",
            [("P_largest", largest)],
            2,
            BNB_DEQUANT,
        )
    ]


def weight_terms(s: Scenario, t: Transformer, n_params: int) -> list[Term]:
    """The stored weights in the scenario's format (the frozen base for LoRA)."""
    stored = stored_weight_terms(s)
    if stored is not None:
        return stored
    fmt = s.precision.weight_format
    label = LABELS[s.precision]
    if is_float(fmt):
        width = 4 if fmt is Format.FP32 else 2
        return [product("weights", f"{label} weights", [("P", n_params)], width, HF)]
    if is_gguf(fmt):
        return [
            product(
                "weights",
                f"{label} weights (whole-file average)",
                [("P", n_params)],
                bits(fmt, s.group_size) / 8,
                QUANTIZED_SOURCE,
            )
        ]
    experts = _unconverted_experts(s, t)
    linear = _linear_weights(t) - experts
    terms = [
        product(
            "weights",
            f"{label} linear layers",
            [("P_linear", linear)],
            bits(fmt, s.group_size) / 8,
            QUANTIZED_SOURCE,
        ),
        product(
            "weights",
            "embeddings, head and norms in 16-bit",
            [("P_other", n_params - linear - experts)],
            2,
            QUANTIZED_SOURCE,
        ),
    ]
    if experts:
        terms.append(
            product(
                "weights",
                "experts and router left in 16-bit (fused parameters, not nn.Linear)",
                [("P_experts", experts)],
                2,
                BNB_MOE,
            )
        )
    return terms


def moe_notes(s: Scenario, t: Transformer) -> list[str]:
    """What bitsandbytes and peft's all-linear leave out of a mixture of experts."""
    notes = []
    if _unconverted_experts(s, t):
        notes.append(
            "bitsandbytes (transformers 5.x) quantizes nn.Linear layers only: this model's "
            "experts are fused 3-D parameters, so they stay in 16-bit and hold most of the "
            "weights."
        )
    if (
        t.family is Family.MOE
        and s.finetune is Finetune.LORA
        and s.lora_targets is LoraTargets.ALL_LINEAR
    ):
        notes.append(
            "LoRA on every linear layer adapts the attention only: peft's all-linear matches "
            "nn.Linear modules, and the experts are fused parameters (peft's "
            "target_parameters can adapt them)."
        )
    return notes


# --- the training step ---------------------------------------------------------------------


FSDP_ROOT = (
    "PyTorch torch/distributed/fsdp/_runtime_utils.py _post_forward_reshard: "
    "free_unsharded_flat_param = not state._is_root and ..., so the root unit's flat "
    "parameter, all-gathered at the start of forward, stays unsharded through forward and "
    "backward until its post-backward reshard. With auto_wrap_policy on the decoder "
    "layers (fsdp_qlora train.py get_wrapping_policy) the root holds the embeddings, the "
    "final norm and the head, which bitsandbytes leaves 16-bit (an Embedding, and "
    "lm_head in skip_modules). Measured: benchmarks/stacks/fsdp_root.py (torch 2.13)"
)


def fsdp_root_unit(s: Scenario, sizes: stacks.ModelSizes) -> Term:
    """FSDP's root unit (what the wrapped layers leave out), gathered whole beside its
    shard from the start of forward to the end of backward."""
    width = 4 if s.precision is Precision.FP32 or s.precision.is_amp else 2
    return product(
        "gathered_weights",
        "unsharded root unit (embeddings, final norm, head)",
        [("P_root", sizes.root_params)],
        width,
        FSDP_ROOT,
    )


def _param_width(s: Scenario) -> int:
    return 2 if s.precision in (Precision.BF16, Precision.FP16) else 4


def lora_width(s: Scenario) -> int:
    """Bytes per adapter value: fp32, or the type the model is built in (16-bit for a
    pure bf16/fp16 or quantized model, whose compute type the recipe builds it in)."""
    if s.lora_dtype is LoraDtype.FP32 or s.precision is Precision.FP32 or s.precision.is_amp:
        return 4
    return 2


def build_training(s: Scenario) -> Built:
    """The four phases of a training step; for a pipeline, those of its heaviest rank."""
    if not s.pipelined:
        return _build_training(s, None)
    ranks = pipeline_ranks(s, context(s).t)
    built = [(_build_training(s, rank), rank) for rank in ranks]
    heaviest, rank = max(built, key=lambda b: max(p.bytes for p in b[0].phases))
    heaviest.notes.insert(0, _pipeline_note(s, rank))
    return heaviest


def _build_training(s: Scenario, stage: Stage | None) -> Built:
    """The four phases of a training step, on one pipeline rank when ``stage`` is given."""
    c = context(s)
    t = c.t
    counts = parameter_counts(t)
    n_params = sum(counts.values())
    notes: list[str] = []
    width = _param_width(s)
    held_tensors = parameter_tensors(t) if stage is None else stage_tensors(t, stage)
    whole = sum(p.elements for p in held_tensors)
    ep = expert_parallel(s)
    held_tensors = expert_shard(held_tensors, ep)
    depth = t.layers + t.encoder_layers if stage is None else stage.layers
    sizes = stacks.ModelSizes.from_tensors(
        held_tensors, depth, persistence_threshold=s.stage3_param_persistence_threshold
    )
    if ep > 1 and s.stack is Stack.FSDP2:
        # FSDP2 shards a rank's experts over the dp_mod_ep ranks (:data:`FSDP2_EXPERTS`),
        # so each shard is the whole model's over every data-parallel rank; only the
        # blocks it gathers hold experts / ep.
        sizes = replace(sizes, params=whole)
    if float8.gathers_in_float8(s):
        # torchao's float8 all-gather: a block's linear weights gathered at 1 B each.
        per_block = float8.layer_linear_weights(t) // max(t.layers + t.encoder_layers, 1)
        sizes = replace(sizes, float8_unit_params=per_block // ep if ep > 1 else per_block)
    if stage is not None:
        c = replace(c, sizes={**c.sizes, "b": stage.microbatch})
    if c.lora is None:
        tensors = [Trainable(p.shape, width, p.count) for p in held_tensors]
        st = model_states(s, tensors, sizes=sizes)
    else:
        layers = t.layers + t.encoder_layers
        r = s.lora_rank
        # peft's lora_A is (r, in) and lora_B (out, r), per adapted layer.
        # peft keeps adapters in fp32 (autocast_adapter_dtype); torchtune builds them in
        # the model's type (LoRALinear under set_default_dtype), and AdamW's m and v
        # follow them (zeros_like).
        aw = lora_width(s)
        tensors = [
            shape
            for _, _, n_in, n_out in adapters(c)
            for shape in (Trainable((r, n_in), aw, layers), Trainable((n_out, r), aw, layers))
        ]
        frozen = total(weight_terms(s, t, n_params))
        if zero_applies(s) and s.precision.is_amp:
            # DeepSpeed's bf16/fp16 mode casts every floating-point parameter, the frozen
            # fp32 base too, to 16-bit (runtime/engine.py DeepSpeedEngine.
            # _cast_module_mixed_precision: p.data = p.data.to(param_dtype) for float16,
            # bfloat16, float32 and float64; earlier releases' module.bfloat16() the same).
            frozen = 2 * n_params
        lora_sizes = None
        if zero_applies(s) and s.sharding is Sharding.ZERO3:
            # ZeRO-3 partitions and gathers the frozen base with the adapters
            # (stacks.DS_ZERO3_FROZEN): the gathered window and the parameters kept whole
            # (stage3_param_persistence_threshold) count every parameter.
            threshold = s.stage3_param_persistence_threshold
            lora_sizes = replace(
                sizes,
                params=sizes.params + sum(x.elements for x in tensors),
                largest_tensor=max([sizes.largest_tensor, *(x.numel for x in tensors)]),
                persistent_params=sizes.persistent_params
                + sum(x.elements for x in tensors if x.numel < threshold),
            )
        st = model_states(s, tensors, frozen, sizes=lora_sizes)
        n_lora = sum(x.elements for x in tensors)
        notes.append(
            f"LoRA rank {s.lora_rank} on {LABELS[s.lora_targets]}: {n_lora:,} "
            f"trainable parameters, kept in {'fp32' if aw == 4 else '16-bit'}."
        )
        if s.precision in (Precision.NF4, Precision.NF4_DQ, Precision.INT8):
            notes.append(
                "QLoRA: the base stays quantized and each weight is dequantized to 16-bit "
                "only while its matmul runs; bitsandbytes keeps each quantized layer's input "
                "for backward, as a trained layer would."
            )
    if (
        c.lora is not None
        and s.stack in (Stack.HF_TRAINER, Stack.TRL_SFT)
        and s.precision in (Precision.NF4, Precision.NF4_DQ, Precision.INT8)
        # Under DeepSpeed the engine casts those fp32 parameters back to 16-bit
        # (_cast_module_mixed_precision); the 4-bit and 8-bit storage (uint8, int8) is not
        # a floating-point type and stays as it is.
        and not zero_applies(s)
    ):
        # QLoRA recipes on the Trainer call peft's prepare_model_for_kbit_training.
        st.weights = [*st.weights, stacks.kbit_fp32_casts(sizes)]
        notes.append(
            "prepare_model_for_kbit_training casts the 16-bit embeddings, norms and head to fp32."
        )
    if s.optimizer_in_backward and in_backward_applies(s.stack, s.sharding):
        st = stepped_in_backward(s, tensors, st)
    weights, gradients, state, step_terms = st.weights, st.gradients, st.state, st.step
    gathered, in_backward = st.gathered, st.backward
    notes += st.notes
    notes += moe_notes(s, t)
    notes += softcap_notes(s, t)
    notes += float8.notes(s)
    notes += cache.approximation_notes(t)
    notes += packing_notes(c)
    if c.compiled:
        notes.append(
            "Compiled blocks: each RMSNorm keeps its 16-bit input, not its fp32 upcast and "
            "normalized output, and SiLU(gate) is recomputed in backward."
        )
    elif s.torch_compile and compile_applies(t):
        notes.append(
            "Compiled blocks are modelled in 16-bit compute (pure 16-bit, FSDP2 or DeepSpeed); "
            "under autocast the eager tensors are shown."
        )
    if s.checkpointing is Checkpointing.SELECTIVE and s.attention is Attention.SDPA:
        notes.append(
            "Selective checkpointing drops the stored attention scores and probabilities "
            "(Korthikanti et al. 2022, §4.2); memory-efficient attention (SDPA, FlashAttention) "
            "never stores them, so with SDPA it saves nothing."
        )
    if s.stack is Stack.TRL_SFT and s.checkpointing is Checkpointing.NONE:
        notes.append(
            "Checkpointing is off in this run; TRL's SFTConfig turns it on by default "
            "(trl/trainer/base_config.py gradient_checkpointing=True), as the trl_sft "
            "stack does when checkpointing is not set."
        )
    if not st.stacked and s.sharding is Sharding.ZERO3 and s.data_parallel == 1:
        notes.append(
            "ZeRO-3 / FSDP over one data-parallel GPU: FSDP falls back to NO_SHARD, so the "
            "model is held whole and no layer is gathered (torch/distributed/fsdp/_init_utils.py)."
        )
    if s.tensor_parallel > 1:
        split = Fraction(1, s.tensor_parallel)
        tag = f"÷ {s.tensor_parallel} (tensor parallel)"
        weights = [w.scaled(split, tag) for w in weights]
        gradients = [g.scaled(split, tag) for g in gradients]
        state = [o.scaled(split, tag) for o in state]
        step_terms = [x.scaled(split, tag) for x in step_terms]
        gathered = [x.scaled(split, tag) for x in gathered]
        # The blocks FSDP2 gathers again in backward and their unsharded gradients are
        # the tensor-parallel shards too (DTensor parameters sharded over the TP mesh).
        in_backward = [x.scaled(split, tag) for x in in_backward]
    casts: list[Term] = []
    casts_kept = casts
    if c.amp and st.autocast:
        cast_source = (
            "torch.autocast casts each weight once per forward and caches the copy until "
            "the autocast region ends; autograd keeps it for backward (measured)"
        )
        fused_head = trl_fused_head(s, t)
        casts = [
            product(
                "autocast_copies",
                "16-bit copies of the matmul weights",
                # TRL's fused head casts its weight chunk by chunk, outside autocast's
                # cache (_trl_fused_head_terms), so only the layers' weights are cached.
                [("P_matmul", _linear_weights(t) if fused_head else _matmul_weights(t))],
                2,
                cast_source,
            )
        ]
        casts_kept = casts
        if float8.drops_autocast_copies(s):
            # Both FP8 stacks cast the layers' linear weights from their stored type
            # straight to FP8 (float8.TORCHAO_LINEAR, float8.TE_LINEAR): only the head,
            # which they leave in 16-bit (float8.TORCHAO_FILTER), is copied.
            casts = casts_kept = [
                product(
                    "autocast_copies",
                    "16-bit copy of the head's weight",
                    [("P_head", _matmul_weights(t) - _linear_weights(t))],
                    2,
                    float8.head_copy_source(s, cast_source),
                )
            ]
        elif fused_head and s.checkpointing in (Checkpointing.FULL, Checkpointing.PER_OP):
            casts_kept = []  # checkpointed layers keep no copy, and the head made none
        elif s.checkpointing in (Checkpointing.FULL, Checkpointing.PER_OP):
            # Checkpointed layers save nothing, so their copies are gone by backward; the
            # head's copy, outside the checkpoints, stays.
            head = _matmul_weights(t) - _linear_weights(t)
            casts_kept = [
                product(
                    "autocast_copies",
                    "16-bit copy of the head's weight",
                    [("P_head", head)],
                    2,
                    cast_source,
                )
            ]
    # Transformer Engine's FP8 transposed weights, saved for backward by every layer that
    # keeps its tensors, and each linear layer's scaling state (float8.TE_LINEAR, TE_META).
    waiting = None if stage is None else stage.saved_layers
    te_copies = float8.te_weight_copies(s, t, waiting)
    casts, casts_kept = [*casts, *te_copies], [*casts_kept, *te_copies]
    weights = [*weights, *float8.te_meta(s, t, depth)]
    if not st.stacked and s.sharding is Sharding.ZERO3 and s.data_parallel > 1 and not gathered:
        # ZeRO-3 / FSDP gather one layer's full weights (and prefetch the next) for each
        # forward and backward; DeepSpeed's estimator counts 4 bytes (16-bit weights and
        # gradients) per parameter of the largest layer (stage3.py
        # estimate_zero3_model_states_mem_needs). Autocast copies exist only for those.
        # On one GPU there is nothing to gather: FSDP switches FULL_SHARD to NO_SHARD when
        # the world size is 1 (torch/distributed/fsdp/_init_utils.py, "FSDP is switching
        # to use NO_SHARD"), so the model is held whole, once. Hence two GPUs can need
        # more than one for a model whose largest layer outweighs half of its states.
        largest = layer_params(t)
        gathered_layer = product(
            "weights",
            "gathered weights and gradients of the largest layer (ZeRO-3)",
            [("P_layer", largest)],
            2 * width,
            ZERO_SOURCE,
        )
        if c.lora is not None:
            # A frozen base has no gradients, and FSDP gathers it in its stored format:
            # the current layer and the one BackwardPrefetch.BACKWARD_PRE (the default)
            # gathers ahead.
            fmt = s.precision.weight_format
            stored = bits(fmt, s.group_size) / 8 if not is_float(fmt) else _param_width(s)
            gathered_layer = product(
                "weights",
                "gathered frozen layers, current and prefetched",
                [("2", 2), ("P_layer", largest)],
                stored,
                FSDP_FROZEN_GATHER,
            )
        weights = [*weights, gathered_layer]
        if c.lora is not None:  # DeepSpeed's ZeRO-3 takes full fine-tuning only
            gathered = [*gathered, fsdp_root_unit(s, sizes)]
        if c.amp and st.autocast:
            casts = casts_kept = [
                product(
                    "autocast_copies",
                    "16-bit copies of the gathered layer's weights",
                    [("P_layer", largest)],
                    2,
                    ZERO_SOURCE,
                )
            ]
    acts = activations(c, stage)
    kept, host = acts.terms, list(st.host)
    brought_back: list[Term] = []
    if s.activation_offload and not c.cpu:
        kept, offload = offloaded(c, acts)
        host += offload
        layer = sum(acts.layer_tensors)
        # The stash is freed at the first node that unpacks (the final norm's backward),
        # before any layer's; the head's input stays until the head's backward.
        brought_back = [
            Term(
                "activations",
                "one layer's saved tensors, brought back for its backward",
                layer,
                "one layer's saved rows",
                f"{layer:,} B",
                TORCHTUNE_OFFLOAD,
            ),
        ]
        notes.append(
            "Activation offloading: the layers' saved tensors wait in pinned CPU memory "
            f"({total(offload) / 2**30:.2f} GiB, shown beside the GPU figure) and come back "
            "one layer at a time in backward; the last few and the head's input stay."
        )
    if s.loss is Loss.CHUNKED and language_model(t):
        notes.append(
            f"Chunked cross-entropy over {s.loss_chunks} chunks, compiled as torchtune runs "
            "it: the 16-bit logits are all made and kept, with no fp32 copy, and backward "
            "makes one chunk's gradient at a time."
        )
    if s.loss is Loss.CCE and language_model(t):
        notes.append(
            "Cut Cross-Entropy: the logits never reach GPU memory; one log-sum-exp per token "
            "is kept, and backward recomputes the logits on chip."
        )
    if s.loss is Loss.FUSED_LINEAR and language_model(t):
        notes.append(
            "Fused linear cross-entropy (Liger): the logits are made one chunk of tokens at "
            "a time and never whole; the hidden states' and the head's gradients are made "
            "in forward and kept until backward."
        )
    if s.loss is Loss.COMPILED and language_model(t):
        notes.append(
            "Compiled cross-entropy, as torchtitan compiles its loss: the 16-bit logits are "
            "kept with two fp32 values per token, with no fp32 copy, and backward makes one "
            "16-bit gradient of the logits."
        )
    if trl_fused_head(s, t):
        notes.append(
            "TRL's fused LM head: SFTTrainer takes the loss, entropy and token accuracy from "
            "tiles of the logits (trl/kernels/chunked_logprob.py), so no whole logits are "
            f"held; its tile buffer is min(n, {TRL_TILE_TOKENS:,}) × {TRL_TILE_VOCAB:,} "
            "whatever the vocabulary, n = b·(s − 1) the positions with a next-token label. "
            "Without Triton (a CPU) its torch-ops path holds fp32 tiles besides, which are "
            "not counted."
        )
    if s.loss is Loss.FP32_LOGITS and language_model(t):
        notes.append(
            "fp32 logits, as transformers 4.45 and older return them from a causal LM: held "
            "through backward, with a shifted fp32 copy at the loss."
            if t.head.value == "causal_lm"
            else "transformers 4.x upcasts only a causal LM's logits; this head's loss is "
            "the standard cross-entropy."
        )
    if s.tensor_parallel > 1 and s.sequence_parallel:
        notes.append(
            f"Sequence parallelism: the layer inputs, norms and dropout masks are split "
            f"over the {s.tensor_parallel} tensor-parallel ranks along the sequence; the "
            "inputs the column-parallel projections gather stay whole."
        )
    if s.tensor_parallel > 1 and s.loss_parallel and language_model(t):
        shard = loss_vocab(s, t)
        notes.append(
            f"Loss parallelism: the logits stay split by vocabulary, so V in the loss's "
            f"terms is each rank's shard, {shard:,} of {t.vocab:,}."
        )
    saved_loss, logits, loss_extra, loss_grads = loss_terms(c, acts.x)
    if stage is not None and not stage.last_chunks:
        saved_loss, logits, loss_extra, loss_grads = [], [], [], []  # the loss is the last's
    elif stage is not None and stage.last_chunks > 1:
        # GPipe runs every micro-batch's loss before the first backward.
        many = Fraction(stage.last_chunks)
        saved_loss = [x.scaled(many, f"× {stage.last_chunks} micro-batches") for x in saved_loss]
    inflight = [
        as_term(
            "temporaries",
            "activation gradients in flight",
            parallel_split(
                c,
                [
                    Row("gradients of a layer's input and output", ("b", acts.x, "h"), "act", 2),
                    Row("gradients inside the MLP", ("b", acts.x, "f"), "act", 2),
                ],
            ),
            c.sizes,
            c.widths,
            "PyTorch autograd engine: a layer's input and output gradients "
            "and its intermediate gradients are live while the layer runs backward",
        )
    ]
    # The FP8 stacks' casts while a linear layer runs backward (float8.backward_casts).
    tokens = c.sizes["b"] * c.sizes[acts.x]
    inflight += float8.backward_casts(s, t, tokens, c.compiled)
    recompute = []
    if s.checkpointing in (Checkpointing.FULL, Checkpointing.PER_OP, Checkpointing.EVERY_N):
        recompute = [
            as_term(
                "temporaries",
                "one layer recomputed in backward",
                acts.one_layer,
                c.sizes,
                c.widths,
                "torch.utils.checkpoint: the layer's forward "
                "runs again, and its saved tensors live until its backward ends",
            )
        ]
    ring = ring_attention_terms(c)
    if ring:
        notes.append(
            f"Context parallelism: each of the {s.context_parallel} context-parallel ranks "
            f"holds {c.sizes['s']:,} of the {s.seq_len:,} tokens; ring attention gathers "
            "every rank's keys and values while a layer's attention runs backward."
        )
    # Counted in backward, as the ring's are: in forward a layer's buffers are gone before
    # the head makes the logits, the forward phase's peak.
    a2a = all_to_all_terms(c)
    if a2a:
        notes.append(
            f"Expert parallelism: each of the {s.expert_parallel} expert-parallel ranks "
            f"holds {t.experts // s.expert_parallel} of the {t.experts} experts of every MoE "
            "layer; tokens reach them through an all-to-all, routing assumed balanced."
        )
    base = [*weights, *state]
    if stage is not None:
        # torch.distributed.pipelining's own tensors on the rank (pipeline_buffer_terms):
        # receive buffers for its whole life, stage outputs while their forwards wait.
        buffers, outputs = pipeline_buffer_terms(c, stage, acts.x)
        base += buffers
        kept = [*kept, *outputs]
    in_forward, at_backward = gradients_held(s)  # where zero_grad runs, accumulation
    if st.in_backward:
        in_forward = at_backward = False  # each gradient is freed as it is stepped
    held = [*base, *casts, *(gradients if in_forward else []), *gathered]
    held_back = [*base, *casts_kept, *(gradients if at_backward else []), *gathered, *in_backward]
    start = [*held_back, *kept, *saved_loss, *(loss_grads or inflight)]
    dequant = dequant_terms(s, t)
    end = [
        *base,
        *casts_kept,
        *gradients,
        *gathered,
        *in_backward,
        *recompute,
        *inflight,
        *ring,
        *a2a,
        *dequant,
        *brought_back,
        *(step_terms if st.in_backward else []),
    ]
    head_back = chunked_head_terms(c, acts)
    if head_back:
        head_back = [*held_back, *kept, *head_back]
    backward = max((start, head_back, end), key=total)
    steps = [] if st.in_backward else [("optimizer_step", [*base, *gradients, *step_terms])]
    phases = phases_of(
        ("forward", [*held, *kept, *logits, *dequant]),
        ("loss", [*held, *kept, *saved_loss, *loss_extra]),
        ("backward", backward),
        *steps,
    )
    if c.cpu:
        notes.append(
            "CPU step: dropout keeps its noise in the activations' type and no CUDA "
            "context is counted."
        )
    if s.attention is Attention.SDPA and c.eager:
        notes.append(
            "The CPU's SDPA falls back to the math kernel when attention dropout "
            "is on, so the scores are stored as in eager attention."
        )
    notes.append(
        f"{t.model_type or t.family.value}: {n_params:,} parameters, "
        f"{t.layers} layers, h = {t.hidden:,}."
    )
    return Built(phases, notes, acts.bytes + total(saved_loss), tuple(host), tuple(st.nvme))


# --- inference -----------------------------------------------------------------------------


def _sliding_layers(t: Transformer) -> int:
    """How many layers attend over a sliding window (the rest see everything)."""
    if t.sliding_window is None:
        return 0
    types = t.config.get("layer_types")
    if isinstance(types, list) and types:
        return sum(1 for x in types if x == "sliding_attention")
    if t.model_type == "qwen2" and not t.config.get("use_sliding_window", False):
        return 0
    if t.model_type == "gemma2":
        return t.layers // 2  # alternating local and global layers
    if t.model_type in ("gemma3", "gemma3_text"):
        pattern = int(t.config.get("sliding_window_pattern", 6))
        return t.layers - t.layers // pattern
    return t.layers


def kv_cache_term(s: Scenario, t: Transformer, tokens: int, decoding: bool) -> Term:
    """The KV cache holding ``tokens`` per sequence; past the first decode step, sliding-
    window layers keep only their window (transformers trims them then)."""
    if cache.special(t):
        return cache.cache_term(s, t, tokens)
    kv_bytes = s.kv_cache_dtype.bytes_for(s.precision)
    sliding = _sliding_layers(t)
    window = t.sliding_window or tokens
    if t.chunked_layers:  # Llama 4: chunked layers cache as sliding ones (cache.py)
        sliding, window = t.chunked_layers, t.attention_chunk
    if decoding and sliding and tokens > window:
        full = t.layers - sliding
        per_layer = [("2", 2), ("b", s.batch_size), ("a_kv", t.kv_heads), ("d", t.head_dim)]
        held = full * tokens + sliding * window
        return product(
            "kv_cache",
            f"keys and values ({sliding} sliding-window layers keep {window:,} tokens)",
            [*per_layer, ("layer·tokens", held)],
            Fraction(kv_bytes, s.tensor_parallel),
            HF_CACHE,
        )
    return product(
        "kv_cache",
        "keys and values of every layer",
        [
            ("2", 2),
            ("L", t.layers),
            ("b", s.batch_size),
            ("a_kv", t.kv_heads),
            ("tokens", tokens),
            ("d", t.head_dim),
        ],
        Fraction(kv_bytes, s.tensor_parallel),
        HF_CACHE,
    )


def inference_moments(c: Ctx) -> list[tuple[str, list[Row]]]:
    """The candidate peaks of a prefill, each as the tensors live at that moment.

    Measured for GPT-2, Llama, Mistral and Mixtral (benchmarks/accuracy/inventory.md
    §6, §19-27): the MLP of the last layer (its input, residual and intermediates), its
    attention (q, k, v and the output; with eager attention the scores, an fp32 softmax
    and the probabilities), or the logits.
    """
    t, s = c.t, c.s
    common = [Row("token ids", ("b", "s"), "i64")]
    if t.family in (Family.DECODER, Family.MOE) and not t.learned_positions:
        common.append(Row("rotary cos and sin", ("s", "d"), "act", 2))
    # transformers builds the window mask once the keys reach the window, not past it
    # (masking_utils.py _ignore_causal_mask_sdpa: skipped only when kv_length < window).
    past_window = t.sliding_window is not None and s.seq_len >= t.sliding_window
    if past_window:
        common.append(Row("sliding-window mask", ("s", "s"), "bool"))
    if t.model_type in ("gpt2", "gpt_bigcode"):
        # GPT-2 returns its attention probabilities from each block, so they stay
        # referenced while the block's MLP runs.
        probs = (
            [
                Row("attention probabilities", ("b", "a", "s", "s"), "act"),
                Row("causal mask", ("b", "s", "s"), "act"),
            ]
            if c.eager
            else []
        )
        layer = [
            *probs,
            Row("position ids and embeddings", ("s",), "i64"),
            Row("position embeddings", ("s", "h"), "act"),
            Row("residual, norm and attention outputs", ("b", "s", "h"), "act", 5),
            Row("tanh-GELU intermediates", ("b", "s", "f"), "act", 4),
        ]
        return [("block", common + layer), ("logits", common + _logit_rows(c))]
    if t.family is Family.MOE:
        mlp = [
            Row("residual, normed hidden and outputs", ("b", "s", "h"), "act", 4),
            Row("tokens gathered for their experts", ("b", "s", "k", "h"), "act"),
            Row("expert gate, up and product", ("b", "s", "k", "f"), "act", 4),
            Row("router scores", ("b", "s", "E"), "act"),
            Row("routing indices", ("b", "s", "k"), "i64", 4),
            Row("routing weights", ("b", "s", "k"), "f32"),
        ]
    elif t.gated_mlp:
        mlp = [
            Row("residual, normed hidden and outputs", ("b", "s", "h"), "act", 4),
            Row("gate, up and activation outputs", ("b", "s", "f"), "act", 3),
        ]
    else:
        mlp = [
            Row("residual, normed hidden and outputs", ("b", "s", "h"), "act", 4),
            Row("MLP intermediate and activation", ("b", "s", "f"), "act", 2),
        ]
    attention = [Row("residual, normed hidden and projection input", ("b", "s", "h"), "act", 3)]
    if c.eager:
        attention += [
            Row("scores, masked scores and probabilities", ("b", "a", "s", "s"), "act", 3),
            Row("fp32 softmax", ("b", "a", "s", "s"), "f32"),
            Row("query and key/value repeated to every head", ("b", "a", "s", "d"), "act", 3),
            Row("causal mask", ("b", "s", "s"), "act"),
        ]
    else:
        attention += [
            Row("query and attention output", ("b", "a", "s", "d"), "act", 4),
            Row("new key and value", ("b", "a_kv", "s", "d"), "act", 2),
        ]
        if past_window:
            attention += [
                Row("sliding-window mask for the kernel", ("b", "s", "s"), "act"),
                Row("softmax log-sum-exp", ("b", "a", "s"), "f32"),
            ]
    return [
        ("MLP", common + mlp),
        ("attention", common + attention),
        ("logits", common + _logit_rows(c)),
    ]


def _logit_rows(c: Ctx) -> list[Row]:
    t = c.t
    if not t.vocab or t.family is Family.VIT or not _lm(t):
        return [Row("classifier input and output", ("b", "h"), "act", 2)]
    dims = ("b", "s", "V") if c.s.logits is Logits.ALL else ("b", "V")
    return [Row("logits", dims, "act"), Row("final hidden states", ("b", "s", "h"), "act", 2)]


def build_inference(s: Scenario) -> Built:
    """Prefill of the prompt and one decode step with the KV cache."""
    c = context(s)
    t = c.t
    n_params = sum(parameter_counts(t).values())
    weights = weight_terms(s, t, n_params)
    if s.tensor_parallel > 1:
        weights = [
            w.scaled(Fraction(1, s.tensor_parallel), f"÷ {s.tensor_parallel}") for w in weights
        ]
    notes = [
        f"{t.model_type or t.family.value}: {n_params:,} parameters.",
        *moe_notes(s, t),
        *softcap_notes(s, t),
    ]
    decoder = t.family in (Family.DECODER, Family.MOE)
    ctx_tokens = s.cached_tokens if decoder else s.seq_len
    sizes = dict(c.sizes)
    candidates = inference_moments(c)
    if s.tensor_parallel > 1:
        # Split every moment before choosing the largest: the split divides some rows
        # (heads, MLP columns) and not others, so the order of the moments can change.
        candidates = [(n, _tp_split(rows, s.tensor_parallel)) for n, rows in candidates]
    name, rows = max(candidates, key=lambda kv: total_bytes(kv[1], sizes, c.widths))
    working = as_term(
        "activations",
        f"working set at the {name} peak of the last layer",
        rows,
        sizes,
        c.widths,
        LLAMA_INFERENCE,
    )
    prefill_terms = [*weights, working, *dequant_terms(s, t)]
    phases: list[Phase] = []
    if decoder or t.family is Family.ENCODER_DECODER:
        prefill_kv = kv_cache_term(s, t, s.seq_len, decoding=False)
        prefill_terms.append(prefill_kv)
    if t.family is Family.ENCODER_DECODER:
        notes.append(
            "Encoder-decoder inference: the working set is the encoder pass; the "
            "decoder's cache grows with the generated tokens."
        )
    phases += phases_of(("prefill", prefill_terms))
    if decoder:
        after = kv_cache_term(s, t, ctx_tokens, decoding=True)
        if cache.special(t):
            phases += phases_of(
                ("decode", [*weights, after, cache.cache_temporary(s, t, ctx_tokens)])
            )
            notes += [cache.cache_note(s, t), *cache.approximation_notes(t)]
            return Built(phases, notes)
        cat = product(
            "temporaries",
            "one layer's old key or value during torch.cat",
            [("b", s.batch_size), ("a_kv", t.kv_heads), ("tokens", ctx_tokens), ("d", t.head_dim)],
            Fraction(s.kv_cache_dtype.bytes_for(s.precision), s.tensor_parallel),
            HF_CACHE,
        )
        phases += phases_of(("decode", [*weights, after, cat]))
        notes.append(
            f"KV cache: {2 * t.kv_heads * t.head_dim * t.layers * s.kv_cache_dtype.bytes_for(s.precision):,} "  # noqa: E501
            f"bytes per token per sequence ({t.kv_heads} key/value heads of "
            f"{t.head_dim} in each of {t.layers} layers)."
        )
    notes += cache.approximation_notes(t)
    return Built(phases, notes)


def build(s: Scenario) -> Built:
    """The phases of a transformer's training step or inference."""
    return build_training(s) if s.mode is Mode.TRAINING else build_inference(s)
