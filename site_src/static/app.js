// The page's glue: it owns the DOM, sends the form to the worker on every change and
// paints what nnmem answers. It computes nothing itself.
const LOAD_TIMEOUT_MS = 30000;

const calculator = document.getElementById("calculator");
const form = document.getElementById("calc");
const results = document.getElementById("results");
const engine = document.getElementById("engine");
const engineText = document.getElementById("engine-text");
const total = document.getElementById("total");
const stale = document.getElementById("stale");
const parts = {
  table: document.getElementById("breakdown"),
  chart: document.getElementById("chart"),
  phases: document.getElementById("phases"),
  formula: document.getElementById("formula"),
  notes: document.getElementById("notes"),
};

let worker = null;
let ready = false;
let latest = 0; // id of the newest request; older answers are dropped
const sentAt = new Map();

function setEngine(state, text) {
  engine.dataset.state = state;
  engineText.textContent = text;
}

function showStale(text) {
  stale.textContent = text;
  stale.hidden = !text;
}

function readForm() {
  const scenario = {};
  for (const [key, value] of new FormData(form)) scenario[key] = value;
  return scenario;
}

function request() {
  if (!ready) {
    showStale("Your changes will be calculated as soon as the engine has loaded.");
    return;
  }
  latest += 1;
  sentAt.set(latest, performance.now());
  worker.postMessage({ type: "compute", id: latest, scenario: readForm() });
}

function setInactive(keys) {
  for (const field of form.querySelectorAll(".field")) {
    field.hidden = keys.includes(field.dataset.field);
  }
}

function showErrors(errors) {
  const byField = new Map(errors.map((e) => [e.field, e.message]));
  for (const field of form.querySelectorAll(".field")) {
    const key = field.dataset.field;
    const message = byField.get(key) || "";
    const control = field.querySelector("input, select");
    field.querySelector(".error").textContent = message;
    field.classList.toggle("invalid", Boolean(message));
    if (message) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
    byField.delete(key);
  }
  return [...byField.values()]; // problems that belong to no visible field
}

function paint(id, reply) {
  const started = sentAt.get(id);
  sentAt.delete(id);
  if (id !== latest) return;
  setInactive(reply.inactive || []);
  const unplaced = showErrors(reply.errors || []);
  if (reply.fatal) {
    setEngine("error", `The calculator hit an internal error (${reply.fatal}). The last result stays below.`);
    return;
  }
  if (!reply.ok) {
    results.dataset.state = "stale";
    const extra = unplaced.length ? ` ${unplaced.join(" ")}` : "";
    showStale(`Fix the highlighted field to update the result; it shows the last valid inputs.${extra}`);
    return;
  }
  total.textContent = reply.total_text;
  total.dataset.bytes = String(reply.total_bytes);
  document.getElementById("total-detail").textContent = reply.total_detail;
  document.getElementById("scenario-line").textContent = reply.description;
  for (const [name, element] of Object.entries(parts)) element.innerHTML = reply.html[name];
  results.dataset.state = "live";
  results.dataset.request = String(id);
  showStale("");
  if (started !== undefined) {
    performance.measure("nnmem:compute", { start: started, end: performance.now() });
  }
}

function fail(reason) {
  if (ready || engine.dataset.state === "error") return;
  clearTimeout(timer);
  if (worker) worker.terminate();
  setEngine(
    "error",
    `The calculator engine could not start: ${reason}. The result below is for the example inputs; reload the page to try again.`,
  );
  showStale("");
}

function onMessage(event) {
  const message = event.data;
  if (message.type === "progress") {
    setEngine("loading", message.text);
  } else if (message.type === "ready") {
    ready = true;
    clearTimeout(timer);
    performance.mark("nnmem:ready");
    setEngine("ready", "Live: the result updates as you type.");
    request(); // catch up with anything typed while the engine loaded
  } else if (message.type === "error") {
    fail(message.text);
  } else if (message.type === "result") {
    paint(message.id, message.reply);
  }
}

const timer = setTimeout(() => fail(`it did not load within ${LOAD_TIMEOUT_MS / 1000} seconds`), LOAD_TIMEOUT_MS);

function start() {
  const here = (path) => new URL(path, document.baseURI).href;
  try {
    worker = new Worker(here(calculator.dataset.worker), { type: "module" });
  } catch (error) {
    fail(String(error.message || error));
    return;
  }
  worker.onmessage = onMessage;
  worker.onerror = (event) => {
    event.preventDefault();
    fail(event.message || "its script failed to load");
  };
  worker.postMessage({
    type: "init",
    indexURL: here(calculator.dataset.pyodide),
    bundle: here(calculator.dataset.bundle),
  });
}

form.addEventListener("input", request);
form.addEventListener("change", request);
form.addEventListener("submit", (event) => {
  event.preventDefault();
  request();
});
start();
