"""The safetensors header: tensor names, shapes, dtypes and byte offsets, read without
the weights.

A ``.safetensors`` file is an 8-byte little-endian header length N, N bytes of JSON
(``{"name": {"dtype": "BF16", "shape": [4096, 4096], "data_offsets": [begin, end]},
"__metadata__": {...}}``), then the tensor data; offsets count from the end of the
header, the tensors tile the data with no gap, and the last one ends the file
(safetensors ``safetensors/src/tensor.rs``: ``SafeTensors::read_metadata``,
``Metadata::validate``, ``MAX_HEADER_SIZE`` = 100,000,000). A sharded checkpoint adds
``model.safetensors.index.json``: ``{"metadata": {"total_size": bytes}, "weight_map":
{tensor: shard file}}`` (transformers ``modeling_utils.py``, ``save_pretrained``).

A file holding only the 8 bytes and the header (what an HTTP range read of a hosted
shard gives) is accepted: its ``data_bytes`` are then absent, and its ``file_bytes``
come from the header.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nnmem.errors import NnmemError
from nnmem.readers.source import Readable, Source
from nnmem.scenario import load_json
from nnmem.validation import shown

# safetensors tensor.rs MAX_HEADER_SIZE: larger headers are refused by the library itself.
MAX_HEADER_BYTES = 100_000_000
# A tensor larger than this is an error in the file, not a model (2^50 B = 1 PiB).
MAX_TENSOR_BYTES = 2**50
MAX_DIMS = 16
MAX_SHARDS = 100_000
INDEX_NAME = "model.safetensors.index.json"

# Bits per element of each dtype: safetensors tensor.rs ``Dtype`` and ``Dtype::bitsize``
# (F4 is float4 e2m1 packed two to a byte, F6 six bits, C64 two fp32).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the header: offsets count from the start of the data."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        """Elements (for F4, four-bit values)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the tensor takes in the file."""
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    """A parsed header. ``file_bytes`` is the whole file's size the header implies."""

    name: str
    header_bytes: int
    tensors: tuple[TensorInfo, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)
    data_present: bool = False

    @property
    def data_bytes(self) -> int:
        """Bytes of tensor data."""
        return max((t.end for t in self.tensors), default=0)

    @property
    def file_bytes(self) -> int:
        """8 + header + data: the size of the complete file."""
        return 8 + self.header_bytes + self.data_bytes

    def bytes_by_dtype(self) -> dict[str, int]:
        """Tensor bytes per dtype, largest first."""
        totals: dict[str, int] = {}
        for t in self.tensors:
            totals[t.dtype] = totals.get(t.dtype, 0) + t.nbytes
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def read_header(
    data: Readable,
    name: str = "model.safetensors",
    field: str = "safetensors",
    size: int | None = None,
) -> SafetensorsHeader:
    """Read the header of a safetensors file (bytes, or a binary file object).

    >>> import json, struct
    >>> head = json.dumps({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}})
    >>> blob = struct.pack("<Q", len(head)) + head.encode()
    >>> h = read_header(blob)
    >>> h.tensors[0].shape, h.file_bytes, h.data_present
    ((2, 3), 86, False)
    >>> read_header(b"\\x00" * 3)
    Traceback (most recent call last):
    nnmem.errors.NnmemError: model.safetensors: the file ends inside the 8-byte header \
length: it needs 8 bytes at byte 0 and the file has 3 (truncated?).
    """
    src = Source(data, name, field, limit=8 + MAX_HEADER_BYTES, size=size)
    (length,) = struct.unpack("<Q", src.take(8, "the 8-byte header length"))
    if length > MAX_HEADER_BYTES:
        raise src.fail(
            f"the header length is {length:,} bytes, more than the 100,000,000 safetensors "
            "allows: this is not a safetensors file, or it is damaged."
        )
    if src.size is not None and 8 + length > src.size:
        raise src.fail(
            f"the header length is {length:,} bytes but the file has only "
            f"{src.size - 8:,} after it: the file is truncated or not a safetensors file."
        )
    raw = src.take(length, "the JSON header")
    header = parse_header_json(raw, name, field)
    if src.size is not None:
        complete = header.file_bytes
        if src.size not in (8 + length, complete):
            raise src.fail(
                f"the header describes {header.data_bytes:,} bytes of tensor data, so the "
                f"file should have {complete:,} bytes (or {8 + length:,} for the header "
                f"alone), but it has {src.size:,}: it is truncated or damaged."
            )
        if src.size == complete and header.data_bytes:
            header = SafetensorsHeader(
                header.name, header.header_bytes, header.tensors, header.metadata, True
            )
    return header


def parse_header_json(raw: bytes, name: str, field: str = "safetensors") -> SafetensorsHeader:
    """Check and read the JSON header (the N bytes after the length)."""

    def fail(message: str) -> NnmemError:
        return NnmemError.single(field, f"{name}: {message}")

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise fail(f"the header is not valid UTF-8 (byte {8 + error.start:,}).") from None
    if not text.lstrip().startswith("{"):
        raise fail("the header does not start with '{': this is not a safetensors file.")
    parsed = load_shallow_json(text, field, f"{name}: the header")
    if not isinstance(parsed, dict):
        raise fail("the header must be a JSON object of tensors.")
    metadata: dict[str, str] = {}
    tensors: list[TensorInfo] = []
    for key, info in parsed.items():
        if key == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise fail("__metadata__ must be an object of strings.")
            metadata = info
            continue
        tensors.append(_tensor(key, info, fail))
    tensors.sort(key=lambda t: (t.begin, t.end))
    at = 0
    for t in tensors:
        if t.begin != at:
            gap = "overlaps the tensor before it" if t.begin < at else "leaves a gap before it"
            raise fail(
                f"tensor {t.name!r} starts at data byte {t.begin:,}, which {gap} (expected {at:,})."
            )
        at = t.end
    return SafetensorsHeader(name, len(raw), tuple(tensors), metadata)


def _tensor(name: str, info: object, fail: Any) -> TensorInfo:
    if not isinstance(info, dict):
        raise fail(f"tensor {name!r} must be an object with dtype, shape and data_offsets.")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise fail(
            f"tensor {name!r} has dtype {shown(dtype)}; the dtypes are {', '.join(DTYPE_BITS)}."
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise fail(
            f"tensor {name!r} must have a shape of at most {MAX_DIMS} whole numbers "
            f"(got {shown(str(shape))})."
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        or offsets[1] < offsets[0]
    ):
        raise fail(f"tensor {name!r} must have data_offsets [begin, end] with begin <= end.")
    numel = math.prod(shape)
    bits = numel * DTYPE_BITS[dtype]
    if bits > 8 * MAX_TENSOR_BYTES:
        raise fail(f"tensor {name!r} has an absurd shape {shape}: over 1 PiB of data.")
    if bits % 8:
        raise fail(f"tensor {name!r}: {numel:,} {dtype} values do not fill whole bytes.")
    if offsets[1] - offsets[0] != bits // 8:
        raise fail(
            f"tensor {name!r} is {dtype} of shape {shape}, {bits // 8:,} bytes, but its "
            f"data_offsets span {offsets[1] - offsets[0]:,}."
        )
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


# JSON nesting deeper than this is refused before parsing: CPython's parser recurses once
# per level, and inside Pyodide a deep enough file exhausts the JavaScript stack (a fatal
# error, not a RecursionError). Headers, indexes and configs nest three or four levels.
MAX_JSON_DEPTH = 64
# Six brackets a tensor ({"shape": [...], "data_offsets": [...]}): room for a million.
MAX_BRACKETS = 8_000_000
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_PAIR = re.compile(r"\[\]|\{\}")


def json_depth(text: str, stop: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``text`` nests arrays and objects, strings aside; counting stops past
    ``stop``.

    Innermost ``[]`` and ``{}`` pairs are removed a level at a time by the regular
    expression engine, so a long, shallow header costs a few passes; what is left after
    ``stop`` levels is walked until it nests past ``stop``.

    >>> json_depth('{"a": [1, {"b": "[[["}]}'), json_depth("[" * 10_000 + "]" * 10_000)
    (3, 65)
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if len(brackets) > MAX_BRACKETS:
        return stop + 1  # not worth walking: no checkpoint file is shaped like this
    for level in range(stop + 1):
        if not brackets:
            return level
        inner = _PAIR.sub("", brackets)
        if inner == brackets:
            break
        brackets = inner
    depth = peak = 0
    for c in brackets:
        depth = depth + 1 if c in "[{" else max(depth - 1, 0)
        peak = max(peak, depth)
        if peak > stop:
            break
    return max(peak, level)


def load_shallow_json(text: str, field: str, label: str) -> object:
    """:func:`nnmem.scenario.load_json`, after refusing nesting deeper than 64 levels."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise NnmemError.single(
            field,
            f"{label} is not read: it nests deeper than {MAX_JSON_DEPTH} levels or holds "
            f"more than {MAX_BRACKETS:,} brackets, which no checkpoint or config needs.",
        )
    return load_json(text, field, label)


# --- the index of a sharded checkpoint ---------------------------------------------------


@dataclass(frozen=True)
class SafetensorsIndex:
    """``model.safetensors.index.json``: which shard holds each tensor."""

    weight_map: Mapping[str, str]
    total_size: int | None

    @property
    def shards(self) -> tuple[str, ...]:
        """The shard files, in first-mention order."""
        return tuple(dict.fromkeys(self.weight_map.values()))


def read_index(
    text: str | bytes, name: str = INDEX_NAME, field: str = "safetensors"
) -> SafetensorsIndex:
    """Read a ``model.safetensors.index.json``.

    >>> read_index('{"metadata": {"total_size": 12}, "weight_map": '
    ...            '{"a": "model-00001-of-00002.safetensors"}}').shards
    ('model-00001-of-00002.safetensors',)
    >>> read_index('{"weight_map": {"a": "../../etc/passwd"}}')
    Traceback (most recent call last):
    nnmem.errors.NnmemError: model.safetensors.index.json: shard "../../etc/passwd" of \
tensor 'a' must be a plain .safetensors file name.
    """

    def fail(message: str) -> NnmemError:
        return NnmemError.single(field, f"{name}: {message}")

    if isinstance(text, bytes):
        if len(text) > MAX_HEADER_BYTES:
            raise fail("the index is larger than 100,000,000 bytes.")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise fail("the index is not valid UTF-8.") from None
    parsed = load_shallow_json(text, field, name)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("weight_map"), dict):
        raise fail('the index must be a JSON object with a "weight_map" object.')
    weight_map: dict[str, str] = {}
    for tensor, shard in parsed["weight_map"].items():
        if (
            not isinstance(shard, str)
            or not shard.endswith(".safetensors")
            or "/" in shard
            or "\\" in shard
            or shard.startswith(".")
        ):
            raise fail(
                f"shard {shown(shard)} of tensor {tensor!r} must be a plain .safetensors file name."
            )
        weight_map[tensor] = shard
    if len(set(weight_map.values())) > MAX_SHARDS:
        raise fail(f"the index names more than {MAX_SHARDS:,} shards.")
    meta = parsed.get("metadata")
    total = meta.get("total_size") if isinstance(meta, dict) else None
    if total is not None and (isinstance(total, bool) or not isinstance(total, int | float)):
        raise fail(f"metadata.total_size must be a number of bytes (got {shown(total)}).")
    return SafetensorsIndex(weight_map, None if total is None else int(total))


def check_shards(
    index: SafetensorsIndex, headers: Mapping[str, SafetensorsHeader], field: str = "safetensors"
) -> None:
    """Every tensor the index names is in its shard, and every shard tensor is indexed."""
    for tensor, shard in index.weight_map.items():
        header = headers.get(shard)
        if header is None:
            raise NnmemError.single(field, f"{INDEX_NAME}: shard {shard} was not read.")
        if tensor not in {t.name for t in header.tensors}:
            raise NnmemError.single(
                field, f"{INDEX_NAME}: tensor {tensor!r} is not in its shard {shard}."
            )
    for shard, header in headers.items():
        for t in header.tensors:
            if index.weight_map.get(t.name) != shard:
                raise NnmemError.single(
                    field, f"{shard}: tensor {t.name!r} is not listed for it in {INDEX_NAME}."
                )


def read_file(path: str, field: str = "safetensors") -> SafetensorsHeader:
    """Read the header of the safetensors file at ``path`` (the weights are not read)."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as stream:
            return read_header(stream, name, field)
    except OSError as error:
        raise NnmemError.single(field, f"Cannot read {path}: {error.strerror}.") from None
