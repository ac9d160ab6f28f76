"""The step as a timeline: allocation and free events in the order PyTorch runs them.

:func:`step_events` turns an estimate's phases into events for
:func:`nnmem.allocator.replay`: ``("mark", phase)`` where a phase starts,
``("alloc", key, size, component, label)`` and ``("free", key)``. The weights and the
optimizer state are allocated first, in a ``load`` span; then each phase of the step:

* forward: layer by layer, each layer's saved tensors born (and, under autocast, its
  16-bit weight copies, each where its matmul first reads it where the model's table says
  where: GPT-2), with the tensors the layer makes and does not save born and freed among
  them; the embeddings' output first, the head's logits last;
* loss: the loss's own tensors, the forward's logits going on as the loss's; the
  logits no node saved die when the loss returns;
* backward: the loss's nodes first (their gradients born, then the log-softmax they
  saved freed), then the head's matmul (a tied embedding's gradient, then autograd's
  cuBLAS workspace), then the layers in reverse: each layer recomputed where
  checkpointing is on, its parameters' gradients born, its saved tensors freed
  (torch/csrc/autograd/engine.cpp ``Engine::evaluate_function`` runs a node, then
  releases its saved variables, ``release_variables``, once the graph is not retained);
* optimizer step: a first step's state, then the step's temporaries one per parameter
  (a foreach step's all together, a per-tensor step's one parameter at a time), then
  ``zero_grad(set_to_none=True)`` frees the gradients (torch/optim/optimizer.py, the
  default since PyTorch 2.0);
* inference: prefill, then decode.

Under FSDP (v1) wrapping a CPU-loaded model with ``sync_module_states``, a ``wrap`` span
comes before the load: each unit moved to the GPU, broadcast, flattened and sharded
(:func:`_wrap`), so the allocator's cache the wrap leaves is what the step starts from.

A tensor is a term of a phase cut into pieces the size PyTorch allocates: one per
parameter tensor for weights, gradients and optimizer state
(:func:`nnmem.models.architecture.parameter_tensors`), one per layer and saved tensor
for activations. The live total never exceeds a phase's peak inside its span and
reaches it exactly once the phase's terms are all live: where PyTorch's own order would
pass above the phase's peak as the engine models it, a free is taken earlier.

Serving runtimes (vLLM, llama.cpp) give no timeline: their memory is a static plan,
not a step (:mod:`nnmem.runtimes.serve`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from nnmem.allocator import AllocatorConfig, ReplayResult, replay_needed
from nnmem.builders import builder
from nnmem.catalog import cublas_workspace_bytes
from nnmem.models.transformer.assembly import LOSS_PARALLEL
from nnmem.result import Phase
from nnmem.scenario import GenericModel, Mode, Runtime, Scenario, Stack
from nnmem.stacks import FSDP2_AG_STATE, FSDP2_GRAD, FSDP2_UNSHARD
from nnmem.terms import Term

Event = tuple[object, ...]
# Keys of the model's states: allocated at load, kept across steps.
STATE_KEYS = ("weights", "optimizer_state", "comm_buffers")
PARAM_SHAPED = ("weights", "gradients", "optimizer_state", "autocast_copies")
FOREACH = "foreach"  # label of a multi-tensor optimizer step's temporaries
LARGEST = "P_largest"  # formula symbol of a per-tensor step's temporaries
# Depth symbols an activation term's formula starts with (nnmem.models.tensors.as_term
# with ``times``): its substituted text starts with the layer count, or with the number of
# pipeline stage outputs waiting for backward, one tensor per micro-batch
# (nnmem.models.transformer.assembly.pipeline_buffer_terms).
DEPTH_SYMBOLS = ("L ", "L_enc ", "L_saved ", "L−", "⌊", "n_out ")
MAX_PIECES_PER_TERM = 4096
# Side streams, numbered for the allocator replay (0 is the current stream). FSDP2 makes
# its own (torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py
# FSDPCommContext.lazy_init: all_gather_copy_in_stream, all_gather_stream,
# reduce_scatter_stream); get_all_gather_streams gives forward's and pre-backward's
# implicit prefetch the copy-in and all-gather streams.
SAVED_LOG_SOFTMAX = "log-softmax saved by the loss"  # nnmem.models.transformer.assembly.loss_terms
FSDP2_ALL_GATHER_STREAM = 1
FSDP2_REDUCE_SCATTER_STREAM = 2


@dataclass(frozen=True)
class Piece:
    """One allocation a term stands for: its bytes, its place in the model, its name.

    ``slot`` orders pieces along the model: -1 before the first layer (embeddings),
    0 … L-1 the layers, L after them (final norm, head, loss).
    """

    size: int
    slot: int
    name: str
    stream: int = 0  # the stream it is allocated on (FSDP2's side streams)


@dataclass(frozen=True)
class _Shape:
    """What the splitter knows of the model: its depth and parameter tensors."""

    layers: int
    params: tuple[tuple[str, int, int], ...]  # (name, numel, slot) per parameter tensor
    layer_pattern: tuple[int, ...]  # bytes of each tensor one layer saves
    logit_values: int = 0  # tokens × vocabulary: the values of one logits tensor
    layer_full: tuple[int, ...] = ()  # bytes of each tensor a checkpointed layer remakes
    # Terms whose tensors the model's builder knows one by one: label -> (bytes, slot).
    named: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    tied: str = ""  # the embedding an output head shares its weight with
    # A layer's unsaved tensors: their bytes, and after each of its saved tensors (and,
    # last, at the layer's end) which are born (+k+1) and freed (-k-1), in order.
    transient_sizes: tuple[int, ...] = ()
    layer_run: tuple[tuple[int, ...], ...] = ()
    # Where an autocast copy is made: (parameter name prefix, saved tensor it follows).
    casts: tuple[tuple[str, int], ...] = ()


def _shape(scenario: Scenario) -> _Shape:
    """The model's depth, its parameter tensors with their slots, a layer's tensors."""
    from nnmem.models.architecture import Head, Transformer, parameter_tensors
    from nnmem.models.transformer.assembly import expert_shard, loss_vocab
    from nnmem.models.transformer.context import context, expert_parallel

    model = scenario.model
    if isinstance(model, Transformer):
        layers = max(model.layers + model.encoder_layers, 1)
        params: list[tuple[str, int, int]] = []
        # A rank's own experts (assembly.EXPERT_SHARDS); FSDP2's shards are the whole
        # model's over every data-parallel rank (assembly.FSDP2_EXPERTS).
        ep = 1 if scenario.stack is Stack.FSDP2 else expert_parallel(scenario)
        for tensor in expert_shard(parameter_tensors(model), ep):
            if tensor.count == 1:
                before = tensor.name.startswith(("embed", "position", "token_type", "patch", "cls"))
                params.append((tensor.name, tensor.numel, -1 if before else layers))
                continue
            # Many tensors of one kind (experts) are one piece per layer: the allocator
            # sees the same sizes, and a 256-expert model stays a few thousand events.
            per_layer = max(tensor.count // layers, 1)
            spread = min(tensor.count, layers)
            for i in range(spread):
                name = tensor.name.replace("*.", "").replace("layers.", "")
                params.append((name, tensor.numel * per_layer, i * layers // spread))
        # The logits one rank holds, as the engine sizes them: the decoder's tokens, or the
        # rank's share of the sequence under context parallelism, by its vocabulary shard.
        dims = context(scenario).sizes
        tokens = scenario.batch_size * (dims["t"] if scenario.decoder_seq_len else dims["s"])
        vocab = loss_vocab(scenario, model)
        logit_values = tokens * vocab if vocab and scenario.mode is Mode.TRAINING else 0
        saved, full = _layer_patterns(scenario)
        lm = model.head in (Head.CAUSAL_LM, Head.MASKED_LM, Head.SEQ2SEQ_LM)
        tied = "embed.weight" if model.tied_embeddings and lm else ""
        sizes, run, casts = _layer_run(scenario, saved) if not full else ((), (), ())
        return _Shape(
            layers,
            tuple(params),
            saved,
            logit_values,
            full,
            tied=tied,
            transient_sizes=sizes,
            layer_run=run,
            casts=casts,
        )
    # Neither a transformer nor a parameter count is a CNN (nnmem.builders picks the same
    # way), which spares a CNN's modules until a CNN is asked for.
    if not isinstance(model, GenericModel) and scenario.mode is Mode.TRAINING:
        return _cnn_shape(scenario)
    depth = getattr(model, "num_layers", None) or getattr(model, "layers", None)
    layers = depth if isinstance(depth, int) and depth > 0 else 1
    return _Shape(layers, (), ())


def _cnn_shape(scenario: Scenario) -> _Shape:
    """A CNN's parameters and saved tensors one by one, from the walk its builder makes
    (:func:`nnmem.models.cnn.forward.saved_activations` groups the same storages)."""
    import math

    from nnmem.models.cnn.build import _cnn_precision, _model
    from nnmem.models.cnn.forward import _first_savers, _layer_label, _training_walk
    from nnmem.models.cnn.language import TermKind
    from nnmem.models.cnn.shapes import parameter_shapes

    model = _model(scenario)
    batch = scenario.batch_size
    walk = _training_walk(model, batch, _cnn_precision(scenario.precision))
    top = len(model.layers)
    groups: dict[str, list[tuple[int, int]]] = {}
    labels = {
        TermKind.INPUT: ("Input batch (kept by the first layer)", -1),
        TermKind.LOSS: ("Cross-entropy loss", top),
        TermKind.WEIGHT_COPY: ("Autocast 16-bit weight copies", -2),
    }
    for tensor, _, where in _first_savers(walk).values():
        label, slot = labels.get(tensor.kind) or (_layer_label(model, where)[1], where)
        groups.setdefault(label, []).append((tensor.nbytes(batch), where if slot == -2 else slot))
    # Each parameter belongs to the top-level layer whose nodes count it, in module order.
    owners = [node.top for node in walk.nodes for _ in range(1) if node.params]
    counts = [node.params for node in walk.nodes if node.params]
    params = []
    node, used = 0, 0
    for i, shape in enumerate(parameter_shapes(model)):
        numel = math.prod(shape)
        while node < len(counts) - 1 and used >= counts[node]:
            node, used = node + 1, 0
        used += numel
        params.append((f"parameter {i} {'×'.join(map(str, shape))}", numel, owners[node]))
    named = tuple((label, tuple(pieces)) for label, pieces in groups.items())
    return _Shape(top, tuple(params), (), named=named)


def _layer_patterns(scenario: Scenario) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The bytes of each tensor the heaviest layer saves for backward, and, where
    checkpointing is on, of each tensor a layer makes when it runs (transformers)."""
    from nnmem.models.transformer.assembly import _tensor_bytes, activations
    from nnmem.models.transformer.context import context
    from nnmem.scenario import Checkpointing

    if scenario.mode is not Mode.TRAINING:
        return (), ()
    try:
        c = context(scenario)
        acts = activations(c)
    except (ValueError, KeyError, ZeroDivisionError):
        return (), ()
    saved = tuple(n for n in acts.layer_tensors if n > 0)
    if scenario.checkpointing is Checkpointing.NONE:
        return saved, ()
    return saved, tuple(n for n in _tensor_bytes(c, acts.one_layer) if n > 0)


def _layer_run(
    scenario: Scenario, saved: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], tuple[tuple[str, int], ...]]:
    """A layer's unsaved tensors (:func:`nnmem.models.transformer.tables.gpt2_transients`)
    placed among its saved ones: their bytes, and for each saved tensor, then the layer's
    end, the transients born (+k+1) and freed (-k-1) there; and after which saved tensor
    each autocast weight copy is made. None where the layer's rows do not give exactly
    ``saved`` (another model, adapters, tensor parallelism)."""
    import math

    from nnmem.models.transformer.assembly import _tensor_bytes
    from nnmem.models.transformer.context import context
    from nnmem.models.transformer.tables import gpt2_casts, gpt2_layer, gpt2_transients

    if not saved or getattr(scenario.model, "model_type", "") != "gpt2":
        return (), (), ()
    c = context(scenario)
    rows = gpt2_layer(c)
    ends: dict[str, int] = {}
    position = 0
    for row in rows:
        position += sum(1 for n in _tensor_bytes(c, [row]) if n > 0)
        ends[row.what] = position - 1
    if tuple(n for n in _tensor_bytes(c, rows) if n > 0) != saved:
        return (), (), ()
    transients = [t for t in gpt2_transients(c) if math.prod(c.sizes[d] for d in t.row.dims) > 0]
    sizes = tuple(
        math.ceil(t.times * t.row.elements(c.sizes) * c.widths.of(t.row.width)) for t in transients
    )
    run: list[list[int]] = [[] for _ in range(len(saved) + 1)]
    live: set[int] = set()

    def born(name: str, at: list[int]) -> None:
        # What dies once ``name`` is born, then what is born after it.
        for k, t in enumerate(transients):
            if t.until == name and k in live:
                live.discard(k)
                at.append(-k - 1)
        for k, t in enumerate(transients):
            if t.after == name and k not in live and sizes[k]:
                live.add(k)
                at.append(k + 1)
                born(t.row.what, at)

    for name, end in ends.items():
        if end >= 0:
            born(name, run[end])
    run[-1] += [-k - 1 for k in sorted(live)]
    casts = tuple((name, ends[row]) for name, row in gpt2_casts(c) if ends.get(row, -1) >= 0)
    return sizes, tuple(tuple(at) for at in run), casts


def _proportional(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights``; the remainder goes to the largest."""
    whole = sum(weights)
    if whole <= 0 or total <= 0:
        return [total]
    parts = [total * w // whole for w in weights]
    largest = max(range(len(parts)), key=lambda i: weights[i])
    parts[largest] += total - sum(parts)
    return parts


def _logit_pieces(term: Term, unit: int, slot: int) -> list[Piece]:
    """A loss term as the logits-sized tensors it holds: fp32 (4 B a value) ones, a
    16-bit one, and what is left (the targets, one loss per token). transformers'
    ForCausalLMLoss upcasts the 16-bit logits to fp32 (loss/loss_utils.py) and
    cross_entropy's log_softmax saves an fp32 result; backward makes one gradient of each."""
    rest = term.bytes
    sizes = []
    while rest >= 4 * unit:
        sizes.append(4 * unit)
        rest -= 4 * unit
    if rest >= 2 * unit:
        sizes.append(2 * unit)
        rest -= 2 * unit
    if rest:
        sizes.append(rest)
    return [Piece(size, slot, term.label) for size in sizes]


def _copies(term: Term) -> tuple[int, int]:
    """A per-tensor step's temporaries (``copies × P_largest × width``): how many copies
    of a parameter it holds at once, and the bytes of each copy's values."""
    factors = term.substituted.removesuffix(" B").replace(",", "").split(" × ")
    if len(factors) == 3 and factors[0].isdigit() and factors[2].isdigit():
        return max(int(factors[0]), 1), int(factors[2])
    return 1, 0


def _depth(term: Term) -> int:
    """The layer count an activation term is a multiple of (1 when it is not)."""
    if not term.formula.startswith(DEPTH_SYMBOLS):
        return 1
    head = term.substituted.split(" × ", 1)[0].replace(",", "")
    return int(head) if head.isdigit() and int(head) > 0 else 1


def pieces(term: Term, shape: _Shape, slot: int) -> list[Piece]:
    """The allocations ``term`` stands for; ``slot`` places a term that has no layers.

    FSDP2's buffers are cut as ``_fsdp_collectives.py`` allocates them, each on its stream:

    * ``foreach_all_gather`` allocates one flat all-gather output per group
      (``all_gather_comm.allocate`` inside ``device_handle.stream(all_gather_copy_in_stream)``):
      the output forward keeps for the next group, and in backward each prefetched
      group's, waiting for its copy-out; the current group's unsharded parameters are
      ``foreach_all_gather_copy_out``'s, on the current stream.
    * ``foreach_reduce`` allocates one flat ``reduce_output`` per group inside
      ``device_handle.stream(reduce_scatter_stream)``; each sharded gradient is a view of
      it (``torch.as_strided(reduce_output, ...)``), so the group's gradients are one
      block, freed when ``zero_grad`` drops the last view.
    """
    if term.source == FSDP2_AG_STATE:
        return [Piece(term.bytes, slot, term.label, FSDP2_ALL_GATHER_STREAM)]
    prefetched = _prefetched_blocks(term)
    if prefetched:
        share = term.bytes // (1 + prefetched)
        current = Term(term.key, term.label, term.bytes - prefetched * share, "", "")
        gathered = f"{term.label}: a prefetched group's all-gather output"
        return (
            _plain_pieces(current, shape, slot)
            + [Piece(share, slot, gathered, FSDP2_ALL_GATHER_STREAM)] * prefetched
        )
    found = _plain_pieces(term, shape, slot)
    if term.source == FSDP2_GRAD and term.label == FSDP2_SHARDED_GRADS:
        groups: dict[int, list[Piece]] = {}
        for piece in found:
            groups.setdefault(piece.slot, []).append(piece)
        return [
            Piece(
                sum(p.size for p in group),
                where,
                _group_name(group, where, shape.layers),
                FSDP2_REDUCE_SCATTER_STREAM,
            )
            for where, group in groups.items()
        ]
    return found


FSDP2_SHARDED_GRADS = "sharded gradients"


def _group_name(group: Sequence[Piece], slot: int, layers: int) -> str:
    """A group's reduce-scatter output, named after its first parameter's piece."""
    if len(group) == 1:
        return group[0].name
    where = f"layer {slot} " if 0 <= slot < layers else ""
    return f"{where}{group[0].name} and {len(group) - 1} more"


def _prefetched_blocks(term: Term) -> int:
    """How many prefetched groups FSDP2's backward term ``unsharded current block and N
    prefetched`` (:func:`nnmem.stacks.fsdp2`) holds besides the current one."""
    if term.source != FSDP2_UNSHARD or not term.label.endswith(" prefetched"):
        return 0
    count = term.label.rsplit(" ", 2)[-2]
    return int(count) if count.isdigit() else 0


def _plain_pieces(term: Term, shape: _Shape, slot: int) -> list[Piece]:
    """:func:`pieces` on the current stream."""
    n_params = sum(numel for _, numel, _ in shape.params)
    for label, known in shape.named:
        if label == term.label and sum(size for size, _ in known) == term.bytes:
            return [Piece(size, where, term.label) for size, where in known if size]
    if any(w in term.label for w in PER_LAYER):
        pattern = shape.layer_full if RECOMPUTED in term.label else shape.layer_pattern
        split = _proportional(term.bytes, list(pattern) or [1])
        return [Piece(size, slot, term.label) for size in split if size]
    if term.key == "temporaries" and shape.params and LARGEST in term.formula:
        # A per-tensor step: the largest parameter's copies are what the peak holds.
        copies, _ = _copies(term)
        return [Piece(term.bytes // copies, slot, term.label)] * copies
    # torch/optim/adamw.py _multi_tensor_adamw: ``exp_avg_sq_sqrt =
    # torch._foreach_sqrt(device_exp_avg_sqs)`` makes one tensor per trainable
    # parameter, in parameter order, all live until the update ends.
    foreach = term.key == "temporaries" and FOREACH in term.label
    if (term.key in PARAM_SHAPED or foreach) and shape.params and term.bytes >= n_params // 8:
        moments = 2 if term.key == "optimizer_state" and "two moments" in term.label else 1
        # Per parameter, its state tensors one after the other (adamw.py _init_group).
        names = [
            (f"{name} {what}".strip(), numel, where)
            for name, numel, where in shape.params
            for what in (("exp_avg", "exp_avg_sq") if moments == 2 else ("",))
        ]
        if "head" in term.label:
            return [Piece(term.bytes, shape.layers, term.label)]
        sizes = _proportional(term.bytes, [numel for _, numel, _ in names])
        if term.key == "autocast_copies" and shape.tied:
            # autocast casts a weight where a matmul first reads it (autocast_mode.cpp:
            # linear is on the lower-precision list, embedding is not): a tied
            # embedding's copy is made by the output head, just before the logits.
            names = [(n, k, shape.layers if n == shape.tied else w) for n, k, w in names]
        return [
            Piece(size, where, f"{name} ({term.label})")
            for size, (name, _, where) in zip(sizes, names, strict=True)
            if size
        ]
    if (term.key in PARAM_SHAPED or foreach) and shape.params and term.key != "weights":
        # Adapters (LoRA): a few small tensors in every layer.
        split = _proportional(term.bytes, [1] * shape.layers)
        return [Piece(size, i, f"layer {i} {term.label}") for i, size in enumerate(split) if size]
    unit = shape.logit_values
    if unit and term.key in ("logits", "temporaries") and term.bytes >= 2 * unit:
        return _logit_pieces(term, unit, slot)
    depth = _depth(term) if term.key == "activations" else 1
    if depth > 1:
        layers = _proportional(term.bytes, [1] * depth)
        out = []
        for i, layer_bytes in enumerate(layers):
            where = i * shape.layers // depth
            split = _proportional(layer_bytes, list(shape.layer_pattern) or [1])
            out += [Piece(size, where, f"layer {where} {term.label}") for size in split if size]
        if len(out) <= MAX_PIECES_PER_TERM:
            return out
        return [Piece(b, i * shape.layers // depth, term.label) for i, b in enumerate(layers)]
    return [Piece(term.bytes, slot, term.label)]


@dataclass(eq=False, frozen=True)
class Item:
    """A term of a phase, told apart from an equal term of the same phase by its
    occurrence; one object per walk, so it hashes by identity."""

    term: Term
    occurrence: int


Op = tuple[str, Item, int]  # ("alloc" | "free", item, piece index)
KEY_RANK = {
    "weights": 0,
    "optimizer_state": 1,
    "gradients": 2,
    "gathered_weights": 3,
    "autocast_copies": 4,
    "activations": 5,
    "kv_cache": 6,
    "temporaries": 7,
    "logits": 8,
}
IN_FLIGHT = "in flight"  # label of the activation gradients live through backward
RECOMPUTED = "recomputed"
# Labels of tensors one layer (or FSDP block) at a time holds, born again for each:
# checkpointing's recomputed layer, FSDP's gathered block and its unsharded gradients,
# an offloaded layer brought back.
PER_LAYER = ("recomputed", "one block", "current block", "brought back")


class _Walk:
    """Events being written: what is live, and the guard that keeps each span's peak."""

    def __init__(self, shape: _Shape) -> None:
        self.shape = shape
        self.events: list[Event] = []
        self.live: dict[tuple[Item, int], tuple[int, int]] = {}  # piece -> (key, size)
        self.live_bytes = 0
        self.next_key = 0
        self._pieces: dict[Item, list[Piece]] = {}
        self._items: dict[tuple[Term, int], Item] = {}
        # A checkpointed layer's tensors that are not saved: born and freed as the layer
        # runs (in forward under checkpointing, and again when backward recomputes it).
        self.transient: Item | None = None
        self.carried: list[Op] = []  # births a phase could not hold, for the next
        # Transients born only where what is born while they live still fits the peak.
        self.lookahead: set[Item] = set()
        if shape.layer_full:
            term = Term("temporaries", "tensors of a checkpointed layer, not saved", 0, "", "")
            self.transient = Item(term, 0)
            self._pieces[self.transient] = [Piece(n, 0, term.label) for n in shape.layer_full]

    def items(self, phase: Phase) -> list[Item]:
        """The phase's terms as items, equal terms told apart by their occurrence."""
        seen: Counter[Term] = Counter()
        out = []
        for term in phase.terms:
            key = (term, seen[term])
            seen[term] += 1
            if key not in self._items:
                self._items[key] = Item(term, key[1])
            out.append(self._items[key])
        return out

    def pieces(self, item: Item) -> list[Piece]:
        term = item.term
        if item not in self._pieces:
            slot = {"activations": -1, "weights": -1}.get(term.key, self.shape.layers)
            found = pieces(term, self.shape, slot)
            if term.key == "kv_cache" and len(found) == 1:
                # transformers' DynamicCache: one key and one value tensor per layer
                # (cache_utils.py DynamicLayer.keys / .values).
                split = _proportional(term.bytes, [1] * (2 * self.shape.layers))
                found = [
                    Piece(size, i // 2, f"layer {i // 2} {('key', 'value')[i % 2]} cache")
                    for i, size in enumerate(split)
                    if size
                ]
            self._pieces[item] = found
        return self._pieces[item]

    def alloc(self, item: Item, index: int) -> None:
        if (item, index) in self.live:
            return
        piece = self.pieces(item)[index]
        key = self.next_key
        self.next_key += 1
        self.live[(item, index)] = (key, piece.size)
        self.live_bytes += piece.size
        if piece.stream:
            self.events.append(("alloc", key, piece.size, item.term.key, piece.name, piece.stream))
        else:
            self.events.append(("alloc", key, piece.size, item.term.key, piece.name))

    def free(self, item: Item, index: int) -> bool:
        found = self.live.pop((item, index), None)
        if found is None:
            return False
        self.live_bytes -= found[1]
        self.events.append(("free", found[0]))
        return True

    def hand_over(self, target: Sequence[Item]) -> None:
        """The logits a phase ends with are the next phase's logits where the engine
        names them again (the loss's "logits and their fp32 copy" holds the forward's
        logits): a live logits piece of an item the next phase drops becomes the
        same-sized piece of the item it keeps, rather than dying and being born again."""
        keep = set(target)
        named = sorted(
            (x for x in target if x.term.key == "logits"),
            key=lambda x: not x.term.label.startswith("logits"),
        )
        wanted = [(x, j) for x in named for j in range(len(self.pieces(x)))]
        wanted = [w for w in wanted if w not in self.live]
        for item in self.live_items():
            if item in keep or item.term.key != "logits":
                continue
            for i in range(len(self.pieces(item))):
                found = self.live.get((item, i))
                match = next(
                    (w for w in wanted if found and self.pieces(w[0])[w[1]].size == found[1]), None
                )
                if found and match:
                    wanted.remove(match)
                    self.live[match] = self.live.pop((item, i))

    def live_items(self) -> list[Item]:
        """Items with a live piece, in the order they were born."""
        order = sorted(self.live.items(), key=lambda kv: kv[1][0])
        return list(dict.fromkeys(item for (item, _), _ in order))

    def _rise(self, ops: list[Op], start: int, done: list[bool]) -> int:
        """How far the live total rises, at most, from the ops after the transient at
        ``start`` until it is freed (allocations not yet made, less the frees)."""
        _, item, index = ops[start]
        net = top = 0
        for j in range(start + 1, len(ops)):
            kind, other, k = ops[j]
            if kind == "tfree" and other is item and k == index:
                break
            if done[j] or (kind == "free" and (other, k) not in self.live):
                continue
            if kind in ("alloc", "talloc") and (other, k) not in self.live:
                net += self.pieces(other)[k].size
            elif kind in ("free", "tfree"):
                net -= self.pieces(other)[k].size
            top = max(top, net)
        return top

    def span(
        self,
        name: str,
        target: Sequence[Item],
        ops: list[Op],
        bound: int,
        also: Sequence[tuple[Item, int]] = (),
    ) -> None:
        """Mark ``name`` and run ``ops``, keeping the live total within ``bound``.

        The phase's peak is the pieces of ``target`` and those in ``also`` (pieces of
        other items that make up part of a target's term). Items live now that are
        neither in it nor freed by ``ops`` die first. Frees of other pieces are taken
        earlier where an allocation would pass ``bound``, and before the mark where what
        is live already does.
        """
        peak = {(x, i) for x in target for i in range(len(self.pieces(x)))} | set(also)
        keep = set(target) | {x for x, _ in also}
        # The peak's pieces not yet live: once none is missing, the phase has reached
        # its peak and any later free may be taken earlier.
        missing = peak - self.live.keys()
        freed = {(item, index) for kind, item, index in ops if kind == "free"}
        leftovers: list[Op] = [
            ("free", item, index)
            for item in reversed(self.live_items())
            if item not in keep
            for index in range(len(self.pieces(item)))
            if (item, index) not in freed
        ]
        ops = leftovers + self.carried + ops
        self.carried = []
        frees = [i for i, (kind, _, _) in enumerate(ops) if kind == "free"]
        movable = [i for i in frees if (ops[i][1], ops[i][2]) not in peak]
        done = [False] * len(ops)
        cursor = 0
        reached = not missing
        short = sum(self.pieces(x)[j].size for x, j in missing)  # bytes still to be born
        # Whether each free's piece is allocated again later in the span.
        again = [False] * len(ops)
        later: set[tuple[Item, int]] = set()
        for i in range(len(ops) - 1, -1, -1):
            kind, item, index = ops[i]
            if kind == "alloc":
                later.add((item, index))
            else:
                again[i] = (item, index) in later
        deferred: list[tuple[Item, int]] = []
        waiting: list[tuple[Item, int]] = []

        def make_room(need: int) -> None:
            nonlocal cursor, movable
            while self.live_bytes + need > bound and cursor < len(movable):
                i = movable[cursor]
                cursor += 1
                if not done[i]:
                    _, item, index = ops[i]
                    done[i] = self.free(item, index)

        make_room(0)
        self.events.append(("mark", name))
        for i, (kind, item, index) in enumerate(ops):
            if done[i]:
                continue
            done[i] = True
            if kind == "talloc":
                # A transient that would pass the phase's peak is not counted there.
                size = self.pieces(item)[index].size
                rise = self._rise(ops, i, done) if item in self.lookahead else 0
                if self.live_bytes + size + rise <= bound:
                    self.alloc(item, index)
                continue
            if kind == "tfree":
                self.free(item, index)
                continue
            if kind == "alloc":
                size = self.pieces(item)[index].size
                make_room(size)
                outside = (item, index) not in peak
                if not reached and outside and self.live_bytes + size + short > bound:
                    # Born beside the peak it would pass: born just after it.
                    waiting.append((item, index))
                    continue
                if outside and self.live_bytes + size > bound:
                    # Past the phase's peak even with every free taken: the engine
                    # counts it in a later phase, so it is born there.
                    self.carried.append(("alloc", item, index))
                    continue
                self.alloc(item, index)
                if (item, index) in missing:
                    missing.discard((item, index))
                    short -= size
                if not missing and not reached:
                    reached = True
                    movable, cursor = [j for j in frees if not done[j]], 0
                    for item_, index_ in deferred:
                        self.free(item_, index_)
                    for item_, index_ in waiting:
                        size_ = self.pieces(item_)[index_].size
                        make_room(size_)
                        if self.live_bytes + size_ > bound:
                            self.carried.append(("alloc", item_, index_))
                        else:
                            self.alloc(item_, index_)
            elif not reached and (item, index) in peak and not again[i]:
                # A piece of the peak freed before the peak is reached waits for it.
                deferred.append((item, index))
            elif not reached and (item, index) in peak:
                if self.free(item, index):  # a recomputed layer: born again for the next
                    missing.add((item, index))
                    short += self.pieces(item)[index].size
            else:
                self.free(item, index)


def _ordered(walk: _Walk, items: Sequence[Item], live: bool = False) -> list[Op]:
    """Allocations of the pieces of ``items`` not yet live, along the model."""
    ops = [
        (piece.slot, KEY_RANK.get(item.term.key, 7), n, i, item)
        for n, item in enumerate(items)
        for i, piece in enumerate(walk.pieces(item))
        if live or (item, i) not in walk.live
    ]
    ops.sort(key=lambda o: o[:4])
    return [("alloc", item, i) for *_, i, item in ops]


def _loss_ops(walk: _Walk, target: Sequence[Item]) -> list[Op]:
    """The loss's allocations. Under loss parallelism, in the order of torch's
    torch/distributed/tensor/parallel/loss.py ``_log_softmax``: the fp32 copy
    (``x.to(dtype=computation_dtype)``), ``shifted = x - x_max``, ``exp(shifted)`` summed
    and freed, then ``result = shifted - shifted_logsumexp``, the log-softmax autograd
    saves, born last (where exp's block was)."""
    ops = _ordered(walk, target)
    if not any(item.term.source == LOSS_PARALLEL for item in target):
        return ops
    saved = [op for op in ops if op[1].term.label == SAVED_LOG_SOFTMAX]
    return [op for op in ops if op[1].term.label != SAVED_LOG_SOFTMAX] + saved


def _forward_ops(walk: _Walk, target: Sequence[Item], checkpointed: bool) -> list[Op]:
    """Forward: each layer's saved tensors along the model; under full checkpointing,
    each layer's other tensors born and freed as it runs (torch/utils/checkpoint.py
    runs the layer's forward without keeping its saved tensors)."""
    ops = _ordered(walk, target)
    if walk.shape.layer_run and not checkpointed:
        return _with_transients(walk, ops)
    if not (checkpointed and walk.transient):
        return ops
    slots = [walk.pieces(item)[i].slot for _, item, i in ops]
    out: list[Op] = []
    item = walk.transient
    count = len(walk.pieces(item))
    done = -1
    for op, slot in zip(ops, slots, strict=True):
        while done < min(slot, walk.shape.layers) - 1:
            done += 1
            out += [("talloc", item, i) for i in range(count)]
            out += [("tfree", item, i) for i in range(count)]
        out.append(op)
    return out


def _with_transients(walk: _Walk, ops: list[Op]) -> list[Op]:
    """``ops`` with each layer's unsaved tensors born and freed among its saved ones
    (``_Shape.layer_run``), where the layers' saved tensors are one piece each."""
    shape = walk.shape
    each = len(shape.layer_pattern)
    term = Term("temporaries", "tensors a layer makes and does not save", 0, "", "")
    item = Item(term, 0)
    walk._pieces[item] = [Piece(n, 0, term.label) for n in shape.transient_sizes]
    out: list[Op] = []
    held: dict[tuple[int, int], list[Op]] = {}  # (layer, saved tensor) -> its casts
    for op in ops:
        _, owner, index = op
        if owner.term.key == "autocast_copies":
            piece = walk.pieces(owner)[index]
            name = piece.name.removeprefix(f"layer {piece.slot} ")
            after = next((at for prefix, at in shape.casts if name.startswith(prefix)), None)
            if after is not None and 0 <= piece.slot < shape.layers:
                held.setdefault((piece.slot, after), []).append(op)
                continue
        out.append(op)
        found = walk.pieces(owner)
        if owner.term.key != "activations" or len(found) != each * shape.layers:
            continue
        out += held.pop((index // each, index % each), [])
        for k in shape.layer_run[index % each] + (
            shape.layer_run[-1] if index % each == each - 1 else ()
        ):
            out.append(("talloc" if k > 0 else "tfree", item, abs(k) - 1))
    return out + [op for ops_ in held.values() for op in ops_]


def _backward_ops(walk: _Walk, target: Sequence[Item], after: Sequence[Item]) -> list[Op]:
    """Backward: the loss's gradients first, then each layer from the last: recomputed
    where checkpointed, its gradients born, its saved tensors freed.

    ``after`` is what the optimizer step holds: gradients in it that backward does not
    hold at its peak are born here, and what is live and not in it dies here.
    """
    top = walk.shape.layers
    # (slot, order within the slot, piece) -> op; slots run from the head down.
    keyed: list[tuple[int, int, int, int, Op]] = []
    keep_after = set(after)
    born = [*target, *(x for x in after if x.term.key == "gradients" and x not in target)]
    # Autocast's 16-bit weight copies, by parameter: their gradients come first.
    halves = {
        piece.name.split(" (")[0]: piece.size
        for item in list(walk._pieces)
        if item.term.key == "autocast_copies"
        for piece in walk.pieces(item)
    }
    cast_term = Term("temporaries", "16-bit gradient of a weight's autocast copy", 0, "", "")
    cast_grads = Item(cast_term, 0)
    walk._pieces[cast_grads] = []
    walk.lookahead.add(cast_grads)
    for n, item in enumerate(dict.fromkeys(born)):
        for i, piece in enumerate(walk.pieces(item)):
            if (item, i) in walk.live:
                continue
            if any(w in item.term.label for w in PER_LAYER):
                # torch/utils/checkpoint.py: each checkpointed layer runs its forward
                # again just before its backward, and those tensors die with it.
                # The first layer's recomputed tensors are counted live with every
                # gradient at the end of backward (the engine's end-of-backward peak).
                for layer in range(top):
                    keyed.append((layer, 0, n, -i, ("alloc", item, i)))
                    keyed.append((layer if layer else -2, 4, n, -i, ("free", item, i)))
                continue
            op: Op = ("alloc", item, i)
            if item.term.key == "gradients":
                # A weight the head shares with the embedding gets its gradient from
                # the head's matmul, the first node backward runs; autograd's input
                # buffer holds it and adds the embedding's (engine.cpp InputBuffer::add).
                tied = walk.shape.tied and piece.name.startswith(f"{walk.shape.tied} ")
                at = (top, 1, -1, 0) if tied else (piece.slot, 1, n, -4 * i)
                keyed.append((*at, op))
                half = halves.get(piece.name.split(" (")[0], 0)
                if half:
                    # The matmul's gradient of the 16-bit copy, cast to the weight's
                    # type by the cast's backward (ToCopyBackward0), then freed.
                    walk._pieces[cast_grads].append(Piece(half, piece.slot, cast_term.label))
                    j = len(walk._pieces[cast_grads]) - 1
                    keyed.append((at[0], at[1], at[2], at[3] - 1, ("talloc", cast_grads, j)))
                    keyed.append((at[0], at[1], at[2], at[3] + 1, ("tfree", cast_grads, j)))
            else:
                keyed.append((top + 1, 2, n, i, ("alloc", item, i)))
    if walk.transient and not any(RECOMPUTED in x.term.label for x in target):
        item = walk.transient
        for layer in range(top):
            for i in range(len(walk.pieces(item))):
                keyed.append((layer, 0, -1, -i, ("talloc", item, i)))
                keyed.append((layer, 4, -1, -i, ("tfree", item, i)))
    dying = [x for x in dict.fromkeys([*walk.live_items(), *target]) if x not in keep_after]
    # Logits upcast for the loss (transformers loss_utils.py ``logits.float()``): the
    # upcast's backward (ToCopyBackward0) makes the 16-bit logits' gradient from the
    # fp32 one, which then dies; the head's matmul reads the 16-bit one.
    half = 2 * walk.shape.logit_values
    upcast = half and any(
        p.size == half
        for x in dying
        if x.term.key == "logits" and x not in target
        for p in walk.pieces(x)
    )
    if upcast:
        term = Term("temporaries", "gradient of the 16-bit logits", 0, "", "")
        cast = Item(term, 0)
        walk._pieces[cast] = [Piece(half, top, term.label)]
        keyed.append((top + 1, 4, 0, 0, ("talloc", cast, 0)))
        keyed.append((top, 3, len(dying), 0, ("tfree", cast, 0)))
    for n, item in enumerate(dying):
        if any(w in item.term.label for w in PER_LAYER):
            continue
        count = len(walk.pieces(item))
        for i, piece in enumerate(walk.pieces(item)):
            slot, order = (-2 if IN_FLIGHT in item.term.label else piece.slot), 3
            if item.term.key == "logits" and item not in target:
                # Logits no node saved (the 16-bit logits once upcast for the loss):
                # they died when the loss returned, before backward begins.
                slot = top + 2
            elif item.term.key == "temporaries" and i == count - 1 and upcast:
                slot, order = top + 1, 5  # the fp32 logits' gradient, once cast
            elif item.term.key == "logits" or (item.term.key == "temporaries" and i < count - 1):
                # The loss's nodes run before the head's: the log-softmax they saved and
                # the gradients they pass on die there, all but the logits' gradient,
                # which the head's matmul reads (engine.cpp releases a node's saved
                # variables and its inputs once it has run).
                slot = top + 1
            keyed.append((slot, order, n, -i, ("free", item, i)))
    keyed.sort(key=lambda k: (-k[0], k[1], k[2], k[3]))
    return [op for *_, op in keyed]


# Labels of backward terms that are a part of other terms' tensors: the saved tensors
# not yet released and the gradients made so far at a CNN's backward peak
# (nnmem.models.cnn.build, from the autograd simulation of nnmem.models.cnn.backward).
PART_OF = {"still held": ("activations", "autocast_copies"), "made so far": ("gradients",)}


def _aliases(walk: _Walk, target: Sequence[Item], after: Sequence[Item]) -> list[tuple[Item, int]]:
    """Pieces of other items that stand for part of a backward term (PART_OF).

    The saved tensors still held are the ones backward frees last (the first layers'),
    the gradients made so far the ones it makes first (the last layers'); the term keeps
    as its own piece only what they do not cover.
    """
    also: list[tuple[Item, int]] = []
    for item in target:
        term = item.term
        keys = next((k for w, k in PART_OF.items() if w in term.label), None)
        if keys is None or any((item, i) in walk.live for i in range(len(walk.pieces(item)))):
            continue
        if "gradients" in keys:
            wholes = [x for x in after if x.term.key in keys and x not in target]
            order = [
                (-walk.pieces(x)[i].slot, n, -i, x, i)
                for n, x in enumerate(wholes)
                for i in range(len(walk.pieces(x)))
            ]
        else:
            wholes = [x for x in walk.live_items() if x.term.key in keys and x not in target]
            order = [
                (walk.pieces(x)[i].slot, n, i, x, i)
                for n, x in enumerate(wholes)
                for i in range(len(walk.pieces(x)))
                if (x, i) in walk.live
            ]
        order.sort(key=lambda o: o[:3])
        room = term.bytes
        for *_, x, i in order:
            size = walk.pieces(x)[i].size
            if size > room:
                break
            also.append((x, i))
            room -= size
        walk._pieces[item] = [Piece(room, walk.shape.layers, term.label)] if room else []
    return also


def _optimizer_ops(walk: _Walk, target: Sequence[Item], next_step: Sequence[Item]) -> list[Op]:
    """The step's temporaries born and freed, then ``zero_grad`` freeing the gradients.

    A first step makes its state before any temporary (torch/optim/adamw.py ``step``
    calls ``_init_group`` for every parameter, then the update), except SGD's momentum,
    a clone of the gradients the update has already decayed (torch/optim/sgd.py
    ``_multi_tensor_sgd``: ``device_grads = torch._foreach_add(device_grads,
    device_params, alpha=weight_decay)``, then ``torch.clone(device_grads[i])``).
    """
    from nnmem.optimizers import TORCH_SGD

    keep = set(next_step)
    temporaries = [x for x in target if x.term.key not in STATE_KEYS and x.term.key != "gradients"]
    cloned = [x for x in target if x.term.source.startswith(TORCH_SGD)]  # ZeRO appends its own
    foreach = [x for x in temporaries if not _per_tensor(walk, x)]
    if not foreach:
        cloned = []
    ops = _ordered(walk, [x for x in target if x not in temporaries and x not in cloned])
    for item in temporaries:
        if item not in foreach:
            ops += _per_tensor_ops(walk, item)
            continue
        born = _ordered(walk, [item])
        ops += born + _ordered(walk, cloned)
        cloned = []
        ops += [("free", x, i) for _, x, i in reversed(born)]
    gradients = [x for x in target if x.term.key == "gradients" and x not in keep]
    ops += [("free", x, i) for x in gradients for i in range(len(walk.pieces(x)))]
    return ops


def _per_tensor(walk: _Walk, item: Item) -> bool:
    """Whether ``item`` is a per-tensor step's copies of the model's largest parameter
    (not of an adapter's: LoRA trains tensors the model's list does not hold)."""
    if LARGEST not in item.term.formula or not walk.shape.params:
        return False
    copies, width = _copies(item.term)
    largest = max(numel for _, numel, _ in walk.shape.params)
    return copies * largest * width == item.term.bytes


def _per_tensor_ops(walk: _Walk, item: Item) -> list[Op]:
    """A per-tensor step's temporaries, parameter by parameter: each parameter's copies
    born and freed before the next (torch/optim/adamw.py ``_single_tensor_adamw`` and
    transformers' ``Adafactor.step`` loop over the parameters). The largest parameter's
    copies are ``item``'s pieces; the others are transients."""
    copies, width = _copies(item.term)
    params = walk.shape.params
    largest = max(range(len(params)), key=lambda k: params[k][1])
    term = Term("temporaries", item.term.label, 0, "", "")
    others = Item(term, 0)
    walk._pieces[others] = [
        Piece(numel * width, where, f"{name} ({item.term.label})")
        for name, numel, where in params
        for _ in range(copies)
    ]
    ops: list[Op] = []
    for k in range(len(params)):
        if k == largest:
            ops += [("alloc", item, i) for i in range(len(walk.pieces(item)))]
            ops += [("free", item, i) for i in range(len(walk.pieces(item)))]
            continue
        pieces = range(k * copies, (k + 1) * copies)
        ops += [("talloc", others, i) for i in pieces if walk.pieces(others)[i].size]
        ops += [("tfree", others, i) for i in pieces]
    return ops


def _lazy_state(scenario: Scenario) -> bool:
    """Whether the optimizer makes its state in its first step, as every torch.optim
    optimizer does (torch/optim/adamw.py ``_init_group``: ``state["exp_avg"] =
    torch.zeros_like(p)`` when the state is empty); DeepSpeed and FSDP2 stacks build
    theirs at start-up."""
    from nnmem.scenario import Sharding, Stack

    single = scenario.stack in (Stack.PLAIN, Stack.HF_TRAINER, Stack.TRL_SFT, Stack.DDP)
    return single and scenario.sharding is Sharding.NONE


# FSDP (v1) wrapping a model loaded on the CPU, with device_id and sync_module_states
# (torch 2.2, torch/distributed/fsdp/_init_utils.py ``_init_param_handle_from_module``):
# auto-wrapping builds the units children first (wrap.py ``_recursive_wrap``), so each
# decoder layer's LoRA units, then the layer, then the root (embeddings, final norm,
# head). For each unit, on the GPU:
# 1. ``_move_module_to_device``: every parameter of the unit, whole (``param.data =
#    param.to(device)``, ``_move_states_to_device``);
# 2. ``_sync_module_params_and_buffers`` -> torch/distributed/utils.py
#    ``_sync_params_and_buffers`` -> ``dist._broadcast_coalesced`` with
#    PARAM_BROADCAST_BUCKET_SIZE (250 MiB): torch/csrc/distributed/c10d/comm.cpp
#    ``broadcast_coalesced`` cuts the tensors into buckets (a bucket closes once it holds
#    the limit: reducer.cpp ``compute_bucket_assignment_by_size``), flattens each into a
#    new tensor (BroadcastWork: ``flatten_dense_tensors``) and keeps at most 2 in flight;
# 3. ``_init_param_handle_from_params`` -> FlatParamHandle: ``flatten_tensors`` is a
#    ``torch.cat`` of the unit's parameters, the whole flat_param;
# 4. ``FlatParamHandle.shard``: ``_get_shard`` clones the rank's chunk (rank 0's needs no
#    padding), ``flat_param.set_(sharded_flat_param)`` and the whole flat's storage is
#    resized to 0;
# 5. the unit's original parameters, still held by ``managed_params``, die when
#    ``_init_param_handle_from_module`` returns; under CPUOffload(offload_params=True)
#    ``handle.flat_param_to(cpu)`` has already moved the shard to the CPU.
# fsdp_qlora's train.py (anchors-2026 §4, E13) loads rank 0's model on the CPU and
# empties the cache before wrapping, so the wrap starts from an empty allocator.
BROADCAST_BUCKET = 250 * 2**20  # _init_utils.py PARAM_BROADCAST_BUCKET_SIZE
BROADCASTS_IN_FLIGHT = 2  # comm.cpp broadcast_coalesced max_in_flight
WRAP = "wrap"  # the mark of the wrap's span, before the load's


def wraps_on_gpu(scenario: Scenario) -> bool:
    """Whether FSDP (v1) wraps the model on the GPU with sync_module_states: a ZeRO-3
    sharded step nnmem.stacks does not model, over more than one GPU."""
    if not scenario.sync_module_states or scenario.data_parallel < 2:
        return False
    return "sync_module_states" not in scenario.inactive_fields()


def _stored_widths(scenario: Scenario) -> tuple[Fraction, Fraction]:
    """Bytes per value of a layer's parameters, and of the rest (embeddings, final norm,
    head): a quantized model keeps the rest in its 16-bit type (bitsandbytes replaces
    the layers' linears, not lm_head)."""
    from nnmem.formats import bits, is_float
    from nnmem.scenario import Precision

    whole = Fraction(4 if scenario.precision is Precision.FP32 or scenario.precision.is_amp else 2)
    fmt = scenario.precision.weight_format
    if is_float(fmt):
        return whole, whole
    return bits(fmt, scenario.group_size) / 8, Fraction(2)


def _wrap_units(
    scenario: Scenario, shape: _Shape, total: int | None
) -> list[tuple[int, list[int]]]:
    """The base model's FSDP units in wrap order, each its slot and its parameters'
    whole sizes: the layers, then the root. With ``total`` (the shards' bytes on one
    rank, times the ranks) the sizes are that split in proportion to each tensor's
    stored bytes; without, the stored bytes themselves."""
    layer_width, rest_width = _stored_widths(scenario)
    weights = [
        int(numel * (layer_width if 0 <= slot < shape.layers else rest_width) * 4096)
        for _, numel, slot in shape.params
    ]
    if total is None:
        sizes = [-(-w // 4096) for w in weights]
    else:
        sizes = _proportional(total, weights) if any(weights) else []
    units: dict[int, list[int]] = {}
    for (_, _, slot), size in zip(shape.params, sizes, strict=True):
        unit = slot if 0 <= slot < shape.layers else -1
        units.setdefault(unit, []).append(size)
    return sorted(units.items(), key=lambda kv: kv[0] < 0)


def _buckets(sizes: Sequence[int], limit: int) -> list[int]:
    """``broadcast_coalesced``'s flat buckets: tensors in order, a bucket closed once it
    holds ``limit`` bytes (reducer.cpp ``compute_bucket_assignment_by_size``).

    >>> _buckets([100, 200, 50, 300], 250)
    [300, 350]
    """
    out: list[int] = []
    held = 0
    for size in sizes:
        held += size
        if held >= limit:
            out.append(held)
            held = 0
    return [*out, held] if held else out


def _wrap(walk: _Walk, scenario: Scenario, states: Sequence[Item]) -> None:
    """The wrap's events (see BROADCAST_BUCKET above), before the load span: each unit's
    shard is the base weights' piece for that unit where the shards stay on the GPU, a
    tensor moved to the CPU at once under CPU offload (where the adapters' own units,
    a few MB each, are not replayed: the GPU holds no adapter term to take their
    sizes from)."""
    shape = walk.shape
    n = scenario.data_parallel
    held = [x for x in states if x.term.key == "weights" and "gathered" not in x.term.label]
    base = next((x for x in held if x.term.label != "trainable weights"), None)
    adapters = next((x for x in held if x.term.label == "trainable weights"), None)
    units = _wrap_units(scenario, shape, base.term.bytes * n if base else None)
    if base is not None:
        # FSDP's shard is one flat tensor per unit (FlatParamHandle.flat_param).
        shards = _proportional(base.term.bytes, [sum(sizes) for _, sizes in units])
        walk._pieces[base] = [
            Piece(size, slot, f"{'root' if slot < 0 else f'layer {slot}'} flat_param shard")
            for (slot, _), size in zip(units, shards, strict=True)
        ]
    # A layer's LoRA modules are units of their own (fsdp_qlora's lambda policy wraps
    # every module with a trainable weight), wrapped before their layer: here one unit
    # per layer, its shard the layer's share of the adapters.
    lora: dict[int, int] = {}
    if adapters is not None:
        split = _proportional(adapters.term.bytes, [1] * shape.layers)
        walk._pieces[adapters] = [
            Piece(size, i, f"layer {i} adapters flat_param shard") for i, size in enumerate(split)
        ]
        lora = {i: i for i in range(shape.layers)}
    walk.events.append(("mark", WRAP))

    def raw(size: int, label: str) -> int:
        key = walk.next_key
        walk.next_key += 1
        walk.events.append(("alloc", key, size, "weights", label))
        return key

    def unit(slot: int, sizes: Sequence[int], item: Item | None, index: int, name: str) -> None:
        moved = [raw(size, f"{name} moved to the GPU") for size in sizes]
        flights: list[int] = []
        for bucket in _buckets(sizes, BROADCAST_BUCKET):
            if len(flights) >= BROADCASTS_IN_FLIGHT:
                walk.events.append(("free", flights.pop(0)))
            flights.append(raw(bucket, f"{name} broadcast bucket"))
        walk.events += [("free", key) for key in flights]
        flat = raw(sum(sizes), f"{name} flat_param")
        if item is not None:
            walk.alloc(item, index)
            walk.events.append(("free", flat))
        else:
            shard = raw(-(-sum(sizes) // n), f"{name} shard")
            walk.events += [("free", flat), ("free", shard)]  # flat_param_to(cpu)
        walk.events += [("free", key) for key in moved]

    for i, (slot, sizes) in enumerate(units):
        if adapters is not None and slot in lora:
            index = lora[slot]
            whole = walk.pieces(adapters)[index].size * n
            unit(slot, [whole], adapters, index, f"layer {slot} adapters")
        name = "root" if slot < 0 else f"layer {slot}"
        unit(slot, sizes, base, i, name)


def _walk(scenario: Scenario, phases: Sequence[Phase], steps: int) -> list[Event]:
    """The load span, then ``steps`` steps of ``phases``.

    One step is the steady state: everything the phases hold exists from the load on.
    With more, the first step is the first one PyTorch runs: where the optimizer makes
    its state in its first step, the state is born there and not before.
    """
    from nnmem.scenario import Checkpointing

    walk = _Walk(_shape(scenario))
    full = scenario.checkpointing is Checkpointing.FULL
    items = [walk.items(p) for p in phases]
    lazy = steps > 1 and _lazy_state(scenario) and phases[-1].name == "optimizer_step"
    first = items[0]
    kept = ("optimizer_state",) if lazy else ()
    states = [x for x in first if x.term.key in STATE_KEYS or x.term.key == "gradients"]
    states = [x for x in states if x.term.key not in kept]
    if wraps_on_gpu(scenario):
        _wrap(walk, scenario, states)
    walk.span("load", states, _ordered(walk, states), sum(x.term.bytes for x in states))
    for step in range(steps):
        for k, phase in enumerate(phases):
            target = items[k]
            after = items[k + 1] if k + 1 < len(phases) else items[0]
            bound = phase.bytes
            if step == 0 and k < len(phases) - 1 and kept:
                unborn = [x for x in target if x.term.key in kept]
                target = [x for x in target if x.term.key not in kept]
                bound -= sum(x.term.bytes for x in unborn)
            also: list[tuple[Item, int]] = []
            walk.hand_over(target)
            if phase.name == "backward":
                also = _aliases(walk, target, after)
                ops = _backward_ops(walk, target, after)
            elif phase.name == "optimizer_step":
                ops = _optimizer_ops(walk, target, items[0])
            elif phase.name == "forward":
                ops = _forward_ops(walk, target, full)
            elif phase.name == "loss":
                ops = _loss_ops(walk, target)
            else:
                ops = _ordered(walk, target)
            walk.span(phase.name, target, ops, bound, also)
    return walk.events


def step_events(scenario: Scenario, gpu_id: str | None = None) -> list[Event]:
    """One step of ``scenario`` as events, in the order PyTorch runs them.

    >>> from nnmem.scenario import GenericModel
    >>> events = step_events(Scenario(GenericModel(1_000_000, 64, 2), batch_size=1))
    >>> [e[1] for e in events if e[0] == "mark"]
    ['load', 'forward', 'loss', 'backward', 'optimizer_step']
    """
    phases = _phases(scenario)
    return _walk(scenario, phases, 1) if phases else []


def _phases(scenario: Scenario) -> list[Phase]:
    """The step's phases as the engine builds them; none for a serving runtime's static
    plan."""
    if scenario.mode is Mode.INFERENCE and scenario.runtime.engine is not Runtime.TRANSFORMERS:
        return []
    return builder(scenario)(scenario).phases


def span_peaks(events: Sequence[Event]) -> dict[str, int]:
    """The largest live total (bytes requested, before rounding) in each mark's span,
    counting what is live at the mark."""
    sizes: dict[object, int] = {}
    live = 0
    peaks: dict[str, int] = {}
    mark = ""
    for event in events:
        if event[0] == "alloc":
            size = event[2]
            assert isinstance(size, int)
            sizes[event[1]] = size
            live += size
        elif event[0] == "free":
            live -= sizes.pop(event[1])
        else:
            mark = str(event[1])
        peaks[mark] = max(peaks.get(mark, 0), live)
    return peaks


def with_workspaces(events: Sequence[Event], workspace: int) -> list[Event]:
    """``events`` with the cuBLAS workspaces the caching allocator hands out: one for the
    forward's (or prefill's) thread and one for autograd's backward thread
    (getCurrentCUDABlasHandle is per thread and stream; getNewWorkspace keeps the block
    for the handle's life), each the first time its span runs a matmul.

    The backward's first matmul is the head's: its weight gradient is born (at::mm
    allocates its result), then cuBLAS takes the workspace, while the loss's gradients
    are still live; a workspace born at the span's start would take another block.
    """
    out: list[Event] = []
    threads = {"forward": "forward", "prefill": "forward", "backward": "backward"}
    seen: set[str] = set()
    waiting = ""  # the backward thread's workspace, born after the first gradient

    def add(thread: str) -> None:
        seen.add(thread)
        key = -1 - len(seen)
        out.append(("alloc", key, workspace, "cublas_workspace", f"cuBLAS workspace ({thread})"))

    for event in events:
        if waiting and event[0] == "mark":
            add(waiting)  # a backward with no gradient of its own (frozen weights)
            waiting = ""
        out.append(event)
        if waiting and event[0] == "alloc" and event[3] == "gradients":
            add(waiting)
            waiting = ""
        thread = threads.get(str(event[1])) if event[0] == "mark" else None
        if thread == "backward" and thread not in seen:
            waiting = thread
        elif thread and thread not in seen:
            add(thread)
    if waiting:
        add(waiting)
    return out


def replayed_events(scenario: Scenario, gpu_id: str | None = None) -> list[Event]:
    """What :func:`replay_step` replays: the load, then two training steps (the second
    finds the first one's cached segments, as every later step does) or one inference
    pass, with the cuBLAS workspaces; none for a serving runtime's static plan.

    >>> from nnmem.scenario import GenericModel
    >>> events = replayed_events(Scenario(GenericModel(1_000_000, 64, 2), batch_size=1))
    >>> [e[1] for e in events if e[0] == "mark"][:3]
    ['load', 'forward', 'loss']
    >>> [e[3] for e in events if e[0] == "alloc"][:3]
    ['weights', 'cublas_workspace', 'activations']
    """
    phases = _phases(scenario)
    if not phases:
        return []
    steps = 2 if scenario.mode is Mode.TRAINING else 1
    events = _walk(scenario, phases, steps)
    return with_workspaces(events, cublas_workspace_bytes(gpu_id))


def replay_step(
    scenario: Scenario,
    gpu_id: str | None = None,
    config: AllocatorConfig | None = None,
    capacity: int | None = None,
) -> ReplayResult:
    """The step replayed through the caching-allocator model (:func:`replayed_events`),
    on a device whose allocator may reserve at most ``capacity`` bytes (unbounded when
    None, or when the step does not fit there: :func:`nnmem.allocator.replay_needed`)."""
    events = replayed_events(scenario, gpu_id)
    return replay_needed(events, config, capacity, timeline=True) if events else ReplayResult()
