"""CronController driven by FakeKube and a fake clock: fires, concurrency
policies, missed slots, suspend, pruning, bad schedules, retried creates and
status conflicts, each with the writes it costs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from taskmill.controller.cron import CronController
from taskmill.controller.effects import Effects
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import FakeClock
from taskmill.dispatch.transitions import iso
from taskmill.kube.client import ApiError, path
from taskmill.testing.fakekube import FakeKube

pytestmark = pytest.mark.asyncio

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SLOT = 1_700_002_800.0  # 23:00, the next slot of "0 * * * *"
HOUR = 3600.0
TASKS = path("tasks", "ns")
CRON = path("crontasks", "ns", "hourly")
#: Long enough that a retry can only come from the fake clock moving.
RETRY = BackoffPolicy(initial_seconds=30, factor=2, max_seconds=120, jitter=0)


@dataclass
class Harness:
    kube: FakeKube
    clock: FakeClock
    controller: CronController
    lags: list[float]
    #: Stop delivering watch events (of Tasks, of CronTasks) to the controller.
    unwatch: dict[str, Callable[[], None]]
    leading: asyncio.Task[None] | None = None

    def lead(self) -> None:
        self.leading = asyncio.create_task(self.controller.run())

    async def step_down(self) -> None:
        assert self.leading is not None
        self.leading.cancel()
        await asyncio.gather(self.leading, return_exceptions=True)
        self.leading = None

    def watch(self, plural: str) -> None:
        observe = self.controller.observe_task if plural == "tasks" else self.controller.observe
        self.unwatch[plural] = self.kube.listen(observe, plural=plural)

    async def settle(self) -> None:
        """Until quiet: watch events delivered, every step's effects done."""
        for _ in range(200):
            before = len(self.kube.requests)
            await asyncio.sleep(0)  # hand over the watch events of the last writes
            await self.controller.idle()
            await asyncio.sleep(0)
            if len(self.kube.requests) == before:
                return
        raise AssertionError("the controller does not come to rest")

    async def at(self, when: float) -> None:
        """Move the clock to ``when`` and let what is due happen."""
        self.clock.set(when)
        self.controller.tick()
        await self.settle()

    def status(self) -> dict[str, Any]:
        obj = self.kube.object("crontasks", "ns", "hourly")
        assert obj is not None
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def children(self) -> list[str]:
        return [t["metadata"]["name"] for t in self.kube.objects("tasks", "ns")]

    def events(self) -> list[str]:
        return [e["reason"] for e in self.kube.objects("events", "ns")]

    def writes_since(self, mark: int) -> list[tuple[str, str]]:
        return [(m, u) for m, u in self.kube.requests[mark:] if m != "GET"]


def crontask(
    schedule: str = "0 * * * *", status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "CronTask",
        "metadata": {
            "name": "hourly",
            "namespace": "ns",
            "uid": "cron-uid",
            "creationTimestamp": iso(START),
        },
        "spec": {"schedule": schedule, "taskTemplate": {"spec": {"type": "echo"}}, **spec},
        "status": status or {},
    }


def child(
    slot: float, phase: str, uid: str | None = None, finished: float | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if finished is not None:
        status["finishedAt"] = iso(finished)
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": f"hourly-{int(slot)}",
            "namespace": "ns",
            "uid": uid or f"uid-{int(slot)}",
            "labels": {"taskmill.dev/crontask": "hourly"},
            "annotations": {"taskmill.dev/scheduled-at": iso(slot)},
            "ownerReferences": [
                {"kind": "CronTask", "name": "hourly", "uid": "cron-uid", "controller": True}
            ],
        },
        "spec": {"type": "echo"},
        "status": status,
    }


@pytest_asyncio.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = FakeClock(START)
    kube = FakeKube(clock)
    effects = Effects(
        kube.as_client(), clock, max_concurrent_writes=8, events_per_second=100, component="test"
    )
    lags: list[float] = []
    controller = CronController(
        kube.as_client(), effects, clock=clock, create_retry=RETRY, on_fire=lags.append
    )
    harness = Harness(kube, clock, controller, lags, {})
    harness.watch("crontasks")
    harness.watch("tasks")
    harness.lead()
    yield harness
    if harness.leading is not None:
        await harness.step_down()


async def test_a_slot_fires_one_child_and_one_status_write(harness: Harness) -> None:
    harness.kube.put(crontask())
    await harness.settle()
    assert harness.children() == []
    assert harness.status()["nextScheduleTime"] == iso(SLOT)
    conditions = {c["type"]: c["status"] for c in harness.status()["conditions"]}
    assert conditions == {"ScheduleValid": "True", "Ready": "True"}

    mark = len(harness.kube.requests)
    await harness.at(SLOT)

    assert harness.children() == ["hourly-1700002800"]
    assert harness.writes_since(mark) == [("POST", TASKS), ("PATCH", CRON + "/status")]
    assert harness.lags == [0.0]
    status = harness.status()
    assert status["lastScheduleTime"] == iso(SLOT)
    assert status["nextScheduleTime"] == iso(SLOT + HOUR)
    created = harness.kube.object("tasks", "ns", "hourly-1700002800")
    assert created is not None
    assert status["active"] == [{"name": "hourly-1700002800", "uid": created["metadata"]["uid"]}]
    assert created["metadata"]["ownerReferences"][0]["uid"] == "cron-uid"
    assert created["metadata"]["labels"]["taskmill.dev/crontask"] == "hourly"


async def test_nothing_is_written_before_leading() -> None:
    clock = FakeClock(START)
    kube = FakeKube(clock)
    effects = Effects(
        kube.as_client(), clock, max_concurrent_writes=8, events_per_second=100, component="test"
    )
    controller = CronController(kube.as_client(), effects, clock=clock)
    controller.observe("ADDED", kube.put(crontask()))
    clock.set(SLOT)
    controller.tick()
    await controller.idle()
    assert kube.requests == []


async def test_forbid_skips_the_slot_while_a_child_runs(harness: Harness) -> None:
    harness.kube.put(child(SLOT - HOUR, "Running"))
    harness.kube.put(
        crontask(concurrencyPolicy="Forbid", status={"lastScheduleTime": iso(SLOT - HOUR)})
    )
    await harness.settle()
    await harness.at(SLOT)

    assert harness.children() == [f"hourly-{int(SLOT - HOUR)}"]
    assert harness.status()["lastScheduleTime"] == iso(SLOT)
    assert harness.status()["active"] == [
        {"name": f"hourly-{int(SLOT - HOUR)}", "uid": f"uid-{int(SLOT - HOUR)}"}
    ]


async def test_replace_deletes_the_running_child_it_knows_by_uid(harness: Harness) -> None:
    old = f"hourly-{int(SLOT - HOUR)}"
    harness.kube.put(child(SLOT - HOUR, "Running"))
    harness.kube.put(
        crontask(concurrencyPolicy="Replace", status={"lastScheduleTime": iso(SLOT - HOUR)})
    )
    await harness.settle()
    await harness.at(SLOT)

    assert ("DELETE", path("tasks", "ns", old)) in harness.kube.requests
    assert harness.children() == [f"hourly-{int(SLOT)}"]

    # Next slot: the running child by that name is another object than the one
    # the controller knows (its events were not seen): the uid precondition saves it.
    replaced = child(SLOT, "Running", uid="someone-elses")
    harness.unwatch["tasks"]()
    harness.kube.put(replaced)
    await harness.at(SLOT + HOUR)
    survivor = harness.kube.object("tasks", "ns", f"hourly-{int(SLOT)}")
    assert survivor is not None
    assert survivor["metadata"]["uid"] == "someone-elses"
    assert f"hourly-{int(SLOT + HOUR)}" in harness.children()


async def test_after_downtime_the_newest_missed_slot_runs_once(harness: Harness) -> None:
    harness.clock.set(SLOT + 2 * HOUR + 100)
    harness.kube.put(
        crontask(startingDeadlineSeconds=600, status={"lastScheduleTime": iso(SLOT - HOUR)})
    )
    await harness.settle()
    assert harness.children() == [f"hourly-{int(SLOT + 2 * HOUR)}"]
    assert harness.status()["lastScheduleTime"] == iso(SLOT + 2 * HOUR)
    assert harness.events() == []


async def test_a_slot_past_its_starting_deadline_is_skipped_with_a_warning(
    harness: Harness,
) -> None:
    harness.clock.set(SLOT + 1000)
    harness.kube.put(
        crontask(startingDeadlineSeconds=600, status={"lastScheduleTime": iso(SLOT - HOUR)})
    )
    await harness.settle()
    assert harness.children() == []
    assert harness.events() == ["MissedSchedule"]
    assert harness.status()["lastScheduleTime"] == iso(SLOT)
    assert harness.status()["nextScheduleTime"] == iso(SLOT + HOUR)


async def test_suspended_fires_nothing_until_resumed(harness: Harness) -> None:
    harness.kube.put(crontask(suspend=True))
    await harness.settle()
    await harness.at(SLOT)
    assert harness.children() == []
    assert "nextScheduleTime" not in harness.status()

    await harness.kube.merge_patch(CRON, {"spec": {"suspend": False}})
    await harness.settle()
    # The slot missed while suspended runs once on resuming (no deadline set).
    assert harness.children() == [f"hourly-{int(SLOT)}"]
    assert harness.status()["nextScheduleTime"] == iso(SLOT + HOUR)


async def test_finished_children_beyond_the_history_limits_are_pruned_oldest_first(
    harness: Harness,
) -> None:
    for i in range(4):
        harness.kube.put(
            child(START - (10 - i) * HOUR, "Succeeded", finished=START - (10 - i) * HOUR + 60)
        )
    harness.kube.put(child(START - 5 * HOUR, "Dead", finished=START - 5 * HOUR + 1))
    harness.kube.put(child(START - 4 * HOUR, "Running"))
    harness.kube.put(crontask(successfulTasksHistoryLimit=2, failedTasksHistoryLimit=0))
    await harness.settle()

    names = [f"hourly-{int(START - h * HOUR)}" for h in (8, 7, 4)]
    assert harness.children() == sorted(names)
    deletes = [u for m, u in harness.kube.requests if m == "DELETE"]
    assert sorted(deletes) == sorted(
        path("tasks", "ns", f"hourly-{int(START - h * HOUR)}") for h in (10, 9, 5)
    )
    assert harness.status()["lastSuccessfulTime"] == iso(START - 7 * HOUR + 60)


async def test_an_invalid_schedule_is_conditions_and_one_warning(harness: Harness) -> None:
    harness.kube.put(crontask("61 * * * *"))  # put: as stored before the CRD checked ranges
    await harness.settle()
    conditions = {c["type"]: c for c in harness.status()["conditions"]}
    assert conditions["ScheduleValid"]["status"] == "False"
    assert conditions["ScheduleValid"]["reason"] == "InvalidSchedule"
    assert conditions["Stalled"]["status"] == "True"
    assert harness.events() == ["InvalidSchedule"]
    writes = len(harness.kube.writes())

    # A metadata change (same generation): no second Event, nothing to write.
    await harness.kube.merge_patch(CRON, {"metadata": {"labels": {"team": "a"}}})
    await harness.settle()
    assert harness.events() == ["InvalidSchedule"]
    assert len(harness.kube.writes()) == writes + 1  # the label patch only
    await harness.at(SLOT)
    assert harness.children() == []

    await harness.kube.merge_patch(CRON, {"spec": {"schedule": "30 * * * *"}})
    await harness.settle()
    conditions = {c["type"]: c for c in harness.status()["conditions"]}
    assert conditions["ScheduleValid"]["status"] == "True"
    assert "Stalled" not in conditions
    assert harness.status()["observedGeneration"] == 2


async def test_a_create_that_fails_on_the_way_is_retried_on_the_clock(harness: Harness) -> None:
    harness.kube.put(crontask())
    await harness.settle()
    harness.kube.fail("POST", TASKS, ConnectionResetError("connection reset by peer"))
    harness.kube.fail("POST", TASKS, ApiError(503, "ServiceUnavailable", "etcd leader changed"))
    mark = len(harness.kube.requests)
    await harness.at(SLOT)
    assert harness.children() == []
    assert "lastScheduleTime" not in harness.status()  # the status waits for the create

    await harness.at(SLOT + 29)
    assert harness.writes_since(mark) == [("POST", TASKS)]  # not yet: the backoff is 30 s
    await harness.at(SLOT + 30)
    await harness.at(SLOT + 90)
    assert harness.children() == [f"hourly-{int(SLOT)}"]
    assert harness.writes_since(mark) == [("POST", TASKS)] * 3 + [("PATCH", CRON + "/status")]
    assert harness.status()["lastScheduleTime"] == iso(SLOT)
    assert harness.events() == []
    assert harness.lags == [0.0]  # one fire, however many attempts


async def test_a_refused_create_is_not_retried_and_says_why(harness: Harness) -> None:
    harness.kube.put(crontask())
    await harness.settle()
    harness.kube.fail("POST", TASKS, ApiError(403, "Forbidden", "tasks is forbidden"))
    await harness.at(SLOT)
    await harness.at(SLOT + 600)
    assert harness.children() == []
    assert harness.events() == ["FailedCreate"]
    assert harness.status()["lastScheduleTime"] == iso(SLOT)


async def test_a_status_write_that_conflicts_reads_again_and_writes_again(harness: Harness) -> None:
    harness.kube.put(crontask())
    await harness.settle()
    # Someone else writes the CronTask; its watch event has not come yet.
    harness.unwatch["crontasks"]()
    await harness.kube.merge_patch(CRON, {"metadata": {"annotations": {"note": "x"}}})
    harness.watch("crontasks")
    mark = len(harness.kube.requests)
    await harness.at(SLOT)

    assert harness.kube.requests[mark:] == [
        ("POST", TASKS),
        ("PATCH", CRON + "/status"),  # 409: the resourceVersion moved
        ("GET", CRON),
        ("PATCH", CRON + "/status"),
    ]
    assert harness.status()["lastScheduleTime"] == iso(SLOT)
    assert harness.controller.effects.conflicts == 1


async def test_a_status_write_the_server_could_not_take_is_tried_after_the_outage_wait(
    harness: Harness,
) -> None:
    harness.kube.fail("PATCH", CRON + "/status", ApiError(503, "ServiceUnavailable", "etcd"))
    harness.kube.put(crontask())
    await harness.settle()
    assert "nextScheduleTime" not in harness.status()
    retry_at = harness.controller.effects.outage.retry_at
    assert retry_at > START

    await harness.at(retry_at)
    assert harness.status()["nextScheduleTime"] == iso(SLOT)


async def test_a_crontask_deleted_while_its_create_waits_is_not_retried(harness: Harness) -> None:
    harness.kube.put(crontask())
    await harness.settle()
    harness.kube.fail("POST", TASKS, ConnectionResetError("reset"))
    await harness.at(SLOT)
    await harness.kube.delete(CRON, {})
    await harness.settle()
    mark = len(harness.kube.requests)
    await harness.at(SLOT + 600)
    assert harness.kube.requests[mark:] == []
    assert harness.children() == []


async def test_a_slot_whose_create_waited_when_leading_ended_is_tried_in_the_next_term(
    harness: Harness,
) -> None:
    harness.kube.put(crontask())
    await harness.settle()
    harness.kube.fail("POST", TASKS, ConnectionResetError("reset"))
    await harness.at(SLOT)
    await harness.step_down()
    harness.clock.set(SLOT + 5)
    harness.lead()
    await harness.settle()
    assert harness.children() == [f"hourly-{int(SLOT)}"]
    assert harness.status()["lastScheduleTime"] == iso(SLOT)
