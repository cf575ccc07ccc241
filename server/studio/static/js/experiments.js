// Page `/`: every experiment with its run count, last activity and status counts, kept live.
import { debounce, experimentUrl, fill, fmtAgo, fmtTime, getJSON, h, liveEvents, markReady, statusBadge } from "./util.js";

export async function renderExperiments(main) {
  document.title = "Experiments · runwire studio";
  const tbody = h("tbody", { dataset: { testid: "experiments-body" } });
  const summary = h("p", { class: "muted", dataset: { testid: "experiments-summary" } });
  main.replaceChildren(
    h("h1", {}, "Experiments"),
    summary,
    h(
      "table",
      { class: "grid", dataset: { testid: "experiments-table" } },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", { class: "num" }, "Runs"), h("th", {}, "Last activity"), h("th", {}, "Status"))),
      tbody,
    ),
  );

  async function load() {
    const { experiments } = await getJSON("/api/v1/experiments");
    experiments.sort((a, b) => (b.last_activity ?? b.created_time ?? 0) - (a.last_activity ?? a.created_time ?? 0));
    summary.textContent = `${experiments.length} experiment${experiments.length === 1 ? "" : "s"}`;
    fill(
      tbody,
      experiments.map((e) =>
        h(
          "tr",
          { dataset: { testid: "experiment-row", experiment: e.name } },
          h("td", {}, h("a", { href: experimentUrl(e.name), dataset: { testid: "experiment-link" } }, e.name)),
          h("td", { class: "num", dataset: { testid: "experiment-runs" } }, String(e.runs)),
          h("td", { title: fmtTime(e.last_activity) }, fmtAgo(e.last_activity)),
          h(
            "td",
            { dataset: { testid: "experiment-status-counts" } },
            Object.entries(e.status_counts || {})
              .filter(([, n]) => n > 0)
              .map(([status, n]) => h("span", { class: "count" }, statusBadge(status, "status-count"), ` ${n}`)),
          ),
        ),
      ),
    );
    if (experiments.length === 0) {
      tbody.append(h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No experiments yet: start a run with the SDK.")));
    }
  }

  await load();
  const refresh = debounce(() => load().catch(() => {}));
  liveEvents({ kinds: "status" }, { status: refresh, resync: refresh });
  markReady();
}
