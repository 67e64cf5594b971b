"""FakeKube answers as the API server does where the controller relies on it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmill.dispatch.clock import FakeClock
from taskmill.kube.client import ApiError, path
from taskmill.testing.fakekube import FakeKube, merge, parse_url

TASKS = path("tasks", "ns")


def task(name: str = "a", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": "echo"},
        "status": {"phase": "Succeeded"},
    }


@pytest.mark.asyncio
async def test_create_sets_what_the_server_sets_and_drops_status() -> None:
    kube = FakeKube(FakeClock(1_700_000_000))
    created = await kube.create(TASKS, task())
    meta = created["metadata"]
    assert meta["namespace"] == "ns"
    assert meta["uid"]
    assert meta["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert meta["generation"] == 1
    assert meta["resourceVersion"] == "1"
    assert "status" not in created  # the status subresource owns it
    assert await kube.get(path("tasks", "ns", "a")) == created


@pytest.mark.asyncio
async def test_a_second_create_is_already_exists() -> None:
    kube = FakeKube()
    await kube.create(TASKS, task())
    with pytest.raises(ApiError) as caught:
        await kube.create(TASKS, task())
    assert caught.value.already_exists
    assert caught.value.message == 'tasks.taskmill.dev "a" already exists'
    assert caught.value.body["code"] == 409


@pytest.mark.asyncio
async def test_missing_objects_are_not_found() -> None:
    kube = FakeKube()
    for call in (
        kube.get(path("tasks", "ns", "nope")),
        kube.merge_patch(path("tasks", "ns", "nope", "status"), {"status": {}}),
        kube.delete(path("tasks", "ns", "nope"), {}),
    ):
        with pytest.raises(ApiError) as caught:
            await call
        assert caught.value.is_not_found
        assert caught.value.reason == "NotFound"


@pytest.mark.asyncio
async def test_status_subresource_splits_what_each_url_may_change() -> None:
    kube = FakeKube()
    created = await kube.create(TASKS, task())
    url = path("tasks", "ns", "a")
    main = await kube.merge_patch(url, {"spec": {"priority": 5}, "status": {"phase": "Dead"}})
    assert "status" not in main
    assert main["spec"]["priority"] == 5
    assert main["metadata"]["generation"] == 2
    status = await kube.merge_patch(
        url + "/status", {"spec": {"priority": 1}, "status": {"phase": "Running", "x": 1}}
    )
    assert status["status"] == {"phase": "Running", "x": 1}
    assert status["spec"]["priority"] == 5
    assert status["metadata"]["generation"] == 2  # status changes leave it alone
    removed = await kube.merge_patch(url + "/status", {"status": {"x": None}})
    assert removed["status"] == {"phase": "Running"}
    assert int(removed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


@pytest.mark.asyncio
async def test_a_status_patch_with_a_stale_resource_version_is_refused() -> None:
    kube = FakeKube()
    created = await kube.create(TASKS, task())
    stale = created["metadata"]["resourceVersion"]
    url = path("tasks", "ns", "a", "status")
    fresh = await kube.merge_patch(
        url, {"metadata": {"resourceVersion": stale}, "status": {"phase": "Running"}}
    )
    with pytest.raises(ApiError) as caught:
        await kube.merge_patch(
            url, {"metadata": {"resourceVersion": stale}, "status": {"phase": "Dead"}}
        )
    assert caught.value.is_conflict
    assert not caught.value.already_exists
    assert "the object has been modified" in caught.value.message
    assert kube.object("tasks", "ns", "a") == fresh


@pytest.mark.asyncio
async def test_a_no_op_write_keeps_the_resource_version_and_tells_nobody() -> None:
    kube = FakeKube()
    created = await kube.create(TASKS, task())
    events: list[tuple[str, dict[str, Any]]] = []
    kube.listen(lambda t, o: events.append((t, o)))
    same = await kube.merge_patch(path("tasks", "ns", "a"), {"spec": {"type": "echo"}})
    await asyncio.sleep(0)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert events == []


@pytest.mark.asyncio
async def test_delete_honours_the_uid_precondition() -> None:
    kube = FakeKube()
    created = await kube.create(TASKS, task())
    url = path("tasks", "ns", "a")
    with pytest.raises(ApiError) as caught:
        await kube.delete(url, {"preconditions": {"uid": "someone-else"}})
    assert caught.value.is_conflict
    assert "Precondition failed: UID in precondition: someone-else" in caught.value.message
    assert kube.object("tasks", "ns", "a") is not None
    await kube.delete(url, {"preconditions": {"uid": created["metadata"]["uid"]}})
    assert kube.object("tasks", "ns", "a") is None


@pytest.mark.asyncio
async def test_finalizers_hold_a_deleted_object_until_they_are_gone() -> None:
    kube = FakeKube()
    obj = task()
    obj["metadata"]["finalizers"] = ["taskmill.dev/x"]
    await kube.create(TASKS, obj)
    url = path("tasks", "ns", "a")
    marked = await kube.delete(url, {})
    assert marked["metadata"]["deletionTimestamp"]
    assert kube.object("tasks", "ns", "a") is not None
    await kube.merge_patch(url, {"metadata": {"finalizers": None}})
    assert kube.object("tasks", "ns", "a") is None


@pytest.mark.asyncio
async def test_lists_filter_by_equality_label_selectors() -> None:
    kube = FakeKube()
    await kube.create(TASKS, task("a", app="x", tier="web"))
    await kube.create(TASKS, task("b", app="x"))
    await kube.create(path("tasks", "other"), task("c", app="x"))

    def names(listing: dict[str, Any]) -> list[str]:
        return [item["metadata"]["name"] for item in listing["items"]]

    assert names(await kube.get(TASKS, {"labelSelector": "app=x"})) == ["a", "b"]
    assert names(await kube.get(TASKS, {"labelSelector": "app==x,tier"})) == ["a"]
    assert names(await kube.get(TASKS, {"labelSelector": "tier!=web"})) == ["b"]
    assert names(await kube.get(TASKS, {"labelSelector": "!tier"})) == ["b"]
    everywhere = await kube.get(path("tasks"))
    assert names(everywhere) == ["a", "b", "c"]
    assert everywhere["kind"] == "TaskList"
    assert everywhere["metadata"]["resourceVersion"] == kube.resource_version


@pytest.mark.asyncio
async def test_core_objects_have_no_status_subresource() -> None:
    kube = FakeKube()
    url = path("configmaps", "ns", group="", version="v1")
    assert parse_url(url).group == ""
    await kube.create(url, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    put = await kube.request(
        "PUT",
        path("configmaps", "ns", "c", group="", version="v1"),
        body={"metadata": {"name": "c"}, "data": {"k": "w"}},
    )
    assert put["data"] == {"k": "w"}
    assert "generation" not in put["metadata"]
    event = await kube.create(
        path("events", "ns", group="", version="v1"), {"metadata": {"name": "e"}, "reason": "R"}
    )
    assert event["kind"] == "Event"
    assert [o["reason"] for o in kube.objects("events")] == ["R"]


@pytest.mark.asyncio
async def test_put_checks_the_resource_version_it_carries() -> None:
    kube = FakeKube()
    created = await kube.create(TASKS, task())
    url = path("tasks", "ns", "a")
    body = {**created, "spec": {"type": "other"}}
    replaced = await kube.request("PUT", url, body=body)
    assert replaced["spec"] == {"type": "other"}
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ApiError) as caught:
        await kube.request("PUT", url, body=body)  # the version it read is gone
    assert caught.value.is_conflict


@pytest.mark.asyncio
async def test_listeners_see_every_change_as_a_watch_event() -> None:
    kube = FakeKube()
    seen: list[tuple[str, str, str | None]] = []
    kube.listen(
        lambda t, o: seen.append(
            (t, o["metadata"]["resourceVersion"], o.get("status", {}).get("phase"))
        ),
        plural="tasks",
    )
    kube.put({**task(), "metadata": {"name": "a", "namespace": "ns"}})
    url = path("tasks", "ns", "a")
    await kube.merge_patch(url + "/status", {"status": {"phase": "Dead"}})
    await kube.delete(url, {})
    await kube.create(path("events", "ns", group="", version="v1"), {"metadata": {"name": "e"}})
    await asyncio.sleep(0)
    assert seen == [
        ("ADDED", "1", "Succeeded"),
        ("MODIFIED", "2", "Dead"),
        ("DELETED", "3", "Dead"),
    ]


@pytest.mark.asyncio
async def test_fail_makes_the_next_matching_requests_fail_and_logs_them() -> None:
    kube = FakeKube()
    kube.fail("POST", TASKS, ConnectionResetError("reset"), times=2)
    kube.fail("GET", "/api/v1", ApiError(503, "ServiceUnavailable", "etcd"))
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            await kube.create(TASKS, task())
    await kube.create(TASKS, task())
    await kube.get(TASKS)  # another prefix: not failed
    with pytest.raises(ApiError):
        await kube.get(path("secrets", "ns", "s", group="", version="v1"))
    assert kube.requests[:3] == [("POST", TASKS)] * 3
    assert kube.writes() == [("POST", TASKS)] * 3


def test_merge_is_rfc_7386() -> None:
    # The examples of RFC 7386, appendix A (a few).
    assert merge({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge({"a": "b"}, {"a": None}) == {}
    assert merge({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge({"a": "foo"}, "bar") == "bar"
    assert merge({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(st.text(max_size=2), JSON, max_size=4),
    st.dictionaries(st.text(max_size=2), JSON, max_size=4),
)
def test_a_merge_patch_applied_twice_is_applied_once(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    once = merge(target, patch)
    assert merge(once, patch) == once
    for key, value in patch.items():  # what the patch names is as it says, or gone
        if value is None:
            assert key not in once
        elif not isinstance(value, dict):
            assert once[key] == value
