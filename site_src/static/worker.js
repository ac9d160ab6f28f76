// The worker owns Pyodide. It answers two messages from the page:
//   {type: "init", indexURL, bundle, later, laterNow} -> progress..., then ready or error
//   {type: "request", id, page, fields, part?} -> {type: "result", id, part, reply}
// The calculator's reply comes in parts: "first" (the total, the table, the formula)
// at once, then "rest" (the verdict, solvers, suggestions and plot), which is skipped when
// a newer request has arrived meanwhile; "chart" (the step chart) only when the page asks
// for it with a request's id (part: "chart"), skipped too unless that id is the newest.
// Other pages get one reply, part "all".
// All arithmetic and validation happen behind nnmem.web.handle, the page's one door.
let handle = null;

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

async function init({ indexURL, bundle, later, laterNow }) {
  progress(1, "Step 1 of 3: downloading and starting Python (later visits load it from the browser cache)…");
  // The nnmem package downloads while Python starts (with its second bundle where the
  // page needs that at once); the core's folder name carries its version, so the worker
  // imports it from there rather than from a fixed path.
  const archiving = download(bundle);
  archiving.catch(() => {}); // reported when awaited below
  const rest = laterNow ? download(later) : null;
  if (rest) rest.catch(() => {});
  const { loadPyodide } = await import(`${indexURL}pyodide.mjs`);
  mark("imported");
  const pyodide = await loadPyodide({ indexURL });
  mark("booted");
  progress(2, "Step 2 of 3: loading the nnmem package…");
  // The bundle is a zip compressed whole with xz (see build.py's bundle_nnmem).
  pyodide.FS.writeFile("/tmp/nnmem.zip.xz", await archiving);
  mark("downloaded");
  // Its names are ASCII, read as UTF-8 (no cp437 codec to import); the finder that listed
  // site-packages before is dropped, for a new one to list it again (as nnmem.web.later's
  // unpack does, without importlib.invalidate_caches, which imports importlib.metadata).
  const sitePackages = pyodide.runPython(
    "import io, lzma, site, sys, zipfile\n" +
      "target = site.getsitepackages()[0]\n" +
      'with open("/tmp/nnmem.zip.xz", "rb") as packed:\n' +
      '    zipfile.ZipFile(io.BytesIO(lzma.decompress(packed.read())), metadata_encoding="utf-8").extractall(target)\n' +
      "sys.path_importer_cache.pop(target, None)\n" +
      "target",
  );
  mark("unpacked");
  progress(3, "Step 3 of 3: starting the calculator…");
  // The rest of the package: unpacked now where the page needs it at once, else when a
  // module of it is first imported.
  const bundles = pyodide.pyimport("nnmem.web.later");
  if (rest) bundles.unpack(pyodide.toPy(await rest), sitePackages);
  else bundles.fetch_later(() => pyodide.toPy(downloadNow(later)), sitePackages);
  handle = pyodide.pyimport("nnmem.web").handle;
  const version = pyodide.runPython("import sys; sys.version.split()[0]");
  mark("imported-nnmem");
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
  if (message.part === "chart") {
    // The page asks for the step chart once its box is in view (see calculator.js).
    if (message.id !== newest) return;
    post({ type: "result", id: message.id, part: "chart", reply: ask(message, "chart") });
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
