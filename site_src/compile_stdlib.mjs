// Compile a python_stdlib.zip to bytecode with Pyodide's own Python (see compile_zip.py):
//   node site_src/compile_stdlib.mjs IN.zip OUT.zip
// build.py runs it on the trimmed standard library. The code objects name the files as
// Pyodide mounts the zip (the sys.path entry ending in .zip).
import fs from "node:fs";
import { loadPyodide } from "pyodide";

const [input, output] = process.argv.slice(2);
if (!input || !output) throw new Error("usage: node site_src/compile_stdlib.mjs IN.zip OUT.zip");
const py = await loadPyodide();
py.FS.writeFile("/tmp/in.zip", new Uint8Array(fs.readFileSync(input)));
py.runPython(fs.readFileSync(new URL("compile_zip.py", import.meta.url), "utf8"));
py.runPython(`
import sys
mount = next(p for p in sys.path if p.endswith(".zip"))
with open("/tmp/in.zip", "rb") as source, open("/tmp/out.zip", "wb") as out:
    out.write(compile_zip(source.read(), mount))
`);
fs.writeFileSync(output, py.FS.readFile("/tmp/out.zip"));
