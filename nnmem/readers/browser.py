"""The readers as the page calls them: bytes in, JSON-ready dicts out.

The page fetches a Hub repository's ``config.json``, its safetensors index and each
shard's header (the 8-byte length, then the JSON), or slices a dropped file; it hands
the bytes here and gets back the scenario fields and the exact bytes, a request for a
longer slice, or the problems, each naming its field. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nnmem.errors import NnmemError
from nnmem.readers import checkpoint, gguf, safetensors
from nnmem.readers.source import NeedMoreBytes


def _reply(imported: checkpoint.Imported) -> dict[str, Any]:
    return {"scenario": imported.scenario, "summary": imported.summary.to_dict()}


def _problems(error: NnmemError) -> dict[str, Any]:
    return {"problems": [{"field": p.field, "message": p.message} for p in error.problems]}


def _config(text: str | None, field: str) -> dict[str, Any] | None:
    if text is None:
        return None
    config = safetensors.load_shallow_json(text, field, "config.json")
    if not isinstance(config, dict):
        raise NnmemError.single(field, "config.json must hold a JSON object.")
    return config


def from_hub(
    config: str | None,
    index: str | None,
    headers: Mapping[str, bytes],
    field: str = "model_id",
) -> dict[str, Any]:
    """A repository's ``config.json`` text, index text (None for a single
    ``model.safetensors``) and the JSON header of each shard, by file name.

    >>> import json
    >>> head = json.dumps({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}})
    >>> from_hub(None, None, {"model.safetensors": head.encode()})["summary"]["tensor_bytes"]
    8
    >>> from_hub(None, None, {"model.safetensors": b"{"})["problems"][0]["field"]
    'model_id'
    """
    try:
        parsed = {
            name: safetensors.parse_header_json(raw, name, field) for name, raw in headers.items()
        }
        total = None
        if index is not None:
            idx = safetensors.read_index(index, safetensors.INDEX_NAME, field)
            safetensors.check_shards(idx, parsed, field)
            total = idx.total_size
        imported = checkpoint.from_safetensors(list(parsed.values()), _config(config, field), total)
    except NnmemError as error:
        return _problems(error)
    return _reply(imported)


def dropped(
    name: str, data: bytes, size: int, config: str | None = None, field: str = "file"
) -> dict[str, Any]:
    """The start of a dropped file of ``size`` bytes: a GGUF file or a safetensors file.
    Asks for ``{"need": n}`` bytes from the start when ``data`` is too short.

    >>> dropped("x.gguf", b"GGUF", 1_000_000)
    {'need': 8}
    >>> dropped("notes.txt", b"hello", 5)["problems"][0]["message"]
    'notes.txt: drop a .safetensors or .gguf file.'
    """
    try:
        if name.endswith(".gguf"):
            return _reply(checkpoint.from_gguf(gguf.read_gguf(data, name, field, size), field))
        if name.endswith(".safetensors"):
            header = safetensors.read_header(data, name, field, size)
            imported = checkpoint.from_safetensors([header], _config(config, field))
            return _reply(imported)
        raise NnmemError.single(field, f"{name}: drop a .safetensors or .gguf file.")
    except NeedMoreBytes as more:
        return {"need": more.at_least}
    except NnmemError as error:
        return _problems(error)
