// Page `/runs/{run_id}`: header (live status, times, target, tags, properties, status history, error), parent and
// child runs, metrics drawn per RUN_API §16 (line, xy with a table beside it, value in the metrics table, image
// gallery; live points; zoom refetches the series at the new resolution), files, the log with a live tail, snapshot.
import { tagChips } from "./dashboard.js";
import {
  PLOT_CONFIG,
  apiRun,
  artifactFile,
  baseLayout,
  debounce,
  encodePath,
  errorBox,
  experimentUrl,
  fill,
  fmtBytes,
  fmtDuration,
  fmtTime,
  fmtValue,
  getJSON,
  h,
  liveEvents,
  loadPlotly,
  markReady,
  plotlyText,
  query,
  runUrl,
  statusBadge,
} from "./util.js";

/** Rows shown in the table view beside a two-variable chart (and for other tables). */
export const TABLE_VIEW_ROWS = 200;
/** Log lines fetched at first and kept on the page (older lines are dropped from the top). */
export const LOG_TAIL_LINES = 5000;
/** A live chart refetches its downsampled series once it holds this many times more points than its pixel width. */
export const LIVE_REDOWNSAMPLE_FACTOR = 4;
/** How often an active run's duration is redrawn (ms). */
export const DURATION_TICK_MS = 1000;
/** Charts drawn as soon as the run page opens; the others are drawn when scrolled near. */
export const EAGER_CHARTS = 12;

const ACTIVE = new Set(["NotStarted", "Queued", "Preparing", "Starting", "Running", "Finalizing", "CancelRequested"]);

export async function renderRun(main, runId) {
  document.title = `${runId} · runwire studio`;
  const base = apiRun(runId);
  let detail;
  try {
    detail = await getJSON(base);
  } catch (err) {
    main.replaceChildren(h("h1", {}, "Run"), errorBox(err.status === 404 ? `No run with id “${runId}”.` : err.message, "page-error"));
    markReady();
    return;
  }

  const header = h("section", { class: "card", dataset: { testid: "run-header" } });
  const family = h("section", { class: "card", dataset: { testid: "run-family" } });
  const valuesTable = h("tbody", { dataset: { testid: "metrics-table" } });
  const charts = h("div", { class: "charts", dataset: { testid: "metric-charts" } });
  const gallery = h("div", { class: "gallery", dataset: { testid: "image-gallery" } });
  const filesBody = h("tbody", { dataset: { testid: "files-body" } });
  const logSelect = h("select", { dataset: { testid: "log-select" } });
  const logBox = h("pre", { class: "log", dataset: { testid: "log" } });
  main.replaceChildren(
    header,
    family,
    h("section", { class: "card" }, h("h2", {}, "Metrics"), charts, h("h3", {}, "Tracked values"), h("table", { class: "grid compact" }, h("thead", {}, h("tr", {}, h("th", {}, "Metric"), h("th", { class: "num" }, "Value"), h("th", {}, "Description"))), valuesTable)),
    h("section", { class: "card" }, h("h2", {}, "Images"), gallery),
    h(
      "div",
      { class: "two-col" },
      h("section", { class: "card" }, h("h2", {}, "Files"), h("table", { class: "grid compact" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", { class: "num" }, "Size"), h("th", {}, "Created"))), filesBody)),
      h("section", { class: "card" }, h("h2", {}, "Log ", logSelect), logBox),
    ),
  );

  // ----- header -----
  function renderHeader() {
    const { run, status_history: history } = detail;
    document.title = `${run.display_name || run.run_id} · runwire studio`;
    const kv = (label, value, testid) => [h("dt", {}, label), h("dd", { dataset: testid ? { testid } : {} }, value)];
    fill(
      header,
      h(
        "div",
        { class: "crumbs" },
        h("a", { href: experimentUrl(run.experiment_name), dataset: { testid: "experiment-link" } }, run.experiment_name),
        " / ",
        h("span", {}, run.run_id),
      ),
      h("h1", {}, h("span", { dataset: { testid: "run-title" } }, run.display_name || run.run_id), " ", statusBadge(run.status, "run-status")),
      run.description ? h("p", { dataset: { testid: "run-description" } }, run.description) : null,
      run.error ? h("div", { class: "error-box", dataset: { testid: "run-error" } }, h("strong", {}, run.error.code || "Error"), ": ", run.error.message || "") : null,
      (run.warnings || []).map((w) => h("div", { class: "warn-box", dataset: { testid: "run-warning" } }, w)),
      h(
        "dl",
        { class: "kv" },
        kv("Run id", run.run_id, "run-id"),
        kv("Number", run.number ?? "—"),
        kv("Type", run.type || "—"),
        kv("Target", run.target || "local", "run-target"),
        kv("Created", fmtTime(run.created_time)),
        kv("Started", fmtTime(run.start_time), "run-start"),
        kv("Ended", fmtTime(run.end_time), "run-end"),
        kv("Duration", fmtDuration(run.duration ?? (run.start_time && ACTIVE.has(run.status) ? Date.now() / 1000 - run.start_time : null)), "run-duration"),
        kv("Tags", tagChips(run.tags), "run-tags"),
        kv("Properties", Object.keys(run.properties || {}).length ? propList(run.properties) : "—", "run-properties"),
        kv("Snapshot", run.snapshot_id ? h("a", { href: `${base}/snapshot`, download: "", dataset: { testid: "snapshot-link" } }, "download snapshot (zip)") : "—"),
      ),
      h(
        "details",
        { class: "history" },
        h("summary", {}, `Status history (${history.length})`),
        h(
          "ol",
          { dataset: { testid: "status-history" } },
          history.map((s) => h("li", { dataset: { testid: "status-history-item" } }, statusBadge(s.status, "history-status"), ` ${fmtTime(s.time)}`)),
        ),
      ),
    );
  }

  function propList(props) {
    return h(
      "ul",
      { class: "props" },
      Object.entries(props).map(([k, v]) => h("li", {}, h("span", { class: "muted" }, `${k}: `), fmtValue(v))),
    );
  }

  function refRow(ref, testid) {
    return h(
      "li",
      { dataset: { testid, runId: ref.run_id } },
      h("a", { href: runUrl(ref.run_id) }, ref.display_name || ref.run_id),
      " ",
      statusBadge(ref.status, `${testid}-status`),
      h("span", { class: "muted small" }, ` ${fmtTime(ref.start_time)}`),
    );
  }

  function renderFamily() {
    const { parent, children } = detail;
    family.hidden = !parent && children.length === 0;
    fill(
      family,
      parent ? [h("h2", {}, "Parent run"), h("ul", { class: "refs" }, refRow(parent, "parent-run"))] : null,
      children.length ? [h("h2", {}, `Child runs (${children.length})`), h("ul", { class: "refs" }, children.map((c) => refRow(c, "child-run")))] : null,
    );
  }

  // ----- metrics -----
  const charted = new Map(); // metric name -> chart state
  let metricInfos = [];

  async function loadMetrics() {
    const { metrics } = await getJSON(`${base}/metrics`);
    metricInfos = metrics;
    const values = metrics.filter((m) => m.chart === "value");
    // strings and bools have no numeric last: read the last row
    await Promise.all(
      values
        .filter((m) => (m.last === null || m.last === undefined) && m.count > 0)
        .map(async (m) => {
          const r = await getJSON(`${base}/metrics/${encodeURIComponent(m.name)}/rows${query({ offset: m.count - 1, limit: 1 })}`);
          const rowValues = r.rows.at(-1) || [];
          m.last = rowValues.at(-1) ?? null;
        }),
    );
    fill(
      valuesTable,
      values.map((m) =>
        h(
          "tr",
          { dataset: { testid: "metric-value-row", metric: m.name } },
          h("td", { dataset: { testid: "metric-name" } }, m.name),
          h("td", { class: "num", dataset: { testid: "metric-value" } }, fmtValue(m.last)),
          h("td", { class: "muted" }, m.description || ""),
        ),
      ),
    );
    if (values.length === 0) valuesTable.append(h("tr", {}, h("td", { colspan: "3", class: "muted" }, "No single values.")));
    const drawable = metrics.filter((m) => m.chart === "line" || m.chart === "xy" || m.chart === "table");
    const drawing = [];
    for (const m of drawable) {
      const state = charted.get(m.name);
      if (!state) {
        const fresh = addChart(m);
        if (eagerLeft > 0) {
          eagerLeft -= 1;
          drawing.push(startChart(fresh));
        } else observer.observe(fresh.card);
      } else if (m.count !== state.info.count) {
        // points arrived that no live event drew (before the stream was registered, or after a gap)
        state.info.count = m.count;
        if (m.chart !== "table") debouncedRedraw(state);
        if (m.chart !== "line") rowsLater(state);
      }
    }
    await Promise.all(drawing);
    if (drawable.length === 0 && charted.size === 0) fill(charts, h("p", { class: "muted", dataset: { testid: "no-charts" } }, "No charted metrics."));
    else charts.querySelector("[data-testid=no-charts]")?.remove();
    await loadImages(metrics.filter((m) => m.chart === "image"));
  }

  // the first EAGER_CHARTS charts draw at once; the others when scrolled near (a run may have hundreds)
  let eagerLeft = EAGER_CHARTS;
  const cardState = new WeakMap();
  const observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        startChart(cardState.get(entry.target)).catch(() => {});
      }
    },
    { rootMargin: "600px" },
  );

  function addChart(info) {
    const plot = h("div", { class: "chart", dataset: { testid: "metric-chart", metric: info.name, chart: info.chart } });
    const tableBox = h("div", { class: "table-view", dataset: { testid: "metric-table-view", metric: info.name } });
    const note = h("span", { class: "muted small", dataset: { testid: "chart-note" } }, `${(info.count || 0).toLocaleString()} points`);
    const card = h(
      "div",
      { class: `metric-card ${info.chart === "line" ? "" : "wide"}` },
      h("h3", {}, h("span", { dataset: { testid: "chart-title" } }, info.name), " ", note),
      info.description ? h("p", { class: "muted small" }, info.description) : null,
      h("div", { class: info.chart === "line" ? "" : "side-by-side" }, info.chart === "table" ? null : plot, info.chart === "line" ? null : tableBox),
    );
    const state = { info, plot, tableBox, note, card, zoom: null, points: 0, seq: 0, started: null, drawn: false };
    charted.set(info.name, state);
    cardState.set(card, state);
    charts.append(card);
    return state;
  }

  function startChart(state) {
    if (!state.started) {
      const jobs = [];
      if (state.info.chart !== "table") jobs.push(drawSeries(state));
      if (state.info.chart !== "line") jobs.push(loadRows(state));
      state.started = Promise.all(jobs);
    }
    return state.started;
  }

  async function drawSeries(state, zoom = null) {
    const Plotly = await loadPlotly();
    const seq = ++state.seq;
    const width = Math.max(100, Math.round(state.plot.clientWidth || 600));
    const s = await getJSON(`${base}/metrics/${encodeURIComponent(state.info.name)}/series${query({ width, x_min: zoom?.[0], x_max: zoom?.[1] })}`);
    if (seq !== state.seq) return;
    state.zoom = zoom;
    state.points = s.x.length;
    state.width = width;
    state.plot.dataset.points = String(s.x.length);
    state.plot.dataset.count = String(s.count);
    state.plot.dataset.downsampled = s.downsampled ? "1" : "0";
    state.plot.dataset.requestWidth = String(width);
    state.note.textContent = `${s.count.toLocaleString()} point${s.count === 1 ? "" : "s"}${s.downsampled ? `, ${s.x.length.toLocaleString()} drawn` : ""}`;
    const layout = baseLayout({
      xaxis: { ...baseLayout().xaxis, title: { text: plotlyText(s.x_label || "") }, ...(zoom ? { range: zoom, autorange: false } : { autorange: true }) },
      yaxis: { ...baseLayout().yaxis, autorange: true, title: { text: state.info.chart === "xy" ? plotlyText(s.y_label || "") : "" } },
      uirevision: state.info.name,
    });
    const trace = { x: s.x, y: s.y, type: "scatter", mode: s.count === 1 ? "markers" : "lines", line: { width: 1.5 }, hovertemplate: "%{x}: %{y}<extra></extra>" };
    await Plotly.react(state.plot, [trace], layout, PLOT_CONFIG);
    state.xLabel = s.x_label;
    state.plot.dataset.xLabel = s.x_label;
    state.plot.dataset.lastUpdate = String(Date.now());
    state.drawn = true;
    if (!state.relayoutBound) {
      state.relayoutBound = true;
      state.plot.on("plotly_relayout", (ev) => {
        if (ev["xaxis.autorange"]) drawSeries(state, null).catch(() => {});
        else if (ev["xaxis.range[0]"] !== undefined) drawSeries(state, [ev["xaxis.range[0]"], ev["xaxis.range[1]"]]).catch(() => {});
        else if (Array.isArray(ev["xaxis.range"])) drawSeries(state, ev["xaxis.range"]).catch(() => {});
      });
    }
  }

  async function loadRows(state) {
    const total = state.info.count || 0;
    const offset = Math.max(0, total - TABLE_VIEW_ROWS);
    const r = await getJSON(`${base}/metrics/${encodeURIComponent(state.info.name)}/rows${query({ offset, limit: TABLE_VIEW_ROWS })}`);
    fill(
      state.tableBox,
      r.total > r.rows.length ? h("div", { class: "muted small" }, `last ${r.rows.length} of ${r.total} rows`) : null,
      h(
        "table",
        { class: "grid compact" },
        h("thead", {}, h("tr", {}, r.columns.map((c) => h("th", { class: "num" }, c)))),
        h("tbody", {}, r.rows.map((row) => h("tr", { dataset: { testid: "metric-row" } }, row.map((v) => h("td", { class: "num" }, fmtValue(v)))))),
      ),
    );
  }

  const reloadMetrics = debounce(() => loadMetrics().catch(() => {}), 300);
  const reloadRows = new Map();

  function onMetric(ev) {
    const state = charted.get(ev.name);
    if (!state) {
      reloadMetrics();
      return;
    }
    if (!state.drawn && state.info.chart !== "table") {
      // not drawn yet: a draw in flight may have missed this point, so fetch again; a lazy chart fetches when shown
      state.info.count = ev.first_row + ev.count;
      state.note.textContent = `${state.info.count.toLocaleString()} points`;
      if (state.started) debouncedRedraw(state);
      return;
    }
    if (state.info.chart === "line" && ev.x && ev.y) {
      if (state.zoom) return; // a zoomed chart keeps its range; autoscale refetches everything
      if (state.points + ev.y.length > LIVE_REDOWNSAMPLE_FACTOR * (state.width || 600)) {
        debouncedRedraw(state);
        return;
      }
      window.Plotly.extendTraces(state.plot, { x: [ev.x], y: [ev.y] }, [0]);
      state.points += ev.y.length;
      state.info.count = (state.info.count || 0) + ev.y.length;
      state.note.textContent = `${state.info.count.toLocaleString()} points`;
      state.plot.dataset.lastUpdate = String(Date.now());
    } else if (state.info.chart === "xy" && ev.columns) {
      const cols = Object.keys(ev.columns);
      const xs = ev.columns[cols[0]] || [];
      const ys = ev.columns[cols[1]] || [];
      if (xs.length && window.Plotly && !state.zoom) {
        window.Plotly.extendTraces(state.plot, { x: [xs], y: [ys] }, [0]);
        state.plot.dataset.lastUpdate = String(Date.now());
      }
      state.info.count = (state.info.count || 0) + xs.length;
      state.note.textContent = `${state.info.count.toLocaleString()} points`;
      rowsLater(state);
    } else {
      state.info.count = ev.first_row + ev.count;
      rowsLater(state);
    }
  }

  const redraws = new Map();
  function debouncedRedraw(state) {
    if (!redraws.has(state.info.name)) redraws.set(state.info.name, debounce(() => drawSeries(state, state.zoom).catch(() => {}), 500));
    redraws.get(state.info.name)();
  }
  function rowsLater(state) {
    if (!reloadRows.has(state.info.name)) reloadRows.set(state.info.name, debounce(() => loadRows(state).catch(() => {}), 300));
    reloadRows.get(state.info.name)();
  }

  // ----- images -----
  async function loadImages(imageMetrics) {
    const items = [];
    for (const m of imageMetrics) {
      const r = await getJSON(`${base}/metrics/${encodeURIComponent(m.name)}/rows${query({ offset: 0, limit: TABLE_VIEW_ROWS })}`);
      for (const row of r.rows) {
        for (const v of row) {
          const file = artifactFile(runId, v);
          if (file) items.push({ metric: m.name, file });
        }
      }
    }
    fill(
      gallery,
      items.map(({ metric, file }) =>
        h(
          "figure",
          { dataset: { testid: "image", metric, file } },
          h("a", { href: `${base}/files/${encodePath(file)}` }, h("img", { src: `${base}/files/${encodePath(file)}?inline=1`, alt: `${metric}: ${file}`, loading: "lazy" })),
          h("figcaption", {}, h("strong", {}, metric), " ", h("span", { class: "muted small" }, file)),
        ),
      ),
    );
    gallery.parentElement.hidden = items.length === 0;
  }

  // ----- files -----
  async function loadFiles() {
    const { files } = await getJSON(`${base}/files`);
    fill(
      filesBody,
      files.map((f) =>
        h(
          "tr",
          { dataset: { testid: "file-row", name: f.name } },
          h("td", {}, h("a", { href: `${base}/files/${encodePath(f.name)}`, download: "", dataset: { testid: "file-link" } }, f.name)),
          h("td", { class: "num" }, fmtBytes(f.size)),
          h("td", {}, fmtTime(f.created_time)),
        ),
      ),
    );
    if (files.length === 0) filesBody.append(h("tr", {}, h("td", { colspan: "3", class: "muted" }, "No files.")));
  }
  const reloadFiles = debounce(() => loadFiles().catch(() => {}), 300);

  // ----- log -----
  const log = { path: null, next: 0, lines: 0 };
  function renderLogChoices() {
    const paths = detail.run.log_files || [];
    const current = [...logSelect.options].map((o) => o.value).join("\n");
    if (current !== paths.join("\n")) fill(logSelect, paths.map((p) => h("option", { value: p }, p)));
    if (!log.path && paths.length) log.path = paths[0];
    if (log.path) logSelect.value = log.path;
    logSelect.hidden = paths.length === 0;
  }
  async function loadLog() {
    if (!log.path) {
      fill(logBox, h("span", { class: "muted" }, "No log."));
      return;
    }
    const url = `${base}/logs/${encodePath(log.path)}`;
    let r = await getJSON(`${url}${query({ format: "json", from_line: 0, max_lines: LOG_TAIL_LINES })}`);
    if (r.total > r.first_line + r.lines.length) {
      // a long log: show its tail
      r = await getJSON(`${url}${query({ format: "json", from_line: Math.max(0, r.total - LOG_TAIL_LINES), max_lines: LOG_TAIL_LINES })}`);
    }
    logBox.replaceChildren();
    log.lines = 0;
    log.next = r.first_line;
    appendLog(r.lines);
    log.next = r.first_line + r.lines.length;
  }
  function appendLog(lines) {
    const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
    const frag = document.createDocumentFragment();
    for (const line of lines) frag.append(h("div", { class: "log-line", dataset: { testid: "log-line" } }, line));
    logBox.append(frag);
    log.lines += lines.length;
    while (log.lines > LOG_TAIL_LINES && logBox.firstChild) {
      logBox.firstChild.remove();
      log.lines--;
    }
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
    logBox.dataset.lastUpdate = String(Date.now());
  }
  const reloadLog = debounce(() => loadLog().catch(() => {}), 200);
  function onLog(ev) {
    if (ev.path !== log.path) {
      if (!(detail.run.log_files || []).includes(ev.path)) {
        detail.run.log_files = [...(detail.run.log_files || []), ev.path];
        renderLogChoices();
        if (log.path === ev.path) reloadLog();
      }
      return;
    }
    if (ev.first_line === log.next) {
      logBox.querySelector(".muted")?.remove();
      appendLog(ev.lines);
      log.next += ev.lines.length;
    } else if (ev.first_line + ev.lines.length > log.next) {
      reloadLog();
    }
  }
  logSelect.addEventListener("change", () => {
    log.path = logSelect.value;
    loadLog().catch(() => {});
  });

  // ----- live -----
  const reloadDetail = debounce(async () => {
    try {
      detail = await getJSON(base);
      renderHeader();
      renderFamily();
      renderLogChoices();
    } catch {
      /* keep what is shown */
    }
  }, 200);

  function onStatus(ev) {
    if (ev.run_id === runId) {
      Object.assign(detail.run, { status: ev.status, start_time: ev.start_time ?? detail.run.start_time, end_time: ev.end_time ?? detail.run.end_time, error: ev.error ?? detail.run.error });
      renderHeader();
    }
    reloadDetail();
  }

  // an active run's duration ticks
  setInterval(() => {
    const run = detail.run;
    if (!ACTIVE.has(run.status) || !run.start_time) return;
    const cell = header.querySelector("[data-testid=run-duration]");
    if (cell) cell.textContent = fmtDuration(Date.now() / 1000 - run.start_time);
  }, DURATION_TICK_MS);
  renderHeader();
  renderFamily();
  renderLogChoices();
  const results = await Promise.allSettled([loadMetrics(), loadFiles(), loadLog()]);
  for (const r of results) if (r.status === "rejected") main.append(errorBox(r.reason.message, "section-error"));
  // this run's own events; its children only matter for their status (a parent of a big sweep must not receive
  // every child's metrics)
  liveEvents(
    { run: runId, include_children: 0, kinds: "metric,status,log,tag,file" },
    {
      metric: (ev) => ev.run_id === runId && onMetric(ev),
      status: onStatus,
      log: (ev) => ev.run_id === runId && onLog(ev),
      tag: (ev) => {
        if (ev.run_id === runId) {
          detail.run.tags = { ...detail.run.tags, ...ev.tags };
          renderHeader();
        }
      },
      file: (ev) => {
        if (ev.run_id !== runId) return;
        reloadFiles();
        reloadMetrics();
      },
      resync: () => {
        reloadDetail();
        reloadMetrics();
        reloadFiles();
        reloadLog();
      },
    },
  );
  liveEvents({ run: runId, include_children: 1, kinds: "status" }, { status: (ev) => ev.run_id !== runId && reloadDetail(), resync: reloadDetail });
  markReady();
}
