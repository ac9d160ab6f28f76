"""The command line: flags or a JSON scenario in, a text or JSON estimate out."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from nnmem import catalog
from nnmem.errors import NnmemError, plain_fatal
from nnmem.estimate import estimate
from nnmem.readers import checkpoint
from nnmem.render.text import text
from nnmem.scenario import (
    KNOWN_KEYS,
    Mode,
    Optimizer,
    Precision,
    Runtime,
    Scenario,
    load_json,
    parse,
)
from nnmem.solvers import Fit, judge
from nnmem.units import human

# Schema key -> the flag that sets it, so errors can name what the user typed.
FLAGS = {
    "params_millions": "--params",
    "hidden_size": "--hidden-size",
    "num_layers": "--layers",
    "preset": "--preset",
    "config": "--config",
    "cnn": "--cnn",
    "mode": "--mode",
    "precision": "--precision",
    "optimizer": "--optimizer",
    "optimizer_impl": "--optimizer-impl",
    "checkpointing": "--checkpointing",
    "checkpoint_every": "--checkpoint-every",
    "tensor_parallel": "--tensor-parallel",
    "batch_size": "--batch-size",
    "seq_len": "--seq-len",
    "runtime": "--runtime",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "block_size": "--block-size",
    "pipeline_parallel": "--pipeline-parallel-size",
    "enforce_eager": "--enforce-eager",
    "gguf_type": "--gguf-type",
    "n_gpu_layers": "--n-gpu-layers",
    "n_ubatch": "--ubatch-size",
    "type_k": "--cache-type-k",
    "type_v": "--cache-type-v",
    "flash_attn": "--flash-attn",
    "stack": "--stack",
    "num_gpus": "--num-gpus",
    "sharding": "--sharding",
    "offload_optimizer": "--offload-optimizer",
    "offload_optimizer_device": "--offload-optimizer-device",
    "offload_param": "--offload-param",
    "offload_param_device": "--offload-param-device",
    "reduce_bucket_size": "--reduce-bucket-size",
    "stage3_prefetch_bucket_size": "--stage3-prefetch-bucket-size",
    "stage3_max_live_parameters": "--stage3-max-live-parameters",
    "stage3_param_persistence_threshold": "--stage3-param-persistence-threshold",
    "gradient_as_bucket_view": "--gradient-as-bucket-view",
    "reshard_after_forward": "--reshard-after-forward",
    "cpu_offload": "--cpu-offload",
    "fsdp_param_dtype": "--fsdp-param-dtype",
    "fsdp_reduce_dtype": "--fsdp-reduce-dtype",
    "sync_module_states": "--sync-module-states",
    "loss": "--loss",
    "loss_chunks": "--loss-chunks",
    "optimizer_in_backward": "--optimizer-in-backward",
    "activation_offload": "--activation-offload",
    "paged_optimizer": "--paged-optimizer",
    "torch_compile": "--torch-compile",
    "packing": "--packing",
    "float8_training": "--float8-training",
    "float8_all_gather": "--float8-all-gather",
    "sequence_parallel": "--sequence-parallel",
    "loss_parallel": "--loss-parallel",
    "context_parallel": "--context-parallel",
    "expert_parallel": "--expert-parallel",
    "pipeline_schedule": "--pipeline-schedule",
    "pipeline_microbatches": "--pipeline-microbatches",
}
# The step's own flags beside --precision and --optimizer (key, metavar, help).
STEP_FLAGS = (
    (
        "optimizer_impl",
        "IMPL",
        "the AdamW kernel: foreach (default), fused or for_loop (torch.optim's foreach= and "
        "fused= arguments); hf_trainer and trl_sft run fused",
    ),
    (
        "checkpointing",
        "POLICY",
        "gradient checkpointing: none (default), selective, per_op (torchtitan's per-op "
        "selective), every_n (every --checkpoint-every-th layer) or full",
    ),
    ("checkpoint_every", "N", "with --checkpointing every_n: checkpoint every N-th layer (2)"),
    (
        "tensor_parallel",
        "N",
        "tensor-parallel degree, training or serving (vLLM --tensor-parallel-size); "
        "divides the heads and --num-gpus (default 1)",
    ),
)
# The training stack's flags: (key, metavar, help); the defaults come from the schema.
STACK_FLAGS = (
    ("stack", "STACK", "plain, hf_trainer, trl_sft, ddp, fsdp2 or deepspeed (default plain)"),
    ("num_gpus", "N", "GPUs in the job (default 1)"),
    ("sharding", "STAGE", "ZeRO stage for DeepSpeed: none, zero1, zero2, zero3 (default none)"),
    ("offload_optimizer", "BOOL", "DeepSpeed: master weights, m, v and the step on the CPU"),
    (
        "offload_optimizer_device",
        "DEVICE",
        "with --offload-optimizer: cpu (default) or nvme (ZeRO-3: swap files, pinned "
        "swap buffers in host RAM)",
    ),
    ("offload_param", "BOOL", "DeepSpeed ZeRO-3: 16-bit parameters on the CPU"),
    (
        "offload_param_device",
        "DEVICE",
        "with --offload-param: cpu (default) or nvme (swap files, pinned swap buffers)",
    ),
    ("reduce_bucket_size", "N", "DeepSpeed reduce bucket, in elements (default 500,000,000)"),
    ("stage3_prefetch_bucket_size", "N", "ZeRO-3 prefetch bucket, in elements (50,000,000)"),
    ("stage3_max_live_parameters", "N", "ZeRO-3 cap on gathered parameters (1,000,000,000)"),
    (
        "stage3_param_persistence_threshold",
        "N",
        "ZeRO-3: parameters under N elements stay whole on every GPU (100,000)",
    ),
    ("gradient_as_bucket_view", "BOOL", "DDP: gradients are views of its buckets"),
    ("reshard_after_forward", "BOOL", "FSDP2: free gathered weights after forward (default true)"),
    ("cpu_offload", "BOOL", "FSDP: shards, gradients and step on the CPU (CPUOffloadPolicy)"),
    (
        "fsdp_param_dtype",
        "DTYPE",
        "FSDP2 MixedPrecisionPolicy param_dtype: auto (from --precision), fp32, bf16 or fp16",
    ),
    (
        "fsdp_reduce_dtype",
        "DTYPE",
        "FSDP2 MixedPrecisionPolicy reduce_dtype: auto (fp32 under a 16-bit param_dtype over "
        "fp32 weights, else the param dtype), fp32, bf16 or fp16",
    ),
    (
        "sync_module_states",
        "BOOL",
        "FSDP (v1) under zero3: wrap a CPU-loaded model on the GPU, unit by unit (replay)",
    ),
)

# Memory features a training loop switches on (key, metavar, help): all but the paged
# optimizer are modelled for transformers.
MEMORY_FLAGS = (
    (
        "loss",
        "LOSS",
        "standard (default), chunked (torchtune CEWithChunkedOutputLoss), fused_linear "
        "(Liger), cce (Apple Cut Cross-Entropy), compiled (torchtitan's torch.compile'd "
        "cross-entropy) or fp32_logits (transformers <= 4.45: fp32 logits returned)",
    ),
    ("loss_chunks", "N", "with --loss chunked: chunks of the tokens (default 8)"),
    (
        "optimizer_in_backward",
        "BOOL",
        "step and free each gradient in backward (torchtune optimizer_in_bwd)",
    ),
    (
        "activation_offload",
        "BOOL",
        "saved activations in pinned CPU memory (torchtune OffloadActivations)",
    ),
    (
        "paged_optimizer",
        "BOOL",
        "adamw or adamw_8bit as bitsandbytes PagedAdamW / PagedAdamW8bit (unified memory)",
    ),
    (
        "torch_compile",
        "BOOL",
        "each Llama-style block under torch.compile, in 16-bit compute (torchtitan, torchtune)",
    ),
    (
        "packing",
        "LAYOUT",
        "the batch's layout: auto (default: padded for hf_trainer and trl_sft, off "
        "otherwise), off, padded, packed or padding_free",
    ),
    (
        "float8_training",
        "FP8",
        "off (default), torchao (Float8Linear, torchtitan's float8 converter) or "
        "transformer_engine (te.Linear under fp8_autocast)",
    ),
    (
        "float8_all_gather",
        "BOOL",
        "with --stack fsdp2 --float8-training torchao: FSDP2 gathers the linear weights in "
        "float8 (torchao enable_fsdp_float8_all_gather)",
    ),
    (
        "sequence_parallel",
        "BOOL",
        "with tensor parallelism: norms, layer inputs and dropout split along the sequence "
        "(Megatron --sequence-parallel, torchtitan SequenceParallel)",
    ),
    (
        "loss_parallel",
        "BOOL",
        "with tensor parallelism: the logits stay split by vocabulary (torchtitan loss_parallel)",
    ),
    (
        "context_parallel",
        "N",
        "fsdp2 training: the sequence split over N ranks with ring attention (torchtitan CP)",
    ),
    (
        "expert_parallel",
        "N",
        "MoE training (fsdp2, or no sharding): each rank holds experts / N of every MoE "
        "layer, tokens sent by all-to-all (Megatron-LM --expert-model-parallel-size, "
        "torchtitan expert_parallel_degree)",
    ),
    (
        "pipeline_schedule",
        "SCHEDULE",
        "with --pipeline-parallel-size above 1 in training (fsdp2): 1f1b (default), "
        "interleaved_1f1b or gpipe, as torch.distributed.pipelining runs them",
    ),
    (
        "pipeline_microbatches",
        "N",
        "micro-batches a pipelined step runs (default: one per pipeline stage, as torchtitan)",
    ),
)


def _dest(flag: str) -> str:
    """argparse's attribute name for a flag."""
    return flag.removeprefix("--").replace("-", "_")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnmem",
        description="Estimate the GPU memory a neural network needs to train or serve.",
        epilog=(
            "Examples:\n"
            "  python -m nnmem --params 7000 --precision fp16 --mode inference\n"
            "  python -m nnmem --preset llama-3.1-8b --precision amp_bf16 --seq-len 4096 "
            "--checkpointing full --gpu h100-sxm-80gb\n"
            "  python -m nnmem --config config.json --set finetune=lora --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("the model (one of)")
    model.add_argument(
        "--params",
        metavar="MILLIONS",
        help="model size in millions of parameters, or with a unit: 7B, 350M",
    )
    model.add_argument("--preset", metavar="ID", help="a catalog model (see --list-presets)")
    model.add_argument("--config", metavar="FILE", help="a Hugging Face config.json")
    model.add_argument("--cnn", metavar="NAME|FILE", help="resnet50, vgg16, … or a layer list")
    model.add_argument(
        "--safetensors",
        metavar="PATH",
        help="a .safetensors file, its model.safetensors.index.json or their folder "
        "(headers only; config.json beside them is used)",
    )
    model.add_argument("--gguf", metavar="FILE", help="a GGUF file (its header only)")
    model.add_argument("--hidden-size", metavar="N", help="with --params: hidden dimension h")
    model.add_argument("--layers", metavar="N", help="with --params: number of layers L")
    step = parser.add_argument_group("the step")
    step.add_argument("--mode", help="training or inference (default training)")
    step.add_argument(
        "--precision", help="one of " + ", ".join(p.value for p in Precision) + " (default fp32)"
    )
    step.add_argument(
        "--optimizer", help="one of " + ", ".join(o.value for o in Optimizer) + " (default adamw)"
    )
    step.add_argument("--batch-size", metavar="N", help="sequences per step (default 1)")
    step.add_argument("--seq-len", metavar="N", help="tokens per sequence (default 512)")
    for key, metavar, about in STEP_FLAGS:
        aliases = ("--tensor-parallel-size", "-tp") if key == "tensor_parallel" else ()
        step.add_argument(FLAGS[key], *aliases, metavar=metavar, help=about)
    stack = parser.add_argument_group("the training stack")
    for key, metavar, about in STACK_FLAGS:
        stack.add_argument(FLAGS[key], metavar=metavar, help=about)
    features = parser.add_argument_group("memory features (training)")
    for key, metavar, about in MEMORY_FLAGS:
        features.add_argument(FLAGS[key], metavar=metavar, help=about)
    step.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="any other scenario field, e.g. new_tokens=256, headroom_percent=0",
    )
    serve = parser.add_argument_group(
        "serving (with --mode inference; --batch-size is the requests at once and --seq-len "
        "the context of each)"
    )
    serve.add_argument(
        "--runtime",
        help="transformers (default), vllm, llama_cpp, ollama or lm_studio",
    )
    vllm = parser.add_argument_group("vLLM (--runtime vllm; vllm serve's own flag names)")
    vllm.add_argument("--gpu-memory-utilization", metavar="F", help="share of the card (0.92)")
    vllm.add_argument("--max-num-seqs", metavar="N", help="default: vLLM's for the card")
    vllm.add_argument("--max-num-batched-tokens", metavar="N", help="default: vLLM's for the card")
    vllm.add_argument("--block-size", metavar="N", help="tokens per KV block (64)")
    vllm.add_argument(
        "--pipeline-parallel-size",
        metavar="N",
        help="pipeline stages (1); in training, torchtitan's pipeline under --stack fsdp2",
    )
    vllm.add_argument("--enforce-eager", metavar="BOOL", help="true or false (false)")
    llama = parser.add_argument_group(
        "llama.cpp (--runtime llama_cpp, ollama or lm_studio; llama-server's flag names)"
    )
    llama.add_argument("--gguf-type", metavar="TYPE", help="GGUF file type, e.g. q4_k_m (default)")
    llama.add_argument("--n-gpu-layers", "-ngl", metavar="N", help="layers on the GPU (all)")
    llama.add_argument("--ubatch-size", "-ub", metavar="N", help="micro-batch tokens (512)")
    llama.add_argument("--cache-type-k", "-ctk", metavar="TYPE", help="K cache type (f16)")
    llama.add_argument("--cache-type-v", "-ctv", metavar="TYPE", help="V cache type (f16)")
    llama.add_argument("--flash-attn", "-fa", metavar="BOOL", help="on or off (on)")
    parser.add_argument(
        "--scenario",
        metavar="FILE",
        help="read the scenario from a JSON file ('-' for standard input); flags override it",
    )
    parser.add_argument(
        "--gpu",
        metavar="ID",
        help="judge the fit on a catalog GPU (--list-gpus), or custom-8gb for a card of 8 GB",
    )
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.add_argument("--list-presets", action="store_true", help="list the model catalog")
    parser.add_argument("--list-gpus", action="store_true", help="list the GPU catalog")
    return parser


def _read_json_file(path: str, flag: str) -> Any:
    """A JSON file (``-``: standard input) read as the calculator reads JSON: UTF-8 text,
    strict numbers, nesting and digits bounded, every failure an NnmemError on ``flag``."""
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as source:
                raw = source.read()
        text = raw.decode("utf-8")
    except OSError as error:
        raise NnmemError.single(flag, f"Cannot read {path}: {error.strerror or error}.") from None
    except UnicodeDecodeError as error:
        bad = f"byte {error.start:,} is {raw[error.start]:#04x}"
        raise NnmemError.single(
            flag, f"Cannot read {path}: it is not UTF-8 text ({bad})."
        ) from None
    return load_json(text, flag, f"Cannot read {path}: it")


def _checkpoint(args: argparse.Namespace) -> tuple[str, checkpoint.Imported] | None:
    if args.safetensors:
        return "--safetensors", checkpoint.load_safetensors(args.safetensors)
    if args.gguf:
        return "--gguf", checkpoint.load_gguf(args.gguf)
    return None


def _scenario_data(
    args: argparse.Namespace, imported: checkpoint.Imported | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if args.scenario:
        loaded = _read_json_file(args.scenario, "scenario")
        if not isinstance(loaded, dict):
            raise NnmemError.single("scenario", "The scenario file must hold a JSON object.")
        data.update(loaded)
        args.file_keys = set(loaded)  # where an error on one of them points
    if imported is not None:
        fields = dict(imported.scenario)
        precision = fields.pop("precision", None)
        data |= fields
        if precision and "precision" not in data and args.precision is None:
            data["precision"] = precision
            if not Precision(precision).trains_fully and "mode" not in data and not args.mode:
                data["mode"] = "inference"  # a quantized checkpoint is served, not trained
    if args.preset:
        data |= {"model": "preset", "preset": args.preset}
    if args.config:
        data |= {"model": "transformer", "config": _read_json_file(args.config, "config")}
    if args.cnn:
        spec = args.cnn if not args.cnn.endswith(".json") else _read_json_file(args.cnn, "cnn")
        data |= {"model": "cnn", "cnn": spec}
    for key, flag in FLAGS.items():
        if key in ("preset", "config", "cnn"):
            continue
        value = getattr(args, _dest(flag))
        if value is not None:
            data[key] = value
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise NnmemError.single("set", f"--set takes KEY=VALUE (got {item!r}).")
        data[key.strip()] = value.strip()
    return data


def _too_large(fit: Fit) -> str:
    if fit.too_large is None:
        return "No number of these GPUs holds it."
    label, size = fit.too_large
    return (
        f"No number of these GPUs holds it: even split as far as it goes, the "
        f"{label.lower()} alone need {human(size, True)} on each."
    )


def _solve(scenario: Scenario, gpu_id: str) -> list[str]:
    if catalog.gpu(gpu_id) is None:
        raise NnmemError.single("gpu", f"GPU {gpu_id!r} is not in the catalog (see --list-gpus).")
    fit = judge(scenario, gpu_id)
    budget = human(fit.usable or fit.budget, True)
    if fit.headroom_percent:
        budget += f" usable; {human(fit.budget, True)} after keeping {fit.headroom_percent:g}% free"
    else:
        budget += " usable"
    verdict = (
        f"Fits on {fit.gpu_name} ({budget}): {human(fit.headroom, True)} to spare."
        if fit.fits
        else f"Does not fit on {fit.gpu_name} ({budget}): {human(-fit.headroom, True)} short."
    )
    if not fit.runs:
        verdict = f"Cannot run as set on {fit.gpu_name}, whatever the memory: " + (
            "it would fit." if fit.fits else "it would not fit either."
        )
    lines = ["", verdict]
    lines += [f"Warning: {w}" for w in fit.warnings]
    lines.append(f"Largest batch that fits: {fit.max_batch:,}")
    if fit.max_seq_len is not None:
        capped = ""
        if fit.seq_len_capped and fit.context is not None:
            capped = f" (the model's context: {fit.context.source}; memory allows more)"
        lines.append(f"Longest sequence that fits: {fit.max_seq_len:,}{capped}")
    if not fit.fits:
        plan = fit.plan
        lines.append(
            _too_large(fit)
            if plan is None
            else f"Fewest GPUs: {plan.num_gpus} ("
            + (
                f"{plan.sharding.value}"
                if scenario.mode is Mode.TRAINING
                else "layer split"
                if plan.runtime.engine is Runtime.LLAMA_CPP
                else f"tensor parallel {plan.tensor_parallel}"
            )
            + ")"
        )
        lines.append("What to change to fit, safest first, then largest saving:")
        for s in fit.suggestions[:8]:
            mark = "fits" if s.fits else "still too big"
            lines.append(
                f"  - {s.label}: saves {human(s.saved_bytes, True)} ({mark}); "
                f"quality risk {s.risk}: {s.risk_note}"
            )
    return lines


def _summary_lines(read: tuple[str, checkpoint.Imported] | None) -> list[str]:
    if read is None:
        return []
    s = read[1].summary
    files = f"{len(s.files)} files" if len(s.files) > 1 else s.files[0]
    kinds = ", ".join(f"{k} {v:,} B" for k, v in s.bytes_by_dtype.items())
    lines = [
        "",
        f"Checkpoint ({s.format}, {files}): {s.tensors:,} tensors, {s.parameters:,} "
        f"parameters, {s.tensor_bytes:,} bytes of tensors ({kinds}); "
        f"{s.file_bytes:,} bytes on disk.",
    ]
    if len(s.bytes_by_part) > 1:
        parts = ", ".join(f"{k} {v:,} B" for k, v in s.bytes_by_part.items())
        lines.append(f"By part: {parts}.")
    return lines + list(s.notes)


def _model_flag(args: argparse.Namespace) -> str:
    """The flag that brought the model in, to name in a message about the input."""
    for flag in ("scenario", "config", "cnn", "preset", "params"):
        if getattr(args, flag):
            return f"--{flag}"
    return "--scenario"


def _where(args: argparse.Namespace, key: str) -> str:
    """Where the user set (or can set) the field an error names: its flag when given by
    flag, ``--set KEY`` when given by --set, ``--scenario KEY`` when given in the file; a
    field left at its default, by its flag where it has one (else ``--set KEY``)."""
    flag = FLAGS.get(key)
    if flag is not None and getattr(args, _dest(flag)) is not None:
        return flag
    if key not in KNOWN_KEYS:
        return flag or f"--{key.replace('_', '-')}"
    if any(item.partition("=")[0].strip() == key for item in args.set):
        return f"--set {key}"
    if key in getattr(args, "file_keys", ()):
        return f"--scenario {key}"
    return flag or f"--set {key}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    >>> main(["--params", "110", "--hidden-size", "768", "--layers", "12",
    ...       "--batch-size", "32", "--seq-len", "128", "--json"])  # doctest: +ELLIPSIS
    {"schema_version": 2, ..."tensor_peak_bytes": 3811416576, ...}
    0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_presets:
        for m in catalog.models().values():
            print(f"{m.id:32} {m.params:>18,}  {m.name}")
        return 0
    if args.list_gpus:
        for g in catalog.gpus().values():
            print(f"{g.id:26} {human(g.usable_bytes, True):>11}  {g.name}")
        return 0
    if not (
        args.scenario
        or args.params
        or args.preset
        or args.config
        or args.cnn
        or args.safetensors
        or args.gguf
    ):
        parser.error(
            "describe the model: --params, --preset, --config, --cnn or --scenario "
            "(or read a checkpoint's headers: --safetensors, --gguf)"
        )
    read = None
    try:
        read = _checkpoint(args)
        scenario = parse(_scenario_data(args, read[1] if read else None))
        result = estimate(scenario, args.gpu)
        extra = _solve(scenario, args.gpu) if args.gpu else []
    except NnmemError as error:
        for problem in error.problems:
            where = _where(args, problem.key)
            if read and problem.key in ("config", "params_millions"):
                where = read[0]  # the config came from the checkpoint
            print(f"nnmem: error: {where}: {problem.message}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError, ValueError) as error:
        # An input the readers let through but the engine cannot take: still no traceback.
        where = _model_flag(args)
        print(f"nnmem: error: {where}: {plain_fatal(error)}", file=sys.stderr)
        return 2
    if args.json:
        out = result.to_dict()
        if read:
            out["checkpoint"] = read[1].summary.to_dict()
        print(json.dumps(out, ensure_ascii=False))
    else:
        print("\n".join([text(result), *extra, *_summary_lines(read)]))
    return 0
