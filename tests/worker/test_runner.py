"""The worker loop against a fake lease endpoint: slots, outcomes, heartbeats,
cancellation, shutdown and metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

import taskmill
from taskmill.models.lease import Outcome
from taskmill.worker.registry import Registry
from taskmill.worker.runner import Worker, WorkerSettings
from tests.worker.fakelease import FakeLeaseApi

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def api() -> AsyncIterator[FakeLeaseApi]:
    fake = FakeLeaseApi()
    await fake.start()
    yield fake
    await fake.close()


class Gate:
    """Handlers of type ``block`` wait here until the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.async_open = asyncio.Event()
        self.started = 0

    def release(self) -> None:
        self.open.set()
        self.async_open.set()


def registry_with(gate: Gate) -> Registry:
    registry = Registry()

    @taskmill.handler("ok", into=registry)
    def ok(payload: dict[str, Any]) -> dict[str, Any]:
        return {"echo": payload}

    @taskmill.handler("boom", into=registry)
    def boom(payload: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    @taskmill.handler("later", into=registry)
    async def later(payload: dict[str, Any]) -> None:
        raise taskmill.Retry(delay_seconds=2)

    @taskmill.handler("never", into=registry)
    def never(payload: dict[str, Any]) -> None:
        raise taskmill.Fail("bad input")

    @taskmill.handler("block", into=registry)
    def block(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> str:
        gate.started += 1
        ctx.progress(50, "half way")
        while not gate.open.wait(0.01):
            if ctx.cancelled.is_set():
                return "stopped"
        return "done"

    @taskmill.handler("ablock", into=registry)
    async def ablock(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> str:
        gate.started += 1
        await gate.async_open.wait()
        return "done"

    return registry


def start(api: FakeLeaseApi, gate: Gate, **settings: Any) -> tuple[Worker, asyncio.Task[None]]:
    options: dict[str, Any] = {"concurrency": 3, "poll_seconds": 0.5, "grace_seconds": 10}
    options.update(settings)
    worker = Worker(registry_with(gate), WorkerSettings(lease_url=api.url, **options))
    return worker, asyncio.create_task(worker.run())


async def stop(worker: Worker, run: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(run, 20)


async def test_it_leases_exactly_as_many_tasks_as_it_has_free_slots(api: FakeLeaseApi) -> None:
    gate = Gate()
    worker, run = start(api, gate, concurrency=3)
    await api.wait_for(lambda: len(api.lease_requests) >= 1)
    assert api.lease_requests[0].max == 3
    assert api.lease_requests[0].types == ["ablock", "block", "boom", "later", "never", "ok"]

    for _ in range(5):
        await api.add("block")
    await api.wait_for(lambda: len(api.heartbeats) >= 3)  # three are running
    assert len(api.queue) == 2
    maxes = [r.max for r in api.lease_requests]
    assert 0 not in maxes

    gate.release()
    await api.wait_for(lambda: len(api.completes) == 5)
    await stop(worker, run)

    assert max(r.max for r in api.lease_requests) == 3
    assert all(1 <= r.max <= 3 for r in api.lease_requests)
    assert [c.outcome for c in api.completes] == [Outcome.SUCCEEDED] * 5


async def test_each_kind_of_ending_is_reported_and_the_worker_lives_on(
    api: FakeLeaseApi,
) -> None:
    worker, run = start(api, Gate())
    ids = {t: await api.add(t, {"n": 1}) for t in ("ok", "boom", "later", "never")}

    await api.wait_for(lambda: len(api.completes) == 4)
    await stop(worker, run)

    ok, boom, later, never = (api.outcome(ids[t]) for t in ("ok", "boom", "later", "never"))
    assert ok is not None
    assert ok.result == {"echo": {"n": 1}}
    assert boom is not None
    assert boom.error is not None
    assert (boom.error.type, boom.error.retryable) == ("RuntimeError", True)
    assert "RuntimeError: boom" in (boom.error.traceback or "")
    assert later is not None
    assert later.error is not None
    assert later.error.retry_after_seconds == 2
    assert never is not None
    assert never.error is not None
    assert never.error.retryable is False
    assert worker.completed == 4


async def test_a_slot_frees_when_its_handler_returns_not_when_the_outcome_lands(
    api: FakeLeaseApi,
) -> None:
    api.answer_completes.clear()  # the operator is slow to write statuses
    worker, run = start(api, Gate(), concurrency=1)
    for _ in range(3):
        await api.add("ok")
    # One slot, yet all three ran: none waited for an earlier outcome to land
    # (two reports are in flight, the third waits in the outbox).
    await api.wait_for(lambda: api.held == 2 and worker.outbox.waiting == 1)
    assert worker.running == 0
    assert worker.completed == 0

    worker.stop()
    await api.wait_for(lambda: worker.running == 0)
    # Stopping waits for the outcomes still on their way.
    done, _ = await asyncio.wait({run}, timeout=0.3)
    assert run not in done
    api.answer_completes.set()
    await asyncio.wait_for(run, 20)
    assert [c.outcome for c in api.completes] == [Outcome.SUCCEEDED] * 3
    assert worker.completed == 3


async def test_outcomes_finishing_while_reports_are_in_flight_travel_together(
    api: FakeLeaseApi,
) -> None:
    api.answer_completes.clear()
    worker, run = start(api, Gate(), concurrency=4)
    for _ in range(10):
        await api.add("ok")
    await api.wait_for(lambda: api.held == 2 and worker.outbox.waiting == 8)
    api.answer_completes.set()
    await api.wait_for(lambda: len(api.completes) == 10)
    await stop(worker, run)
    # Two reports went out at once; the eight that finished meanwhile
    # travelled together in the next one.
    assert api.outcome_batches == [1, 1, 8]
    assert worker.completed == 10


async def test_progress_rides_on_the_next_heartbeat(api: FakeLeaseApi) -> None:
    gate = Gate()
    worker, run = start(api, gate)
    await api.add("block")

    await api.wait_for(lambda: any(h.progress for h in api.heartbeats))
    gate.release()
    await api.wait_for(lambda: len(api.completes) == 1)
    await stop(worker, run)

    reports = [h.progress for h in api.heartbeats if h.progress]
    assert reports[0] is not None
    assert (reports[0].percent, reports[0].message) == (50, "half way")
    assert len(reports) == 1  # sent once, not with every heartbeat


async def test_a_cancelled_task_stops_its_handler_and_reports_nothing(
    api: FakeLeaseApi,
) -> None:
    gate = Gate()
    worker, run = start(api, gate)
    sync_id = await api.add("block")
    async_id = await api.add("ablock")
    await api.wait_for(lambda: len({h.lease_id for h in api.heartbeats}) == 2)

    api.cancelled |= {sync_id, async_id}
    await api.wait_for(lambda: worker.running == 0 or len(api.heartbeats) > 50)
    assert worker.running == 0
    ok = await api.add("ok")
    await api.wait_for(lambda: api.outcome(ok) is not None)
    await stop(worker, run)

    assert api.outcome(sync_id) is None
    assert api.outcome(async_id) is None


async def test_stopping_finishes_running_work_within_the_grace_period(
    api: FakeLeaseApi,
) -> None:
    gate = Gate()
    worker, run = start(api, gate, grace_seconds=30)
    first = await api.add("block")
    await api.wait_for(lambda: len(api.heartbeats) >= 1)

    worker.stop()
    # Granted by the lease call in flight at the stop: handed back, not run.
    late = await api.add("ok")
    gate.release()
    await asyncio.wait_for(run, 20)

    done = api.outcome(first)
    assert done is not None
    assert (done.outcome, done.result) == (Outcome.SUCCEEDED, "done")
    handed_back = api.outcome(late)
    assert handed_back is not None
    assert handed_back.outcome == Outcome.RELEASED
    assert len(api.lease_requests) == 2  # none after the stop


async def test_work_still_running_after_the_grace_period_is_handed_back(
    api: FakeLeaseApi,
) -> None:
    gate = Gate()
    worker, run = start(api, gate, grace_seconds=0.3)
    ids = [await api.add("block"), await api.add("ablock")]
    await api.wait_for(lambda: len({h.lease_id for h in api.heartbeats}) == 2)

    worker.stop()
    await asyncio.wait_for(run, 20)

    assert [api.outcome(i).outcome for i in ids] == [Outcome.RELEASED] * 2  # type: ignore[union-attr]
    assert worker.released == 2


async def test_a_second_stop_hands_back_at_once(api: FakeLeaseApi) -> None:
    gate = Gate()
    worker, run = start(api, gate, grace_seconds=300)
    lease_id = await api.add("block")
    await api.wait_for(lambda: len(api.heartbeats) >= 1)

    worker.stop()
    worker.stop()
    await asyncio.wait_for(run, 20)

    outcome = api.outcome(lease_id)
    assert outcome is not None
    assert outcome.outcome == Outcome.RELEASED


async def test_metrics_count_what_the_worker_did(api: FakeLeaseApi) -> None:
    from taskmill.testing.controlplane import free_ports

    port = free_ports(1)[0]
    worker, run = start(api, Gate(), metrics_port=port, metrics_host="127.0.0.1")
    await api.add("ok")
    await api.add("boom")
    await api.wait_for(lambda: len(api.completes) == 2)

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    await stop(worker, run)

    assert 'taskmill_worker_tasks_total{outcome="succeeded",type="ok"} 1.0' in text
    assert 'taskmill_worker_tasks_total{outcome="failed",type="boom"} 1.0' in text
    assert 'taskmill_worker_task_failures_total{type="boom"} 1.0' in text
    assert 'taskmill_worker_task_duration_seconds_count{type="ok"} 1.0' in text
    assert "taskmill_worker_tasks_in_flight 0.0" in text
    assert "taskmill_worker_utilization_ratio 0.0" in text
    assert "taskmill_worker_slots 3.0" in text


async def test_the_worker_process_exits_after_sigterm_despite_a_stuck_sync_handler(
    api: FakeLeaseApi,
) -> None:
    import signal
    import sys

    lease_id = await api.add("stuck")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskmill",
        "worker",
        "--handlers",
        "tests.worker.slow_handlers",
        "--lease-url",
        api.url,
        "--grace-seconds",
        "0.3",
        cwd=ROOT,
    )
    await api.wait_for(lambda: len(api.heartbeats) >= 1, limit_seconds=30)

    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = await asyncio.wait_for(process.wait(), 20)
    took = time.monotonic() - started

    outcome = api.outcome(lease_id)
    assert outcome is not None
    assert outcome.outcome == Outcome.RELEASED
    assert code == 0
    assert took < 5  # the grace period, not the long poll in flight or the thread


@pytest.fixture
def quick_report_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmill.dispatch.backoff import BackoffPolicy
    from taskmill.worker import runner

    quick = BackoffPolicy(initial_seconds=0.005, factor=2, max_seconds=0.02, jitter=0)
    monkeypatch.setattr(runner, "REPORT_RETRY", quick)


@pytest.mark.usefixtures("quick_report_retries")
async def test_an_outcome_is_kept_however_long_the_operator_cannot_take_it(
    api: FakeLeaseApi,
) -> None:
    gate = Gate()
    worker, run = start(api, gate)
    api.unavailable = True
    lease_id = await api.add("ok", {"n": 1})
    # Far more refusals than any fixed number of retries.
    await api.wait_for(lambda: api.refused >= 200, limit_seconds=30)
    beats_while_refused = sum(1 for b in api.heartbeats if b.lease_id == lease_id)
    api.unavailable = False
    await api.wait_for(lambda: api.outcome(lease_id) is not None)
    outcome = api.outcome(lease_id)
    assert outcome is not None
    assert outcome.outcome == Outcome.SUCCEEDED
    # Its lease was kept alive meanwhile, so the operator did not expire it.
    assert beats_while_refused >= 2
    await stop(worker, run)
    assert worker.completed == 1


@pytest.mark.usefixtures("quick_report_retries")
async def test_an_outcome_is_dropped_once_its_heartbeats_say_the_lease_is_gone(
    api: FakeLeaseApi,
) -> None:
    gate = Gate()
    worker, run = start(api, gate)
    api.unavailable = True
    lease_id = await api.add("ok")
    await api.wait_for(lambda: api.refused >= 3)
    api.lost.add(lease_id)
    await api.wait_for(lambda: not worker._reports and api.refused > 3)
    api.unavailable = False
    beats = sum(1 for b in api.heartbeats if b.lease_id == lease_id)
    # Nothing more is sent for that attempt: no outcome, no heartbeat.
    other = await api.add("ok")
    await api.wait_for(lambda: api.outcome(other) is not None)
    assert api.outcome(lease_id) is None
    assert sum(1 for b in api.heartbeats if b.lease_id == lease_id) == beats
    await stop(worker, run)
    assert worker.completed == 1


async def test_a_stopping_worker_gives_up_undelivered_outcomes_after_its_margin(
    api: FakeLeaseApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskmill.worker import runner

    monkeypatch.setattr(runner, "REPORT_MARGIN_SECONDS", 0.5)
    gate = Gate()
    worker, run = start(api, gate, grace_seconds=0.2)
    api.unavailable = True
    lease_id = await api.add("ok")
    await api.wait_for(lambda: api.refused >= 1)
    started = time.monotonic()
    await stop(worker, run)
    assert time.monotonic() - started < 10
    assert api.outcome(lease_id) is None
    assert worker.completed == 0
