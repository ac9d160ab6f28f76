// The worker owns Pyodide. It answers two messages from the page:
//   {type: "init", indexURL, bundle}    -> progress..., then ready or error
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

async function init({ indexURL, bundle }) {
  progress(1, "Step 1 of 3: downloading and starting Python (later visits load it from the browser cache)…");
  // The nnmem package downloads while Python starts; the core's folder name carries its
  // version, so the worker imports it from there rather than from a fixed path.
  const archiving = download(bundle);
  archiving.catch(() => {}); // reported when awaited below
  const { loadPyodide } = await import(`${indexURL}pyodide.mjs`);
  const pyodide = await loadPyodide({ indexURL });
  progress(2, "Step 2 of 3: loading the nnmem package…");
  // The bundle is a zip compressed whole with xz (see build.py's bundle_nnmem).
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
  post({ type: "ready", python: version });
}

let newest = 0; // id of the newest calculator request received

function ask(message, part) {
  try {
    return JSON.parse(handle(JSON.stringify({ page: message.page, fields: message.fields, part })));
  } catch (error) {
    return { ok: false, errors: [], inactive: [], fill: {}, html: {}, values: {}, fatal: String(error) };
  }
}

function answer(message) {
  if (message.page !== "calculator") {
    // The reader's and Compare's requests: they never make a calculator answer older.
    post({ type: "result", id: message.id, part: "all", reply: ask(message, "all") });
    return;
  }
  newest = message.id;
  const first = ask(message, "first");
  post({ type: "result", id: message.id, part: "first", reply: first });
  if (!first.ok) return;
  // Let requests that arrived while the first part was computed in before the rest.
  setTimeout(() => {
    if (message.id !== newest) return;
    post({ type: "result", id: message.id, part: "rest", reply: ask(message, "rest") });
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
