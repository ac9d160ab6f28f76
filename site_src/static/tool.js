// Glue for a related tool's page. It owns the DOM: it sends the form's values to the
// worker after each change and paints the HTML nnmem.web.handle answers, with each
// problem next to its field. It computes nothing: the formulas are in nnmem (Python).
// It also makes tables with class "sortable" sortable by their column headings.
import { startEngine } from "./engine.js";
import * as forms from "./form.js";

const DEBOUNCE_MS = 120;

// --- sortable tables: a button in each heading; aria-sort says the current order ---------
function sortBy(table, th) {
  const index = [...th.parentElement.children].indexOf(th);
  const order = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
  for (const other of table.tHead.rows[0].cells) other.setAttribute("aria-sort", "none");
  th.setAttribute("aria-sort", order);
  const numeric = th.dataset.type === "number";
  const key = (row) => row.cells[index].dataset.sort ?? row.cells[index].textContent;
  const body = table.tBodies[0];
  const rows = [...body.rows];
  rows.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    const cmp = numeric ? Number(x) - Number(y) : x.localeCompare(y);
    return order === "ascending" ? cmp : -cmp;
  });
  body.append(...rows);
}

for (const table of document.querySelectorAll("table.sortable")) {
  for (const th of table.tHead.rows[0].cells) {
    const button = th.querySelector("button.sort");
    if (button) button.addEventListener("click", () => sortBy(table, th));
  }
}

// --- the live tool -----------------------------------------------------------------------
const tool = document.getElementById("tool");
if (tool) startTool();

function startTool() {
  const form = document.getElementById("tool-form");
  const results = document.getElementById("tool-results");
  const result = document.getElementById("tool-result");
  const stale = document.getElementById("stale");
  let post = null;
  let ready = false;
  let latest = 0;
  let pending = null;
  const sentAt = new Map(); // request id -> when it was posted, for the timing measure

  // Values from a link that no option of their <select> holds (see form.js).
  const rawValues = new Map();
  const readForm = () => forms.readForm(form, rawValues);
  const showStale = (text) => forms.showStale(stale, text);

  // A shared link holds the values that differ from the page's defaults.
  const defaults = readForm();
  function readUrl() {
    if (forms.readUrl(form, defaults, rawValues).any) {
      showStale("The result below is for the example inputs until the calculator has loaded.");
    }
  }

  // A field with data-when="key=value" shows only while that other field holds the value.
  function applyWhen() {
    const values = readForm();
    for (const box of form.querySelectorAll("[data-when]")) {
      const [key, value] = box.dataset.when.split("=");
      box.hidden = values[key] !== value;
    }
  }

  function paint(id, reply) {
    if (id !== latest) return; // an older answer: a newer request is on its way
    const unplaced = forms.placeErrors(form, reply.errors || []);
    if (reply.ok) {
      result.innerHTML = reply.html.result;
      results.dataset.state = "live";
      showStale("");
      const started = sentAt.get(id);
      sentAt.clear();
      if (started !== undefined) {
        performance.measure("nnmem:tool", { start: started, end: performance.now() });
      }
      return;
    }
    results.dataset.state = "stale";
    if (reply.fatal) {
      showStale(`The calculator hit an internal problem (${reply.fatal}); the result shown is for the last valid inputs.`);
      return;
    }
    const prefix = "The result shown is for the last valid inputs.";
    showStale(unplaced.length ? `${unplaced.join(" ")} ${prefix}` : `Fix the marked field. ${prefix}`);
  }

  function request() {
    if (!ready) return;
    latest += 1;
    const fields = readForm();
    forms.writeUrl(fields, defaults);
    sentAt.set(latest, performance.now());
    post({ type: "request", id: latest, page: tool.dataset.tool, fields });
  }

  function schedule() {
    applyWhen();
    clearTimeout(pending);
    pending = setTimeout(request, DEBOUNCE_MS);
  }

  const edited = (event) => {
    rawValues.delete(event.target.name);
    schedule();
  };
  form.addEventListener("input", edited);
  form.addEventListener("change", edited);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    request();
  });

  readUrl();
  applyWhen();
  post = startEngine({
    onReady() {
      ready = true;
      request(); // catch up with anything typed while loading
    },
    onResult: paint,
  });
}
