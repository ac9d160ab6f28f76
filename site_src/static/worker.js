// The worker owns Pyodide. It answers two messages from the page:
//   {type: "init", indexURL, bundle}    -> progress..., then ready or error; ready
//     says how Python started: "fresh", or "snapshot" when restored (see below); "kept"
//     follows once a fresh start's snapshot is stored
//   {type: "request", id, page, fields} -> {type: "result", id, part, reply}
// The calculator's reply comes in two parts: "first" (the total, the table, the formula)
// at once, then "rest" (the verdict, solvers, suggestions and plot), which is skipped when
// a newer request has arrived meanwhile. Other pages get one reply, part "all".
// All arithmetic and validation happen behind nnmem.web.handle, the page's one door.
let handle = null;

const post = (message) => self.postMessage(message);
// The loading stages, in order; each progress message says which one has begun.
const STEPS = 3;
const progress = (step, text) => post({ type: "progress", step, steps: STEPS, text });

async function download(bundle) {
  const response = await fetch(bundle);
  if (!response.ok) {
    throw new Error(`the nnmem package could not be downloaded (HTTP ${response.status})`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

// A later visit starts from Python's memory as the first visit left it, nnmem imported:
// restoring it skips Python's own start and the imports (about half the boot). The
// snapshot is made in this browser after the first visit is live and kept in its Cache
// Storage under the bundle's versioned name, so a new nnmem or Pyodide never meets an
// old one (Pyodide also refuses a snapshot of another build). Nothing of it is
// downloaded: a first visit transfers what it did before.
const SNAPSHOTS = "nnmem-python-memory";
const snapshotKey = (bundle) => `${bundle}.memory`;

async function storedSnapshot(bundle) {
  try {
    const found = await (await caches.open(SNAPSHOTS)).match(snapshotKey(bundle));
    return found ? new Uint8Array(await found.arrayBuffer()) : null;
  } catch {
    return null; // no Cache Storage here (a private window, an insecure origin)
  }
}

async function keepSnapshot(pyodide, bundle) {
  try {
    const snapshot = pyodide.makeMemorySnapshot();
    const cache = await caches.open(SNAPSHOTS);
    for (const old of await cache.keys()) await cache.delete(old);
    await cache.put(snapshotKey(bundle), new Response(snapshot));
    post({ type: "kept" });
  } catch {
    // Without a snapshot the next visit starts Python as this one did.
  }
}

async function startPython(loadPyodide, indexURL, snapshot) {
  if (snapshot) {
    try {
      return await loadPyodide({ indexURL, _loadSnapshot: snapshot });
    } catch {
      // A snapshot that does not restore is dropped; Python starts afresh below.
    }
  }
  return loadPyodide({ indexURL, _makeSnapshot: true });
}

async function init({ indexURL, bundle }) {
  progress(1, "Step 1 of 3: downloading and starting Python (later visits load it from the browser cache)…");
  // The nnmem package downloads while Python starts; the core's folder name carries its
  // version, so the worker imports it from there rather than from a fixed path.
  const archiving = download(bundle);
  archiving.catch(() => {}); // reported when awaited below
  const snapshot = storedSnapshot(bundle);
  const { loadPyodide } = await import(`${indexURL}pyodide.mjs`);
  const restored = await snapshot;
  const pyodide = await startPython(loadPyodide, indexURL, restored);
  progress(2, "Step 2 of 3: loading the nnmem package…");
  // The bundle is a zip compressed whole with xz (see build.py's bundle_nnmem). A
  // restored Python has nnmem imported already but reads its data files from here.
  pyodide.FS.writeFile("/tmp/nnmem.zip.xz", await archiving);
  pyodide.runPython(
    "import importlib, io, lzma, site, zipfile\n" +
      'with open("/tmp/nnmem.zip.xz", "rb") as packed:\n' +
      "    zipfile.ZipFile(io.BytesIO(lzma.decompress(packed.read()))).extractall(site.getsitepackages()[0])\n" +
      "importlib.invalidate_caches()",
  );
  progress(3, "Step 3 of 3: starting the calculator…");
  handle = pyodide.pyimport("nnmem.web").handle;
  const version = pyodide.runPython("import sys; sys.version.split()[0]");
  post({ type: "ready", python: version, start: restored ? "snapshot" : "fresh" });
  // Kept once the first whole answer is out (copying 30 MB takes a moment).
  if (!restored) snapshotDue = () => keepSnapshot(pyodide, bundle);
}

let snapshotDue = null;

function afterAnswer() {
  if (snapshotDue) {
    const keep = snapshotDue;
    snapshotDue = null;
    keep();
  }
}

let newest = 0; // id of the newest request received

function ask(message, part) {
  try {
    return JSON.parse(handle(JSON.stringify({ page: message.page, fields: message.fields, part })));
  } catch (error) {
    return { ok: false, errors: [], inactive: [], fill: {}, html: {}, values: {}, fatal: String(error) };
  }
}

function answer(message) {
  newest = message.id;
  if (message.page !== "calculator") {
    post({ type: "result", id: message.id, part: "all", reply: ask(message, "all") });
    afterAnswer();
    return;
  }
  const first = ask(message, "first");
  post({ type: "result", id: message.id, part: "first", reply: first });
  if (!first.ok) return;
  // Let requests that arrived while the first part was computed in before the rest.
  setTimeout(() => {
    if (message.id !== newest) return;
    post({ type: "result", id: message.id, part: "rest", reply: ask(message, "rest") });
    afterAnswer();
  }, 0);
}

self.onmessage = async (event) => {
  const message = event.data;
  if (message.type === "init") {
    try {
      await init(message);
    } catch (error) {
      post({ type: "error", text: String(error && error.message ? error.message : error) });
    }
  } else if (message.type === "request") {
    answer(message);
  }
};
