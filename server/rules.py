"""Backend-neutral rules for experiments, runs, tags and properties (RUN_API.md §3, §4, §7, §9, §10).

Every store implementation calls these, so the same request is refused the same way whatever
the backend; each failure raises `InvalidArgument` with a message naming the value and the rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from runwire import limits
from runwire.server import limits as server_limits
from runwire.server.errors import InvalidArgument
from runwire.server.records import NewRun, RunUpdate
from runwire.statuses import RUN_STATUSES, TERMINAL_STATUSES

DEFAULT_STATUS = "NotStarted"

EXPERIMENT_NAME_RULE = r"^[a-zA-Z0-9][\w-]{0,254}$"
_EXPERIMENT_NAME = re.compile(EXPERIMENT_NAME_RULE)


def check_experiment_name(name: str) -> None:
    if not _EXPERIMENT_NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid experiment name {name!r}: it must match {EXPERIMENT_NAME_RULE} "
            f"(1-{limits.MAX_EXPERIMENT_NAME_LENGTH} characters, starting with a letter or digit, "
            "then letters, digits, '_' or '-')"
        )


def require_run_id(run_id: str) -> None:
    """A request naming a run must name one (lookups; new ids also get `check_run_id`)."""
    if not run_id:
        raise InvalidArgument("run_id must not be empty")


def check_run_id(run_id: str) -> None:
    require_run_id(run_id)
    if len(run_id) > limits.MAX_RUN_ID_LENGTH:
        raise InvalidArgument(
            f"run_id of {len(run_id)} characters exceeds MAX_RUN_ID_LENGTH ({limits.MAX_RUN_ID_LENGTH})"
        )


def check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise InvalidArgument(f"unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}")


def check_display_name(value: str, field: str = "display_name") -> None:
    if len(value) > limits.MAX_DISPLAY_NAME_LENGTH:
        raise InvalidArgument(
            f"{field} of {len(value)} characters exceeds MAX_DISPLAY_NAME_LENGTH ({limits.MAX_DISPLAY_NAME_LENGTH})"
        )


def check_error_details(details_json: str) -> None:
    if not details_json:
        return
    try:
        json.loads(details_json)
    except ValueError as e:
        raise InvalidArgument(f"error.details_json is not valid JSON: {e}") from None


def truncate_error_message(message: str) -> str:
    return message[: limits.MAX_ERROR_MESSAGE_LENGTH]


def _check_pairs(what: str, pairs: Mapping[str, str | None]) -> None:
    for key, value in pairs.items():
        if not key:
            raise InvalidArgument(f"{what} keys must not be empty")
        if len(key) > limits.MAX_TAG_KEY_LENGTH:
            raise InvalidArgument(
                f"{what} key {key[:40]!r}... of {len(key)} characters exceeds MAX_TAG_KEY_LENGTH "
                f"({limits.MAX_TAG_KEY_LENGTH})"
            )
        if value is not None and len(value) > limits.MAX_TAG_VALUE_LENGTH:
            raise InvalidArgument(
                f"{what} {key!r}: value of {len(value)} characters exceeds MAX_TAG_VALUE_LENGTH "
                f"({limits.MAX_TAG_VALUE_LENGTH})"
            )


def check_tags(tags: Mapping[str, str | None]) -> None:
    _check_pairs("tag", tags)


def check_properties(properties: Mapping[str, str | None]) -> None:
    _check_pairs("property", properties)


def check_tag_count(run_id: str, count: int) -> None:
    if count > limits.MAX_TAGS_PER_RUN:
        raise InvalidArgument(
            f"run {run_id} would have {count} tags, more than MAX_TAGS_PER_RUN ({limits.MAX_TAGS_PER_RUN})"
        )


def check_property_count(run_id: str, count: int) -> None:
    if count > limits.MAX_PROPERTIES_PER_RUN:
        raise InvalidArgument(
            f"run {run_id} would have {count} properties, more than MAX_PROPERTIES_PER_RUN "
            f"({limits.MAX_PROPERTIES_PER_RUN})"
        )


def check_new_run(new: NewRun) -> None:
    """Every rule a new run's fields must meet (`Store.create_run`, `Store.submit_run`)."""
    check_experiment_name(new.experiment_name)
    check_run_id(new.run_id)
    check_status(new.status)
    check_display_name(new.display_name)
    check_tags(new.tags)
    check_properties(new.properties)
    check_tag_count(new.run_id, len(new.tags))
    check_property_count(new.run_id, len(new.properties))


def check_run_update(update: RunUpdate) -> None:
    """Every rule the fields of `Store.update_run` must meet (the run's state is the store's to check)."""
    if update.status is not None:
        check_status(update.status)
    if update.display_name is not None:
        check_display_name(update.display_name)
    if update.error is not None:
        check_error_details(update.error.details_json)


def append_warnings(stored: list[str], new: list[str]) -> list[str]:
    """`stored` plus the warnings of `new` it does not hold yet (a retried call adds nothing), keeping
    at most `MAX_WARNINGS_PER_RUN`; the last kept slot says so."""
    cap = server_limits.MAX_WARNINGS_PER_RUN
    new = [w for i, w in enumerate(new) if w not in stored and w not in new[:i]]
    if len(stored) >= cap or not new:
        return stored
    out = stored + new
    if len(out) > cap:
        out = out[: cap - 1]
        out.append(f"more warnings were not stored (MAX_WARNINGS_PER_RUN = {cap})")
    return out


# --- compute targets (issue 4) ----------------------------------------------------------------------

ACTIVE_RUN_FILTERS: dict[str, frozenset[str]] = {
    "Queued": frozenset({"NotStarted", "Queued"}),
    "Running": frozenset(RUN_STATUSES) - TERMINAL_STATUSES - {"NotStarted", "Queued"},
}
"""The status filters of `ListActiveRuns` (RUN_API.md §15) and the run statuses each one covers."""


def check_target(target: str) -> None:
    if not target:
        raise InvalidArgument("the compute target must not be empty (e.g. 'local')")
    cap = server_limits.MAX_TARGET_NAME_LENGTH
    if len(target) > cap:
        raise InvalidArgument(f"compute target name of {len(target)} characters exceeds MAX_TARGET_NAME_LENGTH ({cap})")


def active_run_statuses(filters: Iterable[str]) -> frozenset[str]:
    """The run statuses `ListActiveRuns` returns for `filters` (none: every unfinished status)."""
    filters = list(filters)
    if not filters:
        return ACTIVE_RUN_FILTERS["Queued"] | ACTIVE_RUN_FILTERS["Running"]
    out: frozenset[str] = frozenset()
    for f in filters:
        if f not in ACTIVE_RUN_FILTERS:
            raise InvalidArgument(
                f"invalid active-run status filter {f!r}: it may only be 'Running' or 'Queued' (RUN_API.md §15)"
            )
        out |= ACTIVE_RUN_FILTERS[f]
    return out
