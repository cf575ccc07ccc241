// The studio's single-page shell: picks the page by location.pathname and renders it into <main>.
import { renderCompute } from "./compute.js";
import { renderDashboard } from "./dashboard.js";
import { renderExperiments } from "./experiments.js";
import { renderRun } from "./run.js";
import { errorBox, h, loadPlotly, markReady } from "./util.js";

const ROUTES = [
  [/^\/$/, (main) => renderExperiments(main)],
  [/^\/experiments\/(.+)$/, (main, m) => renderDashboard(main, decodeURIComponent(m[1]))],
  [/^\/runs\/(.+)$/, (main, m) => renderRun(main, decodeURIComponent(m[1]))],
  [/^\/compute\/?$/, (main) => renderCompute(main)],
];

async function route() {
  const main = document.getElementById("main");
  const path = location.pathname;
  // pages with charts start loading plotly while their data is fetched
  if (path.startsWith("/experiments/") || path.startsWith("/runs/")) loadPlotly().catch(() => {});
  for (const [pattern, render] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    try {
      await render(main, m);
    } catch (err) {
      main.append(errorBox(`Could not load this page: ${err.message}`, "page-error"));
      markReady();
    }
    return;
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, path));
  markReady();
}

// a click outside an open picker (status filter, metric columns) closes it
document.addEventListener("click", (event) => {
  for (const picker of document.querySelectorAll("details.picker[open]")) {
    if (!picker.contains(event.target)) picker.open = false;
  }
});

route();
