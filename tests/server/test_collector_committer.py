"""Group commit: requests that wait while the store commits are committed together, in order."""

from __future__ import annotations

import asyncio

import pytest
from collector_helpers import wait_for

from runwire.server.committer import CommitterClosed, GroupCommitter
from runwire.server.records import BatchInput, IngestOutcome, IngestUnit
from runwire.server.telemetry import Telemetry


class SlowStore:
    """Records each commit group; each commit waits until the test releases it."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail = False

    async def commit(self, units):
        self.groups.append([u.batches[0].seq for u in units])
        await self.release.wait()
        self.release.clear()
        if self.fail:
            raise RuntimeError("disk full")
        return [IngestOutcome(batches_committed=1) for _ in units]


def unit(seq: int) -> IngestUnit:
    return IngestUnit([BatchInput("p", seq, [])])


async def test_waiting_requests_are_committed_as_one_group():
    store = SlowStore()
    committer = GroupCommitter(store, Telemetry())
    committer.start()
    first = committer.submit(unit(1))
    await wait_for(lambda: store.groups == [[1]])
    later = [committer.submit(unit(s)) for s in (2, 3, 4)]
    store.release.set()
    assert (await first).batches_committed == 1
    await wait_for(lambda: len(store.groups) == 2)
    assert store.groups[1] == [2, 3, 4]
    store.release.set()
    assert all(o.batches_committed == 1 for o in await asyncio.gather(*later))
    await committer.stop()


async def test_stop_commits_what_was_submitted_then_refuses():
    store = SlowStore()
    telemetry = Telemetry()
    committer = GroupCommitter(store, telemetry)
    committer.start()
    futures = [committer.submit(unit(s)) for s in (1, 2)]
    stopping = asyncio.create_task(committer.stop())
    await wait_for(lambda: len(store.groups) == 1)
    store.release.set()
    await stopping
    assert all(f.done() and f.result().batches_committed == 1 for f in futures)
    assert telemetry.batches_committed == 2 and telemetry.requests_committed == 2
    with pytest.raises(CommitterClosed):
        committer.submit(unit(3))


async def test_a_failed_commit_fails_its_group_only():
    store = SlowStore()
    committer = GroupCommitter(store, Telemetry())
    committer.start()
    store.fail = True
    failing = committer.submit(unit(1))
    await wait_for(lambda: len(store.groups) == 1)
    store.release.set()
    with pytest.raises(RuntimeError, match="disk full"):
        await failing
    store.fail = False
    ok = committer.submit(unit(2))
    await wait_for(lambda: len(store.groups) == 2)
    store.release.set()
    assert (await ok).batches_committed == 1
    await committer.stop()
