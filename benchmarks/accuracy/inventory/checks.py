"""From recorded storages to symbolic rows, and the checks of those rows against the
harness's measured bytes, at the probe size and at a real case."""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import sympy as sp

from benchmarks.accuracy.inventory.instrumentation import Rec, Run, Snapshot
from benchmarks.accuracy.inventory.symbols import (
    MEASURED,
    PHASES_INFERENCE,
    PHASES_TRAINING,
    PROBE,
    SYM,
    DimNamer,
    _count_value,
    _label_value,
    expr_of,
    fmt_dims,
    fmt_expr,
    layer_symbol,
    rel_path,
    split_path,
    symbol_values,
)

from ..runner import (
    run_case,
)


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
