// The calculator page's glue: it owns the DOM and the URL, sends every control's value to
// the worker on each change and paints what nnmem answers. It computes and validates
// nothing itself: nnmem.web.handle does both, in Python.
import { showHeld, startEngine } from "./engine.js";
import * as forms from "./form.js";

const calculator = document.getElementById("calculator");
const form = document.getElementById("calc");
const results = document.getElementById("results");
const stale = document.getElementById("stale");
const actionStatus = document.getElementById("action-status");
const miniTotal = document.getElementById("mini-total-value");
const miniVerdict = document.getElementById("mini-verdict");
const PARTS = ["headline", "capacity", "table", "plot", "verdict", "solvers", "suggestions", "phases", "formula", "notes", "runtime", "timeline"];

let post = null;
let ready = false;
let latest = 0; // id of the newest request; older answers are dropped
let lastReply = null;
let latestFields = null; // the fields of the newest request, which its chart is asked for
// The form's values when the newest request was posted, and whether a control has changed
// since (an edit, or nnmem's set or fill): while none has, its answer writes the URL from
// them instead of reading the form again.
let requestForm = null;
let formMoved = false;
const sentAt = new Map();
// Values from the URL that no option of their <select> holds: sent as typed, so nnmem
// names the problem next to the field, until the user picks a value there.
const rawValues = new Map();
// A link in the schema's own terms (model=preset&preset=...) names no describe mode:
// nnmem reads the mode from it, and its answer sets the radio.
let omitDescribe = false;
// Values nnmem wrote into model fields (a preset's architecture, say): derived from
// other inputs, so the URL leaves them out while they are unchanged.
const filled = new Map();

// The controls edited since the last answer: nnmem says which others follow them (a
// preset named by its id or name becomes the model) and the answer's `set` holds those.
const edited = new Set();
// The controls edited since the latest request was posted: its answer knows nothing of
// them, so it must not overwrite them, and the next request still names them.
const fresh = new Set();

// Every control's value as the page was built: the URL holds only what differs from these.
const defaults = readForm();

// The model reader (reader.js): its requests to nnmem get ids below zero, so their
// replies are told apart from the calculator's own.
const asked = new Map();
let askId = 0;
// The Hub model id whose read the model's fields hold (null: none, "": local files), and
// the values it put there: while they stand, the URL records the id instead of them.
let readModel = null;
let readFill = new Map();
// A model id named by the link, not read yet: it stays in the URL until the model changes.
let linkModel = "";
const MODEL_CONTROLS = new Set(["start_model", "describe", "preset", "config", "cnn", "params_millions", "hidden_size", "num_layers", "checkpoint_bytes"]);
const isModelControl = (name) => MODEL_CONTROLS.has(name) || name.startsWith("cfg_");

const setControl = (name, value) => forms.setControl(form, name, value);
const showStale = (text) => forms.showStale(stale, text);

function readForm() {
  const fields = forms.readForm(form, rawValues);
  if (omitDescribe) delete fields.describe;
  return fields;
}

function say(text) {
  actionStatus.textContent = text;
}

// Text written only where it changes: the same text written again still replaces the
// element's text node and makes the browser lay the page out anew.
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

// The URL: the fields that differ from the defaults and apply to this scenario.
function syncUrl(inactive, fields) {
  const modelId = readModel || linkModel;
  const fromHub = (name, value) => Boolean(readModel) && isModelControl(name) && (readFill.get(name) === value || name === "checkpoint_bytes");
  const extra = modelId ? { model_id: modelId } : {};
  const skip = (name, value) => value === filled.get(name) || inactive.includes(name) || fromHub(name, value) || (linkModel && isModelControl(name));
  // The config is the model where it is the mode (its text may equal what a preset once
  // filled in: it is the user's now), unless a Hub read or the link's model id names it.
  const config = fields.config || "";
  const ownConfig = fields.describe === "config" && !fromHub("config", config) && !linkModel;
  // A CNN's layer list (JSON) is the model where it is the mode; a built-in's name is short
  // and stays in the query.
  const cnn = (fields.cnn || "").trim();
  const ownCnn = fields.describe === "cnn" && /^[[{]/.test(cnn);
  const inFragment = (name) => name === "config" || (name === "cnn" && ownCnn);
  // Long texts go in the fragment (see syncFragment), not the query.
  forms.writeUrl(fields, defaults, (name, value) => inFragment(name) || skip(name, value), extra);
  syncFragment("config", ownConfig && config.trim() ? config : "");
  syncFragment("cnn", ownCnn ? fields.cnn : "");
}

// A pasted config.json or a CNN's layer list travels in the URL's fragment, deflated and
// base64url-encoded: a few hundred characters instead of thousands, and a fragment never
// reaches a server. The comparison (compare.js) rides there too, packed by nnmem. The
// fragment reads "#config=...&cnn=...&compare=...", each part only where it has one.
const PARTS_IN_FRAGMENT = ["config", "cnn", "compare"];
const MAX_FRAGMENT = 64000; // characters: far above any real config, below URL limits
const WHAT = { config: "pasted config.json", cnn: "CNN layer list" };
const fragment = { config: "", cnn: "", compare: "" };
const packedText = { config: "", cnn: "" };
const packing = { config: 0, cnn: 0 };

function fragmentParts() {
  const hash = location.hash.slice(1);
  const params = new URLSearchParams(hash);
  const ours = PARTS_IN_FRAGMENT.some((name) => hash.startsWith(`${name}=`));
  return ours ? params : new URLSearchParams();
}

async function syncFragment(name, text) {
  const turn = ++packing[name];
  if (text !== packedText[name]) {
    const value = text ? await forms.packText(text) : "";
    if (turn !== packing[name]) return; // a newer call has the newer text
    packedText[name] = text;
    fragment[name] = value.length <= MAX_FRAGMENT ? value : "";
    if (value.length > MAX_FRAGMENT) {
      say(
        `The ${WHAT[name]} is too long for a link (${value.length.toLocaleString("en")} characters packed; a link holds at most ${MAX_FRAGMENT.toLocaleString("en")}), so the link leaves it out: use Download JSON to share the scenario as a file.`,
      );
    }
  }
  writeFragment();
}

function setCompareLink(packed) {
  fragment.compare = packed;
  writeFragment();
}

function writeFragment() {
  const parts = PARTS_IN_FRAGMENT.filter((name) => fragment[name]).map((name) => `${name}=${fragment[name]}`);
  const hash = parts.length ? `#${parts.join("&")}` : "";
  // Only our own fragment is replaced or removed (#results, say, stays).
  const ours = PARTS_IN_FRAGMENT.some((name) => location.hash.startsWith(`#${name}=`));
  if (location.hash !== hash && (hash || ours)) {
    history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
  }
}

function request() {
  if (!ready) {
    showStale("Your changes will be calculated as soon as the engine has loaded.");
    holdMini("waiting for the engine");
    return;
  }
  latest += 1;
  results.dataset.asked = String(latest); // the newest request: data-complete catches up
  sentAt.set(latest, performance.now());
  fresh.clear();
  cancelChart();
  requestForm = readForm();
  formMoved = false;
  latestFields = { ...requestForm, changed: [...edited].join(",") };
  post({ type: "request", id: latest, page: "calculator", fields: latestFields });
}

// Each property is written only where it changes: a write the page does not need still
// costs the browser a style recalculation on every answer.
function setInactive(names) {
  const inactive = new Set(names);
  for (const field of document.querySelectorAll("[data-field]")) {
    const hidden = inactive.has(field.dataset.field);
    if (field.hidden !== hidden) field.hidden = hidden;
  }
  // A section or group whose every control is hidden (the runtime's, while training)
  // hides too.
  for (const section of document.querySelectorAll("section.form-section, details.field-group")) {
    const controls = [...section.querySelectorAll("[data-field]")];
    const hidden = controls.length > 0 && controls.every((f) => f.hidden);
    if (section.hidden !== hidden) section.hidden = hidden;
  }
  // No trainer trains in FP8 weights, GPTQ, AWQ or GGUF: offer them for inference only.
  const training = form.elements.namedItem("mode")?.value === "training";
  for (const option of form.querySelectorAll("#f-precision option[data-inference-only]")) {
    const disabled = training && !option.selected;
    if (option.disabled !== disabled) option.disabled = disabled;
  }
}

// The controls nnmem set to follow an edit: they now hold the user's scenario.
function applySet(changes) {
  for (const [name, value] of Object.entries(changes || {})) {
    if (fresh.has(name)) continue; // edited after the request: the user's value stands
    rawValues.delete(name);
    filled.delete(name);
    setControl(name, value);
    formMoved = true;
  }
}

function applyFill(fill) {
  for (const [name, value] of Object.entries(fill || {})) {
    const el = form.elements.namedItem(name);
    if (el instanceof RadioNodeList) {
      if (name === "describe" && omitDescribe && setControl(name, value)) {
        omitDescribe = false;
        formMoved = true;
        rawValues.delete("model");
      }
    } else if (el && el !== document.activeElement && setControl(name, value)) {
      filled.set(name, value);
      formMoved = true;
    }
  }
}

// The parts a reply's second message paints (see worker.js): until it comes they are
// marked busy, so the page never passes off an older verdict or plot as the new one's.
const LATER = ["plot", "verdict", "solvers", "suggestions"];
let downloadWhenComplete = false;

function setPending(pending) {
  for (const name of LATER) {
    const element = document.getElementById(`part-${name}`);
    if (element) element.setAttribute("aria-busy", String(pending));
  }
  if (pending) results.dataset.pending = "true";
  else delete results.dataset.pending;
}

// The HTML each part was last painted with: a part whose new HTML is the same (the notes,
// the formula's terms, where a batch size changes) is left as it is, not parsed again.
const painted = new Map();

function paintParts(html) {
  for (const name of PARTS) {
    if (html[name] === undefined || painted.get(name) === html[name]) continue;
    const element = document.getElementById(`part-${name}`);
    if (element) {
      element.innerHTML = html[name];
      painted.set(name, html[name]);
    }
  }
}

// `part` is "first" then "rest" (then "chart", once asked) for a reply in parts, or "all"
// for one.
function paint(id, reply, part = "all") {
  if (part === "rest") return paintRest(id, reply);
  if (part === "chart") return paintChart(id, reply);
  const started = sentAt.get(id);
  if (part !== "first") sentAt.delete(id);
  for (const older of sentAt.keys()) if (older < id) sentAt.delete(older);
  if (id !== latest) return;
  for (const name of [...edited]) if (!fresh.has(name)) edited.delete(name);
  applySet(reply.set);
  if (reply.note) say(reply.note);
  setInactive(reply.inactive || []);
  applyFill(reply.fill);
  const unplaced = forms.placeErrors(document, reply.errors || []);
  // A folded group (or the whole form under "Adjust everything") opens to show a problem
  // in one of its fields.
  for (const group of document.querySelectorAll("details.field-group, details.adjust")) {
    if (group.querySelector(".field.invalid")) group.open = true;
  }
  syncUrl(reply.inactive || [], requestForm && fresh.size === 0 && !formMoved ? requestForm : readForm());
  showHeld(Boolean(reply.fatal || !reply.ok));
  if (reply.fatal || !reply.ok) {
    // The bar at the bottom never shows a total the inputs no longer give.
    holdMini(reply.fatal ? "the calculator hit an error" : "fix the highlighted field", "error");
  }
  if (reply.fatal) {
    results.dataset.state = "stale";
    showStale(`The calculator hit an internal error (${reply.fatal}). The last result stays below.`);
    return;
  }
  if (!reply.ok) {
    results.dataset.state = "stale";
    const extra = unplaced.length ? ` ${unplaced.join(" ")}` : "";
    showStale(`Fix the highlighted field to update the result; it shows the last valid inputs.${extra}`);
    return;
  }
  lastReply = reply;
  setText(document.getElementById("total-label"), reply.total_label);
  setText(miniTotal, reply.total_text);
  setMiniVerdict(reply.verdict_text);
  setText(document.getElementById("total-detail"), reply.total_detail);
  setText(document.getElementById("scenario-line"), reply.description);
  setText(document.getElementById("start-summary"), reply.summary);
  // Width and depth worked out from the size, shown in their empty fields.
  for (const name of ["hidden_size", "num_layers"]) {
    const el = form.elements.namedItem(name);
    const value = (reply.derived || {})[name];
    const placeholder = value ? `${value} from the size` : "";
    if (el && el.placeholder !== placeholder) el.placeholder = placeholder;
  }
  paintParts(reply.html);
  setPending(part === "first");
  if (reply.html.timeline === undefined) drawing(id);
  if (results.dataset.state === "prerendered") performance.mark("nnmem:live");
  results.dataset.state = "live";
  delete results.dataset.link;
  results.dataset.request = String(id);
  if (part !== "first") results.dataset.complete = String(id);
  showStale("");
  if (started !== undefined) {
    performance.measure("nnmem:compute", { start: started, end: performance.now() });
  }
}

// The verdict in the bar at the bottom of the screen: "fits: 3.8 GB to spare", or a
// prompt to pick a GPU where none is chosen (nnmem's verdict is then empty).
function setMiniVerdict(text, state) {
  if (!text && !state) {
    text = "pick a GPU to see whether it fits";
    state = "none";
  }
  setText(miniVerdict, `· ${text}`);
  const fit = state || (text.startsWith("does not") ? "no" : "yes");
  if (miniVerdict.dataset.fit !== fit) miniVerdict.dataset.fit = fit;
}

// The bar while the result on screen is not the inputs' (an error, a link or an edit
// waiting for the engine): no total, and why.
function holdMini(reason, state = "pending") {
  miniTotal.textContent = "—";
  setMiniVerdict(reason, state);
}

function paintRest(id, reply) {
  const started = sentAt.get(id);
  sentAt.delete(id);
  // Only the rest of the answer on screen: an older one, or one whose first part was an
  // error, would mix two answers.
  if (id !== latest || results.dataset.request !== String(id) || !reply.ok || !lastReply) return;
  paintParts(reply.html);
  setMiniVerdict(reply.verdict_text || "");
  lastReply = {
    ...lastReply,
    html: { ...lastReply.html, ...reply.html },
    download: { ...lastReply.download, ...reply.download },
  };
  setPending(false);
  results.dataset.complete = String(id);
  if (started !== undefined) {
    performance.measure("nnmem:complete", { start: started, end: performance.now() });
  }
  if (downloadWhenComplete) downloadJson();
  wantChart(id);
}

// The step chart (part "chart", see worker.js) is asked for only while its box is in
// view, once the typing has paused CHART_PAUSE_MS after a complete answer: its replay
// through the allocator model costs more than the rest of the answer, and its modules
// come with the second bundle. A newer request cancels the wait, and the worker skips a
// chart whose request is no longer the newest. Until the chart of the answer on screen
// comes, the box says it is drawing, so it never shows another scenario's step.
const chartBox = document.getElementById("part-timeline");
const chartSection = chartBox.closest(".timeline-box") || chartBox;
const CHART_PAUSE_MS = 150;
let chartShown = 0; // the request whose chart is painted (0: the prerendered example's)
let chartWanted = 0; // the complete answer whose chart the box waits for
let chartAsked = 0; // the request whose chart was last asked for
let chartInView = !("IntersectionObserver" in window); // without an observer, ask anyway
let chartTimer = null;

function drawing(id) {
  if (id === chartShown) return;
  chartBox.dataset.chart = "drawing";
  chartBox.setAttribute("aria-busy", "true");
}

function cancelChart() {
  clearTimeout(chartTimer);
  chartTimer = null;
}

function wantChart(id) {
  chartWanted = id;
  cancelChart();
  chartTimer = setTimeout(askChart, CHART_PAUSE_MS);
}

function askChart() {
  chartTimer = null;
  const id = chartWanted;
  if (!chartInView || id !== latest || id === chartShown || id === chartAsked) return;
  chartAsked = id;
  post({ type: "request", id, page: "calculator", part: "chart", fields: latestFields });
}

function paintChart(id, reply) {
  // Only the chart of the answer on screen, as for the rest.
  if (id !== latest || results.dataset.request !== String(id) || !reply.ok || !lastReply) return;
  paintParts(reply.html);
  lastReply = { ...lastReply, html: { ...lastReply.html, ...reply.html } };
  chartShown = id;
  delete chartBox.dataset.chart;
  chartBox.removeAttribute("aria-busy");
  results.dataset.chart = String(id);
}

// A shared link: its parameters go into their controls (see form.js); one in the
// schema's own terms (model=preset&preset=...) leaves the describe mode to nnmem.
function readUrl() {
  const link = forms.readUrl(form, defaults, rawValues);
  let any = link.any;
  const parts = fragmentParts();
  const texts = [];
  for (const name of ["config", "cnn"]) {
    if (!parts.get(name)) continue;
    any = true;
    fragment[name] = parts.get(name);
    texts.push(
      forms
        .unpackText(parts.get(name))
        .then((text) => {
          packedText[name] = text;
          setControl(name, text);
        })
        .catch(() => say(`The link's ${WHAT[name]} could not be read: paste it again.`)),
    );
  }
  linkTexts = Promise.all(texts);
  linkCompare = parts.get("compare") || "";
  fragment.compare = linkCompare; // kept in the URL while nnmem reads it
  if (!link.params.has("describe") && link.params.has("model")) {
    any = true;
    omitDescribe = true;
    rawValues.set("model", link.params.get("model"));
  }
  if (any) {
    // The prerendered result is the example's, not the link's: greyed until it is.
    results.dataset.link = "loading";
    showStale("The link's inputs will be calculated as soon as the engine has loaded.");
    holdMini("working out the link's inputs");
  }
}

let linkTexts = Promise.resolve(); // the link's config or CNN, once read from its fragment
let linkCompare = ""; // the link's comparison, packed, for nnmem to read once it has loaded

function onEdit(event) {
  const name = event.target && event.target.name;
  if (!name) return; // the model reader's own inputs: nothing to calculate
  rawValues.delete(name);
  edited.add(name);
  fresh.add(name);
  if (name === "units" && compare) compare.refresh();
  if (isModelControl(name)) forgetRead();
  if (name === "describe" || name === "preset") {
    rawValues.delete("model");
    omitDescribe = false;
  }
  request();
}

// The model's fields no longer hold what was read (or named by the link).
function forgetRead() {
  if (readModel === null && !linkModel) return;
  readModel = null;
  linkModel = "";
  readFill = new Map();
  setControl("checkpoint_bytes", "");
  if (readerLoading) readerLoading.then((r) => r.forget());
}

// What the reader got from nnmem: the same controls a pasted config.json fills.
function loadRead(fill, modelId) {
  setControl("preset", "");
  for (const [name, value] of Object.entries(fill)) {
    rawValues.delete(name);
    setControl(name, value);
  }
  rawValues.delete("model");
  omitDescribe = false;
  readModel = modelId === null ? "" : modelId;
  linkModel = "";
  readFill = new Map(Object.entries(fill));
  request();
}

function ask(fields, page = "checkpoint") {
  if (!ready) return Promise.resolve(null);
  askId -= 1;
  const id = askId;
  return new Promise((resolve) => {
    asked.set(id, resolve);
    post({ type: "request", id, page, fields });
  });
}

function onResult(id, reply, part) {
  const resolve = asked.get(id);
  if (resolve) {
    asked.delete(id);
    resolve(reply);
  } else {
    paint(id, reply, part);
    // The worker computes the rest of the answer once its first part is on the page
    // (see worker.js): not beside this painting, and not at all for an older request.
    if (part === "first" && reply.ok && id === latest) post({ type: "painted", id });
  }
}

// An example chip: every control back to the page's example, except the hardware and the
// view, then the example's own fields; nnmem answers for them as for a link.
const KEPT = new Set(["gpu", "gpu_gb", "start_hardware", "units", "plot"]);
function applyExample(button) {
  const changes = JSON.parse(button.dataset.example);
  forgetRead();
  rawValues.clear();
  filled.clear();
  omitDescribe = false;
  for (const [name, value] of Object.entries(defaults)) {
    if (!KEPT.has(name)) setControl(name, value);
  }
  for (const radio of form.querySelectorAll("input[name=intent]")) radio.checked = false;
  for (const [name, value] of Object.entries(changes)) setControl(name, value);
  edited.clear();
  say(`Example: ${button.textContent.trim()}.`);
  request();
}

function applySuggestion(button) {
  let changes;
  try {
    changes = JSON.parse(button.dataset.apply);
  } catch {
    return;
  }
  for (const [name, value] of Object.entries(changes)) {
    rawValues.delete(name);
    setControl(name, String(value));
  }
  say(`Applied: ${button.dataset.label || button.textContent.trim()}.`);
  request();
}

async function copyLink() {
  writeFragment(); // a jump to #results, say, replaced the fragment: the link needs it
  const url = location.href;
  try {
    await navigator.clipboard.writeText(url);
    say("Link copied: it restores every input.");
  } catch {
    const box = document.getElementById("link-box");
    box.value = url;
    box.hidden = false;
    box.select();
    say("Copy the selected link (Ctrl+C or ⌘C).");
  }
}

function downloadJson() {
  if (!lastReply) {
    say("The estimate can be downloaded once the engine has loaded.");
    return;
  }
  downloadWhenComplete = results.dataset.pending === "true";
  if (downloadWhenComplete) {
    say("The download follows as soon as the verdict and the solvers are worked out.");
    return;
  }
  const blob = new Blob([`${JSON.stringify(lastReply.download, null, 2)}\n`], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "nnmem-estimate.json";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  say("Downloaded nnmem-estimate.json: the scenario and the estimate.");
}

// Import JSON: nnmem reads a file Download JSON wrote and answers with every control's
// value, which replace the form's; a file it cannot read gets its message beside the button.
const importError = document.getElementById("import-error");

async function importJson(file) {
  importError.textContent = "";
  let text;
  try {
    text = await file.text();
  } catch {
    importError.textContent = `${file.name} could not be read: choose it again.`;
    return;
  }
  const reply = await ask({ text }, "saved");
  if (!reply) {
    importError.textContent = "A file can be imported once the engine has loaded.";
    return;
  }
  if (!reply.ok) {
    const problems = (reply.errors || []).map((e) => e.message).join(" ");
    importError.textContent = `${file.name}: ${problems || reply.fatal}`;
    return;
  }
  forgetRead();
  rawValues.clear();
  filled.clear();
  edited.clear();
  omitDescribe = false;
  for (const [name, value] of Object.entries(reply.fields)) {
    if (!setControl(name, value)) rawValues.set(name, value);
  }
  say(`Imported ${file.name}: the form holds its scenario.`);
  request();
}

// Printing shows every section, the closed ones too.
let closedForPrint = [];
window.addEventListener("beforeprint", () => {
  closedForPrint = [...document.querySelectorAll("details:not([open])")];
  for (const d of closedForPrint) d.open = true;
});
window.addEventListener("afterprint", () => {
  for (const d of closedForPrint) d.open = false;
});

// Controls beside the result (GPU, units, plot axis) belong to the form through their
// form attribute but sit outside it, so their events are caught on the whole calculator.
const ofForm = (handler) => (event) => {
  if (event.target && event.target.form === form) handler(event);
};
calculator.addEventListener("input", ofForm(onEdit));
calculator.addEventListener(
  "change",
  ofForm((event) => {
    if (event.target.tagName === "SELECT" || event.target.type === "radio" || event.target.type === "checkbox") {
      onEdit(event);
    }
  }),
);
form.addEventListener("submit", (event) => {
  event.preventDefault();
  request();
});
results.addEventListener("click", (event) => {
  const button = event.target.closest("button.apply");
  if (button) applySuggestion(button);
});
// A component's name (in the table or the bar's key) opens its paragraph, folded under
// "What the calculator counts", and moves the focus there, leaving the URL's fragment
// alone: it may hold the pasted config.
calculator.addEventListener("click", (event) => {
  const link = event.target.closest('a[href^="#what-"]');
  const entry = link && document.getElementById(link.getAttribute("href").slice(1));
  if (!entry) return;
  event.preventDefault();
  entry.closest("details").open = true;
  entry.focus();
  entry.scrollIntoView({ block: "nearest" });
});
document.getElementById("start").addEventListener("click", (event) => {
  const chip = event.target.closest("button.chip");
  if (chip) applyExample(chip);
});
document.getElementById("copy-link").addEventListener("click", copyLink);
document.getElementById("download-json").addEventListener("click", downloadJson);
const importFile = document.getElementById("import-file");
document.getElementById("import-json").addEventListener("click", () => importFile.click());
importFile.addEventListener("change", () => {
  const [file] = importFile.files;
  importFile.value = ""; // the same file can be chosen again
  if (file) importJson(file);
});
document.getElementById("print-page").addEventListener("click", () => window.print());
// While the answer (total and verdict) is out of sight, a bar at the bottom of the
// screen shows both and leads there.
if ("IntersectionObserver" in window) {
  const bar = document.getElementById("mini-total");
  new IntersectionObserver(([entry]) => {
    bar.hidden = entry.isIntersecting;
  }).observe(document.querySelector(".total-box"));
  new IntersectionObserver((entries) => {
    chartInView = entries[entries.length - 1].isIntersecting;
    if (chartInView && chartTimer === null) askChart();
  }).observe(chartSection);
}
// On a phone the preset's architecture fields fold, so the result is not pushed screens
// down by thirteen fields most people leave as the preset has them.
if (window.matchMedia("(max-width: 480px)").matches) {
  for (const group of document.querySelectorAll("details.field-group")) group.open = false;
}
// The model reader (reader.js, with hub.js) and Compare (compare.js, with compare.css)
// load on their first use, or at once for a link that names a model or a comparison: a
// first view needs neither. Until one has loaded, stand-ins here catch its events, load
// it and hand the event on; once loaded, its own listeners take them. A script that fails
// to load says so where the feature speaks, and the next use tries again.
let reader = null;
let readerLoading = null;
function loadReader() {
  readerLoading ??= import("./reader.js").then(
    ({ startReader }) => {
      reader = startReader({
        ask,
        mode: () => readForm().mode || "",
        loaded: loadRead,
      });
      return reader;
    },
    (error) => {
      readerLoading = null;
      document.getElementById("reader-error").textContent = "The model reader could not be loaded: check the connection and try again.";
      throw error;
    },
  );
  return readerLoading;
}
const onReader = (target, type, act) =>
  document.getElementById(target).addEventListener(type, (event) => {
    if (!reader) act(event);
  });
onReader("hub-read", "click", () => loadReader().then((r) => r.fromHub()));
onReader("model-id", "keydown", (event) => {
  if (event.key !== "Enter") return;
  event.preventDefault(); // as the reader does: Enter in the id reads it
  loadReader().then((r) => r.fromHub());
});
onReader("model-file", "change", (event) => {
  const files = [...event.target.files];
  if (files.length) loadReader().then((r) => r.fromFiles(files));
});
onReader("drop-zone", "dragover", (event) => {
  event.preventDefault(); // lets the files be dropped
  loadReader();
});
onReader("drop-zone", "drop", (event) => {
  event.preventDefault();
  const files = [...(event.dataTransfer?.files || [])];
  if (files.length) loadReader().then((r) => r.fromFiles(files));
});

let compare = null;
let compareLoading = null;
const compareBox = document.getElementById("compare");
function stylesheet(href) {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  const loaded = new Promise((resolve) => {
    link.onload = link.onerror = resolve; // a missing sheet leaves the table plain
  });
  document.head.append(link);
  return loaded;
}
function loadCompare() {
  compareLoading ??= Promise.all([import("./compare.js"), stylesheet(compareBox.dataset.stylesheet)]).then(
    ([{ startCompare }]) => {
      compare = startCompare({
        ask,
        // The form's fields, or null while a field is wrong: such a scenario is not pinned.
        current: () => (results.dataset.state === "stale" ? null : readForm()),
        units: () => readForm().units || "",
        setLink: setCompareLink,
        announce: say,
      });
      return compare;
    },
    (error) => {
      compareLoading = null;
      document.getElementById("compare-status").textContent = "Compare could not be loaded: check the connection and try again.";
      throw error;
    },
  );
  return compareLoading;
}
// Compare's buttons: "Add to compare" beside the result and the ready comparisons.
const compareClick = (event) => {
  if (compare) return;
  const button = event.target.closest("#compare-add, #compare button[data-ready]");
  if (button) loadCompare().then(() => button.click());
};
document.getElementById("compare-add").addEventListener("click", compareClick);
compareBox.addEventListener("click", compareClick);

readUrl();
if (linkCompare) loadCompare().then((c) => c.awaitLink());
const linked = new URLSearchParams(location.search).get("model_id");
if (linked && linked.trim()) {
  // The reader's offer to read the link's model sits in the full form: open it.
  document.getElementById("adjust").open = true;
  linkModel = linked.trim().slice(0, 200);
  loadReader().then((r) => r.offer(linkModel));
}
post = startEngine({
  onReady() {
    linkTexts.then(() => {
      ready = true;
      request(); // catch up with the link's inputs and anything typed while loading
      if (linkCompare) loadCompare().then((c) => c.fromLink(linkCompare));
    });
  },
  onResult,
  onFail: () => {
    showStale("");
    holdMini("the engine did not load", "error");
  },
});
