"""What the studio's HTTP handlers need from the collector, handed to `build_app` as one object
(so that routes added later need no new `build_app` parameters)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runwire.server.agents import AgentReports
from runwire.server.blobstore import ArtifactStore
from runwire.server.bus import LiveBus
from runwire.server.store.base import Store


@dataclass
class StudioContext:
    store: Store
    live: LiveBus
    blobs: Callable[[], ArtifactStore | None]
    """The collector's artifact store (None until the collector has one)."""
    agents: AgentReports | None = None
    """The agents' last health reports (GET /api/v1/agents)."""
