// The engine's worker, started as soon as the page's head is read. This module is
// loaded with `async`, so it runs once fetched, while the document is still being
// parsed; the page's main module (and engine.js with it) runs only after the whole
// document, which started the worker 270 ms later on a cold visit here
// (benchmarks/site_speed.py). engine.js adopts the worker with the events it sent
// meanwhile. The script tag carries data-worker, data-pyodide, data-bundle and
// data-later (with data-later-now where the page needs the second bundle at once).
export const started = start(document.querySelector("script[data-worker]"));

function start(script) {
  const early = { worker: null, events: [], error: null };
  if (!script) {
    early.error = "the page names no engine";
    return early;
  }
  const data = script.dataset;
  const here = (path) => new URL(path, document.baseURI).href;
  try {
    early.worker = new Worker(here(data.worker), { type: "module" });
  } catch (error) {
    early.error = String(error.message || error);
    return early;
  }
  // Kept until engine.js takes over; an error event's default (a console report) waits too.
  early.worker.onmessage = early.worker.onerror = (event) => {
    if (event.type === "error") event.preventDefault();
    early.events.push(event);
  };
  early.worker.postMessage({
    type: "init",
    indexURL: here(data.pyodide),
    bundle: here(data.bundle),
    later: here(data.later),
    laterNow: "laterNow" in data,
  });
  return early;
}
