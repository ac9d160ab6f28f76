// What the calculator (calculator.js) and the tool pages (tool.js) share about a form:
// reading its values, setting a control, the URL that holds what differs from the page's
// defaults, the stale banner, and each problem placed next to the field its loc names.
// Nothing here computes or validates: nnmem.web.handle does both, in Python.

// The form's controls, those associated through a form attribute included.
export function controls(form) {
  return [...form.elements].filter((el) => el.name && !el.disabled);
}

// Every control's value as a string; `rawValues` (values from a link that no option of
// their <select> holds) are sent as typed, so nnmem names the problem next to the field.
export function readForm(form, rawValues) {
  const fields = {};
  for (const el of controls(form)) {
    if (el.type === "radio") {
      // A group with none checked (the start panel's intent, say) sends "".
      if (el.checked) fields[el.name] = el.value;
      else if (!(el.name in fields)) fields[el.name] = "";
    } else if (el.type === "checkbox") {
      fields[el.name] = el.checked ? "true" : "false";
    } else {
      fields[el.name] = el.value;
    }
  }
  for (const [name, value] of rawValues) fields[name] = value;
  return fields;
}

// Put `value` into the control `name`; false when no control or option takes it.
export function setControl(form, name, value) {
  const els = controls(form).filter((el) => el.name === name);
  if (!els.length) return false;
  const el = els[0];
  if (el.type === "radio") {
    const match = els.find((r) => r.value === value);
    if (!match) return false;
    match.checked = true;
  } else if (el.type === "checkbox") {
    const word = String(value).toLowerCase();
    if (!["true", "false", "1", "0", "yes", "no", "on", "off"].includes(word)) return false;
    el.checked = ["true", "1", "yes", "on"].includes(word);
  } else if (el.tagName === "SELECT") {
    if (![...el.options].some((o) => o.value === value)) return false;
    el.value = value;
  } else {
    el.value = value;
  }
  return true;
}

// A shared link: put each parameter the page knows into its control. Text goes in as
// text (never as HTML); a value no option holds is kept in `rawValues`. Returns the
// link's parameters and whether any was taken.
export function readUrl(form, defaults, rawValues) {
  const params = new URLSearchParams(location.search);
  let any = false;
  for (const [name, value] of params) {
    if (!(name in defaults)) continue;
    any = true;
    if (!setControl(form, name, value)) rawValues.set(name, value);
  }
  return { params, any };
}

// The URL holds the fields that differ from the page's defaults, except those `skip`
// says to leave out (fields that do not apply, values nnmem filled in), and `extra`.
export function writeUrl(fields, defaults, skip = () => false, extra = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(extra)) params.set(name, value);
  for (const [name, value] of Object.entries(fields)) {
    if (value !== defaults[name] && !skip(name, value)) params.set(name, value);
  }
  const query = params.toString();
  const url = `${location.pathname}${query ? `?${query}` : ""}${location.hash}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) {
    history.replaceState(null, "", url);
  }
}

// The banner that says the result shown is not for the inputs as they are.
export function showStale(banner, text) {
  if (banner.textContent !== text) banner.textContent = text;
  if (banner.hidden !== !text) banner.hidden = !text;
}

// Each problem next to its field (`[data-field]` with an `.error` slot, in view), every
// other field cleared. Returns the messages no field in view could take.
export function placeErrors(root, errors) {
  const byField = new Map();
  for (const e of errors) {
    byField.set(e.field, byField.has(e.field) ? `${byField.get(e.field)} ${e.message}` : e.message);
  }
  for (const field of root.querySelectorAll("[data-field]")) {
    const slot = field.querySelector(".error");
    const message = (slot && !field.hidden && byField.get(field.dataset.field)) || "";
    // Written only where it changes: most answers change no field's problem.
    if (slot && slot.textContent !== message) {
      slot.textContent = message;
      // A new problem in the field being typed in is shown, not left under the answer's
      // bar at the bottom of the screen (style.css's scroll-padding-bottom keeps it above).
      if (message && field.contains(document.activeElement)) slot.scrollIntoView({ block: "nearest" });
    }
    if (field.classList.contains("invalid") !== Boolean(message)) field.classList.toggle("invalid", Boolean(message));
    for (const control of field.querySelectorAll("input, select, textarea")) {
      if (message) {
        if (control.getAttribute("aria-invalid") !== "true") control.setAttribute("aria-invalid", "true");
      } else if (control.hasAttribute("aria-invalid")) control.removeAttribute("aria-invalid");
    }
    if (message) byField.delete(field.dataset.field);
  }
  return [...byField.values()];
}

// Text as deflate-raw bytes in base64url, for a URL (and back): the browser's own
// CompressionStream, no library.
export async function packText(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export async function unpackText(packed) {
  const binary = atob(packed.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Response(stream).text();
}
