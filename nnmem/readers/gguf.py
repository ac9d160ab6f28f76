"""GGUF metadata and tensor infos, read without the tensor data.

The layout (ggml ``docs/gguf.md``; the reader ``ggml/src/gguf.cpp``,
``gguf_init_from_file_impl``): the magic ``GGUF``, a uint32 version (2 or 3; version 1
used 32-bit counts and is no longer read by llama.cpp), a uint64 tensor count, a uint64
metadata count, the metadata as (string key, uint32 type, value), then per tensor its
name, uint32 dimension count (at most 4), uint64 dimensions (``ne[0]`` varies fastest),
uint32 ggml type and uint64 offset. The data section starts at the next multiple of
``general.alignment`` (default 32), and each tensor sits at the running total of the
sizes before it, each padded to the alignment (gguf.cpp checks ``ti.offset ==
ctx->size`` and adds ``GGML_PAD(ggml_nbytes(&ti.t), ctx->alignment)``). Strings are a
uint64 length and UTF-8 bytes. Everything is little-endian.

Every count is checked against the bytes the file can still hold before anything is
allocated, so a hostile header fails at once with a message naming the field.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from nnmem.errors import NnmemError
from nnmem.readers.source import Readable, Source

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32  # gguf.cpp GGUF_DEFAULT_ALIGNMENT
MAX_HEADER_BYTES = 1 << 28  # metadata + tensor infos; a 262,144-token vocabulary is ~10 MiB
MAX_STRING_BYTES = 1 << 26
# Counts far above any real file's (about 40 keys, 300-1,200 tensors, 262,144 tokens),
# which bound the time a hostile header can take.
MAX_TENSORS = 1 << 16
MAX_KEYS = 1 << 16
MAX_ITEMS = 1 << 22
MAX_DIMS = 4  # ggml GGML_MAX_DIMS; gguf.cpp refuses more
MAX_TENSOR_BYTES = 2**50

# GGUF metadata value types (gguf.h ``enum gguf_type``): struct format, bytes.
SCALARS: dict[int, tuple[str, str, int]] = {
    0: ("UINT8", "<B", 1),
    1: ("INT8", "<b", 1),
    2: ("UINT16", "<H", 2),
    3: ("INT16", "<h", 2),
    4: ("UINT32", "<I", 4),
    5: ("INT32", "<i", 4),
    6: ("FLOAT32", "<f", 4),
    7: ("BOOL", "<?", 1),
    10: ("UINT64", "<Q", 8),
    11: ("INT64", "<q", 8),
    12: ("FLOAT64", "<d", 8),
}
STRING, ARRAY = 8, 9
TYPE_NAMES = {**{k: v[0] for k, v in SCALARS.items()}, STRING: "STRING", ARRAY: "ARRAY"}

# ggml types: name, elements per block, bytes per block. ggml/src/ggml.c ``type_traits``
# (``.blck_size``, ``.type_size = sizeof(block_x)``) with the block structs of
# ggml/src/ggml-common.h, QK_K = 256; gguf-py ``constants.py`` ``GGML_QUANT_SIZES``
# mirrors it. Ids 4, 5 (Q4_2, Q4_3) and 31-33, 36-38 (runtime repacks) are retired.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),  # fp16 d + 16 B of nibbles
    3: ("Q4_1", 32, 20),  # fp16 d, m + 16 B
    6: ("Q5_0", 32, 22),  # fp16 d + 4 B high bits + 16 B
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),  # fp16 d + 32 int8
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),  # 16 B scales + 64 B quants + fp16 d, dmin
    11: ("Q3_K", 256, 110),  # 32 B hmask + 64 B quants + 12 B scales + fp16 d
    12: ("Q4_K", 256, 144),  # fp16 d, dmin + 12 B scales + 128 B quants
    13: ("Q5_K", 256, 176),  # + 32 B high bits
    14: ("Q6_K", 256, 210),  # 128 B low + 64 B high + 16 B scales + fp16 d
    15: ("Q8_K", 256, 292),  # fp32 d + 256 int8 + 16 int16 sums
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),  # e8m0 scale + 16 B of e2m1 pairs
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}


@dataclass(frozen=True)
class GgufArray:
    """A metadata array; ``values`` is kept only for arrays of at most ``KEEP`` items
    (a vocabulary of 150,000 tokens is counted, not stored)."""

    item_type: str
    length: int
    values: tuple[Any, ...] | None = None

    KEEP = 4096


@dataclass(frozen=True)
class GgufTensor:
    """One tensor info; ``dims`` in ggml order (``ne[0]``, the row length, first)."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def type_name(self) -> str:
        """The ggml type's name, such as Q4_K."""
        return GGML_TYPES[self.ggml_type][0]

    @property
    def numel(self) -> int:
        """Elements of the tensor."""
        return math.prod(self.dims)

    @property
    def nbytes(self) -> int:
        """Bytes of its data: whole blocks along each row, as ggml ``ggml_nbytes`` counts
        them (``ne[0] / blck_size * type_size`` per row)."""
        _, block, size = GGML_TYPES[self.ggml_type]
        rows = math.prod(self.dims[1:])
        return self.dims[0] // block * size * rows if self.dims else size


@dataclass(frozen=True)
class GgufFile:
    """The parsed header of a GGUF file."""

    name: str
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GgufTensor, ...]
    alignment: int
    data_offset: int  # where the tensor data starts
    size: int | None = None  # the file's size, when known
    value_types: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def tensor_bytes(self) -> int:
        """Bytes of tensor data, without the alignment padding."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def data_bytes(self) -> int:
        """Bytes of the data section, each tensor padded to the alignment."""
        return sum(_pad(t.nbytes, self.alignment) for t in self.tensors)

    @property
    def file_bytes(self) -> int:
        """The file's size: as measured when known, else header + padded data."""
        return self.size if self.size is not None else self.data_offset + self.data_bytes

    @property
    def architecture(self) -> str:
        """``general.architecture`` (such as llama), or empty."""
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else ""

    def bytes_by_type(self) -> dict[str, int]:
        """Tensor bytes per ggml type, largest first."""
        totals: dict[str, int] = {}
        for t in self.tensors:
            totals[t.type_name] = totals.get(t.type_name, 0) + t.nbytes
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


_U64 = struct.Struct("<Q")


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


class _Reader:
    def __init__(self, src: Source) -> None:
        self.src = src

    def unpack(self, fmt: str, size: int, what: str) -> Any:
        return struct.unpack(fmt, self.src.take(size, what))[0]

    def count(self, what: str, at_least: int, cap: int) -> int:
        """A uint64 count whose items each take at least ``at_least`` bytes."""
        n: int = self.unpack("<Q", 8, what)
        room = self.src.remaining()
        room = self.src.limit - self.src.pos if room is None else room
        if n * at_least > room:
            raise self.src.fail(
                f"{what} is {n:,}, more than the {room:,} bytes left in the file can hold: "
                "the file is damaged or not a GGUF file."
            )
        if n > cap:
            raise self.src.fail(f"{what} is {n:,}; this reader takes at most {cap:,}.")
        return n

    def string(self, what: str) -> str:
        n: int = self.unpack("<Q", 8, f"the length of {what}")
        if n > MAX_STRING_BYTES:
            raise self.src.fail(f"{what} claims {n:,} bytes, more than {MAX_STRING_BYTES:,}.")
        at = self.src.pos
        raw = self.src.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.src.fail(f"{what} is not valid UTF-8 (at byte {at:,}).") from None

    def strings(self, n: int, what: str, keep: bool) -> tuple[str, ...] | None:
        """``n`` strings in a row, read straight from the buffer: a vocabulary holds
        hundreds of thousands of them."""
        src = self.src
        kept: list[str] = []
        pos, buf = src.pos, src.buffer
        for i in range(n):
            if pos + 8 > len(buf):
                src.pos = pos
                src.ensure(pos + 8, f"the length of {what}[{i}]")
                buf = src.buffer
            (length,) = _U64.unpack_from(buf, pos)
            if length > MAX_STRING_BYTES:
                src.pos = pos
                raise src.fail(f"{what}[{i}] claims {length:,} bytes, more than the limit.")
            start, pos = pos + 8, pos + 8 + length
            if pos > len(buf):
                src.pos = start
                src.ensure(pos, f"{what}[{i}]")
                buf = src.buffer
            try:
                text = buf[start:pos].decode("utf-8")
            except UnicodeDecodeError:
                raise src.fail(f"{what}[{i}] is not valid UTF-8 (at byte {start:,}).") from None
            if keep:
                kept.append(text)
        src.pos = pos
        return tuple(kept) if keep else None

    def value(self, vtype: int, what: str) -> Any:
        if vtype in SCALARS:
            _, fmt, size = SCALARS[vtype]
            return self.unpack(fmt, size, what)
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY:
            item: int = self.unpack("<I", 4, f"the item type of {what}")
            if item == ARRAY:
                # gguf.cpp (gguf_init_from_file_impl) refuses arrays of arrays as an
                # invalid type: llama.cpp cannot load such a file.
                raise self.src.fail(f"{what} is an array of arrays, which llama.cpp does not read.")
            if item not in TYPE_NAMES:
                raise self.src.fail(f"{what} has an unknown item type {item}.")
            least = SCALARS[item][2] if item in SCALARS else 8
            n = self.count(f"the length of {what}", least, MAX_ITEMS)
            if item in SCALARS:
                _, fmt, size = SCALARS[item]
                raw = self.src.take(n * size, what)
                values = struct.unpack(f"<{n}{fmt[1]}", raw) if n <= GgufArray.KEEP else None
                return GgufArray(TYPE_NAMES[item], n, values)
            return GgufArray("STRING", n, self.strings(n, what, n <= GgufArray.KEEP))
        raise self.src.fail(f"{what} has an unknown value type {vtype}.")


def read_gguf(
    data: Readable, name: str = "model.gguf", field: str = "gguf", size: int | None = None
) -> GgufFile:
    """Read a GGUF header (bytes, or a binary file object), never the tensor data.

    With bytes that are only the start of a file of ``size`` bytes, a header that runs
    past them raises :class:`~nnmem.readers.source.NeedMoreBytes`.

    >>> read_gguf(b"GGML\\x03\\x00\\x00\\x00")
    Traceback (most recent call last):
    nnmem.errors.NnmemError: model.gguf: the file starts with b'GGML', not the GGUF magic \
b'GGUF': it is not a GGUF file.
    """
    src = Source(data, name, field, limit=MAX_HEADER_BYTES, size=size)
    r = _Reader(src)
    magic = src.take(4, "the magic")
    if magic != MAGIC:
        raise src.fail(
            f"the file starts with {magic!r}, not the GGUF magic b'GGUF': it is not a GGUF file."
        )
    version: int = r.unpack("<I", 4, "the version")
    if version not in (2, 3):
        swapped = struct.unpack(">I", struct.pack("<I", version))[0]
        why = (
            "it is a big-endian file, which this reader does not read"
            if swapped in (2, 3)
            else "version 1 is no longer read by llama.cpp"
            if version == 1
            else "the versions read are 2 and 3"
        )
        raise src.fail(f"GGUF version {version} is not supported: {why}.")
    n_tensors = r.count("the tensor count", 8 + 4 + 8 + 4 + 8, MAX_TENSORS)
    n_kv = r.count("the metadata count", 8 + 4 + 1, MAX_KEYS)
    metadata: dict[str, Any] = {}
    types: dict[str, str] = {}
    for i in range(n_kv):
        key = r.string(f"metadata key {i}")
        if key in metadata:
            raise src.fail(f"metadata key {key!r} appears twice.")
        vtype: int = r.unpack("<I", 4, f"the type of metadata {key!r}")
        if vtype not in TYPE_NAMES:
            raise src.fail(f"metadata {key!r} has an unknown value type {vtype}.")
        metadata[key] = r.value(vtype, f"metadata {key!r}")
        types[key] = TYPE_NAMES[vtype]
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (
        types.get("general.alignment", "UINT32") != "UINT32"
        or not isinstance(alignment, int)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise src.fail(
            f"metadata 'general.alignment' must be a UINT32 power of two (got {alignment!r})."
        )
    tensors: list[GgufTensor] = []
    seen: set[str] = set()
    expected = 0
    for i in range(n_tensors):
        tname = r.string(f"the name of tensor {i}")
        if tname in seen:
            raise src.fail(f"tensor {tname!r} appears twice.")
        seen.add(tname)
        n_dims: int = r.unpack("<I", 4, f"the dimension count of tensor {tname!r}")
        if n_dims > MAX_DIMS:
            raise src.fail(
                f"tensor {tname!r} has {n_dims:,} dimensions; GGUF allows at most {MAX_DIMS}."
            )
        dims = tuple(r.unpack("<Q", 8, f"dimension {d} of tensor {tname!r}") for d in range(n_dims))
        gtype: int = r.unpack("<I", 4, f"the ggml type of tensor {tname!r}")
        offset: int = r.unpack("<Q", 8, f"the offset of tensor {tname!r}")
        if gtype not in GGML_TYPES:
            raise src.fail(f"tensor {tname!r} has an unknown ggml type {gtype}.")
        tensor = GgufTensor(tname, dims, gtype, offset)
        type_name, block, _ = GGML_TYPES[gtype]
        if dims and dims[0] % block:
            raise src.fail(
                f"tensor {tname!r}: rows of {dims[0]:,} are not whole {type_name} blocks "
                f"of {block}."
            )
        if math.prod(dims) > MAX_TENSOR_BYTES * 8 or tensor.nbytes > MAX_TENSOR_BYTES:
            raise src.fail(f"tensor {tname!r} has absurd dimensions {list(dims)}.")
        if offset != expected:
            raise src.fail(
                f"tensor {tname!r} is at data offset {offset:,}; the tensors before it "
                f"end at {expected:,} (gguf.cpp requires them back to back, aligned)."
            )
        expected += _pad(tensor.nbytes, alignment)
        tensors.append(tensor)
    data_offset = _pad(src.pos, alignment)
    g = GgufFile(name, version, metadata, tuple(tensors), alignment, data_offset, src.size, types)
    if src.size is not None and tensors:
        last = tensors[-1]
        needed = data_offset + last.offset + last.nbytes
        if src.size < needed:
            raise src.fail(
                f"the tensors need {needed:,} bytes but the file has {src.size:,}: it is truncated."
            )
    return g


def read_file(path: str, field: str = "gguf") -> GgufFile:
    """Read the header of the GGUF file at ``path``."""
    try:
        with open(path, "rb") as stream:
            return read_gguf(stream, os.path.basename(path), field)
    except OSError as error:
        raise NnmemError.single(field, f"Cannot read {path}: {error.strerror}.") from None
