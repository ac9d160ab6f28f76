"""Safetensors and GGUF header readers, on files these tests write themselves.

The expected bytes are worked out by hand: a safetensors tensor takes numel × the
dtype's bytes (safetensors ``tensor.rs`` ``Dtype::size``); a GGUF tensor takes
``ne[0] / block × block bytes`` per row (ggml ``ggml.c`` ``type_traits`` and
``ggml_nbytes``). The two catalog models are written with the tensor names and shapes
of their published checkpoints (``meta-llama/Llama-3.1-8B``, four shards, and
``Qwen/Qwen2.5-0.5B``, one file with the embedding tied to the head), so that the
header and ``config.json`` give the catalog preset's estimate to the byte.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nnmem import catalog, estimate, parse
from nnmem.errors import NnmemError
from nnmem.readers import NeedMoreBytes, browser, read_gguf, read_header, read_index
from nnmem.readers.checkpoint import (
    QUANTIZED,
    SCALES,
    WEIGHTS,
    from_gguf,
    from_safetensors,
    gguf_config,
    load_gguf,
    load_safetensors,
)

# --- a tiny safetensors writer -------------------------------------------------------------

BYTES = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "I64": 8, "U8": 1, "I8": 1, "F8_E4M3": 1}


def safetensors(
    tensors: Sequence[tuple[str, str, Sequence[int]]],
    data: bool = False,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """The bytes of a safetensors file: the header, and zeros for the data if ``data``."""
    header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
    at = 0
    for name, dtype, shape in tensors:
        n = BYTES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + n]}
        at += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + (bytes(at) if data else b"")


def llama_31_8b() -> list[tuple[str, str, list[int]]]:
    """Llama-3.1-8B's tensors as LlamaForCausalLM saves them, in bf16."""
    h, f, kv, vocab = 4096, 14336, 1024, 128256
    tensors = [("model.embed_tokens.weight", "BF16", [vocab, h])]
    for i in range(32):
        p = f"model.layers.{i}."
        tensors += [
            (p + "input_layernorm.weight", "BF16", [h]),
            (p + "mlp.down_proj.weight", "BF16", [h, f]),
            (p + "mlp.gate_proj.weight", "BF16", [f, h]),
            (p + "mlp.up_proj.weight", "BF16", [f, h]),
            (p + "post_attention_layernorm.weight", "BF16", [h]),
            (p + "self_attn.k_proj.weight", "BF16", [kv, h]),
            (p + "self_attn.o_proj.weight", "BF16", [h, h]),
            (p + "self_attn.q_proj.weight", "BF16", [h, h]),
            (p + "self_attn.v_proj.weight", "BF16", [kv, h]),
        ]
    return [*tensors, ("model.norm.weight", "BF16", [h]), ("lm_head.weight", "BF16", [vocab, h])]


def qwen25_05b() -> list[tuple[str, str, list[int]]]:
    """Qwen2.5-0.5B's tensors: q/k/v biases, no lm_head (tied to the embedding)."""
    h, f, kv = 896, 4864, 128
    tensors = [("model.embed_tokens.weight", "BF16", [151936, h])]
    for i in range(24):
        p = f"model.layers.{i}."
        tensors += [
            (p + "input_layernorm.weight", "BF16", [h]),
            (p + "mlp.down_proj.weight", "BF16", [h, f]),
            (p + "mlp.gate_proj.weight", "BF16", [f, h]),
            (p + "mlp.up_proj.weight", "BF16", [f, h]),
            (p + "post_attention_layernorm.weight", "BF16", [h]),
            (p + "self_attn.k_proj.bias", "BF16", [kv]),
            (p + "self_attn.k_proj.weight", "BF16", [kv, h]),
            (p + "self_attn.o_proj.weight", "BF16", [h, h]),
            (p + "self_attn.q_proj.bias", "BF16", [h]),
            (p + "self_attn.q_proj.weight", "BF16", [h, h]),
            (p + "self_attn.v_proj.bias", "BF16", [kv]),
            (p + "self_attn.v_proj.weight", "BF16", [kv, h]),
        ]
    return [*tensors, ("model.norm.weight", "BF16", [h])]


def write_llama_repo(root: Path, with_config: bool = True) -> Path:
    """Four header-only shards, the index and config.json, as the Hub serves them."""
    tensors = llama_31_8b()
    # Embedding and layers 0-7 in shard 1, 8-15, 16-23, then 24-31 with the head.
    shards: list[list[tuple[str, str, list[int]]]] = [[], [], [], []]
    for t in tensors:
        layer = t[0].split(".")[2] if t[0].startswith("model.layers.") else None
        k = 0 if layer is None and "embed" in t[0] else 3 if layer is None else int(layer) // 8
        shards[k].append(t)
    weight_map = {}
    for k, part in enumerate(shards):
        name = f"model-{k + 1:05d}-of-00004.safetensors"
        (root / name).write_bytes(safetensors(part))
        weight_map |= {t[0]: name for t in part}
    index = {"metadata": {"total_size": 16_060_522_496}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    if with_config:
        config = catalog.models()["llama-3.1-8b"].config
        (root / "config.json").write_text(json.dumps(config))
    return root


def sizes(data: dict[str, Any]) -> tuple[int, dict[str, int]]:
    result = estimate(parse(data))
    return result.total_bytes, result.component_sizes()


# --- safetensors: reading -----------------------------------------------------------------


def test_header_fields() -> None:
    blob = safetensors([("a", "F32", [2, 3]), ("b", "BF16", [5])], data=True)
    h = read_header(blob, "x.safetensors")
    assert [(t.name, t.dtype, t.shape, t.begin, t.end) for t in h.tensors] == [
        ("a", "F32", (2, 3), 0, 24),
        ("b", "BF16", (5,), 24, 34),
    ]
    assert h.metadata == {"format": "pt"}
    assert h.data_present
    assert h.file_bytes == len(blob)
    assert h.bytes_by_dtype() == {"F32": 24, "BF16": 10}


def test_header_only_file_reads_like_the_whole(tmp_path: Path) -> None:
    whole = read_header(safetensors([("a", "F32", [2, 3])], data=True))
    path = tmp_path / "a.safetensors"
    path.write_bytes(safetensors([("a", "F32", [2, 3])]))
    with path.open("rb") as stream:
        head = read_header(stream, "a.safetensors")
    assert head.tensors == whole.tensors
    assert head.file_bytes == whole.file_bytes
    assert not head.data_present


def test_bytes_given_with_the_file_size_count_as_its_start() -> None:
    blob = safetensors([("a", "F32", [1000])], data=True)
    head = read_header(blob[:200], size=len(blob))
    assert head.data_bytes == 4000
    with pytest.raises(NeedMoreBytes) as info:
        read_header(blob[:20], size=len(blob))
    assert info.value.at_least == len(blob) - 4000


def test_index_reads_shards_and_total() -> None:
    index = read_index(
        json.dumps(
            {
                "metadata": {"total_size": 40},
                "weight_map": {
                    "a": "m-1.safetensors",
                    "b": "m-2.safetensors",
                    "c": "m-1.safetensors",
                },
            }
        )
    )
    assert index.shards == ("m-1.safetensors", "m-2.safetensors")
    assert index.total_size == 40


HOSTILE_SAFETENSORS: list[tuple[str, bytes, str]] = [
    ("truncated length", b"\x10\x00\x00", "the file ends inside the 8-byte header length"),
    (
        "header longer than the file",
        struct.pack("<Q", 1000) + b"{}",
        "the header length is 1,000 bytes but the file has only 2 after it",
    ),
    (
        "header over safetensors' limit",
        struct.pack("<Q", 2**40) + b"{}",
        "more than the 100,000,000 safetensors allows",
    ),
    ("not JSON", struct.pack("<Q", 4) + b"{abc", "the header is not valid JSON"),
    ("not UTF-8", struct.pack("<Q", 4) + b"{\xff\xfe}", "the header is not valid UTF-8"),
    ("not an object", struct.pack("<Q", 2) + b"[]", "does not start with '{'"),
    (
        "deep nesting",
        struct.pack("<Q", 100_005) + b'{"a":' + b"[" * 100_000,
        "nested too deeply",
    ),
]


@pytest.mark.parametrize(
    ("blob", "message"),
    [c[1:] for c in HOSTILE_SAFETENSORS],
    ids=[c[0] for c in HOSTILE_SAFETENSORS],
)
def test_hostile_safetensors_headers(blob: bytes, message: str) -> None:
    with pytest.raises(NnmemError) as info:
        read_header(blob, "bad.safetensors")
    assert info.value.field == "safetensors"
    assert str(info.value).startswith("bad.safetensors: ")
    assert message in str(info.value)


def _raw_header(entries: dict[str, Any], data: int = 0) -> bytes:
    raw = json.dumps(entries).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data)


@pytest.mark.parametrize(
    ("entries", "data", "message"),
    [
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}},
            0,
            "tensor 'a' is F32 of shape [2], 8 bytes, but its data_offsets span 12",
        ),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            0,
            "tensor 'b' starts at data byte 4, which overlaps the tensor before it",
        ),
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}},
            0,
            "which leaves a gap before it (expected 0)",
        ),
        (
            {"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}},
            0,
            "absurd shape",
        ),
        (
            {"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
            0,
            "must have a shape of at most 16 whole numbers",
        ),
        (
            {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
            7,
            "the file should have 86 bytes (or 70 for the header alone), but it has 77",
        ),
        ({"__metadata__": {"format": 1}}, 0, "__metadata__ must be an object of strings"),
        (
            {"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}},
            0,
            "tensor 'a' has dtype \"Q4\"; the dtypes are BOOL, F4,",
        ),
    ],
)
def test_inconsistent_headers(entries: dict[str, Any], data: int, message: str) -> None:
    with pytest.raises(NnmemError) as info:
        read_header(_raw_header(entries, data), "bad.safetensors")
    assert message in str(info.value)


def test_index_refuses_paths_and_bad_totals() -> None:
    with pytest.raises(NnmemError, match=r"must be a plain \.safetensors file name"):
        read_index('{"weight_map": {"a": "/etc/x.safetensors"}}')
    with pytest.raises(NnmemError, match='must be a JSON object with a "weight_map"'):
        read_index("[]")
    with pytest.raises(NnmemError, match=r"total_size must be a number of bytes \(got \"abc\"\)"):
        read_index('{"metadata": {"total_size": "abc"}, "weight_map": {}}')
    with pytest.raises(NnmemError, match="nested too deeply"):
        read_index('{"weight_map": ' + "[1," * 5_000 + "]" * 5_000 + "}")


# --- safetensors: the catalog models to the byte --------------------------------------------


def test_llama_31_8b_sharded_gives_the_preset_to_the_byte(tmp_path: Path) -> None:
    """8,030,261,248 bf16 parameters: 16,060,522,496 bytes, the index's total_size."""
    got = load_safetensors(str(write_llama_repo(tmp_path)))
    s = got.summary
    assert s.files == tuple(f"model-0000{k}-of-00004.safetensors" for k in range(1, 5))
    assert s.tensors == 1 + 32 * 9 + 2
    assert s.parameters == catalog.models()["llama-3.1-8b"].params == 8_030_261_248
    assert s.tensor_bytes == 2 * 8_030_261_248 == 16_060_522_496
    assert s.bytes_by_dtype == {"BF16": 16_060_522_496}
    assert s.notes == ()  # the index's total_size agrees with the headers
    assert got.scenario["precision"] == "bf16"
    for extra in ({"mode": "inference", "seq_len": 4096}, {"precision": "amp_bf16"}):
        mine = sizes({**got.scenario, **extra})
        preset = sizes({"model": "preset", "preset": "llama-3.1-8b", "precision": "bf16", **extra})
        assert mine == preset
    inference = estimate(parse({**got.scenario, "mode": "inference"}))
    assert inference.component("weights").bytes == s.tensor_bytes


def test_index_file_path_and_directory_agree(tmp_path: Path) -> None:
    write_llama_repo(tmp_path)
    by_dir = load_safetensors(str(tmp_path))
    by_index = load_safetensors(str(tmp_path / "model.safetensors.index.json"))
    assert by_dir == by_index


def test_qwen25_05b_tied_single_file(tmp_path: Path) -> None:
    """494,032,768 parameters (the head is the embedding): 988,065,536 bf16 bytes."""
    (tmp_path / "model.safetensors").write_bytes(safetensors(qwen25_05b()))
    (tmp_path / "config.json").write_text(json.dumps(catalog.models()["qwen2.5-0.5b"].config))
    got = load_safetensors(str(tmp_path / "model.safetensors"))
    assert got.summary.parameters == 494_032_768
    assert got.summary.tensor_bytes == 988_065_536
    extra = {"mode": "inference", "batch_size": 4}
    preset = sizes({"model": "preset", "preset": "qwen2.5-0.5b", "precision": "bf16", **extra})
    assert sizes({**got.scenario, **extra}) == preset


def test_without_config_the_model_is_generic_with_the_exact_count(tmp_path: Path) -> None:
    write_llama_repo(tmp_path, with_config=False)
    got = load_safetensors(str(tmp_path))
    assert got.scenario == {
        "model": "generic",
        "params_millions": "8030.261248",
        "hidden_size": 4096,
        "num_layers": 32,
        "precision": "bf16",
    }
    model = parse(got.scenario).model
    assert (model.params, model.hidden_size, model.num_layers) == (8_030_261_248, 4096, 32)


def test_a_shard_missing_a_listed_tensor(tmp_path: Path) -> None:
    write_llama_repo(tmp_path)
    (tmp_path / "model-00004-of-00004.safetensors").write_bytes(
        safetensors([("model.norm.weight", "BF16", [4096])])
    )
    with pytest.raises(
        NnmemError, match=r"tensor 'model\.layers\.24\.input_layernorm\.weight' is not in its shard"
    ):
        load_safetensors(str(tmp_path))


def test_a_missing_path() -> None:
    with pytest.raises(NnmemError, match="no such file or directory"):
        load_safetensors("/nonexistent/model.safetensors")


# --- safetensors: quantized checkpoints -----------------------------------------------------
# One linear layer of 512 outputs and 256 inputs (131,072 weights), group size 128.


def _quantized(tensors: list[tuple[str, str, list[int]]], config: dict[str, Any] | None = None):
    h = read_header(safetensors([*tensors, ("model.norm.weight", "F16", [256])]))
    return from_safetensors([h], config)


def test_gptq_packs_eight_weights_in_an_int32() -> None:
    """qweight [256/8, 512] int32; qzeros [2, 512/8] int32; scales [2, 512] fp16;
    g_idx [256] int32."""
    p = "model.layers.0.mlp.up_proj."
    got = _quantized(
        [
            (p + "qweight", "I32", [32, 512]),
            (p + "qzeros", "I32", [2, 64]),
            (p + "scales", "F16", [2, 512]),
            (p + "g_idx", "I32", [256]),
        ],
        {"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}},
    )
    s = got.summary
    assert s.quantization == "gptq"
    assert s.parameters == 256 * 512 + 256
    assert s.bytes_by_part == {QUANTIZED: 65_536, SCALES: 512 + 2_048 + 1_024, WEIGHTS: 512}
    assert s.bytes_by_dtype == {"I32": 65_536 + 512 + 1_024, "F16": 2_048 + 512}
    assert got.scenario["precision"] == "gptq"


def test_awq_packs_along_the_output() -> None:
    p = "model.layers.0.mlp.up_proj."
    got = _quantized(
        [
            (p + "qweight", "I32", [256, 64]),
            (p + "qzeros", "I32", [2, 64]),
            (p + "scales", "F16", [2, 512]),
        ]
    )
    assert got.summary.quantization == "awq"  # no g_idx: the AWQ layout
    assert got.summary.parameters == 256 * 512 + 256
    assert got.summary.bytes_by_part[SCALES] == 512 + 2_048


def test_bitsandbytes_nf4_with_double_quantization() -> None:
    """Two 4-bit values a byte: 65,536 bytes; 2,048 absmax (one per 64) in uint8 with
    8 fp32 nested absmax (one per 256 blocks) and two code books."""
    p = "model.layers.0.mlp.up_proj.weight"
    got = _quantized(
        [
            (p, "U8", [65_536, 1]),
            (p + ".absmax", "U8", [2_048]),
            (p + ".quant_map", "F32", [16]),
            (p + ".nested_absmax", "F32", [8]),
            (p + ".nested_quant_map", "F32", [256]),
            (p + ".quant_state.bitsandbytes__nf4", "U8", [120]),
        ]
    )
    s = got.summary
    assert s.quantization == "bitsandbytes"
    assert s.parameters == 131_072 + 256
    assert s.bytes_by_part[QUANTIZED] == 65_536
    assert s.bytes_by_part[SCALES] == 2_048 + 64 + 32 + 1_024 + 120
    assert got.scenario["precision"] == "nf4_dq"


def test_fp8_with_block_scales() -> None:
    p = "model.layers.0.mlp.up_proj."
    got = _quantized(
        [(p + "weight", "F8_E4M3", [512, 256]), (p + "weight_scale_inv", "F32", [4, 2])]
    )
    assert got.summary.quantization == "fp8"
    assert got.summary.bytes_by_part == {QUANTIZED: 131_072, WEIGHTS: 512, SCALES: 32}
    assert got.scenario["precision"] == "fp8"


def test_mxfp4_blocks_and_scales() -> None:
    """4 experts × 512 rows × 8 blocks of 32: 16 bytes a block plus one scale byte."""
    p = "model.layers.0.mlp.experts.gate_up_proj"
    got = _quantized([(p + "_blocks", "U8", [4, 512, 8, 16]), (p + "_scales", "U8", [4, 512, 8])])
    s = got.summary
    assert s.quantization == "mxfp4"
    assert s.parameters == 4 * 512 * 256 + 256
    assert s.bytes_by_part == {QUANTIZED: 262_144, SCALES: 16_384, WEIGHTS: 512}
    assert "precision" not in got.scenario  # no MXFP4 format in the estimator yet


def test_compressed_tensors_w4a16() -> None:
    """weight_packed [512, 256/8] int32 with fp16 group scales [512, 2] and its shape."""
    p = "model.layers.0.mlp.up_proj."
    config = {
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "config_groups": {"group_0": {"weights": {"num_bits": 4, "group_size": 128}}},
        }
    }
    got = _quantized(
        [
            (p + "weight_packed", "I32", [512, 32]),
            (p + "weight_scale", "F16", [512, 2]),
            (p + "weight_shape", "I64", [2]),
        ],
        config,
    )
    assert got.summary.quantization == "compressed-tensors"
    assert got.summary.parameters == 131_072 + 256
    assert got.summary.bytes_by_part == {QUANTIZED: 65_536, SCALES: 2_048 + 16, WEIGHTS: 512}
    assert "precision" not in got.scenario


# --- a tiny GGUF writer --------------------------------------------------------------------

U32, I32, F32, BOOL, STR, ARR, U64 = 4, 5, 6, 7, 8, 9, 10
PACK = {U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q"}
BLOCKS = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (1, 2)}


def _str(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def _value(vtype: int, value: Any) -> bytes:
    if vtype == STR:
        return _str(value)
    if vtype == ARR:
        item, items = value
        return struct.pack("<IQ", item, len(items)) + b"".join(_value(item, v) for v in items)
    return struct.pack(PACK[vtype], value)


def gguf(
    kv: Sequence[tuple[str, int, Any]],
    tensors: Sequence[tuple[str, Sequence[int], int]],
    data: bool = True,
    version: int = 3,
) -> tuple[bytes, int]:
    """A GGUF file (data zeros, or left out) and the size of the whole file."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, vtype, value in kv:
        out += _str(key) + struct.pack("<I", vtype) + _value(vtype, value)
    offset = 0
    for name, dims, gtype in tensors:
        block, size = BLOCKS[gtype]
        rows = 1
        for d in dims[1:]:
            rows *= d
        out += _str(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", gtype, offset)
        offset += -(-(dims[0] // block * size * rows) // 32) * 32
    out += bytes(-len(out) % 32)
    total = len(out) + offset
    return (out + bytes(offset) if data else out), total


def llama_31_8b_gguf() -> tuple[list[tuple[str, int, Any]], list[tuple[str, list[int], int]]]:
    """Llama-3.1-8B as llama.cpp's converter names it, in a Q4_K_M-like mix."""
    h, f, kv = 4096, 14336, 1024
    meta: list[tuple[str, int, Any]] = [
        ("general.architecture", STR, "llama"),
        ("general.file_type", U32, 15),
        ("llama.block_count", U32, 32),
        ("llama.context_length", U32, 131072),
        ("llama.embedding_length", U32, h),
        ("llama.feed_forward_length", U32, f),
        ("llama.attention.head_count", U32, 32),
        ("llama.attention.head_count_kv", U32, 8),
        ("llama.rope.freq_base", F32, 500000.0),
        ("tokenizer.ggml.tokens", ARR, (STR, ["<s>", "a", "b"])),
    ]
    tensors = [("token_embd.weight", [h, 128256], 12)]
    for i in range(32):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", [h], 0),
            (p + "attn_q.weight", [h, h], 12),
            (p + "attn_k.weight", [h, kv], 12),
            (p + "attn_v.weight", [h, kv], 14),
            (p + "attn_output.weight", [h, h], 12),
            (p + "ffn_norm.weight", [h], 0),
            (p + "ffn_gate.weight", [h, f], 12),
            (p + "ffn_up.weight", [h, f], 12),
            (p + "ffn_down.weight", [f, h], 14),
        ]
    return meta, [*tensors, ("output_norm.weight", [h], 0), ("output.weight", [h, 128256], 14)]


# --- GGUF: reading ----------------------------------------------------------------------


def test_gguf_metadata_and_exact_bytes(tmp_path: Path) -> None:
    """Q8_0 64×4: 2 blocks of 34 B per row, 272 B; Q4_K 256×2: 288 B; F32 3: 12 B."""
    blob, total = gguf(
        [
            ("general.architecture", STR, "llama"),
            ("general.name", STR, "tiny ünïcode"),
            ("x.flag", BOOL, True),
            ("x.ratio", F32, 0.5),
            ("x.big", U64, 2**40),
            ("x.list", ARR, (I32, [1, -2, 3])),
            ("x.words", ARR, (STR, ["a", "bb"])),
        ],
        [("q", [64, 4], 8), ("k", [256, 2], 12), ("n", [3], 0)],
    )
    path = tmp_path / "tiny.gguf"
    path.write_bytes(blob)
    with path.open("rb") as stream:
        g = read_gguf(stream, "tiny.gguf")
    assert g.version == 3
    assert g.metadata["general.name"] == "tiny ünïcode"
    assert g.metadata["x.flag"] is True
    assert g.metadata["x.big"] == 2**40
    assert g.metadata["x.list"].values == (1, -2, 3)
    assert g.metadata["x.words"].values == ("a", "bb")
    assert [(t.name, t.type_name, t.nbytes, t.offset) for t in g.tensors] == [
        ("q", "Q8_0", 272, 0),
        ("k", "Q4_K", 288, 288),
        ("n", "F32", 12, 576),
    ]
    assert g.tensor_bytes == 572
    assert g.file_bytes == total == len(blob)
    assert g.data_offset + g.data_bytes == len(blob)  # 288 + 288 + 32 after the header


def test_gguf_llama_31_8b_config_gives_the_preset_to_the_byte() -> None:
    """Rows of 4,096: Q4_K 16 blocks × 144 = 2,304 B; Q6_K 16 × 210 = 3,360 B."""
    meta, tensors = llama_31_8b_gguf()
    header, total = gguf(meta, tensors, data=False)
    g = read_gguf(header, "Llama-3.1-8B-Q4_K_M.gguf", size=total)  # a File.slice of the header
    q4k_row, q6k_row = 2_304, 3_360
    by_type = {
        "Q4_K": q4k_row * (128_256 + 32 * (4096 + 1024 + 4096 + 14336 * 2)),
        # attn_v and output rows of 4,096; ffn_down rows of 14,336: 56 blocks, 11,760 B
        "Q6_K": q6k_row * (32 * 1024 + 128_256) + 11_760 * 32 * 4096,
        "F32": 4 * 4096 * (2 * 32 + 1),
    }
    assert g.bytes_by_type() == dict(sorted(by_type.items(), key=lambda kv: -kv[1]))
    got = from_gguf(g)
    assert got.summary.file_bytes == total
    assert got.summary.parameters == 8_030_261_248
    assert got.scenario["precision"] == "q4_k_m"
    config = gguf_config(g)
    assert config["vocab_size"] == 128_256
    assert config["tie_word_embeddings"] is False
    for extra in ({"mode": "inference", "precision": "bf16"}, {"precision": "amp_bf16"}):
        mine = sizes({"model": "transformer", "config": config, **extra})
        assert mine == sizes({"model": "preset", "preset": "llama-3.1-8b", **extra})


def test_a_gguf_header_slice_asks_for_more() -> None:
    meta, tensors = llama_31_8b_gguf()
    header, total = gguf(meta, tensors, data=False)
    with pytest.raises(NeedMoreBytes) as info:
        read_gguf(header[:1000], size=total)
    assert 1000 < info.value.at_least <= len(header)


def test_tied_gguf_and_biases() -> None:
    meta = [
        ("general.architecture", STR, "qwen2"),
        ("qwen2.block_count", U32, 1),
        ("qwen2.embedding_length", U32, 32),
        ("qwen2.feed_forward_length", U32, 64),
        ("qwen2.attention.head_count", U32, 4),
        ("qwen2.attention.head_count_kv", ARR, (U32, [2])),
    ]
    blob, _ = gguf(meta, [("token_embd.weight", [32, 10], 0), ("blk.0.attn_q.bias", [32], 0)])
    config = gguf_config(read_gguf(blob))
    assert config == {
        "model_type": "qwen2",
        "num_hidden_layers": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 10,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
    }


def _kv_blob(key: bytes, vtype: int, payload: bytes) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _str(key) + struct.pack("<I", vtype) + payload


HOSTILE_GGUF: list[tuple[str, bytes, str]] = [
    ("empty", b"", "the file ends inside the magic"),
    ("wrong magic", b"GGML" + bytes(20), "not the GGUF magic"),
    ("version 1", b"GGUF" + struct.pack("<I", 1) + bytes(16), "version 1 is no longer read"),
    ("big-endian", b"GGUF" + struct.pack(">I", 3) + bytes(16), "big-endian"),
    (
        "huge tensor count",
        b"GGUF" + struct.pack("<IQQ", 3, 2**63, 0),
        "the tensor count is 9,223,372,036,854,775,808, more than",
    ),
    (
        "huge metadata count",
        b"GGUF" + struct.pack("<IQQ", 3, 0, 10**6) + bytes(100),
        "the metadata count is 1,000,000",
    ),
    (
        "more keys than any model",
        b"GGUF" + struct.pack("<IQQ", 3, 0, 70_000) + bytes(70_000 * 13),
        "the metadata count is 70,000; this reader takes at most 65,536",
    ),
    (
        "huge string",
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62) + bytes(16),
        "metadata key 0 claims 4,611,686,018,427,387,904 bytes",
    ),
    (
        "huge array",
        _kv_blob(b"a", ARR, struct.pack("<IQ", U32, 2**40)),
        "the length of metadata 'a' is 1,099,511,627,776",
    ),
    (
        "nested arrays",
        _kv_blob(
            b"a",
            ARR,
            struct.pack("<IQ", ARR, 1) + struct.pack("<IQ", ARR, 1) + struct.pack("<IQ", U32, 0),
        ),
        "metadata 'a' is an array of arrays, which llama.cpp does not read",
    ),
    (
        "non-UTF-8 key",
        _kv_blob(b"\xff\xfe", U32, bytes(4)).replace(b"GGUF", b"GGUF", 1),
        "metadata key 0 is not valid UTF-8",
    ),
    ("non-UTF-8 value", _kv_blob(b"a", STR, _str(b"\xc3\x28")), "metadata 'a' is not valid UTF-8"),
    (
        "unknown value type",
        _kv_blob(b"a", 99, bytes(8)),
        "metadata 'a' has an unknown value type 99",
    ),
    ("truncated value", _kv_blob(b"a", U64, bytes(3)), "the file ends inside metadata 'a'"),
    (
        "bad alignment",
        _kv_blob(b"general.alignment", U32, struct.pack("<I", 24)),
        "'general.alignment' must be a UINT32 power of two (got 24)",
    ),
]


@pytest.mark.parametrize(
    ("blob", "message"), [c[1:] for c in HOSTILE_GGUF], ids=[c[0] for c in HOSTILE_GGUF]
)
def test_hostile_gguf_headers(blob: bytes, message: str) -> None:
    with pytest.raises(NnmemError) as info:
        read_gguf(blob, "bad.gguf")
    assert info.value.field == "gguf"
    assert str(info.value).startswith("bad.gguf: ")
    assert message in str(info.value)


def _tensor_blob(
    dims: Sequence[int], gtype: int, offset: int = 0, n_dims: int | None = None
) -> bytes:
    n = len(dims) if n_dims is None else n_dims
    info = _str("t") + struct.pack("<I", n) + struct.pack(f"<{len(dims)}Q", *dims)
    return b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info + struct.pack("<IQ", gtype, offset)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (_tensor_blob([1] * 5, 0), "tensor 't' has 5 dimensions; GGUF allows at most 4"),
        (_tensor_blob([2**40, 2**40], 0), "tensor 't' has absurd dimensions"),
        (_tensor_blob([100], 12), "rows of 100 are not whole Q4_K blocks of 256"),
        (_tensor_blob([4], 77), "tensor 't' has an unknown ggml type 77"),
        (_tensor_blob([4], 0, offset=64), "tensor 't' is at data offset 64"),
        (
            _tensor_blob([1024], 0),
            "the tensors need 4,160 bytes but the file has 57: it is truncated",
        ),
    ],
)
def test_hostile_tensor_infos(blob: bytes, message: str) -> None:
    with pytest.raises(NnmemError, match=r"^bad\.gguf: ") as info:
        read_gguf(blob, "bad.gguf")
    assert message in str(info.value)


def test_load_gguf_reads_a_file_and_names_a_missing_one(tmp_path: Path) -> None:
    meta, _ = llama_31_8b_gguf()
    blob, total = gguf(meta, [("token_embd.weight", [4096, 8], 0)])
    (tmp_path / "m.gguf").write_bytes(blob)
    got = load_gguf(str(tmp_path / "m.gguf"))
    assert got.summary.file_bytes == total == len(blob)
    assert got.summary.tensor_bytes == 4096 * 8 * 4
    with pytest.raises(NnmemError, match=r"Cannot read .*nope\.gguf"):
        load_gguf(str(tmp_path / "nope.gguf"))
    with pytest.raises(NnmemError, match=r"'general\.architecture' is missing"):
        from_gguf(read_gguf(gguf([], [])[0]))


# --- what the page calls ------------------------------------------------------------------


def test_hub_parts_give_the_preset(tmp_path: Path) -> None:
    """The page's fetches: config.json, the index, and each shard's JSON header."""
    write_llama_repo(tmp_path)
    headers = {}
    for shard in sorted(tmp_path.glob("model-*.safetensors")):
        blob = shard.read_bytes()
        (length,) = struct.unpack("<Q", blob[:8])
        headers[shard.name] = blob[8 : 8 + length]
    reply = browser.from_hub(
        (tmp_path / "config.json").read_text(),
        (tmp_path / "model.safetensors.index.json").read_text(),
        headers,
    )
    assert reply["summary"]["tensor_bytes"] == 16_060_522_496
    extra = {"mode": "inference"}
    preset = sizes({"model": "preset", "preset": "llama-3.1-8b", "precision": "bf16", **extra})
    assert sizes({**reply["scenario"], **extra}) == preset


def test_hub_parts_name_what_is_wrong() -> None:
    reply = browser.from_hub("{", None, {})
    assert reply == {
        "problems": [
            {
                "field": "model_id",
                "message": "config.json is not valid JSON: Expecting property name enclosed "
                "in double quotes at line 1, column 2.",
            }
        ]
    }
    missing = browser.from_hub(None, '{"weight_map": {"a": "m-1.safetensors"}}', {})
    assert missing["problems"][0]["message"] == (
        "model.safetensors.index.json: shard m-1.safetensors was not read."
    )


def test_a_dropped_gguf_is_read_in_growing_slices() -> None:
    """The page slices 64 bytes, then as many as asked, until the header is whole."""
    meta, tensors = llama_31_8b_gguf()
    header, total = gguf(meta, tensors, data=False)
    asked = [64]
    reply = browser.dropped("m.gguf", header[:64], total)
    while "need" in reply:
        asked.append(max(reply["need"], 2 * asked[-1]))
        reply = browser.dropped("m.gguf", header[: asked[-1]], total)
    assert reply["summary"]["file_bytes"] == total
    assert reply["scenario"]["precision"] == "q4_k_m"
    assert asked[-1] <= 2 * len(header)  # the header only, never the 4.9 GB of tensors


def test_a_dropped_safetensors_header() -> None:
    blob = safetensors(qwen25_05b())
    first = browser.dropped("model.safetensors", blob[:8], 988_065_536 + len(blob))
    assert first == {"need": len(blob)}
    config = json.dumps(catalog.models()["qwen2.5-0.5b"].config)
    reply = browser.dropped("model.safetensors", blob, 988_065_536 + len(blob), config)
    assert reply["summary"]["parameters"] == 494_032_768
    assert reply["scenario"]["model"] == "transformer"
    bad = browser.dropped("model.safetensors", b"GGUF" + bytes(4), 10**9)
    assert bad["problems"][0]["field"] == "file"
