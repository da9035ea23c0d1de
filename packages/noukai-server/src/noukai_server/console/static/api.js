// The console's only way to the server: the public HTTP API under /api/v1, with the signed-in key.
// The key lives in sessionStorage: it survives a reload of the tab and is gone when the browser
// session ends; logout removes it at once. It is never written to localStorage, a cookie or a URL.

import { SseParser } from "./sse.js";

const API = "api/v1";
const KEY = "noukai.key";
const PROJECT = "noukai.project";

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  /** The project the console shows: the key's own, or the one chosen for an org-wide key. */
  get project() {
    return session.me?.project || sessionStorage.getItem(PROJECT) || "";
  },
  set project(value) {
    if (value) sessionStorage.setItem(PROJECT, value);
    else sessionStorage.removeItem(PROJECT);
  },
  me: null,
  /** Learn who the key is (GET /keys/me); keep it only if the server accepts it. */
  async signIn(key, project) {
    const me = await request("GET", "keys/me", { key });
    sessionStorage.setItem(KEY, key);
    session.me = me;
    session.project = me.project ? "" : project;
    return me;
  },
  async restore() {
    if (!session.key) return null;
    try {
      session.me = await request("GET", "keys/me");
    } catch (error) {
      if (error.status === 401) session.signOut();
      else throw error;
    }
    return session.me;
  },
  signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(PROJECT);
    session.me = null;
  },
  /** What the key's scope grants: admin > run > read. */
  can(scope) {
    const ranks = { read: 0, run: 1, admin: 2 };
    const held = (session.me?.scope || "").split(/\s+/).map((s) => ranks[s] ?? -1);
    return Math.max(-1, ...held) >= ranks[scope];
  },
};

function url(path, query) {
  const u = new URL(`${API}/${path}`, document.baseURI);
  for (const [name, value] of Object.entries(query || {})) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") u.searchParams.append(name, item);
    }
  }
  return u;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON: keep the status */
  }
  const detail = body?.detail ?? body ?? {};
  const code = detail.code || `HTTP_${response.status}`;
  const message = detail.message || (typeof detail === "string" ? detail : response.statusText);
  return new ApiError(response.status, code, message, detail);
}

/** One API call: JSON in, JSON out; any refusal becomes an ApiError with the server's code. */
export async function request(method, path, { query, body, key, signal, contentType } = {}) {
  const headers = { Accept: "application/json" };
  const token = key ?? session.key;
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(url(path, query), { method, headers, body: payload, signal });
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return response.json();
}

export const api = {
  get: (path, query, signal) => request("GET", path, { query, signal }),
  post: (path, body) => request("POST", path, { body: body ?? {} }),
  put: (path, body) => request("PUT", path, { body }),
  del: (path) => request("DELETE", path),
};

/** Follow a run's events (GET /runs/{id}/events), resuming after the last seq seen when the
 * connection drops, until the stream ends on its own (the run ended) or `signal` aborts.
 * `onEvents` gets batches: the events of one network read, in order. */
export async function followRun(runId, { onEvents, onState, signal, after = 0 }) {
  let last = after;
  let failures = 0;
  while (!signal.aborted) {
    try {
      onState?.("live");
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${session.key}` };
      if (last > 0) headers["Last-Event-ID"] = String(last);
      const response = await fetch(url(`runs/${encodeURIComponent(runId)}/events`), { headers, signal });
      if (!response.ok) throw await failure(response);
      const parser = new SseParser();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const batch = [];
        for (const frame of parser.feed(value)) {
          if (frame.id === null) continue;
          const seq = Number(frame.id);
          if (seq <= last) continue;
          last = seq;
          batch.push(JSON.parse(frame.data));
        }
        if (batch.length) onEvents(batch);
        failures = 0;
      }
      return last; // the server closed the stream: the run has ended (or the stream's lifetime)
    } catch (error) {
      if (signal.aborted) return last;
      if (error instanceof ApiError && error.status < 500 && error.status !== 429) throw error;
      failures += 1;
      onState?.("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** failures)));
    }
  }
  return last;
}
