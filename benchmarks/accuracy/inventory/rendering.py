"""inventory.md from the reports: the tables and formulas, set into the Markdown template
(inventory_template.md) and the per-setting notes (inventory_notes.md)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import sympy as sp

from benchmarks.accuracy.inventory.checks import (
    CATEGORIES,
    Moment,
    Row,
    SettingReport,
    rows_total,
    rows_value,
)
from benchmarks.accuracy.inventory.instrumentation import Snapshot
from benchmarks.accuracy.inventory.symbols import (
    PROBE,
    SYMBOL_NAMES,
    fmt_bytes,
    fmt_count,
    fmt_dims,
    fmt_expr,
    layer_symbol,
    split_path,
)

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
    for note in setting_notes().get(s.key, ()):
        lines.append(f"* {note}")
    if s.key in setting_notes():
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


TEMPLATE = Path(__file__).with_name("inventory_template.md")
NOTES = Path(__file__).with_name("inventory_notes.md")


def _prose(path: Path) -> str:
    """A Markdown file without its leading comment."""
    text = path.read_text(encoding="utf-8")
    return re.sub(r"\A<!--.*?-->\n", "", text, flags=re.S)


@functools.cache
def setting_notes() -> dict[str, tuple[str, ...]]:
    """The notes of inventory_notes.md by setting key: one per paragraph."""
    notes: dict[str, list[str]] = {}
    key = None
    for block in re.split(r"\n\s*\n", _prose(NOTES)):
        block = " ".join(block.split())
        if block.startswith("## "):
            key = block[3:]
            notes[key] = []
        elif block and key is not None:
            notes[key].append(block)
    return {k: tuple(v) for k, v in notes.items()}


def render(reports: list[SettingReport]) -> str:
    text = _prose(TEMPLATE)
    for name, lines in (
        ("probe_table", probe_table()),
        ("summary_table", summary_table(reports)),
        ("settings", [render_setting(rep, n) for n, rep in enumerate(reports, 1)]),
    ):
        text = text.replace("{" + name + "}", "\n".join(lines))
    return text.rstrip() + "\n"


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
