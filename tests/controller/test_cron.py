"""CronController against a fake API with a fake clock: catch-up after a
restart, the starting deadline, duplicate slots, Forbid, bad schedules."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any, cast

import pytest

from taskmill.controller.cron import CronController
from taskmill.controller.events import EventRecorder
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import FakeClock
from taskmill.dispatch.transitions import iso
from taskmill.kube.client import ApiError, KubeClient
from tests.controller.conditions import until

pytestmark = pytest.mark.asyncio

NOW = 1_700_000_105.0  # @every 10s slots fall on ...080, ...090, ...100, ...110
CRON_URL = "/apis/taskmill.dev/v1alpha1/namespaces/ns/crontasks/nightly"


class FakeApi:
    """Records writes; answers like the API server would."""

    def __init__(self, crontask: dict[str, Any]) -> None:
        self.crontask = crontask
        self.tasks: dict[str, dict[str, Any]] = {}
        self.creates: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.closed = False
        #: Raised by the next creates of a Task, in order (then they succeed).
        self.create_failures: list[Exception] = []
        #: Called before each create of a Task is answered.
        self.before_create: Callable[[], None] = lambda: None

    async def create(self, url: str, body: dict[str, Any]) -> Any:
        if url.endswith("/events"):
            self.events.append(body)
            return body
        name = body["metadata"]["name"]
        self.creates.append(name)
        self.before_create()
        if self.create_failures:
            raise self.create_failures.pop(0)
        if name in self.tasks:
            raise ApiError(409, "AlreadyExists", f"{name} exists")
        created = copy.deepcopy(body)
        created["metadata"]["uid"] = f"uid-{name}"
        self.tasks[name] = created
        return created

    async def merge_patch(self, url: str, patch: dict[str, Any]) -> Any:
        assert url == CRON_URL + "/status", url
        assert patch["metadata"]["resourceVersion"] == self.crontask["metadata"]["resourceVersion"]
        self.status_patches.append(patch["status"])
        status = self.crontask.setdefault("status", {})
        for key, value in patch["status"].items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        meta = self.crontask["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(self.crontask)

    async def get(self, url: str) -> Any:
        return copy.deepcopy(self.crontask)

    async def delete(self, url: str, body: Any = None) -> Any:
        return None

    async def close(self) -> None:
        self.closed = True


def crontask(schedule: str = "@every 10s", **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "CronTask",
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": "cron-uid",
            "resourceVersion": "7",
            "generation": 1,
            "creationTimestamp": "2023-11-14T22:00:00Z",
        },
        "spec": {"schedule": schedule, "taskTemplate": {"spec": {"type": "echo"}}, **spec},
        "status": status,
    }


async def settle() -> None:
    """Let spawned actions run to completion (no real I/O, so a few turns suffice)."""
    for _ in range(50):
        await asyncio.sleep(0)


#: Retries without waiting long: the fake clock does not move while they wait.
QUICK_RETRY = BackoffPolicy(initial_seconds=0.001, factor=2, max_seconds=0.01, jitter=0)


async def running(
    api: FakeApi, clock: FakeClock | None = None
) -> tuple[CronController, asyncio.Task[None]]:
    client = cast(KubeClient, api)
    controller = CronController(
        client,
        EventRecorder(client, per_second=100, component="test"),
        clock=clock or FakeClock(NOW),
        create_retry=QUICK_RETRY,
    )
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0)
    controller.observe("ADDED", copy.deepcopy(api.crontask))
    return controller, task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_after_a_restart_the_newest_missed_slot_inside_the_deadline_runs_once() -> None:
    last = iso(1_700_000_070)
    api = FakeApi(crontask(startingDeadlineSeconds=30, status={"lastScheduleTime": last}))

    _, task = await running(api)
    await until(lambda: bool(api.creates))
    await until(lambda: api.crontask["status"].get("lastScheduleTime") != last)
    await settle()
    await stop(task)

    assert api.creates == ["nightly-1700000100"]
    status = api.crontask["status"]
    assert status["lastScheduleTime"] == iso(1_700_000_100)
    assert status["nextScheduleTime"] == iso(1_700_000_110)
    assert status["active"] == [{"name": "nightly-1700000100", "uid": "uid-nightly-1700000100"}]
    child = api.tasks["nightly-1700000100"]
    assert child["metadata"]["ownerReferences"][0]["uid"] == "cron-uid"
    assert child["metadata"]["annotations"]["taskmill.dev/scheduled-at"] == iso(1_700_000_100)


async def test_a_slot_older_than_the_deadline_is_skipped_with_a_warning() -> None:
    api = FakeApi(
        crontask(startingDeadlineSeconds=3, status={"lastScheduleTime": iso(1_700_000_070)})
    )

    _, task = await running(api)
    await until(lambda: bool(api.events))
    await settle()
    await stop(task)

    assert api.creates == []
    assert [e["reason"] for e in api.events] == ["MissedSchedule"]
    assert api.crontask["status"]["lastScheduleTime"] == iso(1_700_000_100)


async def test_a_slot_another_replica_created_is_a_no_op() -> None:
    api = FakeApi(crontask(status={"lastScheduleTime": iso(1_700_000_090)}))
    api.tasks["nightly-1700000100"] = {"metadata": {"name": "nightly-1700000100"}}

    _, task = await running(api)
    await until(lambda: api.crontask["status"].get("lastScheduleTime") == iso(1_700_000_100))
    await settle()
    await stop(task)

    assert api.creates == ["nightly-1700000100"]  # tried once, 409, not again
    assert api.events == []


async def test_a_create_that_fails_on_the_way_is_retried_until_the_child_exists() -> None:
    api = FakeApi(crontask(status={"lastScheduleTime": iso(1_700_000_090)}))
    api.create_failures = [
        ConnectionResetError("connection reset by peer"),
        ApiError(503, "ServiceUnavailable", "etcd leader changed"),
    ]

    _, task = await running(api)
    await until(lambda: api.crontask["status"].get("lastScheduleTime") == iso(1_700_000_100))
    await settle()
    await stop(task)

    assert api.creates == ["nightly-1700000100"] * 3
    assert list(api.tasks) == ["nightly-1700000100"]
    assert api.events == []


async def test_a_refused_create_is_not_retried_and_says_why() -> None:
    api = FakeApi(crontask(status={"lastScheduleTime": iso(1_700_000_090)}))
    api.create_failures = [ApiError(403, "Forbidden", "tasks is forbidden")]

    _, task = await running(api)
    await until(lambda: bool(api.events))
    await settle()
    await stop(task)

    assert api.creates == ["nightly-1700000100"]
    assert [(e["reason"], e["message"]) for e in api.events] == [
        ("FailedCreate", "403 Forbidden: tasks is forbidden")
    ]
    assert api.tasks == {}


async def test_retrying_a_create_stops_when_the_next_slot_is_due() -> None:
    api = FakeApi(crontask(status={"lastScheduleTime": iso(1_700_000_090)}))
    clock = FakeClock(NOW)
    api.create_failures = [ConnectionResetError("reset")] * 100

    def time_passes() -> None:  # each attempt takes a second of the 10 s period
        clock.advance(1)

    api.before_create = time_passes

    _, task = await running(api, clock)
    await until(lambda: bool(api.events))
    await settle()
    await stop(task)

    # Slot 100's attempts end the clock at 106, 107, 108, 109 and 110: then
    # slot 110 is due, gets the timer, and is tried on its own.
    assert api.creates[:6] == ["nightly-1700000100"] * 5 + ["nightly-1700000110"]
    assert api.events[0]["reason"] == "FailedCreate"
    assert api.tasks == {}


async def test_forbid_skips_the_slot_while_a_child_is_active() -> None:
    api = FakeApi(
        crontask(concurrencyPolicy="Forbid", status={"lastScheduleTime": iso(1_700_000_090)})
    )
    client = cast(KubeClient, api)
    controller = CronController(
        client, EventRecorder(client, per_second=100, component="test"), clock=FakeClock(NOW)
    )
    controller.observe_task(
        "ADDED",
        {
            "metadata": {
                "name": "nightly-1700000090",
                "namespace": "ns",
                "uid": "child-uid",
                "annotations": {"taskmill.dev/scheduled-at": iso(1_700_000_090)},
                "ownerReferences": [
                    {"kind": "CronTask", "name": "nightly", "uid": "cron-uid", "controller": True}
                ],
            },
            "status": {"phase": "Running"},
        },
    )
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0)
    controller.observe("ADDED", copy.deepcopy(api.crontask))
    await until(lambda: api.crontask["status"].get("lastScheduleTime") == iso(1_700_000_100))
    await settle()
    await stop(task)

    assert api.creates == []
    assert api.crontask["status"]["active"] == [{"name": "nightly-1700000090", "uid": "child-uid"}]


@pytest.mark.parametrize(
    ("schedule", "zone", "reason"),
    [
        ("61 * * * *", None, "InvalidSchedule"),
        ("30-10 * * * *", None, "InvalidSchedule"),
        ("0 0 30 2 *", None, "InvalidSchedule"),
        ("@every 8785h", None, "InvalidSchedule"),
        ("@daily", "Nowhere/Atlantis", "InvalidTimeZone"),
    ],
)
async def test_a_bad_schedule_is_a_condition_and_one_warning(
    schedule: str, zone: str | None, reason: str
) -> None:
    spec = {"timeZone": zone} if zone else {}
    api = FakeApi(crontask(schedule, **spec))

    controller, task = await running(api)
    await until(lambda: bool(api.crontask["status"].get("conditions")))
    await settle()
    # The echo of our own write changes nothing: no second write, no second Event.
    writes = len(api.status_patches)
    controller.observe("MODIFIED", copy.deepcopy(api.crontask))
    await settle()
    await stop(task)

    condition = api.crontask["status"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "ScheduleValid",
        "False",
        reason,
    )
    assert [e["reason"] for e in api.events] == [reason]
    assert len(api.status_patches) == writes == 1
    assert api.creates == []


async def test_a_stored_schedule_the_crd_now_refuses_still_gets_its_condition() -> None:
    # Applied before the CRD checked field ranges: the model's pattern fails,
    # the parser says why, and the CronTask is not silently dropped.
    api = FakeApi(crontask("60 * * * *"))

    _, task = await running(api)
    await until(lambda: bool(api.crontask["status"].get("conditions")))
    await settle()
    await stop(task)

    condition = api.crontask["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSchedule")
    assert "minute" in condition["message"]
    assert api.creates == []


async def test_a_schedule_that_cannot_be_computed_is_a_condition_and_one_warning() -> None:
    # A last slot near the end of the calendar: no next slot can be computed.
    api = FakeApi(crontask("0 0 1 1 *", status={"lastScheduleTime": "9999-06-01T00:00:00Z"}))

    controller, task = await running(api)
    await until(lambda: bool(api.crontask["status"].get("conditions")))
    await settle()
    controller.observe("MODIFIED", copy.deepcopy(api.crontask))
    await settle()
    await stop(task)

    condition = api.crontask["status"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "ScheduleValid",
        "False",
        "ScheduleNotComputable",
    )
    assert [e["reason"] for e in api.events] == ["ScheduleNotComputable"]
    assert "nextScheduleTime" not in api.crontask["status"]
    assert api.creates == []
