"""The runs: one function per stack, each returning its per-rank figures as JSON data.

Distributed runs spawn 2 processes with the gloo backend; every rank tracks its own
live bytes from before the model is built, so parameters, gradients, optimizer state,
the stack's buffers and activations are all counted.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.accuracy.tracker import storage_bytes
from benchmarks.stacks.common import (
    BATCH,
    LLAMA_CONFIG,
    SEQ,
    StackTracker,
    build_llama,
    grad_bytes,
    init_process_group,
    inputs,
    numel,
    param_bytes,
    state_bytes,
    train_steps,
)

WORLD = 2


def _tracked(build: Any) -> tuple[StackTracker, Any]:
    tracker = StackTracker()
    return tracker, build


# --- plain loop ---------------------------------------------------------------------


def plain(impl: str, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """One process, AdamW as ``foreach``, ``fused`` or the for-loop, weights in ``dtype``."""
    tracker = StackTracker()
    with tracker, tracker.watching_resize():
        tracker.set_phase("setup")
        model = build_llama(dtype)
        kwargs = {"foreach": impl == "foreach", "fused": impl == "fused"}
        if impl == "for_loop":
            kwargs = {"foreach": False}
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, **kwargs)
        params = param_bytes(model)
        figures = train_steps(tracker, model, optimizer, 0)
    tracker.close()
    return {
        "stack": "plain",
        "optimizer_impl": impl,
        "dtype": str(dtype).removeprefix("torch."),
        "world_size": 1,
        "param_numel": numel(model),
        "param_bytes": params,
        "ranks": [figures],
    }


# --- DDP ----------------------------------------------------------------------------


def _ddp_rank(rank: int, port: int, view: bool, queue: Any) -> None:
    init_process_group(rank, WORLD, port)
    from torch.nn.parallel import DistributedDataParallel

    tracker = StackTracker()
    with tracker, tracker.watching_resize():
        tracker.set_phase("setup")
        model = build_llama()
        before = tracker.current
        ddp = DistributedDataParallel(model, gradient_as_bucket_view=view)
        constructor = tracker.current - before
        optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-4, foreach=True)
        figures = train_steps(tracker, ddp, optimizer, rank)
    tracker.close()
    figures |= {
        "rank": rank,
        "ddp_constructor_bytes": constructor,
        "param_bytes": param_bytes(model),
        "bucket_cap_mb": 25,
    }
    queue.put(figures)
    dist.barrier()
    dist.destroy_process_group()


def ddp(view: bool, port: int) -> dict[str, Any]:
    """DDP over 2 gloo processes, fp32, foreach AdamW."""
    model = build_llama()
    ranks = _spawn(_ddp_rank, (port, view))
    return {
        "stack": "ddp",
        "gradient_as_bucket_view": view,
        "world_size": WORLD,
        "param_numel": numel(model),
        "param_bytes": param_bytes(model),
        "ranks": ranks,
    }


# --- FSDP2 --------------------------------------------------------------------------


def _fsdp_rank(rank: int, port: int, options: dict[str, Any], queue: Any) -> None:
    init_process_group(rank, WORLD, port)
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        MixedPrecisionPolicy,
        fully_shard,
    )

    kwargs: dict[str, Any] = {"reshard_after_forward": options["reshard_after_forward"]}
    if options.get("mixed_precision"):
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32
        )
    if options.get("cpu_offload"):
        kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=False)
    tracker = StackTracker()
    peaks: dict[str, int] = {}
    with tracker, tracker.watching_resize():
        tracker.set_phase("setup")
        model = build_llama()
        # torchtitan's wrapping: each decoder layer is a unit, then the root
        # (embedding, final norm, head).
        for layer in model.model.layers:
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        sharded = tracker.current
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
        figures = train_steps(tracker, model, optimizer, rank)
    tracker.close()
    figures |= {
        "rank": rank,
        "sharded_param_bytes_after_wrap": sharded,
        "param_bytes": param_bytes(model),
        "grad_bytes_end": grad_bytes(model),
        "peaks": peaks,
    }
    queue.put(figures)
    dist.barrier()
    dist.destroy_process_group()


def fsdp2(options: dict[str, Any], port: int) -> dict[str, Any]:
    """FSDP2 ``fully_shard`` per decoder layer and the root, 2 gloo processes."""
    model = build_llama()
    ranks = _spawn(_fsdp_rank, (port, options))
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    return {
        "stack": "fsdp2",
        "options": options,
        "world_size": WORLD,
        "param_numel": numel(model),
        "layer_numel": layer,
        "root_numel": numel(model) - layer * LLAMA_CONFIG["num_hidden_layers"],
        "ranks": ranks,
    }


# --- spawning ------------------------------------------------------------------------


def _spawn(target: Any, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=target, args=(rank, *args, queue)) for rank in range(WORLD)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=120)
        if p.exitcode not in (0, None):
            raise RuntimeError(f"rank exited with {p.exitcode}")
    return sorted(results, key=lambda r: r["rank"])


# --- HF Trainer and TRL ----------------------------------------------------------------


def _tokenizer() -> Any:
    """A word-level tokenizer built here (no download): 4,096 ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab |= {f"w{i}": i + 4 for i in range(LLAMA_CONFIG["vocab_size"] - 4)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def _texts(n: int) -> list[str]:
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(4, LLAMA_CONFIG["vocab_size"], (n, SEQ - 1), generator=generator)
    return [" ".join(f"w{int(i) - 4}" for i in row) for row in ids]


def _trainer_figures(trainer: Any, tracker: StackTracker, model: Any) -> dict[str, Any]:
    optimizer = trainer.optimizer
    group = optimizer.param_groups[0]
    return {
        "optim": str(
            trainer.args.optim.value if hasattr(trainer.args.optim, "value") else trainer.args.optim
        ),
        "optimizer_class": type(getattr(optimizer, "optimizer", optimizer)).__name__,
        "fused": bool(group.get("fused")),
        "foreach": group.get("foreach"),
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
        "gradient_checkpointing_kwargs": trainer.args.gradient_checkpointing_kwargs,
        "bf16": bool(trainer.args.bf16),
        "param_bytes": param_bytes(model),
        "param_numel": numel(model),
        "optimizer_state_bytes": state_bytes(getattr(optimizer, "optimizer", optimizer)),
        "peak_bytes": tracker.peak()[0],
        "peak_phase": tracker.peak()[1],
        "live_end": tracker.current,
    }


class _PhaseCallback:
    """Marks the tracker's phases from Trainer callbacks (step begin / optimizer step)."""


def hf_trainer() -> dict[str, Any]:
    """transformers Trainer, default TrainingArguments, 3 steps on the CPU."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    tok = _tokenizer()
    data = Dataset.from_dict({"text": _texts(12)})
    data = data.map(lambda row: tok(row["text"]), remove_columns=["text"])
    data = data.map(lambda row: {"labels": row["input_ids"]})
    tracker = StackTracker()
    with tempfile.TemporaryDirectory() as out, tracker, tracker.watching_resize():
        tracker.set_phase("setup")
        model = build_llama()
        args = TrainingArguments(
            output_dir=out,
            max_steps=3,
            per_device_train_batch_size=BATCH,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            logging_strategy="no",
        )
        trainer = Trainer(model=model, args=args, train_dataset=data)
        tracker.set_phase("train")
        trainer.train()
        figures = _trainer_figures(trainer, tracker, model)
    tracker.close()
    return {
        "stack": "hf_trainer",
        "world_size": 1,
        "defaults": True,
        "batch": BATCH,
        "seq": SEQ,
    } | figures


def trl_sft() -> dict[str, Any]:
    """TRL SFTTrainer, default SFTConfig, 3 steps on the CPU."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = _tokenizer()
    data = Dataset.from_dict({"text": _texts(12)})
    tracker = StackTracker()
    with tempfile.TemporaryDirectory() as out, tracker, tracker.watching_resize():
        tracker.set_phase("setup")
        model = build_llama()
        config = SFTConfig(
            output_dir=out,
            max_steps=3,
            per_device_train_batch_size=BATCH,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            logging_strategy="no",
            max_length=SEQ,
        )
        defaults = {
            key: getattr(config, key)
            for key in (
                "packing",
                "padding_free",
                "loss_type",
                "activation_offloading",
                "use_liger_kernel",
                "assistant_only_loss",
                "completion_only_loss",
            )
            if hasattr(config, key)
        }
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tok)
        tracker.set_phase("train")
        trainer.train()
        figures = _trainer_figures(trainer, tracker, model)
    tracker.close()
    return {
        "stack": "trl_sft",
        "world_size": 1,
        "defaults": True,
        "batch": BATCH,
        "seq": SEQ,
        "sft_defaults": {
            k: (v if isinstance(v, (bool, int, str, type(None))) else str(v))
            for k, v in defaults.items()
        },
    } | figures


# --- peft prepare_model_for_kbit_training ------------------------------------------------


def kbit_casts() -> dict[str, Any]:
    """peft's ``prepare_model_for_kbit_training`` on a bf16 model whose linear weights
    inside the layers stand in for 4-bit ones.

    bitsandbytes is not installed here, so each such weight is replaced by a frozen
    uint8 parameter of half its element count (two 4-bit values a byte, as bitsandbytes
    packs them). peft casts by dtype (fp16/bf16 only, and never a ``Params4bit``), so the
    uint8 stand-ins stay as they are and everything else is what it casts.
    """
    from peft import prepare_model_for_kbit_training

    tracker = StackTracker()
    with tracker, tracker.watching_resize():
        tracker.set_phase("setup")
        model = build_llama(torch.bfloat16)
        for module in model.model.layers.modules():
            if isinstance(module, torch.nn.Linear):
                packed = torch.zeros(module.weight.numel() // 2, dtype=torch.uint8)
                module.weight = torch.nn.Parameter(packed, requires_grad=False)
        model.is_loaded_in_4bit = True
        before = tracker.current
        kept = sum(p.numel() for p in model.parameters() if p.dtype == torch.bfloat16)
        prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        after = tracker.current
        fp32 = sum(p.numel() for p in model.parameters() if p.dtype == torch.float32)
    tracker.close()
    return {
        "stack": "peft_kbit",
        "unquantized_numel": kept,
        "fp32_numel_after": fp32,
        "live_before": before,
        "live_after": after,
    }


# --- DeepSpeed ----------------------------------------------------------------------------


def _deepspeed_rank(rank: int, port: int, stage: int, queue: Any) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "LOCAL_WORLD_SIZE": str(WORLD),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "DS_ACCELERATOR": "cpu",
        }
    )
    result: dict[str, Any] = {"rank": rank, "stage": stage}
    try:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        model = build_llama()
        config = {
            "train_micro_batch_size_per_gpu": BATCH,
            "optimizer": {"type": "AdamW", "params": {"lr": 1e-4, "torch_adam": True}},
            "bf16": {"enabled": True},
            "zero_optimization": {"stage": stage},
        }
        tracker = StackTracker()
        with tracker, tracker.watching_resize():
            tracker.set_phase("setup")
            engine, optimizer, _, _ = deepspeed.initialize(
                model=model, model_parameters=model.parameters(), config=config
            )
            after_init = tracker.current
            batch = inputs(rank)
            for _ in range(2):
                tracker.reset_phases()
                tracker.set_phase("forward")
                loss = engine(**batch).loss
                tracker.set_phase("backward")
                engine.backward(loss)
                del loss
                after_backward = tracker.current
                tracker.set_phase("optimizer_step")
                engine.step()
            result |= {
                "phases": tracker.phase_report(),
                "ran": True,
                "after_init": after_init,
                "after_backward": after_backward,
                "structures": _deepspeed_structures(optimizer, model),
                "config": config,
            }
        tracker.close()
    except Exception as error:  # the failure is the finding
        result |= {"ran": False, "error": f"{type(error).__name__}: {error}"[:2000]}
    queue.put(result)


def _deepspeed_structures(optimizer: Any, model: Any) -> dict[str, int]:
    """Bytes of the ZeRO optimizer's own buffers, by attribute name."""
    found: dict[str, int] = {}
    for attr in (
        "bit16_groups_flat",
        "single_partition_of_fp32_groups",
        "fp16_partitioned_groups_flat",
        "fp32_partitioned_groups_flat",
        "grad_partitions_flat_buffer",
    ):
        value = getattr(optimizer, attr, None)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        tensors = [x for x in items if isinstance(x, torch.Tensor)]
        found[attr] = storage_bytes(tensors)
    inner = getattr(optimizer, "optimizer", None)
    if inner is not None:
        found["adam_state"] = state_bytes(inner)
    found["module_parameters"] = param_bytes(model)
    return found


def deepspeed_try(stage: int, port: int) -> dict[str, Any]:
    """DeepSpeed ZeRO ``stage`` over 2 processes with its CPU accelerator."""
    try:
        ranks = _spawn(_deepspeed_rank, (port, stage))
    except Exception as error:
        ranks = [{"ran": False, "error": f"{type(error).__name__}: {error}"[:2000]}]
    return {"stack": f"deepspeed_zero{stage}", "world_size": WORLD, "ranks": ranks}


def deepspeed_estimators() -> dict[str, Any]:
    """DeepSpeed's own model-state estimators (pure arithmetic) for a grid of setups."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    model = build_llama()
    largest_layer = max(
        sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()
    )
    setups = [
        ("small-llama", numel(model), largest_layer),
        # Llama 3.1 8B and 70B: parameter counts and largest layer (the untied
        # 128,256 × h embedding / head) from their configs.
        ("llama-3.1-8b", 8_030_261_248, 128_256 * 4096),
        ("llama-3.1-70b", 70_553_706_496, 128_256 * 8192),
    ]
    rows = []
    for name, params, largest in setups:
        for gpus in (1, 2, 8):
            for offload in (False, True):
                cpu2, gpu2 = estimate_zero2_model_states_mem_needs(
                    params, num_gpus_per_node=gpus, num_nodes=1, cpu_offload=offload
                )
                rows.append(
                    {
                        "model": name,
                        "params": params,
                        "stage": 2,
                        "gpus": gpus,
                        "cpu_offload": offload,
                        "cpu_bytes": int(cpu2),
                        "gpu_bytes": int(gpu2),
                    }
                )
                for offload_params in (False, True) if offload else (False,):
                    cpu3, gpu3, largest_mem = estimate_zero3_model_states_mem_needs(
                        params,
                        largest,
                        num_gpus_per_node=gpus,
                        num_nodes=1,
                        cpu_offload=offload,
                        cpu_offload_params=offload_params,
                        zero_init=True,
                    )
                    rows.append(
                        {
                            "model": name,
                            "params": params,
                            "largest_layer_params": largest,
                            "stage": 3,
                            "gpus": gpus,
                            "cpu_offload": offload,
                            "cpu_offload_params": offload_params,
                            "zero_init": True,
                            "cpu_bytes": int(cpu3),
                            "gpu_bytes": int(gpu3),
                            "largest_layer_bytes": int(largest_mem),
                        }
                    )
    return {"stack": "deepspeed_estimators", "additional_buffer_factor": 1.5, "rows": rows}
