// Write site_src/stdlib-modules.txt: the standard-library modules the page's Python
// imports. Pyodide's own start, unpacking the nnmem bundle, every module of nnmem and
// one request to each page are run in Pyodide under Node, and sys.modules is listed.
// build.py ships a python_stdlib.zip that holds only these (tests/test_build.py checks
// that every import written in nnmem is listed).
//   node site_src/stdlib_modules.mjs
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const py = await loadPyodide();
py.mountNodeFS("/project", repo);
// The bundle as the page gets it: zipped here, unpacked the way worker.js does.
py.runPython(`
import os, sys, zipfile

sys.dont_write_bytecode = True
with zipfile.ZipFile("/tmp/nnmem.zip", "w") as archive:
    for folder, _, files in os.walk("/project/nnmem"):
        for name in files:
            if name.endswith((".py", ".json", ".typed")):
                full = os.path.join(folder, name)
                archive.write(full, os.path.relpath(full, "/project"))
`);
const sitePackages = py.runPython("import site; site.getsitepackages()[0]");
py.unpackArchive(py.FS.readFile("/tmp/nnmem.zip"), "zip", { extractDir: sitePackages });
const names = py.runPython(`
import importlib, json, pkgutil, sys

importlib.invalidate_caches()
import nnmem
from nnmem.web import handle
from nnmem.web.calculator import DEFAULT_FIELDS
from nnmem.web.tools import TOOLS

handle(json.dumps({"fields": {**DEFAULT_FIELDS, "gpu": "h100-sxm-80gb"}}))
handle(json.dumps({"fields": {"batch_size": "0"}}))
for tool in TOOLS:
    handle(json.dumps({"page": tool, "fields": {}}))
for module in pkgutil.walk_packages(nnmem.__path__, "nnmem."):
    importlib.import_module(module.name)
json.dumps(sorted(m for m in sys.modules if not m.startswith("nnmem")))
`);
const out = path.join(here, "stdlib-modules.txt");
fs.writeFileSync(out, `${JSON.parse(names).join("\n")}\n`);
console.log(`${out}: ${JSON.parse(names).length} modules`);
