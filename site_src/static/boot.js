// The engine's worker, started as soon as the page's head is read. This module is
// loaded with `async`, so it runs once fetched, while the document is still being
// parsed; the page's main module (and engine.js with it) runs only after the whole
// document, which started the worker 270 ms later on a cold visit here
// (benchmarks/site_speed.py). engine.js adopts the worker with the events it sent
// meanwhile. The script tag carries data-worker, data-pyodide, data-bundle and
// data-later (with data-later-now where the page needs the second bundle at once).

// Where engine.js notes the key of the Python heap a visit kept (see worker.js's "Memory
// snapshot"): the worker asks Cache Storage for a heap only under a noted key, or where
// the page cannot read the note, and otherwise starts Python at once (the question cost
// 9-18 ms of every cold visit before Python could start, here).
export const KEPT_NOTE = "nnmem-python-memory"; // declared first: start() reads it
export const started = start(document.querySelector("script[data-worker]"));

function keptNote() {
  try {
    return localStorage.getItem(KEPT_NOTE); // null: nothing kept
  } catch {
    return undefined; // no storage to read: the worker asks
  }
}

function start(script) {
  const early = { worker: null, events: [], error: null };
  if (!script) {
    early.error = "the page names no engine";
    return early;
  }
  const data = script.dataset;
  const here = (path) => new URL(path, document.baseURI).href;
  // What the worker starts from travels as its name, which it reads as its script runs:
  // a message waited until the worker's module graph had loaded and then for a turn of
  // its event loop, 35-45 ms of every cold start here (traced).
  const init = {
    indexURL: here(data.pyodide),
    bundle: here(data.bundle),
    later: here(data.later),
    laterNow: "laterNow" in data,
    kept: keptNote(),
  };
  try {
    early.worker = new Worker(here(data.worker), { type: "module", name: JSON.stringify(init) });
  } catch (error) {
    early.error = String(error.message || error);
    return early;
  }
  // Kept until engine.js takes over; an error event's default (a console report) waits too.
  early.worker.onmessage = early.worker.onerror = (event) => {
    if (event.type === "error") event.preventDefault();
    early.events.push(event);
  };
  return early;
}
