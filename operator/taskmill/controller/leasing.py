"""The lease API's side of the operator: leases out, heartbeats, outcomes in.

Serves :class:`~taskmill.leaseapi.server.LeaseBackend`. Granting a lease and
recording an outcome each hold the Task's key in the reconciler's
:class:`~taskmill.controller.workqueue.KeyedQueue`, so neither overlaps a
reconcile of the same Task (nor another grant or outcome): what a Task is
doing is decided by one party at a time, with no guards of its own. Both end
by taking the written object into the store, which has the reconciler look
at the Task again (freeing a finished attempt's place, arming its timers).

A lease is recorded in ``status.lease`` (with a resourceVersion precondition)
before the worker hears of it, so a Task is never run under a lease nobody
knows of; while the API server takes no writes (the write gate,
:attr:`Effects.outage <taskmill.controller.effects.Effects.outage>`) nothing
is leased and outcomes are answered 503, which workers retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from taskmill.controller.effects import Failure
from taskmill.controller.payloads import BadPayload, resolve_payload
from taskmill.controller.tasks import TASKS, TaskController
from taskmill.dispatch import task_decisions, transitions
from taskmill.dispatch.clock import to_datetime
from taskmill.dispatch.dispatcher import Candidate
from taskmill.dispatch.leases import LeaseInfo
from taskmill.dispatch.transitions import StatusPatch
from taskmill.models.lease import (
    CompleteRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    Holder,
    LeasedTask,
    LeaseRequest,
)
from taskmill.models.resources import Task
from taskmill.models.task import Reason

log = logging.getLogger(__name__)

#: Re-read and retry an outcome's write this often when the Task keeps changing.
OUTCOME_WRITE_ATTEMPTS = 5
#: After a grant failed for an unexpected reason, when its Task is looked at again.
GRANT_RETRY_SECONDS = 1.0


class LeaseConflict(Exception):
    """The lease named is not current: expired, foreign, or already completed."""


class ApiUnavailable(Exception):
    """The API server does not take writes now; the caller should retry later."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"the API server is unavailable; retry in {retry_after_seconds:.1f}s")
        self.retry_after_seconds = retry_after_seconds


class Leasing:
    def __init__(self, tasks: TaskController) -> None:
        self.tasks = tasks
        self._clock = tasks.clock
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lease

    async def lease(self, request: LeaseRequest, holder: Holder) -> list[LeasedTask]:
        """Long-poll: return as soon as at least one Task is leased (to ``holder``),
        or [] at the deadline."""
        tasks = self.tasks
        dispatcher = tasks.dispatcher
        outage = tasks.effects.outage
        deadline = self._clock.now() + request.wait_seconds
        while True:
            tasks.worker_asked(request.types)
            arrived = tasks.work_arrived
            now = self._clock.now()
            # While the API server takes no writes, a lease could not be
            # recorded: leave the Tasks queued rather than take and requeue them.
            writable = outage.open(now)
            items = dispatcher.take(request.types, request.max, now) if writable else []
            if items:
                leased = await self._grant_all(items, holder)
                if leased:
                    return leased
                continue
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                return []
            wait = remaining
            next_at = dispatcher.next_wakeup() if writable else outage.retry_at
            if next_at is not None:
                wait = min(wait, max(0.0, next_at - self._clock.now()) + 0.001)
            if arrived.is_set():
                tasks.work_arrived = asyncio.Event()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout=wait)

    async def _grant_all(self, items: list[Candidate], holder: Holder) -> list[LeasedTask]:
        granting = asyncio.gather(*(self._grant(item, holder) for item in items))
        try:
            # Shielded: a worker hanging up mid-grant must not leave leases
            # recorded that nobody will ever hear of.
            grants = await asyncio.shield(granting)
        except asyncio.CancelledError:
            for grant in await granting:
                if grant is not None:
                    self._spawn(self._hand_back(grant.lease_id))
            raise
        return [g for g in grants if g is not None]

    async def _grant(self, item: Candidate, holder: Holder) -> LeasedTask | None:
        tasks = self.tasks
        key = item.key
        async with tasks.queue.hold(key):
            try:
                return await self._grant_held(item, holder)
            except Exception:
                # Whatever went wrong (a payload that could not be read, say),
                # the Task is not left claimed: it is looked at again shortly.
                log.exception("lease of %s/%s failed; it is tried again", *key)
                tasks.dispatcher.finished(key)
                tasks.look_again(key, self._clock.now() + GRANT_RETRY_SECONDS)
                return None
            except BaseException:
                tasks.dispatcher.finished(key)  # cancelled mid-grant: not leased
                tasks.queue.requeue(key)
                raise

    async def _grant_held(self, item: Candidate, holder: Holder) -> LeasedTask | None:
        """Grant the lease while holding the Task's key."""
        tasks = self.tasks
        key = item.key
        record = tasks.store.record(key)
        queue = tasks.queue_spec(record) if record is not None else None
        if record is None or queue is None or not task_decisions.leasable(record.task):
            # Changed since it was queued (deleted, cancelled, its queue
            # gone): the reconciler decides what it is now.
            tasks.dispatcher.finished(key)
            tasks.queue.requeue(key)
            return None
        try:
            payload = await resolve_payload(tasks.client, key[0], record.task.spec)
        except BadPayload as exc:
            tasks.dispatcher.finished(key)
            decision = task_decisions.Decision(
                patch=transitions.dead(
                    record.task.status, Reason.INVALID_TASK, str(exc), self._clock.now()
                ),
                announce=task_decisions.Announcement("Warning", Reason.INVALID_TASK, str(exc)),
            )
            await tasks.carry_out(record, decision)
            return None
        lease = task_decisions.new_lease(
            record.task,
            queue,
            lease_id=uuid.uuid4().hex,
            worker=holder.worker,
            holder=holder.identity,
            now=self._clock.now(),
        )
        tasks.leases.grant(lease)
        written = await tasks.effects.write_status(
            TASKS,
            key,
            record.resource_version,
            transitions.leased(record.task.status, lease),
            record.task.metadata.generation,
        )
        if not written.landed:
            tasks.dispatcher.finished(key)
            if written.failure is Failure.REFUSED:
                # Refused as it is: looked at again later (not leased again at
                # once, which would only be refused again).
                log.warning("lease of %s/%s refused: %s", *key, written.error)
            else:
                # Queued again: a conflict's newer version is read first; while
                # the API server is away the write gate keeps it from being taken.
                tasks.queue.requeue(key)
            await tasks.not_written(key, written)
            return None
        assert written.body is not None
        tasks.store.adopt(written.body)
        timeout = task_decisions.attempt_timeout(record.task.spec, queue)
        return LeasedTask(
            lease_id=lease.id,
            namespace=key[0],
            name=key[1],
            uid=record.uid,
            type=record.task.spec.type,
            attempt=lease.attempt,
            payload=payload,
            timeout_seconds=timeout,
            expires_at=to_datetime(lease.expires_at),
            heartbeat_seconds=lease.lease_seconds * tasks.settings.heartbeat_fraction,
        )

    async def _hand_back(self, lease_id: str) -> None:
        """Release a lease whose worker hung up before it heard of it: the Task
        is queued again at once and the attempt does not count."""
        lease = self.tasks.leases.get(lease_id)
        if lease is None:
            return
        log.info(
            "%s/%s: its worker %s went away before the lease reached it", *lease.key, lease.worker
        )
        try:
            await self._finish(
                lease,
                lambda task: transitions.released(task.status, lease, self._clock.now()),
            )
        except (LeaseConflict, ApiUnavailable):
            pass  # it expires, and is retried, as a lease whose worker vanished
        except Exception as exc:
            log.warning("could not release the lease of %s/%s: %s", *lease.key, exc)

    # ------------------------------------------------------------------ heartbeats, outcomes

    @staticmethod
    def _held_by(lease: LeaseInfo, holder: Holder) -> bool:
        return lease.worker == holder.worker and lease.holder == holder.identity

    def heartbeat(self, request: HeartbeatRequest, holder: Holder) -> HeartbeatResponse:
        leases = self.tasks.leases
        now = self._clock.now()
        if leases.revoked(request.lease_id):
            return HeartbeatResponse(expires_at=to_datetime(now), cancel=True)
        lease = leases.get(request.lease_id)
        if lease is None or not self._held_by(lease, holder):
            raise LeaseConflict(request.lease_id)
        extended = leases.heartbeat(request.lease_id, now)
        if extended is None:  # expired: its end is being recorded
            raise LeaseConflict(request.lease_id)
        if request.progress is not None:
            progress = request.progress.to_api() | {"updatedAt": transitions.iso(now)}
            leases.report_progress(extended, progress)
        return HeartbeatResponse(expires_at=to_datetime(extended.expires_at))

    async def complete(self, request: CompleteRequest, holder: Holder) -> None:
        """End an attempt as its worker reports. Raises :class:`LeaseConflict`
        when the lease is not current, :class:`ApiUnavailable` while the API
        server takes no writes (the worker keeps the outcome and retries)."""
        now = self._clock.now()
        outage = self.tasks.effects.outage
        if not outage.open(now):
            raise ApiUnavailable(outage.retry_at - now)
        lease = self.tasks.leases.get(request.lease_id)
        if lease is None or not self._held_by(lease, holder):
            if self.tasks.leases.forget_revoked(request.lease_id):
                return  # the Task was cancelled meanwhile; the outcome no longer matters
            raise LeaseConflict(request.lease_id)
        await self._finish(
            lease,
            lambda task: task_decisions.outcome(
                task,
                lease,
                request,
                self.tasks.dispatcher.queues.spec(lease.key[0], task.spec.queue),
                self._clock.now(),
            ),
        )

    async def _finish(self, lease: LeaseInfo, make_patch: Callable[[Task], StatusPatch]) -> None:
        """Write the end of an attempt while the lease is still the Task's
        current one; on a conflict read it again and retry."""
        tasks = self.tasks
        key = lease.key
        async with tasks.queue.hold(key):
            for _ in range(OUTCOME_WRITE_ATTEMPTS):
                if tasks.leases.get(lease.id) is None:
                    # Ended while we waited for the Task: cancelled, expired,
                    # or this very outcome reported twice.
                    if tasks.leases.forget_revoked(lease.id):
                        return
                    raise LeaseConflict(lease.id)
                record = tasks.store.record(key)
                recorded = record.status.lease if record is not None else None
                if record is None or record.uid != lease.uid or recorded is None:
                    tasks.queue.requeue(key)
                    raise LeaseConflict(lease.id)
                if recorded.id != lease.id:
                    tasks.queue.requeue(key)
                    raise LeaseConflict(lease.id)
                patch = make_patch(record.task)
                written = await tasks.effects.write_status(
                    TASKS, key, record.resource_version, patch, record.task.metadata.generation
                )
                if written.landed:
                    assert written.body is not None
                    tasks.store.adopt(written.body)
                    announce = task_decisions.ended(patch)
                    if announce is not None:
                        await tasks.effects.event(
                            written.body, announce.type, announce.reason, announce.message
                        )
                    return
                if written.failure is Failure.GONE:
                    return  # deleted: its DELETED event ends the lease
                if written.failure is Failure.TRANSIENT:
                    now = self._clock.now()
                    raise ApiUnavailable(max(0.0, tasks.effects.outage.retry_at - now))
                if written.failure is Failure.REFUSED:
                    assert written.error is not None
                    raise written.error
                # Changed meanwhile (e.g. its spec edited): read it and retry.
                body = await tasks.effects.read(TASKS, key)
                if body is None:
                    raise ApiUnavailable(1.0)
                tasks.store.observe("MODIFIED", body)
            raise LeaseConflict(lease.id)

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
