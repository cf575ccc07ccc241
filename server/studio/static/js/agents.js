// The "Agents" panel of the /compute page: every agent's last health report (GET /api/v1/agents) — its
// state (ok / backpressure: spool full / unreachable), spool fill against its cap, peak, times at the cap,
// corrupt records, lag and how long ago it reported.
import { fill, fmtBytes, fmtDuration, fmtTime, getJSON, h } from "./util.js";

/** Agents report every few seconds: the panel refetches this often (ms). */
export const AGENTS_POLL_MS = 5000;

const STATE_TEXT = {
  ok: "ok",
  backpressure: "backpressure: spool full",
  unreachable: "unreachable",
};

const STATE_TITLE = {
  ok: "reporting; the spool is below its cap",
  backpressure: "the spool is at its cap: the agent reads no SDK socket and SDKs keep their points in their own spool until there is room (nothing is dropped)",
  unreachable: "no report for a while, or its stream to the collector is closed: the agent stopped or cannot reach the collector",
};

function ago(seconds) {
  if (seconds < 1) return "just now";
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  return `${fmtDuration(seconds)} ago`;
}

function stateBadge(state) {
  return h("span", { class: `badge agent-${state}`, title: STATE_TITLE[state] || "", dataset: { testid: "agent-state", state } }, STATE_TEXT[state] || state);
}

function spoolCell(a) {
  const pct = a.spool_max_bytes ? Math.min(100, (100 * a.spool_bytes) / a.spool_max_bytes) : 0;
  return h(
    "td",
    { dataset: { testid: "agent-spool" } },
    h("meter", { min: "0", max: "1", low: "0.5", high: "0.9", optimum: "0", value: String(Math.min(1, a.spool_fill)), title: `${pct.toFixed(1)}% of the cap` }),
    " ",
    `${fmtBytes(a.spool_bytes)} of ${fmtBytes(a.spool_max_bytes)} (${pct < 1 && pct > 0 ? pct.toFixed(2) : Math.round(pct)}%)`,
  );
}

function fullCell(a) {
  if (!a.spool_full_count) return h("td", { class: "muted", dataset: { testid: "agent-full" } }, "never");
  return h("td", { dataset: { testid: "agent-full" } }, `${a.spool_full_count}× for ${fmtDuration(a.spool_full_seconds)}`);
}

function linkCell(a) {
  if (!a.connected) return h("td", { class: "muted" }, "—");
  const up = a.collector_connected_since ? `up ${fmtDuration(Math.max(0, Date.now() / 1000 - a.collector_connected_since))}` : "up";
  const outage = a.last_outage_seconds >= 1 ? ` · after ${fmtDuration(a.last_outage_seconds)} down` : "";
  return h("td", { class: "wrap", title: a.collector_connected_since ? `connected since ${fmtTime(a.collector_connected_since)}` : "", dataset: { testid: "agent-link" } }, up + outage);
}

function agentRow(a) {
  return h(
    "tr",
    { dataset: { testid: "agent-row", agentId: a.agent_id, state: a.state } },
    h("td", {}, a.agent_id),
    h("td", {}, a.hostname || "—"),
    h("td", {}, stateBadge(a.state)),
    spoolCell(a),
    h("td", { class: "num" }, fmtBytes(a.spool_peak_bytes)),
    fullCell(a),
    h("td", { class: a.spool_corrupt_records ? "num bad" : "num", dataset: { testid: "agent-corrupt" } }, String(a.spool_corrupt_records)),
    h("td", { class: "num" }, `${a.oldest_unacked_age_seconds.toFixed(1)} s`),
    h("td", { class: "num" }, String(a.clients)),
    linkCell(a),
    h("td", { title: fmtTime(a.received_at), dataset: { testid: "agent-age" } }, ago(a.report_age_seconds)),
  );
}

/** The panel's element and its loader; the caller polls `load`. */
export function agentsPanel() {
  const body = h("tbody", {});
  const el = h(
    "section",
    { class: "card agents", dataset: { testid: "agents" } },
    h("h2", {}, "Agents"),
    h(
      "p",
      { class: "muted small" },
      "When an agent's spool reaches its cap (--spool-max-bytes) it stops reading from training processes, which keep their points in their own spool until there is room: nothing is dropped.",
    ),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "grid compact" },
        h("thead", {}, h("tr", {}, ["Agent", "Host", "State", "Spool", "Peak", "At the cap", "Corrupt", "Lag", "Clients", "Collector link", "Last report"].map((c) => h("th", { class: ["Peak", "Corrupt", "Lag", "Clients"].includes(c) ? "num" : "" }, c)))),
        body,
      ),
    ),
  );

  async function load() {
    const { agents } = await getJSON("/api/v1/agents");
    fill(body, agents.map(agentRow));
    if (agents.length === 0) body.append(h("tr", { dataset: { testid: "no-agents" } }, h("td", { colspan: "11", class: "muted" }, "No agent has reported yet.")));
  }

  return { el, load };
}
