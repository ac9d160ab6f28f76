"""The GGUF reader against files written, and read back, by llama.cpp's ``gguf`` package.

Skipped where ``gguf`` (a development dependency, never a runtime one) is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

from nnmem.readers.checkpoint import from_gguf  # noqa: E402
from nnmem.readers.gguf import GGML_TYPES, read_file  # noqa: E402

Q = gguf.GGMLQuantizationType


def test_block_sizes_match_gguf_py() -> None:
    """Every ggml type the package knows has our block size and bytes, except Q8_1:
    gguf-py still lists its old fp32 d and s (40 B), where ggml-common.h now stores two
    fp16 (36 B); Q8_1 only holds activations and never appears in a file."""
    sizes = gguf.constants.GGML_QUANT_SIZES
    assert {int(t) for t in sizes} == set(GGML_TYPES)
    for t, (block, size) in sizes.items():
        name, our_block, our_size = GGML_TYPES[int(t)]
        assert name == t.name
        if t is not Q.Q8_1:
            assert (our_block, our_size) == (block, size)


def _write(path: Path) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_context_length(4096)
    w.add_embedding_length(256)
    w.add_feed_forward_length(512)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_string("test.text", "ünïcode ✓")
    w.add_uint8("test.u8", 255)
    w.add_int8("test.i8", -128)
    w.add_uint16("test.u16", 65535)
    w.add_int16("test.i16", -32768)
    w.add_uint64("test.u64", 2**63)
    w.add_int64("test.i64", -(2**63))
    w.add_float64("test.f64", 0.1)
    w.add_float32("test.f32", 0.5)
    w.add_bool("test.bool", False)
    w.add_array("test.ints", [1, 2, 3])
    w.add_array("test.words", ["a", "bb", ""])
    w.add_array("test.many", list(range(5000)))
    w.add_tensor("f32", np.zeros((3, 64), dtype=np.float32))
    w.add_tensor("f16", np.zeros((7,), dtype=np.float16))
    for t in (Q.Q4_0, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_XS, Q.MXFP4, Q.TQ1_0):
        block, size = gguf.constants.GGML_QUANT_SIZES[t]
        rows, per_row = 3, 256 // block * size
        w.add_tensor(t.name.lower(), np.zeros((rows, per_row), dtype=np.uint8), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_reader_agrees_with_gguf_py(tmp_path: Path) -> None:
    path = tmp_path / "written.gguf"
    _write(path)
    mine = read_file(str(path))
    theirs = gguf.GGUFReader(str(path))
    assert mine.version == 3
    assert mine.file_bytes == path.stat().st_size
    assert mine.data_offset == theirs.data_offset
    assert [t.name for t in mine.tensors] == [t.name for t in theirs.tensors]
    for a, b in zip(mine.tensors, theirs.tensors, strict=True):
        assert a.dims == tuple(int(d) for d in b.shape)
        assert a.ggml_type == int(b.tensor_type)
        assert a.nbytes == int(b.n_bytes)
        assert mine.data_offset + a.offset == int(b.data_offset)
    m = mine.metadata
    assert m["test.text"] == "ünïcode ✓"
    assert (m["test.u8"], m["test.i8"], m["test.u16"], m["test.i16"]) == (255, -128, 65535, -32768)
    assert (m["test.u64"], m["test.i64"]) == (2**63, -(2**63))
    assert m["test.f64"] == 0.1
    assert (m["test.f32"], m["test.bool"]) == (0.5, False)
    assert m["test.ints"].values == (1, 2, 3)
    assert m["test.words"].values == ("a", "bb", "")
    assert (m["test.many"].length, m["test.many"].values) == (5000, None)
    # GGUFReader also lists the header's counts as fields named GGUF.*
    assert set(m) == {k for k in theirs.fields if not k.startswith("GGUF.")}


def test_exact_bytes_and_config(tmp_path: Path) -> None:
    path = tmp_path / "written.gguf"
    _write(path)
    got = from_gguf(read_file(str(path)))
    s = got.summary
    assert s.file_bytes == path.stat().st_size
    # f32 3×64×4 + f16 7×2 + 3 rows of 256 values in each block format
    blocks = [18 * 8, 34 * 8, 144, 176, 210, 136, 17 * 8, 54]
    assert s.tensor_bytes == 768 + 14 + 3 * sum(blocks)
    assert got.scenario["precision"] == "q4_k_m"
    assert got.config is not None
    assert (got.config["hidden_size"], got.config["num_key_value_heads"]) == (256, 2)
