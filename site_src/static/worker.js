// The worker owns Pyodide. The page names it with what it starts from, as JSON (boot.js):
//   {indexURL, bundle, later, laterNow, kept} -> progress..., then ready or error
// and it answers these messages from the page:
//   {type: "request", id, page, fields, part?} -> {type: "result", id, part, text}
//   {type: "painted", id} -> the calculator request's "rest" part (see below)
// where text is the reply as nnmem.web.handle writes it, JSON the page parses: a string
// crosses to the page as one copy, where the parsed reply was cloned a value at a time.
// The calculator's reply comes in parts: "first" (the total, the table, the formula)
// at once, then "rest" (the verdict, solvers, suggestions and plot) once the page says
// it has painted the first, skipped when a newer request has arrived meanwhile; "chart"
// (the step chart) only when the page asks for it with a request's id (part: "chart"),
// skipped too unless that id is the newest.
// Other pages get one reply, part "all".
// All arithmetic and validation happen behind nnmem.web.handle, the page's one door.
// A repeat visit starts from the Python heap the first one kept (see "Memory snapshot"
// below): the ready message says how it started ("fresh" or "snapshot"), and a message
// {type: "kept", bytes, key} says when a fresh start has kept its heap for the next
// visit; the page notes the key, and names the next worker with the note as `kept` (null
// where it noted none, absent where it cannot tell).
// The core's folder carries its version: build.py writes it in place of "pyodide/", so the
// core downloads with this script, not after its first message.
import { loadPyodide } from "../pyodide/pyodide.mjs";

let handle = null;
let afterAnswer = null; // run once, after the first complete calculator answer

const post = (message) => self.postMessage(message);
// The loading stages, in order; each progress message says which one has begun.
const STEPS = 3;
const progress = (step, text) => post({ type: "progress", step, steps: STEPS, text });
// Marks on the worker's own timeline, for benchmarks/site_speed.py to read.
const mark = (stage) => performance.mark(`nnmem:worker:${stage}`);

async function download(bundle) {
  const response = await fetch(bundle);
  if (!response.ok) {
    throw new Error(`the nnmem package could not be downloaded (HTTP ${response.status})`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

// The second bundle on the first import that needs it (see nnmem.web.later): the import
// waits for it, which a synchronous request in a worker allows.
function downloadNow(bundle) {
  const request = new XMLHttpRequest();
  request.open("GET", bundle, false);
  request.responseType = "arraybuffer";
  request.send();
  if (request.status !== 200) {
    throw new Error(`the rest of the nnmem package could not be downloaded (HTTP ${request.status})`);
  }
  return new Uint8Array(request.response);
}

// Called by nnmem.web.later.load_from_js, by name, on the first import that needs the
// second bundle: Python holds no JavaScript function, which a memory snapshot forbids.
self.nnmemLaterBundle = downloadNow;

async function init({ indexURL, bundle, later, laterNow, kept }) {
  progress(1, "Step 1 of 3: downloading and starting Python (later visits load it from the browser cache)…");
  // The nnmem package downloads while Python starts (with its second bundle where the
  // page needs that at once).
  mark("imported");
  const archiving = download(bundle);
  archiving.catch(() => {}); // reported when awaited below
  const rest = laterNow ? download(later) : null;
  if (rest) rest.catch(() => {});
  const key = memoryKey(bundle, later);
  // Cache Storage is asked only for a heap the page noted under this key, or where it
  // cannot tell: a first visit, or the first after a new build, starts Python at once.
  const snapshot = kept === undefined || kept === key ? await keptMemory(key) : null;
  if (snapshot) {
    try {
      const python = await setUp(await restoreMemory(loadPyodide, indexURL, snapshot), archiving, rest, later);
      post({ type: "ready", python, start: "snapshot" });
      return;
    } catch (error) {
      // A damaged or mismatched heap: dropped, and Python starts afresh.
      console.warn("nnmem: the kept Python memory could not be restored:", error);
      await forgetSnapshots();
    }
  }
  const pyodide = await loadPyodide({ indexURL, _makeSnapshot: Boolean(self.caches) });
  const python = await setUp(pyodide, archiving, rest, later);
  if (self.caches) afterAnswer = () => keepMemory(pyodide, key);
  post({ type: "ready", python, start: "fresh" });
}

// Steps 2 and 3 on a started Python, fresh or restored: the first bundle's zip (a
// restored heap has imported from it, but the file system starts empty), the second
// bundle now or when first needed, and the page's door. Returns Python's version.
async function setUp(pyodide, archiving, rest, later) {
  mark("booted");
  progress(2, "Step 2 of 3: loading the nnmem package…");
  const zipped = await archiving;
  mark("downloaded");
  const sitePackages = putOnPath(pyodide, zipped);
  mark("unpacked");
  progress(3, "Step 3 of 3: starting the calculator…");
  // nnmem imported with its dataclasses' methods compiled at build (nnmem_start.py).
  const start = pyodide.pyimport("nnmem_start");
  start.start().destroy();
  start.destroy();
  // The rest of the package: unpacked now where the page needs it at once, else when a
  // module of it is first imported.
  const bundles = pyodide.pyimport("nnmem.web.later");
  if (rest) bundles.unpack_now(pyodide.toPy(await rest), sitePackages);
  else bundles.fetch_later_from_js(later, sitePackages);
  bundles.destroy();
  handle = pyodide.pyimport("nnmem.web").handle;
  const version = pyodide.runPython("import sys; sys.version.split()[0]");
  mark("imported-nnmem");
  return version;
}

// The first bundle, a zip of deflated entries (see build.py's bundle_nnmem), written to
// site-packages as nnmem.zip as it was fetched, which goes on sys.path whole, as the
// standard library's zip does: Python imports nnmem from it (zipimport inflates each
// module as it is imported), and nothing is decoded or extracted first. A restored heap
// lists it already. Returns the site-packages folder, where the second bundle is
// unpacked (nnmem.web.later).
// (Exported for tests/test_build.py, which runs it in Pyodide under Node.)
export function putOnPath(pyodide, zipped) {
  const [sys, site] = ["sys", "site"].map((name) => pyodide.pyimport(name));
  const folders = site.getsitepackages();
  const sitePackages = folders.get(0);
  const zip = `${sitePackages}/nnmem.zip`;
  pyodide.FS.writeFile(zip, zipped);
  const path = sys.path;
  if (!path.has(zip)) path.insert(0, zip);
  for (const proxy of [sys, site, folders, path]) proxy.destroy();
  return sitePackages;
}

// Memory snapshot: after its first complete calculator answer a fresh start keeps its
// Python heap (Pyodide's makeMemorySnapshot) in the browser's Cache Storage, under a key
// made of both bundles' names, which carry their content's hash: a new build never
// restores an old heap, and keeping one drops the others. A later visit starts Python
// from it, then unpacks the first bundle's files again (the file system is not in the
// heap). Any failure forgets every kept heap and starts Python afresh.
const MEMORY_CACHE = "nnmem-python-memory";
const memoryKey = (bundle, later) => `${bundle}+${later.split("/").pop()}.memory`;

async function keptMemory(key) {
  try {
    if (!self.caches) return null;
    const found = await (await caches.open(MEMORY_CACHE)).match(key);
    return found ? new Uint8Array(await found.arrayBuffer()) : null;
  } catch {
    return null;
  }
}

async function forgetSnapshots() {
  try {
    if (self.caches) await caches.delete(MEMORY_CACHE);
  } catch {
    // nothing kept, or no storage: nothing to forget
  }
}

async function keepMemory(pyodide, key) {
  try {
    const snapshot = pyodide.makeMemorySnapshot();
    const cache = await caches.open(MEMORY_CACHE);
    for (const request of await cache.keys()) {
      if (request.url !== key) await cache.delete(request);
    }
    await cache.put(key, new Response(snapshot, { headers: { "Content-Type": "application/octet-stream" } }));
    post({ type: "kept", bytes: snapshot.length, key });
  } catch (error) {
    // No room, or a heap Pyodide cannot keep: the next visit starts fresh, as this one.
    console.warn("nnmem: the Python memory was not kept:", error);
  }
}

async function restoreMemory(loadPyodide, indexURL, snapshot) {
  const restore = growMemoryTo(snapshot.length);
  try {
    return await loadPyodide({ indexURL, _loadSnapshot: snapshot });
  } finally {
    restore();
  }
}

// Pyodide's wasm makes its own memory at a fixed initial size (30 MiB in 314.0.7) and
// ignores INITIAL_MEMORY, so a snapshot of a heap that grew past it does not fit
// ("RangeError: offset is out of bounds"). Until the returned function is called, each
// new wasm instance's memory is grown at once to hold `bytes`. (Exported for
// tests/e2e/test_boot.py; the page starts this file as a worker and imports nothing.)
export function growMemoryTo(bytes) {
  const { instantiate, instantiateStreaming } = WebAssembly;
  const grow = (result) => {
    const memory = (result.instance ?? result).exports?.memory;
    if (memory instanceof WebAssembly.Memory && memory.buffer.byteLength < bytes) {
      memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / 65536));
    }
    return result;
  };
  WebAssembly.instantiate = async (...args) => grow(await instantiate.apply(WebAssembly, args));
  WebAssembly.instantiateStreaming = async (...args) => grow(await instantiateStreaming.apply(WebAssembly, args));
  return () => {
    WebAssembly.instantiate = instantiate;
    WebAssembly.instantiateStreaming = instantiateStreaming;
  };
}

let newest = 0; // id of the newest calculator request received
let waiting = null; // the calculator request whose rest waits for its first part's paint

function ask(message, part) {
  try {
    return handle(JSON.stringify({ page: message.page, fields: message.fields, part }));
  } catch (error) {
    const reply = { ok: false, errors: [], inactive: [], fill: {}, html: {}, values: {}, fatal: String(error) };
    return JSON.stringify(reply);
  }
}

// Whether a reply's text says ok: handle's JSON starts with it (nnmem.web.reply.reply).
const OK = '{"ok": true,';

function answer(message) {
  if (message.page !== "calculator") {
    // The reader's and Compare's requests: they never make a calculator answer older.
    post({ type: "result", id: message.id, part: "all", text: ask(message, "all") });
    return;
  }
  if (message.part === "chart") {
    // The page asks for the step chart once its box is in view (see calculator.js).
    if (message.id !== newest) return;
    post({ type: "result", id: message.id, part: "chart", text: ask(message, "chart") });
    return;
  }
  newest = message.id;
  const first = ask(message, "first");
  post({ type: "result", id: message.id, part: "first", text: first });
  // The rest waits until the page says it has painted the first part ({type: "painted"}):
  // computed at once, it ran beside the page's painting on a two-core machine and made
  // the total come later (recalculation median 16.5-22.6 ms against 11.9-13.2 ms this
  // way, benchmarks/site_speed.py's machine). A request that arrives meanwhile comes
  // first and takes this one's place.
  waiting = first.startsWith(OK) ? message : null;
}

function rest(id) {
  // Only the newest request waits: a newer one replaced it, or dropped it if not ok.
  if (waiting === null || waiting.id !== id) return;
  const message = waiting;
  waiting = null;
  post({ type: "result", id, part: "rest", text: ask(message, "rest") });
  if (afterAnswer) {
    const then = afterAnswer;
    afterAnswer = null;
    setTimeout(then, 0);
  }
}

self.onmessage = (event) => {
  const message = event.data;
  if (message.type === "request") {
    answer(message);
  } else if (message.type === "painted") {
    rest(message.id);
  }
};

async function run(start) {
  try {
    await init(start);
  } catch (error) {
    post({ type: "error", text: String(error && error.message ? error.message : error) });
  }
}

// The start, as this script runs (last: init uses what the lines above define). A worker
// the page did not name (a test that imports putOnPath) starts nothing.
if (self.name) {
  let start = null;
  try {
    start = JSON.parse(self.name);
  } catch {
    post({ type: "error", text: "the page gave the engine a name it cannot read" });
  }
  if (start) run(start);
}
