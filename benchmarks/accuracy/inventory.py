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

import argparse
import contextlib
import functools
import json
import re
import sys
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sympy as sp
import torch
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._pytree import tree_flatten
from transformers.modeling_layers import GradientCheckpointingLayer

from .cases import ADAMW, Case, Model
from .models import (
    BERT_BASE,
    GPT2_SMALL,
    LLAMA_32_1B,
    MISTRAL_7B,
    MIXTRAL_SMALL,
    T5_BASE,
    VIT_B16,
)
from .runner import (
    _logits_hook,
    _training_step,
    case_inputs,
    make_model,
    make_optimizer,
    run_case,
    tensor_mode,
)
from .tracker import LiveBytesTracker, SavedTensorRecorder, StorageRecord, rounded, storage_key

HERE = Path(__file__).resolve().parent
MEASURED = HERE / "measured.json"
REPORT = HERE / "inventory.md"

# Symbols -----------------------------------------------------------------------------

# Printing order of symbols in a monomial.
SYMBOL_NAMES = (
    "L",  # layers (T5: encoder layers)
    "L_dec",  # T5 decoder layers
    "b",  # batch
    "a",  # attention heads
    "a_kv",  # key/value heads
    "E",  # experts
    "k",  # experts per token
    "s",  # tokens (T5: encoder tokens; ViT: patches + 1; inference: prompt length)
    "t",  # T5 decoder tokens
    "W",  # sliding window
    "h",  # hidden size
    "d",  # head dim
    "f",  # MLP intermediate size
    "r",  # LoRA rank
    "V",  # vocabulary
    "c",  # classes (sequence / image classification)
    "P",  # learned position table (GPT-2, BERT)
    "T",  # token-type table (BERT)
    "B",  # relative-position buckets (T5)
    "C",  # image channels
    "I",  # image side
    "p",  # patch side
    "q",  # patches per side, I/p (ViT: s = q² + 1)
)
SYM = {name: sp.Symbol(name, positive=True, integer=True) for name in SYMBOL_NAMES}

# Probe sizes. Every symbol has its own number and no two listed dimension expressions
# share a value (checked per setting). Llama-family and T5 probes use a head dim with
# a·d != h (88 vs 96), so that query and attention-output widths (a·d) are told apart
# from the hidden size; GPT-2, BERT and ViT tie a·d = h by construction.
PROBE = {
    "L": 4,
    "L_dec": 4,
    "b": 5,
    "s": 37,
    "t": 29,
    "h": 96,
    "a": 4,
    "a_gqa": 8,  # heads of the Llama-family probes (a/a_kv = 4)
    "a_kv": 2,
    "d": 24,
    "d_free": 22,  # head dim where the model allows a·d != h
    "f": 160,
    "V": 211,
    "E": 7,
    "k": 3,
    "r": 13,
    "c": 17,
    "W": 19,
    "P": 64,
    "T": 2,
    "B": 32,
    "I": 48,
    "p": 8,
}

# Dimension expressions, tried in this order: the first whose value matches names a
# dimension. Only expressions whose symbols the setting defines take part.
DIM_LABELS = (
    "b", "s", "t", "h", "a", "a_kv", "a/a_kv", "d", "f", "V", "E", "k", "r", "c", "W", "P", "T",
    "B", "C", "I", "p", "q",
    "s-1", "s+1", "t-1", "W-1", "d/2", "3h", "2f", "a·d", "a_kv·d",
    "b·s", "b·(s-1)", "b·t", "b·a", "b·a_kv", "b·k", "b·s·k", "b·s·E",
)  # fmt: skip

# Families whose hidden size is heads × head dim by construction.
H_IS_AD = {"gpt2", "bert", "vit"}

PHASES_TRAINING = ("forward", "loss", "backward", "optimizer_step")
PHASES_INFERENCE = ("prefill", "decode")


@functools.cache
def expr_of(label: str) -> sp.Expr:
    """Parse a dimension label such as ``b·(s-1)`` or ``3h``."""
    text = re.sub(r"(\d)([A-Za-z])", r"\1*\2", label.replace("·", "*"))
    return sp.sympify(text, locals=SYM)


def symbol_values(desc: dict[str, Any]) -> dict[str, int]:
    """Symbol values of a case description (probe or measured.json)."""
    cfg = desc["model"]["config"]
    family = desc["model"]["family"]
    values: dict[str, int] = {"b": desc["batch_size"]}
    inference = desc.get("inference")
    if inference:
        values["s"] = inference["context_len"]
    elif desc.get("seq_len"):
        values["s"] = desc["seq_len"]
    if family == "gpt2":
        h, a = cfg["n_embd"], cfg["n_head"]
        values |= {"h": h, "a": a, "d": h // a, "f": cfg.get("n_inner") or 4 * h}
        values |= {"V": cfg["vocab_size"], "L": cfg["n_layer"], "P": cfg["n_positions"]}
    elif family in ("bert", "vit"):
        h, a = cfg["hidden_size"], cfg["num_attention_heads"]
        values |= {"h": h, "a": a, "d": h // a, "f": cfg["intermediate_size"]}
        values["L"] = cfg["num_hidden_layers"]
        if family == "bert":
            values |= {"V": cfg["vocab_size"], "P": cfg["max_position_embeddings"]}
            values["T"] = cfg["type_vocab_size"]
            if desc["model"]["hf_class"] == "BertForSequenceClassification":
                values["c"] = cfg.get("num_labels", 2)
        else:
            values |= {"c": cfg["num_labels"], "C": cfg["num_channels"]}
            values |= {"I": desc["image_size"], "p": cfg["patch_size"]}
            values["q"] = values["I"] // values["p"]
            values["s"] = values["q"] ** 2 + 1
    elif family == "t5":
        values |= {"h": cfg["d_model"], "a": cfg["num_heads"], "d": cfg["d_kv"]}
        values |= {"f": cfg["d_ff"], "V": cfg["vocab_size"], "L": cfg["num_layers"]}
        values["L_dec"] = cfg.get("num_decoder_layers") or cfg["num_layers"]
        values |= {"B": cfg["relative_attention_num_buckets"], "t": desc["decoder_seq_len"]}
    else:  # llama, mistral, mixtral
        h, a = cfg["hidden_size"], cfg["num_attention_heads"]
        values |= {"h": h, "a": a, "d": cfg.get("head_dim") or h // a}
        values |= {"a_kv": cfg.get("num_key_value_heads") or a, "f": cfg["intermediate_size"]}
        values |= {"V": cfg["vocab_size"], "L": cfg["num_hidden_layers"]}
        if cfg.get("sliding_window"):
            values["W"] = cfg["sliding_window"]
        if family == "mixtral":
            values |= {"E": cfg["num_local_experts"], "k": cfg["num_experts_per_tok"]}
    if desc.get("lora"):
        values["r"] = desc["lora"]["r"]
    return values


def label_value(label: str, values: dict[str, int]) -> int:
    """The integer value of a dimension label at the given symbol values."""
    if label.endswith("?"):
        return int(label[:-1])
    return _label_value(label, tuple(sorted(values.items())))


@functools.cache
def _label_value(label: str, items: tuple[tuple[str, int], ...]) -> int:
    values = dict(items)
    expr = expr_of(label)
    return int(expr.subs({SYM[str(x)]: values[str(x)] for x in expr.free_symbols}))


@functools.cache
def _count_value(count: sp.Expr, items: tuple[tuple[str, int], ...]) -> int:
    return int(count.subs({SYM[n]: v for n, v in items if n in SYM}))


class DimNamer:
    """Name integer dimensions with the listed expressions, for one setting."""

    def __init__(
        self, values: dict[str, int], skip: Iterable[str] = (), strict: bool = True
    ) -> None:
        self.values = values
        self.table: dict[int, str] = {}
        clashes = []
        for label in DIM_LABELS:
            if label in skip:
                continue
            if not {str(x) for x in expr_of(label).free_symbols} <= set(values):
                continue
            value = label_value(label, values)
            if value in self.table:
                clashes.append(f"{label} = {self.table[value]} = {value}")
                continue
            self.table[value] = label
        if clashes and strict:
            raise ValueError(f"probe sizes make dimensions ambiguous: {clashes}")
        self.unknown: set[int] = set()

    def name(self, dim: int) -> str:
        if dim in (0, 1):
            return str(dim)
        if dim in self.table:
            return self.table[dim]
        self.unknown.add(dim)
        return f"{dim}?"

    def shape(self, shape: Iterable[int]) -> tuple[str, ...]:
        return tuple(self.name(int(dim)) for dim in shape)


# Formatting --------------------------------------------------------------------------

SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _monomial_key(mono: sp.Expr) -> tuple[int, list[tuple[int, int]]]:
    powers = mono.as_powers_dict() if mono != 1 else {}
    degree = sum(int(e) for e in powers.values())
    ranks = sorted((SYMBOL_NAMES.index(str(s)), -int(e)) for s, e in powers.items())
    return (-degree, ranks)


def fmt_monomial(mono: sp.Expr) -> str:
    if mono == 1:
        return ""
    powers = mono.as_powers_dict()
    parts = []
    for name in SYMBOL_NAMES:
        exp = int(powers.get(SYM[name], 0))
        if exp:
            parts.append(name + (str(exp).translate(SUPERSCRIPT) if exp != 1 else ""))
    return "·".join(parts)


def fmt_expr(expr: sp.Expr) -> str:
    """An expanded polynomial, highest degree first: ``12·b·s·h + 4·b·a·s² + 8``."""
    expr = sp.expand(expr)
    if expr == 0:
        return "0"
    terms = sorted(expr.as_coefficients_dict().items(), key=lambda t: _monomial_key(t[0]))
    out = []
    for mono, coeff in terms:
        text = fmt_monomial(mono)
        if not text:
            out.append(str(coeff))
        elif coeff == 1:
            out.append(text)
        elif coeff == -1:
            out.append("-" + text)
        else:
            out.append(f"{coeff}·{text}")
    return " + ".join(out).replace("+ -", "- ")


def fmt_dims(labels: tuple[str, ...]) -> str:
    return "(" + ", ".join(labels) + ")"


def fmt_bytes(itemsize: int, labels: tuple[str, ...]) -> str:
    parts = [f"({lab})" if ("+" in lab or "-" in lab) and "(" not in lab else lab for lab in labels]
    return "·".join([str(itemsize)] + [lab for lab in parts if lab != "1"])


def fmt_count(count: sp.Expr) -> str:
    text = fmt_expr(count)
    return text if count.is_number or count.is_Symbol else f"({text})"


# Recording ---------------------------------------------------------------------------


@dataclass
class Rec(StorageRecord):
    """A live storage with where and when it was made."""

    serial: int = 0
    dtype: str = ""
    itemsize: int = 1
    shape: tuple[int, ...] = ()
    op: str = ""
    call: str = ""
    path: str = ""
    node: str = ""
    phase: str = ""
    step: int = 0
    name: str = ""  # parameter, buffer or input name; parameter of a foreach result


@dataclass
class Snapshot:
    """The live set at one moment."""

    total: int
    records: list[Rec]
    moment: str
    where: str  # module path of the moment


def call_name(func: Callable[..., Any]) -> str:
    """A short name for a torch-level function (``F.linear``, ``Tensor.float``...)."""
    name = resolve_name(func) or getattr(func, "__qualname__", None) or repr(func)
    for long, short in (
        ("torch.nn.functional.", "F."),
        ("torch.Tensor.", "Tensor."),
        ("torch._C.TensorBase.", "Tensor."),
        ("_VariableFunctionsClass.", "torch."),
        ("torch._C._VariableFunctions.", "torch."),
    ):
        if name.startswith(long):
            return short + name[len(long) :]
    return name


def _rank(shape: Iterable[int]) -> int:
    """Dimensions other than 1 (an unsqueezed view does not rename a storage)."""
    return sum(1 for dim in shape if dim != 1)


def _node_meta(node: Any) -> tuple[str, str] | None:
    try:
        return node.metadata.get("inventory")
    except (AttributeError, RuntimeError):
        return None


def _saved_of(node: Any) -> list[torch.Tensor]:
    """The tensors an autograd node holds for its backward."""
    names = [n for n in dir(node) if n.startswith("_saved_")]
    if hasattr(node, "saved_tensors"):
        names.append("saved_tensors")
    out = []
    for name in names:
        try:
            value = getattr(node, name)
        except (RuntimeError, AttributeError):
            continue
        for leaf in value if isinstance(value, list | tuple) else [value]:
            if isinstance(leaf, torch.Tensor):
                out.append(leaf)
    return out


class InventoryTracker(LiveBytesTracker):
    """The harness's live-bytes tracker, with a record per storage and live-set snapshots."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.layers = layers
        self.ctx: CallContext | None = None
        self.next_serial = 0
        self.step = 0
        self.op = ""
        self.hints: list[str] = []
        self.snapshots: dict[str, Snapshot] = {}  # phase -> live set at its peak
        self.candidates: dict[tuple[str, str], Snapshot] = {}  # (phase, moment) -> live set
        self.rising = False
        self.last = ("", "")  # (moment, module path) of the last new storage
        self.occurrences: Counter = Counter()  # how often a moment recurred in one layer
        self.params: list[tuple[str, torch.nn.Parameter]] = []
        self.optimizer: Any = None
        self.grads: dict[int, str] = {}  # serial -> parameter name
        self.opt_state: dict[int, str] = {}  # serial -> "parameter name:state key"

    # Records ----------------------------------------------------------------------
    def record_of(self, tensor: torch.Tensor) -> Rec | None:
        rec = self.live.get(storage_key(tensor))
        return rec if isinstance(rec, Rec) else None

    def serial_of(self, tensor: torch.Tensor) -> int:
        rec = self.record_of(tensor)
        return rec.serial if rec else -1

    def register_named(self, tensor: torch.Tensor, origin: str, name: str) -> None:
        self._add(tensor, origin)
        rec = self.record_of(tensor)
        if rec is not None and not rec.name:
            rec.name = rec.path = name

    def _param_name(self, tensor: Any) -> str:
        """The parameter that a tensor in an optimizer list belongs to."""
        rec = self.record_of(tensor) if isinstance(tensor, torch.Tensor) else None
        if rec is None:
            return ""
        if rec.origin == "param":
            return rec.name
        if rec.serial in self.opt_state:
            return self.opt_state[rec.serial].rsplit(":", 1)[0]
        return self.grads.get(rec.serial, rec.name)

    def _add(self, tensor: torch.Tensor, origin: str) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        nbytes = storage.nbytes()
        record = self.live.get(key)
        if record is not None:
            super()._add(tensor, origin)
            if (
                isinstance(record, Rec)
                and _rank(tensor.shape) > _rank(record.shape)
                and tensor.numel() * tensor.element_size() == nbytes
            ):
                record.shape = tuple(tensor.shape)
            return
        self.next_serial += 1
        rec = Rec(
            nbytes,
            origin,
            serial=self.next_serial,
            dtype=str(tensor.dtype).removeprefix("torch."),
            itemsize=tensor.element_size(),
            shape=tuple(tensor.shape),
            op=self.op,
            phase=self.phase,
            step=self.step,
            name=self.hints.pop(0) if self.hints else "",
        )
        if self.ctx is not None:
            rec.call, rec.path = self.ctx.call(), self.ctx.path()
            node = torch._C._current_autograd_node()
            if node is not None and self.ctx.stack:
                rec.node = f"recompute for {node.name()}"
            elif node is not None:
                rec.node = node.name()
                meta = _node_meta(node)
                rec.path, rec.call = meta if meta else ("", "")
        if rec.name and not rec.path:
            rec.path = rec.name
        self.live[key] = rec
        self._finalizers.append(weakref.finalize(storage, self._free, key))
        where = rec.path
        moment = f"{rec.op} in {rec.node or rec.call or '-'}"
        self.occurrences[(self.phase, moment, where)] += 1
        count = self.occurrences[(self.phase, moment, where)]
        self.last = (f"{moment} #{count}" if count > 1 else moment, where)
        self._change(nbytes, rounded(nbytes))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.op = str(func).removeprefix("aten.").removesuffix(".default")
        self.hints = []
        if self.op.startswith("_foreach_") and args and isinstance(args[0], list | tuple):
            self.hints = [self._param_name(x) for x in args[0]]
        try:
            return super().__torch_dispatch__(func, types, args, kwargs)
        finally:
            self.hints = []

    # Snapshots --------------------------------------------------------------------
    def _take(self) -> Snapshot:
        moment, where = self.last
        return Snapshot(self.current, list(self.live.values()), moment, where)

    def _candidate(self) -> None:
        """Keep the live set at a local maximum, one per moment (first/last layer)."""
        moment, where = self.last
        group, index, rel = split_path(where)
        if group:
            if index == 0:
                place = f"{group}.first.{rel}"
            elif index == self.layers - 1:
                place = f"{group}.last.{rel}"
            else:
                return
        else:
            place = where
        key = (self.phase, f"{moment} @ {place}")
        old = self.candidates.get(key)
        if old is None or self.current > old.total:
            self.candidates[key] = self._take()

    def _change(self, delta: int, delta_rounded: int) -> None:
        stats = self.phases.get(self.phase)
        before = stats.peak if stats else None
        super()._change(delta, delta_rounded)
        if delta > 0:
            self.rising = True
            if stats is not None and self.current > before:
                self.snapshots[self.phase] = self._take()

    def _free(self, key: int) -> None:
        if self.rising and key in self.live and self.phase in self.phases:
            self._candidate()
        self.rising = False
        super()._free(key)

    def set_phase(self, name: str) -> None:
        if self.rising and self.phase in self.phases:
            self._candidate()
        self.rising = False
        if name == "optimizer_step":
            self.grads = {
                self.serial_of(p.grad): pname for pname, p in self.params if p.grad is not None
            }
        if name in ("forward", "zero_grad") and self.optimizer is not None:
            names = {id(p): pname for pname, p in self.params}
            for param, state in self.optimizer.state.items():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        self.opt_state[self.serial_of(value)] = f"{names[id(param)]}:{key}"
        super().set_phase(name)
        self.snapshots[name] = self._take()
        self.last = ("(phase start)", "")

    def reset_phases(self) -> None:
        super().reset_phases()
        self.snapshots = {}
        self.candidates = {}
        self.step += 1


class CallContext(TorchFunctionMode):
    """Module stack (from hooks) and the torch-level call being run (this mode)."""

    def __init__(self, live: InventoryTracker) -> None:
        super().__init__()
        self.live = live
        self.stack: list[str] = []
        self.calls: list[str] = []
        self.checkpointed: set[str] = set()
        self.read_saved = False
        self.saved_by: dict[int, list[str]] = defaultdict(list)
        self.handles: list[Any] = []

    def path(self) -> str:
        return self.stack[-1] if self.stack else ""

    def call(self) -> str:
        return self.calls[-1] if self.calls else ""

    def in_checkpoint(self) -> bool:
        return any(name in self.checkpointed for name in self.stack)

    def attach(self, model: torch.nn.Module) -> None:
        for name, module in model.named_modules():

            def push(mod: Any, args: Any, name: str = name) -> None:
                self.stack.append(name)

            def pop(mod: Any, args: Any, out: Any) -> None:
                self.stack.pop()

            self.handles.append(module.register_forward_pre_hook(push))
            self.handles.append(module.register_forward_hook(pop, always_call=True))
            if isinstance(module, GradientCheckpointingLayer) and getattr(
                module, "gradient_checkpointing", False
            ):
                self.checkpointed.add(name)

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = call_name(func)
        self.calls.append(name)
        try:
            out = func(*args, **(kwargs or {}))
        finally:
            self.calls.pop()
        if torch.is_grad_enabled() and self.live.phase in ("forward", "loss"):
            self._visit(out, name)
        return out

    def _visit(self, out: Any, name: str) -> None:
        """Tag new autograd nodes with the module path and call; note what they save."""
        todo = [
            leaf.grad_fn
            for leaf in tree_flatten(out)[0]
            if isinstance(leaf, torch.Tensor) and leaf.grad_fn is not None
        ]
        read = self.read_saved and not self.in_checkpoint()
        while todo:
            node = todo.pop()
            if node is None:
                continue
            try:
                meta = node.metadata
            except (AttributeError, RuntimeError):
                continue
            if "inventory" in meta:
                continue
            meta["inventory"] = (self.path(), name)
            if read:
                for tensor in _saved_of(node):
                    names = self.saved_by[self.live.serial_of(tensor)]
                    if node.name() not in names:
                        names.append(node.name())
            todo.extend(fn for fn, _ in node.next_functions)


@dataclass
class SavedRows(SavedTensorRecorder):
    """The harness's saved-tensor recorder, also noting who saved each storage."""

    ctx: CallContext | None = None
    info: dict[int, dict[str, Any]] = field(default_factory=dict)  # storage key -> info

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = storage_key(tensor)
        known = key in self.saved
        out = super().pack(tensor)
        if not known and key in self.saved and self.ctx is not None:
            rec = self.live.live[key]
            assert isinstance(rec, Rec)
            call = self.ctx.call()
            if not call and self.ctx.in_checkpoint():
                call = "checkpoint (_CheckpointFrame.save_inputs)"
            self.info[key] = {
                "serial": rec.serial,
                "order": len(self.info),
                "view": tuple(tensor.shape),
                "path": self.ctx.path(),
                "call": call,
                "rec": rec,
                "kind": self.saved[key].kind,
                "phase": self.live.phase,
            }
        return out


@dataclass
class CheckpointRows:
    """The distinct tensors handed to each checkpointed layer, with their argument names.

    transformers calls ``self._gradient_checkpointing_func(partial(forward, self,
    **kwargs), *args)`` (``GradientCheckpointingLayer`` in ``modeling_layers.py``); the
    wrapper also pushes the layer's name while the layer runs or is replayed.
    """

    live: InventoryTracker
    ctx: CallContext
    names: dict[int, str]
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # serial -> info

    def wrap(self, model: torch.nn.Module) -> None:
        for module in model.modules():
            func = getattr(module, "_gradient_checkpointing_func", None)
            if func is not None and getattr(module, "gradient_checkpointing", False):
                module._gradient_checkpointing_func = self._recording(func)

    def _recording(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def checkpoint_and_record(function: Any, *args: Any, **kwargs: Any) -> Any:
            partial_args = getattr(function, "args", ()) or ()
            owner = partial_args[0] if partial_args else None
            layer = self.names.get(id(owner), "?")
            bound = getattr(function, "keywords", {}) or {}
            labelled = [(f"arg{i}", x) for i, x in enumerate(args)]
            labelled += list(kwargs.items()) + list(bound.items())
            for label, value in labelled:
                for leaf in tree_flatten(value)[0]:
                    if not isinstance(leaf, torch.Tensor):
                        continue
                    rec = self.live.record_of(leaf)
                    if rec is None or rec.origin in ("param", "buffer"):
                        continue
                    self.rows.setdefault(rec.serial, {"label": label, "layer": layer, "rec": rec})

            def run_layer(*inner: Any, **inner_kw: Any) -> Any:
                self.ctx.stack.append(layer)
                try:
                    return function(*inner, **inner_kw)
                finally:
                    self.ctx.stack.pop()

            return func(run_layer, *args, **kwargs)

        return checkpoint_and_record


# Settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One inventoried configuration: the probe case and the real case to check against."""

    key: str
    title: str
    case: Case
    real: str | None = None
    sizes_from: str | None = None  # a measured case whose sizes to evaluate at, if no real


def _probe_model(name: str, family: str, hf_class: str, config: dict, task: str) -> Model:
    return Model(name, family, hf_class, config, task)


P = PROBE
GPT2_P = {
    **GPT2_SMALL,
    "vocab_size": P["V"],
    "n_positions": P["P"],
    "n_embd": P["h"],
    "n_layer": P["L"],
    "n_head": P["a"],
    "n_inner": P["f"],
}
BERT_P = {
    **BERT_BASE,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a"],
    "intermediate_size": P["f"],
    "max_position_embeddings": P["P"],
    "type_vocab_size": P["T"],
}
T5_P = {
    **T5_BASE,
    "vocab_size": P["V"],
    "d_model": P["h"],
    "d_kv": P["d_free"],
    "d_ff": P["f"],
    "num_layers": P["L"],
    "num_decoder_layers": P["L_dec"],
    "num_heads": P["a"],
    "relative_attention_num_buckets": P["B"],
}
VIT_P = {
    **VIT_B16,
    "hidden_size": P["h"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a"],
    "intermediate_size": P["f"],
    "image_size": P["I"],
    "patch_size": P["p"],
    "num_labels": P["c"],
}
LLAMA_P = {
    **LLAMA_32_1B,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "intermediate_size": P["f"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a_gqa"],
    "num_key_value_heads": P["a_kv"],
    "head_dim": P["d_free"],
    "max_position_embeddings": 256,
}
LLAMA_UNTIED_P = {**LLAMA_P, "tie_word_embeddings": False}
# Multi-head attention (a_kv = a, as Llama-2-7B): eager attention's repeat_kv is a no-op.
LLAMA_MHA_P = {**LLAMA_UNTIED_P, "num_key_value_heads": P["a_gqa"]}
MISTRAL_P = {
    **MISTRAL_7B,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "intermediate_size": P["f"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a_gqa"],
    "num_key_value_heads": P["a_kv"],
    "head_dim": P["d_free"],
    "max_position_embeddings": 256,
    "sliding_window": P["W"],
}
MIXTRAL_P = {
    **MIXTRAL_SMALL,
    "vocab_size": P["V"],
    "hidden_size": P["h"],
    "intermediate_size": P["f"],
    "num_hidden_layers": P["L"],
    "num_attention_heads": P["a_gqa"],
    "num_key_value_heads": P["a_kv"],
    "head_dim": P["d_free"],
    "num_local_experts": P["E"],
    "num_experts_per_tok": P["k"],
}

GPT2_M = _probe_model("gpt2-probe", "gpt2", "GPT2LMHeadModel", GPT2_P, "causal_lm")
BERT_M = _probe_model("bert-probe", "bert", "BertForMaskedLM", BERT_P, "masked_lm")
BERT_CLS_M = _probe_model(
    "bert-cls-probe",
    "bert",
    "BertForSequenceClassification",
    {**BERT_P, "num_labels": P["c"]},
    "sequence_classification",
)
T5_M = _probe_model("t5-probe", "t5", "T5ForConditionalGeneration", T5_P, "seq2seq_lm")
VIT_M = _probe_model("vit-probe", "vit", "ViTForImageClassification", VIT_P, "image_cls")
LLAMA_M = _probe_model("llama-probe", "llama", "LlamaForCausalLM", LLAMA_P, "causal_lm")
LLAMA_U_M = _probe_model(
    "llama-untied-probe", "llama", "LlamaForCausalLM", LLAMA_UNTIED_P, "causal_lm"
)
LLAMA_MHA_M = _probe_model("llama-mha-probe", "llama", "LlamaForCausalLM", LLAMA_MHA_P, "causal_lm")
MISTRAL_M = _probe_model("mistral-probe", "mistral", "MistralForCausalLM", MISTRAL_P, "causal_lm")
# A window longer than the probe sequence, as in the real training case (s = 2048 <= 4096).
MISTRAL_LONG_M = _probe_model(
    "mistral-long-window-probe",
    "mistral",
    "MistralForCausalLM",
    {**MISTRAL_P, "sliding_window": 43},
    "causal_lm",
)
MIXTRAL_M = _probe_model("mixtral-probe", "mixtral", "MixtralForCausalLM", MIXTRAL_P, "causal_lm")

LORA_QKVO_P = {
    "r": P["r"],
    "alpha": 2 * P["r"],
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
LORA_ALL_P = {
    **LORA_QKVO_P,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
LORA_QV_P = {**LORA_QKVO_P, "target_modules": ["q_proj", "v_proj"]}


def _train(model: Model, precision: str, attn: str = "eager", **kw: Any) -> Case:
    b, s = P["b"], P["s"]
    extra: dict[str, Any] = {}
    if model.family == "vit":
        extra["image_size"] = P["I"]
        s = None
    if model.family == "t5":
        extra["decoder_seq_len"] = P["t"]
    return Case(
        model=model,
        mode="training",
        precision=precision,
        batch_size=b,
        seq_len=s,
        optimizer=ADAMW,
        attn_implementation=attn,
        **extra,
        **kw,
    )


def _infer(model: Model, attn: str = "sdpa", logits_to_keep: int = 1) -> Case:
    return Case(
        model=model,
        mode="inference",
        precision="bf16",
        batch_size=P["b"],
        context_len=P["s"],
        attn_implementation=attn,
        logits_to_keep=logits_to_keep,
    )


NO_GPT2_DROP = {"attn_pdrop": 0.0}
NO_BERT_DROP = {"attention_probs_dropout_prob": 0.0}


def settings() -> list[Setting]:
    """Every inventoried setting, in report order."""
    gc = {"gradient_checkpointing": True}
    return [
        Setting(
            "gpt2.fp32.eager",
            "GPT-2, fp32, eager attention",
            _train(GPT2_M, "fp32"),
            "gpt2-small.train.fp32.adamw.eager.b4.s512",
        ),
        Setting(
            "gpt2.fp32.sdpa",
            "GPT-2, fp32, SDPA (attention dropout 0)",
            _train(GPT2_M, "fp32", "sdpa", config_overrides=NO_GPT2_DROP),
            "gpt2-small.train.fp32.adamw.sdpa.b4.s512",
        ),
        Setting(
            "gpt2.amp_bf16.eager",
            "GPT-2, amp_bf16 (fp32 weights, bf16 autocast), eager",
            _train(GPT2_M, "amp_bf16"),
            "gpt2-small.train.amp-bf16.adamw.eager.b4.s512",
        ),
        Setting(
            "gpt2.bf16.eager",
            "GPT-2, pure bf16, eager",
            _train(GPT2_M, "bf16"),
            "gpt2-small.train.bf16.adamw.eager.b4.s512",
        ),
        Setting(
            "gpt2.fp32.eager.gc",
            "GPT-2, fp32, eager, gradient checkpointing",
            _train(GPT2_M, "fp32", **gc),
            "gpt2-small.train.fp32.adamw.eager.gc.b4.s512",
        ),
        Setting(
            "gpt2.infer.eager",
            "GPT-2 inference, bf16, eager (prefill logits_to_keep=1, one decode step)",
            _infer(GPT2_M, "eager"),
            "gpt2-small.infer.bf16.eager.b1.ctx1024",
        ),
        Setting(
            "bert.mlm.fp32.eager",
            "BERT masked LM, fp32, eager",
            _train(BERT_M, "fp32"),
            "bert-base.train.fp32.adamw.eager.b8.s512",
        ),
        Setting(
            "bert.mlm.amp_bf16.sdpa",
            "BERT masked LM, amp_bf16, SDPA (attention dropout 0)",
            _train(BERT_M, "amp_bf16", "sdpa", config_overrides=NO_BERT_DROP),
            "bert-base.train.amp-bf16.adamw.sdpa.b8.s512",
        ),
        Setting(
            "bert.cls.fp32.eager",
            "BERT sequence classification, fp32, eager",
            _train(BERT_CLS_M, "fp32"),
            "bert-large.train.fp32.adamw.eager.b4.s512",
        ),
        Setting(
            "t5.fp32.eager",
            "T5 v1.0 (relu), fp32, eager",
            _train(T5_M, "fp32"),
            "t5-base.train.fp32.adamw.eager.b4.s512.dec128",
        ),
        Setting(
            "vit.fp32.eager",
            "ViT image classification, fp32, eager",
            _train(VIT_M, "fp32"),
            "vit-b16.train.fp32.adamw.eager.b32.img224",
        ),
        Setting(
            "vit.amp_bf16.sdpa",
            "ViT image classification, amp_bf16, SDPA",
            _train(VIT_M, "amp_bf16", "sdpa"),
            "vit-b16.train.amp-bf16.adamw.sdpa.b32.img224",
        ),
        Setting(
            "llama.bf16.sdpa",
            "Llama (GQA, tied embeddings), pure bf16, SDPA",
            _train(LLAMA_M, "bf16", "sdpa"),
            "llama-3.2-1b.train.bf16.adamw.sdpa.b4.s512",
        ),
        Setting(
            "llama.untied.bf16.sdpa",
            "Llama (GQA, untied embeddings), pure bf16, SDPA",
            _train(LLAMA_U_M, "bf16", "sdpa"),
            sizes_from="llama-2-7b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "llama.bf16.eager",
            "Llama (GQA, tied), pure bf16, eager attention",
            _train(LLAMA_M, "bf16", "eager"),
            "llama-3.2-1b.train.bf16.adamw.eager.b1.s2048",
        ),
        Setting(
            "llama.amp_bf16.sdpa",
            "Llama (GQA, tied), amp_bf16, SDPA",
            _train(LLAMA_M, "amp_bf16", "sdpa"),
            "llama-3.2-1b.train.amp-bf16.adamw.sdpa.b1.s2048",
        ),
        Setting(
            "llama.bf16.sdpa.gc",
            "Llama (GQA, tied), pure bf16, SDPA, gradient checkpointing",
            _train(LLAMA_M, "bf16", "sdpa", **gc),
            "llama-3.2-1b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "llama.untied.bf16.sdpa.gc",
            "Llama (untied), pure bf16, SDPA, gradient checkpointing",
            _train(LLAMA_U_M, "bf16", "sdpa", **gc),
            "llama-2-7b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "llama.infer.sdpa",
            "Llama inference (untied), bf16, SDPA, prefill logits_to_keep=1, one decode step",
            _infer(LLAMA_U_M),
            "llama-2-7b.infer.bf16.sdpa.b4.ctx1024",
        ),
        Setting(
            "llama.infer.sdpa.fulllogits",
            "Llama inference, bf16, SDPA, prefill logits_to_keep=0 (all positions)",
            _infer(LLAMA_M, logits_to_keep=0),
            "llama-3.2-1b.infer.bf16.sdpa.b1.ctx8192.fulllogits",
        ),
        Setting(
            "llama.infer.eager",
            "Llama inference (GQA, untied), bf16, eager attention",
            _infer(LLAMA_U_M, "eager"),
            sizes_from="llama-2-7b.infer.bf16.eager.b1.ctx4096",
        ),
        Setting(
            "llama.mha.infer.eager",
            "Llama inference (multi-head a_kv = a, untied), bf16, eager attention",
            _infer(LLAMA_MHA_M, "eager"),
            "llama-2-7b.infer.bf16.eager.b1.ctx4096",
        ),
        Setting(
            "mistral.bf16.sdpa.gc",
            "Mistral (sliding window W >= s), pure bf16, SDPA, gradient checkpointing",
            _train(MISTRAL_LONG_M, "bf16", "sdpa", **gc),
            "mistral-7b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "mistral.window.bf16.sdpa.gc",
            "Mistral (sliding window W < s), pure bf16, SDPA, gradient checkpointing",
            _train(MISTRAL_M, "bf16", "sdpa", **gc),
            sizes_from="mistral-7b.train.bf16.adamw.sdpa.gc.b1.s2048",
        ),
        Setting(
            "mistral.infer.sdpa",
            "Mistral inference past the sliding window (s > W), bf16, SDPA",
            _infer(MISTRAL_M),
            "mistral-7b.infer.bf16.sdpa.b1.ctx8192",
        ),
        Setting(
            "mixtral.bf16.sdpa",
            "Mixtral (grouped_mm experts), pure bf16, SDPA",
            _train(MIXTRAL_M, "bf16", "sdpa"),
            "mixtral-small-8e.train.bf16.adamw.sdpa.b2.s512",
        ),
        Setting(
            "mixtral.bf16.sdpa.gc",
            "Mixtral (grouped_mm experts), pure bf16, SDPA, gradient checkpointing",
            _train(MIXTRAL_M, "bf16", "sdpa", **gc),
            "mixtral-small-8e.train.bf16.adamw.sdpa.gc.b2.s512",
        ),
        Setting(
            "mixtral.infer.sdpa",
            "Mixtral inference, bf16, SDPA",
            _infer(MIXTRAL_M),
            "mixtral-small-8e.infer.bf16.sdpa.b1.ctx2048",
        ),
        Setting(
            "lora.qkvo.bf16.sdpa",
            "LoRA (peft) on q,k,v,o of the Llama shape, bf16 base, SDPA",
            _train(LLAMA_M, "bf16", "sdpa", lora=LORA_QKVO_P),
            "llama-3.2-1b.lora.bf16.adamw.sdpa.b1.s2048",
        ),
        Setting(
            "lora.qkvo.bf16.sdpa.gc",
            "LoRA on q,k,v,o, bf16, SDPA, gradient checkpointing",
            _train(LLAMA_M, "bf16", "sdpa", lora=LORA_QKVO_P, **gc),
            "llama-3.2-1b.lora.bf16.adamw.sdpa.gc.b4.s2048",
        ),
        Setting(
            "lora.qv.bf16.sdpa",
            "LoRA on q,v (untied Llama shape), bf16, SDPA",
            _train(LLAMA_U_M, "bf16", "sdpa", lora=LORA_QV_P),
            "llama-2-7b.lora.bf16.adamw.sdpa.b1.s1304",
        ),
        Setting(
            "lora.all.bf16.sdpa",
            "LoRA on all linear layers (q,k,v,o,gate,up,down), bf16, SDPA",
            _train(LLAMA_M, "bf16", "sdpa", lora=LORA_ALL_P),
            sizes_from="llama-3.2-1b.lora.bf16.adamw.sdpa.b1.s2048",
        ),
        Setting(
            "lora.all.bf16.sdpa.gc",
            "LoRA on all linear layers, bf16, SDPA, gradient checkpointing",
            _train(LLAMA_M, "bf16", "sdpa", lora=LORA_ALL_P, **gc),
            sizes_from="llama-3.2-1b.lora.bf16.adamw.sdpa.gc.b4.s2048",
        ),
    ]


# Running -----------------------------------------------------------------------------


@dataclass
class Run:
    """Everything one instrumented run produced."""

    setting: Setting
    values: dict[str, int]
    namer: DimNamer
    harness: dict[str, Any]
    live: InventoryTracker
    saved: SavedRows | None = None
    saved_by: dict[int, list[str]] = field(default_factory=dict)
    ckpt: CheckpointRows | None = None
    kv: dict[str, dict[int, tuple[str, Rec]]] = field(default_factory=dict)
    logits: dict[str, Any] = field(default_factory=dict)

    @property
    def h_is_ad(self) -> bool:
        return self.setting.case.model.family in H_IS_AD


def run_setting(setting: Setting, strict: bool = True) -> Run:
    """Run the harness on the probe case, then the instrumented step."""
    harness = run_case(setting.case)
    case = setting.case
    values = symbol_values(case.description())
    if values.get("a_kv") == values.get("a"):
        del values["a_kv"]  # multi-head attention: name the key/value heads a
    skip = ("a·d",) if case.model.family in H_IS_AD else ()
    run = Run(
        setting, values, DimNamer(values, skip, strict), harness, InventoryTracker(PROBE["L"])
    )
    with tensor_mode(case):
        torch.manual_seed(0)
        model, head = make_model(case)
        if case.mode == "training":
            _run_training(run, model, head)
        else:
            _run_inference(run, model, head)
    return run


def _setup(run: Run, model: torch.nn.Module, head: torch.nn.Module) -> tuple[CallContext, Any]:
    live = run.live
    ctx = CallContext(live)
    live.ctx = ctx
    for name, param in model.named_parameters():
        live.register_named(param, "param", name)
    for name, buffer in model.named_buffers():
        live.register_named(buffer, "buffer", name)
    ctx.attach(model)
    hook = head.register_forward_hook(_logits_hook(live, run.logits))
    return ctx, hook


def _run_training(run: Run, model: torch.nn.Module, head: torch.nn.Module) -> None:
    case = run.setting.case
    inputs = case_inputs(case)
    live = run.live
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = make_optimizer(case.optimizer, [p for _, p in named])
    ctx, hook = _setup(run, model, head)
    for name, tensor in inputs.items():
        live.register_named(tensor, "input", f"input.{name}")
    live.params = named
    live.optimizer = optimizer
    ckpt = CheckpointRows(live, ctx, {id(m): n for n, m in model.named_modules()})
    ckpt.wrap(model)
    try:
        with live, ctx:
            _training_step(case, model, inputs, optimizer, live, None)
            live.reset_phases()
            ckpt.rows.clear()
            saved = SavedRows(live, ctx=ctx)
            ctx.read_saved = True
            _training_step(case, model, inputs, optimizer, live, saved)
            ctx.read_saved = False
    finally:
        hook.remove()
        ctx.detach()
        live.close()
    run.saved = saved
    run.saved_by = dict(ctx.saved_by)
    run.ckpt = ckpt if case.gradient_checkpointing else None


def _cache_records(live: InventoryTracker, cache: Any) -> dict[int, tuple[str, Rec]]:
    out = {}
    for index, layer in enumerate(cache.layers):
        for kind in ("keys", "values"):
            tensor = getattr(layer, kind, None)
            rec = live.record_of(tensor) if isinstance(tensor, torch.Tensor) else None
            if rec is not None:
                out[rec.serial] = (f"layers.{index}.{kind}", rec)
    return out


@contextlib.contextmanager
def cache_layer_paths(ctx: CallContext) -> Iterator[None]:
    """Name what a cache layer makes in its constructor ``cache.layers.<i>``.

    ``DynamicSlidingWindowLayer.__init__`` makes an int64 scalar per layer
    (``_sliding_window_tensor``, transformers/cache_utils.py); with this path it is
    counted per layer like the keys and values.
    """
    from transformers import cache_utils

    state = {"index": 0, "depth": 0}

    def cache_init(orig: Callable[..., None]) -> Callable[..., None]:
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            state["index"] = 0
            orig(self, *args, **kwargs)

        return init

    def layer_init(orig: Callable[..., None]) -> Callable[..., None]:
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            if state["depth"]:
                orig(self, *args, **kwargs)
                return
            state["depth"] += 1
            ctx.stack.append(f"cache.layers.{state['index']}")
            try:
                orig(self, *args, **kwargs)
            finally:
                ctx.stack.pop()
                state["depth"] -= 1
                state["index"] += 1

        return init

    patched = [
        (cache_utils.DynamicCache, cache_init),
        (cache_utils.DynamicLayer, layer_init),
        (cache_utils.DynamicSlidingWindowLayer, layer_init),
    ]
    saved = [(cls, cls.__init__) for cls, _ in patched]
    for cls, wrapper in patched:
        cls.__init__ = wrapper(cls.__init__)
    try:
        yield
    finally:
        for cls, init in saved:
            cls.__init__ = init


def _run_inference(run: Run, model: torch.nn.Module, head: torch.nn.Module) -> None:
    case = run.setting.case
    live = run.live
    vocab = case.config["vocab_size"]
    with torch.device(case.device):
        prompt = torch.randint(0, vocab, (case.batch_size, case.context_len))
        next_token = torch.randint(0, vocab, (case.batch_size, 1))
    ctx, hook = _setup(run, model, head)
    live.register_named(prompt, "input", "input.prompt")
    live.register_named(next_token, "input", "input.next_token")
    live.step = 1
    try:
        with live, ctx, torch.no_grad(), cache_layer_paths(ctx):
            live.set_phase("prefill")
            out = model(input_ids=prompt, use_cache=True, logits_to_keep=case.logits_to_keep)
            cache = out.past_key_values
            del out
            run.kv["prefill"] = _cache_records(live, cache)
            live.set_phase("decode")
            out = model(
                input_ids=next_token, past_key_values=cache, use_cache=True, logits_to_keep=1
            )
            cache = out.past_key_values
            del out
            run.kv["decode"] = _cache_records(live, cache)
            live.set_phase("idle")
            del cache
    finally:
        hook.remove()
        ctx.detach()
        live.close()


# Rows --------------------------------------------------------------------------------

LAYER_RE = re.compile(r"^(?P<group>(?:.*?\.)?(?:h|layers|layer|block))\.(?P<index>\d+)(?:\.|$)")


def split_path(path: str) -> tuple[str, int | None, str]:
    """``transformer.h.2.attn.c_attn`` -> (``transformer.h``, 2, ``attn.c_attn``)."""
    match = LAYER_RE.match(path)
    if not match:
        return "", None, path
    return match["group"], int(match["index"]), path[match.end() :]


def rel_path(path: str) -> str:
    group, _, rel = split_path(path)
    if group:
        return f"{group}.*.{rel}" if rel else f"{group}.*"
    return path or "(model)"


def layer_symbol(group: str) -> sp.Symbol:
    return SYM["L_dec"] if group.endswith("decoder.block") else SYM["L"]


@dataclass
class Item:
    """One storage to be grouped: its record, module path, maker/saver, note."""

    rec: Rec
    path: str
    what: str
    note: str = ""


@dataclass
class Row:
    """Identical storages grouped over layers."""

    group: str  # layer container, "" outside layers
    where: str  # module path inside the layer, or the full path
    what: str
    labels: tuple[str, ...]
    dtype: str
    itemsize: int
    count: sp.Expr  # how many storages (L, L-1, 2·L, 1...)
    per_layer: int  # storages per layer
    indices: tuple[int, ...]  # layers present at the probe
    nbytes: int  # bytes at the probe
    notes: tuple[str, ...] = ()
    h_is_ad: bool = False

    @functools.cached_property
    def each(self) -> sp.Expr:
        expr = sp.Integer(self.itemsize)
        for label in self.labels:
            expr *= sp.Integer(int(label[:-1])) if label.endswith("?") else expr_of(label)
        if self.h_is_ad:
            expr = expr.subs(SYM["a"] * SYM["d"], SYM["h"])
        return expr

    @property
    def total(self) -> sp.Expr:
        return self.each * self.count

    def value(self, values: dict[str, int]) -> int:
        items = tuple(sorted(values.items()))
        each = self.itemsize
        for label in self.labels:
            each *= int(label[:-1]) if label.endswith("?") else _label_value(label, items)
        return each * _count_value(self.count, items)


def _layer_count(group: str, indices: set[int], layers: int) -> sp.Expr:
    lsym = layer_symbol(group)
    if len(indices) == layers:
        return lsym
    if indices in (set(range(layers - 1)), set(range(1, layers))):
        return lsym - 1
    return sp.Integer(len(indices))


def _notes(items: Iterable[Item]) -> tuple[str, ...]:
    parts = [part for item in items if item.note for part in item.note.split("; ")]
    return tuple(dict.fromkeys(parts))


def group_rows(items: list[Item], namer: DimNamer, h_is_ad: bool) -> list[Row]:
    """Group storages into symbolic rows, counting layers symbolically."""
    keyed: dict[tuple, list[tuple[int | None, Item]]] = defaultdict(list)
    for item in items:
        group, index, rel = split_path(item.path)
        rec = item.rec
        labels = namer.shape(rec.shape)
        numel = 1
        for dim in rec.shape:
            numel *= int(dim)
        if numel * rec.itemsize != rec.nbytes:
            labels = (f"{rec.nbytes // rec.itemsize}?",)
        key = (group, rel, item.what, labels, rec.dtype, rec.itemsize)
        keyed[key].append((index, item))
    rows = []
    for key, entries in keyed.items():
        group, rel, what, labels, dtype, itemsize = key
        if not group:
            notes = _notes(i for _, i in entries)
            rows.append(
                Row(group, rel, what, labels, dtype, itemsize, sp.Integer(len(entries)),
                    len(entries), (), sum(i.rec.nbytes for _, i in entries), notes, h_is_ad)
            )  # fmt: skip
            continue
        per_index = Counter(index for index, _ in entries)
        by_count: dict[int, set[int]] = defaultdict(set)
        for index, n in per_index.items():
            by_count[n].add(index)
        for n, indices in sorted(by_count.items()):
            part = [i for index, i in entries if index in indices]
            notes = _notes(part)
            rows.append(
                Row(group, rel, what, labels, dtype, itemsize,
                    n * _layer_count(group, indices, PROBE["L"]), n, tuple(sorted(indices)),
                    sum(i.rec.nbytes for i in part), notes, h_is_ad)
            )  # fmt: skip
    return rows


def rows_total(rows: Iterable[Row]) -> sp.Expr:
    return sp.expand(sum((row.total for row in rows), sp.Integer(0)))


def rows_value(rows: Iterable[Row], values: dict[str, int]) -> int:
    return sum(row.value(values) for row in rows)


def is_per_layer(row: Row) -> bool:
    """A row present in every layer (its count is a multiple of the layer count)."""
    return bool(row.group) and row.count.free_symbols == {layer_symbol(row.group)}


def hoist(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """Split rows into per-layer rows and the rest (a storage made or saved in one layer only,
    such as a mask handed to every layer, is listed with the rows outside the layers)."""
    layer, other = [], []
    for row in rows:
        if not row.group or is_per_layer(row):
            (layer if row.group else other).append(row)
            continue
        first = row.indices[0] if row.indices else 0
        where = f"{row.group}.{first}.{row.where}".rstrip(".")
        other.append(
            Row("", where, row.what, row.labels, row.dtype, row.itemsize, row.count,
                row.per_layer, row.indices, row.nbytes,
                (*row.notes, f"in layer {first} only"), row.h_is_ad)
        )  # fmt: skip
    return layer, other


# Saved tensors -----------------------------------------------------------------------


def saved_items(run: Run, kind: str | None = None, serials: set[int] | None = None) -> list[Item]:
    """Items for saved storages (of one kind, or with the given serials)."""
    assert run.saved is not None
    items = []
    for info in sorted(run.saved.info.values(), key=lambda i: i["order"]):
        if kind is not None and info["kind"] != kind:
            continue
        if serials is not None and info["serial"] not in serials:
            continue
        rec: Rec = info["rec"]
        nodes = run.saved_by.get(info["serial"], [])
        what = info["call"] or "?"
        if nodes:
            what += " → " + ", ".join(nodes)
        notes = []
        if tuple(info["view"]) != tuple(rec.shape):
            notes.append("saved as view " + fmt_dims(run.namer.shape(info["view"])))
        if rec.origin == "input":
            notes.append(f"the model input `{rec.name.removeprefix('input.')}`")
        elif rec.path != info["path"] and (rec.path or rec.call):
            notes.append(f"made in {rel_path(rec.path)} by {rec.call or rec.op}")
        path = info["path"]
        if info["phase"] == "loss" and not split_path(path)[0]:
            path = f"loss ({path or 'model'})"
        items.append(Item(rec, path, what, "; ".join(notes)))
    return items


def checkpoint_items(run: Run) -> list[Item]:
    assert run.ckpt is not None
    saved = {i["serial"] for i in run.saved.info.values()} if run.saved else set()
    items = []
    for info in run.ckpt.rows.values():
        rec: Rec = info["rec"]
        made = rel_path(rec.path) if rec.path else rec.name or "?"
        note = f"made in {made} by {rec.call or rec.op}"
        if rec.serial in saved:
            note += "; also in the saved set"
        items.append(Item(rec, info["layer"], f"layer input `{info['label']}`", note))
    return items


# Live sets ---------------------------------------------------------------------------

CATEGORIES = {
    "parameters": "parameters",
    "buffers": "buffers",
    "inputs": "model inputs",
    "gradients": "gradients",
    "optimizer_state": "optimizer state",
    "saved": "saved activations",
    "saved_autocast_copies": "saved autocast weight copies",
    "checkpoint_inputs": "checkpointed layer inputs (not in the saved set)",
    "kv_cache": "KV cache (from prefill)",
    "kv_cache_new": "KV cache (new storages of this step)",
    "transients": "transients",
}


def transient_what(rec: Rec) -> str:
    step = "" if rec.step or rec.phase in PHASES_INFERENCE else " [from step 1]"
    maker = rec.node if rec.node else (rec.call or "-")
    if rec.node and rec.call and not rec.node.startswith("recompute"):
        maker = f"{rec.node} of {rec.call}"
    elif rec.node:
        maker = f"{rec.call or '-'} ({rec.node})"
    return f"{rec.phase}: {maker} → {rec.op}{step}"


def classify(run: Run, snap: Snapshot, phase: str) -> dict[str, list[Item]]:
    """Sort a live set into categories."""
    saved = {i["serial"]: i for i in run.saved.info.values()} if run.saved else {}
    ckpt = run.ckpt.rows if run.ckpt else {}
    kv_old = run.kv.get("prefill", {})
    kv_new = run.kv.get("decode", {}) if phase == "decode" else {}
    out: dict[str, list[Item]] = {name: [] for name in CATEGORIES}
    for rec in snap.records:
        if not isinstance(rec, Rec):
            continue
        serial = rec.serial
        if rec.origin in ("param", "buffer"):
            out["parameters" if rec.origin == "param" else "buffers"].append(
                Item(rec, rec.name, rec.origin)
            )
        elif rec.origin == "input":
            out["inputs"].append(Item(rec, "", rec.name))
        elif serial in run.live.grads:
            out["gradients"].append(Item(rec, run.live.grads[serial], "grad"))
        elif serial in run.live.opt_state:
            name, key = run.live.opt_state[serial].rsplit(":", 1)
            out["optimizer_state"].append(Item(rec, name, key))
        elif serial in saved:
            info = saved[serial]
            cat = "saved" if info["kind"] == "activation" else "saved_autocast_copies"
            out[cat].append(Item(rec, info["path"] or "loss", info["call"] or "?"))
        elif serial in ckpt:
            out["checkpoint_inputs"].append(
                Item(rec, ckpt[serial]["layer"], f"layer input `{ckpt[serial]['label']}`")
            )
        elif serial in kv_new and serial not in kv_old:
            label = kv_new[serial][0]
            out["kv_cache_new"].append(Item(rec, label, label.rsplit(".", 1)[1]))
        elif serial in kv_old:
            label = kv_old[serial][0]
            out["kv_cache"].append(Item(rec, label, label.rsplit(".", 1)[1]))
        else:
            out["transients"].append(Item(rec, rec.path, transient_what(rec)))
    return out


@dataclass
class Moment:
    """One candidate peak moment of a phase, in symbols."""

    key: str
    snap: Snapshot
    rows: dict[str, list[Row]]
    released: list[Row]  # saved rows already freed at this moment
    wins: list[str] = field(default_factory=list)

    def value(self, values: dict[str, int]) -> int:
        return sum(rows_value(rows, values) for rows in self.rows.values())


def moment_of(run: Run, phase: str, key: str, snap: Snapshot) -> Moment:
    cats = classify(run, snap, phase)
    rows = {name: group_rows(items, run.namer, run.h_is_ad) for name, items in cats.items()}
    released: list[Row] = []
    if run.saved is not None and phase in ("backward", "optimizer_step"):
        alive = {rec.serial for rec in snap.records if isinstance(rec, Rec)}
        gone = {i["serial"] for i in run.saved.info.values()} - alive
        released = group_rows(saved_items(run, None, gone), run.namer, run.h_is_ad)
    return Moment(key, snap, rows, released)


# Checks ------------------------------------------------------------------------------


def load_measured() -> dict[str, dict[str, Any]]:
    data = json.loads(MEASURED.read_text())
    return {case["id"]: case for case in data["cases"]}


def size_points(run: Run, measured: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Where the candidate moments are compared: the probe, the real case and variants."""
    points = {"probe": run.values}
    ref = measured.get(run.setting.real or run.setting.sizes_from or "")
    if ref is None:
        return points
    real = symbol_values(ref["description"])
    name = "real" if run.setting.real else "reference"
    points[name] = real
    if run.setting.case.model.family != "vit":
        points[f"{name} s×4"] = real | {"s": real["s"] * 4}
        points[f"{name} s/4"] = real | {"s": max(real["s"] // 4, 16)}
    if real["b"] != 1:
        points[f"{name} b=1"] = real | {"b": 1}
    else:
        points[f"{name} b=8"] = real | {"b": 8}
    return points


@dataclass
class Check:
    name: str
    probe_measured: int  # the harness (run_case) at the probe size
    probe_rows: int | None  # the symbolic rows at the probe size
    real_measured: int | None = None
    real_formula: int | None = None
    formula: str = ""
    probe_run: int | None = None  # the instrumented run's own tracker (no MemTracker)


@dataclass
class SettingReport:
    """The rows, formulas and checks of one setting."""

    run: Run
    saved_layer: list[Row] = field(default_factory=list)
    saved_other: list[Row] = field(default_factory=list)
    autocast: list[Row] = field(default_factory=list)
    model_inputs: list[Row] = field(default_factory=list)
    ckpt_layer: list[Row] = field(default_factory=list)
    ckpt_other: list[Row] = field(default_factory=list)
    kv_prefill: list[Row] = field(default_factory=list)
    kv_decode: list[Row] = field(default_factory=list)
    moments: dict[str, list[Moment]] = field(default_factory=dict)
    points: dict[str, dict[str, int]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    real: dict[str, Any] | None = None
    batch1: list[tuple[str, int, int]] = field(default_factory=list)
    batch1_best: dict[str, int] = field(default_factory=dict)
    real_cpu: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(
            (c.probe_run if c.probe_run is not None else c.probe_measured) == c.probe_rows
            for c in self.checks
        )


def _check(
    rep: SettingReport, name: str, probe: int, rows: list[Row], real_value: int | None
) -> None:
    real_formula = None
    if rep.real is not None and real_value is not None:
        real_formula = rows_value(rows, symbol_values(rep.real["description"]))
    rep.checks.append(
        Check(name, probe, rows_value(rows, rep.run.values | {"L": PROBE["L"]}), real_value,
              real_formula, fmt_expr(rows_total(rows)))
    )  # fmt: skip


def build_report(run: Run, measured: dict[str, dict[str, Any]]) -> SettingReport:
    rep = SettingReport(run)
    rep.real = measured.get(run.setting.real or "")
    real = rep.real
    harness = run.harness
    training = run.setting.case.mode == "training"
    if training:
        acts = group_rows(saved_items(run, "activation"), run.namer, run.h_is_ad)
        rep.saved_layer, rep.saved_other = hoist(acts)
        rep.autocast = group_rows(saved_items(run, "autocast_weight_copy"), run.namer, run.h_is_ad)
        rep.model_inputs = group_rows(saved_items(run, "model_input"), run.namer, run.h_is_ad)
        sfb = harness["saved_for_backward"]
        rsfb = real["saved_for_backward"] if real else {}
        _check(rep, "saved activations", sfb["activation_bytes"], acts,
               rsfb.get("activation_bytes"))  # fmt: skip
        _check(rep, "saved autocast weight copies", sfb["autocast_weight_copy_bytes"],
               rep.autocast, rsfb.get("autocast_weight_copy_bytes"))  # fmt: skip
        if run.ckpt is not None:
            ck = group_rows(checkpoint_items(run), run.namer, run.h_is_ad)
            rep.ckpt_layer, rep.ckpt_other = hoist(ck)
            real_ck = (real or {}).get("checkpointing") or {}
            _check(rep, "checkpointed layer inputs",
                   harness["checkpointing"]["checkpointed_input_bytes"], ck,
                   real_ck.get("checkpointed_input_bytes"))  # fmt: skip
        phases = PHASES_TRAINING
        probe_peaks = {p: harness["peak"]["phases"][p]["peak_bytes"] for p in phases}
        real_peaks = {p: real["peak"]["phases"][p]["peak_bytes"] for p in phases} if real else {}
    else:
        phases = PHASES_INFERENCE
        rep.kv_prefill = _kv_rows(run, "prefill")
        rep.kv_decode = _kv_rows(run, "decode")
        kv = harness["kv_cache"]
        rkv = real["kv_cache"] if real else {}
        _check(rep, "KV cache after prefill", kv["after_prefill"]["bytes"], rep.kv_prefill,
               rkv.get("after_prefill", {}).get("bytes"))  # fmt: skip
        _check(rep, "KV cache after decode", kv["after_decode"]["bytes"], rep.kv_decode,
               rkv.get("after_decode", {}).get("bytes"))  # fmt: skip
        probe_peaks = {p: harness[p]["peak_bytes"] for p in phases}
        real_peaks = {p: real[p]["peak_bytes"] for p in phases} if real else {}
    rep.points = size_points(run, measured)
    batch1 = training and run.setting.case.model.task == "causal_lm"
    if batch1:
        rep.points["probe b=1"] = run.values | {"b": 1}
    for phase in phases:
        rep.moments[phase] = _phase_moments(run, phase, rep.points)
        best = {name: max(m.value(v) for m in rep.moments[phase]) for name, v in rep.points.items()}
        if batch1:
            rep.batch1_best[phase] = best["probe b=1"]
        # The formula shown is the moment that is the peak at the real case, else the probe.
        point = "real" if "real" in best else "probe"
        winner_rows = [r for m in rep.moments[phase] if point in m.wins for r in _all(m)]
        rep.checks.append(
            Check(f"{phase} peak", probe_peaks[phase], best["probe"], real_peaks.get(phase),
                  best.get("real"), fmt_expr(rows_total(winner_rows)),
                  run.live.phases[phase].peak)
        )  # fmt: skip
    if batch1:
        rep.batch1 = batch1_checks(rep, acts)
    return rep


def _kv_rows(run: Run, phase: str) -> list[Row]:
    """Rows for the cache tensors held at the end of ``phase``."""
    items = [Item(rec, label, label.rsplit(".", 1)[1]) for label, rec in run.kv[phase].values()]
    return group_rows(items, run.namer, run.h_is_ad)


def batch1_checks(rep: SettingReport, acts: list[Row]) -> list[tuple[str, int, int]]:
    """The harness at the probe size with batch 1 against the rows evaluated at b = 1.

    With b = 1 the causal-LM loss's ``labels[..., 1:].contiguous()`` is already
    contiguous and returns a view of the padded labels, so the figures differ from the
    rows by the labels' storage (see the notes).
    """
    run = rep.run
    harness = run_case(replace(run.setting.case, batch_size=1))
    values = run.values | {"b": 1}
    out = [
        ("saved activations", harness["saved_for_backward"]["activation_bytes"],
         rows_value(acts, values))
    ]  # fmt: skip
    for phase in PHASES_TRAINING:
        peak = harness["peak"]["phases"][phase]["peak_bytes"]
        out.append((f"{phase} peak", peak, rep.batch1_best[phase]))
    return out


def real_cpu_checks(rep: SettingReport) -> list[tuple[str, int, int]]:
    """The harness on the probe case with real CPU tensors against the fake run."""
    case = rep.run.setting.case
    fake, real = rep.run.harness, run_case(replace(case, fake=False))
    if case.mode == "training":
        key = ("saved_for_backward", "activation_bytes")
        out = [("saved activations", fake[key[0]][key[1]], real[key[0]][key[1]])]
        for phase in PHASES_TRAINING:
            out.append(
                (f"{phase} peak", fake["peak"]["phases"][phase]["peak_bytes"],
                 real["peak"]["phases"][phase]["peak_bytes"])
            )  # fmt: skip
        return out
    out = [
        ("KV cache after prefill", fake["kv_cache"]["after_prefill"]["bytes"],
         real["kv_cache"]["after_prefill"]["bytes"])
    ]  # fmt: skip
    for phase in PHASES_INFERENCE:
        out.append((f"{phase} peak", fake[phase]["peak_bytes"], real[phase]["peak_bytes"]))
    return out


def _all(moment: Moment) -> list[Row]:
    return [row for rows in moment.rows.values() for row in rows]


def _phase_moments(run: Run, phase: str, points: dict[str, dict[str, int]]) -> list[Moment]:
    """The candidate moments of a phase that are the maximum at some size point."""
    snaps = [(key[1], snap) for key, snap in run.live.candidates.items() if key[0] == phase]
    peak = run.live.snapshots[phase]
    snaps.append((f"{peak.moment} @ {peak.where} (probe peak)", peak))
    moments = [moment_of(run, phase, key, snap) for key, snap in snaps]
    for name, values in points.items():
        values = values | ({"L": PROBE["L"], "L_dec": PROBE["L_dec"]} if name == "probe" else {})
        scores = [m.value(values) for m in moments]
        top = max(scores)
        # Among equal maxima, prefer the moment that already wins elsewhere.
        best = [m for m, v in zip(moments, scores, strict=True) if v == top]
        chosen = next((m for m in best if m.wins), best[0])
        chosen.wins.append(name)
    return [m for m in moments if m.wins]


# Report ------------------------------------------------------------------------------


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _where(row: Row, layer: bool = False) -> str:
    if layer:
        return row.where or "(layer)"
    if row.group:
        return f"{row.group}.*.{row.where}".rstrip(".")
    return row.where or "(model)"


def _moment_place(snap: Snapshot) -> str:
    group, index, rel = split_path(snap.where)
    if not group:
        return snap.where or "(model)"
    which = "0" if index == 0 else "{L-1}" if index == PROBE["L"] - 1 else str(index)
    return f"{group}.{which}.{rel}".rstrip(".")


def _row_line(row: Row, layer: bool) -> str:
    count = str(row.per_layer) if layer else fmt_count(row.count)
    if layer and not every_layer(row):
        count += f" ({_layers_of(row)})"
    notes = "; ".join(row.notes)
    where = _where(row, layer)
    return (
        f"| `{where}` | {row.what} | {fmt_dims(row.labels)} | {row.dtype} | "
        f"{fmt_bytes(row.itemsize, row.labels)} | {count} | {notes} |"
    )


def _table(rows: list[Row], layer: bool, what: str = "saved by → autograd node") -> list[str]:
    head = "per layer" if layer else "count"
    out = [
        f"| module | {what} | shape | dtype | bytes each | {head} | note |",
        "|---|---|---|---|---|---|---|",
    ]
    return out + [_row_line(row, layer) for row in rows]


def every_layer(row: Row) -> bool:
    """A row with the same storages in every layer."""
    return row.count == row.per_layer * layer_symbol(row.group)


def _layers_of(row: Row) -> str:
    """Which layers hold a row that is not in every layer."""
    last = PROBE["L"] - 1
    if row.indices == tuple(range(1, last + 1)):
        return "layers 1 to L-1 (not layer 0)"
    if row.indices == tuple(range(last)):
        return "layers 0 to L-2 (not the last)"
    return "layers " + ", ".join(map(str, row.indices))


def _per_layer_formula(rows: list[Row]) -> dict[str, sp.Expr]:
    """Per group: bytes of one layer counting only rows present in every layer."""
    out: dict[str, sp.Expr] = {}
    for row in rows:
        out.setdefault(row.group, sp.Integer(0))
        if every_layer(row):
            out[row.group] += row.each * row.per_layer
    return {group: sp.expand(expr) for group, expr in out.items()}


def _partial_layer_formula(rows: list[Row]) -> dict[tuple[str, str], sp.Expr]:
    """Per group and layer set: bytes of one layer for rows not in every layer."""
    out: dict[tuple[str, str], sp.Expr] = {}
    for row in rows:
        if not every_layer(row):
            key = (row.group, _layers_of(row))
            out[key] = sp.expand(out.get(key, sp.Integer(0)) + row.each * row.per_layer)
    return out


def _layer_formula_text(rows: list[Row], group: str) -> str:
    text = f"`{fmt_expr(_per_layer_formula(rows)[group])}`"
    for (g, layers), expr in _partial_layer_formula(rows).items():
        if g == group:
            text += f"; plus in {layers}: `{fmt_expr(expr)}`"
    return text


def _moment_lines(moment: Moment, rep: SettingReport) -> list[str]:
    values = rep.run.values
    out = [
        f"*Moment* `{moment.snap.moment}` at `{_moment_place(moment.snap)}` — the maximum at: "
        + ", ".join(moment.wins)
        + f"; {moment.value(values):,} B at the probe.",
        "",
        "| category | bytes (formula) | at the probe |",
        "|---|---|---|",
    ]
    for name, label in CATEGORIES.items():
        rows = moment.rows.get(name, [])
        if not rows:
            continue
        text = fmt_expr(rows_total(rows))
        if name == "saved" and moment.released:
            text += f" (all saved minus released: {fmt_expr(rows_total(moment.released))})"
        out.append(f"| {label} | {text} | {rows_value(rows, values):,} |")
    out.append(f"| **total** | | **{moment.value(values):,}** |")
    trans = moment.rows.get("transients", [])
    if trans:
        out += ["", "Transients at this moment:", ""]
        out += [
            "| made in | by (phase: node/call → aten op) | shape | dtype | bytes each | count |",
            "|---|---|---|---|---|---|",
        ]
        for row in trans:
            where = _where(row)
            out.append(
                f"| `{where}` | {row.what} | {fmt_dims(row.labels)} | {row.dtype} | "
                f"{fmt_bytes(row.itemsize, row.labels)} | {fmt_count(row.count)} |"
            )
    if moment.released:
        gone = sorted({_where(r) for r in moment.released})
        out += ["", "Saved storages already released: " + ", ".join(f"`{g}`" for g in gone)]
    return out


def _check_table(rep: SettingReport) -> list[str]:
    lines = [
        "| figure | probe: harness | probe: this run | probe: rows | real: measured "
        "| real: formula | formula (peaks: the real case's peak moment) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in rep.checks:
        this_run = "" if c.probe_run is None else _n(c.probe_run)
        lines.append(
            f"| {c.name} | {_n(c.probe_measured)} | {this_run} | {_n(c.probe_rows)} "
            f"| {_n(c.real_measured)} | {_n(c.real_formula)} | `{c.formula}` |"
        )
    return lines


def render_setting(rep: SettingReport, number: int) -> str:
    run = rep.run
    s = run.setting
    lines = [f"## {number}. {s.title}", ""]
    sizes = ", ".join(f"{k}={v}" for k, v in run.values.items())
    lines.append(f"Key `{s.key}`. Probe: {sizes}. Harness probe case `{s.case.id}`.")
    if s.real:
        lines.append(f"Real case: `{s.real}`.")
    elif s.sizes_from:
        lines.append(f"No real case of this setting; sizes of `{s.sizes_from}` used as reference.")
    lines.append("")
    for note in SETTING_NOTES.get(s.key, ()):
        lines.append(f"* {note}")
    if s.key in SETTING_NOTES:
        lines.append("")
    lines += [*_check_table(rep), ""]
    if rep.batch1:
        lines += [
            "Batch 1 at the probe (harness against the rows evaluated at b = 1; see "
            "[exceptions](#exceptions-and-harness-artefacts)):",
            "",
            "| figure | harness, b=1 | rows at b=1 | harness - rows |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | {m:,} | {r:,} | {m - r:,} |" for n, m, r in rep.batch1]
        lines.append("")
    if rep.real_cpu:
        same = all(fake == real for _, fake, real in rep.real_cpu)
        lines.append(
            "Real CPU tensors at the probe size: "
            + ("identical to the fake run in every figure." if same else "")
        )
        if not same:
            lines += ["", "| figure | fake | real |", "|---|---|---|"]
            lines += [f"| {n} | {f:,} | {r:,} |" for n, f, r in rep.real_cpu]
        lines.append("")
    if rep.saved_layer or rep.saved_other:
        for group in _per_layer_formula(rep.saved_layer):
            rows = [r for r in rep.saved_layer if r.group == group]
            lines += [
                f"**Saved for backward, per layer** (`{group}.*`, ×{layer_symbol(group)}):",
                "",
            ]
            lines += _table(rows, True)
            lines += ["", f"Per layer = {_layer_formula_text(rows, group)} bytes.", ""]
        lines += ["**Saved for backward outside the layers:**", ""]
        lines += _table(rep.saved_other, False)
        lines += ["", f"Outside the layers = `{fmt_expr(rows_total(rep.saved_other))}` bytes.", ""]
    if rep.autocast:
        lines += ["**Autocast weight copies saved** (bf16 copies of fp32 parameters):", ""]
        lines += _table(rep.autocast, False)
        lines += ["", f"Total = `{fmt_expr(rows_total(rep.autocast))}` bytes.", ""]
    if rep.model_inputs:
        lines += ["**Model inputs saved** (they exist anyway; not in the activation total):", ""]
        lines += [*_table(rep.model_inputs, False), ""]
    ckpt = rep.ckpt_layer + rep.ckpt_other
    if ckpt:
        lines += [
            "**Gradient checkpointing: what the checkpoints hold between forward and "
            "backward** (distinct storages passed to the checkpointed layers):",
            "",
        ]
        lines += _table(ckpt, False, "held as")
        lines += ["", f"Total = `{fmt_expr(rows_total(ckpt))}` bytes.", ""]
    for label, rows in (("after prefill", rep.kv_prefill), ("after decode", rep.kv_decode)):
        if rows:
            lines += [f"**KV cache {label}** (distinct storages):", ""]
            lines += _table(rows, False, "tensor")
            lines += ["", f"Total = `{fmt_expr(rows_total(rows))}` bytes.", ""]
    for phase, moments in rep.moments.items():
        lines += [f"### {number}.{phase}: live set at the peak", ""]
        for moment in moments:
            lines += [*_moment_lines(moment, rep), ""]
    return "\n".join(lines)


def summary_table(reports: list[SettingReport]) -> list[str]:
    """One line per setting: the saved-tensor formulas."""
    lines = [
        "| # | setting | saved per layer (bytes) | saved outside the layers (bytes) "
        "| checkpoint-held (bytes) |",
        "|---|---|---|---|---|",
    ]
    for number, rep in enumerate(reports, 1):
        key = rep.run.setting.key
        if rep.kv_prefill:
            kv = fmt_expr(rows_total(rep.kv_prefill))
            lines.append(f"| {number} | `{key}` | KV cache after prefill: `{kv}` | | |")
            continue
        groups = _per_layer_formula(rep.saved_layer)
        per_layer = "; ".join(
            (f"{g.split('.')[0]}: " if len(groups) > 1 else "")
            + _layer_formula_text(rep.saved_layer, g)
            for g in groups
        )
        ckpt = rep.ckpt_layer + rep.ckpt_other
        held = f"`{fmt_expr(rows_total(ckpt))}`" if ckpt else ""
        lines.append(
            f"| {number} | `{key}` | {per_layer} | `{fmt_expr(rows_total(rep.saved_other))}` "
            f"| {held} |"
        )
    return lines


def probe_table() -> list[str]:
    lines = ["| symbol | meaning | probe |", "|---|---|---|"]
    meanings = {
        "L": "layers (T5 encoder layers)",
        "L_dec": "T5 decoder layers",
        "b": "batch",
        "a": "attention heads (Llama-family probes: 8)",
        "a_kv": "key/value heads",
        "E": "experts",
        "k": "experts per token",
        "s": "tokens (T5 encoder; ViT patches + 1; inference prompt)",
        "t": "T5 decoder tokens",
        "W": "sliding window (19 when s > W, 43 when s <= W)",
        "h": "hidden size",
        "d": "head dim (Llama-family and T5 probes: 22, so a·d != h)",
        "f": "MLP intermediate size",
        "r": "LoRA rank",
        "V": "vocabulary",
        "c": "classes",
        "P": "learned positions (GPT-2, BERT)",
        "T": "token types (BERT)",
        "B": "relative-position buckets (T5)",
        "C": "image channels",
        "I": "image side",
        "p": "patch side",
        "q": "patches per side, I/p (s = q² + 1)",
    }
    probe = {**PROBE, "C": 3, "q": PROBE["I"] // PROBE["p"]}
    for name in SYMBOL_NAMES:
        lines.append(f"| `{name}` | {meanings[name]} | {probe.get(name, '')} |")
    return lines


def render(reports: list[SettingReport]) -> str:
    parts = [REPORT_HEAD.strip(), "", *probe_table(), "", READING.strip(), ""]
    parts += [
        "## Summary: saved for backward",
        "",
        *summary_table(reports),
        "",
        SUMMARY_NOTE.strip(),
        "",
    ]
    parts += [FINDINGS.strip(), ""]
    for number, rep in enumerate(reports, 1):
        parts.append(render_setting(rep, number))
    return "\n".join(parts).rstrip() + "\n"


# Report text -------------------------------------------------------------------------

REPORT_HEAD = """
# Inventory: what each model family saves for backward and holds at each peak

Every tensor that a training step saves for backward, and every tensor live at the peak
of each phase, written in symbols, for the model families and settings of the accuracy
suite. `inventory.py` runs the harness's own step (`runner._training_step`; prefill and
one decode step as in `runner._measure_inference`) under `FakeTensorMode` on the CPU, at
probe sizes where every dimension is a different number, so that each shape can be read
back in symbols. The rows of each setting are summed and must equal the harness's
measured bytes to the byte at the probe size; the same formulas are then evaluated at a
real case of `measured.json` and compared with its measured bytes.

`python -m benchmarks.accuracy.inventory --write --real` rewrites this file (under two
minutes on two cores); without `--write` it prints the checks only.

## Method

* **Saved tensors**: the harness's `SavedTensorRecorder` (`saved_tensors_hooks` around
  forward and loss, storages de-duplicated, parameters and buffers excluded, autocast
  weight copies and model inputs apart). Each storage is listed once, under the first
  call that saved it.
* **Module path**: forward pre-hooks and forward hooks (`always_call=True`) on every named
  module keep a stack of running modules; the checkpoint wrapper also pushes the layer
  while `torch.utils.checkpoint` runs or replays it. Paths are shown relative to the layer
  container (`transformer.h.*`, `model.layers.*`, `encoder.block.*`...). A storage saved
  only in layer 0 (one tensor handed to every layer, or T5's relative-position buckets)
  is listed outside the layers with "in layer 0 only".
* **Saving call**: a `TorchFunctionMode` records the torch-level call being run when the
  pack hook fires (the outermost one: the mode is off inside its own handler), e.g.
  `F.linear`, `torch.matmul`, `Tensor.float`, `F.cross_entropy`. After every call the new
  autograd nodes behind its outputs are walked once and their `_saved_*` fields read,
  which gives the node(s) holding each storage (`MmBackward0`, `SoftmaxBackward0`...).
* **Storage shape**: the shape of the op result that first returned the storage, replaced
  by a later full-size view with more non-unit dimensions (`(b·s, h)` becomes
  `(b, s, h)`). "saved as view" gives the shape the saving call saw. Bytes are storage
  bytes, so a saved slice of a larger tensor costs the whole storage.
* **Live sets**: the tracker records every storage with the op, call, module path and
  phase that made it, and in backward the autograd node running
  (`torch._C._current_autograd_node()`, named after the forward code through the node's
  `metadata`). Each phase keeps the live set at every local maximum, one per moment
  (op and module path of the last allocation before memory fell; in the first or last
  layer, or outside the layers). Each live set is split into parameters, gradients (the
  storages that end as `param.grad`), optimizer state, saved activations, checkpoint
  inputs, KV cache and transients (everything else), written in symbols with the layer
  counts generalised (`L`, `L-1`, fixed counts). The tables show the moments that are
  the maximum at the probe, at the real case, or at the real case with 4× longer or
  shorter sequences and with batch 1 (or 8): the phase's peak is the largest of them.
  `_foreach_*` results are named after the parameter at the same list position.

## Probe sizes

Each number is used once, and no two listed dimension expressions share a value (checked
per setting). Changes from the suggested sizes and why: `b = 5` (with `b = 3`,
`b·a = d/2 = 12` and `b` = image channels); `L = 4` (with `L = 2` or `3` the sets "all
layers but one" and "the last two" coincide); Llama-family `a = 8` with `a_kv = 2` (so
that eager GQA's `a/a_kv = 4` differs from `a_kv`); Llama-family and T5 head dim `22`
(so that `a·d` differs from `h`: query, attention-output and `o_proj` widths are `a·d`);
`E = 7, k = 3` (top-k 2 would equal `a_kv`); `r = 13`, `c = 17` (distinct from all).
"""

SUMMARY_NOTE = """
Total saved = `L ×` per layer (T5: `L ×` encoder + `L_dec ×` decoder) + `(L-1) ×` the part
marked "layers 1 to L-1" (LoRA, rule 16) + outside the layers.
With checkpointing, the per-layer saved row is the layer's positional input, saved by the
checkpoint itself (rule 14): the same storages as the `L·itemsize·b·s·h` term of the
checkpoint-held column. What the checkpoints hold beyond the saved set is only what is
bound into the layer call by keyword: Llama-family `4·s·d + 8·s` (rotary cos/sin in bf16,
int64 position ids); GPT-2 none (its mask is a positional input and its position ids are
saved by `wpe`); Mistral past the window adds its `(1, 1, s, s)` bool mask (`s²`).
Memory between forward and backward = saved + that remainder.
"""

READING = """
Reading the tables: `bytes each` is itemsize × dimensions; `per layer` the number of
such storages in one layer; a `count` of `L` or `L - 1` means one per layer of that many
layers. Formulas are expanded polynomials in the symbols above (`s²` is `s·s`). GPT-2,
BERT and ViT write `a·d` as `h`.
"""

FINDINGS = """
## Rules behind the rows, with sources

Paths are in transformers 5.24.0, peft 0.21.0 and torch 2.13.0 unless a repository is
named.

1. **Causal-LM loss** (`transformers/loss/loss_utils.py:61-66`, `ForCausalLMLoss`):
   `logits.float()` makes an fp32 copy `(b, s, V)` of 16-bit logits (a no-op for fp32
   logits); `F.pad(labels, (0, 1), -100)` makes `(b, s+1)` int64;
   `labels[..., 1:].contiguous()` makes the `(b, s)` int64 target. `F.cross_entropy` is
   `log_softmax` + `nll_loss`: `LogSoftmaxBackward0` saves its fp32 result `(b·s, V)`,
   which `NllLossBackward0` also saves as `self` (one storage), plus the target and the
   fp32 scalar `total_weight`. Saved: `4·b·s·V + 8·b·s + 4`. Loss-phase peak adds the
   logits (still referenced by the model's output until the loss returns: `2·b·s·V`
   bf16 or `4·b·s·V` fp32), the fp32 copy (bf16 models), the padded labels and the loss.
   The first backward step is a peak candidate in every causal-LM setting (the backward
   peak of most real cases): `nll_loss_backward` makes an fp32 `(b·s, V)` gradient and
   `_log_softmax_backward_data` another fp32 `(b, s, V)` while the saved log-softmax is
   alive: `12·b·s·V` bytes of fp32 vocabulary tensors at once (target and
   `total_weight` already released).
2. **Masked-LM and classification losses** (`ForMaskedLMLoss`, `F.cross_entropy` in
   `BertForSequenceClassification`, `ViTForImageClassification`): no shift and no copy of
   the labels (the target is the model input); fp32 log-softmax `(b·s, V)` or `(b, c)`
   plus the scalar.
3. **Dropout on the CPU saves a full-width mask** (`aten/src/ATen/native/Dropout.cpp` in
   pytorch/pytorch: `dropout` takes `native_dropout` only if `is_fused_kernel_acceptable`,
   i.e. CUDA/XPU/lazy/privateuse1 tensors; otherwise `_dropout_impl` multiplies by a
   `noise` tensor of the input's dtype, which `MulBackward0` saves). Every
   `F.dropout → MulBackward0` row is therefore `itemsize·shape` here; on CUDA
   `native_dropout` saves a bool mask (`NativeDropoutBackward0`, 1 byte per element).
   The dropped output saved by the next op is the same on both. With `p = 0` dropout
   makes and saves nothing.
4. **`gelu_new`** (`transformers/activations.py:59-66`, `NewGELUActivation`,
   `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`): `PowBackward0` saves `x` (the `c_fc`
   output), `TanhBackward0` its result, the last `*` both operands (`0.5·x` and
   `1 + tanh`), and `c_proj` the product: five `(b, s, f)` tensors per layer. `F.gelu`
   (BERT, ViT) saves its input only: two with the next linear's input.
5. **Eager attention through `torch.matmul`** (GPT-2 `modeling_gpt2.py:55-75`, BERT, T5,
   ViT eager): 4-D `matmul` runs as `bmm` on `expand().reshape()` operands; an operand
   that is not a contiguous `(b·a, ., .)` block is copied, and `BmmBackward0` saves the
   operand it used. Q (a strided view of the projection output) is copied; in the
   decoders K and V are already contiguous copies made by the KV cache (see rule 8), and
   BERT/T5/ViT copy all three: `3·itemsize·b·s·h` either way. The scores path saves the
   softmax result (`SoftmaxBackward0`), the dropout mask and the dropped probabilities
   (second `bmm`): `3·itemsize·b·a·s²`. The attention output is copied back to
   `(b, s, a, d)` (`transpose` + `reshape`/`contiguous`) and saved by the output
   projection. At **b = 1**, GPT-2's Q view reshapes to `(a, s, d)` without a copy, so the
   whole `(s, 3h)` `c_attn` output is saved instead (see exceptions).
6. **GPT-2's eager mask and softmax dtype** (`transformers/masking_utils.py:552-617`,
   `eager_mask`: `torch.where(mask, 0, min_dtype)`): a `(b, 1, s, s)` float mask in the
   parameters' dtype, made once per forward (a forward transient). Under amp the scores
   are bf16 but the mask is fp32, so `scores + mask` is fp32 and so are the saved
   softmax (`4·b·a·s²`); `.type(value.dtype)` makes the bf16 probabilities for dropout.
   On CUDA, autocast's fp32 list would also make the softmax fp32 (on the CPU it does
   not). With checkpointing the mask is a positional layer input: kept once, `4·b·s²`.
7. **Llama eager attention** (`modeling_llama.py:180-202`): `repeat_kv` (`:168`) copies
   K and V to `(b, a_kv, a/a_kv, s, d)` (both saved, `2·2·b·a·s·d`); `softmax(...,
   dtype=float32)` saves an fp32 result (`4·b·a·s²`) and `.to(query.dtype)` a bf16 copy
   that the second `matmul` saves (`2·b·a·s²`); attention dropout 0 saves nothing. With
   `a_kv = a`, `repeat_kv` returns its input and the copies vanish (Llama-2-7B).
8. **SDPA on the CPU** (`_scaled_dot_product_flash_attention_for_cpu`,
   `ScaledDotProductFlashAttentionForCpuBackward0`): saves q, k, v, the output and an
   fp32 logsumexp `(b, a, s)`. The output is allocated `(b, s, a, d)` and returned
   transposed, so the output projection's input is a view of it (one storage, two
   savers). **Training builds a KV cache too**: the configs' `use_cache` is True and
   only gradient checkpointing turns it off, so each decoder layer's
   `DynamicLayer.update` returns `torch.cat([empty, k])` / `torch.cat([empty, v])`,
   contiguous copies `(b, a_kv, s, d)`, and those are what attention saves (the rotary k
   and the `v_proj` output are then freed; the bytes are the same as without a cache).
   Llama-family q is the rotary output `(b, a, s, d)`; GQA goes through `enable_gqa` (no
   `repeat_kv`) unless a mask is passed (`transformers/integrations/sdpa_attention.py:
   42-51`, `use_gqa_in_sdpa`): with a sliding-window mask (s > W) `repeat_kv` copies are
   made and the CPU kernel turns the bool mask into a `(b, 1, s, s)` additive mask
   (`where`). GPT-2 (fused `c_attn`): q is a view of the `(b, s, 3h)` output, which
   therefore stays saved whole. BERT/ViT: q, k, v are the three linear outputs, saved as
   they are.
9. **LayerNorm** (`F.layer_norm` → `NativeLayerNormBackward0`): input plus mean and rstd
   `(b, s, 1)` in the input's dtype (fp32 when a bf16 input meets fp32 weights on a real
   CPU; the fake kernel gives bf16: see exceptions).
10. **Eager RMSNorm** (`modeling_llama.py:53-67`, `LlamaRMSNorm`; `T5LayerNorm` the same):
    `hidden_states.to(float32)` makes an fp32 copy saved by `pow` and the `* rsqrt` mul
    (`4·b·s·h` even for bf16 models; for fp32 inputs it is the input itself), `rsqrt`
    saves an fp32 `(b, s, 1)`, and `weight * x.to(input_dtype)` saves the normalised
    16-bit tensor (`2·b·s·h`) only if the weight trains (not under LoRA). The layer's
    16-bit input itself is not saved by the norm.
11. **SwiGLU MLP** (`LlamaMLP`, `modeling_llama.py:152-165`): `gate_proj` and `up_proj`
    save the same input (one storage); `silu` saves the gate output, the product saves
    `silu(g)` and `u`, `down_proj` saves the product: `4·2·b·s·f` in bf16.
12. **Rotary embedding** (`apply_rotary_pos_emb`, `modeling_llama.py:127`): `cos`, `sin`
    `(1, s, d)` are made once per forward in the activation dtype (fp32 under amp) and
    saved by the `q * cos`, `rotate_half(q) * sin` multiplications of every layer: one
    storage each, listed under layer 0.
13. **Residual stream held by Python locals**: `inputs_embeds` stays referenced for the
    whole forward (Llama: a `2·b·s·h` transient at the forward peak; GPT-2: the `wte` and
    `wpe` outputs), and the decoder loop keeps the current layer's input while the layer
    runs (in inference: two `b·s·h` residual tensors at once).
14. **Gradient checkpointing** (`transformers/modeling_layers.py:83-126`,
    `GradientCheckpointingLayer`; `torch/utils/checkpoint.py:842-847`,
    `_CheckpointFrame.save_inputs`): the positional layer inputs are saved through the
    outer saved-tensor hooks, so each layer's input hidden state (`itemsize·b·s·h`) is in
    the saved set; keyword tensors bound into the `partial` (Llama's `position_embeddings`
    cos/sin, `position_ids`) are held by the closure only. In backward the peak holds one
    layer's replayed forward plus its gradients.
15. **Autocast weight copies** (amp): each linear/conv weight is cast to bf16 once per
    forward and saved by its matmul: `2·numel` per weight (not embeddings or norms).
16. **LoRA** (`peft/tuners/lora/layer.py:1074-1101`, `Linear.forward`): the frozen base
    linear saves nothing (no weight gradient, and the input gradient needs only the
    weight); `x = self._cast_input_dtype(x, lora_A.weight.dtype)` makes an fp32 copy of
    the input per adapted module (adapters are fp32: `autocast_adapter_dtype=True`);
    `lora_dropout` (0.05) saves its CPU mask `4·b·s·n_in`; `lora_A` saves the dropped
    input `4·b·s·n_in`; `lora_B` saves `lora_A`'s fp32 output `4·b·s·r`. Per adapted
    module: `8·b·s·n_in + 4·b·s·r` (on CUDA `5·b·s·n_in + 4·b·s·r`). **Layer 0 saves
    less**: the frozen embedding's output needs no gradient, so layer 0's
    `input_layernorm` saves nothing and the dropout masks of the q, k, v adapters that
    read its output are not saved (the MLP adapters read a tensor that already needs a
    gradient). With gradient
    checkpointing peft makes the embedding output require grad
    (`peft/peft_model.py:184-185, 728-742`, `enable_input_require_grads`), and every
    layer is alike; the embedding output is then a leaf that requires grad, so backward
    leaves its `.grad` (`2·b·s·h` bf16) alive through the optimizer step.
17. **Mixtral `grouped_mm` experts** (`transformers/integrations/moe.py:424-`,
    `grouped_mm_experts_forward`; router `modeling_mixtral.py:107-108`): the router linear
    saves its input; `softmax(router_logits.float())` saves an fp32 `(b·s, E)`; `topk`
    saves int64 indices `(b·s, k)`; the renormalisation saves `(b·s, 1)` and `(b·s, k)`
    fp32; sorting and gathering save three int64 `(b·s·k)` index tensors and the int32
    offsets `(E)`; the gate-up `grouped_mm` saves the gathered tokens `(b·s·k, h)`, `silu`
    and the gating product save views of / copies from the `(b·s·k, 2f)` output, the down
    `grouped_mm` its `(b·s·k, f)` input, and the weighting saves `(b·s·k)` fp32 weights and
    the `(b·s·k, h)` expert outputs.
18. **Foreach AdamW** (`torch/optim/adam.py:762`, `_multi_tensor_adam`):
    `torch._foreach_sqrt(exp_avg_sqs)` makes one parameter-sized tensor per trainable
    parameter in the state dtype, all alive at once: the optimizer-step peak is
    parameters + gradients + 2 moments + 4-byte step scalars + one more copy of the
    trainable parameters.
19. **Embedding gradients are dense** `(V, h)`; with tied embeddings the `lm_head` grad and
    the embedding grad are both alive before they are summed into `.grad`.
20. **KV cache** (`transformers/cache_utils.py`): `DynamicLayer.update` stores
    `torch.cat([keys, new])`, a new storage each step; at decode the old and new storages
    of the layer being updated coexist. `DynamicSlidingWindowLayer.update` (`:222-251`)
    keeps `full[:, :, -W+1:]`, a view: after prefill the cache still holds the whole
    `(b, a_kv, s, d)` storage; after the first decode step it holds `(b, a_kv, W, d)`
    storages (logically `W - 1` tokens). Each sliding layer also makes an int64 scalar
    (`_sliding_window_tensor`, `:208`).

## Exceptions and harness artefacts

* **Batch 1** (every causal-LM setting, checked at the probe): `labels[..., 1:]` of a
  `(1, s+1)` tensor is already contiguous, so `.contiguous()` returns a view and the
  saved target is the padded `(1, s+1)` storage: saved bytes `+8`, and the loss-phase
  peak has no `(b, s)` int64 copy: `-8·s`. This is the whole difference between the
  formulas and the real b = 1 cases of `measured.json` (`DIFF -8` saved, `+8·s` loss
  peak). GPT-2 eager (fp32, amp, bf16) at b = 1 also saves the whole `(s, 3h)` `c_attn`
  output instead of a Q copy: `+2·itemsize·s·h` per layer (fp32: `+8·s·h`).
* **LoRA with gradient checkpointing: the harness peaks include `4·b·s·h` bytes held by
  MemTracker.** With `PhaseMemTracker` active, the bf16 embedding output of the previous
  step and its gradient (two `(b, s, h)` bf16 tensors: the inputs of the first
  checkpointed layer, made to require grad by peft) stay referenced across steps; without
  MemTracker (this run's own tracker) only the gradient outlives backward, and only until
  the end of the optimizer step (rule 16). The rows equal this run; the
  harness's probe and real peaks are higher by `4·b·s·h` (real case `b=4, s=2048,
  h=2048`: 64 MiB). Saved bytes are unaffected.
* **bf16 LayerNorm input with fp32 weights** (BERT amp, MLM head): the real CPU kernel
  returns fp32 mean/rstd, the fake kernel bf16: real saves `4·b·s` more bytes than the
  fake harness (found by `--real`).
* **Mistral training at s <= W** is identical to Llama; at s > W the mask `(1, 1, s, s)`
  bool is a checkpoint-held layer input (`s²` bytes) and SDPA gets a mask (setting 24).
"""

SETTING_NOTES: dict[str, tuple[str, ...]] = {
    "gpt2.fp32.eager": (
        "Per layer at f = 4h: `12·b·a·s² + 120·b·s·h + 16·b·s` = sbh·(120 + 12·a·s/h) + "
        "16·b·s; the fp32 Korthikanti layer is sbh·(66 + 9·a·s/h) (1-byte masks, `F.gelu`). "
        "The difference: full-width CPU dropout masks (3 per layer), the Q/K/V bmm operands "
        "saved as separate copies, and gelu_new's five `(b, s, f)` tensors.",
    ),
    "gpt2.fp32.sdpa": (
        "Same as eager minus the `(b, a, s, s)` tensors, plus the SDPA rows of rule 8.",
    ),
    "gpt2.fp32.eager.gc": (
        "Forward saves only the checkpoint inputs and the non-layer rows; the `(b, 1, s, s)` "
        "fp32 eager mask is a positional input of every layer (saved once).",
    ),
    "bert.cls.fp32.eager": (
        "The pooler reads `hidden[:, 0]`, a view: the whole last-layer `(b, s, h)` output "
        "stays saved.",
    ),
    "lora.qkvo.bf16.sdpa.gc": (
        "Peaks: the harness column includes the MemTracker artefact (`+4·b·s·h`); "
        "this run's column and the rows agree.",
    ),
    "lora.all.bf16.sdpa.gc": (
        "Peaks: the harness column includes the MemTracker artefact (`+4·b·s·h`); "
        "this run's column and the rows agree.",
    ),
    "llama.infer.sdpa": (
        "The real case is Llama-2-7B (multi-head attention, untied), hence the untied probe; "
        "with SDPA, GQA and MHA have the same rows.",
    ),
    "llama.infer.eager": (
        "GQA eager inference: `repeat_kv` copies of K and V; compare setting 22 (MHA).",
    ),
    "mistral.infer.sdpa": (
        "Past the window, prefill passes a bool `(1, 1, s, s)` mask to SDPA, so GQA uses "
        "`repeat_kv` copies and the CPU kernel makes a `(b, 1, s, s)` additive mask.",
    ),
}


# Entry point -------------------------------------------------------------------------


def summary(rep: SettingReport) -> str:
    run = rep.run
    lines = [f"== {run.setting.key}: {run.setting.title}"]
    if run.namer.unknown:
        lines.append(f"   unnamed dimensions: {sorted(run.namer.unknown)}")
    for c in rep.checks:
        probe = "ok" if c.probe_measured == c.probe_rows else "MISMATCH"
        if c.probe_run is not None and c.probe_run != c.probe_measured:
            probe += f" (instrumented run {c.probe_run}: " + (
                "ok)" if c.probe_run == c.probe_rows else "MISMATCH)"
            )
        real = ""
        if c.real_measured is not None:
            diff = None if c.real_formula is None else c.real_formula - c.real_measured
            real = f" | real {c.real_measured} formula {c.real_formula} " + (
                "ok" if diff == 0 else f"DIFF {diff}"
            )
        lines.append(f"   {c.name}: probe {c.probe_measured} rows {c.probe_rows} {probe}{real}")
    for name, measured, rows in rep.batch1:
        lines.append(f"   b=1 {name}: harness {measured} rows {rows} diff {measured - rows}")
    for name, fake, real in rep.real_cpu:
        flag = "same" if fake == real else f"DIFF {real - fake}"
        lines.append(f"   real CPU tensors {name}: fake {fake} real {real} {flag}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run settings whose key contains one of these")
    parser.add_argument("--write", action="store_true", help="rewrite inventory.md")
    parser.add_argument(
        "--real", action="store_true", help="also run each probe case with real CPU tensors"
    )
    args = parser.parse_args(argv)
    chosen = [s for s in settings() if not args.only or any(o in s.key for o in args.only)]
    measured = load_measured()
    reports = []
    for setting in chosen:
        rep = build_report(run_setting(setting), measured)
        if args.real:
            rep.real_cpu = real_cpu_checks(rep)
        reports.append(rep)
        print(summary(rep), flush=True)
    if args.write:
        REPORT.write_text(render(reports))
    return 0 if all(rep.ok for rep in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
