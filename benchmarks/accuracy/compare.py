"""Compare nnmem's estimates with the memory measured in ``measured.json``.

    python -m benchmarks.accuracy.compare            # print the table
    python -m benchmarks.accuracy.compare --write    # rewrite accuracy.json and accuracy.md
    python -m benchmarks.accuracy.compare --gaps     # rewrite known_gaps.json from the misses

Needs nothing but nnmem: no torch. The CPU fake-tensor cases of ``measured.json`` make
``accuracy.json``; the real GPU runs of ``measured_cuda.json`` make
``accuracy_cuda.json`` (same row schema) and the CUDA section of ``accuracy.md``.
Each measured case becomes an nnmem scenario in the JSON schema (``scenario_for``); a
case the scenario schema cannot express yet is kept in the table with the reason.
``tests/test_accuracy.py`` checks every row against the tolerances below, with the rows
listed in ``known_gaps.json`` expected to miss.
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
from nnmem.estimate import estimate
from nnmem.result import Estimate
from nnmem.scenario import Scenario, parse

HERE = Path(__file__).resolve().parent
MEASURED = HERE / "measured.json"
MEASURED_CUDA = HERE / "measured_cuda.json"
KNOWN_GAPS = HERE / "known_gaps.json"
TABLE_JSON = HERE / "accuracy.json"
TABLE_CUDA_JSON = HERE / "accuracy_cuda.json"
TABLE_MD = HERE / "accuracy.md"
# The GPU the CUDA cases ran on, as nnmem's catalog names it (it sets the cuBLAS
# workspace size: 32 MiB per handle on Hopper).
CUDA_GPU_ID = "h200-sxm-141gb"

# Relative tolerances: model states are exact arithmetic, activations and peaks are not.
TOLERANCE = {
    "weights": 0.005,
    "gradients": 0.005,
    "optimizer_state": 0.005,
    "kv_cache": 0.005,
    "activations": 0.05,
    "peak": 0.05,
    # CUDA runs only: the allocator's own counters and the driver's count.
    "allocated_peak": 0.05,  # torch.cuda.max_memory_allocated()
    "reserved_peak": 0.10,  # torch.cuda.max_memory_reserved()
    "device_total": 0.10,  # the process's device memory (cudaMemGetInfo)
}
MEDIAN_PEAK_TOLERANCE = 0.03
TRAINING_METRICS = ("weights", "gradients", "optimizer_state", "activations", "peak")
INFERENCE_METRICS = ("weights", "kv_cache", "activations", "peak")
CUDA_METRICS = ("allocated_peak", "reserved_peak", "device_total")


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
    values = _tensor_values(case)
    if case["description"].get("device") == "cuda":
        values |= _cuda_values(case)
    return values


def _cuda_values(case: Mapping[str, Any]) -> dict[str, int]:
    """The CUDA allocator's peaks and the process's device memory at the end.

    Training reports step 2, inference the larger of prefill and decode; the device
    total is ``cudaMemGetInfo``'s used memory at the end minus what was in use before
    the process touched the GPU: the context, loaded kernels and the allocator's
    reserve (``runner.CudaCounters``, ``measure.cuda_case``).
    """
    cuda = case["cuda"]
    steps = ["step2"] if "step2" in cuda else ["prefill", "decode"]
    before = cuda["process"].get("used_before_init_bytes") or 0
    return {
        "allocated_peak": max(int(cuda[s]["max_memory_allocated"]) for s in steps),
        "reserved_peak": max(int(cuda[s]["max_memory_reserved"]) for s in steps),
        "device_total": int(cuda["used_at_end_bytes"]) - int(before),
    }


def _tensor_values(case: Mapping[str, Any]) -> dict[str, int]:
    """The tensor figures of a CPU or a CUDA case."""
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


_MODEL_TYPE = {
    "gpt2": "gpt2",
    "bert": "bert",
    "t5": "t5",
    "vit": "vit",
    "llama": "llama",
    "mistral": "mistral",
    "mixtral": "mixtral",
    "gemma2": "gemma2",
}
_CNN = {"resnet": "resnet50", "vgg": "vgg16"}
_LORA_TARGETS = {
    frozenset({"q_proj", "v_proj"}): "qv",
    frozenset({"q_proj", "k_proj", "v_proj", "o_proj"}): "attention",
    frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}): (
        "all_linear"
    ),
}


def scenario_for(case: Mapping[str, Any]) -> dict[str, Any]:
    """The case as an nnmem scenario (JSON schema), or Unsupported with the reason.

    The device is the measurement's: on the CPU dropout keeps its noise in the
    activations' type rather than CUDA's one-byte mask, and no CUDA context is counted.
    CUDA cases keep nnmem's default context size and allocator reserve, so the table
    shows how far those defaults are from a real process.
    """
    d = case["description"]
    family = d["model"]["family"]
    scenario: dict[str, Any] = {"device": d.get("device", "cpu"), "batch_size": d["batch_size"]}
    if family in _CNN:
        scenario |= {"model": "cnn", "cnn": _CNN[family], "image_size": d["image_size"]}
    elif family in _MODEL_TYPE:
        config = {
            **d["model"]["config"],
            "model_type": _MODEL_TYPE[family],
            "architectures": [d["model"]["hf_class"]],
        }
        scenario |= {
            "model": "transformer",
            "config": config,
            "attention": d.get("attn_implementation") or "sdpa",
        }
        if d.get("image_size"):
            scenario["image_size"] = d["image_size"]
        if d.get("seq_len"):
            scenario["seq_len"] = d["seq_len"]
        if d.get("decoder_seq_len"):
            scenario["decoder_seq_len"] = d["decoder_seq_len"]
    else:
        raise Unsupported(f"the {family} family")
    if d["mode"] == "inference":
        inference = d["inference"]
        return scenario | {
            "mode": "inference",
            "precision": d["precision"],
            "seq_len": inference["context_len"],
            "new_tokens": inference.get("decode_steps", 1),
            "logits": "all" if inference.get("logits_to_keep") == 0 else "last",
        }
    optimizer = d["optimizer"]
    scenario |= {
        "mode": "training",
        "precision": d["precision"],
        "optimizer": optimizer["name"],
        "optimizer_impl": "foreach" if optimizer.get("foreach") else "for_loop",
        "checkpointing": "full" if d.get("gradient_checkpointing") else "none",
    }
    lora = d.get("lora")
    if lora:
        targets = _LORA_TARGETS.get(frozenset(lora["target_modules"]))
        if targets is None:
            raise Unsupported(f"LoRA on {sorted(lora['target_modules'])}")
        scenario |= {
            "finetune": "lora",
            "lora_rank": lora["r"],
            "lora_dropout": lora.get("dropout", 0.0),
            "lora_targets": targets,
        }
    return scenario


def estimated_values(result: Estimate) -> dict[str, int]:
    """The estimate's figures under the measured names."""
    sizes = result.component_sizes()
    values = {
        "weights": sizes.get("weights", 0),
        "gradients": sizes.get("gradients", 0),
        "optimizer_state": sizes.get("optimizer_state", 0),
        "peak": result.tensor_peak_bytes,
    }
    if result.scenario.mode.value == "inference":
        prefill = next(p for p in result.phases if p.name == "prefill").by_key()
        values["kv_cache"] = prefill.get("kv_cache", 0)
        values["activations"] = prefill.get("activations", 0)
    else:
        values["activations"] = result.saved_activation_bytes
    if result.scenario.device.value == "cuda":
        values["allocated_peak"] = result.allocated_bytes
        values["reserved_peak"] = result.reserved_bytes
        values["device_total"] = result.total_bytes
    return values


def compare_case(case: Mapping[str, Any]) -> list[Row]:
    """One row per measured figure of ``case``."""
    measured = measured_values(case)
    try:
        scenario = parse(scenario_for(case))
        gpu = CUDA_GPU_ID if scenario.device.value == "cuda" else None
        result = estimate(scenario, gpu)
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
    """Every row of every case (the CPU cases of measured.json by default)."""
    return [
        row for case in (load_cases() if cases is None else cases) for row in compare_case(case)
    ]


def compare_cuda() -> list[Row]:
    """Every row of the real GPU runs in measured_cuda.json."""
    return compare_all(load_cases(MEASURED_CUDA))


def cuda_environment(path: Path = MEASURED_CUDA) -> dict[str, Any]:
    """The GPU, driver and library versions of the CUDA runs."""
    env: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["environment"]
    return env


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


def markdown(rows: list[Row], cuda_rows: list[Row] | None = None) -> str:
    """The tables as Markdown: case, metric, measured, estimated, error.

    The CPU table comes first; with ``cuda_rows``, a section on the real GPU runs.
    """
    text = _markdown_table(rows)
    if cuda_rows:
        env = cuda_environment()
        gpu = env.get("cuda", {})
        text += (
            "\n## CUDA runs\n\n"
            f"Real runs on one {gpu.get('gpu', 'GPU')} (driver {gpu.get('driver', '?')}), "
            f"torch {env['torch']}, transformers {env['transformers']}, one process per "
            "case. `allocated_peak` is `torch.cuda.max_memory_allocated()`, compared with "
            "the tensor peak plus the cuBLAS workspaces; `reserved_peak` is "
            "`max_memory_reserved()`, compared with that plus the allocator reserve; "
            "`device_total` is the process's device memory at the end, compared with the "
            "total including the CUDA context (nnmem's defaults: "
            f"{Scenario.cuda_context_mib} MiB context, {Scenario.allocator_overhead_percent}% "
            "reserve).\n\n" + _markdown_table(cuda_rows)
        )
    return text


def _markdown_table(rows: list[Row]) -> str:
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
    cuda_rows = compare_cuda()
    if args.write:
        TABLE_JSON.write_text(table_json(rows), encoding="utf-8")
        TABLE_CUDA_JSON.write_text(table_json(cuda_rows), encoding="utf-8")
        TABLE_MD.write_text(markdown(rows, cuda_rows), encoding="utf-8")
    if args.gaps:
        body = {"gaps": gaps(rows + cuda_rows)}
        KNOWN_GAPS.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if not (args.write or args.gaps):
        print(markdown(rows, cuda_rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
