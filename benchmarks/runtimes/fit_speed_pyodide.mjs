// Time the what-fits answers inside Pyodide under Node (prints seconds).
//   node benchmarks/runtimes/fit_speed_pyodide.mjs              # fit_speed, twice
//   node benchmarks/runtimes/fit_speed_pyodide.mjs fit_per_model  # each ranked model
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const BENCHMARKS = { fit_speed: 2, fit_per_model: 1 }; // module: runs (the 2nd with GGUF sizes cached)
const name = process.argv[2] || "fit_speed";
if (!(name in BENCHMARKS)) {
  console.error(`unknown benchmark ${name}: choose from ${Object.keys(BENCHMARKS).join(", ")}`);
  process.exit(2);
}
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const pyodide = await loadPyodide();
pyodide.mountNodeFS("/project", repo);
pyodide.runPython(`
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, "/project")
print("Pyodide Python", sys.version.split()[0])
from benchmarks.runtimes.${name} import main
for _ in range(${BENCHMARKS[name]}):
    main()
`);
