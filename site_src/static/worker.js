// The worker owns Pyodide. It answers two messages from the page:
//   {type: "init", indexURL, bundle}    -> progress..., then ready or error
//   {type: "request", id, page, fields} -> {type: "result", id, reply}
// All arithmetic and validation happen behind nnmem.web.handle, the page's one door.
import { loadPyodide } from "../pyodide/pyodide.mjs";

let handle = null;

const post = (message) => self.postMessage(message);
// The loading stages, in order; each progress message says which one has begun.
const STEPS = 3;
const progress = (step, text) => post({ type: "progress", step, steps: STEPS, text });

async function init({ indexURL, bundle }) {
  progress(1, "Step 1 of 3: downloading and starting Python (later visits load it from the browser cache)…");
  const pyodide = await loadPyodide({ indexURL });
  progress(2, "Step 2 of 3: loading the nnmem package…");
  const response = await fetch(bundle);
  if (!response.ok) {
    throw new Error(`the nnmem package could not be downloaded (HTTP ${response.status})`);
  }
  const archive = new Uint8Array(await response.arrayBuffer());
  const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
  pyodide.unpackArchive(archive, "zip", { extractDir: sitePackages });
  pyodide.runPython("import importlib; importlib.invalidate_caches()");
  progress(3, "Step 3 of 3: starting the calculator…");
  handle = pyodide.pyimport("nnmem.web").handle;
  const version = pyodide.runPython("import sys; sys.version.split()[0]");
  post({ type: "ready", python: version });
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
    let reply;
    try {
      reply = JSON.parse(handle(JSON.stringify({ page: message.page, fields: message.fields })));
    } catch (error) {
      reply = { ok: false, errors: [], inactive: [], fill: {}, html: {}, values: {}, fatal: String(error) };
    }
    post({ type: "result", id: message.id, reply });
  }
};
