"""Azure ML's run status strings, exactly (RUN_API.md §9.1), shared by the SDK and the collector."""

from __future__ import annotations

RUN_STATUSES: tuple[str, ...] = (
    "NotStarted",
    "Queued",
    "Preparing",
    "Provisioning",
    "Starting",
    "Running",
    "CancelRequested",
    "Canceled",
    "Finalizing",
    "Completed",
    "Failed",
    "Unapproved",
    "NotResponding",
    "Pausing",
    "Paused",
)

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})
"""Statuses a run never leaves; entering one sets the run's end time."""

RUNNING_STATUSES = frozenset(
    {"NotStarted", "Queued", "Preparing", "Provisioning", "Starting", "Running", "Unapproved", "NotResponding",
     "Pausing", "Paused"}
)  # fmt: skip
"""What `wait_for_completion` keeps waiting on by default (unknown strings count as running)."""

POST_PROCESSING_STATUSES = frozenset({"CancelRequested", "Finalizing"})
"""Waited through only with `wait_post_processing=True` (or `show_output=True`)."""
