// Run benchmarks/engine_speed.py inside Pyodide under Node (the browser's Python).
//   node benchmarks/engine_speed_pyodide.mjs
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pyodide = await loadPyodide();
pyodide.mountNodeFS("/project", repo);
pyodide.runPython(`
import runpy, sys
sys.dont_write_bytecode = True
runpy.run_path("/project/benchmarks/engine_speed.py")["main"]()
`);
