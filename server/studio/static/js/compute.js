// Page `/compute`: the agents' health (agents.js), then every compute target with its nodes (slots, busy,
// connected) and its queued/active runs, live.
import { AGENTS_POLL_MS, agentsPanel } from "./agents.js";
import { debounce, experimentUrl, fill, fmtAgo, fmtTime, getJSON, h, liveEvents, markReady, runUrl, statusBadge } from "./util.js";

/** Node heartbeats do not send events: the page also refetches this often (ms). */
export const COMPUTE_POLL_MS = 15000;

export async function renderCompute(main) {
  document.title = "Compute · runwire studio";
  const body = h("div", { dataset: { testid: "targets" } });
  const agents = agentsPanel();
  main.replaceChildren(h("h1", {}, "Compute"), agents.el, body);

  async function load() {
    const { targets } = await getJSON("/api/v1/compute");
    fill(body, targets.map(targetCard));
    if (targets.length === 0) body.append(h("p", { class: "muted", dataset: { testid: "no-targets" } }, "No compute targets: start an agent with --target."));
  }

  await Promise.all([load(), agents.load()]);
  setInterval(() => agents.load().catch(() => {}), AGENTS_POLL_MS);
  const refresh = debounce(() => load().catch(() => {}), 500);
  liveEvents({ kinds: "status" }, { status: refresh, resync: refresh });
  setInterval(refresh, COMPUTE_POLL_MS);
  markReady();
}

function targetCard(t) {
  const busy = t.nodes.reduce((n, node) => n + (node.busy || 0), 0);
  return h(
    "section",
    { class: "card", dataset: { testid: "target", target: t.name } },
    h(
      "h2",
      {},
      h("span", { dataset: { testid: "target-name" } }, t.name),
      " ",
      h("span", { class: "muted small", dataset: { testid: "target-summary" } }, `${t.slots} slots · ${busy} busy · ${t.active} active · ${t.queued} queued`),
    ),
    h("h3", {}, "Nodes"),
    h(
      "table",
      { class: "grid compact" },
      h("thead", {}, h("tr", {}, ["Node", "Host", "Slots", "Busy", "Connected", "Last seen", "Runs"].map((c) => h("th", { class: c === "Slots" || c === "Busy" ? "num" : "" }, c)))),
      h(
        "tbody",
        {},
        t.nodes.map((n) =>
          h(
            "tr",
            { dataset: { testid: "node-row", nodeId: n.node_id, connected: n.connected ? "1" : "0" } },
            h("td", {}, n.node_id),
            h("td", {}, n.hostname || "—"),
            h("td", { class: "num" }, String(n.slots)),
            h("td", { class: "num", dataset: { testid: "node-busy" } }, String(n.busy)),
            h("td", {}, h("span", { class: `dot ${n.connected ? "on" : "off"}` }), n.connected ? " connected" : " disconnected"),
            h("td", { title: fmtTime(n.last_seen) }, fmtAgo(n.last_seen)),
            h("td", {}, (n.run_ids || []).map((id) => h("a", { class: "chip", href: runUrl(id) }, id))),
          ),
        ),
        t.nodes.length ? null : h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No nodes.")),
      ),
    ),
    h("h3", {}, "Queued and active runs"),
    h(
      "table",
      { class: "grid compact" },
      h("thead", {}, h("tr", {}, ["Run", "Status", "Experiment", "Node", "Created"].map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        t.runs.map((r) =>
          h(
            "tr",
            { dataset: { testid: "compute-run", runId: r.run_id, status: r.status } },
            h("td", {}, h("a", { href: runUrl(r.run_id) }, r.run_id)),
            h("td", {}, statusBadge(r.status, "compute-run-status")),
            h("td", {}, h("a", { href: experimentUrl(r.experiment_name) }, r.experiment_name)),
            h("td", {}, r.node_id || "—"),
            h("td", {}, fmtTime(r.created_time)),
          ),
        ),
        t.runs.length ? null : h("tr", {}, h("td", { colspan: "5", class: "muted" }, "Nothing queued or running.")),
      ),
    ),
  );
}
