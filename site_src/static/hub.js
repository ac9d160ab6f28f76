// Reading a model's headers without its weights: from the Hugging Face Hub with HTTP
// range requests, or from a file the user drops, with File.slice. Pure functions: the
// fetch function, the token and the parser are passed in, nothing is stored, and no
// request is made until a caller asks for one. The bytes go to Python
// (nnmem.readers.browser.from_hub / dropped), which does every check and all arithmetic.
//
// Hub layout: https://huggingface.co/<repo>/resolve/<revision>/<file>; a sharded
// checkpoint lists its shards in model.safetensors.index.json. A safetensors file starts
// with an 8-byte little-endian header length N and N bytes of JSON (safetensors
// tensor.rs, which refuses N above 100,000,000).

export const HUB = "https://huggingface.co";
export const MAX_HEADER_BYTES = 100_000_000;
export const INDEX_NAME = "model.safetensors.index.json";
export const SINGLE_NAME = "model.safetensors";
export const TIMEOUT_MS = 20_000;
export const MAX_SHARDS = 1_000;

// An owner/name repository id as the Hub spells them.
const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9._-]{1,96}$/;

/** Check a repository id; returns null when it is fine, else a message. */
export function repoProblem(id) {
  const text = String(id ?? "").trim();
  if (!text) return "Type a model id such as Qwen/Qwen3-8B.";
  if (!REPO_ID.test(text) || text.includes("..") || text.includes("--")) {
    return `"${text.slice(0, 80)}" is not a model id: it looks like owner/name, such as Qwen/Qwen3-8B.`;
  }
  return null;
}

/** The URL of one file of a repository (a shard name comes from the index). */
export function fileUrl(repo, file, revision = "main") {
  const path = file.split("/").map(encodeURIComponent).join("/");
  return `${HUB}/${repo.trim()}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/** A failure, classified so the page can say what to do. */
export class HubError extends Error {
  constructor(kind, message, status = 0) {
    super(message);
    this.name = "HubError";
    this.kind = kind; // gated | missing | rate_limited | offline | timeout | server | bad_reply
    this.status = status;
  }
}

/** Turn an HTTP status into a HubError naming the file and what to do. */
export function classifyStatus(status, file, hasToken = false) {
  if (status === 401 || status === 403) {
    return new HubError(
      "gated",
      hasToken
        ? `The Hub refused ${file} with this token (HTTP ${status}): check that the token can read this repository and that you accepted its license on its page.`
        : `${file} needs an access token (HTTP ${status}): the repository is gated or private. Accept its license on the Hub, then paste a read token; it stays in this page and is never saved or put in the address.`,
      status,
    );
  }
  if (status === 404) {
    return new HubError("missing", `${file} is not in this repository (HTTP 404): check the model id and its spelling.`, status);
  }
  if (status === 429) {
    return new HubError("rate_limited", `The Hub is limiting requests (HTTP 429): wait a minute and try again, or paste a token.`, status);
  }
  if (status >= 500) {
    return new HubError("server", `The Hub could not answer for ${file} (HTTP ${status}): try again later.`, status);
  }
  return new HubError("bad_reply", `The Hub answered ${file} with HTTP ${status}.`, status);
}

/** Turn a thrown fetch error into a HubError. */
export function classifyThrown(error, file, online = true) {
  if (error instanceof HubError) return error;
  if (error?.name === "AbortError" || error?.name === "TimeoutError") {
    return new HubError("timeout", `The Hub did not answer for ${file} within ${TIMEOUT_MS / 1000} seconds: try again, or use a local file.`);
  }
  if (!online) {
    return new HubError("offline", "This browser is offline: reading a model from the Hub needs the network. A dropped local file works offline.");
  }
  return new HubError("offline", `${file} could not be fetched (network error): check the connection, or use a local file.`);
}

// One request with a token header (never a URL parameter) and a timeout.
async function request(url, file, { fetchFn = fetch, token = "", range = null, timeoutMs = TIMEOUT_MS, online = true } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (range) headers.Range = `bytes=${range[0]}-${range[1]}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetchFn(url, { headers, signal: controller.signal, credentials: "omit", cache: "no-store" });
    if (!response.ok) throw classifyStatus(response.status, file, Boolean(token));
    if (range && response.status !== 206) {
      // A server that ignores Range would send the whole file: stop reading it.
      await response.body?.cancel?.();
      throw new HubError("bad_reply", `The Hub sent all of ${file} instead of the header bytes asked for.`, response.status);
    }
    return response;
  } catch (error) {
    throw classifyThrown(error, file, online);
  } finally {
    clearTimeout(timer);
  }
}

/** config.json as text, or null when the repository has none. */
export async function fetchConfig(repo, options = {}) {
  try {
    const response = await request(fileUrl(repo, "config.json"), "config.json", options);
    return await response.text();
  } catch (error) {
    if (error.kind === "missing") return null;
    throw error;
  }
}

/** The safetensors index as text, or null for a single model.safetensors. */
export async function fetchIndex(repo, options = {}) {
  try {
    const response = await request(fileUrl(repo, INDEX_NAME), INDEX_NAME, options);
    return await response.text();
  } catch (error) {
    if (error.kind === "missing") return null;
    throw error;
  }
}

/** Read the little-endian uint64 header length from 8 bytes. */
export function headerLength(bytes, file) {
  if (bytes.byteLength !== 8) {
    throw new HubError("bad_reply", `${file}: expected 8 bytes of header length, got ${bytes.byteLength}.`);
  }
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n < 2n || n > BigInt(MAX_HEADER_BYTES)) {
    throw new HubError("bad_reply", `${file}: the header length ${n} is not that of a safetensors file.`);
  }
  return Number(n);
}

/** The JSON header of one hosted shard: two range requests, 8 bytes then N. */
export async function fetchHeader(repo, file, options = {}) {
  const url = fileUrl(repo, file);
  const first = new Uint8Array(await (await request(url, file, { ...options, range: [0, 7] })).arrayBuffer());
  const n = headerLength(first, file);
  const body = new Uint8Array(await (await request(url, file, { ...options, range: [8, 8 + n - 1] })).arrayBuffer());
  if (body.byteLength !== n) {
    throw new HubError("bad_reply", `${file}: asked for ${n} header bytes, got ${body.byteLength}.`);
  }
  return body;
}

/** The shard names an index lists, in first-mention order. */
export function shardsOf(indexText) {
  let parsed;
  try {
    parsed = JSON.parse(indexText);
  } catch {
    throw new HubError("bad_reply", `${INDEX_NAME} is not valid JSON.`);
  }
  const map = parsed?.weight_map;
  if (!map || typeof map !== "object") throw new HubError("bad_reply", `${INDEX_NAME} has no weight_map.`);
  const shards = [...new Set(Object.values(map))];
  if (shards.length > MAX_SHARDS || shards.some((s) => typeof s !== "string" || !s.endsWith(".safetensors") || s.includes("/") || s.startsWith("."))) {
    throw new HubError("bad_reply", `${INDEX_NAME} lists shard names that are not plain .safetensors files.`);
  }
  return shards;
}

/**
 * Everything the Python side needs for a repository: {config, index, headers}, where
 * headers maps each shard to its JSON header bytes. onProgress(done, total) after each
 * shard. Requests: config.json, the index, then two range requests per shard, a few at
 * a time.
 */
export async function fetchModel(repo, { onProgress = () => {}, concurrency = 4, ...options } = {}) {
  const problem = repoProblem(repo);
  if (problem) throw new HubError("bad_reply", problem);
  const id = repo.trim();
  const config = await fetchConfig(id, options);
  const index = await fetchIndex(id, options);
  const shards = index === null ? [SINGLE_NAME] : shardsOf(index);
  const headers = {};
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < shards.length) {
      const file = shards[next++];
      headers[file] = await fetchHeader(id, file, options);
      onProgress(++done, shards.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, shards.length) }, worker));
  return { config, index, headers };
}

// --- local files: File.slice, nothing uploaded -------------------------------------------

/** Bytes [start, end) of a File or Blob. */
export async function sliceBytes(file, start, end) {
  return new Uint8Array(await file.slice(start, Math.min(end, file.size)).arrayBuffer());
}

/**
 * Read a dropped file's header with growing slices. parse(bytes, size) is the Python
 * nnmem.readers.browser.dropped (through the worker): it answers {need: n} while the
 * header runs past the slice. The first slice is 1 MiB, each next one at least double,
 * never more than maxBytes; the tensor data is never read.
 */
export async function readDropped(file, parse, { first = 1 << 20, maxBytes = 1 << 30 } = {}) {
  let length = Math.min(first, file.size);
  for (;;) {
    const reply = await parse(await sliceBytes(file, 0, length), file.size);
    if (!reply || reply.need === undefined) return reply;
    const want = Math.max(reply.need, 2 * length);
    if (reply.need > maxBytes || length >= file.size) {
      return { problems: [{ field: "file", message: `${file.name}: its header is larger than ${maxBytes} bytes.` }] };
    }
    length = Math.min(want, maxBytes, file.size);
  }
}
