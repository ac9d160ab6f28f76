// Compile a zip of Python modules to bytecode with Pyodide's own Python (see
// compile_zip.py):
//   node site_src/compile_pyc.mjs IN.zip OUT.zip stdlib|site-packages [--record]
// build.py runs it on the trimmed standard library (its code objects name the files as
// Pyodide mounts the zip, the sys.path entry ending in .zip) and on the nnmem bundles
// (named as the worker unpacks them, in site-packages, and compiled from their
// bare_tree: no docstrings or annotations of functions).
//
// --record (the first bundle): the compiled zip is unpacked into site-packages and its
// nnmem_start.record() imports nnmem as the page does; the dataclass methods that
// import wrote, with their code, go into the zip as nnmem_start.methods (see
// nnmem_start.py).
//
// PYTHONNODEBUGRANGES: the code keeps its line numbers but not the columns within a line
// (PEP 657's carets in a traceback), which would make the standard library's zip 0.36 MB
// larger (1.71 MB against 1.36 MB) and the first nnmem bundle 75 kB.
import fs from "node:fs";
import { loadPyodide } from "pyodide";

const [input, output, where, flag] = process.argv.slice(2);
if (!input || !output || !["stdlib", "site-packages"].includes(where) || ![undefined, "--record"].includes(flag)) {
  throw new Error("usage: node site_src/compile_pyc.mjs IN.zip OUT.zip stdlib|site-packages [--record]");
}
const py = await loadPyodide({ env: { PYTHONNODEBUGRANGES: "1" } });
py.FS.writeFile("/tmp/in.zip", new Uint8Array(fs.readFileSync(input)));
py.runPython(fs.readFileSync(new URL("compile_zip.py", import.meta.url), "utf8"));
py.runPython(`
import site, sys
if any(column is not None for _, _, column, _ in compile("x = 1", "", "exec").co_positions()):
    raise SystemExit("PYTHONNODEBUGRANGES was not applied: the code has columns")
if "${where}" == "stdlib":
    mount = next(p for p in sys.path if p.endswith(".zip"))
else:
    mount = site.getsitepackages()[0]
with open("/tmp/in.zip", "rb") as source, open("/tmp/out.zip", "wb") as out:
    out.write(compile_zip(source.read(), mount, bare="${where}" == "site-packages"))
`);
if (flag === "--record") {
  py.runPython(`
import site, sys, zipfile
with zipfile.ZipFile("/tmp/out.zip") as archive:
    archive.extractall(site.getsitepackages()[0])
import nnmem_start
methods = nnmem_start.record()
with zipfile.ZipFile("/tmp/out.zip", "a") as archive:
    info = zipfile.ZipInfo(nnmem_start.TABLE, archive.infolist()[0].date_time)
    info.external_attr = 0o644 << 16
    archive.writestr(info, methods)
`);
}
fs.writeFileSync(output, py.FS.readFile("/tmp/out.zip"));
