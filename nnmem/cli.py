"""The command line: flags or a JSON scenario in, a text or JSON estimate out."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from nnmem.errors import NnmemError
from nnmem.estimate import estimate
from nnmem.report import text
from nnmem.scenario import Optimizer, Precision, parse

# Schema key -> the flag that sets it, so errors can name what the user typed.
FLAGS = {
    "params_millions": "--params",
    "hidden_size": "--hidden-size",
    "num_layers": "--layers",
    "mode": "--mode",
    "precision": "--precision",
    "optimizer": "--optimizer",
    "batch_size": "--batch-size",
    "seq_len": "--seq-len",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnmem",
        description="Estimate the GPU memory a neural network needs to train or serve.",
        epilog="Example: python -m nnmem --params 7000 --precision fp16 --mode inference",
    )
    parser.add_argument(
        "--scenario",
        metavar="FILE",
        help="read the scenario from a JSON file ('-' for standard input); flags override it",
    )
    parser.add_argument("--params", metavar="MILLIONS", help="model size in millions of parameters")
    parser.add_argument(
        "--precision", help="one of " + ", ".join(p.value for p in Precision) + " (default fp32)"
    )
    parser.add_argument("--mode", help="training or inference (default training)")
    parser.add_argument(
        "--optimizer",
        help="one of " + ", ".join(o.value for o in Optimizer) + " (default adamw; training)",
    )
    parser.add_argument("--batch-size", metavar="N", help="sequences per step (default 1)")
    parser.add_argument("--seq-len", metavar="N", help="tokens per sequence (default 512)")
    parser.add_argument(
        "--hidden-size", metavar="N", help="hidden dimension h (default: derived from --params)"
    )
    parser.add_argument(
        "--layers", metavar="N", help="number of layers L (default: derived from --params)"
    )
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    return parser


def _scenario_data(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if args.scenario:
        if args.scenario == "-":
            loaded = json.load(sys.stdin)
        else:
            with open(args.scenario, encoding="utf-8") as source:
                loaded = json.load(source)
        if not isinstance(loaded, dict):
            raise NnmemError.single("scenario", "The scenario file must hold a JSON object.")
        data.update(loaded)
    for key, flag in FLAGS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None:
            data[key] = value
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    >>> main(["--params", "110", "--hidden-size", "768", "--layers", "12",
    ...       "--batch-size", "32", "--seq-len", "128", "--json"])  # doctest: +ELLIPSIS
    {"schema_version": 1, ..."total_bytes": 4251416576, ...}
    0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.scenario is None and args.params is None:
        parser.error("give --params MILLIONS or --scenario FILE")
    try:
        result = estimate(parse(_scenario_data(args)))
    except NnmemError as error:
        for problem in error.problems:
            where = FLAGS.get(problem.field, problem.field)
            print(f"nnmem: error: {where}: {problem.message}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError) as error:
        print(f"nnmem: error: --scenario: cannot read {args.scenario}: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print(text(result))
    return 0
