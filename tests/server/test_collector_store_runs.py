"""The SQLite store alone: experiments, runs, statuses, tags and properties."""

from __future__ import annotations

import pytest

from runwire import limits
from runwire.server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from runwire.server.records import NewRun, RunErrorRecord, RunQuery, RunUpdate
from runwire.server.store.sqlite import SqliteStore


async def new_run(store: SqliteStore, run_id: str, experiment: str = "exp", **kwargs):
    kwargs.setdefault("status", "Running")
    return await store.create_run(NewRun(experiment_name=experiment, run_id=run_id, **kwargs))


# --- experiments ------------------------------------------------------------------------------------


async def test_experiment_get_or_create_is_idempotent(store):
    a = await store.get_or_create_experiment("train-within-notebook")
    b = await store.get_or_create_experiment("train-within-notebook")
    c = await store.get_or_create_experiment("Other_1")
    assert a == b
    assert a.id != c.id
    assert a.created_time > 0
    assert [e.name for e in await store.list_experiments()] == ["train-within-notebook", "Other_1"]
    assert [e.name for e in await store.list_experiments("Other_1")] == ["Other_1"]
    assert await store.list_experiments("missing") == []


@pytest.mark.parametrize("name", ["", "has space", "_leading", "-leading", "a" * 256, "ok\n", "dot.ted"])
async def test_experiment_name_rule(store, name):
    with pytest.raises(InvalidArgument, match=r"\[a-zA-Z0-9\]"):
        await store.get_or_create_experiment(name)


async def test_experiment_name_at_the_length_limit(store):
    assert (await store.get_or_create_experiment("a" * 255)).name == "a" * 255


# --- creating runs ------------------------------------------------------------------------------------


async def test_create_run_numbers_times_and_fields(store):
    r1 = await new_run(store, "r1", display_name="first", description="d", type="azureml.scriptrun", target="local")
    r2 = await new_run(store, "r2", status="NotStarted")
    other = await new_run(store, "o1", experiment="other")
    assert (r1.number, r2.number, other.number) == (1, 2, 1)
    assert r1.experiment_name == "exp" and r1.experiment_id == r2.experiment_id
    assert (r1.display_name, r1.description, r1.type, r1.target) == ("first", "d", "azureml.scriptrun", "local")
    assert r1.status == "Running" and r1.start_time is not None and r1.start_time >= r1.created_time
    assert r2.status == "NotStarted" and r2.start_time is None and r2.end_time is None
    assert r1.parent_run_id is None and r1.error is None and r1.warnings == []
    assert await store.get_run("r1") == r1
    assert await store.count_runs() == 3


async def test_create_run_with_tags_and_properties(store):
    run = await new_run(store, "r", tags={"a": "1", "flag": None}, properties={"p": "v"})
    assert run.tags == {"a": "1", "flag": None}
    assert run.properties == {"p": "v"}


async def test_create_run_refusals(store):
    await new_run(store, "taken")
    with pytest.raises(AlreadyExists, match="taken"):
        await new_run(store, "taken")
    with pytest.raises(InvalidArgument, match="MAX_RUN_ID_LENGTH"):
        await new_run(store, "x" * (limits.MAX_RUN_ID_LENGTH + 1))
    with pytest.raises(NotFound, match="parent run nope"):
        await new_run(store, "child", parent_run_id="nope")
    with pytest.raises(InvalidArgument, match="belongs to experiment 'exp'"):
        await new_run(store, "child", experiment="elsewhere", parent_run_id="taken")
    with pytest.raises(InvalidArgument, match="unknown run status 'Done'"):
        await new_run(store, "s", status="Done")
    with pytest.raises(InvalidArgument, match="MAX_DISPLAY_NAME_LENGTH"):
        await new_run(store, "d", display_name="n" * (limits.MAX_DISPLAY_NAME_LENGTH + 1))
    with pytest.raises(InvalidArgument, match="experiment name"):
        await new_run(store, "e", experiment="bad name")
    with pytest.raises(NotFound):
        await store.get_run("child")
    # a refused creation used no number
    assert (await new_run(store, "next")).number == 2


async def test_child_runs_are_numbered_in_the_experiment(store):
    parent = await new_run(store, "parent", name="train")
    child = await new_run(store, "child", parent_run_id="parent", name="train>fold1")
    assert child.parent_run_id == "parent" and child.number == parent.number + 1
    assert child.name == "train>fold1"


# --- listing --------------------------------------------------------------------------------------------


async def test_list_runs_top_level_children_and_subtree(store):
    await new_run(store, "a")
    await new_run(store, "a1", parent_run_id="a")
    await new_run(store, "a2", parent_run_id="a")
    await new_run(store, "a1x", parent_run_id="a1")
    await new_run(store, "b")
    await new_run(store, "z", experiment="other")

    def ids(runs):
        return [r.run_id for r in runs]

    assert ids(await store.list_runs(RunQuery(experiment_name="exp"))) == ["b", "a"]
    assert ids(await store.list_runs(RunQuery(experiment_name="exp", include_children=True))) == [
        "b",
        "a1x",
        "a2",
        "a1",
        "a",
    ]
    assert ids(await store.list_runs(RunQuery(parent_run_id="a"))) == ["a2", "a1"]
    assert ids(await store.list_runs(RunQuery(parent_run_id="a", recursive=True))) == ["a1x", "a2", "a1"]
    assert ids(await store.list_runs(RunQuery(parent_run_id="a1x"))) == []
    assert ids(await store.list_runs(RunQuery())) == ["z", "b", "a"]
    assert ids(await store.list_runs(RunQuery(experiment_name="missing"))) == []
    with pytest.raises(NotFound):
        await store.list_runs(RunQuery(parent_run_id="nope"))


async def test_list_runs_filters(store):
    await new_run(store, "r1", type="azureml.scriptrun", tags={"best": None, "rank": "1"}, properties={"p": "x"})
    await new_run(store, "r2", status="Completed", tags={"rank": "2"}, properties={"p": "y"})
    await new_run(store, "r3", status="Failed")

    async def ids(**kw):
        return [r.run_id for r in await store.list_runs(RunQuery(experiment_name="exp", **kw))]

    assert await ids(statuses=["Completed", "Failed"]) == ["r3", "r2"]
    assert await ids(type="azureml.scriptrun") == ["r1"]
    assert await ids(tags={"rank": None}) == ["r2", "r1"]
    assert await ids(tags={"rank": "2"}) == ["r2"]
    assert await ids(tags={"best": None, "rank": "1"}) == ["r1"]
    assert await ids(tags={"best": "1"}) == []
    assert await ids(properties={"p": "y"}) == ["r2"]
    assert await ids(properties={"p": None}) == ["r2", "r1"]


# --- status and updates ------------------------------------------------------------------------------


async def test_status_transitions(store):
    run = await new_run(store, "r", status="NotStarted")
    assert run.start_time is None
    run = await store.update_run(RunUpdate("r", status="Queued"))
    assert run.status == "Queued" and run.start_time is None
    run = await store.update_run(RunUpdate("r", status="Running"))
    started = run.start_time
    assert started is not None and run.end_time is None
    run = await store.update_run(RunUpdate("r", status="Finalizing"))
    run = await store.update_run(RunUpdate("r", status="Running"))
    assert run.start_time == started  # set once
    run = await store.update_run(RunUpdate("r", status="Completed"))
    assert run.status == "Completed" and run.end_time is not None and run.end_time >= started
    ended = run.end_time
    again = await store.update_run(RunUpdate("r", status="Completed"))
    assert again.status == "Completed" and again.end_time == ended
    with pytest.raises(FailedPrecondition, match="run r is already Completed"):
        await store.update_run(RunUpdate("r", status="Failed"))
    with pytest.raises(FailedPrecondition):
        await store.update_run(RunUpdate("r", status="Running", display_name="ignored"))
    run = await store.get_run("r")
    assert run.status == "Completed" and run.display_name == ""


@pytest.mark.parametrize("terminal", ["Completed", "Failed", "Canceled"])
async def test_terminal_statuses_set_end_time(store, terminal):
    await new_run(store, "r")
    run = await store.update_run(RunUpdate("r", status=terminal))
    assert run.end_time is not None
    with pytest.raises(FailedPrecondition, match=f"already {terminal}"):
        await store.update_run(RunUpdate("r", status="Running"))


async def test_update_fields_error_and_warnings(store):
    await new_run(store, "r")
    long_message = "m" * (limits.MAX_ERROR_MESSAGE_LENGTH + 50)
    run = await store.update_run(
        RunUpdate(
            "r",
            status="Failed",
            display_name="shown",
            description="about",
            error=RunErrorRecord("UserError", long_message, '{"stack": []}'),
            warnings=["w1"],
        )
    )
    assert (run.display_name, run.description) == ("shown", "about")
    assert run.error.code == "UserError" and run.error.message == "m" * limits.MAX_ERROR_MESSAGE_LENGTH
    assert run.error.details_json == '{"stack": []}'
    run = await store.update_run(RunUpdate("r", warnings=["w2"]))
    assert run.warnings == ["w1", "w2"]
    with pytest.raises(InvalidArgument, match="details_json"):
        await store.update_run(RunUpdate("r", error=RunErrorRecord("E", "m", "{not json")))
    with pytest.raises(InvalidArgument, match="unknown run status"):
        await store.update_run(RunUpdate("r", status="Cancelled"))
    with pytest.raises(NotFound):
        await store.update_run(RunUpdate("nope", status="Running"))


async def test_run_warnings_are_capped(store, monkeypatch):
    from runwire.server import limits as server_limits

    monkeypatch.setattr(server_limits, "MAX_WARNINGS_PER_RUN", 3)
    await new_run(store, "r")
    run = await store.update_run(RunUpdate("r", warnings=["a", "b", "c", "d"]))
    assert run.warnings[:2] == ["a", "b"] and "MAX_WARNINGS_PER_RUN" in run.warnings[2]
    run = await store.update_run(RunUpdate("r", warnings=["e"]))
    assert len(run.warnings) == 3


# --- tags and properties -----------------------------------------------------------------------------


async def test_tags_merge_overwrite_valueless_and_remove(store):
    await new_run(store, "r")
    run = await store.set_tags("r", {"My Favorite Run": None, "Competition Rank": "1"}, [])
    assert run.tags == {"My Favorite Run": None, "Competition Rank": "1"}
    run = await store.set_tags("r", {"Competition Rank": "2", "new": ""}, [])
    assert run.tags == {"My Favorite Run": None, "Competition Rank": "2", "new": ""}
    run = await store.set_tags("r", {}, ["My Favorite Run", "not-there"])
    assert run.tags == {"Competition Rank": "2", "new": ""}
    with pytest.raises(NotFound):
        await store.set_tags("nope", {"a": "b"}, [])


async def test_tag_limits(store, monkeypatch):
    await new_run(store, "r")
    with pytest.raises(InvalidArgument, match="MAX_TAG_KEY_LENGTH"):
        await store.set_tags("r", {"k" * (limits.MAX_TAG_KEY_LENGTH + 1): "v"}, [])
    with pytest.raises(InvalidArgument, match="MAX_TAG_VALUE_LENGTH"):
        await store.set_tags("r", {"k": "v" * (limits.MAX_TAG_VALUE_LENGTH + 1)}, [])
    with pytest.raises(InvalidArgument, match="empty"):
        await store.set_tags("r", {"": "v"}, [])
    monkeypatch.setattr(limits, "MAX_TAGS_PER_RUN", 2)
    await store.set_tags("r", {"a": "1", "b": "2"}, [])
    with pytest.raises(InvalidArgument, match="MAX_TAGS_PER_RUN"):
        await store.set_tags("r", {"c": "3"}, [])
    run = await store.set_tags("r", {"c": "3"}, ["a"])  # the count after removals is what counts
    assert run.tags == {"b": "2", "c": "3"}


async def test_properties_are_immutable(store, monkeypatch):
    await new_run(store, "r")
    run = await store.add_properties("r", {"ContentSnapshotId": "abc", "azureml.runsource": "experiment"})
    assert run.properties == {"ContentSnapshotId": "abc", "azureml.runsource": "experiment"}
    run = await store.add_properties("r", {"ContentSnapshotId": "abc"})  # same value again is fine
    run = await store.add_properties("r", {})
    assert run.properties["ContentSnapshotId"] == "abc"
    with pytest.raises(AlreadyExists, match="'ContentSnapshotId'"):
        await store.add_properties("r", {"ContentSnapshotId": "other", "fresh": "x"})
    assert "fresh" not in (await store.get_run("r")).properties  # nothing of a refused call is kept
    monkeypatch.setattr(limits, "MAX_PROPERTIES_PER_RUN", 3)
    await store.add_properties("r", {"third": "3"})
    with pytest.raises(InvalidArgument, match="MAX_PROPERTIES_PER_RUN"):
        await store.add_properties("r", {"fourth": "4"})
    with pytest.raises(InvalidArgument, match="MAX_TAG_KEY_LENGTH"):
        await store.add_properties("r", {"k" * (limits.MAX_TAG_KEY_LENGTH + 1): "v"})
    with pytest.raises(NotFound):
        await store.add_properties("nope", {"a": "b"})


async def test_data_survives_reopening(tmp_path):
    path = tmp_path / "db.sqlite3"
    s = SqliteStore(path)
    await s.open()
    await new_run(s, "r", tags={"t": "v"})
    await s.close()
    s = SqliteStore(path)
    await s.open()
    try:
        run = await s.get_run("r")
        assert run.tags == {"t": "v"}
        assert (await new_run(s, "r2")).number == 2
    finally:
        await s.close()
