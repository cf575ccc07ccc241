// Page `/experiments/{name}`: the runs table (server-side filter, sort and paging, metric columns chosen from
// metric_names), run selection, a chart overlaying one metric across the selected runs and a side-by-side grid of
// their images (one row per image name, one cell per run); live.
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
  fmtAgo,
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
  throttle,
} from "./util.js";

/** Runs per page of the table. */
export const PAGE_SIZE = 100;
/** The most runs overlaid in the comparison chart. */
export const MAX_COMPARED_RUNS = 20;
/** Images read per image name and run for the image comparison (the latest ones; older ones are left out). */
export const COMPARED_IMAGE_VERSIONS = 200;
/** Least time between two table refreshes caused by metric events (ms). */
export const METRIC_REFRESH_MS = 2000;

const STATUSES = ["NotStarted", "Queued", "Preparing", "Starting", "Running", "Finalizing", "CancelRequested", "Completed", "Failed", "Canceled"];
const AGGS = ["last", "min", "max"];

export async function renderDashboard(main, name) {
  document.title = `${name} · runwire studio`;
  const params = new URLSearchParams(location.search);
  const state = {
    statuses: params.getAll("status"),
    tag: params.get("tag") || "",
    q: params.get("q") || "",
    sort: params.get("sort") || "created",
    order: params.get("order") || "desc",
    offset: Number(params.get("offset") || 0),
    metrics: params.getAll("metric"),
    selected: new Set(params.getAll("select")),
    compare: params.get("compare") || "",
    children: params.get("children") === "1",
    metricNames: [],
    names: new Map(), // run_id -> display name, for the chart legend
  };

  const title = h("h1", {}, h("span", { class: "muted" }, "Experiment "), h("span", { dataset: { testid: "experiment-name" } }, name));
  const stats = h("p", { class: "muted", dataset: { testid: "experiment-stats" } });
  const statusBox = h(
    "details",
    { class: "picker", dataset: { testid: "filter-status" } },
    h("summary", {}),
    h(
      "div",
      { class: "picker-list" },
      STATUSES.map((st) =>
        h("label", { dataset: { testid: "status-option", status: st } }, h("input", { type: "checkbox", value: st, checked: state.statuses.includes(st) }), " ", st),
      ),
    ),
  );
  const statusSummary = () => {
    statusBox.querySelector("summary").textContent = state.statuses.length ? `Status: ${state.statuses.join(", ")}` : "Status: any";
  };
  statusSummary();
  const tagInput = h("input", { type: "search", placeholder: "tag or tag=value", value: state.tag, dataset: { testid: "filter-tag" } });
  const textInput = h("input", { type: "search", placeholder: "search id, name, tag values", value: state.q, dataset: { testid: "filter-text" } });
  const columnsBox = h("details", { class: "picker", dataset: { testid: "column-picker" } });
  const childrenBox = h("input", { type: "checkbox", checked: state.children, dataset: { testid: "filter-children" } });
  const toolbar = h(
    "div",
    { class: "toolbar" },
    textInput,
    tagInput,
    statusBox,
    columnsBox,
    h("label", { class: "check-label" }, childrenBox, " child runs"),
  );
  const thead = h("thead");
  const tbody = h("tbody", { dataset: { testid: "runs-body" } });
  const pager = h("div", { class: "pager", dataset: { testid: "pager" } });
  const compareSelect = h("select", { dataset: { testid: "compare-metric" } });
  const compareInfo = h("span", { class: "muted", dataset: { testid: "compare-info" } });
  const chartBox = h("div", { class: "chart", dataset: { testid: "compare-chart", metric: state.compare } });
  const imagesBox = h("div", { class: "image-compare", dataset: { testid: "image-compare" } });
  const compare = h(
    "section",
    { class: "card" },
    h("h2", {}, "Compare selected runs"),
    h("div", { class: "toolbar" }, h("label", {}, "metric ", compareSelect), compareInfo),
    chartBox,
    h("h3", {}, "Images"),
    imagesBox,
  );
  main.replaceChildren(
    title,
    stats,
    toolbar,
    h("div", { class: "table-wrap" }, h("table", { class: "grid", dataset: { testid: "runs-table" } }, thead, tbody)),
    pager,
    compare,
  );

  const saveUrl = () => {
    const q = query({
      status: state.statuses,
      tag: state.tag,
      q: state.q,
      sort: state.sort === "created" ? "" : state.sort,
      order: state.order === "desc" ? "" : state.order,
      offset: state.offset || "",
      metric: state.metrics,
      select: [...state.selected],
      compare: state.compare,
      children: state.children ? 1 : "",
    });
    history.replaceState(null, "", experimentUrl(name) + q);
  };

  // ----- the runs table -----
  let loadSeq = 0;
  async function loadRuns() {
    const seq = ++loadSeq;
    const url = `/api/v1/experiments/${encodeURIComponent(name)}/runs${query({
      status: state.statuses,
      tag: state.tag,
      q: state.q,
      sort: state.sort,
      order: state.order,
      offset: state.offset,
      limit: PAGE_SIZE,
      include_children: state.children ? "true" : "",
      metrics: state.metrics,
    })}`;
    const page = await getJSON(url);
    if (seq !== loadSeq) return;
    state.metricNames = page.metric_names || [];
    if (page.offset > 0 && page.runs.length === 0 && page.total > 0) {
      state.offset = Math.max(0, Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE);
      return loadRuns();
    }
    for (const run of page.runs) state.names.set(run.run_id, run.display_name || run.run_id);
    renderHead();
    renderRows(page.runs);
    renderPager(page.total);
    renderPicker();
    renderCompareSelect();
  }

  function sortHeader(label, key, cls = "") {
    const active = state.sort === key;
    const arrow = active ? (state.order === "desc" ? " ▼" : " ▲") : "";
    return h(
      "th",
      {
        class: `sortable ${cls} ${active ? "sorted" : ""}`,
        dataset: { testid: "sort-header", sort: key },
        title: "sort",
        on: {
          click: () => {
            if (state.sort === key) state.order = state.order === "desc" ? "asc" : "desc";
            else {
              state.sort = key;
              state.order = key === "name" || key === "status" ? "asc" : "desc";
            }
            state.offset = 0;
            saveUrl();
            loadRuns().catch(showError);
          },
        },
      },
      label + arrow,
    );
  }

  function renderHead() {
    fill(
      thead,
      h(
        "tr",
        {},
        h("th", { class: "check" }, ""),
        sortHeader("#", "number", "num"),
        sortHeader("Run", "name"),
        sortHeader("Status", "status"),
        sortHeader("Start", "started"),
        sortHeader("Duration", "duration", "num"),
        h("th", {}, "Target"),
        h("th", {}, "Tags"),
        state.metrics.flatMap((m) => AGGS.map((agg) => sortHeader(`${m} (${agg})`, `metric:${m}:${agg}`, "num metric-col"))),
      ),
    );
  }

  function renderRows(runs) {
    fill(
      tbody,
      runs.map((run) => {
        const box = h("input", {
          type: "checkbox",
          checked: state.selected.has(run.run_id),
          dataset: { testid: "run-select" },
          title: "compare",
          on: {
            change: (e) => {
              if (e.target.checked) state.selected.add(run.run_id);
              else state.selected.delete(run.run_id);
              saveUrl();
              drawCompare().catch(showError);
              drawImages().catch(showError);
            },
          },
        });
        return h(
          "tr",
          { dataset: { testid: "run-row", runId: run.run_id, status: run.status } },
          h("td", { class: "check" }, box),
          h("td", { class: "num" }, run.number ?? ""),
          h(
            "td",
            { class: "run-name" },
            h("a", { href: runUrl(run.run_id), dataset: { testid: "run-link" } }, run.display_name || run.run_id),
            run.display_name ? h("div", { class: "muted small" }, run.run_id) : null,
            run.parent_run_id ? h("div", { class: "muted small" }, "child of ", h("a", { href: runUrl(run.parent_run_id) }, run.parent_run_id)) : null,
          ),
          h("td", {}, statusBadge(run.status, "run-status")),
          h("td", { title: fmtTime(run.start_time) }, run.start_time ? fmtAgo(run.start_time) : "—"),
          h("td", { class: "num" }, fmtDuration(run.duration)),
          h("td", {}, run.target || "local"),
          h("td", { class: "tags", dataset: { testid: "run-tags" } }, tagChips(run.tags)),
          state.metrics.flatMap((m) =>
            AGGS.map((agg) => h("td", { class: "num", dataset: { testid: "metric-cell", metric: m, agg } }, fmtValue(run.metrics?.[m]?.[agg]))),
          ),
        );
      }),
    );
    if (runs.length === 0) tbody.append(h("tr", {}, h("td", { colspan: String(8 + 3 * state.metrics.length), class: "muted" }, "No runs match.")));
  }

  function renderPager(total) {
    stats.textContent = `${total} run${total === 1 ? "" : "s"} match`;
    const first = total === 0 ? 0 : state.offset + 1;
    const last = Math.min(total, state.offset + PAGE_SIZE);
    const go = (offset) => () => {
      state.offset = offset;
      saveUrl();
      loadRuns().catch(showError);
    };
    fill(
      pager,
      h("button", { disabled: state.offset === 0, dataset: { testid: "page-prev" }, on: { click: go(Math.max(0, state.offset - PAGE_SIZE)) } }, "‹ Prev"),
      h("span", { dataset: { testid: "page-info" } }, ` ${first}–${last} of ${total} `),
      h("button", { disabled: last >= total, dataset: { testid: "page-next" }, on: { click: go(state.offset + PAGE_SIZE) } }, "Next ›"),
    );
  }

  function renderPicker() {
    const open = columnsBox.open;
    fill(
      columnsBox,
      h("summary", {}, `Metric columns (${state.metrics.length})`),
      h(
        "div",
        { class: "picker-list" },
        state.metricNames.length === 0 ? h("span", { class: "muted" }, "no scalar metrics yet") : null,
        state.metricNames.map((m) =>
          h(
            "label",
            { dataset: { testid: "column-option", metric: m } },
            h("input", {
              type: "checkbox",
              checked: state.metrics.includes(m),
              on: {
                change: (e) => {
                  state.metrics = e.target.checked ? [...state.metrics, m] : state.metrics.filter((x) => x !== m);
                  saveUrl();
                  resubscribe();
                  loadRuns().catch(showError);
                },
              },
            }),
            " ",
            m,
          ),
        ),
      ),
    );
    columnsBox.open = open;
  }

  function renderCompareSelect() {
    const names = state.metricNames;
    if (!state.compare && names.length) state.compare = names[0];
    const current = [...compareSelect.options].map((o) => o.value).join("\n");
    if (current !== names.join("\n")) {
      fill(
        compareSelect,
        names.length ? null : h("option", { value: "" }, "(no metrics)"),
        names.map((m) => h("option", { value: m, selected: m === state.compare }, m)),
      );
    }
    compareSelect.value = state.compare;
  }
  compareSelect.addEventListener("change", () => {
    state.compare = compareSelect.value;
    saveUrl();
    resubscribe();
    drawCompare().catch(showError);
  });

  // ----- the comparison chart -----
  const metricsOf = new Map(); // run_id -> Promise<metric infos>
  function runMetrics(id) {
    if (!metricsOf.has(id)) {
      metricsOf.set(
        id,
        getJSON(`${apiRun(id)}/metrics`)
          .then((r) => r.metrics)
          .catch(() => []),
      );
    }
    return metricsOf.get(id);
  }
  async function runMetricNames(id) {
    return new Set((await runMetrics(id)).map((m) => m.name));
  }
  const traces = new Map(); // run_id -> trace index
  let drawSeq = 0;
  async function drawCompare() {
    const seq = ++drawSeq;
    chartBox.dataset.metric = state.compare;
    const runIds = [...state.selected].slice(0, MAX_COMPARED_RUNS);
    if (!state.compare || runIds.length === 0) {
      traces.clear();
      if (window.Plotly) window.Plotly.purge(chartBox);
      fill(chartBox, h("p", { class: "muted empty" }, "Select runs (checkboxes) to overlay a metric."));
      compareInfo.textContent = "";
      return;
    }
    const Plotly = await loadPlotly();
    const width = Math.max(200, chartBox.clientWidth || 800);
    const metric = state.compare;
    const results = await Promise.all(
      runIds.map(async (id) => {
        // only runs that have the metric are asked for its series (no 404s for the others)
        const names = await runMetricNames(id);
        if (!names.has(metric)) return { id, s: null };
        return getJSON(`${apiRun(id)}/metrics/${encodeURIComponent(metric)}/series${query({ width })}`)
          .then((s) => ({ id, s }))
          .catch(() => ({ id, s: null }));
      }),
    );
    if (seq !== drawSeq) return;
    traces.clear();
    const data = [];
    for (const { id, s } of results) {
      if (!s) continue;
      traces.set(id, data.length);
      data.push({ x: s.x, y: s.y, type: "scatter", mode: s.count === 1 ? "markers" : "lines", name: plotlyText(state.names.get(id) || id) });
    }
    compareInfo.textContent = `${data.length} of ${state.selected.size} selected run(s) have “${state.compare}”`;
    if (chartBox.querySelector(".empty")) chartBox.replaceChildren();
    const xLabel = results.find((r) => r.s)?.s.x_label || "";
    const layout = baseLayout({ showlegend: true, legend: { orientation: "h", y: -0.25 }, height: 340, margin: { l: 56, r: 16, t: 16, b: 60 } });
    layout.xaxis = { ...layout.xaxis, title: { text: plotlyText(xLabel) } };
    layout.yaxis = { ...layout.yaxis, title: { text: plotlyText(state.compare) } };
    await Plotly.react(chartBox, data, layout, PLOT_CONFIG);
    chartBox.dataset.lastUpdate = String(Date.now());
  }

  function appendPoint(ev) {
    const index = traces.get(ev.run_id);
    if (index === undefined || ev.name !== state.compare || !ev.x || !window.Plotly) return;
    window.Plotly.extendTraces(chartBox, { x: [ev.x], y: [ev.y] }, [index]);
    chartBox.dataset.lastUpdate = String(Date.now());
  }

  // ----- the image comparison: one row per image name, one cell per selected run -----
  const imageVersion = new Map(); // image name -> chosen version number ("" = each run's latest)
  async function runImages(id) {
    // image name -> [{version, step, file}] in logged order; version counts from 1 per name and run
    const out = new Map();
    const images = (await runMetrics(id)).filter((m) => m.chart === "image" && m.count > 0);
    await Promise.all(
      images.map(async (m) => {
        const offset = Math.max(0, m.count - COMPARED_IMAGE_VERSIONS);
        const r = await getJSON(`${apiRun(id)}/metrics/${encodeURIComponent(m.name)}/rows${query({ offset, limit: COMPARED_IMAGE_VERSIONS })}`).catch(() => null);
        if (!r) return;
        const valueAt = r.columns.indexOf("value");
        const stepAt = r.columns.indexOf("step");
        const items = [];
        r.rows.forEach((row, i) => {
          const file = artifactFile(id, valueAt >= 0 ? row[valueAt] : row.at(-1));
          if (file) items.push({ version: offset + i + 1, step: stepAt >= 0 ? row[stepAt] : null, file });
        });
        if (items.length) out.set(m.name, items);
      }),
    );
    return out;
  }

  let imageSeq = 0;
  async function drawImages() {
    const seq = ++imageSeq;
    const runIds = [...state.selected].slice(0, MAX_COMPARED_RUNS);
    if (runIds.length === 0) {
      fill(imagesBox, h("p", { class: "muted", dataset: { testid: "image-compare-empty" } }, "Select runs (checkboxes) to compare their images side by side."));
      imagesBox.dataset.lastUpdate = String(Date.now());
      return;
    }
    const runs = await Promise.all(runIds.map(async (id) => ({ id, images: await runImages(id) })));
    if (seq !== imageSeq) return;
    const names = [...new Set(runs.flatMap((r) => [...r.images.keys()]))].sort((a, b) => a.localeCompare(b));
    fill(
      imagesBox,
      names.length === 0 ? h("p", { class: "muted", dataset: { testid: "image-compare-empty" } }, "None of the selected runs logged images.") : null,
      names.map((imageName) => imageRow(imageName, runs)),
    );
    imagesBox.dataset.lastUpdate = String(Date.now());
  }

  function imageRow(imageName, runs) {
    const versions = Math.max(...runs.map((r) => r.images.get(imageName)?.at(-1)?.version || 0));
    const cells = h("div", { class: "image-compare-cells" });
    const chosen = () => imageVersion.get(imageName) || "";
    const select =
      versions > 1
        ? h(
            "select",
            {
              dataset: { testid: "image-version" },
              title: "which image of this name: each run's latest, or the n-th one logged",
              on: {
                change: (e) => {
                  imageVersion.set(imageName, e.target.value);
                  renderCells();
                },
              },
            },
            h("option", { value: "" }, "latest"),
            Array.from({ length: versions }, (_, i) => versions - i).map((v) => h("option", { value: String(v) }, `#${v}`)),
          )
        : null;
    if (select) select.value = chosen();
    function renderCells() {
      const version = chosen();
      fill(
        cells,
        runs.map(({ id, images }) => {
          const list = images.get(imageName) || [];
          const item = version ? list.find((it) => String(it.version) === version) : list.at(-1);
          const runName = state.names.get(id) || id;
          const url = item ? `${apiRun(id)}/files/${encodePath(item.file)}` : null;
          return h(
            "figure",
            { dataset: { testid: "image-cell", runId: id, metric: imageName, version: item ? String(item.version) : "" } },
            h("figcaption", { class: "image-cell-run" }, h("a", { href: runUrl(id), dataset: { testid: "image-cell-run" } }, runName)),
            item
              ? h("a", { href: url }, h("img", { src: `${url}?inline=1`, alt: `${runName}: ${imageName}`, loading: "lazy" }))
              : h("div", { class: "image-missing muted", dataset: { testid: "image-missing" }, title: `no “${imageName}” image` }, "—"),
            item ? h("figcaption", { class: "muted small" }, `#${item.version}`, item.step === null || item.step === undefined ? "" : ` · step ${item.step}`) : null,
          );
        }),
      );
    }
    renderCells();
    return h(
      "div",
      { class: "image-compare-row", dataset: { testid: "image-compare-row", metric: imageName } },
      h("h4", {}, h("span", { dataset: { testid: "image-compare-name" } }, imageName), select ? [" ", select] : null),
      cells,
    );
  }

  // ----- filters -----
  const applyFilters = debounce(() => {
    state.q = textInput.value.trim();
    state.tag = tagInput.value.trim();
    state.statuses = [...statusBox.querySelectorAll("input:checked")].map((o) => o.value);
    statusSummary();
    state.offset = 0;
    saveUrl();
    loadRuns().catch(showError);
  }, 300);
  textInput.addEventListener("input", applyFilters);
  tagInput.addEventListener("input", applyFilters);
  statusBox.addEventListener("change", applyFilters);
  childrenBox.addEventListener("change", () => {
    state.children = childrenBox.checked;
    state.offset = 0;
    saveUrl();
    loadRuns().catch(showError);
  });

  function showError(err) {
    stats.replaceChildren(errorBox(err.message));
  }

  // ----- live -----
  const refresh = debounce(() => loadRuns().catch(showError));
  const redrawCompare = debounce(() => drawCompare().catch(showError), 300);
  const redrawImages = debounce(() => drawImages().catch(showError), 300);
  const refreshForMetrics = throttle(refresh, METRIC_REFRESH_MS);
  let live = null;
  function resubscribe() {
    live?.close();
    const metrics = [...new Set([...state.metrics, state.compare].filter(Boolean))];
    live = liveEvents(
      { experiment: name, include_children: 1, kinds: metrics.length ? "status,tag,metric" : "status,tag", metrics },
      {
        status: (ev) => {
          refresh();
          if (state.selected.has(ev.run_id)) {
            // a selected run that changes status may have logged images since they were read
            metricsOf.delete(ev.run_id);
            redrawImages();
          }
        },
        tag: refresh,
        metric: (ev) => {
          if (state.selected.has(ev.run_id) && ev.name === state.compare && !traces.has(ev.run_id)) {
            // a selected run just got the compared metric: draw it
            metricsOf.delete(ev.run_id);
            redrawCompare();
          }
          appendPoint(ev);
          if (state.metrics.includes(ev.name)) refreshForMetrics();
        },
        resync: () => {
          metricsOf.clear();
          refresh();
          drawCompare().catch(showError);
          drawImages().catch(showError);
        },
      },
    );
  }

  try {
    await getJSON(`/api/v1/experiments/${encodeURIComponent(name)}`);
  } catch (err) {
    main.replaceChildren(title, errorBox(err.status === 404 ? `No experiment named “${name}”.` : err.message, "page-error"));
    markReady();
    return;
  }
  await loadRuns();
  saveUrl();
  await Promise.all([drawCompare().catch(showError), drawImages().catch(showError)]);
  resubscribe();
  markReady();
}

export function tagChips(tags) {
  return Object.entries(tags || {}).map(([k, v]) =>
    h(
      "span",
      { class: "chip", dataset: { testid: "tag", key: k } },
      h("span", {}, k),
      v === null || v === undefined || v === "" ? null : [": ", h("span", {}, v)],
    ),
  );
}
