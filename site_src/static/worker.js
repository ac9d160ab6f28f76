// The worker owns Pyodide. It answers two messages from the page:
//   {type: "init", indexURL, bundle}  -> progress..., then ready or error
//   {type: "compute", id, scenario}   -> {type: "result", id, reply}
// All arithmetic and validation happen in nnmem.web.compute (Python).
import { loadPyodide } from "../pyodide/pyodide.mjs";

let compute = null;

const post = (message) => self.postMessage(message);
const progress = (stage, text) => post({ type: "progress", stage, text });

async function init({ indexURL, bundle }) {
  progress("runtime", "Downloading and starting Python…");
  const pyodide = await loadPyodide({ indexURL });
  progress("package", "Loading the nnmem package…");
  const response = await fetch(bundle);
  if (!response.ok) {
    throw new Error(`the nnmem package could not be downloaded (HTTP ${response.status})`);
  }
  const archive = new Uint8Array(await response.arrayBuffer());
  const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
  pyodide.unpackArchive(archive, "zip", { extractDir: sitePackages });
  pyodide.runPython("import importlib; importlib.invalidate_caches()");
  compute = pyodide.pyimport("nnmem.web").compute;
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
  } else if (message.type === "compute") {
    let reply;
    try {
      reply = JSON.parse(compute(JSON.stringify({ scenario: message.scenario })));
    } catch (error) {
      reply = { ok: false, errors: [], inactive: [], fatal: String(error) };
    }
    post({ type: "result", id: message.id, reply });
  }
};
