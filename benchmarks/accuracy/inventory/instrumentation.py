"""Instrumentation: record every storage, who made it, who saved it, and each phase's
live set, while the harness's own step runs under FakeTensorMode."""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._pytree import tree_flatten
from transformers.modeling_layers import GradientCheckpointingLayer

from benchmarks.accuracy.inventory.settings import Setting
from benchmarks.accuracy.inventory.symbols import (
    H_IS_AD,
    PROBE,
    DimNamer,
    split_path,
    symbol_values,
)

from ..runner import (
    _logits_hook,
    _training_step,
    case_inputs,
    make_model,
    make_optimizer,
    run_case,
    tensor_mode,
)
from ..tracker import LiveBytesTracker, SavedTensorRecorder, StorageRecord, rounded, storage_key


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
