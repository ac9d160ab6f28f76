"""Hypothesis strategies for valid scenarios over the whole documented schema.

A scenario is drawn as the schema's JSON (a dict ``nnmem.parse`` reads): the model in one
of its four ways (a parameter count, a transformer's ``config.json`` as an object or as
pasted text, a catalog preset, a CNN by name or as a layer list), then every setting the
README's schema tables list, drawn so that the cross-field rules hold (a training
precision for training, a LoRA base for LoRA, a tensor-parallel degree that divides the
heads and the GPUs).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from nnmem import catalog
from nnmem.models.architecture import Family, Transformer, from_config
from nnmem.scenario import (
    LLAMA_CPP_MODEL_TYPES,
    Attention,
    Checkpointing,
    Device,
    KvDtype,
    Logits,
    LoraDtype,
    LoraTargets,
    Optimizer,
    OptimizerImpl,
    Precision,
    Sharding,
)

# The bounded run in make test, a few seconds in all: each property draws this many
# scenarios, without shrinking (a failure is reported as drawn; the long run,
# benchmarks/fuzz.py, sets its own counts and draws at random). The draws are the same on
# every run, so that a clean checkout's result does not depend on luck; the database
# replays a found failure first.
settings.register_profile(
    "nnmem",
    max_examples=25,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("nnmem")

PRESETS = tuple(catalog.models())
TRANSFORMER_PRESETS = tuple(k for k, m in catalog.models().items() if m.architecture != "cnn")
CNN_PRESETS = tuple(k for k, m in catalog.models().items() if m.architecture == "cnn")
CNN_BUILTINS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg16")
GPUS = tuple(catalog.gpus())

TRAINING_PRECISIONS = ("fp32", "amp_bf16", "amp_fp16", "bf16", "fp16")
LORA_BASES = (*TRAINING_PRECISIONS, "nf4", "nf4_dq", "int8")
# Formats vLLM does not load here (nnmem.scenario._runtime_checks).
VLLM_REFUSED = {
    Precision.NF4, Precision.NF4_DQ, Precision.Q8_0, Precision.Q6_K, Precision.Q5_K_M,
    Precision.Q4_K_M, Precision.Q4_0,
}  # fmt: skip
INFERENCE_PRECISIONS = tuple(
    p.value for p in Precision if p not in (Precision.AMP_BF16, Precision.AMP_FP16)
)


def _values(enum: Any) -> st.SearchStrategy[str]:
    return st.sampled_from([e.value for e in enum])


# --- the model ------------------------------------------------------------------------------


@st.composite
def generic_model(draw: st.DrawFn) -> dict[str, Any]:
    millions = draw(
        st.one_of(
            st.integers(1, 200_000),
            st.decimals(Decimal("0.001"), Decimal(1000), places=3),
        )
    )
    data: dict[str, Any] = {"model": "generic", "params_millions": str(millions)}
    if draw(st.booleans()):
        data["hidden_size"] = draw(st.integers(8, 16_384))
    if draw(st.booleans()):
        data["num_layers"] = draw(st.integers(1, 160))
    return data


@st.composite
def llama_config(draw: st.DrawFn) -> dict[str, Any]:
    """A decoder (or mixture of experts) config.json as the fields describe it."""
    kv_heads = draw(st.sampled_from([1, 2, 4, 5, 8]))
    heads = kv_heads * draw(st.sampled_from([1, 2, 3, 4]))
    head_dim = draw(st.sampled_from([16, 32, 64, 128]))
    hidden = heads * head_dim
    config: dict[str, Any] = {
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": draw(st.integers(1, 8)) * hidden,
        "num_hidden_layers": draw(st.integers(1, 48)),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": draw(st.integers(16, 160_000)),
        "hidden_act": "silu",
        "tie_word_embeddings": draw(st.booleans()),
    }
    if draw(st.booleans()):
        experts = draw(st.integers(2, 16))
        config |= {
            "model_type": "mixtral",
            "num_local_experts": experts,
            "num_experts_per_tok": draw(st.integers(1, experts)),
        }
    return config


@st.composite
def preset_config(draw: st.DrawFn) -> dict[str, Any]:
    """A catalog model's config.json, its depth and vocabulary changed."""
    config = dict(catalog.models()[draw(st.sampled_from(TRANSFORMER_PRESETS))].config)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if key in config and draw(st.booleans()):
            config[key] = depth = draw(st.integers(1, 80))
            kinds = config.get("layer_types")
            if isinstance(kinds, list) and kinds:
                # one kind per layer, the pattern repeated, as the config classes derive it
                config["layer_types"] = [kinds[i % len(kinds)] for i in range(depth)]
    if config.get("vocab_size") and draw(st.booleans()):
        config["vocab_size"] = draw(st.integers(2, 260_000))
    return config


@st.composite
def transformer_model(draw: st.DrawFn) -> dict[str, Any]:
    config = draw(st.one_of(llama_config(), preset_config()))
    pasted = draw(st.booleans())
    return {"model": "transformer", "config": json.dumps(config) if pasted else config}


@st.composite
def cnn_layers(draw: st.DrawFn) -> dict[str, Any]:
    """A small layer list: convolutions with norms and pooling, then a classifier."""
    side = first = draw(st.integers(8, 96))
    layers: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        layers.append(
            {
                "type": "conv2d",
                "out_channels": draw(st.integers(1, 128)),
                "kernel": 3,
                "padding": 1,
                "bias": draw(st.booleans()),
                "name": draw(st.sampled_from(["conv", "stem", "block"])),
            }
        )
        if draw(st.booleans()):
            layers.append({"type": "batchnorm2d"})
        layers.append({"type": "relu"})
        if side >= 4 and draw(st.booleans()):
            layers.append({"type": "maxpool2d", "kernel": 2})
            side //= 2
    layers += [{"type": "flatten"}, {"type": "linear", "out_features": draw(st.integers(1, 1000))}]
    return {"input": [draw(st.integers(1, 4)), first, first], "layers": layers}


@st.composite
def cnn_model(draw: st.DrawFn) -> dict[str, Any]:
    how = draw(st.sampled_from(["builtin", "preset", "layers"]))
    if how == "preset":
        return {"model": "preset", "preset": draw(st.sampled_from(CNN_PRESETS))}
    if how == "builtin":
        return {"model": "cnn", "cnn": draw(st.sampled_from(CNN_BUILTINS))}
    return {"model": "cnn", "cnn": draw(cnn_layers())}


def preset_model() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(TRANSFORMER_PRESETS).map(lambda p: {"model": "preset", "preset": p})


def any_model() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(generic_model(), transformer_model(), preset_model(), cnn_model())


def transformer_of(data: dict[str, Any]) -> Transformer | None:
    """The transformer a model dict describes, or None for a parameter count or a CNN."""
    if data["model"] == "preset" and data["preset"] in TRANSFORMER_PRESETS:
        return from_config(catalog.models()[data["preset"]].config)
    if data["model"] == "transformer":
        config = data["config"]
        return from_config(json.loads(config) if isinstance(config, str) else config)
    return None


# --- the settings ---------------------------------------------------------------------------


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, min(n, 64) + 1) if n % d == 0]


@st.composite
def scenarios(
    draw: st.DrawFn, model: st.SearchStrategy[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A valid scenario in the schema's JSON, over every documented field."""
    data = dict(draw(model if model is not None else any_model()))
    t = transformer_of(data)
    mode = draw(st.sampled_from(["training", "inference"]))
    data["mode"] = mode
    if mode == "training":
        lora = t is not None and draw(st.booleans())
        data["finetune"] = "lora" if lora else "full"
        data["precision"] = draw(st.sampled_from(LORA_BASES if lora else TRAINING_PRECISIONS))
        data["optimizer"] = draw(_values(Optimizer))
        data["optimizer_impl"] = draw(_values(OptimizerImpl))
        data["checkpointing"] = draw(_values(Checkpointing))
        data["grad_accum_steps"] = draw(st.integers(1, 64))
        data["offload_optimizer"] = draw(st.booleans())
        data["torch_compile"] = draw(st.booleans())
    else:
        data["precision"] = draw(st.sampled_from(INFERENCE_PRECISIONS))
        data["new_tokens"] = draw(st.integers(0, 8192))
        data["kv_cache_dtype"] = draw(_values(KvDtype))
        data["logits"] = draw(_values(Logits))
    # LoRA fields are drawn everywhere: where they do not apply they must change nothing.
    data["lora_rank"] = draw(st.integers(1, 256))
    data["lora_targets"] = draw(_values(LoraTargets))
    data["lora_dtype"] = draw(_values(LoraDtype))
    data["lora_dropout"] = str(draw(st.decimals(Decimal(0), Decimal("0.99"), places=2)))
    data["group_size"] = draw(st.sampled_from([32, 64, 128, 256, 1024]))
    data["batch_size"] = draw(st.integers(1, 256))
    data["seq_len"] = draw(st.integers(1, 8192))
    if t is not None and t.learned_positions:
        data["seq_len"] = min(data["seq_len"], t.learned_positions)
    if t is not None and t.family is Family.ENCODER_DECODER and draw(st.booleans()):
        data["decoder_seq_len"] = draw(st.integers(1, 4096))
    if draw(st.booleans()):
        data["image_size"] = draw(st.integers(64, 512))
        if t is not None and t.family is Family.VIT:
            data["image_size"] = 16 * draw(st.integers(2, 24))
    data["attention"] = draw(_values(Attention))
    data["device"] = draw(_values(Device))
    data["cuda_context_mib"] = draw(st.integers(0, 4096))
    data["allocator_overhead_percent"] = str(draw(st.decimals(Decimal(0), Decimal(100), places=1)))
    # parallelism: a degree that divides the heads, a GPU count it divides
    degree = 1
    if t is not None and draw(st.booleans()):
        degree = draw(st.sampled_from(_divisors(math.gcd(t.heads, t.kv_heads))))
    data["tensor_parallel"] = degree
    data["num_gpus"] = degree * draw(st.sampled_from([1, 1, 2, 3, 4, 8, 16, 64]))
    if mode == "training":
        # Any stage: ZeRO-1/2 are DeepSpeed's for any step; the plain loop's zero3 with
        # LoRA or another optimizer is FSDP's FULL_SHARD (the stack is the plain loop here).
        data["sharding"] = draw(_values(Sharding))
    # The serving runtimes' settings are drawn everywhere too; the runtime itself only
    # where it can serve the model (a decoder; llama.cpp: a model type it has GGUF
    # tensor lists for; vLLM: a checkpoint format it loads).
    data["gpu_memory_utilization"] = str(
        draw(st.decimals(Decimal("0.5"), Decimal("0.98"), places=2))
    )
    data["block_size"] = draw(st.sampled_from([16, 32, 64]))
    data["enforce_eager"] = draw(st.booleans())
    data["gguf_type"] = draw(st.sampled_from(["q4_k_m", "q8_0", "f16", "q2_k", "q5_k_s"]))
    data["n_ubatch"] = draw(st.sampled_from([128, 512]))
    # llama.cpp quantizes a cache only when the block (32) divides the head dimension.
    blocks_fit = t is None or t.head_dim % 32 == 0
    data["type_k"] = draw(st.sampled_from(["f16", "q8_0", "q4_0"] if blocks_fit else ["f16"]))
    data["flash_attn"] = draw(st.booleans())
    quantized_v = data["flash_attn"] and blocks_fit
    data["type_v"] = draw(st.sampled_from(["f16", "q8_0"])) if quantized_v else "f16"
    if draw(st.booleans()):
        data["n_gpu_layers"] = draw(st.integers(0, 100))
    runtimes = ["transformers"]
    if mode == "inference" and t is not None and t.family in (Family.DECODER, Family.MOE):
        served_by_vllm = Precision(data["precision"]) not in VLLM_REFUSED
        if served_by_vllm and data["kv_cache_dtype"] != "fp32":
            runtimes.append("vllm")
        if str(t.config.get("model_type")) in LLAMA_CPP_MODEL_TYPES:
            runtimes += ["llama_cpp", "ollama"]
    data["runtime"] = draw(st.sampled_from(runtimes))
    return data


def gpu_ids() -> st.SearchStrategy[str]:
    return st.sampled_from(GPUS)


# Values to try in a field that does not apply: each differs from the field's default.
ALTERNATES: dict[str, tuple[object, ...]] = {
    "optimizer": ("sgd", "adafactor"),
    "optimizer_impl": ("for_loop",),
    "checkpointing": ("full", "selective"),
    "grad_accum_steps": (4,),
    "finetune": ("lora",),
    "lora_rank": (64,),
    "lora_targets": ("all_linear",),
    "lora_dtype": ("model",),
    "lora_dropout": ("0.1",),
    "group_size": (32,),
    "decoder_seq_len": (7,),
    "image_size": (64,),
    "sharding": ("zero3",),
    "offload_optimizer": (True,),
    "new_tokens": (100,),
    "kv_cache_dtype": ("fp32", "fp8"),
    "logits": ("all",),
    "seq_len": (3,),
    "attention": ("eager",),
    "tensor_parallel": (2,),
    "runtime": ("vllm", "llama_cpp"),
    "gpu_memory_utilization": ("0.5",),
    "max_num_seqs": (8,),
    "max_num_batched_tokens": (512,),
    "block_size": (16,),
    "enforce_eager": (True,),
    "pipeline_parallel": (2,),
    "gguf_type": ("q8_0",),
    "n_gpu_layers": (0,),
    "n_ubatch": (64,),
    "type_k": ("q4_0",),
    "flash_attn": (False,),
    "num_gpus": (2,),
}
__all__ = [
    "ALTERNATES",
    "CNN_PRESETS",
    "GPUS",
    "any_model",
    "cnn_model",
    "generic_model",
    "gpu_ids",
    "preset_model",
    "scenarios",
    "transformer_model",
    "transformer_of",
]
