// Shared helpers: DOM building (textContent only, never innerHTML with data), JSON fetch, formatting,
// the live event stream and plotly loading.

/** Count of server-sent events handled on this page (read by the bench). */
window.__runwire = window.__runwire || { events: 0 };

/** Minimum pause between two refetches triggered by a burst of live events (ms). */
export const REFETCH_DEBOUNCE_MS = 250;

/**
 * Build an element. attrs: {class, dataset: {...}, on: {event: fn}, text, title, href, ...}; children: nodes or
 * strings (strings become text nodes, so user data is never parsed as HTML).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "text") el.textContent = String(value);
    else if (key === "checked" || key === "value" || key === "disabled" || key === "selected") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Percent-encode a path that may contain "/" segment by segment (file names, log paths). */
export function encodePath(path) {
  return String(path).split("/").map(encodeURIComponent).join("/");
}

/**
 * The run's file an image metric value points at: `aml://artifactId/dcid.{runId}/{file}` (or a bare file name)
 * gives `{file}`; null for anything else (another run's artifact, a non-string).
 */
export function artifactFile(runId, value) {
  if (typeof value !== "string") return null;
  const prefix = `dcid.${runId}/`;
  const at = value.indexOf(prefix);
  return at >= 0 ? value.slice(at + prefix.length) : value.startsWith("aml://") ? null : value || null;
}

export const runUrl = (runId) => `/runs/${encodeURIComponent(runId)}`;
export const experimentUrl = (name) => `/experiments/${encodeURIComponent(name)}`;
export const apiRun = (runId) => `/api/v1/runs/${encodeURIComponent(runId)}`;

/** An error from the JSON API, with its code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET a JSON document from the API; throws ApiError on 4xx/5xx. */
export async function getJSON(url, { signal } = {}) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, signal });
  if (response.status === 401) {
    // the login cookie is missing, expired or revoked: log in again, then come back here
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
  if (!response.ok) {
    let code = String(response.status);
    let message = response.statusText;
    try {
      const body = await response.json();
      code = body.error?.code || code;
      message = body.error?.message || message;
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, code, message);
  }
  return response.json();
}

/** Build a query string from an object; arrays repeat the key; null/undefined/"" are left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) if (v !== undefined && v !== null && v !== "") q.append(key, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export function fmtTime(t) {
  if (t === null || t === undefined) return "—";
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(4) : String(Number(v.toPrecision(6)));
  }
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function fmtAgo(t) {
  if (t === null || t === undefined) return "—";
  const s = Date.now() / 1000 - t;
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return fmtTime(t);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** A status badge (class by status so it is coloured). */
export function statusBadge(status, testid = "status") {
  return h("span", { class: `badge status-${String(status).toLowerCase()}`, dataset: { testid, status } }, status);
}

/** Call fn at most once per `ms`, trailing: a burst of calls runs it once after the burst settles. */
export function debounce(fn, ms = REFETCH_DEBOUNCE_MS) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Run fn at most once per `ms`, leading and trailing (for refreshes during a continuous stream). */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return (...args) => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      fn(...args);
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn(...args);
      }, wait);
    }
  };
}

/**
 * Subscribe to /api/v1/events. handlers: {metric, status, log, tag, file, resync}. `resync` runs on `lagged` and each
 * time the stream says `live` (the subscription is registered: on the first connection and after every reconnect),
 * so whatever changed between the page's fetches and the registration is fetched again. Sets
 * `document.body.dataset.live = "1"` once registered. Returns {close()}.
 */
export function liveEvents(params, handlers) {
  const source = new EventSource(`/api/v1/events${query(params)}`);
  const indicator = document.getElementById("live");
  source.addEventListener("error", () => {
    if (indicator) {
      indicator.textContent = "reconnecting";
      indicator.classList.remove("on");
    }
  });
  for (const kind of ["metric", "status", "log", "tag", "file", "lagged", "live"]) {
    source.addEventListener(kind, (event) => {
      window.__runwire.events += 1;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      if (kind === "live") {
        if (indicator) {
          indicator.textContent = "live";
          indicator.classList.add("on");
        }
        document.body.dataset.live = "1";
        handlers.resync?.(data);
      } else if (kind === "lagged") handlers.resync?.(data);
      else handlers[kind]?.(data);
    });
  }
  const close = () => source.close();
  window.addEventListener("pagehide", close, { once: true });
  return { close };
}

let plotlyPromise = null;

/** Load plotly's bundle (served from the installed package) once, on the pages that chart. */
export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  plotlyPromise ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "/static/vendor/plotly.min.js";
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => reject(new Error("could not load plotly"));
    document.head.append(script);
  });
  return plotlyPromise;
}

/** A plotly layout shared by every chart. */
export function baseLayout(extra = {}) {
  return {
    margin: { l: 56, r: 16, t: 28, b: 40 },
    height: 280,
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 12, color: "#1f2733" },
    xaxis: { gridcolor: "#e6e9ef", zeroline: false },
    yaxis: { gridcolor: "#e6e9ef", zeroline: false },
    showlegend: false,
    ...extra,
  };
}

export const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

/** An error box (text only). */
export function errorBox(message, testid = "error") {
  return h("div", { class: "error-box", dataset: { testid } }, message);
}

/** Mark the page rendered (tests and the bench wait for this). */
export function markReady() {
  document.body.dataset.ready = "1";
}

/** Text for plotly (trace names, hover labels): plotly reads a few HTML-like tags, so escape them as entities. */
export function plotlyText(s) {
  return String(s).replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}
