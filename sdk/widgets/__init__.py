"""`RunDetails(run).show()`: a live notebook widget for a run (RUN_API.md §16).

    from runwire.widgets import RunDetails
    RunDetails(run).show()

In Jupyter (JupyterLab 4, Notebook 7: built-in ipywidgets only, charts drawn as inline SVG, no
extension and nothing fetched from the web) it shows the run's properties and status, one chart
per metric, a table of single-valued metrics, the child runs and the log tail, updated live from
a subscription on a background thread as the collector commits. Outside a notebook `show()`
prints a short summary (status, portal URL, metric names) and returns at once.
"""

from runwire.widgets.run_details import RunDetails, UserRunDetails

__all__ = ["RunDetails", "UserRunDetails"]
