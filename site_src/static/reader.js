// The calculator's model reader: a Hugging Face model id read on an explicit click, or
// local files read with File.slice. JavaScript only gets bytes (hub.js); Python parses
// and checks them behind nnmem.web.handle (page "checkpoint"), and its reply fills the
// controls a pasted config.json fills.
//
// Requests: none until the user clicks "Read from the Hub"; then, for repository
// org/name, config.json, model.safetensors.index.json, and two range requests per shard
// (its first 8 bytes, then its JSON header). A token, when given, goes only in those
// requests' Authorization header: it is never stored, sent to Python or put in the URL.
import * as hub from "./hub.js";

const MAX_JSON_FILE = 50 * 1024 * 1024; // a config.json or an index is a few hundred kB

// Bytes as base64, for the JSON request to the worker.
export function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

async function jsonFile(file) {
  if (!file) return null;
  if (file.size > MAX_JSON_FILE) throw new Error(`${file.name} is larger than a config or an index can be.`);
  return file.text();
}

// The 8-byte length, then the JSON header of a local .safetensors file: the same bytes
// the Hub's two range requests give.
async function localHeader(file) {
  const n = hub.headerLength(await hub.sliceBytes(file, 0, 8), file.name);
  const body = await hub.sliceBytes(file, 8, 8 + n);
  if (body.byteLength !== n) throw new Error(`${file.name} ends inside its header: it is not a whole safetensors file.`);
  return body;
}

// ask(fields) -> Promise of nnmem's reply, or null when the engine is not ready;
// mode() the calculator's mode; loaded(fill, modelId) puts the reply into the form.
export function startReader({ ask, mode, loaded }) {
  const idInput = document.getElementById("model-id");
  const button = document.getElementById("hub-read");
  const token = document.getElementById("hub-token");
  const fileInput = document.getElementById("model-file");
  const zone = document.getElementById("drop-zone");
  const status = document.getElementById("reader-status");
  const error = document.getElementById("reader-error");
  const summary = document.getElementById("reader-summary");
  let busy = false;

  const say = (text) => {
    status.textContent = text;
  };
  const fail = (text) => {
    say("");
    error.textContent = text;
  };

  async function send(fields) {
    const reply = await ask({ ...fields, mode: mode() });
    if (reply === null) throw new Error("The calculator engine is still loading: try again in a moment.");
    return reply;
  }

  function show(reply, modelId, what) {
    if (!reply || reply.problems) {
      fail((reply?.problems || []).map((p) => p.message).join(" ") || "Nothing was read.");
      return;
    }
    if (!reply.ok) {
      fail((reply.errors || []).map((e) => e.message).join(" ") || reply.fatal || "Nothing was read.");
      return;
    }
    summary.innerHTML = reply.html.summary || "";
    say(`Read ${what}: the model's fields below now hold it.`);
    loaded(reply.fill, modelId);
  }

  async function run(task) {
    if (busy) return;
    busy = true;
    button.disabled = true;
    error.textContent = "";
    try {
      await task();
    } catch (thrown) {
      fail(thrown instanceof hub.HubError ? thrown.message : String(thrown?.message || thrown));
    } finally {
      busy = false;
      button.disabled = false;
    }
  }

  const fromHub = () =>
    run(async () => {
      const id = idInput.value.trim();
      const problem = hub.repoProblem(id);
      if (problem) throw new Error(problem);
      say(`Asking the Hub for ${id}…`);
      const got = await hub.fetchModel(id, {
        token: token.value.trim(),
        online: navigator.onLine,
        onProgress: (done, total) => say(`Read ${done} of ${total} file headers of ${id}…`),
      });
      const headers = {};
      for (const [name, bytes] of Object.entries(got.headers)) headers[name] = toBase64(bytes);
      show(await send({ source: "hub", config: got.config, index: got.index, headers }), id, id);
    });

  const fromFiles = (files) =>
    run(async () => {
      const list = [...files];
      const ggufs = list.filter((f) => f.name.endsWith(".gguf"));
      const shards = list.filter((f) => f.name.endsWith(".safetensors"));
      const index = list.find((f) => f.name.endsWith(".index.json"));
      const config = list.find((f) => f.name.endsWith(".json") && f !== index);
      if (ggufs.length) {
        if (ggufs.length > 1 || shards.length) throw new Error("Drop one .gguf file at a time, on its own.");
        const file = ggufs[0];
        say(`Reading the header of ${file.name}…`);
        const reply = await hub.readDropped(file, (bytes, size) =>
          send({ source: "gguf", name: file.name, size, data: toBase64(bytes) }),
        );
        show(reply, null, file.name);
      } else if (shards.length) {
        say(`Reading the headers of ${shards.length} file${shards.length > 1 ? "s" : ""}…`);
        const headers = {};
        for (const file of shards) headers[file.name] = toBase64(await localHeader(file));
        const fields = { source: "files", config: await jsonFile(config), index: await jsonFile(index), headers };
        show(await send(fields), null, shards.length > 1 ? `${shards.length} files` : shards[0].name);
      } else if (index) {
        throw new Error(`${index.name} lists the shards but holds no shapes or dtypes: drop it together with its .safetensors files (only their headers are read).`);
      } else {
        throw new Error("Drop a .gguf file or .safetensors files (config.json and the index may go with them).");
      }
    });

  button.addEventListener("click", fromHub);
  idInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault(); // Enter in the id is a click on its button, not a form submit
      fromHub();
    }
  });
  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) fromFiles(fileInput.files);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer?.files?.length) fromFiles(event.dataTransfer.files);
  });

  return {
    // The reader's two actions, for an event caught before it had loaded (calculator.js).
    fromHub,
    fromFiles,
    // A link names a model id: show it, fetch nothing.
    offer(id) {
      idInput.value = id;
      say(`This link names ${id}: click "Read from the Hub" to read it. Nothing is fetched until you do.`);
    },
    // The model's fields were edited: the summary no longer describes them.
    forget() {
      summary.textContent = "";
      say("");
    },
    modelId: () => idInput.value.trim(),
  };
}
