"""The calculator's model reader in Chromium: a Hub model id read on a click, and local
files read with File.slice.

No request reaches the network: every Hub URL is answered by ``page.route`` from
fixtures written with the published tensor names and shapes (Llama-3.1-8B in four shards
with its index's real ``total_size``; Qwen2.5-0.5B in one file), served with the headers
the Hub sends (206 and ``Content-Range`` for a range, ``X-Error-Code`` on a failure,
``Access-Control-Allow-Origin``). Everything else that leaves 127.0.0.1 is aborted and
fails the test. (The Hub redirects a weight file's URL to its download host; Chromium does
not route the target of a fulfilled redirect, so these fixtures answer at the Hub's URL.)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, Request, Route, expect

from nnmem import catalog
from site_helpers import DEFAULT_FIELDS, cpython_reply, fill_form, open_form, wait_ready

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from test_readers import gguf, qwen25_05b, safetensors, write_llama_repo

pytestmark = pytest.mark.e2e

HUB = "https://huggingface.co"
LLAMA = "meta-llama/Llama-3.1-8B"
QWEN = "Qwen/Qwen2.5-0.5B"
COMMIT = "d04e592bb4f6aa9cfee91e2e20afa771667e1d4b"
EXPOSED = (
    "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,ETag,Link,Accept-Ranges,Content-Range"
)


def _file_size(blob: bytes) -> int:
    """A header-only safetensors blob's whole-file size: header and data."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return 8 + n + end


@dataclass
class FakeHub:
    """The Hub's resolve URLs, answered from files in memory."""

    repos: dict[str, dict[str, bytes]]
    status: dict[str, int] = field(default_factory=dict)  # file name -> forced status
    token: str = ""  # when set, every file needs "Authorization: Bearer <token>"
    hang: bool = False  # never answer
    offline: bool = False  # fail as a dropped connection does
    seen: list[Request] = field(default_factory=list)

    def _cors(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin", "*")
        return {
            "access-control-allow-origin": origin,
            "access-control-expose-headers": EXPOSED,
            "vary": "Origin",
        }

    def _error(self, route: Route, status: int, code: str, message: str) -> None:
        headers = {**self._cors(route.request), "x-error-code": code, "x-error-message": message}
        route.fulfill(status=status, headers=headers, content_type="text/plain", body=message)

    def handle(self, route: Route) -> None:
        request = route.request
        self.seen.append(request)
        if self.hang:
            return  # the page's own timeout gives up
        if self.offline:
            route.abort("internetdisconnected")
            return
        url = urlsplit(request.url)
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/main/(.+)", url.path)
        if match is None:
            self._error(route, 404, "RepoNotFound", "Repository not found")
            return
        repo, name = match.groups()
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            self._error(
                route,
                401,
                "GatedRepo",
                f"Access to model {repo} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
            return
        if name in self.status:
            code = self.status[name]
            self._error(route, code, "RateLimited" if code == 429 else "Error", "Too many requests")
            return
        files = self.repos.get(repo)
        if files is None or name not in files:
            self._error(route, 404, "EntryNotFound", "Entry not found")
            return
        blob = files[name]
        headers = {
            **self._cors(request),
            "accept-ranges": "bytes",
            "etag": '"0123456789abcdef"',
            "x-repo-commit": COMMIT,
        }
        wanted = request.headers.get("range")
        if wanted:
            start, end = (int(x) for x in re.fullmatch(r"bytes=(\d+)-(\d+)", wanted).groups())  # type: ignore[union-attr]
            size = _file_size(blob)
            body = blob[start : end + 1]
            headers["content-range"] = f"bytes {start}-{start + len(body) - 1}/{size}"
            route.fulfill(status=206, headers=headers, body=body)
            return
        route.fulfill(
            status=200, headers=headers, content_type="text/plain; charset=utf-8", body=blob
        )


def _llama_files(tmp: Path) -> dict[str, bytes]:
    write_llama_repo(tmp)
    return {p.name: p.read_bytes() for p in tmp.iterdir()}


def _qwen_files() -> dict[str, bytes]:
    config = catalog.models()["qwen2.5-0.5b"].config
    return {
        "config.json": json.dumps(config).encode(),
        "model.safetensors": safetensors(qwen25_05b()),
    }


@pytest.fixture
def hub_page(calculator: Page) -> Iterator[Callable[..., FakeHub]]:
    """The ready calculator with the Hub routed to a FakeHub the test builds."""
    page = calculator
    made: list[FakeHub] = []

    def install(**kwargs: Any) -> FakeHub:
        fake = FakeHub(**kwargs)
        made.append(fake)
        page.route(f"{HUB}/**", fake.handle)
        return fake

    yield install
    page.unroute_all(behavior="ignoreErrors")
    page.evaluate("document.getElementById('hub-token').value = ''")
    page.evaluate("document.getElementById('model-id').value = ''")
    page.evaluate("document.getElementById('f-checkpoint_bytes').value = ''")


def _read(page: Page, model_id: str) -> None:
    page.fill("#model-id", model_id)
    page.click("#hub-read")


def _summary(page: Page) -> Locator:
    """The summary of what was read, once there; a failure message fails the test."""
    page.wait_for_function(
        "() => document.querySelector('.checkpoint-summary') || "
        "document.getElementById('reader-error').textContent",
        timeout=30_000,
    )
    assert page.locator("#reader-error").text_content() == ""
    return page.locator(".checkpoint-summary")


def _total(page: Page) -> int:
    return int(page.locator("#total").get_attribute("data-bytes") or 0)


SERVE = {"mode": "inference", "precision": "bf16", "seq_len": "4096", "batch_size": "1"}


def _expected(fields: dict[str, str]) -> int:
    reply = cpython_reply({**DEFAULT_FIELDS, **fields})
    assert reply["ok"], reply["errors"]
    return int(reply["total_bytes"])


def test_a_sharded_repository_gives_the_preset_to_the_byte(
    hub_page: Callable[..., FakeHub], calculator: Page, tmp_path: Path
) -> None:
    page = calculator
    fake = hub_page(repos={LLAMA: _llama_files(tmp_path)})
    fill_form(page, SERVE)
    _read(page, LLAMA)
    expect(_summary(page)).to_have_attribute("data-tensor-bytes", "16060522496")
    expect(page.locator("input[name=describe][value=config]")).to_be_checked()
    expected = _expected({**SERVE, "describe": "fields", "preset": "llama-3.1-8b"})
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(expected))
    # The requests, in order: config.json, the index, then 8 bytes and the JSON header
    # of each shard.
    hub_paths = [
        (urlsplit(r.url).path, r.headers.get("range")) for r in fake.seen if r.url.startswith(HUB)
    ]
    assert hub_paths[:2] == [
        (f"/{LLAMA}/resolve/main/config.json", None),
        (f"/{LLAMA}/resolve/main/model.safetensors.index.json", None),
    ]
    shards = sorted(p for p, _ in hub_paths[2:])
    assert len(shards) == 8
    assert {r for _, r in hub_paths[2:]} >= {"bytes=0-7"}
    assert all(r.headers.get("authorization") is None for r in fake.seen)
    # The URL records the id, not the config.
    query = urlsplit(page.url).query
    assert "model_id=meta-llama%2FLlama-3.1-8B" in query
    assert "config=" not in query
    assert "describe=" not in query
    # The same settings with the catalog preset in the page: the same total, to the byte.
    read_total = _total(page)
    fill_form(page, {"describe": "fields"})
    fill_form(page, {"preset": "llama-3.1-8b"})
    expect(page.locator("#scenario-line")).to_contain_text("Llama")
    expect(page.locator("#f-cfg_hidden_size")).to_have_value("4096")
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(read_total))
    assert "model_id=" not in urlsplit(page.url).query  # the model is the preset now


def test_a_single_file_model_without_an_index(
    hub_page: Callable[..., FakeHub], calculator: Page
) -> None:
    page = calculator
    hub_page(repos={QWEN: _qwen_files()})
    fill_form(page, SERVE)
    _read(page, QWEN)
    expect(_summary(page)).to_have_attribute("data-parameters", "494032768")
    expected = _expected({**SERVE, "describe": "fields", "preset": "qwen2.5-0.5b"})
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(expected))


def test_a_gated_model_asks_for_a_token_that_stays_in_the_page(
    hub_page: Callable[..., FakeHub], calculator: Page
) -> None:
    page = calculator
    token = "hf_FixtureTokenNotReal0123456789"
    fake = hub_page(repos={QWEN: _qwen_files()}, token=token)
    _read(page, QWEN)
    error = page.locator("#reader-error")
    expect(error).to_contain_text("needs an access token (HTTP 401)")
    expect(error).to_contain_text("paste a read token")
    page.locator(".hub-token summary").click()
    page.fill("#hub-token", token)
    page.click("#hub-read")
    expect(_summary(page)).to_have_attribute("data-parameters", "494032768")
    authorized = [r for r in fake.seen if r.headers.get("authorization")]
    assert authorized
    assert all(r.headers["authorization"] == f"Bearer {token}" for r in authorized)
    assert all(token not in r.url for r in fake.seen)
    assert token not in page.url
    stored = page.evaluate(
        "JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
    )
    assert token not in stored
    assert token not in page.evaluate("location.href + document.title")


def test_a_repository_without_config_json_is_counted_from_its_headers(
    hub_page: Callable[..., FakeHub], calculator: Page
) -> None:
    page = calculator
    files = _qwen_files()
    del files["config.json"]
    hub_page(repos={QWEN: files})
    _read(page, QWEN)
    expect(_summary(page)).to_have_attribute("data-parameters", "494032768")
    expect(page.locator("input[name=describe][value=simple]")).to_be_checked()
    expect(page.locator("#f-params_millions")).to_have_value("494.032768")
    expect(page.locator("#f-hidden_size")).to_have_value("896")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            {"status": {"config.json": 429}},
            "The Hub is limiting requests (HTTP 429): wait a minute",
        ),
        (
            {"repos": {}},
            "model.safetensors is not in this repository (HTTP 404): check the model id",
        ),
        ({"offline": True}, "could not be fetched (network error): check the connection"),
    ],
    ids=["rate-limited", "missing-files", "offline"],
)
def test_failures_say_what_to_do(
    hub_page: Callable[..., FakeHub], calculator: Page, setup: dict[str, Any], message: str
) -> None:
    page = calculator
    before = _total(page)
    hub_page(**{"repos": {QWEN: _qwen_files()}, **setup})
    _read(page, QWEN)
    expect(page.locator("#reader-error")).to_contain_text(message)
    assert _total(page) == before  # the form is left as it was
    expect(page.locator("#hub-read")).to_be_enabled()


def test_a_bad_model_id_is_named_without_a_request(
    hub_page: Callable[..., FakeHub], calculator: Page
) -> None:
    fake = hub_page(repos={})
    _read(calculator, "not a model id")
    expect(calculator.locator("#reader-error")).to_contain_text("is not a model id")
    assert fake.seen == []


def test_a_slow_reply_gives_up_with_a_plain_message(
    context: BrowserContext, outside_requests: list[str], site_url: str
) -> None:
    """The page's own 20 s timeout (hub.js TIMEOUT_MS), reached by moving the page's clock
    on once the request hangs; a page of its own, so that no other test runs on that clock."""
    page = context.new_page()
    fake = FakeHub(repos={QWEN: _qwen_files()}, hang=True)
    page.route(f"{HUB}/**", fake.handle)
    page.clock.install()
    page.goto(site_url)
    wait_ready(page)
    open_form(page)
    _read(page, QWEN)
    expect(page.locator("#reader-status")).to_contain_text(f"Asking the Hub for {QWEN}")
    expect(page.locator("#hub-read")).to_be_disabled()  # one read at a time
    for _ in range(300):  # the request is out, and hangs
        if fake.seen:
            break
        page.wait_for_timeout(100)
    assert [r.url for r in fake.seen] == [f"{HUB}/{QWEN}/resolve/main/config.json"]
    page.clock.fast_forward(20_000)
    expect(page.locator("#reader-error")).to_contain_text(
        "did not answer for config.json within 20 seconds: try again, or use a local file"
    )
    page.unroute_all(behavior="ignoreErrors")


def test_no_request_before_the_click_even_from_a_link(
    context: BrowserContext, outside_requests: list[str], site_url: str, tmp_path: Path
) -> None:
    page = context.new_page()
    fake = FakeHub(repos={LLAMA: _llama_files(tmp_path)})
    page.route(f"{HUB}/**", fake.handle)
    page.goto(f"{site_url}?model_id={LLAMA}&mode=inference&precision=bf16")
    wait_ready(page)
    expect(page.locator("#model-id")).to_have_value(LLAMA)
    expect(page.locator("#reader-status")).to_contain_text("Nothing is fetched until you do")
    page.wait_for_timeout(500)
    assert fake.seen == []  # the link alone fetched nothing
    page.click("#hub-read")
    expect(_summary(page)).to_be_visible()
    assert fake.seen[0].url == f"{HUB}/{LLAMA}/resolve/main/config.json"
    page.unroute_all(behavior="ignoreErrors")


def test_no_request_to_the_hub_in_the_other_modes(
    hub_page: Callable[..., FakeHub], calculator: Page
) -> None:
    page = calculator
    fake = hub_page(repos={})
    fill_form(page, {"describe": "fields"})
    fill_form(page, {"preset": "llama-3.1-8b"})
    fill_form(page, {"describe": "config"})
    fill_form(page, {"describe": "cnn", "cnn": "resnet50"})
    fill_form(page, {"describe": "simple", "mode": "inference"})
    page.fill("#model-id", LLAMA)  # typing an id is no click
    page.locator("#model-file").set_input_files(
        [
            {
                "name": "model.safetensors",
                "mimeType": "application/octet-stream",
                "buffer": _qwen_files()["model.safetensors"],
            }
        ]
    )
    expect(_summary(page)).to_be_visible()
    page.wait_for_timeout(300)
    assert fake.seen == []


def _tiny_gguf() -> tuple[bytes, int]:
    """A whole (tiny) Llama-shaped GGUF in Q8_0 with F32 norms: 2 layers, width 256."""
    h, f, kv, vocab = 256, 512, 128, 1024
    str_, u32 = 8, 4
    meta = [
        ("general.architecture", str_, "llama"),
        ("general.file_type", u32, 7),
        ("llama.block_count", u32, 2),
        ("llama.context_length", u32, 2048),
        ("llama.embedding_length", u32, h),
        ("llama.feed_forward_length", u32, f),
        ("llama.attention.head_count", u32, 4),
        ("llama.attention.head_count_kv", u32, 2),
    ]
    tensors: list[tuple[str, list[int], int]] = [("token_embd.weight", [h, vocab], 8)]
    for i in range(2):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", [h], 0),
            (p + "attn_q.weight", [h, h], 8),
            (p + "attn_k.weight", [h, kv], 8),
            (p + "attn_v.weight", [h, kv], 8),
            (p + "attn_output.weight", [h, h], 8),
            (p + "ffn_norm.weight", [h], 0),
            (p + "ffn_gate.weight", [h, f], 8),
            (p + "ffn_up.weight", [h, f], 8),
            (p + "ffn_down.weight", [f, h], 8),
        ]
    tensors += [("output_norm.weight", [h], 0), ("output.weight", [h, vocab], 8)]
    return gguf(meta, tensors, data=True)


def test_a_dropped_gguf_gives_its_exact_file_bytes(
    hub_page: Callable[..., FakeHub], calculator: Page
) -> None:
    page = calculator
    fake = hub_page(repos={})
    blob, total = _tiny_gguf()
    assert len(blob) == total
    page.locator("#model-file").set_input_files(
        [{"name": "tiny-Q8_0.gguf", "mimeType": "application/octet-stream", "buffer": blob}]
    )
    summary = _summary(page)
    expect(summary).to_have_attribute("data-file-bytes", str(total))
    expect(summary).to_contain_text(f"{total:,} bytes on disk")
    expect(page.locator("#f-mode")).to_have_value("inference")
    expect(page.locator("#f-precision")).to_have_value("q8_0")
    stored = json.loads(page.locator("#f-checkpoint_bytes").input_value())
    assert set(stored) == {"Q8_0", "F32"}
    expect(page.locator("#part-formula")).to_contain_text("Q8_0 as stored in the checkpoint")
    # The page's total is nnmem's for the fields it filled, whose weights are the bytes.
    fields = {
        "describe": "config",
        "config": page.locator("#f-config").input_value(),
        "mode": "inference",
        "precision": "q8_0",
        "checkpoint_bytes": json.dumps(stored),
    }
    reply = cpython_reply({**DEFAULT_FIELDS, **fields})
    weights = [c for c in reply["download"]["estimate"]["components"] if c["key"] == "weights"]
    assert weights[0]["bytes"] == sum(stored.values())
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(reply["total_bytes"]))
    assert fake.seen == []


def test_dropped_shards_with_their_index_and_config(
    hub_page: Callable[..., FakeHub], calculator: Page, tmp_path: Path
) -> None:
    page = calculator
    fake = hub_page(repos={})
    files = _llama_files(tmp_path)
    fill_form(page, SERVE)
    page.locator("#model-file").set_input_files(
        [
            {"name": name, "mimeType": "application/octet-stream", "buffer": blob}
            for name, blob in sorted(files.items())
        ]
    )
    expect(_summary(page)).to_have_attribute("data-tensor-bytes", "16060522496")
    expected = _expected({**SERVE, "describe": "fields", "preset": "llama-3.1-8b"})
    expect(page.locator("#total")).to_have_attribute("data-bytes", str(expected))
    assert fake.seen == []
    # An index alone has no shapes: the page says what else to drop.
    page.locator("#model-file").set_input_files(
        [
            {
                "name": "model.safetensors.index.json",
                "mimeType": "application/json",
                "buffer": files["model.safetensors.index.json"],
            }
        ]
    )
    expect(page.locator("#reader-error")).to_contain_text("drop it together with its .safetensors")
