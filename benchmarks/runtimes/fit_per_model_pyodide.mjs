// Time the what-fits answer per model inside Pyodide under Node (prints seconds).
//   node benchmarks/runtimes/fit_per_model_pyodide.mjs
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const pyodide = await loadPyodide();
pyodide.mountNodeFS("/project", repo);
pyodide.runPython(`
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, "/project")
print("Pyodide Python", sys.version.split()[0])
from benchmarks.runtimes.fit_per_model import main
main()
`);
