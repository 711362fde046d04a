// Talking to the Spaceport API (API.md) from the page: JSON calls with the key or run token
// kept in session storage, uploads with progress, and a run's events as Server-Sent Events.

const KEY = "spaceport.credential";

/** The API key or run token entered once in this tab, if any. */
export function credential(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setCredential(value: string | null): void {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

function authHeaders(): Record<string, string> {
  const c = credential();
  return c ? { Authorization: `Bearer ${c}` } : {};
}

/** An error answer of the API: `{"error": {"code", "message", "field"?}}`. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public field?: string,
  ) {
    super(message);
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = await res.json();
    const e = body?.error ?? {};
    return new ApiError(res.status, e.code ?? "http_" + res.status, e.message ?? res.statusText, e.field);
  } catch {
    return new ApiError(res.status, "http_" + res.status, res.statusText || "request failed");
  }
}

/** A JSON call; a 401 or 403 also asks for a key (the `spaceport:unauthorized` event). */
export async function api<T = any>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders() };
  let body: string | undefined;
  if (init.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(init.body);
  }
  const res = await fetch(path, { method: init.method ?? "GET", headers, body });
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 || res.status === 403) window.dispatchEvent(new CustomEvent("spaceport:unauthorized", { detail: err }));
    throw err;
  }
  return res.status === 204 ? (undefined as T) : res.json();
}

export interface Upload {
  slot: string;
  index: number;
  method: string;
  url: string;
  fields?: Record<string, string>;
  headers?: Record<string, string>;
}

/** Sends one file to its presigned upload, reporting progress (fetch cannot report upload progress). */
export function upload(u: Upload, file: File, contentType: string, onProgress: (fraction: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(u.method, u.url);
    let body: Blob | FormData = file;
    if (u.fields && Object.keys(u.fields).length > 0) {
      // A presigned POST: the policy's fields first, then the file.
      const form = new FormData();
      for (const [k, v] of Object.entries(u.fields)) form.append(k, v);
      form.append("file", file);
      body = form;
    } else {
      xhr.setRequestHeader("Content-Type", contentType);
    }
    for (const [k, v] of Object.entries(u.headers ?? {})) {
      if (k.toLowerCase() !== "content-type" && k.toLowerCase() !== "content-length") xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
        return;
      }
      let message = `upload of ${file.name} failed (${xhr.status})`;
      try {
        const e = JSON.parse(xhr.responseText)?.error;
        if (e?.message) message = e.message;
      } catch {
        /* not JSON: keep the status line */
      }
      reject(new ApiError(xhr.status, "upload_failed", message));
    };
    xhr.onerror = () => reject(new ApiError(0, "upload_failed", `upload of ${file.name} could not reach the server`));
    xhr.send(body);
  });
}

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/**
 * Follows a Server-Sent Events stream with the credential in a header (EventSource cannot send
 * one, and keys never go in URLs). Reconnects after a drop with `Last-Event-ID`, so no event is
 * missed or repeated, until `signal` aborts or `onMessage` returns true (done).
 */
export async function followEvents(
  path: string,
  onMessage: (m: SseMessage) => boolean,
  signal: AbortSignal,
): Promise<void> {
  let lastId: string | null = null;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream", ...authHeaders() };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const res = await fetch(path, { headers, signal });
      if (!res.ok || !res.body) throw await errorOf(res);
      delay = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      let msg: SseMessage = { id: null, event: "message", data: "" };
      let hasData = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl: number;
        while ((nl = buf.search(/\r?\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf[nl] === "\r" ? 2 : 1));
          if (line === "") {
            if (hasData) {
              if (msg.id !== null) lastId = msg.id;
              if (onMessage(msg)) {
                reader.cancel().catch(() => {});
                return;
              }
            }
            msg = { id: null, event: "message", data: "" };
            hasData = false;
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") {
            msg.data = hasData ? msg.data + "\n" + val : val;
            hasData = true;
          } else if (field === "event") msg.event = val;
          else if (field === "id") msg.id = val;
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) throw e;
    }
    // The stream ended without the terminal event (a proxy's timeout, a restart): resume.
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}
