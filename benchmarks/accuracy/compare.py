"""Compare nnmem's estimates with the memory measured in ``measured.json``.

    python -m benchmarks.accuracy.compare            # print the table
    python -m benchmarks.accuracy.compare --write    # rewrite accuracy.json and accuracy.md
    python -m benchmarks.accuracy.compare --gaps     # rewrite known_gaps.json from the misses

Needs nothing but nnmem: no torch. Each measured case becomes an nnmem scenario in the
JSON schema (``scenario_for``); a case the scenario schema cannot express yet is kept in
the table with the reason. ``tests/test_accuracy.py`` checks every row against the
tolerances below, with the rows listed in ``known_gaps.json`` expected to miss.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nnmem.errors import NnmemError
from nnmem.estimate import Estimate, estimate
from nnmem.scenario import parse

HERE = Path(__file__).resolve().parent
MEASURED = HERE / "measured.json"
KNOWN_GAPS = HERE / "known_gaps.json"
TABLE_JSON = HERE / "accuracy.json"
TABLE_MD = HERE / "accuracy.md"

# Relative tolerances: model states are exact arithmetic, activations and peaks are not.
TOLERANCE = {
    "weights": 0.005,
    "gradients": 0.005,
    "optimizer_state": 0.005,
    "kv_cache": 0.005,
    "activations": 0.05,
    "peak": 0.05,
}
MEDIAN_PEAK_TOLERANCE = 0.03
TRAINING_METRICS = ("weights", "gradients", "optimizer_state", "activations", "peak")
INFERENCE_METRICS = ("weights", "kv_cache", "activations", "peak")


class Unsupported(Exception):
    """The case uses something the scenario schema cannot describe yet."""


@dataclass(frozen=True)
class Row:
    """One measured figure next to nnmem's estimate of it."""

    case: str
    metric: str
    measured: int
    estimated: int | None
    note: str

    @property
    def error(self) -> float | None:
        """Relative error of the estimate, (estimated - measured) / measured."""
        if self.estimated is None or self.measured == 0:
            return None
        return (self.estimated - self.measured) / self.measured

    @property
    def within_tolerance(self) -> bool:
        """Whether the estimate is within the metric's tolerance."""
        if self.estimated is None:
            return False
        if self.measured == 0:
            return self.estimated == 0
        error = self.error
        return error is not None and abs(error) <= TOLERANCE[self.metric]


def load_cases(path: Path = MEASURED) -> list[dict[str, Any]]:
    """The measured cases, sorted by id."""
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["cases"]
    return sorted(cases, key=lambda case: case["id"])


def measured_values(case: Mapping[str, Any]) -> dict[str, int]:
    """The figures a case measured, named like the estimate's components."""
    weights = int(case["parameters"]["bytes"])
    if case["description"]["mode"] == "inference":
        return {
            "weights": weights,
            "kv_cache": int(case["kv_cache"]["after_prefill"]["bytes"]),
            "activations": int(case["prefill"]["peak_minus_weights_and_kv_bytes"]),
            "peak": int(case["peak"]["bytes"]),
        }
    saved = case["saved_for_backward"]
    checkpoint = case.get("checkpointing") or {}
    checkpoint_only = int(checkpoint.get("checkpointed_input_bytes", 0)) - int(
        checkpoint.get("checkpointed_input_bytes_also_saved", 0)
    )
    return {
        "weights": weights,
        "gradients": int(case["gradients"]["bytes"]),
        "optimizer_state": int(case["optimizer"]["state_bytes"]),
        "activations": int(saved["activation_bytes"]) + checkpoint_only,
        "peak": int(case["peak"]["bytes"]),
    }


_PRECISION = {"fp32": "fp32", "amp_bf16": "bf16"}
_OPTIMIZER = {"adamw": "adamw", "sgd_momentum": "sgd_momentum", "sgd": "sgd"}
_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model")
_DEPTH_KEYS = ("num_hidden_layers", "n_layer")


def scenario_for(case: Mapping[str, Any]) -> dict[str, Any]:
    """The case as an nnmem scenario (JSON schema), or Unsupported with the reason."""
    d = case["description"]
    config = d["model"]["config"]
    if d["model"]["family"] in {"resnet", "t5"}:
        raise Unsupported(f"the {d['model']['family']} architecture needs the architecture mode")
    if d.get("lora"):
        raise Unsupported("LoRA fine-tuning")
    if d.get("gradient_checkpointing"):
        raise Unsupported("gradient checkpointing")
    width = next((config[k] for k in _WIDTH_KEYS if k in config), None)
    depth = next((config[k] for k in _DEPTH_KEYS if k in config), None)
    if width is None or depth is None:
        raise Unsupported("no hidden size or layer count in the config")
    scenario: dict[str, Any] = {
        "model": "generic",
        "params_millions": case["parameters"]["total"] / 1e6,
        "hidden_size": width,
        "num_layers": depth,
        "batch_size": d["batch_size"],
    }
    if d["mode"] == "inference":
        return scenario | {
            "mode": "inference",
            "precision": "bf16",
            "seq_len": d["inference"]["context_len"],
        }
    if d["precision"] not in _PRECISION:
        raise Unsupported(f"{d['precision']} precision (pure 16-bit weights and states)")
    optimizer = d["optimizer"]["name"]
    if optimizer not in _OPTIMIZER:
        raise Unsupported(f"the {optimizer} optimizer")
    seq_len = d["seq_len"]
    if d["model"]["family"] == "vit":
        seq_len = (d["image_size"] // config["patch_size"]) ** 2 + 1  # patches + class token
    return scenario | {
        "mode": "training",
        "precision": _PRECISION[d["precision"]],
        "optimizer": _OPTIMIZER[optimizer],
        "seq_len": seq_len,
    }


def estimated_values(result: Estimate) -> dict[str, int]:
    """The estimate's figures under the measured names."""
    values = {c.key: c.bytes for c in result.components}
    values["peak"] = result.total_bytes
    return values


def compare_case(case: Mapping[str, Any]) -> list[Row]:
    """One row per measured figure of ``case``."""
    measured = measured_values(case)
    try:
        result = estimate(parse(scenario_for(case)))
    except Unsupported as reason:
        return [
            Row(case["id"], m, v, None, f"not expressible: {reason}") for m, v in measured.items()
        ]
    except NnmemError as error:  # a mapping bug: report it in the table, fail the test
        return [
            Row(case["id"], m, v, None, f"invalid scenario: {error}") for m, v in measured.items()
        ]
    estimated = estimated_values(result)
    return [
        Row(
            case["id"],
            metric,
            value,
            estimated.get(metric),
            "" if metric in estimated else "not modeled",
        )
        for metric, value in measured.items()
    ]


def compare_all(cases: Iterable[Mapping[str, Any]] | None = None) -> list[Row]:
    """Every row of every case."""
    return [
        row for case in (load_cases() if cases is None else cases) for row in compare_case(case)
    ]


def median_peak_error(rows: Iterable[Row]) -> float | None:
    """The median absolute relative error of the peak over the cases nnmem can express."""
    errors = [abs(r.error) for r in rows if r.metric == "peak" and r.error is not None]
    return statistics.median(errors) if errors else None


def gaps(rows: Iterable[Row]) -> dict[str, dict[str, str]]:
    """The rows that miss their tolerance, with why, as known_gaps.json stores them."""
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        if not row.within_tolerance:
            reason = (
                row.note
                or f"estimate off by {row.error:+.1%} (tolerance ±{TOLERANCE[row.metric]:.1%})"
            )
            found.setdefault(row.case, {})[row.metric] = reason
    return found


def load_known_gaps(path: Path = KNOWN_GAPS) -> dict[str, dict[str, str]]:
    """The rows expected to miss, by case and metric."""
    data: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))["gaps"]
    return data


def _gib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**30:.3f}"


def markdown(rows: list[Row]) -> str:
    """The table as Markdown: case, metric, measured, estimated, error."""
    lines = [
        "| case | metric | measured (GiB) | estimated (GiB) | error | within tolerance |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        error = "—" if r.error is None else f"{r.error:+.1%}"
        verdict = "yes" if r.within_tolerance else (r.note or "no")
        cells = [r.case, r.metric, _gib(r.measured), _gib(r.estimated), error, verdict]
        lines.append("| " + " | ".join(cells) + " |")
    median = median_peak_error(rows)
    shown = "—" if median is None else f"{median:.1%}"
    lines += ["", f"Median absolute peak error over the expressible cases: {shown}."]
    return "\n".join(lines) + "\n"


def table_json(rows: list[Row]) -> str:
    """The table as JSON for the site's accuracy page."""
    data = {
        "tolerance": TOLERANCE,
        "median_peak_tolerance": MEDIAN_PEAK_TOLERANCE,
        "median_peak_error": median_peak_error(rows),
        "rows": [
            asdict(r) | {"error": r.error, "within_tolerance": r.within_tolerance} for r in rows
        ],
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; with --write or --gaps, rewrite the committed files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite accuracy.json and .md")
    parser.add_argument("--gaps", action="store_true", help="rewrite known_gaps.json")
    args = parser.parse_args(argv)
    rows = compare_all()
    if args.write:
        TABLE_JSON.write_text(table_json(rows), encoding="utf-8")
        TABLE_MD.write_text(markdown(rows), encoding="utf-8")
    if args.gaps:
        body = {"gaps": gaps(rows)}
        KNOWN_GAPS.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if not (args.write or args.gaps):
        print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
