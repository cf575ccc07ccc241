"""Compute targets and their queued and active runs (RUN_API.md §15).

A compute target is a name; the agents started with `runwire agent --compute-target NAME` are its
nodes (`runwire up`'s agent is a node of `local`). `ComputeTarget(workspace, name)` and
`Run.list_by_compute(target)` list the target's unfinished runs (children included, newest
first) as lightweight `ActiveRunRecord`s, not `Run` objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runwire.exceptions import UserErrorException

if TYPE_CHECKING:
    from runwire.v1 import compute_pb2
    from runwire.workspace import Workspace

ACTIVE_RUN_STATUSES = ("Running", "Queued")
"""The `status` filters of `get_active_runs` / `list_by_compute`: "Running" is every started,
unfinished status (Preparing, Running, Finalizing, CancelRequested, ...); "Queued" is NotStarted
and Queued."""


@dataclass(frozen=True)
class ActiveRunRecord:
    """One unfinished run of a compute target. Fields are attributes, and also readable as
    `record["run_id"]` (Azure ML returns these records as dicts)."""

    run_id: str
    status: str
    experiment_id: str
    experiment_name: str
    target: str
    node_id: str | None
    parent_run_id: str | None
    type: str | None
    created_time: float
    tags: dict[str, str | None] = field(default_factory=dict)
    properties: dict[str, str | None] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__dataclass_fields__ else default

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)

    def __contains__(self, key: object) -> bool:
        return key in self.__dataclass_fields__

    @classmethod
    def _from_proto(cls, a: compute_pb2.ActiveRun) -> ActiveRunRecord:
        def kv(items: Any) -> dict[str, str | None]:
            return {x.key: (x.value if x.HasField("value") else None) for x in items}

        return cls(
            run_id=a.run_id,
            status=a.status,
            experiment_id=a.experiment_id,
            experiment_name=a.experiment_name,
            target=a.target,
            node_id=a.node_id or None,
            parent_run_id=a.parent_run_id or None,
            type=a.type or None,
            created_time=a.created_time,
            tags=kv(a.tags),
            properties=kv(a.properties),
        )


def _matches(have: dict[str, str | None], spec: str | dict[str, Any] | None) -> bool:
    """Azure's filters: a str means "has this key", a dict "key equals value" (None: has the key)."""
    if spec is None:
        return True
    if isinstance(spec, str):
        return spec in have
    if isinstance(spec, dict):
        return all(k in have and (v is None or have[k] == str(v)) for k, v in spec.items())
    return all(k in have for k in spec)


def active_runs(
    workspace: Workspace,
    target: str,
    type: str | None = None,
    tags: str | dict[str, Any] | None = None,
    properties: str | dict[str, Any] | None = None,
    status: str | None = None,
) -> Iterator[ActiveRunRecord]:
    """The unfinished runs of `target`, newest first, filtered as `get_active_runs` says (a bad
    `status` raises at the call, not at the first iteration)."""
    if status is not None and status not in ACTIVE_RUN_STATUSES:
        raise UserErrorException(f"status must be one of {', '.join(ACTIVE_RUN_STATUSES)} (or None), got {status!r}")
    return _filtered(
        workspace._transport.list_active_runs(target, [status] if status else None), type, tags, properties
    )


def _filtered(
    records: list[compute_pb2.ActiveRun],
    type: str | None,
    tags: str | dict[str, Any] | None,
    properties: str | dict[str, Any] | None,
) -> Iterator[ActiveRunRecord]:
    for a in records:
        r = ActiveRunRecord._from_proto(a)
        if type is not None and r.type != type:
            continue
        if _matches(r.tags, tags) and _matches(r.properties, properties):
            yield r


class ComputeTarget:
    """A compute target of the workspace: the agents (nodes) that joined it and its runs.

    `ComputeTarget(workspace, name)` does not fail for a target no agent has joined yet: runs
    submitted to it wait `Queued` until one does."""

    def __init__(self, workspace: Workspace, name: str, **kwargs: Any) -> None:
        if not isinstance(name, str) or not name:
            raise UserErrorException(f"compute target name must be a non-empty str, got {name!r}")
        self._workspace = workspace
        self.name = name

    @property
    def workspace(self) -> Workspace:
        return self._workspace

    @property
    def type(self) -> str:
        return "runwire"

    def _info(self) -> compute_pb2.ComputeTargetInfo | None:
        for t in self._workspace._transport.list_compute_targets(self.name):
            if t.name == self.name:
                return t
        return None

    @property
    def nodes(self) -> list[dict[str, Any]]:
        """The target's nodes: node_id, slots, busy, hostname, connected, last_seen, run_ids."""
        info = self._info()
        if info is None:
            return []
        return [
            {
                "node_id": n.node_id,
                "slots": n.slots,
                "busy": n.busy,
                "hostname": n.hostname,
                "connected": n.connected,
                "last_seen": n.last_seen,
                "run_ids": list(n.run_ids),
            }
            for n in info.nodes
        ]

    def get_status(self) -> dict[str, Any]:
        """Slots of the connected nodes, and how many runs are queued and active."""
        info = self._info()
        if info is None:
            return {"name": self.name, "nodes": 0, "slots": 0, "queued": 0, "active": 0}
        connected = sum(1 for n in info.nodes if n.connected)
        return {
            "name": self.name,
            "nodes": connected,
            "slots": info.slots,
            "queued": info.queued,
            "active": info.active,
        }

    def get_active_runs(
        self,
        type: str | None = None,
        tags: str | dict[str, Any] | None = None,
        properties: str | dict[str, Any] | None = None,
        status: str | None = None,
    ) -> Iterator[ActiveRunRecord]:
        """Generator of the target's unfinished runs (children included, newest first) as
        lightweight records; `status` may only be "Running" or "Queued"."""
        return active_runs(self._workspace, self.name, type, tags, properties, status)

    @staticmethod
    def list(workspace: Workspace) -> list[ComputeTarget]:
        """Every compute target the collector knows (one that an agent has joined)."""
        return [ComputeTarget(workspace, t.name) for t in workspace._transport.list_compute_targets()]

    def __repr__(self) -> str:
        return f"ComputeTarget(workspace={self._workspace.name!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ComputeTarget) and other.name == self.name and other._workspace is self._workspace

    def __hash__(self) -> int:
        return hash(self.name)


__all__ = ["ACTIVE_RUN_STATUSES", "ActiveRunRecord", "ComputeTarget"]
