"""The RunDetails widget: a factory by run type, and the generic user-run widget (RUN_API.md §16)."""

from __future__ import annotations

import datetime as _dt
import html
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runwire.widgets.svg import line_chart

if TYPE_CHECKING:
    from runwire.run import Run

log = logging.getLogger("runwire.widgets")

WIDGET_REFRESH_S = 0.25
"""How often the RunDetails widget redraws what changed at most (updates are pushed, not polled)."""

WIDGET_MAX_POINTS_PER_METRIC = 100_000
"""Points of one metric the RunDetails widget keeps for its chart; beyond it every other point is
dropped (the chart stays the series' shape; the count shown stays exact)."""

WIDGET_LOG_LINES = 200
"""Log lines the RunDetails widget keeps (the tail)."""

WIDGET_END_QUIET_S = 1.0
"""After the run has finished, the widget stops following once no event came for this long."""

TERMINAL = ("Completed", "Failed", "Canceled")


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _iso(ts: float | None) -> str:
    if not ts:
        return ""
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class _Series:
    name: str
    kind: str
    count: int = 0
    x: list = field(default_factory=list)
    y: list = field(default_factory=list)
    keep_every: int = 1
    has_steps: bool = False
    numeric: bool = True
    last: Any = None
    columns: list[str] = field(default_factory=list)

    def add(self, value: Any, step: int | None, row: int) -> None:
        self.count += 1
        self.last = value
        if self.kind == "table" and isinstance(value, dict):
            if not self.columns:
                self.columns = list(value)
            cols = list(value.values())
            xv = _number(cols[0]) if len(cols) >= 2 else None
            yv = _number(cols[1]) if len(cols) >= 2 else None
            if xv is None or yv is None:
                self.numeric = False
        else:
            yv = _number(value)
            if yv is None and value is not None:
                self.numeric = False
            if step is not None:
                self.has_steps = True
            xv = float(step if step is not None else row)
        if row % self.keep_every:
            return
        self.x.append(xv)
        self.y.append(yv)
        if len(self.x) > WIDGET_MAX_POINTS_PER_METRIC:
            self.x, self.y = self.x[::2], self.y[::2]
            self.keep_every *= 2

    @property
    def chart(self) -> str | None:
        """The chart kind of RUN_API.md §16, or None when the metric belongs in the table."""
        if self.kind == "image" or not self.numeric or self.count < 2:
            return None
        if self.kind == "table":
            return "xy" if len(self.columns) >= 2 else None
        return "line"

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "count": self.count, "chart": self.chart, "last": self.last}
        if self.chart == "xy":
            d.update(x_label=self.columns[0], y_label=self.columns[1])
        elif self.chart == "line":
            d.update(x_label="step" if self.has_steps else "index", y_label=self.name)
        if self.chart:
            d.update(x=list(self.x), y=list(self.y))
        return d

    def svg(self) -> str:
        if self.chart == "xy":
            return line_chart(self.name, self.x, self.y, self.columns[0], self.columns[1])
        return line_chart(self.name, self.x, self.y, "step" if self.has_steps else "index", "value")


class RunDetails:
    """`RunDetails(run)`: the widget for the run, chosen by run type (RUN_API.md §16). runwire has
    user runs (`start_logging`, child and script runs): every type gets `UserRunDetails`."""

    def __new__(cls, run_instance: Run, *args: Any, **kwargs: Any) -> Any:
        if cls is not RunDetails:
            return super().__new__(cls)
        run_type = run_instance.type
        if run_type is None:
            run_type = (run_instance.properties or {}).get("azureml.runsource") or "experiment"
        return _WIDGETS.get(run_type, UserRunDetails)(run_instance)


class UserRunDetails(RunDetails):
    """Properties, status, a chart per metric, single values, child runs and the log tail."""

    def __init__(self, run_instance: Run) -> None:
        self.run = run_instance
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._children: dict[str, dict[str, Any]] = {}
        self._logs: deque = deque(maxlen=WIDGET_LOG_LINES)
        self._status = run_instance.status
        self._details: dict[str, Any] = {}
        self._tags: dict[str, Any] = dict(run_instance.tags)
        self._dirty: set[str] = set()
        self._events = 0
        self._lagged = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._sub: Any = None
        self.widget: Any = None
        self._w: dict[str, Any] = {}

    # --- data ---------------------------------------------------------------------------------

    def get_widget_data(self, widget_settings: dict | None = None) -> dict[str, Any]:
        """What the widget shows, as plain data (a debugging aid)."""
        with self._lock:
            return {
                "run_id": self.run.id,
                "experiment": self.run.experiment.name,
                "status": self._status,
                "portal_url": self.run.get_portal_url(),
                "properties": self._properties(),
                "tags": dict(self._tags),
                "metrics": {name: s.data() for name, s in self._series.items()},
                "children": {k: dict(v) for k, v in self._children.items()},
                "logs": list(self._logs),
                "events": self._events,
                "lagged_events": self._lagged,
            }

    def _properties(self) -> dict[str, Any]:
        d = self._details
        return {
            "Run Id": self.run.id,
            "Experiment": self.run.experiment.name,
            "Display name": self.run.display_name or "",
            "Status": self._status,
            "Start time": d.get("startTimeUtc") or "",
            "End time": d.get("endTimeUtc") or "",
            "Target": d.get("target") or "",
            "Properties": dict(d.get("properties") or {}),
        }

    def _apply(self, ev: Any) -> None:
        self._events += 1
        kind = ev.kind
        if kind == "metric":
            if ev.run_id != self.run.id:
                child = self._children.setdefault(ev.run_id, {"status": "", "metrics": {}})
                child["metrics"][ev.name] = ev.value
                self._dirty.add("children")
                return
            s = self._series.get(ev.name)
            if s is None:
                s = self._series[ev.name] = _Series(ev.name, ev.metric_kind)
            s.add(ev.value, ev.step, ev.row)
            self._dirty.add("metric:" + ev.name)
        elif kind == "status":
            if ev.run_id == self.run.id:
                self._status = ev.status
                self._dirty.add("status")
            else:
                self._children.setdefault(ev.run_id, {"status": "", "metrics": {}})["status"] = ev.status
                self._dirty.add("children")
        elif kind == "tag" and ev.run_id == self.run.id:
            self._tags = dict(ev.tags)
            self._dirty.add("status")
        elif kind == "log":
            for line in ev.lines:
                self._logs.append(f"{ev.path}: {line}" if ev.run_id == self.run.id else f"[{ev.run_id}] {line}")
            self._dirty.add("logs")
        elif kind == "lagged":
            self._lagged += ev.events
            self._refetch()
            self._dirty.add("status")

    def _refetch(self) -> None:
        """After a lag: rebuild the run's series from the store (points may have been skipped)."""
        try:
            for name in list(self._series):
                series = self.run.get_metric_series(name)
                s = _Series(name, series.kind)
                for i in range(len(series)):
                    value = series.values[i]
                    if s.kind == "table":
                        value = {c: series.columns[c][i] for c in series.columns}
                    step = int(series.steps[i]) if series.has_steps else None
                    s.add(value.item() if hasattr(value, "item") else value, step, i)
                self._series[name] = s
                self._dirty.add("metric:" + name)
        except Exception as e:  # the view stays usable; the next events still arrive
            log.warning("RunDetails could not refetch after a lag: %s", e)

    # --- display ------------------------------------------------------------------------------

    def show(self, render_lib: Any = None, widget_settings: dict | None = None) -> None:
        """Jupyter: display the widget and follow the run live on a background thread (returns
        at once). `render_lib` (e.g. Databricks' `displayHTML`): hand it one HTML snapshot.
        Elsewhere: print a short summary and return."""
        self._details = self.run.get_details()
        self._status = self._details.get("status", self._status)
        if render_lib is not None:
            self._load_history()
            render_lib(self.to_html())
            return
        if not _in_notebook():
            print(self.summary())
            return
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            print(self.summary())
            print("(install ipywidgets — pip install 'runwire[widgets]' — for the live notebook widget)")
            return
        from IPython.display import display

        self._build()
        display(self.widget)
        self._start()

    def summary(self) -> str:
        try:
            names = sorted(self.run.get_metrics())
        except Exception as e:
            names = [f"(metrics unavailable: {e})"]
        return (
            f"Run {self.run.id} (experiment {self.run.experiment.name}): {self._status}\n"
            f"Portal: {self.run.get_portal_url()}\n"
            f"Metrics: {', '.join(names) if names else '(none)'}"
        )

    def _load_history(self) -> None:
        with self.run.subscribe(from_start=True, include_children=True) as sub:
            for ev in sub.read_history(timeout=60):
                self._apply(ev)

    def _start(self) -> None:
        self._sub = self.run.subscribe(from_start=True, include_children=True)
        self._thread = threading.Thread(target=self._follow, name="runwire-run-details", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following the run (the widget keeps what it shows)."""
        self._stop.set()
        if self._sub is not None:
            self._sub.close()
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(5)

    def _follow(self) -> None:
        sub = self._sub
        last_draw = 0.0
        quiet_since: float | None = None
        try:
            while not self._stop.is_set():
                try:
                    ev = sub.next_event(WIDGET_REFRESH_S)
                except StopIteration:
                    break
                now = time.monotonic()
                if ev is not None:
                    with self._lock:
                        self._apply(ev)
                    quiet_since = None
                elif self._status in TERMINAL and sub.caught_up:
                    quiet_since = quiet_since or now
                    if now - quiet_since >= WIDGET_END_QUIET_S:
                        break
                if now - last_draw >= WIDGET_REFRESH_S or ev is None:
                    self._draw()
                    last_draw = now
        except Exception as e:
            log.warning("RunDetails stopped following run %s: %s", self.run.id, e)
        finally:
            self._draw()
            sub.close()

    # --- ipywidgets ---------------------------------------------------------------------------

    def _build(self) -> None:
        import ipywidgets as w

        self._w = {
            "header": w.HTML(),
            "charts": w.Box(layout=w.Layout(display="flex", flex_flow="row wrap")),
            "table": w.HTML(),
            "children": w.HTML(),
            "logs": w.HTML(),
        }
        self._chart_widgets: dict[str, Any] = {}
        self.widget = w.VBox(
            [self._w["header"], self._w["charts"], self._w["table"], self._w["children"], self._w["logs"]]
        )
        self._dirty.update({"status", "children", "logs"})
        self._draw()

    def _draw(self) -> None:
        if not self._w:
            return
        import ipywidgets as w

        with self._lock:
            dirty, self._dirty = self._dirty, set()
            charts = {}
            table_changed = False
            for key in dirty:
                if key.startswith("metric:"):
                    s = self._series[key[7:]]
                    table_changed = True
                    if s.chart:
                        charts[s.name] = s.svg()
            header = self._header_html() if "status" in dirty else None
            table = self._table_html() if table_changed else None
            children = self._children_html() if "children" in dirty else None
            logs = self._logs_html() if "logs" in dirty else None
        if header is not None:
            self._w["header"].value = header
        added = False
        for name, svg in charts.items():
            cw = self._chart_widgets.get(name)
            if cw is None:
                cw = self._chart_widgets[name] = w.HTML(layout=w.Layout(margin="0 8px 8px 0"))
                added = True
            cw.value = svg
        if added:
            self._w["charts"].children = tuple(self._chart_widgets[n] for n in sorted(self._chart_widgets))
        if table is not None:
            self._w["table"].value = table
        if children is not None:
            self._w["children"].value = children
        if logs is not None:
            self._w["logs"].value = logs

    def _header_html(self) -> str:
        props = self._properties()
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(_text(v))}</td></tr>"
            for k, v in props.items()
            if v not in ("", {}, None)
        )
        if self._tags:
            rows += f"<tr><th style='text-align:left'>Tags</th><td>{html.escape(_text(self._tags))}</td></tr>"
        if self._lagged:
            rows += (
                f"<tr><th style='text-align:left'>Note</th><td>fell behind by {self._lagged} events; "
                "refetched from the store</td></tr>"
            )
        url = html.escape(self.run.get_portal_url())
        link = f"<a href='{url}' target='_blank'>Open in runwire studio</a>"
        color = {"Completed": "#2a7", "Failed": "#c33", "Canceled": "#888"}.get(self._status, "#27c")
        status = f"<span style='color:{color};font-weight:bold'>{html.escape(self._status)}</span>"
        return f"<div><b>Run</b> {html.escape(self.run.id)} — {status} — {link}<table>{rows}</table></div>"

    def _table_html(self) -> str:
        rows = []
        for name, s in sorted(self._series.items()):
            if s.chart:
                continue
            rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(_text(s.last))}</td><td>{s.count}</td></tr>")
        if not rows:
            return ""
        head = "<tr><th style='text-align:left'>metric</th><th style='text-align:left'>value</th><th>rows</th></tr>"
        return f"<div><b>Tracked metrics</b><table>{head}{''.join(rows)}</table></div>"

    def _children_html(self) -> str:
        if not self._children:
            return ""
        rows = []
        for run_id, c in self._children.items():
            metrics = ", ".join(f"{k}={_text(v)}" for k, v in list(c["metrics"].items())[:8])
            rows.append(
                f"<tr><td>{html.escape(run_id)}</td><td>{html.escape(c['status'])}</td>"
                f"<td>{html.escape(metrics)}</td></tr>"
            )
        head = "<tr><th style='text-align:left'>child run</th><th>status</th><th>latest metrics</th></tr>"
        return f"<div><b>Child runs</b><table>{head}{''.join(rows)}</table></div>"

    def _logs_html(self) -> str:
        if not self._logs:
            return ""
        text = html.escape("\n".join(self._logs))
        return f"<div><b>Log</b><pre style='max-height:240px;overflow:auto'>{text}</pre></div>"

    def to_html(self) -> str:
        """A static HTML snapshot (header, charts, tables, children, log)."""
        with self._lock:
            charts = "".join(s.svg() for _, s in sorted(self._series.items()) if s.chart)
            return (
                self._header_html()
                + f"<div style='display:flex;flex-wrap:wrap'>{charts}</div>"
                + self._table_html()
                + self._children_html()
                + self._logs_html()
            )


def _text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items())
    return str(v)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where displayed widgets render)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


_WIDGETS: dict[str, type[UserRunDetails]] = {
    "experiment": UserRunDetails,
    "azureml.scriptrun": UserRunDetails,
}
"""Widget per run type; other types (hyperdrive, automl, pipelines) fall back to the user-run widget."""
