"""The operator's engine: watch events in, leases out, status writes back.

``observe`` is fed every Task watch event (kopf calls it) and keeps an
in-memory record per Task; eligible Tasks go into the pure
:class:`~taskmill.dispatch.dispatcher.Dispatcher`. The lease API calls
``lease``, ``heartbeat`` and ``complete``. A background loop expires leases
whose heartbeats stopped and marks Tasks no worker asks for.

Stale events are dropped by comparing resourceVersions, which etcd issues as
increasing integers (the API server's watch cache relies on the same); our own
writes update the record at once, so their echo on the watch is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import orjson
from pydantic import ValidationError

from taskmill.controller.events import EventRecorder
from taskmill.controller.payloads import BadPayload, resolve_payload
from taskmill.controller.records import TaskRecord, limits_of, newer
from taskmill.controller.settings import OperatorSettings
from taskmill.controller.status_writer import StatusPatch, StatusWriter
from taskmill.dispatch import transitions
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import Clock, WallClock, to_datetime, to_timestamp
from taskmill.dispatch.dependencies import DependencyState, evaluate, find_cycle
from taskmill.dispatch.dispatcher import Candidate, Dispatcher, Limits
from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.leases import LeaseBook, LeaseInfo
from taskmill.kube.client import UNREACHABLE, ApiError, KubeClient, is_transient, path
from taskmill.models.lease import (
    CompleteRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    Holder,
    LeasedTask,
    LeaseRequest,
    Outcome,
    ReportedError,
)
from taskmill.models.resources import Task, TaskQueue
from taskmill.models.task import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    PAYLOAD_MAX_BYTES,
    RESULT_MAX_BYTES,
    RETRY_ANNOTATION,
    AttemptOutcome,
    Phase,
    Reason,
    TaskStatus,
)
from taskmill.models.taskqueue import TaskQueueSpec

log = logging.getLogger(__name__)


#: How often reported progress is written to running Tasks (and orphaned
#: types looked for): progress is for people watching, so it is batched
#: rather than costing a write per heartbeat.
PROGRESS_SECONDS = 5.0


async def _done(value: bool) -> bool:
    return value


async def _nothing() -> None:
    return None


class LeaseConflict(Exception):
    """The lease named is not current: expired, foreign, or already completed."""


class ApiUnavailable(Exception):
    """The API server does not take writes now; the caller should retry later."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"the API server is unavailable; retry in {retry_after_seconds:.1f}s")
        self.retry_after_seconds = retry_after_seconds


class Engine:
    def __init__(
        self,
        client: KubeClient,
        settings: OperatorSettings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock or WallClock()
        self.rng = rng or random.Random()
        self.dispatcher = Dispatcher()
        self.leases = LeaseBook()
        self.records: dict[TaskKey, TaskRecord] = {}
        self.writer = StatusWriter(
            client, self.clock, max_concurrent=settings.max_concurrent_writes
        )
        self.events = EventRecorder(
            client, per_second=settings.events_per_second, component=settings.instance
        )
        self._changed = asyncio.Event()
        self._completing: set[str] = set()
        #: Tasks (key and uid) whose Dead write is in flight.
        self._dying: set[tuple[TaskKey, str]] = set()
        #: Leases of Tasks cancelled or deleted while running: heartbeats say cancel.
        self._cancelled: dict[str, float] = {}
        #: When a worker last asked for each type (monotonic seconds).
        self._wanted: dict[str, float] = {}
        self._started = time.monotonic()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Latest progress reported per running Task, not yet written.
        self._progress: dict[TaskKey, tuple[str, dict[str, Any]]] = {}
        #: Whether the initial list of Tasks has been taken in (see mark_synced).
        self.synced = False
        #: The ``default`` queue of a namespace that has no TaskQueue of that
        #: name: one object, not one built for every Task that asks.
        self._implicit_default_queue = TaskQueueSpec(lease_seconds=int(settings.lease_seconds))
        #: TaskQueues by (namespace, name), read live from their watch.
        self.queues: dict[tuple[str, str], TaskQueueSpec] = {}
        #: Tasks set aside because their queue is missing.
        self._parked: dict[tuple[str, str], set[TaskKey]] = {}
        #: Dependency -> the Tasks waiting for it to end.
        self._dependents: dict[TaskKey, set[TaskKey]] = {}
        #: (time, key, uid) heaps: active deadlines, and TTL deletions.
        self._deadlines: list[tuple[float, TaskKey, str]] = []
        self._expiries: list[tuple[float, TaskKey, str]] = []
        self._timed: dict[tuple[str, TaskKey, str], float] = {}

    # ------------------------------------------------------------------ watch

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Take in one watch event of a Task. Never raises."""
        try:
            self._observe(event_type, body)
        except Exception:
            meta = body.get("metadata", {})
            log.exception("failed to process Task %s/%s", meta.get("namespace"), meta.get("name"))

    def _observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key: TaskKey = (meta.get("namespace", ""), meta.get("name", ""))
        uid = meta.get("uid", "")
        if event_type == "DELETED":
            self._forget(key, cancelled=True)
            return
        rv = meta.get("resourceVersion", "")
        known = self.records.get(key)
        if known is not None:
            if known.uid != uid:
                self._forget(key, cancelled=True)  # deleted and created again
            elif not newer(rv, known.resource_version):
                return  # the echo of our own write, or an older event
        try:
            task = Task.model_validate(body)
        except ValidationError as exc:
            self._spawn(self._reject_invalid(key, body, exc))
            return
        record = TaskRecord(key=key, uid=uid, resource_version=rv, task=task)
        self.records[key] = record
        self._schedule(record)
        if known is None:
            self._wake_dependents(key)  # it may be a dependency others wait for

    def known_in(self, namespace: str | None) -> dict[TaskKey, str]:
        """Key and uid of the Tasks known in a namespace (all of them for ``None``)."""
        return {
            key: record.uid
            for key, record in self.records.items()
            if namespace is None or key[0] == namespace
        }

    def mark_synced(self) -> None:
        """Every Task has been listed (see :class:`~taskmill.controller.informer.TaskInformer`):
        the state a restarted operator works from. Until then the lease API
        answers 503, so a worker finishing an attempt across a restart retries
        instead of being told its lease is unknown."""
        self.synced = True
        # Dependencies not listed during the load really are missing now: say so.
        for dependency, dependents in list(self._dependents.items()):
            if dependency not in self.records:
                for key in sorted(dependents):
                    if (record := self.records.get(key)) is not None:
                        self._schedule(record)

    async def load_queues(self, namespaces: tuple[str, ...]) -> None:
        """List TaskQueues before Tasks are watched, so no Task is wrongly
        reported as naming a missing queue while the queues are still loading."""
        urls = [path("taskqueues", ns) for ns in namespaces] or [path("taskqueues")]
        for url in urls:
            listed = await self.client.get(url)
            for item in listed.get("items", []):
                self.observe_queue("ADDED", item)

    def observe_queue(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Take in one watch event of a TaskQueue. Never raises."""
        meta = body.get("metadata") or {}
        queue_key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.queues.pop(queue_key, None)
            self.dispatcher.set_limits(queue_key, Limits())
            if queue_key[1] != DEFAULT_QUEUE:
                for candidate in list(self.dispatcher.pending()):
                    record = self.records.get(candidate.key)
                    same_queue = (candidate.key[0], candidate.queue) == queue_key
                    if same_queue and record is not None:
                        self._park(record)
            return
        try:
            queue = TaskQueue.model_validate(body)
        except ValidationError as exc:
            log.warning("ignoring invalid TaskQueue %s/%s: %s", *queue_key, exc)
            return
        self.queues[queue_key] = queue.spec
        self.dispatcher.set_limits(queue_key, limits_of(queue.spec))
        for key in self._parked.pop(queue_key, set()):
            record = self.records.get(key)
            if record is not None:
                self._schedule(record)

    def _queue_of(self, record: TaskRecord) -> TaskQueueSpec | None:
        """The Task's queue; ``default`` exists implicitly until one is created."""
        name = record.task.spec.queue
        spec = self.queues.get((record.key[0], name))
        if spec is None and name == DEFAULT_QUEUE:
            return self._implicit_default_queue
        return spec

    def _park(self, record: TaskRecord) -> None:
        """Hold a Task back until its queue exists; say why once."""
        name = record.task.spec.queue
        self.dispatcher.discard(record.key)
        self._parked.setdefault((record.key[0], name), set()).add(record.key)
        if record.status.reason != Reason.QUEUE_NOT_FOUND:
            message = f"TaskQueue {name!r} does not exist in namespace {record.key[0]!r}"
            patch = transitions.waiting(
                record.status, Reason.QUEUE_NOT_FOUND, message, self.clock.now()
            )
            self._spawn(self._write_and_warn(record, patch, Reason.QUEUE_NOT_FOUND, message))

    def _schedule(self, record: TaskRecord) -> None:
        key, task, status = record.key, record.task, record.status
        if self._retry_requested(record):
            return
        if status.phase.is_finished:
            self.dispatcher.discard(key)
            self._end_lease_of(key)
            self._on_finished(record)
            return
        if task.spec.cancel or task.metadata.deletion_timestamp is not None:
            self.dispatcher.discard(key)
            self._spawn(self._cancel(record))
            return
        if self._past_deadline(record):
            return
        if status.phase == Phase.RUNNING:
            self.dispatcher.discard(key)
            if status.lease is not None and self.leases.for_key(key) is None:
                self._restore_lease(record)
            return
        held = self.leases.for_key(key)
        if held is not None:
            # A version newer than we knew, without our lease: the attempt is
            # over (the echo of our own end-of-attempt write overtook its
            # response), or a lease write is in flight that will now fail its
            # resourceVersion precondition. Either way the lease is done.
            self._end_lease(held.id)
        payload = task.spec.payload
        if payload is not None and len(orjson.dumps(payload)) > PAYLOAD_MAX_BYTES:
            message = f"payload is larger than {PAYLOAD_MAX_BYTES} bytes; use payloadFrom"
            self._spawn(self._mark_dead(record, Reason.PAYLOAD_TOO_LARGE, message))
            return
        if task.spec.depends_on and status.attempts == 0 and not self._dependencies_met(record):
            return
        queue = self._queue_of(record)
        if queue is None:
            self._park(record)
            return
        if queue.paused and status.reason != Reason.QUEUE_PAUSED:
            message = f"TaskQueue {task.spec.queue!r} is paused"
            self._spawn(
                self._write_and_warn(
                    record,
                    transitions.waiting(status, Reason.QUEUE_PAUSED, message, self.clock.now()),
                    Reason.QUEUE_PAUSED,
                    message,
                    warn=False,
                )
            )
        now = self.clock.now()
        eligible_at = 0.0
        if status.next_attempt_at is not None:
            eligible_at = to_timestamp(status.next_attempt_at)
        if task.spec.run_at is not None and status.attempts == 0:
            run_at = to_timestamp(task.spec.run_at)
            eligible_at = max(eligible_at, run_at)
            if run_at > now and status.reason != Reason.RUN_AT:
                patch = transitions.waiting(
                    status, Reason.RUN_AT, "waiting for spec.runAt", now, run_at
                )
                self._spawn(self._write_quietly(record, patch))
        created = task.metadata.creation_timestamp
        self.dispatcher.put(
            Candidate(
                key=key,
                queue=task.spec.queue,
                type=task.spec.type,
                priority=task.spec.priority,
                created=to_timestamp(created) if created else now,
                eligible_at=eligible_at,
            ),
            now,
        )
        self._changed.set()

    def _retry_requested(self, record: TaskRecord) -> bool:
        """Act on a new ``taskmill.dev/retry`` value; True when the Task restarts."""
        value = record.task.metadata.annotations.get(RETRY_ANNOTATION)
        status = record.status
        if value is None or value == status.observed_retry:
            return False
        if not value.strip() or len(value) > 253:
            message = f"{RETRY_ANNOTATION} must be a new, non-empty value of at most 253 characters"
            reason = Reason.INVALID_ANNOTATION
        elif status.phase != Phase.DEAD:
            message = f"only a Dead Task is retried; this one is {status.phase.value}"
            reason = Reason.RETRY_IGNORED
        else:
            self.dispatcher.discard(record.key)
            message = f"retried ({RETRY_ANNOTATION}={value})"
            patch = transitions.retried(status, value, self.clock.now())
            self._spawn(self._write_and_warn(record, patch, Reason.RETRIED, message, warn=False))
            return True
        # Remember the value either way, so it is reported once and never acted on later.
        self._spawn(self._write_and_warn(record, {"observedRetry": value}, reason, message))
        return False

    def _past_deadline(self, record: TaskRecord) -> bool:
        """Dead with DeadlineExceeded once ``activeDeadlineSeconds`` has passed;
        otherwise make sure a timer looks again then."""
        seconds = record.task.spec.active_deadline_seconds
        created = record.task.metadata.creation_timestamp
        if seconds is None or created is None:
            return False
        deadline = to_timestamp(created) + seconds
        if self.clock.now() < deadline:
            self._at(self._deadlines, "deadline", deadline, record)
            return False
        self.dispatcher.discard(record.key)
        lease = self._end_lease_of(record.key)
        if lease is not None:  # the running attempt learns it from its next heartbeat
            self._cancelled[lease.id] = self.clock.now() + lease.lease_seconds
        message = f"activeDeadlineSeconds ({seconds}s) passed"
        self._spawn(self._mark_dead(record, Reason.DEADLINE_EXCEEDED, message))
        return True

    def _on_finished(self, record: TaskRecord) -> None:
        ttl = record.task.spec.ttl_seconds_after_finished
        finished_at = record.status.finished_at
        if ttl is not None:
            at = to_timestamp(finished_at) + ttl if finished_at else self.clock.now() + ttl
            self._at(self._expiries, "ttl", at, record)
        self._wake_dependents(record.key)

    def _wake_dependents(self, key: TaskKey) -> None:
        for dependent in sorted(self._dependents.pop(key, ())):
            record = self.records.get(dependent)
            if record is not None:
                self._schedule(record)

    def _dependencies_met(self, record: TaskRecord) -> bool:
        """Whether every dependency holds; if not, wait for them (saying so) or
        go Dead when one never can, or when they form a cycle."""
        namespace = record.key[0]
        waiting: list[str] = []
        missing: list[str] = []
        for dependency in record.task.spec.depends_on or []:
            other = self.records.get((namespace, dependency.name))
            state = evaluate(dependency.condition, other.status.phase if other else None)
            if state is DependencyState.IMPOSSIBLE:
                assert other is not None
                message = (
                    f"dependency {dependency.name!r} ended {other.status.phase.value}, "
                    f"not {dependency.condition.value}"
                )
                self._spawn(self._mark_dead(record, Reason.DEPENDENCY_FAILED, message))
                return False
            if state is DependencyState.WAITING:
                waiting.append(dependency.name)
            elif state is DependencyState.MISSING:
                missing.append(dependency.name)
        if not waiting and not missing:
            return True
        self.dispatcher.discard(record.key)
        for name in waiting + missing:
            self._dependents.setdefault((namespace, name), set()).add(record.key)
        cycle = find_cycle(
            record.key[1], lambda name: self._unfinished_dependencies(namespace, name)
        )
        if cycle is not None:
            message = "dependency cycle: " + " → ".join(cycle)
            self._spawn(self._mark_dead(record, Reason.DEPENDENCY_CYCLE, message))
            return False
        if missing and not self.synced:
            return False  # the initial list may not have reached them yet
        parts = []
        if waiting:
            parts.append("waiting for " + ", ".join(sorted(waiting)))
        if missing:
            parts.append("no such Task: " + ", ".join(sorted(missing)))
        message = "; ".join(parts)
        status = record.status
        if status.reason != Reason.DEPENDENCIES or status.message != message:
            self._spawn(
                self._write_quietly(
                    record,
                    transitions.waiting(
                        record.status, Reason.DEPENDENCIES, message, self.clock.now()
                    ),
                )
            )
        return False

    def _unfinished_dependencies(self, namespace: str, name: str) -> list[str]:
        record = self.records.get((namespace, name))
        if record is None or record.status.phase.is_finished:
            return []
        return [
            d.name
            for d in record.task.spec.depends_on or []
            if (other := self.records.get((namespace, d.name))) is not None
            and not other.status.phase.is_finished
        ]

    async def _delete_expired(self, key: TaskKey, uid: str) -> None:
        """TTL: delete a finished Task, only if it is still the same object."""
        try:
            await self.client.delete(
                path(Task.RESOURCE_PLURAL, *key),
                {"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
            )
            log.info("deleted %s/%s: ttlSecondsAfterFinished passed", *key)
        except ApiError as exc:
            if not (exc.is_not_found or exc.is_conflict):
                log.warning("could not delete expired %s/%s: %s", *key, exc)
        except UNREACHABLE as exc:
            log.warning("could not delete expired %s/%s: %s", *key, exc)

    def _restore_lease(self, record: TaskRecord) -> None:
        """A Task found Running at start-up keeps its lease; its worker has one
        lease period from now to heartbeat before it expires."""
        status = record.status
        assert status.lease is not None
        now = self.clock.now()
        lease_seconds = self.settings.lease_seconds
        # The attempt's own start, recorded with its lease; a lease written
        # before that was recorded began after the previous attempt ended.
        if status.lease.started_at is not None:
            started = to_timestamp(status.lease.started_at)
        elif status.history and status.history[-1].finished_at is not None:
            started = to_timestamp(status.history[-1].finished_at)
        elif status.started_at is not None:
            started = to_timestamp(status.started_at)
        else:
            started = now
        self.leases.add(
            LeaseInfo(
                id=status.lease.id,
                key=record.key,
                uid=record.uid,
                worker=status.lease.worker,
                holder=status.lease.holder,
                attempt=max(status.attempts, 1),
                started_at=started,
                expires_at=max(to_timestamp(status.lease.expires_at), now + lease_seconds),
                lease_seconds=lease_seconds,
            )
        )
        spec = record.task.spec
        self.dispatcher.mark_running(Candidate(record.key, spec.queue, spec.type, spec.priority))

    def _end_lease(self, lease_id: str) -> LeaseInfo | None:
        """Drop a lease and free its place in the queue's concurrency."""
        lease = self.leases.remove(lease_id)
        if lease is not None:
            self.dispatcher.finished(lease.key)
        return lease

    def _end_lease_of(self, key: TaskKey) -> LeaseInfo | None:
        held = self.leases.for_key(key)
        return self._end_lease(held.id) if held is not None else None

    def _forget(self, key: TaskKey, *, cancelled: bool) -> None:
        self.dispatcher.discard(key)
        self.records.pop(key, None)
        lease = self._end_lease_of(key)
        if lease is not None and cancelled:
            self._cancelled[lease.id] = self.clock.now() + lease.lease_seconds

    # ------------------------------------------------------------------ lease API

    async def lease(self, request: LeaseRequest, holder: Holder) -> list[LeasedTask]:
        """Long-poll: return as soon as at least one Task is leased (to ``holder``),
        or [] at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.wait_seconds
        while True:
            now_mono = time.monotonic()
            for type_ in request.types:
                self._wanted[type_] = now_mono
            changed = self._changed
            now = self.clock.now()
            # While the API server takes no writes, a lease could not be
            # recorded: leave the Tasks queued rather than take and requeue them.
            writable = self.writer.outage.open(now)
            items = self.dispatcher.take(request.types, request.max, now) if writable else []
            if items:
                granting = asyncio.gather(*(self._grant(i, holder) for i in items))
                try:
                    # Shielded: a worker hanging up mid-grant must not leave
                    # leases recorded that nobody will ever hear of.
                    grants = await asyncio.shield(granting)
                except asyncio.CancelledError:
                    for grant in await granting:
                        if grant is not None:
                            self._spawn(self._hand_back(grant.lease_id))
                    raise
                for item, grant in zip(items, grants, strict=True):
                    if grant is None and self.leases.for_key(item.key) is None:
                        self.dispatcher.finished(item.key)  # not leased: free its slot
                leased = [g for g in grants if g is not None]
                if leased:
                    return leased
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            wait = remaining
            next_at = self.dispatcher.next_wakeup() if writable else self.writer.outage.retry_at
            if next_at is not None:
                wait = min(wait, max(0.0, next_at - self.clock.now()) + 0.001)
            if changed.is_set():
                self._changed = asyncio.Event()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=wait)

    async def _grant(self, item: Candidate, holder: Holder) -> LeasedTask | None:
        record = self.records.get(item.key)
        if record is None:
            return None
        queue = self._queue_of(record)
        if queue is None:  # deleted since the Task was queued
            self._park(record)
            return None
        spec = record.task.spec
        try:
            payload = await resolve_payload(self.client, record.key[0], record.task.spec)
        except BadPayload as exc:
            await self._mark_dead(record, Reason.INVALID_TASK, str(exc))
            return None
        now = self.clock.now()
        lease_seconds = float(queue.lease_seconds)
        timeout = spec.timeout_seconds or (
            queue.retry_policy.timeout_seconds if queue.retry_policy else None
        )
        lease = LeaseInfo(
            id=uuid.uuid4().hex,
            key=item.key,
            uid=record.uid,
            worker=holder.worker,
            holder=holder.identity,
            attempt=record.status.attempts + 1,
            started_at=now,
            expires_at=now + lease_seconds,
            lease_seconds=lease_seconds,
            deadline=now + timeout + lease_seconds if timeout else float("inf"),
        )
        self.leases.add(lease)
        try:
            updated = await self.writer.write(
                item.key[0],
                item.key[1],
                record.resource_version,
                transitions.leased(record.task.status, lease),
                record.task.metadata.generation,
            )
        except (ApiError, *UNREACHABLE) as exc:
            self._end_lease(lease.id)
            if isinstance(exc, ApiError) and (exc.is_conflict or exc.is_not_found):
                return None  # a newer version is on its way through the watch
            if not is_transient(exc):
                log.warning("lease of %s/%s failed: %s; requeued", *item.key, exc)
            # Queued again; while the API server is away the write gate
            # (StatusWriter.outage) keeps it from being taken at once.
            self._requeue(record)
            return None
        self._adopt(record, updated)
        return LeasedTask(
            lease_id=lease.id,
            namespace=item.key[0],
            name=item.key[1],
            uid=record.uid,
            type=spec.type,
            attempt=lease.attempt,
            payload=payload,
            timeout_seconds=timeout,
            expires_at=to_datetime(lease.expires_at),
            heartbeat_seconds=lease_seconds * self.settings.heartbeat_fraction,
        )

    async def _hand_back(self, lease_id: str) -> None:
        """Release a lease whose worker hung up before it heard of it: the Task
        is queued again at once and the attempt does not count."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return
        log.info(
            "%s/%s: its worker %s went away before the lease reached it", *lease.key, lease.worker
        )
        with contextlib.suppress(LeaseConflict, ApiError, *UNREACHABLE):
            await self._finish(
                lease, lambda status: transitions.released(status, lease, self.clock.now())
            )

    @staticmethod
    def _held_by(lease: LeaseInfo, holder: Holder) -> bool:
        return lease.worker == holder.worker and lease.holder == holder.identity

    def heartbeat(self, request: HeartbeatRequest, holder: Holder) -> HeartbeatResponse:
        now = self.clock.now()
        if request.lease_id in self._cancelled:
            return HeartbeatResponse(expires_at=to_datetime(now), cancel=True)
        lease = self.leases.get(request.lease_id)
        if lease is None or not self._held_by(lease, holder):
            raise LeaseConflict(request.lease_id)
        lease = self.leases.heartbeat(request.lease_id, now)
        assert lease is not None
        if request.progress is not None:
            self._progress[lease.key] = (
                lease.id,
                request.progress.to_api() | {"updatedAt": transitions.iso(now)},
            )
        return HeartbeatResponse(expires_at=to_datetime(lease.expires_at))

    async def _flush_progress(self) -> None:
        """Write the latest reported progress of running Tasks: at most one write
        per Task per flush, and only for Tasks that reported something new."""
        pending, self._progress = self._progress, {}
        for key, (lease_id, progress) in pending.items():
            record = self.records.get(key)
            held = self.leases.for_key(key)
            if record is None or held is None or held.id != lease_id:
                continue  # the attempt ended meanwhile: its progress no longer matters
            self._spawn(self._write_quietly(record, {"progress": progress}))

    async def complete(self, request: CompleteRequest, holder: Holder) -> None:
        """End an attempt as its worker reports. Raises :class:`LeaseConflict`
        when the lease is not current, :class:`ApiUnavailable` while the API
        server takes no writes (the worker keeps the outcome and retries)."""
        now = self.clock.now()
        if not self.writer.outage.open(now):
            raise ApiUnavailable(self.writer.outage.retry_at - now)
        lease = self.leases.get(request.lease_id)
        foreign = lease is not None and not self._held_by(lease, holder)
        if lease is None or foreign or lease.id in self._completing:
            if self._cancelled.pop(request.lease_id, None) is not None:
                return  # the Task was cancelled meanwhile; the outcome no longer matters
            raise LeaseConflict(request.lease_id)
        self._completing.add(lease.id)
        try:
            await self._finish(lease, lambda status: self._outcome_patch(status, lease, request))
        finally:
            self._completing.discard(lease.id)

    def _outcome_patch(
        self, status: TaskStatus | None, lease: LeaseInfo, request: CompleteRequest
    ) -> StatusPatch:
        now = self.clock.now()
        if request.outcome == Outcome.RELEASED:
            return transitions.released(status, lease, now)
        retry = self._retry_settings(lease.key)
        if request.outcome == Outcome.SUCCEEDED:
            size = len(orjson.dumps(request.result))
            if size <= RESULT_MAX_BYTES:
                return transitions.succeeded(status, lease, request.result, now)
            error = ReportedError(
                type="ResultTooLarge",
                message=f"result is {size} bytes, more than {RESULT_MAX_BYTES}",
                retryable=False,
            )
            return transitions.failed(status, lease, error, now, retry, self.rng)
        error = request.error or ReportedError(message="failed without an error")
        outcome = AttemptOutcome.TIMED_OUT if error.timed_out else AttemptOutcome.FAILED
        return transitions.failed(status, lease, error, now, retry, self.rng, outcome)

    def _retry_settings(self, key: TaskKey) -> transitions.RetrySettings:
        """Task first, then its queue's retryPolicy, then the built-in defaults."""
        record = self.records.get(key)
        spec = record.task.spec if record else None
        queue = self._queue_of(record) if record else None
        policy = queue.retry_policy if queue else None
        max_attempts = (
            (spec.max_attempts if spec else None)
            or (policy.max_attempts if policy else None)
            or DEFAULT_MAX_ATTEMPTS
        )
        return transitions.RetrySettings(
            max_attempts=max_attempts,
            backoff=BackoffPolicy.resolve(
                spec.backoff if spec else None, policy.backoff if policy else None
            ),
        )

    async def _finish(
        self, lease: LeaseInfo, make_patch: Callable[[TaskStatus | None], StatusPatch]
    ) -> None:
        """Write the end of an attempt; on a conflict re-read and retry while the
        lease is still the Task's current one."""
        namespace, name = lease.key
        record = self.records.get(lease.key)
        # The record's Task is already validated: only a re-read needs it.
        known: Task | None = record.task if record else None
        for _ in range(5):
            task = known or Task.model_validate(await self.writer.read(namespace, name))
            current = task.status.lease if task.status else None
            if task.metadata.uid != lease.uid or current is None or current.id != lease.id:
                self._end_lease(lease.id)
                raise LeaseConflict(lease.id)
            try:
                updated = await self.writer.write(
                    namespace,
                    name,
                    task.metadata.resource_version,
                    make_patch(task.status),
                    task.metadata.generation,
                )
            except ApiError as exc:
                if exc.is_not_found:
                    self._end_lease(lease.id)
                    return
                if not exc.is_conflict:
                    raise
                known = None  # changed meanwhile (e.g. spec edited): read and retry
                continue
            self._end_lease(lease.id)
            record = self.records.get(lease.key)
            if record is not None and record.uid == lease.uid:
                self._adopt(record, updated)
            await self._announce_end(updated)
            return
        raise LeaseConflict(lease.id)

    async def _announce_end(self, body: dict[str, Any]) -> None:
        """An Event for an attempt's end that people should see: Dead, or a retry
        after an expired lease. Successes are counted in metrics, not posted."""
        status = body.get("status") or {}
        last = (status.get("history") or [{}])[-1]
        if status.get("phase") == Phase.DEAD.value:
            reason = status.get("reason", Reason.ATTEMPTS_EXHAUSTED.value)
            await self.events.record(body, "Warning", reason, status.get("message", ""))
        elif last.get("outcome") == AttemptOutcome.LEASE_EXPIRED.value:
            message = f"attempt {last.get('attempt')} lost its lease: {last.get('message', '')}"
            await self.events.record(body, "Warning", Reason.LEASE_EXPIRED.value, message)

    # ------------------------------------------------------------------ writes

    def _adopt(self, record: TaskRecord, body: dict[str, Any]) -> None:
        """Take in the object our own write returned."""
        rv = body.get("metadata", {}).get("resourceVersion", "")
        if not newer(rv, record.resource_version):
            return
        record.resource_version = rv
        record.task = Task.model_validate(body)
        # The echo of this write will be dropped as already known, so act on
        # the new state now (e.g. queue a Waiting Task for its next attempt).
        if self.records.get(record.key) is record:
            self._schedule(record)

    def _requeue(self, record: TaskRecord) -> None:
        if record.key in self.records:
            self._schedule(record)

    # The writers below are plain functions returning coroutines, so that the
    # resourceVersion a decision was based on is captured when the decision is
    # made, not when the spawned write runs: by then the record may have moved
    # on (e.g. another write of ours), and the stale decision must fail its
    # precondition instead of overwriting the newer state.

    def _write_quietly(self, record: TaskRecord, patch: StatusPatch) -> Coroutine[Any, Any, bool]:
        """Write ``patch`` if the Task is still as ``record`` is now."""
        return self._write_at(record, record.resource_version, patch)

    async def _write_at(self, record: TaskRecord, based_on: str, patch: StatusPatch) -> bool:
        try:
            updated = await self.writer.write(
                *record.key, based_on, patch, record.task.metadata.generation
            )
        except (ApiError, *UNREACHABLE) as exc:
            if isinstance(exc, ApiError) and (exc.is_conflict or exc.is_not_found):
                # A newer version is on its way through the watch; it is
                # looked at again then.
                log.debug("status write for %s/%s skipped: %s", *record.key, exc.reason)
            elif is_transient(exc):
                # The outage is logged once by the writer.
                log.debug("status write for %s/%s failed: %s", *record.key, exc)
            else:
                log.warning("status write for %s/%s failed: %s", *record.key, exc)
            return False
        if patch.get("phase") == Phase.WAITING.value:
            log.info("Task %s/%s waits: %s: %s", *record.key, patch["reason"], patch["message"])
        self._adopt(record, updated)
        return True

    def _mark_dead(
        self, record: TaskRecord, reason: Reason, message: str
    ) -> Coroutine[Any, Any, None]:
        self.dispatcher.discard(record.key)
        if (record.key, record.uid) in self._dying:
            # The first reason found stands. Two members of a dependency cycle
            # each see the cycle; when one's Dead write lands first, the other
            # is looked at again and sees a Dead dependency. Without this, its
            # DependencyFailed write raced its own DependencyCycle write.
            return _nothing()
        self._dying.add((record.key, record.uid))
        patch = transitions.dead(record.task.status, reason, message, self.clock.now())
        return self._dead_written(record, self._write_quietly(record, patch), reason, message)

    async def _dead_written(
        self, record: TaskRecord, write: Coroutine[Any, Any, bool], reason: Reason, message: str
    ) -> None:
        try:
            written = await write
        finally:
            self._dying.discard((record.key, record.uid))
        if not written:
            current = self.records.get(record.key)
            if current is not None and current is not record:
                # A newer version came while the write was in flight (which
                # is why it failed): it was not looked at then, so now.
                self._schedule(current)
            return
        log.warning("Task %s/%s is Dead: %s: %s", *record.key, reason.value, message)
        await self.events.record(record.reference(), "Warning", reason.value, message)

    def _cancel(self, record: TaskRecord) -> Coroutine[Any, Any, bool]:
        lease = self._end_lease_of(record.key)
        now = self.clock.now()
        if lease is not None:  # its worker hears it from the next heartbeat
            self._cancelled[lease.id] = now + lease.lease_seconds
        if record.task.metadata.deletion_timestamp is not None:
            return _done(False)  # being deleted: nothing to record
        held = record.status.lease
        if lease is not None and (held is None or held.id != lease.id):
            # Its lease write is still in flight (and will fail, the Task has
            # changed): no attempt started, so none goes into the history.
            lease = None
        why = "cancelled by spec.cancel" if record.task.spec.cancel else "deleted"
        return self._write_quietly(
            record, transitions.cancelled(record.task.status, lease, why, now)
        )

    async def _reject_invalid(
        self, key: TaskKey, body: dict[str, Any], exc: ValidationError
    ) -> None:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"invalid Task: {where}: {first['msg']}"
        status = body.get("status") or {}
        if status.get("phase") == Phase.DEAD.value:
            return
        rv = body.get("metadata", {}).get("resourceVersion", "")
        patch = transitions.dead(None, Reason.INVALID_TASK, message, self.clock.now())
        try:
            await self.writer.write(key[0], key[1], rv, patch)
        except (ApiError, *UNREACHABLE) as err:
            log.warning("could not mark invalid Task %s/%s Dead: %s", *key, err)
            return
        log.warning("Task %s/%s is Dead: %s", *key, message)
        await self.events.record(body, "Warning", Reason.INVALID_TASK.value, message)

    # ------------------------------------------------------------------ timers

    async def run_timers(self) -> None:
        """Expire leases and mark Tasks nobody handles, until cancelled."""
        next_sweep = 0.0
        while True:
            now = self.clock.now()
            for lease in self.leases.expire(now):
                self._spawn(self._expire(lease))
            for lease_id, until in list(self._cancelled.items()):
                if until < now:
                    del self._cancelled[lease_id]
            self._due(self._deadlines, now, self._recheck_deadline)
            self._due(self._expiries, now, self._expire_task)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + PROGRESS_SECONDS
                await self._flush_progress()
                self._mark_unwanted()
            next_expiry = self.leases.next_expiry()
            delay = 1.0 if next_expiry is None else min(1.0, max(0.01, next_expiry - now))
            await asyncio.sleep(delay)

    def _at(
        self, heap: list[tuple[float, TaskKey, str]], kind: str, when: float, record: TaskRecord
    ) -> None:
        """Schedule a timer for the record, once per (kind, Task, time)."""
        marker = (kind, record.key, record.uid)
        if self._timed.get(marker) != when:
            self._timed[marker] = when
            heapq.heappush(heap, (when, record.key, record.uid))

    def _due(
        self,
        heap: list[tuple[float, TaskKey, str]],
        now: float,
        act: Callable[[TaskRecord], None],
    ) -> None:
        while heap and heap[0][0] <= now:
            _, key, uid = heapq.heappop(heap)
            for kind in ("deadline", "ttl"):
                self._timed.pop((kind, key, uid), None)
            record = self.records.get(key)
            if record is not None and record.uid == uid:
                act(record)

    def _recheck_deadline(self, record: TaskRecord) -> None:
        if not record.status.phase.is_finished:
            self._past_deadline(record)

    def _expire_task(self, record: TaskRecord) -> None:
        if record.status.phase.is_finished:
            self._spawn(self._delete_expired(record.key, record.uid))

    async def _expire(self, lease: LeaseInfo) -> None:
        log.info("lease %s of %s/%s expired (worker %s)", lease.id, *lease.key, lease.worker)
        error = ReportedError(
            type=Reason.LEASE_EXPIRED.value,
            message=f"no heartbeat from {lease.worker} for {lease.lease_seconds:g}s",
        )
        retry = self._retry_settings(lease.key)

        def patch(status: TaskStatus | None) -> StatusPatch:
            return transitions.failed(
                status,
                lease,
                error,
                self.clock.now(),
                retry,
                self.rng,
                AttemptOutcome.LEASE_EXPIRED,
            )

        # The lease is already out of the book; put it back for _finish's check.
        self.leases.add(lease)
        try:
            await self._finish(lease, patch)
        except LeaseConflict:
            pass
        except (ApiError, *UNREACHABLE) as exc:
            # Not recorded: the lease stays and expires again later, after
            # the write gate's wait while the API server is away.
            now = self.clock.now()
            if is_transient(exc):
                retry_at = max(self.writer.outage.retry_at, now + 0.1)
            else:
                log.warning("could not record expiry of %s/%s: %s", *lease.key, exc)
                retry_at = now + lease.lease_seconds
            if (held := self.leases.get(lease.id)) is not None:
                self.leases.add(replace(held, expires_at=max(held.expires_at, retry_at)))

    def _mark_unwanted(self) -> None:
        """Say so on Pending Tasks whose type no worker has asked for lately."""
        horizon = self.settings.no_worker_after_seconds
        now_mono = time.monotonic()
        # An entry older than the horizon says no more than a missing one:
        # dropping them bounds the map by the types asked for in one horizon,
        # however many made-up types lease calls name.
        for type_ in [t for t, at in self._wanted.items() if now_mono - at >= horizon]:
            del self._wanted[type_]
        if now_mono - self._started < horizon:
            return  # workers may not have reconnected yet
        now = self.clock.now()
        for type_ in self.dispatcher.ready_types():
            if now_mono - self._wanted.get(type_, -1e18) < horizon:
                continue
            for item in self.dispatcher.ready_of_type(type_):
                record = self.records.get(item.key)
                if record is None or record.status.reason == Reason.NO_WORKER:
                    continue
                if item.eligible_at > now or now - item.created < horizon:
                    continue
                message = f"no worker has asked for tasks of type {type_!r} in {horizon:g}s"
                patch = transitions.waiting(record.status, Reason.NO_WORKER, message, now)
                self._spawn(self._write_and_warn(record, patch, Reason.NO_WORKER, message))

    def _write_and_warn(
        self,
        record: TaskRecord,
        patch: StatusPatch,
        reason: Reason,
        message: str,
        *,
        warn: bool = True,
    ) -> Coroutine[Any, Any, None]:
        """Write ``patch`` (decided now) and, if it lands, post an Event."""
        return self._event_after(
            record,
            self._write_quietly(record, patch),
            reason,
            message,
            "Warning" if warn else "Normal",
        )

    async def _event_after(
        self,
        record: TaskRecord,
        write: Coroutine[Any, Any, bool],
        reason: Reason,
        message: str,
        type_: str,
    ) -> None:
        if await write:
            await self.events.record(record.reference(), type_, reason.value, message)

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_event_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background step failed", exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
