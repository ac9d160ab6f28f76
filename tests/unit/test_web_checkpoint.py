"""The page's model reader behind nnmem.web.handle: header bytes in, controls out."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

from test_readers import gguf, llama_31_8b_gguf, write_llama_repo

from nnmem.web import handle
from nnmem.web.calculator import DEFAULT_FIELDS, answer


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _ask(fields: dict[str, object]) -> dict[str, object]:
    reply: dict[str, object] = json.loads(
        handle(json.dumps({"page": "checkpoint", "fields": fields}))
    )
    return reply


def _hub_fields(root: Path) -> dict[str, object]:
    headers = {}
    for shard in sorted(root.glob("model-*.safetensors")):
        blob = shard.read_bytes()
        (length,) = struct.unpack("<Q", blob[:8])
        headers[shard.name] = _b64(blob[8 : 8 + length])
    return {
        "source": "hub",
        "config": (root / "config.json").read_text(),
        "index": (root / "model.safetensors.index.json").read_text(),
        "headers": headers,
        "mode": "inference",
    }


def test_a_hub_repository_fills_the_config_and_matches_the_preset(tmp_path: Path) -> None:
    write_llama_repo(tmp_path)
    got = _ask(_hub_fields(tmp_path))
    assert got["ok"] is True
    fill = got["fill"]
    assert isinstance(fill, dict)
    assert fill["describe"] == "config"
    assert fill["precision"] == "bf16"  # served in its stored dtype
    assert fill["checkpoint_bytes"] == ""  # bf16: P × 2 is the stored bytes
    assert 'data-tensor-bytes="16060522496"' in got["html"]["summary"]
    settings = {"mode": "inference", "precision": "bf16", "seq_len": "4096", "batch_size": "1"}
    mine = answer({**DEFAULT_FIELDS, **fill, **settings})
    preset = answer({**DEFAULT_FIELDS, "describe": "fields", "preset": "llama-3.1-8b", **settings})
    assert mine["ok"]
    assert preset["ok"]
    assert mine["total_bytes"] == preset["total_bytes"]
    assert (
        mine["download"]["estimate"]["components"] == preset["download"]["estimate"]["components"]
    )


def test_a_training_mode_keeps_the_users_precision(tmp_path: Path) -> None:
    write_llama_repo(tmp_path)
    got = _ask({**_hub_fields(tmp_path), "mode": "training"})
    assert "precision" not in got["fill"]


def test_a_gguf_start_asks_for_more_then_gives_its_file_bytes() -> None:
    meta, tensors = llama_31_8b_gguf()
    header, total = gguf(meta, tensors, data=False)
    fields = {"source": "gguf", "name": "m.gguf", "size": total, "mode": "training"}
    first = _ask({**fields, "data": _b64(header[:64])})
    assert first["ok"] is True
    assert first["need"] > 64
    got = _ask({**fields, "data": _b64(header)})
    assert got["summary"]["file_bytes"] == total
    assert f'data-file-bytes="{total}"' in got["html"]["summary"]
    fill = got["fill"]
    assert isinstance(fill, dict)
    assert (fill["precision"], fill["mode"]) == ("q4_k_m", "inference")
    stored = json.loads(fill["checkpoint_bytes"])
    result = answer({**DEFAULT_FIELDS, **fill})
    weights = [c for c in result["download"]["estimate"]["components"] if c["key"] == "weights"]
    assert weights[0]["bytes"] == sum(stored.values())


def test_problems_name_the_model_id_or_the_drop_zone() -> None:
    bad = _ask({"source": "hub", "config": "{", "headers": {"model.safetensors": _b64(b"{}")}})
    assert bad["ok"] is False
    assert bad["errors"][0]["field"] == "model_id"
    assert "config.json is not valid JSON" in bad["errors"][0]["message"]
    none = _ask({"source": "files", "headers": {}})
    assert none["errors"][0]["field"] == "file"
    notes = _ask({"source": "gguf", "name": "notes.txt", "size": 5, "data": _b64(b"hello")})
    assert notes["errors"] == [
        {"field": "file", "message": "notes.txt: drop a .safetensors or .gguf file."}
    ]
    assert _ask({"source": "mail"})["errors"][0]["field"] == "file"
    head = _b64(b'{"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}')
    deep = _ask({"source": "hub", "config": "[" * 100_000, "headers": {"a.safetensors": head}})
    assert "nested too deeply" in deep["errors"][0]["message"]
