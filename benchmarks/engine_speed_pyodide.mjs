// Run benchmarks/engine_speed.py (or another benchmark script) inside Pyodide under Node
// (the browser's Python).
//   node benchmarks/engine_speed_pyodide.mjs
//   node benchmarks/engine_speed_pyodide.mjs page_speed.py
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const script = process.argv[2] || "engine_speed.py";
if (!/^[a-z_]+\.py$/.test(script)) throw new Error(`not a benchmark script: ${script}`);
const pyodide = await loadPyodide();
pyodide.mountNodeFS("/project", repo);
pyodide.runPython(`
import runpy, sys
sys.dont_write_bytecode = True
runpy.run_path("/project/benchmarks/${script}")["main"]()
`);
