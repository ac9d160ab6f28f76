// The engine's life on a page, shared by the calculator (app.js) and the related tools
// (tool.js): start the worker that owns Pyodide, show its loading stages, give up with a
// plain message when it fails or does not load in time, and hand on each result.
export const LOAD_TIMEOUT_MS = 30000;
export const LIVE = "Live: the result updates as you type.";

// The status line once the engine runs: live, or held at the last valid inputs while a
// field is wrong, so it never says "Live" over a result the inputs no longer give.
export function showHeld(held) {
  const engine = document.getElementById("engine");
  if (engine.dataset.state !== "ready") return;
  if (held) engine.dataset.held = "true";
  else delete engine.dataset.held;
  document.getElementById("engine-text").textContent = held
    ? "Held: the result is for the last valid inputs until the highlighted field is fixed."
    : LIVE;
}

import { KEPT_NOTE, started } from "./boot.js";

// The worker boot.js started (see there); the page has #engine, #engine-text and
// #engine-progress. Returns `post(message)`, a no-op until ready.
export function startEngine({ onReady, onResult, onFail }) {
  const engine = document.getElementById("engine");
  const engineText = document.getElementById("engine-text");
  const progress = document.getElementById("engine-progress");
  let worker = null;
  let ready = false;
  let failed = false;

  const setEngine = (state, text) => {
    engine.dataset.state = state;
    engineText.textContent = text;
  };

  function fail(reason) {
    if (ready || failed) return;
    failed = true;
    clearTimeout(timer);
    if (worker) worker.terminate();
    progress.hidden = true;
    setEngine(
      "error",
      `The calculator engine could not start: ${reason}. You can still read the result below, which is for the example inputs; Retry loads the page again, with your inputs, which its address keeps.`,
    );
    // Retry: a fresh page starts a fresh worker; the URL holds every input.
    const retry = document.getElementById("engine-retry");
    if (retry) {
      retry.hidden = false;
      retry.addEventListener("click", () => location.reload());
    }
    if (onFail) onFail();
  }

  const timer = setTimeout(() => fail(`it did not load within ${LOAD_TIMEOUT_MS / 1000} seconds`), LOAD_TIMEOUT_MS);
  const post = (message) => {
    if (ready) worker.postMessage(message);
  };
  if (started.error) {
    fail(started.error);
    return post;
  }
  worker = started.worker;
  const onError = (event) => {
    event.preventDefault();
    fail(event.message || "its script failed to load");
  };
  const onMessage = (event) => {
    const message = event.data;
    if (message.type === "progress") {
      setEngine("loading", message.text);
      progress.value = message.step;
      progress.max = message.steps;
    } else if (message.type === "ready") {
      ready = true;
      clearTimeout(timer);
      performance.mark("nnmem:ready");
      // How Python started: "fresh", or "snapshot" (the heap a visit before kept).
      if (message.start) engine.dataset.start = message.start;
      progress.hidden = true;
      setEngine("ready", LIVE);
      onReady();
    } else if (message.type === "kept") {
      engine.dataset.kept = String(message.bytes); // the heap kept for the next visit, in bytes
      try {
        localStorage.setItem(KEPT_NOTE, message.key); // read by boot.js on the next visit
      } catch {
        // no storage: the next visit asks Cache Storage itself
      }
    } else if (message.type === "error") {
      fail(message.text);
    } else if (message.type === "result") {
      onResult(message.id, JSON.parse(message.text), message.part);
    }
  };
  // What the worker sent before now, in order, once the caller holds `post`; no event
  // can come in between, since a microtask runs before the next one is dispatched.
  queueMicrotask(() => {
    for (const event of started.events.splice(0)) {
      (event.type === "error" ? onError : onMessage)(event);
    }
    worker.onerror = onError;
    worker.onmessage = onMessage;
  });
  return post;
}
