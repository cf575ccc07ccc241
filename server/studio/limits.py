"""Limits of the studio's JSON API (each listed in the README's Limits table)."""

from __future__ import annotations

STUDIO_RUNS_PAGE_MAX = 1_000
"""Runs one page of `GET /api/v1/experiments/{name}/runs` holds at most (`limit`)."""

STUDIO_RUNS_PAGE_DEFAULT = 100
"""Runs per page of the runs table when `limit` is not given."""

STUDIO_SERIES_WIDTH_MAX = 10_000
"""Largest `width` (pixels) of `GET .../series`; it returns at most about twice as many points."""

STUDIO_SERIES_WIDTH_DEFAULT = 1_000
"""`width` of `GET .../series` when not given."""

STUDIO_ROWS_PAGE_MAX = 10_000
"""Rows one page of `GET .../metrics/{name}/rows` holds at most (`limit`)."""

STUDIO_LOG_JSON_MAX_LINES = 100_000
"""Lines `GET .../logs/{path}?format=json` returns at most in one answer (page with `from_line`)."""

STUDIO_MAX_FILTERS = 100
"""`status`, `tag` and `metrics` parameters one runs-table request may repeat at most (each)."""

STUDIO_CHUNK_CACHE_BYTES = 256 * 1024 * 1024
"""Decoded bytes of sealed metric chunks the studio keeps for charts (zooming and refreshing a chart
does not decode them again); least recently used first out."""
