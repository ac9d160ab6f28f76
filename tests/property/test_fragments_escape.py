"""Every HTML fragment a reply carries, rendered with hostile text in every free-text
input: no tag and no attribute from the input may survive into the markup the page sets
as innerHTML (the calculator's result parts, a tool's result).

The hostile strings carry a tag and attributes of their own names (``nnmem-probe``,
``data-probe``, ``onprobe``), so a parse of the fragments finds them only if some echo
went out unescaped.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest

from fuzz_entry import DEFAULT_FIELDS, TOOL_NAMES, call, compute, defaults, tool_fields

PAYLOADS = (
    '<nnmem-probe data-probe="1" onprobe="alert(1)">x</nnmem-probe>',
    '"><nnmem-probe onprobe=alert(1)>',
    "' onprobe='alert(1)' data-probe='",
    '" onprobe="alert(1)" data-probe="',
    "</title></style></textarea></script><nnmem-probe onprobe=1>",
    "<![CDATA[<nnmem-probe onprobe=1>]]>",
    "<!--<nnmem-probe onprobe=1>-->",
    "</svg><nnmem-probe onprobe=1>",
    "javascript:alert(1)//<nnmem-probe>",
    "&lt;nnmem-probe onprobe=1&gt;&#60;nnmem-probe onprobe=1&#62;",
)


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if "probe" in tag:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if "probe" in name:
                self.found.append(f"<{tag} {name}>")
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action") and (value or "").lower().startswith("javas"):
                self.found.append(f"<{tag} {name}={value!r}>")

    handle_startendtag = handle_starttag


def survivors(html: str) -> list[str]:
    """Tags and attributes of the probe (and any event handler) in ``html``."""
    parser = _Markup()
    parser.feed(html)
    parser.close()
    return parser.found


def _fragments(reply: dict[str, Any]) -> list[str]:
    html = reply.get("html")
    if isinstance(html, dict):
        return [v for v in html.values() if isinstance(v, str)]
    return [html] if isinstance(html, str) else []


def _cnn(name: str) -> str:
    return json.dumps(
        {
            "name": name,
            "input": [3, 32, 32],
            "layers": [
                {"type": "conv2d", "out_channels": 8, "kernel": 3, "padding": 1, "name": name},
                {"type": "relu", "name": name},
                {"type": "flatten", "name": name},
                {"type": "linear", "out_features": 10, "name": name},
            ],
        }
    )


def _config(text: str) -> str:
    return json.dumps(
        {
            "model_type": text,
            "architectures": [text],
            "_name_or_path": text,
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": 1000,
        }
    )


def _calculator_requests(text: str) -> list[dict[str, str]]:
    """Every page control set to ``text`` in turn, and valid models named with it."""
    gpu = {"gpu": "rtx-4090"}
    requests = [
        {**DEFAULT_FIELDS, **gpu, "describe": "cnn", "cnn": _cnn(text)},
        {**DEFAULT_FIELDS, **gpu, "describe": "config", "config": _config(text)},
        {
            **DEFAULT_FIELDS,
            **gpu,
            "describe": "fields",
            "cfg_model_type": text,
            "cfg_hidden_size": "256",
            "cfg_num_hidden_layers": "2",
            "cfg_num_attention_heads": "4",
            "cfg_vocab_size": "1000",
        },
        {
            **DEFAULT_FIELDS,
            "gpu": "t4",
            "describe": "config",
            "config": _config(text),
            "batch_size": "100000",
            "seq_len": "100000",
        },
    ]
    for describe in ("simple", "fields", "config", "cnn"):
        for key in DEFAULT_FIELDS:
            requests.append({**DEFAULT_FIELDS, **gpu, "describe": describe, key: text})
    return requests


@pytest.mark.parametrize("text", PAYLOADS, ids=range(len(PAYLOADS)))
def test_no_calculator_fragment_lets_input_markup_through(text: str) -> None:
    painted = 0
    for fields in _calculator_requests(text):
        reply = json.loads(compute(json.dumps({"fields": fields})))
        for fragment in _fragments(reply):
            painted += 1
            assert survivors(fragment) == [], (fields, fragment[:300])
    assert painted >= 9 * 3  # the valid models named with the text did paint


@pytest.mark.parametrize("text", PAYLOADS, ids=range(len(PAYLOADS)))
def test_no_tool_fragment_lets_input_markup_through(text: str) -> None:
    painted = 0
    for name in TOOL_NAMES:
        keys = tool_fields(name) or ["anything"]
        requests = [{**defaults(name), key: text} for key in keys]
        if name == "parameter-count":
            requests.append({**defaults(name), "source": "config", "config": _config(text)})
        for fields in requests:
            reply = json.loads(call(name, json.dumps({"fields": fields})))
            for fragment in _fragments(reply):
                painted += 1
                assert survivors(fragment) == [], (name, fields, fragment[:300])
    assert painted >= len(TOOL_NAMES)


def test_the_probe_is_found_when_it_is_not_escaped() -> None:
    assert survivors(f"<p>{PAYLOADS[0]}</p>") == [
        "<nnmem-probe>",
        "<nnmem-probe data-probe>",
        "<nnmem-probe onprobe>",
        "<nnmem-probe onprobe='alert(1)'>",
    ]
    assert survivors(f'<p title="{PAYLOADS[3]}">') != []
