// site_src/static/hub.js with a fake fetch: no network. Run by tests/test_hub_js.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  classifyStatus,
  fetchHeader,
  fetchModel,
  fileUrl,
  headerLength,
  readDropped,
  repoProblem,
  shardsOf,
} from "../../site_src/static/hub.js";

const encoder = new TextEncoder();

function safetensors(header) {
  const json = encoder.encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

// A fake Hub: files by name, each answering ranges with 206; requests recorded.
function fakeHub(files, { status = {}, delayMs = 0 } = {}) {
  const requests = [];
  const fetchFn = async (url, init) => {
    requests.push({ url, headers: init.headers });
    if (delayMs) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, delayMs);
        init.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(Object.assign(new Error("aborted"), { name: "AbortError" }));
        });
      });
    }
    const name = decodeURIComponent(url.split("/resolve/main/")[1]);
    if (status[name]) return new Response("", { status: status[name] });
    if (!(name in files)) return new Response("Entry not found", { status: 404 });
    const body = files[name];
    const range = init.headers.Range;
    if (!range) return new Response(body, { status: 200 });
    const [start, end] = range.replace("bytes=", "").split("-").map(Number);
    return new Response(body.slice(start, end + 1), { status: 206 });
  };
  return { fetchFn, requests };
}

const tensor = { dtype: "BF16", shape: [2, 2], data_offsets: [0, 8] };

test("repository ids", () => {
  assert.equal(repoProblem("Qwen/Qwen3-8B"), null);
  assert.match(repoProblem(""), /Type a model id/);
  assert.match(repoProblem("../etc/passwd"), /is not a model id/);
  assert.match(repoProblem("https://huggingface.co/Qwen/Qwen3-8B"), /is not a model id/);
  assert.equal(fileUrl("a/b", "model-00001-of-00002.safetensors"), "https://huggingface.co/a/b/resolve/main/model-00001-of-00002.safetensors");
});

test("a single-file repository: config, a missing index, two range reads", async () => {
  const hub = fakeHub({ "config.json": encoder.encode('{"model_type": "llama"}'), "model.safetensors": safetensors({ w: tensor }) });
  const got = await fetchModel("a/b", { fetchFn: hub.fetchFn });
  assert.equal(got.config, '{"model_type": "llama"}');
  assert.equal(got.index, null);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(got.headers["model.safetensors"])), { w: tensor });
  const ranges = hub.requests.map((r) => r.headers.Range ?? null);
  assert.deepEqual(ranges, [null, null, "bytes=0-7", `bytes=8-${8 + JSON.stringify({ w: tensor }).length - 1}`]);
});

test("a sharded repository reads every shard's header", async () => {
  const index = { metadata: { total_size: 16 }, weight_map: { a: "m-1.safetensors", b: "m-2.safetensors" } };
  const hub = fakeHub({
    "config.json": encoder.encode("{}"),
    "model.safetensors.index.json": encoder.encode(JSON.stringify(index)),
    "m-1.safetensors": safetensors({ a: tensor }),
    "m-2.safetensors": safetensors({ b: tensor }),
  });
  const progress = [];
  const got = await fetchModel("a/b", { fetchFn: hub.fetchFn, onProgress: (d, t) => progress.push(`${d}/${t}`) });
  assert.deepEqual(Object.keys(got.headers).sort(), ["m-1.safetensors", "m-2.safetensors"]);
  assert.deepEqual(progress, ["1/2", "2/2"]);
  assert.equal(hub.requests.length, 2 + 2 * 2);
});

test("a gated repository asks for a token, sent as a header only", async () => {
  const hub = fakeHub({}, { status: { "config.json": 401 } });
  await assert.rejects(fetchModel("a/b", { fetchFn: hub.fetchFn }), (e) => e.kind === "gated" && /needs an access token/.test(e.message));
  await assert.rejects(fetchModel("a/b", { fetchFn: hub.fetchFn, token: "hf_x" }), (e) => e.kind === "gated" && /with this token/.test(e.message));
  assert.equal(hub.requests[1].headers.Authorization, "Bearer hf_x");
  assert.ok(hub.requests.every((r) => !r.url.includes("hf_x")));
});

test("a missing config.json is not an error by itself; a missing shard is", async () => {
  const hub = fakeHub({ "model.safetensors.index.json": encoder.encode('{"weight_map": {"a": "m-1.safetensors"}}') });
  await assert.rejects(fetchModel("a/b", { fetchFn: hub.fetchFn }), (e) => e.kind === "missing" && /m-1.safetensors is not in this repository/.test(e.message));
});

test("rate limits, slow replies and the network each get their own message", async () => {
  assert.equal(classifyStatus(429, "config.json").kind, "rate_limited");
  assert.equal(classifyStatus(503, "config.json").kind, "server");
  const slow = fakeHub({ "config.json": encoder.encode("{}") }, { delayMs: 200 });
  await assert.rejects(fetchModel("a/b", { fetchFn: slow.fetchFn, timeoutMs: 20 }), (e) => e.kind === "timeout");
  const down = async () => {
    throw new TypeError("fetch failed");
  };
  await assert.rejects(fetchModel("a/b", { fetchFn: down }), (e) => e.kind === "offline" && /network error/.test(e.message));
  await assert.rejects(fetchModel("a/b", { fetchFn: down, online: false }), (e) => e.kind === "offline" && /offline/.test(e.message));
});

test("a server that ignores Range is stopped, and bad lengths are refused", async () => {
  const fetchFn = async () => new Response(new Uint8Array(100), { status: 200 });
  await assert.rejects(fetchHeader("a/b", "model.safetensors", { fetchFn }), (e) => e.kind === "bad_reply" && /instead of the header/.test(e.message));
  const huge = new Uint8Array(8);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
  assert.throws(() => headerLength(huge, "x.safetensors"), /is not that of a safetensors file/);
  assert.throws(() => shardsOf('{"weight_map": {"a": "../x.safetensors"}}'), /not plain .safetensors files/);
});

test("a dropped file is read in growing slices until the parser is satisfied", async () => {
  const file = new File([new Uint8Array(10_000)], "m.gguf");
  const seen = [];
  const parse = async (bytes, size) => {
    seen.push(bytes.byteLength);
    assert.equal(size, 10_000);
    return bytes.byteLength < 3_000 ? { need: 2_500 } : { summary: { file_bytes: size } };
  };
  const reply = await readDropped(file, parse, { first: 1_000 });
  assert.deepEqual(seen, [1_000, 2_500, 5_000]);
  assert.equal(reply.summary.file_bytes, 10_000);
  const endless = await readDropped(file, async () => ({ need: 1e12 }), { first: 1_000, maxBytes: 4_000 });
  assert.match(endless.problems[0].message, /header is larger than 4000 bytes/);
});
