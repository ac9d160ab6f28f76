// Run pytest inside real Pyodide under Node, on the repository mounted at /project.
//   node tests/pyodide/run_pytest.mjs [pytest args...]
// The pure-Python pytest wheels come from .pyodide-wheels/ (see the Makefile); nothing
// is fetched from the network. The exit status is pytest's.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const wheels = path.join(repo, ".pyodide-wheels");

const pyodide = await loadPyodide();
const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
for (const name of readdirSync(wheels).filter((n) => n.endsWith(".whl")).sort()) {
  // Node's Buffer is not accepted here; a plain Uint8Array is.
  const data = new Uint8Array(readFileSync(path.join(wheels, name)));
  pyodide.unpackArchive(data, "wheel", { extractDir: sitePackages });
}
pyodide.mountNodeFS("/project", repo);
pyodide.globals.set("pytest_args", pyodide.toPy(process.argv.slice(2)));
const status = pyodide.runPython(`
import os, sys
sys.dont_write_bytecode = True  # keep Python 3.14 caches out of the mounted repository
os.chdir("/project")
sys.path.insert(0, "/project")
import pytest
print("running inside Pyodide: Python", sys.version.split()[0], "on", sys.platform)
int(pytest.main(["-p", "no:cacheprovider", *pytest_args]))
`);
process.exit(status);
