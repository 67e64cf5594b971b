"""The worker loop: lease as many Tasks as there are free slots, run them,
heartbeat while they run, report how they ended.

Slots: ``concurrency`` handlers run at once. The loop asks the operator for
exactly ``concurrency - running`` Tasks (never zero: with no free slot it
waits for one to free up), only of the registered types, in a long poll.

Outcomes: a slot frees as soon as its handler returns; the outcome is
delivered in the background (the operator answers only once the Task's status
is written), and shutdown waits for every outcome to be delivered.

Heartbeats: every ``heartbeatSeconds`` (from the lease) per running Task; the
latest ``ctx.progress(...)`` rides along (the buffer holds one report, so a
chatty handler never grows memory or blocks). A reply saying ``cancel`` (the
Task was cancelled) or a 409 (the lease is gone) sets ``ctx.cancelled`` and
cancels an async handler; no outcome is reported then.

Shutdown (:meth:`Worker.stop`, wired to SIGTERM/SIGINT by ``taskmill
worker``): stop leasing. The grace period (``grace_seconds``) starts now.
A lease call already in flight is allowed to finish within it (the operator
cannot tell that a client went away, so abandoning the call could strand a
Task granted to it until its lease expires); whatever it brings is handed
back at once. Running handlers get the rest of the grace period; what is
still running then is handed back (outcome ``released``), so the operator
re-queues it at once without counting an attempt. A second :meth:`stop` ends
the grace period (and a pending lease call) at once.

Nothing a handler does ends the loop: exceptions, timeouts and cancellations
become reported outcomes (see :mod:`taskmill.worker.execution`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.models.lease import (
    CompleteRequest,
    HeartbeatRequest,
    LeasedTask,
    Outcome,
    ProgressReport,
    ReportedError,
)
from taskmill.worker.context import HandlerContext
from taskmill.worker.execution import Cancelled, call_handler
from taskmill.worker.leaseclient import LeaseApiError, LeaseClient, LeaseLost
from taskmill.worker.metrics import WorkerMetrics
from taskmill.worker.outbox import Outbox
from taskmill.worker.registry import Registry

log = logging.getLogger("taskmill.worker")

#: Between lease calls that failed.
LEASE_RETRY = BackoffPolicy(initial_seconds=0.4, factor=2, max_seconds=10, jitter=0)
#: Between attempts to deliver an outcome the operator could not take.
REPORT_RETRY = BackoffPolicy(initial_seconds=0.1, factor=2, max_seconds=5, jitter=0)
#: How long a stopping worker keeps trying to deliver outcomes once its grace
#: period is over (the chart's ``terminationMarginSeconds`` leaves room for it).
REPORT_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class WorkerSettings:
    lease_url: str
    #: Handlers running at once; the worker leases exactly as many Tasks as it has free.
    concurrency: int = 4
    #: Identity reported to the operator (default: host name and pid).
    name: str = ""
    #: On SIGTERM, how long running handlers may take before they are handed back.
    grace_seconds: float = 25.0
    #: Long-poll length of each lease call. A stopping worker waits for the
    #: call in flight, so this also bounds how long an idle worker takes to stop.
    poll_seconds: float = 10.0
    #: Bearer token for the lease API (when it authenticates callers).
    token: str | None = None
    #: Serve Prometheus ``/metrics`` on this port; ``None``: no metrics server.
    metrics_port: int | None = None
    #: Address the metrics server binds.
    metrics_host: str = "0.0.0.0"


class _ProgressBuffer:
    """The latest progress report of one attempt; written from any thread."""

    def __init__(self) -> None:
        self.latest: ProgressReport | None = None

    def report(self, percent: float | None, message: str | None) -> None:
        if message is not None:
            message = message[:1024]
        self.latest = ProgressReport(percent=percent, message=message)

    def take(self) -> ProgressReport | None:
        latest, self.latest = self.latest, None
        return latest


class Worker:
    def __init__(
        self, registry: Registry, settings: WorkerSettings, *, client: LeaseClient | None = None
    ) -> None:
        if len(registry) == 0:
            raise ValueError("no handlers registered")
        self.registry = registry
        self.settings = settings
        self.name = settings.name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = client or LeaseClient(settings.lease_url, self.name, token=settings.token)
        self.metrics = WorkerMetrics(settings.concurrency)
        self.outbox = Outbox(self.client.outcomes)
        # Threads beyond `concurrency` leave room for sync handlers that
        # outlived their timeout and could not be interrupted.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.concurrency * 2, thread_name_prefix="taskmill-handler"
        )
        self._running: dict[str, asyncio.Task[None]] = {}
        #: Outcomes on their way to the operator (their slots are free already).
        self._reports: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._grace_ends = float("inf")
        #: Attempts whose outcome was reported (any outcome but ``released``).
        self.completed = 0
        #: Tasks handed back to the operator.
        self.released = 0

    @property
    def running(self) -> int:
        return len(self._running)

    def stop(self) -> None:
        """First call: stop leasing, running work gets the grace period.
        Second call: hand back what is running now."""
        if self._stopping.is_set():
            if not self._hurry.is_set():
                log.info("second stop: handing back %d running tasks now", len(self._running))
            self._hurry.set()
            return
        log.info(
            "stopping: no new work; %d running get up to %gs",
            len(self._running),
            self.settings.grace_seconds,
        )
        self._grace_ends = time.monotonic() + self.settings.grace_seconds
        self._stopping.set()

    async def run(self) -> None:
        log.info(
            "worker %s: %d slots, types %s, operator %s",
            self.name,
            self.settings.concurrency,
            ", ".join(self.registry.types),
            self.settings.lease_url,
        )
        metrics_server = None
        if self.settings.metrics_port is not None:
            from taskmill.worker.metrics import serve

            metrics_server = await serve(
                self.metrics, self.settings.metrics_host, self.settings.metrics_port
            )
            log.info(
                "metrics on http://%s:%d/metrics",
                self.settings.metrics_host,
                self.settings.metrics_port,
            )
        errors = 0
        try:
            while not self._stopping.is_set():
                free = await self._free_slots()
                if free == 0:
                    break  # stopping
                try:
                    leased = await self._lease_or_stop(free)
                    errors = 0
                except LeaseApiError as exc:
                    errors += 1
                    self.metrics.lease_errors.inc()
                    delay = LEASE_RETRY.base_delay(errors)
                    log.warning("lease call failed (%s); retrying in %.1fs", exc, delay)
                    await self._sleep_or_stop(delay)
                    continue
                for task in leased:
                    if self._stopping.is_set():
                        self._start_release(task)
                    else:
                        self._start(task)
            await self._drain()
        finally:
            await self.client.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if metrics_server is not None:
                await metrics_server.cleanup()

    async def _free_slots(self) -> int:
        """Free slots, waiting for one if none is; 0 only when stopping."""
        while not self._stopping.is_set():
            free = self.settings.concurrency - len(self._running)
            if free > 0:
                return free
            self._slot_freed.clear()
            stop = asyncio.ensure_future(self._stopping.wait())
            freed = asyncio.ensure_future(self._slot_freed.wait())
            await asyncio.wait({stop, freed}, return_when="FIRST_COMPLETED")
            stop.cancel()
            freed.cancel()
        return 0

    async def _lease_or_stop(self, free: int) -> list[LeasedTask]:
        lease = asyncio.ensure_future(
            self.client.lease(self.registry.types, free, self.settings.poll_seconds)
        )
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({lease, stop}, return_when="FIRST_COMPLETED")
        stop.cancel()
        if not lease.done():
            # Stopping: the operator keeps serving this call even if we hang
            # up, so wait for it (unless told to hurry); what it brings is
            # handed back by the caller.
            hurry = asyncio.ensure_future(self._hurry.wait())
            await asyncio.wait(
                {lease, hurry}, timeout=self._grace_left(), return_when="FIRST_COMPLETED"
            )
            hurry.cancel()
            if not lease.done():
                lease.cancel()
                return []
        return lease.result()

    def _grace_left(self) -> float:
        return max(0.0, self._grace_ends - time.monotonic())

    async def _sleep_or_stop(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def _track(self, lease_id: str, task: asyncio.Task[None]) -> None:
        self._running[lease_id] = task
        self.metrics.set_in_flight(len(self._running))

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(lease_id, None)
            self.metrics.set_in_flight(len(self._running))
            self._slot_freed.set()

        task.add_done_callback(done)

    def _start(self, leased: LeasedTask) -> None:
        task = asyncio.create_task(self._execute(leased), name=f"task-{leased.name}")
        self._track(leased.lease_id, task)

    def _start_release(self, leased: LeasedTask) -> None:
        task = asyncio.create_task(self._release(leased), name=f"release-{leased.name}")
        self._track(leased.lease_id, task)

    async def _release(self, leased: LeasedTask) -> None:
        log.info("%s/%s: handed back (stopping)", leased.namespace, leased.name)
        await self._report(CompleteRequest(lease_id=leased.lease_id, outcome=Outcome.RELEASED))
        self.metrics.finished(leased.type, "released", None)
        self.released += 1

    async def _execute(self, leased: LeasedTask) -> None:
        spec = self.registry.get(leased.type)
        if spec is None:  # the operator only sends registered types
            log.error("%s/%s: no handler for type %r", leased.namespace, leased.name, leased.type)
            error = ReportedError(type="UnknownType", message=f"no handler for {leased.type!r}")
            await self._report(
                CompleteRequest(lease_id=leased.lease_id, outcome=Outcome.FAILED, error=error)
            )
            return
        progress = _ProgressBuffer()
        ctx = HandlerContext(
            name=leased.name,
            namespace=leased.namespace,
            uid=leased.uid,
            type=leased.type,
            attempt=leased.attempt,
            logger=log.getChild(leased.type),
            _report_progress=progress.report,
        )
        cancel = asyncio.Event()
        beats = asyncio.create_task(self._heartbeats(leased, cancel, progress))
        started = time.monotonic()
        try:
            outcome = await call_handler(spec, leased, ctx, self._pool, cancel)
        except Cancelled:
            beats.cancel()
            log.info("%s/%s: cancelled while running", leased.namespace, leased.name)
            self.metrics.finished(leased.type, "cancelled", time.monotonic() - started)
            return
        except asyncio.CancelledError:
            # Shutdown after the grace period: hand the Task back.
            ctx.cancelled.set()
            beats.cancel()
            await self._release(leased)
            return
        except BaseException:
            beats.cancel()  # never keep a lease alive for an attempt that is over
            raise
        seconds = time.monotonic() - started
        self.metrics.finished(leased.type, _outcome_label(outcome), seconds)
        # The slot is free once the handler is done: the outcome is delivered
        # in the background. The operator answers a completion only after the
        # Task's status is written, and a slot held for that write would
        # leave the worker idle for a round trip to the API server per Task.
        # The lease stays ours until the outcome lands (heartbeats go on until
        # then), so a worker that dies now loses nothing: the lease expires
        # and the Task is retried.
        report = asyncio.create_task(self._deliver(outcome, beats), name=f"report-{leased.name}")
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)

    async def _deliver(self, outcome: CompleteRequest, beats: asyncio.Task[None]) -> None:
        try:
            if await self._report(outcome, lease_lost=beats):
                self.completed += 1
        finally:
            beats.cancel()

    async def _heartbeats(
        self, leased: LeasedTask, cancel: asyncio.Event, progress: _ProgressBuffer
    ) -> None:
        interval = max(0.2, leased.heartbeat_seconds)
        while True:
            await asyncio.sleep(interval)
            request = HeartbeatRequest(lease_id=leased.lease_id, progress=progress.take())
            try:
                reply = await self.client.heartbeat(request)
            except LeaseLost:
                log.warning(
                    "%s/%s: lease lost; stopping the handler", leased.namespace, leased.name
                )
                cancel.set()
                return
            except LeaseApiError as exc:
                log.warning("heartbeat failed (%s); will retry", exc)
                continue
            if reply.cancel:
                cancel.set()
                return

    async def _report(
        self, request: CompleteRequest, *, lease_lost: asyncio.Future[None] | None = None
    ) -> bool:
        """Deliver the outcome, however long the operator (or its API server)
        is away: finished work is given up only when it is certain the lease
        is gone — the operator says so (409), or ``lease_lost`` (the attempt's
        heartbeats, which end on a 409) completes — or when a stopping worker
        runs out of time (:meth:`_drain`). Returns whether the operator took it."""
        failures = 0
        while True:
            try:
                answer = await self.outbox.deliver(request)
                if answer.error == "LeaseConflict":
                    raise LeaseLost(request.lease_id)
                if answer.error is not None:
                    raise LeaseApiError(f"the operator could not take the outcome: {answer.error}")
                if failures:
                    log.info(
                        "outcome of lease %s delivered after %d retries", request.lease_id, failures
                    )
                return True
            except LeaseLost:
                log.warning(
                    "outcome of lease %s refused: the lease is no longer ours", request.lease_id
                )
                return False
            except LeaseApiError as exc:
                self.metrics.lease_errors.inc()
                failures += 1
                delay = REPORT_RETRY.base_delay(failures)
                # One line when delivery starts failing, then one a minute.
                if failures == 1 or failures % max(1, int(60 / REPORT_RETRY.max_seconds)) == 0:
                    log.warning(
                        "outcome of lease %s not delivered (%s); retrying every %.0fs at most",
                        request.lease_id,
                        exc,
                        REPORT_RETRY.max_seconds,
                    )
            if lease_lost is not None and lease_lost.done():
                log.warning(
                    "outcome of lease %s dropped: its heartbeats say the lease is gone",
                    request.lease_id,
                )
                return False
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(asyncio.sleep(delay))}
            if lease_lost is not None:
                waits.add(lease_lost)
            _, pending = await asyncio.wait(waits, return_when="FIRST_COMPLETED")
            for waiting in pending:
                if waiting is not lease_lost:
                    waiting.cancel()

    async def _drain(self) -> None:
        await self._drain_running()
        if not self._reports:
            return
        # Outcomes keep being delivered past the grace period, for a bounded
        # time: the pod's termination grace leaves a margin for them.
        limit = max(self._grace_left(), REPORT_MARGIN_SECONDS)
        log.info("delivering %d outcomes (up to %.0fs)", len(self._reports), limit)
        deadline = time.monotonic() + limit
        hurry = asyncio.ensure_future(self._hurry.wait())
        while self._reports and not hurry.done() and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait({hurry, *self._reports}, timeout=left, return_when="FIRST_COMPLETED")
        hurry.cancel()
        if self._reports:
            log.error(
                "stopping with %d outcomes undelivered: their leases will expire and the "
                "Tasks run again",
                len(self._reports),
            )
            for report in list(self._reports):
                report.cancel()
            await asyncio.wait(set(self._reports), timeout=5)

    async def _drain_running(self) -> None:
        if not self._running:
            return
        running = list(self._running.values())
        log.info("waiting up to %.1fs for %d running tasks", self._grace_left(), len(running))
        hurry = asyncio.ensure_future(self._hurry.wait())
        everything = asyncio.ensure_future(asyncio.wait(running))
        await asyncio.wait(
            {hurry, everything}, timeout=self._grace_left(), return_when="FIRST_COMPLETED"
        )
        hurry.cancel()
        everything.cancel()
        pending = [task for task in running if not task.done()]
        for task in pending:
            if task.get_name().startswith("task-"):
                task.cancel()  # _execute hands the Task back
        if pending:
            await asyncio.wait(pending, timeout=15)
            log.info("handed back %d unfinished tasks", len(pending))


def _outcome_label(request: CompleteRequest) -> str:
    if request.outcome != Outcome.FAILED or request.error is None:
        return request.outcome.value
    if request.error.timed_out:
        return "timed_out"
    if not request.error.retryable:
        return "permanent_failure"
    if request.error.retry_after_seconds is not None:
        return "retry"
    return "failed"
