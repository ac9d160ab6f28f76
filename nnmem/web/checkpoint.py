"""A model read from its checkpoint's headers: the calculator's "bring your model" door.

The page fetches bytes and nothing else: a Hub repository's ``config.json``, its
safetensors index and each shard's JSON header (two HTTP range requests a shard), or the
same from files the user drops (``File.slice``), or the start of a dropped GGUF file. It
sends them here through :func:`nnmem.web.handle` as ``{"page": "checkpoint", "fields":
...}``; every check and all arithmetic happen in :mod:`nnmem.readers`. The reply fills
the same controls a pasted ``config.json`` fills (or the parameter count, when the
repository has no config), the stored precision for a quantized checkpoint, and the
hidden ``checkpoint_bytes`` control; its ``html.summary`` states the exact bytes.

Fields (all strings or null; bytes are base64):

- ``source``: ``"hub"`` or ``"files"`` (safetensors headers) or ``"gguf"`` (a file's start);
- ``config``, ``index``: ``config.json`` and ``model.safetensors.index.json`` text, or null;
- ``headers``: ``{shard file name: base64 of its JSON header}``;
- ``name``, ``size``, ``data``: a GGUF file's name, its size in bytes and its first bytes;
- ``mode``: the calculator's mode, so a float checkpoint served sets its own precision.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from nnmem.errors import NnmemError, Problem
from nnmem.formats import is_float
from nnmem.readers import browser
from nnmem.render.markup import escape
from nnmem.scenario import Precision
from nnmem.validation import shown
from nnmem.web.reply import reply

SOURCES = ("hub", "files", "gguf")
MAX_SHARDS = 1_000  # as many shards as the page reads from an index
# What a reply's problems are shown against: the model id field, or the file drop zone.
FIELD = {"hub": "model_id", "files": "file", "gguf": "file"}


def _bytes(text: object, what: str, field: str) -> bytes:
    if not isinstance(text, str):
        raise NnmemError.single(field, f"{what} must be sent as base64 text.")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NnmemError.single(field, f"{what} is not valid base64.") from None


def _text(fields: Mapping[str, object], key: str, field: str) -> str | None:
    value = fields.get(key)
    if value is None or isinstance(value, str):
        return value
    raise NnmemError.single(field, f"{key} must be text or null (got {shown(value)}).")


def _read(fields: Mapping[str, object], source: str, field: str) -> dict[str, Any]:
    config = _text(fields, "config", field)
    if source == "gguf":
        name = _text(fields, "name", field) or ""
        size = fields.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise NnmemError.single(field, f"size must be a whole number (got {shown(size)}).")
        return browser.dropped(name, _bytes(fields.get("data"), name, field), size, None, field)
    headers = fields.get("headers")
    if not isinstance(headers, Mapping) or not 0 < len(headers) <= MAX_SHARDS:
        raise NnmemError.single(
            field, f"headers must map 1 to {MAX_SHARDS:,} shard names to their JSON headers."
        )
    raw = {str(name): _bytes(text, str(name), field) for name, text in headers.items()}
    return browser.from_hub(config, _text(fields, "index", field), raw, field)


def fill(scenario: Mapping[str, Any], mode: str) -> dict[str, str]:
    """The calculator controls the checkpoint sets, as the form holds them.

    >>> fill({"model": "generic", "params_millions": "0.5", "precision": "bf16"}, "training")
    {'describe': 'simple', 'params_millions': '0.5', 'hidden_size': '', 'num_layers': '', \
'checkpoint_bytes': ''}
    >>> fill({"model": "transformer", "config": {"a": 1}, "precision": "gptq",
    ...       "checkpoint_bytes": {"w": 5}}, "training")["checkpoint_bytes"]
    '{"w": 5}'
    """
    out: dict[str, str] = {}
    if scenario.get("model") == "transformer":
        out["describe"] = "config"
        out["config"] = json.dumps(scenario["config"], indent=2, ensure_ascii=False)
    else:
        out["describe"] = "simple"
        for key in ("params_millions", "hidden_size", "num_layers"):
            out[key] = str(scenario.get(key, ""))
    precision = scenario.get("precision")
    if isinstance(precision, str):
        if not is_float(Precision(precision).weight_format):
            out |= {"precision": precision, "mode": "inference"}  # a quantized one is served
        elif mode == "inference":
            out["precision"] = precision  # served in the dtype it is stored in
    stored = scenario.get("checkpoint_bytes")
    out["checkpoint_bytes"] = json.dumps(stored) if stored else ""
    return out


def summary_html(summary: Mapping[str, Any], used: bool) -> str:
    """What the headers state, exactly, in a sentence or three."""
    files = summary["files"]
    where = f"{len(files):,} files" if len(files) > 1 else escape(files[0])
    kinds = ", ".join(f"{escape(k)} {v:,} B" for k, v in summary["bytes_by_dtype"].items())
    parts = [
        f'<p class="checkpoint-summary" data-tensor-bytes="{summary["tensor_bytes"]}" '
        f'data-file-bytes="{summary["file_bytes"]}" data-parameters="{summary["parameters"]}">'
        f"Read the headers of {where} ({escape(summary['format'])}): "
        f"{summary['tensors']:,} tensors, {summary['parameters']:,} parameters, "
        f"<strong>{summary['tensor_bytes']:,} bytes</strong> of tensors ({kinds}); "
        f"{summary['file_bytes']:,} bytes on disk.</p>"
    ]
    if len(summary["bytes_by_part"]) > 1:
        by_part = ", ".join(f"{escape(k)} {v:,} B" for k, v in summary["bytes_by_part"].items())
        parts.append(f"<p>By part: {by_part}.</p>")
    if summary.get("quantization"):
        how = (
            "The estimate counts these stored bytes as the weights."
            if used
            else "Its format has no precision in this calculator: the weights use the "
            "precision you choose."
        )
        parts.append(f"<p>Quantization: {escape(str(summary['quantization']))}. {how}</p>")
    parts += [f"<p>{escape(note)}</p>" for note in summary.get("notes", ())]
    return "".join(parts)


def answer(fields: Mapping[str, object]) -> dict[str, Any]:
    """The reply to one read: the controls to fill and the summary, ``need`` (read more
    of the file from its start), or the problems against the model id or the drop zone.

    >>> head = json.dumps({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}})
    >>> got = answer({"source": "hub", "headers": {
    ...     "model.safetensors": base64.b64encode(head.encode()).decode()}})
    >>> got["ok"], got["fill"]["params_millions"], got["summary"]["tensor_bytes"]
    (True, '0.000004', 8)
    >>> answer({"source": "hub", "headers": {"model.safetensors": "%%"}})["errors"]
    [{'field': 'model_id', 'message': 'model.safetensors is not valid base64.'}]
    """
    source = fields.get("source")
    if source not in SOURCES:
        return reply(False, [Problem("file", f"source must be one of {', '.join(SOURCES)}.")])
    field = FIELD[str(source)]
    try:
        got = _read(fields, str(source), field)
    except NnmemError as error:
        return reply(False, error.problems)
    if "need" in got:
        return reply(True, need=got["need"])
    if "problems" in got:
        return reply(False, [Problem(p["field"], p["message"]) for p in got["problems"]])
    mode = fields.get("mode")
    filled = fill(got["scenario"], mode if isinstance(mode, str) else "")
    used = bool(filled["checkpoint_bytes"])
    return reply(
        True,
        fill=filled,
        html={"summary": summary_html(got["summary"], used)},
        summary=got["summary"],
    )
