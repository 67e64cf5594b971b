"""The Task reconciler and the lease API's side of it, on an in-memory API
server (:class:`~taskmill.testing.fakekube.FakeKube`) and a fake clock:
leasing, outcomes, expiry, cancellation, deletion, TTL, restarts, outages,
conflicts, NoWorker and dependencies, each in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from taskmill.controller.leasing import ApiUnavailable, LeaseConflict, Leasing
from taskmill.controller.settings import OperatorSettings
from taskmill.controller.tasks import SWEEP_SECONDS, TaskController
from taskmill.dispatch.clock import FakeClock
from taskmill.kube.client import ApiError, path
from taskmill.models.base import API_VERSION
from taskmill.models.lease import (
    CompleteRequest,
    HeartbeatRequest,
    Holder,
    LeasedTask,
    LeaseRequest,
    Outcome,
    ProgressReport,
    ReportedError,
)
from taskmill.testing.fakekube import FakeKube
from tests.controller.conditions import until

pytestmark = pytest.mark.asyncio

NS = "ns"
T0 = 1_800_000_000.0
WORKER = Holder("w")


def task(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"type": "echo", **spec},
    }


@dataclass
class Operator:
    clock: FakeClock
    kube: FakeKube
    tasks: TaskController
    leasing: Leasing

    def status(self, name: str) -> dict[str, Any]:
        obj = self.kube.object("tasks", NS, name)
        assert obj is not None, f"no Task {name}"
        status: dict[str, Any] = obj.get("status") or {}
        return status

    async def create(self, body: dict[str, Any]) -> None:
        await self.kube.create(path("tasks", NS), body)
        name = body["metadata"]["name"]
        await until(lambda: self.tasks.store.record((NS, name)) is not None, f"{name} known")

    async def lease(self, count: int = 1, wait: float = 0) -> list[LeasedTask]:
        request = LeaseRequest(worker="w", types=["echo"], max=count, wait_seconds=wait)
        return await self.leasing.lease(request, WORKER)

    async def complete(self, leased: LeasedTask, outcome: Outcome, **extra: Any) -> None:
        request = CompleteRequest(lease_id=leased.lease_id, outcome=outcome, **extra)
        await self.leasing.complete(request, WORKER)

    async def settle(self) -> None:
        """Let watch deliveries and reconciles that are due run to the end."""
        for _ in range(5):
            await asyncio.sleep(0)
            await self.tasks.queue.idle()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.tasks.run_due()
        await self.settle()

    def status_writes(self, name: str) -> int:
        return len(self.kube.writes("PATCH", path("tasks", NS, name, "status")))

    def status_writes_total(self) -> int:
        return len([u for _, u in self.kube.writes("PATCH") if u.endswith("/status")])


def start(kube: FakeKube, clock: FakeClock, **settings: Any) -> Operator:
    tasks = TaskController(
        kube,  # type: ignore[arg-type]  # the fake has the client's surface
        OperatorSettings(namespaces=(NS,), **settings),
        clock=clock,
    )
    kube.listen(tasks.observe, "tasks")
    tasks.mark_synced()
    return Operator(clock, kube, tasks, Leasing(tasks))


@pytest_asyncio.fixture
async def operator() -> AsyncIterator[Operator]:
    clock = FakeClock(T0)
    op = start(FakeKube(clock), clock)
    yield op
    await op.leasing.close()
    await op.tasks.close()


async def test_a_task_is_leased_and_succeeds_in_two_status_writes(operator: Operator) -> None:
    await operator.create(task("t", payload={"n": 1}))
    [leased] = await operator.lease()
    assert leased.payload == {"n": 1}
    assert leased.attempt == 1
    status = operator.status("t")
    assert status["phase"] == "Running"
    assert status["lease"]["id"] == leased.lease_id
    await operator.complete(leased, Outcome.SUCCEEDED, result={"ok": True})
    await operator.settle()
    status = operator.status("t")
    assert status["phase"] == "Succeeded"
    assert status["result"] == {"ok": True}
    assert operator.status_writes("t") == 2
    assert operator.tasks.dispatcher.running() == 0
    with pytest.raises(LeaseConflict):  # reported twice
        await operator.complete(leased, Outcome.SUCCEEDED)


async def test_a_lease_without_heartbeats_expires_and_the_task_is_retried(
    operator: Operator,
) -> None:
    await operator.create(task("t", backoff={"initialSeconds": 1, "jitter": 0}))
    [leased] = await operator.lease()
    await operator.advance(29)
    operator.leasing.heartbeat(HeartbeatRequest(lease_id=leased.lease_id), WORKER)
    await operator.advance(29)  # the heartbeat moved the expiry out
    assert operator.status("t")["phase"] == "Running"
    await operator.advance(2)
    status = operator.status("t")
    assert status["phase"] == "Waiting"
    assert status["history"][-1]["outcome"] == "LeaseExpired"
    assert operator.tasks.dispatcher.running() == 0
    with pytest.raises(LeaseConflict):
        operator.leasing.heartbeat(HeartbeatRequest(lease_id=leased.lease_id), WORKER)
    assert await operator.lease() == []  # backing off
    await operator.advance(1)
    [again] = await operator.lease()
    assert again.attempt == 2
    events = [e["reason"] for e in operator.kube.objects("events", NS)]
    assert events == ["LeaseExpired"]


async def test_cancel_tells_the_running_attempt_and_its_outcome_is_dropped(
    operator: Operator,
) -> None:
    await operator.create(task("t"))
    [leased] = await operator.lease()
    await operator.kube.merge_patch(path("tasks", NS, "t"), {"spec": {"cancel": True}})
    await operator.settle()
    assert operator.status("t")["phase"] == "Cancelled"
    assert operator.status("t")["history"][-1]["outcome"] == "Cancelled"
    beat = operator.leasing.heartbeat(HeartbeatRequest(lease_id=leased.lease_id), WORKER)
    assert beat.cancel
    await operator.complete(leased, Outcome.SUCCEEDED)  # accepted, and it changes nothing
    assert operator.status("t")["phase"] == "Cancelled"


async def test_a_deleted_running_task_stops_its_attempt(operator: Operator) -> None:
    await operator.create(task("t"))
    [leased] = await operator.lease()
    await operator.kube.delete(path("tasks", NS, "t"))
    await operator.settle()
    beat = operator.leasing.heartbeat(HeartbeatRequest(lease_id=leased.lease_id), WORKER)
    assert beat.cancel
    assert operator.tasks.dispatcher.running() == 0


async def test_a_finished_task_is_deleted_after_its_ttl_if_it_is_still_the_same(
    operator: Operator,
) -> None:
    await operator.create(task("t", ttlSecondsAfterFinished=30))
    [leased] = await operator.lease()
    await operator.complete(leased, Outcome.SUCCEEDED)
    await operator.settle()
    await operator.advance(29)
    assert operator.kube.object("tasks", NS, "t") is not None
    await operator.advance(1)
    assert operator.kube.object("tasks", NS, "t") is None
    [(_method, url)] = operator.kube.writes("DELETE")
    assert url == path("tasks", NS, "t")


async def test_a_restarted_operator_keeps_running_leases(operator: Operator) -> None:
    await operator.create(task("t"))
    [leased] = await operator.lease()
    await operator.leasing.close()
    await operator.tasks.close()

    restarted = start(operator.kube, operator.clock)
    for obj in operator.kube.objects("tasks", NS):
        restarted.tasks.observe("ADDED", obj)
    await restarted.settle()
    assert restarted.tasks.dispatcher.running() == 1
    beat = restarted.leasing.heartbeat(HeartbeatRequest(lease_id=leased.lease_id), WORKER)
    assert not beat.cancel
    await restarted.complete(leased, Outcome.SUCCEEDED)
    await restarted.settle()
    assert restarted.status("t")["phase"] == "Succeeded"
    await restarted.tasks.close()


async def test_while_status_writes_fail_nothing_is_leased_and_outcomes_wait(
    operator: Operator,
) -> None:
    await operator.create(task("a"))
    await operator.create(task("b"))
    operator.kube.fail("PATCH", path("tasks", NS), OSError("connection refused"))
    assert await operator.lease() == []  # its lease could not be recorded
    assert operator.tasks.effects.outage.failures == 1
    assert await operator.lease(count=2) == []  # the write gate holds leasing back
    await operator.advance(operator.tasks.effects.outage.retry_at - operator.clock.now())
    leased = await operator.lease(count=2)
    assert sorted(item.name for item in leased) == ["a", "b"]
    operator.kube.fail("PATCH", path("tasks", NS), ApiError(503, "ServiceUnavailable", "etcd"))
    with pytest.raises(ApiUnavailable):
        await operator.complete(leased[0], Outcome.SUCCEEDED)
    with pytest.raises(ApiUnavailable):  # the gate is closed: not even tried
        await operator.complete(leased[1], Outcome.SUCCEEDED)
    await operator.advance(operator.tasks.effects.outage.retry_at - operator.clock.now())
    for item in leased:
        await operator.complete(item, Outcome.SUCCEEDED)
    await operator.settle()
    assert {operator.status(n)["phase"] for n in "ab"} == {"Succeeded"}


async def test_an_outcome_is_written_again_after_a_conflict(operator: Operator) -> None:
    await operator.create(task("t"))
    [leased] = await operator.lease()
    # Someone edits the Task while it runs: the outcome's precondition fails once.
    operator.kube.fail("PATCH", path("tasks", NS, "t", "status"), ApiError(409, "Conflict", "x"))
    await operator.complete(leased, Outcome.SUCCEEDED)
    await operator.settle()
    assert operator.status("t")["phase"] == "Succeeded"


async def test_a_lease_write_conflict_requeues_the_task(operator: Operator) -> None:
    await operator.create(task("t"))
    operator.kube.fail("PATCH", path("tasks", NS, "t", "status"), ApiError(409, "Conflict", "x"))
    # The refused lease frees the Task, which is read again, queued and
    # leased in the same long poll.
    [leased] = await operator.lease()
    assert leased.attempt == 1
    assert operator.tasks.effects.conflicts == 1
    assert operator.status("t")["lease"]["id"] == leased.lease_id
    assert operator.tasks.dispatcher.running() == 1


async def test_no_worker_is_said_once_of_a_type_nobody_asks_for() -> None:
    clock = FakeClock(T0)
    op = start(FakeKube(clock), clock, no_worker_after_seconds=30)
    await op.create(task("t"))
    await op.advance(SWEEP_SECONDS)  # too soon after the start: workers may be on their way
    assert "reason" not in op.status("t")
    for _ in range(8):
        await op.advance(SWEEP_SECONDS)
    status = op.status("t")
    assert status["phase"] == "Waiting"
    assert status["reason"] == "NoWorker"
    assert op.status_writes("t") == 1
    [leased] = await op.lease()  # leased as soon as a worker asks
    assert leased.name == "t"
    await op.tasks.close()


async def test_types_asked_for_are_forgotten_after_the_horizon() -> None:
    clock = FakeClock(T0)
    op = start(FakeKube(clock), clock, no_worker_after_seconds=30)
    made_up = LeaseRequest(worker="w", types=[f"t{i}" for i in range(200)], wait_seconds=0)
    assert await op.leasing.lease(made_up, WORKER) == []
    await op.advance(31)
    await op.lease()
    await op.advance(SWEEP_SECONDS)
    assert list(op.tasks._asked) == ["echo"]
    await op.tasks.close()


async def test_progress_is_written_by_the_sweep_not_each_heartbeat(operator: Operator) -> None:
    await operator.create(task("t"))
    [leased] = await operator.lease()
    for percent in (10, 20, 30):
        progress = ProgressReport(percent=percent)
        request = HeartbeatRequest(lease_id=leased.lease_id, progress=progress)
        operator.leasing.heartbeat(request, WORKER)
    await operator.advance(SWEEP_SECONDS)
    assert operator.status("t")["progress"]["percent"] == 30
    assert operator.status_writes("t") == 2  # the lease, then one progress write
    await operator.advance(SWEEP_SECONDS)
    assert operator.status_writes("t") == 2  # nothing new reported


async def test_an_invalid_task_is_dead_and_the_next_one_runs(operator: Operator) -> None:
    operator.kube.put({**task("bad"), "spec": {"priority": "high"}})
    await operator.create(task("good"))
    await operator.settle()
    assert operator.status("bad")["reason"] == "InvalidTask"
    [leased] = await operator.lease()
    assert leased.name == "good"


async def test_a_task_waits_for_its_queue_and_runs_once_it_exists(operator: Operator) -> None:
    await operator.create(task("t", queue="emails"))
    await operator.settle()
    assert operator.status("t")["reason"] == "QueueNotFound"
    assert await operator.lease() == []
    queue = {"metadata": {"name": "emails", "namespace": NS}, "spec": {"leaseSeconds": 5}}
    operator.tasks.observe_queue("ADDED", {"apiVersion": API_VERSION, "kind": "TaskQueue", **queue})
    [leased] = await operator.lease()
    assert leased.heartbeat_seconds == pytest.approx(5 / 3)


async def test_a_dependent_runs_when_its_dependency_succeeds(operator: Operator) -> None:
    await operator.create(task("second", dependsOn=[{"name": "first"}]))
    await operator.create(task("first"))
    await operator.settle()
    assert operator.status("second")["reason"] == "Dependencies"
    [first] = await operator.lease()
    assert first.name == "first"
    await operator.complete(first, Outcome.SUCCEEDED)
    await operator.settle()
    [second] = await operator.lease()
    assert second.name == "second"


class HeldKube(FakeKube):
    """Holds the first status write of one Task until released."""

    def __init__(self, clock: FakeClock, held: str) -> None:
        super().__init__(clock)
        self.held = path("tasks", NS, held, "status")
        self.release = asyncio.Event()
        self.reasons: list[tuple[str, str]] = []

    async def merge_patch(self, url: str, patch: Mapping[str, Any]) -> Any:
        reason = (patch.get("status") or {}).get("reason", "")
        first = url == self.held and all(u != url for u, _ in self.reasons)
        self.reasons.append((url, reason))
        if first:
            await self.release.wait()
        return await super().merge_patch(url, patch)


async def test_both_members_of_a_cycle_are_dead_of_the_cycle_whichever_lands_first() -> None:
    clock = FakeClock(T0)
    kube = HeldKube(clock, held="pong")
    op = start(kube, clock)
    await op.create(task("ping", dependsOn=[{"name": "pong"}]))
    await op.create(task("pong", dependsOn=[{"name": "ping"}]))
    await until(lambda: op.status("ping").get("phase") == "Dead", "ping Dead")
    # pong's DependencyCycle write is held; ping's Dead landed meanwhile. pong
    # is busy, so the change waits for it: no second, different write.
    await until(lambda: op.tasks.queue.dirty((NS, "pong")), "pong to be looked at again")
    assert [r for u, r in kube.reasons if u == kube.held] == ["DependencyCycle"]
    kube.release.set()
    await until(lambda: op.status("pong").get("phase") == "Dead", "pong Dead")
    await op.settle()
    assert [r for u, r in kube.reasons if u == kube.held] == ["DependencyCycle"]
    assert op.status("ping")["reason"] == "DependencyCycle"
    await op.tasks.close()


async def test_a_worker_that_hangs_up_mid_grant_hands_the_lease_back() -> None:
    clock = FakeClock(T0)
    kube = HeldKube(clock, held="t")
    op = start(kube, clock)
    await op.create(task("t"))
    waiting = asyncio.create_task(op.lease(wait=30))
    await until(lambda: kube.reasons, "the lease write sent")
    waiting.cancel()  # the worker hangs up while its lease is being recorded
    kube.release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await until(lambda: op.status("t").get("reason") == "Released", "handed back")
    await op.settle()
    assert op.status("t")["attempts"] == 0
    [leased] = await op.lease()
    assert leased.attempt == 1
    await op.leasing.close()
    await op.tasks.close()


async def test_a_long_poll_returns_when_a_task_arrives(operator: Operator) -> None:
    waiting = asyncio.create_task(operator.lease(wait=30))
    await asyncio.sleep(0)
    assert not waiting.done()
    await operator.create(task("t"))
    [leased] = await asyncio.wait_for(waiting, timeout=5)
    assert leased.name == "t"
    error = ReportedError(message="boom", retryable=False)
    await operator.complete(leased, Outcome.FAILED, error=error)
    await operator.settle()
    assert operator.status("t")["reason"] == "PermanentFailure"


class DeletedBeforeAnswerKube(FakeKube):
    """Deletes a Task right after its first status write, and delivers the
    DELETED event before the write's answer: the watch overtaking it."""

    async def merge_patch(self, url: str, patch: Mapping[str, Any]) -> Any:
        answer = await super().merge_patch(url, patch)
        if url.endswith("/status"):
            await self.delete(url.removesuffix("/status"))
            await asyncio.sleep(0)  # the listener's call_soon runs: DELETED is taken in
        return answer


async def test_a_write_answered_after_the_task_was_deleted_does_not_bring_it_back() -> None:
    clock = FakeClock(T0)
    op = start(DeletedBeforeAnswerKube(clock), clock)
    await op.create(task("t"))
    [leased] = await op.lease()
    await op.settle()
    assert op.tasks.store.entry((NS, "t")) is None
    assert op.tasks.dispatcher.running() == 0
    assert len(op.tasks.dispatcher) == 0
    assert op.leasing.heartbeat(HeartbeatRequest(lease_id=leased.lease_id), WORKER).cancel
    assert op.status_writes_total() == 1
    await op.tasks.close()


@pytest.mark.parametrize(
    "error", [OSError("reset"), ApiError(503, "ServiceUnavailable", "busy")], ids=["reset", "503"]
)
async def test_a_payload_that_cannot_be_read_now_is_tried_again(
    operator: Operator, error: Exception
) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}}
    operator.kube.put({**secret, "data": {"p": "eyJuIjogMX0="}}, plural="secrets")
    ref = {"secretKeyRef": {"name": "s", "key": "p"}}
    await operator.create(task("t", payloadFrom=ref))
    operator.kube.fail("GET", path("secrets", NS, "s", group="", version="v1"), error)
    assert await operator.lease() == []
    assert operator.tasks.dispatcher.running() == 0  # not left claimed
    assert operator.status("t").get("phase") != "Dead"
    await operator.advance(1)
    [leased] = await operator.lease()
    assert leased.payload == {"n": 1}


async def test_a_refused_expiry_is_written_again_later(operator: Operator) -> None:
    await operator.create(task("t"))
    await operator.lease()
    refusal = ApiError(422, "Invalid", "denied by a webhook")
    operator.kube.fail("PATCH", path("tasks", NS, "t", "status"), refusal)
    await operator.advance(31)
    assert operator.status("t")["phase"] == "Running"  # refused once
    await operator.advance(30)
    assert operator.status("t")["phase"] == "Waiting"
    assert operator.tasks.dispatcher.running() == 0


async def test_a_paused_queue_and_a_later_run_at_cost_one_write(operator: Operator) -> None:
    queue = {"metadata": {"name": "q", "namespace": NS}, "spec": {"paused": True}}
    operator.tasks.observe_queue("ADDED", {"apiVersion": API_VERSION, "kind": "TaskQueue", **queue})
    await operator.create(task("t", queue="q", runAt="2030-01-01T00:00:00Z"))
    await operator.settle()
    assert operator.status("t")["reason"] == "QueuePaused"
    assert operator.status_writes("t") == 1


async def test_a_running_task_made_invalid_frees_its_place_and_stops_its_attempt(
    operator: Operator,
) -> None:
    await operator.create(task("t"))
    [leased] = await operator.lease()
    stored = operator.kube.object("tasks", NS, "t")
    assert stored is not None
    operator.kube.put({**stored, "spec": {"type": "echo", "priority": "high"}})
    await operator.settle()
    assert operator.tasks.dispatcher.running() == 0
    assert operator.leasing.heartbeat(HeartbeatRequest(lease_id=leased.lease_id), WORKER).cancel
    assert operator.status("t")["reason"] == "InvalidTask"
