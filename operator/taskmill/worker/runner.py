"""The worker loop: lease as many Tasks as there are free slots, run them,
heartbeat while they run, report how they ended.

Shutdown (SIGTERM): stop leasing, let running handlers finish within the
grace period, then hand back (``released``) what is still running, so the
operator re-queues it at once without counting an attempt. A second signal
ends the grace period early.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
from dataclasses import dataclass

from taskmill.models.lease import CompleteRequest, HeartbeatRequest, LeasedTask, Outcome
from taskmill.worker.context import HandlerContext
from taskmill.worker.execution import Cancelled, call_handler
from taskmill.worker.leaseclient import LeaseApiError, LeaseClient, LeaseLost
from taskmill.worker.registry import Registry

log = logging.getLogger("taskmill.worker")


@dataclass(frozen=True)
class WorkerSettings:
    lease_url: str
    #: Handlers running at once; the worker leases exactly as many Tasks as it has free.
    concurrency: int = 4
    #: Identity reported to the operator (default: host name and pid).
    name: str = ""
    #: On SIGTERM, how long running handlers may take before they are handed back.
    grace_seconds: float = 25.0
    #: Long-poll length of each lease call.
    poll_seconds: float = 20.0
    token: str | None = None


class Worker:
    def __init__(self, registry: Registry, settings: WorkerSettings) -> None:
        if len(registry) == 0:
            raise ValueError("no handlers registered")
        self.registry = registry
        self.settings = settings
        self.name = settings.name or f"{socket.gethostname()}-{__import__('os').getpid()}"
        self.client = LeaseClient(settings.lease_url, self.name, token=settings.token)
        # Threads beyond `concurrency` leave room for sync handlers that
        # outlived their timeout and could not be interrupted.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.concurrency * 2, thread_name_prefix="taskmill-handler"
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self.completed = 0

    def stop(self) -> None:
        """Stop leasing; running work gets the grace period."""
        if not self._stopping.is_set():
            log.info("stopping: no new work, %d running", len(self._running))
        self._stopping.set()

    async def run(self) -> None:
        log.info(
            "worker %s: %d slots, types %s, operator %s",
            self.name,
            self.settings.concurrency,
            ", ".join(self.registry.types),
            self.settings.lease_url,
        )
        errors = 0
        try:
            while not self._stopping.is_set():
                free = await self._free_slots()
                if self._stopping.is_set():
                    break
                try:
                    leased = await self._lease_or_stop(free)
                    errors = 0
                except LeaseApiError as exc:
                    errors += 1
                    delay = min(10.0, 0.2 * 2**errors)
                    log.warning("lease call failed (%s); retrying in %.1fs", exc, delay)
                    await self._sleep_or_stop(delay)
                    continue
                for task in leased:
                    self._start(task)
            await self._drain()
        finally:
            await self.client.close()
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _free_slots(self) -> int:
        # Wait for one slot, then count the others that are free too.
        await self._slots.acquire()
        self._slots.release()
        return self.settings.concurrency - len(self._running)

    async def _lease_or_stop(self, free: int) -> list[LeasedTask]:
        lease = asyncio.ensure_future(
            self.client.lease(self.registry.types, free, self.settings.poll_seconds)
        )
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({lease, stop}, return_when="FIRST_COMPLETED")
        stop.cancel()
        if not lease.done():
            # Stopping: let an in-flight lease call finish so nothing it was
            # granted is left stranded; it is run (or handed back) like the rest.
            await asyncio.wait({lease}, timeout=2.0)
            if not lease.done():
                lease.cancel()
                return []
        return lease.result()

    async def _sleep_or_stop(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def _start(self, leased: LeasedTask) -> None:
        task = asyncio.create_task(self._execute(leased), name=f"task-{leased.name}")
        self._running[leased.lease_id] = task
        task.add_done_callback(lambda _: self._running.pop(leased.lease_id, None))

    async def _execute(self, leased: LeasedTask) -> None:
        async with self._slots:
            spec = self.registry.get(leased.type)
            ctx = HandlerContext(
                name=leased.name,
                namespace=leased.namespace,
                uid=leased.uid,
                type=leased.type,
                attempt=leased.attempt,
                logger=log.getChild(leased.type),
            )
            progress: list[HeartbeatRequest] = []
            ctx._report_progress = lambda p, m: progress.append(
                HeartbeatRequest.model_validate(
                    {"leaseId": leased.lease_id, "progress": {"percent": p, "message": m}}
                )
            )
            cancel = asyncio.Event()
            beats = asyncio.create_task(self._heartbeats(leased, cancel, progress))
            try:
                if spec is None:  # the operator only sends registered types
                    log.error("no handler for type %r", leased.type)
                    return
                outcome = await call_handler(spec, leased, ctx, self._pool, cancel)
            except Cancelled:
                log.info("%s/%s: cancelled while running", leased.namespace, leased.name)
                return
            except asyncio.CancelledError:
                # Shutdown after the grace period: hand the Task back.
                ctx.cancelled.set()
                await self._report(
                    CompleteRequest(lease_id=leased.lease_id, outcome=Outcome.RELEASED)
                )
                return
            finally:
                beats.cancel()
            await self._report(outcome)
            self.completed += 1

    async def _heartbeats(
        self, leased: LeasedTask, cancel: asyncio.Event, progress: list[HeartbeatRequest]
    ) -> None:
        interval = max(0.2, leased.heartbeat_seconds)
        while True:
            await asyncio.sleep(interval)
            request = progress[-1] if progress else HeartbeatRequest(lease_id=leased.lease_id)
            progress.clear()
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

    async def _report(self, request: CompleteRequest) -> None:
        """Deliver the outcome; retry a while if the operator is unreachable."""
        for attempt in range(8):
            try:
                await self.client.complete(request)
                return
            except LeaseLost:
                log.warning(
                    "outcome of lease %s refused: the lease is no longer ours", request.lease_id
                )
                return
            except LeaseApiError as exc:
                delay = min(5.0, 0.1 * 2**attempt)
                log.warning("complete failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        log.error("gave up reporting lease %s; its lease will expire", request.lease_id)

    async def _drain(self) -> None:
        if not self._running:
            return
        running = list(self._running.values())
        log.info(
            "waiting up to %.0fs for %d running tasks", self.settings.grace_seconds, len(running)
        )
        _, pending = await asyncio.wait(running, timeout=self.settings.grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)
            log.info("handed back %d unfinished tasks", len(pending))
