"""From checkpoint headers to what the estimator reads: a config and exact bytes.

:func:`from_safetensors` and :func:`from_gguf` turn parsed headers into an
:class:`Imported`: ``scenario``, the model fields of the scenario schema (a
``config.json`` for the transformer path, or a parameter count for the generic one) with
the precision the checkpoint is stored in, and ``summary``, the exact bytes per dtype
and per part that the headers state. :func:`load` reads a path the way the command line
takes it.

Quantized safetensors checkpoints store a linear weight as several tensors; the
parameter count unpacks them:

- GPTQ and AWQ: ``qweight`` int32 packs ``32 / bits`` weights (GPTQ along the input
  dimension, AWQ along the output), with ``qzeros`` int32, fp16 ``scales`` and, for
  GPTQ, ``g_idx`` (AutoGPTQ ``qlinear_cuda_old.py`` ``QuantLinear.__init__``; AutoAWQ
  ``gemm.py`` ``WQLinear_GEMM.__init__``);
- bitsandbytes 4-bit: a uint8 ``weight`` of two 4-bit values a byte, with
  ``weight.absmax``, ``weight.quant_map``, ``weight.nested_absmax``,
  ``weight.nested_quant_map`` and ``weight.quant_state.bitsandbytes__nf4``
  (bitsandbytes ``QuantState.as_dict(packed=True)``); 8-bit: an int8 ``weight`` with
  its fp32 row scales ``SCB`` (``Int8Params``);
- FP8: one-byte ``weight`` with ``weight_scale_inv`` (block scales, DeepSeek-V3) or
  ``weight_scale`` and ``input_scale`` (compressed-tensors, FBGEMM);
- MXFP4: ``*_blocks`` uint8 holding two e2m1 values a byte, with one e8m0 byte in
  ``*_scales`` per block of 32 (transformers ``integrations/mxfp4.py``, gpt-oss);
- compressed-tensors: ``weight_packed`` int32 (``32 / num_bits`` weights each) or uint8
  (NVFP4, two a byte), with ``weight_scale``, ``weight_zero_point``,
  ``weight_global_scale`` and the int64 ``weight_shape`` (compressed-tensors
  ``PackedQuantizationCompressor``, ``NVFP4PackedCompressor``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nnmem.errors import NnmemError
from nnmem.formats import is_float
from nnmem.readers import gguf as gguf_reader
from nnmem.readers import safetensors as st
from nnmem.readers.gguf import GgufArray, GgufFile
from nnmem.readers.safetensors import INDEX_NAME, SafetensorsHeader, TensorInfo
from nnmem.scenario import Precision

QUANTIZED = "quantized weights"
SCALES = "quantization scales and zeros"
WEIGHTS = "weights"

SCALE_SUFFIXES = (
    ".qzeros",
    ".scales",
    ".g_idx",
    ".absmax",
    ".quant_map",
    ".nested_absmax",
    ".nested_quant_map",
    ".SCB",
    ".weight_format",
    "weight_scale_inv",
    "weight_scale",
    "input_scale",
    ".k_scale",
    ".v_scale",
    "weight_zero_point",
    "weight_global_scale",
    "weight_shape",
    "_scales",
)
FP8_DTYPES = {"F8_E4M3", "F8_E5M2"}
FLOAT_PRECISION = {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}


@dataclass(frozen=True)
class WeightSummary:
    """What the headers state, exactly: tensors, parameters and bytes."""

    format: str  # "safetensors" or "gguf"
    files: tuple[str, ...]
    tensors: int
    parameters: int  # weights, packed ones unpacked; quantization scales not counted
    tensor_bytes: int  # bytes of the tensors themselves
    file_bytes: int  # bytes of the files: headers (and GGUF padding) included
    bytes_by_dtype: dict[str, int]
    bytes_by_part: dict[str, int]
    quantization: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        return {
            "format": self.format,
            "files": list(self.files),
            "tensors": self.tensors,
            "parameters": self.parameters,
            "tensor_bytes": self.tensor_bytes,
            "file_bytes": self.file_bytes,
            "bytes_by_dtype": dict(self.bytes_by_dtype),
            "bytes_by_part": dict(self.bytes_by_part),
            "quantization": self.quantization,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Imported:
    """A checkpoint read for the estimator: ``scenario`` holds schema fields (the model,
    and the precision when the checkpoint fixes one); ``summary`` the exact bytes."""

    scenario: dict[str, Any]
    summary: WeightSummary
    config: dict[str, Any] | None = field(default=None)


# --- safetensors --------------------------------------------------------------------------


def _quant_config(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    q = config.get("quantization_config") if config else None
    return q if isinstance(q, Mapping) else {}


def _method(names: set[str], tensors: Sequence[TensorInfo], qc: Mapping[str, Any]) -> str | None:
    declared = qc.get("quant_method")
    if isinstance(declared, str) and declared:
        return declared.lower()
    if any(n.endswith(".qweight") for n in names):
        return "gptq" if any(n.endswith(".g_idx") for n in names) else "awq"
    if any(n.endswith(".absmax") or n.endswith(".SCB") for n in names):
        return "bitsandbytes"
    if any(n.endswith("_blocks") for n in names):
        return "mxfp4"
    if any(t.dtype in FP8_DTYPES for t in tensors):
        return "fp8"
    return None


def _compressed_bits(qc: Mapping[str, Any]) -> object:
    """compressed-tensors: the first group's ``weights.num_bits`` (4 when absent)."""
    groups = qc.get("config_groups")
    if isinstance(groups, Mapping):
        for group in groups.values():
            weights = group.get("weights") if isinstance(group, Mapping) else None
            if isinstance(weights, Mapping):
                return weights.get("num_bits", 4)
    return 4


def _part(t: TensorInfo, names: set[str], bits: int) -> tuple[str, int]:
    """The part a tensor belongs to, and the weights it holds."""
    n = t.name
    if n.endswith((".qweight", ".weight_packed")) and t.dtype in ("I32", "U32"):
        return QUANTIZED, t.numel * (32 // bits)
    if n.endswith(".weight_packed") and t.dtype == "U8":
        return QUANTIZED, t.numel * 2
    if n.endswith("_blocks") and t.dtype == "U8" and n.removesuffix("_blocks") + "_scales" in names:
        return QUANTIZED, t.numel * 2
    if n.endswith(".weight") and t.dtype == "U8" and n + ".absmax" in names:
        return QUANTIZED, t.numel * 2
    if n.endswith(".weight") and t.dtype == "I8" and n.removesuffix(".weight") + ".SCB" in names:
        return QUANTIZED, t.numel
    if t.dtype in FP8_DTYPES and n.endswith(".weight"):
        return QUANTIZED, t.numel
    if ".quant_state." in n or n.endswith(SCALE_SUFFIXES):
        return SCALES, 0
    return WEIGHTS, t.numel


def _precision(method: str | None, qc: Mapping[str, Any], names: set[str]) -> str | None:
    if method in ("gptq", "awq") and qc.get("bits", 4) == 4:
        return method
    if method == "bitsandbytes":
        if qc.get("load_in_8bit") or any(n.endswith(".SCB") for n in names):
            return "int8"
        nested = qc.get("bnb_4bit_use_double_quant") or any(
            n.endswith(".nested_absmax") for n in names
        )
        return "nf4_dq" if nested else "nf4"
    if method == "fp8":
        return "fp8"
    return None


def _layer_count(names: Sequence[str]) -> int | None:
    found = {
        int(m.group(1))
        for n in names
        if (m := re.search(r"(?:^|\.)(?:layers|h|blocks|layer|block)\.(\d+)\.", n))
    }
    return max(found) + 1 if found else None


def _embedding(tensors: Sequence[TensorInfo]) -> TensorInfo | None:
    for t in tensors:
        if len(t.shape) == 2 and t.name.endswith(
            ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "shared.weight")
        ):
            return t
    return None


def from_safetensors(
    headers: Sequence[SafetensorsHeader],
    config: Mapping[str, Any] | None = None,
    index_total: int | None = None,
) -> Imported:
    """The scenario fields and exact bytes of a safetensors checkpoint.

    With ``config`` (its ``config.json``) the model is the transformer that config
    describes; without, a generic model of the headers' exact parameter count, with the
    width of the token embedding and the number of numbered layers.

    >>> import json, struct
    >>> head = json.dumps({"embed_tokens.weight": {"dtype": "BF16", "shape": [8, 4],
    ...                    "data_offsets": [0, 64]}}).encode()
    >>> h = st.read_header(struct.pack("<Q", len(head)) + head)
    >>> got = from_safetensors([h])
    >>> got.scenario, got.summary.bytes_by_dtype
    ({'model': 'generic', 'params_millions': '0.000032', 'hidden_size': 4, \
'precision': 'bf16'}, {'BF16': 64})
    """
    tensors = [t for h in headers for t in h.tensors]
    names = {t.name for t in tensors}
    qc = _quant_config(config)
    bits = qc.get("bits", _compressed_bits(qc))
    bits = bits if isinstance(bits, int) and bits in (2, 3, 4, 8) else 4
    method = _method(names, tensors, qc)
    parts: dict[str, int] = {}
    by_dtype: dict[str, int] = {}
    params = 0
    for t in tensors:
        part, count = _part(t, names, bits) if method else (WEIGHTS, t.numel)
        parts[part] = parts.get(part, 0) + t.nbytes
        by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + t.nbytes
        params += count
    notes: list[str] = []
    tensor_bytes = sum(by_dtype.values())
    if index_total is not None and index_total != tensor_bytes:
        notes.append(
            f"{INDEX_NAME} states total_size {index_total:,}; the shard headers add up to "
            f"{tensor_bytes:,} bytes of tensors."
        )
    summary = WeightSummary(
        format="safetensors",
        files=tuple(h.name for h in headers),
        tensors=len(tensors),
        parameters=params,
        tensor_bytes=tensor_bytes,
        file_bytes=sum(h.file_bytes for h in headers),
        bytes_by_dtype=dict(sorted(by_dtype.items(), key=lambda kv: (-kv[1], kv[0]))),
        bytes_by_part=dict(sorted(parts.items(), key=lambda kv: (-kv[1], kv[0]))),
        quantization=method,
        notes=tuple(notes),
    )
    scenario: dict[str, Any]
    if config is not None:
        scenario = {"model": "transformer", "config": dict(config)}
    else:
        scenario = {"model": "generic", "params_millions": _millions(params)}
        embedding = _embedding(tensors)
        if embedding is not None:
            scenario["hidden_size"] = embedding.shape[1]
        layers = _layer_count(sorted(names))
        if layers is not None:
            scenario["num_layers"] = layers
    precision = _precision(method, qc, names) if method else _float_precision(by_dtype)
    if precision:
        scenario["precision"] = precision
        _stored_bytes(scenario, precision, summary.bytes_by_part)
    return Imported(scenario, summary, None if config is None else dict(config))


def _stored_bytes(scenario: dict[str, Any], precision: str, parts: Mapping[str, int]) -> None:
    """A quantized checkpoint's weights term is its stored bytes (``checkpoint_bytes``);
    a float one's is P × its width, which equals them."""
    if not is_float(Precision(precision).weight_format):
        scenario["checkpoint_bytes"] = dict(parts)


def _millions(params: int) -> str:
    text = format(Decimal(params) / Decimal(10**6), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _float_precision(by_dtype: Mapping[str, int]) -> str | None:
    floats = {k: v for k, v in by_dtype.items() if k in FLOAT_PRECISION}
    if not floats:
        return None
    return FLOAT_PRECISION[max(floats, key=lambda k: floats[k])]


# --- GGUF ---------------------------------------------------------------------------------

# general.architecture -> the transformers model_type with the same layout.
GGUF_MODEL_TYPES = {
    "llama": "llama",
    "mistral": "mistral",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
    "phi3": "phi3",
    "olmo2": "olmo2",
    "gpt2": "gpt2",
    "starcoder": "gpt_bigcode",
}
GELU_TANH = {"gemma", "gemma2", "gemma3"}
# llama.cpp llama-model-loader / llama-arch.cpp LLM_KV names (``%s`` is the architecture)
# and the config.json key each one fills.
GGUF_KEYS = (
    ("block_count", "num_hidden_layers"),
    ("embedding_length", "hidden_size"),
    ("feed_forward_length", "intermediate_size"),
    ("attention.head_count", "num_attention_heads"),
    ("attention.head_count_kv", "num_key_value_heads"),
    ("attention.key_length", "head_dim"),
    ("context_length", "max_position_embeddings"),
    ("attention.sliding_window", "sliding_window"),
    ("vocab_size", "vocab_size"),
    ("expert_count", "num_local_experts"),
    ("expert_used_count", "num_experts_per_tok"),
    ("expert_feed_forward_length", "moe_intermediate_size"),
    ("expert_shared_feed_forward_length", "shared_expert_intermediate_size"),
)
# general.file_type (llama.h ``enum llama_ftype``) -> the scenario's precision.
GGUF_PRECISION = {0: "fp32", 1: "fp16", 7: "q8_0", 2: "q4_0", 15: "q4_k_m", 17: "q5_k_m"}
GGUF_PRECISION |= {18: "q6_k", 32: "bf16"}


def gguf_config(g: GgufFile, field: str = "gguf") -> dict[str, Any]:
    """A ``config.json`` with the architecture keys of a GGUF file."""
    arch = g.architecture
    if not arch:
        raise NnmemError.single(
            field, f"{g.name}: metadata 'general.architecture' is missing or not a string."
        )
    config: dict[str, Any] = {"model_type": GGUF_MODEL_TYPES.get(arch, arch)}
    for key, hf in GGUF_KEYS:
        value = g.metadata.get(f"{arch}.{key}")
        if isinstance(value, GgufArray):
            # Per-layer values (OpenELM, Gemma 3n): the largest layer bounds the memory.
            value = max(value.values or (0,))
        if isinstance(value, int) and not isinstance(value, bool):
            config[hf] = value
    names = {t.name: t for t in g.tensors}
    embedding = names.get("token_embd.weight")
    if "vocab_size" not in config:
        tokens = g.metadata.get("tokenizer.ggml.tokens")
        if embedding is not None and len(embedding.dims) == 2:
            config["vocab_size"] = embedding.dims[1]  # ggml ne[1] is the row count
        elif isinstance(tokens, GgufArray):
            config["vocab_size"] = tokens.length
    config["tie_word_embeddings"] = "output.weight" not in names
    config["hidden_act"] = (
        "gelu_pytorch_tanh" if arch in GELU_TANH else "gelu_new" if arch == "gpt2" else "silu"
    )
    if config["model_type"] != "qwen2" and "blk.0.attn_q.bias" in names:
        config["attention_bias"] = True
    if "blk.0.ffn_up.bias" in names:
        config["mlp_bias"] = True
    return config


def from_gguf(g: GgufFile, field: str = "gguf") -> Imported:
    """The scenario fields and exact bytes of a GGUF file."""
    config = gguf_config(g, field)
    by_type = g.bytes_by_type()
    file_type = g.metadata.get("general.file_type")
    notes = []
    if g.size is not None and g.size != g.data_offset + g.data_bytes:
        notes.append(
            f"The file has {g.size:,} bytes; header and padded tensors account for "
            f"{g.data_offset + g.data_bytes:,}."
        )
    summary = WeightSummary(
        format="gguf",
        files=(g.name,),
        tensors=len(g.tensors),
        parameters=sum(t.numel for t in g.tensors),
        tensor_bytes=g.tensor_bytes,
        file_bytes=g.file_bytes,
        bytes_by_dtype=by_type,
        bytes_by_part={
            WEIGHTS: g.tensor_bytes,
            "header and alignment": g.file_bytes - g.tensor_bytes,
        },
        quantization=None if not isinstance(file_type, int) else f"llama_ftype {file_type}",
        notes=tuple(notes),
    )
    scenario: dict[str, Any] = {"model": "transformer", "config": config}
    if isinstance(file_type, int) and file_type in GGUF_PRECISION:
        scenario["precision"] = GGUF_PRECISION[file_type]
        _stored_bytes(scenario, scenario["precision"], by_type)
    return Imported(scenario, summary, config)


# --- paths ---------------------------------------------------------------------------------


def _config_beside(directory: str, field: str) -> dict[str, Any] | None:
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as source:
            raw = source.read(st.MAX_HEADER_BYTES + 1)
    except OSError as error:
        raise NnmemError.single(field, f"Cannot read {path}: {error.strerror}.") from None
    if len(raw) > st.MAX_HEADER_BYTES:
        raise NnmemError.single(field, f"{path}: config.json is larger than 100 MB.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NnmemError.single(field, f"{path}: config.json is not valid UTF-8.") from None
    config = st.load_shallow_json(text, field, "config.json")
    if not isinstance(config, dict):
        raise NnmemError.single(field, f"{path}: config.json must hold a JSON object.")
    return config


def load_safetensors(path: str, field: str = "safetensors") -> Imported:
    """Read a ``.safetensors`` file, a ``model.safetensors.index.json`` (with its shards
    beside it) or a directory holding either, and its ``config.json`` when present."""
    if os.path.isdir(path):
        directory = path
        index_path = os.path.join(path, INDEX_NAME)
        single = os.path.join(path, "model.safetensors")
        if os.path.isfile(index_path):
            path = index_path
        elif os.path.isfile(single):
            path = single
        else:
            files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
            if not files:
                raise NnmemError.single(
                    field, f"{directory} holds no .safetensors file and no {INDEX_NAME}."
                )
            headers = [st.read_file(os.path.join(directory, f), field) for f in files]
            return from_safetensors(headers, _config_beside(directory, field))
    elif not os.path.exists(path):
        raise NnmemError.single(field, f"Cannot read {path}: no such file or directory.")
    directory = os.path.dirname(path) or "."
    config = _config_beside(directory, field)
    if path.endswith(".json"):
        try:
            with open(path, "rb") as source:
                raw = source.read(st.MAX_HEADER_BYTES + 1)
        except OSError as error:
            raise NnmemError.single(field, f"Cannot read {path}: {error.strerror}.") from None
        index = st.read_index(raw, os.path.basename(path), field)
        shards = {s: st.read_file(os.path.join(directory, s), field) for s in index.shards}
        st.check_shards(index, shards, field)
        return from_safetensors(list(shards.values()), config, index.total_size)
    return from_safetensors([st.read_file(path, field)], config)


def load_gguf(path: str, field: str = "gguf") -> Imported:
    """Read a GGUF file's header."""
    return from_gguf(gguf_reader.read_file(path, field), field)
