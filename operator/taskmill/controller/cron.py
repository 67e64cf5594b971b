"""CronTask firing: one timer per CronTask, children named after their slot.

:class:`CronController` is fed watch events: ``observe`` for CronTasks and
``observe_task`` for their child Tasks (the operator hands both over, see
:mod:`taskmill.controller.run`). It keeps, per CronTask, the parsed schedule
and the children it knows, and in :meth:`CronController.run` a single timer
heap: the loop sleeps until the earliest next fire time (no polling), fires,
and re-arms. The schedule math is pure, in :mod:`taskmill.dispatch.schedule`.
The operator runs it in a process of its own
(:mod:`taskmill.controller.cron_process`), so fires are not delayed by the
Task engine's work in the operator's process.

Firing a slot, in order:

1. ``concurrencyPolicy``: ``Forbid`` skips the slot while a child is active;
   ``Replace`` deletes active children, as CronJob's Replace deletes the
   running Job (the engine treats deletion as cancellation and tells the
   running attempt to stop). Deleting rather than setting ``spec.cancel``
   keeps the operator's rule of never writing a Task's spec.
2. Create the child Task, named ``<crontask>-<slot unix seconds>`` (see
   :func:`child_name`), owned by the CronTask. A second create of the same
   slot — another replica, or this one after a restart — is a 409
   AlreadyExists and a no-op, so a slot can never run twice.
3. Write ``status`` (``lastScheduleTime``, ``nextScheduleTime``, ``active``,
   conditions) through the status subresource with a resourceVersion
   precondition. Spec and metadata are never written: GitOps tools see no drift.

State is rebuilt from the API on start (the watch lists every CronTask and
child): ``lastScheduleTime`` says which slot was fired last, and
:func:`~taskmill.dispatch.schedule.due_slot` fires the newest missed slot once
if it is within ``startingDeadlineSeconds``. Only the leader should run
:meth:`CronController.run`; ``observe`` is safe to call at any time.

An invalid schedule or time zone sets the condition ``ScheduleValid=False``
(reason ``InvalidSchedule`` / ``InvalidTimeZone``) and posts one Warning Event
per generation; the CronTask gets no timer until it is fixed. So does a
schedule whose slots cannot be computed (reason ``ScheduleNotComputable``):
any failure of the schedule math is contained to its own CronTask.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import heapq
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pydantic import ValidationError

from taskmill.controller.events import EventRecorder
from taskmill.dispatch import schedule as schedules
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import Clock, WallClock, to_timestamp
from taskmill.dispatch.transitions import iso
from taskmill.kube.client import ApiError, KubeClient, path
from taskmill.models.base import API_VERSION
from taskmill.models.crontask import ConcurrencyPolicy
from taskmill.models.resources import CronTask, Task
from taskmill.models.task import CONDITION_READY, CONDITION_STALLED, Phase

log = logging.getLogger(__name__)

#: Label on every child: the CronTask's name (hashed if longer than a label value may be).
CRONTASK_LABEL = "taskmill.dev/crontask"
#: Annotation on every child: its slot time, RFC 3339 UTC.
SCHEDULED_AT_ANNOTATION = "taskmill.dev/scheduled-at"
CONDITION_SCHEDULE_VALID = "ScheduleValid"
#: Between attempts to create a child after a transient error (no jitter: one
#: create per CronTask and slot, nothing to spread).
CREATE_RETRY = BackoffPolicy(initial_seconds=0.2, factor=2, max_seconds=5, jitter=0)
#: The longest a child's create is retried, whatever the schedule.
MAX_RETRY_SECONDS = 300.0

#: Task names are DNS subdomains.
MAX_NAME = 253
MAX_LABEL_VALUE = 63

Key = tuple[str, str]  # namespace, name


def _shorten(name: str, limit: int) -> str:
    """``name`` if it fits in ``limit``, else a prefix and 8 hex of its SHA-256."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    prefix = name[: limit - 9].rstrip("-.")
    return f"{prefix}-{digest}"


def child_name(crontask: str, slot: float) -> str:
    """The child Task's name for ``slot``: ``<crontask>-<unix seconds>``.

    Deterministic, so every replica derives the same name. A CronTask name
    too long to leave room for the suffix is cut and given a hash of the full
    name, keeping the result a valid DNS subdomain of at most 253 characters.
    """
    suffix = f"-{int(slot)}"
    return _shorten(crontask, MAX_NAME - len(suffix)) + suffix


def label_value(crontask: str) -> str:
    """The ``taskmill.dev/crontask`` label value (label values are at most 63 chars)."""
    return _shorten(crontask, MAX_LABEL_VALUE)


@dataclass
class Child:
    name: str
    uid: str
    phase: Phase
    slot: float
    finished_at: float | None = None


@dataclass
class Record:
    key: Key
    body: dict[str, Any]
    crontask: CronTask | None
    schedule: schedules.Schedule | None
    #: The newest slot fired (or skipped) so far.
    last_slot: float
    #: Armed fire time; a heap entry with another time is stale.
    armed: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    warned_generation: int | None = None
    #: Why the schedule cannot be used, while it cannot.
    error: schedules.ScheduleError | None = None


class CronController:
    def __init__(
        self,
        client: KubeClient,
        events: EventRecorder,
        *,
        clock: Clock | None = None,
        create_retry: BackoffPolicy = CREATE_RETRY,
        on_fire: Callable[[float], None] = lambda lag: None,
    ) -> None:
        self._client = client
        self._events = events
        self.clock: Clock = clock or WallClock()
        self._create_retry = create_retry
        self._records: dict[Key, Record] = {}
        #: Children by (namespace, owner uid), so they may arrive before their CronTask.
        self._children: dict[tuple[str, str], dict[str, Child]] = {}
        self._heap: list[tuple[float, Key]] = []
        self._wake = asyncio.Event()
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Told each fire's lag: seconds after the slot the child's create is sent.
        self._on_fire = on_fire

    # -- watch events ------------------------------------------------------

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A CronTask watch event."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            record = self._records.pop(key, None)
            if record is not None:
                self._children.pop((key[0], meta.get("uid", "")), None)
            return
        crontask = _validate(key, body)
        if crontask is None:
            return
        record = self._records.get(key)
        if record is None or (record.crontask and record.crontask.metadata.uid != meta.get("uid")):
            record = Record(key, body, crontask, None, last_slot=self._initial_last(crontask))
            self._records[key] = record
        else:
            record.body = body
            record.crontask = crontask
            status_last = crontask.status.last_schedule_time if crontask.status else None
            if status_last is not None:
                record.last_slot = max(record.last_slot, to_timestamp(status_last))
        try:
            record.schedule = schedules.parse(crontask.spec.schedule, crontask.spec.time_zone)
            record.error = None
        except schedules.ScheduleError as exc:
            record.schedule = None
            record.error = exc
        self._arm(record)
        self._spawn(self._sync_status(record))

    def observe_task(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event of a Task labelled as some CronTask's child."""
        meta = body.get("metadata", {})
        owner = next(
            (
                ref
                for ref in meta.get("ownerReferences") or ()
                if ref.get("kind") == "CronTask" and ref.get("controller")
            ),
            None,
        )
        if owner is None:
            return
        namespace = meta.get("namespace", "")
        children = self._children.setdefault((namespace, owner["uid"]), {})
        name = meta.get("name", "")
        if event_type == "DELETED":
            children.pop(name, None)
        else:
            status = body.get("status") or {}
            try:
                phase = Phase(status.get("phase", "Pending"))
            except ValueError:
                phase = Phase.PENDING
            previous = children.get(name)
            finished = status.get("finishedAt")
            children[name] = Child(
                name,
                meta.get("uid", ""),
                phase,
                _slot_of(meta),
                to_timestamp(_parse_time(finished)) if finished else None,
            )
            if previous is not None and previous.phase == phase:
                return
        record = self._records.get((namespace, owner.get("name", "")))
        if record is not None and record.crontask and record.crontask.metadata.uid == owner["uid"]:
            self._spawn(self._after_child_change(record))

    # -- the timer loop ----------------------------------------------------

    async def run(self) -> None:
        """Fire schedules until cancelled (run it only while leading)."""
        self._running = True
        self._heap = []
        for record in self._records.values():
            record.armed = None
            self._arm(record)
            self._spawn(self._sync_status(record))
        try:
            while True:
                self._wake.clear()
                now = self.clock.now()
                while self._heap and self._heap[0][0] <= now:
                    when, key = heapq.heappop(self._heap)
                    due = self._records.get(key)
                    if due is not None and due.armed == when:
                        due.armed = None
                        self._spawn(self._fire(due))
                delay = self._heap[0][0] - now if self._heap else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            self._running = False
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _arm(self, record: Record) -> None:
        """Set the record's timer: now if a slot is due, else its next slot."""
        crontask = record.crontask
        if record.schedule is None or crontask is None or crontask.spec.suspend:
            record.armed = None
            return
        now = self.clock.now()
        try:
            due = schedules.due_slot(
                record.schedule,
                last_slot=record.last_slot,
                now=now,
                starting_deadline_seconds=crontask.spec.starting_deadline_seconds,
            )
            if due is not None:
                when = now
            else:
                when = record.schedule.next_after(max(now, record.last_slot))
        except Exception as exc:
            self._not_computable(record, exc)
            return
        if record.armed == when:
            return
        record.armed = when
        if self._running:
            heapq.heappush(self._heap, (when, record.key))
            self._wake.set()

    # -- actions -----------------------------------------------------------

    async def _fire(self, record: Record) -> None:
        async with record.lock:
            crontask, schedule = record.crontask, record.schedule
            if crontask is None or schedule is None or crontask.spec.suspend:
                return
            now = self.clock.now()
            try:
                due = schedules.due_slot(
                    schedule,
                    last_slot=record.last_slot,
                    now=now,
                    starting_deadline_seconds=crontask.spec.starting_deadline_seconds,
                )
            except Exception as exc:
                self._not_computable(record, exc)
                return
            if due is None:
                self._arm(record)
                return
            record.last_slot = due.slot
            if due.skipped:
                log.info("CronTask %s/%s: %d missed slots run once", *record.key, due.skipped)
            if due.too_late:
                log.warning(
                    "CronTask %s/%s missed its slot %s by more than startingDeadlineSeconds",
                    *record.key,
                    iso(due.slot),
                )
                await self._events.record(
                    record.body,
                    "Warning",
                    "MissedSchedule",
                    f"slot {iso(due.slot)} missed by {now - due.slot:.0f}s, more than "
                    f"startingDeadlineSeconds={crontask.spec.starting_deadline_seconds}; skipped",
                )
            else:
                await self._start_child(record, crontask, due.slot, now)
            self._arm(record)
            await self._write_status(record, last_schedule=due.slot)

    async def _start_child(
        self, record: Record, crontask: CronTask, slot: float, now: float
    ) -> None:
        active = self._active(record)
        policy = crontask.spec.concurrency_policy
        if active and policy is ConcurrencyPolicy.FORBID:
            log.info(
                "CronTask %s/%s: slot %s skipped, %s still running (Forbid)",
                *record.key,
                iso(slot),
                active[0].name,
            )
            return
        if active and policy is ConcurrencyPolicy.REPLACE:
            for child in active:
                await self._cancel_child(record, child)
        name = child_name(record.key[1], slot)
        body = self._child_body(record, crontask, name, slot)
        self._on_fire(self.clock.now() - slot)
        created = await self._create(record, crontask, name, body, slot)
        if created is None:
            return
        log.info(
            "CronTask %s/%s: created %s, %.0f ms after its slot",
            *record.key,
            name,
            (now - slot) * 1000,
        )
        uid = crontask.metadata.uid
        children = self._children.setdefault((record.key[0], uid), {})
        created_meta = created.get("metadata", {})
        children.setdefault(name, Child(name, created_meta.get("uid", ""), Phase.PENDING, slot))

    async def _create(
        self, record: Record, crontask: CronTask, name: str, body: dict[str, Any], slot: float
    ) -> dict[str, Any] | None:
        """Create the child; None when it exists already or cannot be created.

        The child's name makes a retried create idempotent, so a slot is not
        lost to a dropped connection or an API server restart: transient
        errors are retried until :func:`_retry_deadline`, or until the
        CronTask is deleted, replaced or suspended meanwhile.
        """
        url = path(Task.RESOURCE_PLURAL, record.key[0])
        give_up_at = _retry_deadline(record.schedule, crontask, slot)
        attempt = 0
        while True:
            attempt += 1
            try:
                created: dict[str, Any] = await self._client.create(url, body)
                return created
            except ApiError as exc:
                if exc.already_exists:
                    log.info("CronTask %s/%s: %s exists already (no-op)", *record.key, name)
                    return None
                error: Exception = exc
                transient = exc.is_transient
            except (OSError, aiohttp.ClientError) as exc:
                error, transient = exc, True
            delay = self._create_retry.base_delay(attempt)
            if not transient or self.clock.now() + delay >= give_up_at:
                log.warning("CronTask %s/%s: cannot create %s: %s", *record.key, name, error)
                await self._events.record(record.body, "Warning", "FailedCreate", str(error))
                return None
            (log.warning if attempt == 1 else log.info)(
                "CronTask %s/%s: create of %s failed (%s), retrying in %.1fs",
                *record.key,
                name,
                error,
                delay,
            )
            await asyncio.sleep(delay)
            current = self._records.get(record.key)
            if current is not record or current.crontask is None or current.crontask.spec.suspend:
                log.info("CronTask %s/%s changed; %s not retried", *record.key, name)
                return None

    def _child_body(
        self, record: Record, crontask: CronTask, name: str, slot: float
    ) -> dict[str, Any]:
        template = (record.body.get("spec") or {}).get("taskTemplate") or {}
        template_meta = template.get("metadata") or {}
        labels = {**(template_meta.get("labels") or {}), CRONTASK_LABEL: label_value(record.key[1])}
        annotations = {
            **(template_meta.get("annotations") or {}),
            SCHEDULED_AT_ANNOTATION: iso(slot),
        }
        return {
            "apiVersion": API_VERSION,
            "kind": "Task",
            "metadata": {
                "name": name,
                "namespace": record.key[0],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "CronTask",
                        "name": record.key[1],
                        "uid": crontask.metadata.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }

    async def _cancel_child(self, record: Record, child: Child) -> None:
        log.info("CronTask %s/%s: deleting %s (Replace)", *record.key, child.name)
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if child.uid:
            options["preconditions"] = {"uid": child.uid}
        try:
            await self._client.delete(
                path(Task.RESOURCE_PLURAL, record.key[0], child.name), options
            )
        except ApiError as exc:
            if not (exc.is_not_found or exc.is_conflict):
                log.warning("CronTask %s/%s: cannot delete %s: %s", *record.key, child.name, exc)
        except OSError as exc:
            log.warning("CronTask %s/%s: cannot delete %s: %s", *record.key, child.name, exc)

    async def _after_child_change(self, record: Record) -> None:
        if not self._running:
            return
        async with record.lock:
            await self._prune(record)
            await self._write_status(record)

    async def _prune(self, record: Record) -> None:
        crontask = record.crontask
        if crontask is None:
            return
        children = self._children.get((record.key[0], crontask.metadata.uid), {})
        succeeded = sorted(
            (c for c in children.values() if c.phase is Phase.SUCCEEDED), key=_finish_order
        )
        failed = sorted(
            (c for c in children.values() if c.phase in (Phase.DEAD, Phase.CANCELLED)),
            key=_finish_order,
        )
        doomed = succeeded[: max(0, len(succeeded) - crontask.spec.successful_tasks_history_limit)]
        doomed += failed[: max(0, len(failed) - crontask.spec.failed_tasks_history_limit)]
        for child in doomed:
            children.pop(child.name, None)
            try:
                await self._client.delete(
                    path(Task.RESOURCE_PLURAL, record.key[0], child.name),
                    {"propagationPolicy": "Background", "preconditions": {"uid": child.uid}},
                )
                log.info("CronTask %s/%s: pruned %s", *record.key, child.name)
            except ApiError as exc:
                if not exc.is_not_found and not exc.is_conflict:
                    log.warning("CronTask %s/%s: cannot prune %s: %s", *record.key, child.name, exc)
            except OSError as exc:
                log.warning("CronTask %s/%s: cannot prune %s: %s", *record.key, child.name, exc)

    def _active(self, record: Record) -> list[Child]:
        if record.crontask is None:
            return []
        children = self._children.get((record.key[0], record.crontask.metadata.uid), {})
        return sorted(
            (c for c in children.values() if not c.phase.is_finished), key=lambda c: c.slot
        )

    # -- status ------------------------------------------------------------

    def _desired_status(self, record: Record, last_schedule: float | None = None) -> dict[str, Any]:
        crontask = record.crontask
        assert crontask is not None
        current = record.body.get("status") or {}
        status: dict[str, Any] = {"observedGeneration": crontask.metadata.generation}
        if last_schedule is not None:
            status["lastScheduleTime"] = iso(last_schedule)
        children = self._children.get((record.key[0], crontask.metadata.uid), {})
        active = self._active(record)
        status["active"] = [{"name": c.name, "uid": c.uid} for c in active] or None
        # Like CronJob's: when the newest successful child finished.
        succeeded = [
            c.finished_at or c.slot for c in children.values() if c.phase is Phase.SUCCEEDED
        ]
        if succeeded:
            newest = iso(max(succeeded))
            if newest > (current.get("lastSuccessfulTime") or ""):
                status["lastSuccessfulTime"] = newest
        status["nextScheduleTime"] = None
        if record.schedule is not None and not crontask.spec.suspend:
            try:
                when = record.schedule.next_after(max(self.clock.now(), record.last_slot))
                status["nextScheduleTime"] = iso(when)
            except Exception as exc:  # sets record.error, read below
                self._not_computable(record, exc)
        error = record.error
        valid = ("False", str(error.reason), error.message) if error else ("True", "Valid", "")
        # Ready and Stalled are kstatus' (Flux, cli-utils): a CronTask that
        # cannot fire is a failure that needs a person, not work in progress.
        wanted = [(CONDITION_SCHEDULE_VALID, *valid), (CONDITION_READY, *valid)]
        if error:
            wanted.append((CONDITION_STALLED, "True", str(error.reason), error.message))
        status["conditions"] = [
            _condition(current, crontask, type_, value, reason, message, self.clock)
            for type_, value, reason, message in wanted
        ]
        return status

    async def _sync_status(self, record: Record) -> None:
        if not self._running:
            return  # not leading: the leader writes status
        async with record.lock:
            error, crontask = record.error, record.crontask
            # One Warning per generation: the schedule is read again only when
            # the spec changes, so there is nothing to retry.
            if (
                error is not None
                and crontask is not None
                and record.warned_generation != crontask.metadata.generation
            ):
                record.warned_generation = crontask.metadata.generation
                log.warning("CronTask %s/%s: %s", *record.key, error.message)
                await self._events.record(record.body, "Warning", error.reason, error.message)
            await self._write_status(record)

    async def _write_status(self, record: Record, last_schedule: float | None = None) -> None:
        """Merge what changed into ``status``, with a resourceVersion precondition."""
        if record.crontask is None:
            return
        desired = self._desired_status(record, last_schedule)
        for _ in range(3):
            current = record.body.get("status") or {}
            patch = {k: v for k, v in desired.items() if current.get(k) != v}
            if not patch:
                return
            meta = record.body.get("metadata", {})
            url = path(CronTask.RESOURCE_PLURAL, record.key[0], record.key[1], "status")
            try:
                updated = await self._client.merge_patch(
                    url,
                    {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": patch},
                )
            except ApiError as exc:
                if exc.is_not_found:
                    return
                if not exc.is_conflict:
                    log.warning("CronTask %s/%s: status write failed: %s", *record.key, exc)
                    return
                try:  # someone else wrote: read again and retry
                    fresh = await self._client.get(
                        path(CronTask.RESOURCE_PLURAL, record.key[0], record.key[1])
                    )
                except (ApiError, OSError):
                    return
                if fresh.get("metadata", {}).get("uid") != meta.get("uid"):
                    return
                record.body = fresh
                continue
            except OSError as exc:
                log.warning("CronTask %s/%s: status write failed: %s", *record.key, exc)
                return
            record.body = updated
            return

    # -- helpers -----------------------------------------------------------

    def _not_computable(self, record: Record, exc: Exception) -> None:
        """One CronTask's slots cannot be computed: it stops firing and says why
        (``ScheduleValid=False`` and a Warning Event), every other one goes on.
        Its next spec change (or event) parses and tries it afresh."""
        if isinstance(exc, schedules.ScheduleError):
            error = exc
        else:  # a fault in the schedule code: contained to this CronTask
            log.exception("CronTask %s/%s: schedule computation failed", *record.key)
            error = schedules.ScheduleError(
                schedules.Problem.NOT_COMPUTABLE,
                f"schedule {record.crontask.spec.schedule if record.crontask else ''!r}: "
                f"its slots cannot be computed ({type(exc).__name__}: {exc})",
            )
        record.schedule = None
        record.error = error
        record.armed = None
        self._spawn(self._sync_status(record))

    def _initial_last(self, crontask: CronTask) -> float:
        if crontask.status and crontask.status.last_schedule_time:
            return to_timestamp(crontask.status.last_schedule_time)
        created = crontask.metadata.creation_timestamp
        return to_timestamp(created) if created else self.clock.now()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("CronTask action failed", exc_info=task.exception())


def _retry_deadline(schedule: schedules.Schedule | None, crontask: CronTask, slot: float) -> float:
    """When retrying the create of ``slot``'s child stops: at the next slot (which
    fires on its own), past ``startingDeadlineSeconds``, or after
    :data:`MAX_RETRY_SECONDS`, whichever is first (while retrying, the
    CronTask's status waits)."""
    deadline = slot + MAX_RETRY_SECONDS
    if schedule is not None:
        # Should the next slot not be computable, the other bounds still hold.
        with contextlib.suppress(Exception):
            deadline = min(deadline, schedule.next_after(slot))
    if crontask.spec.starting_deadline_seconds is not None:
        deadline = min(deadline, slot + crontask.spec.starting_deadline_seconds)
    return deadline


def _validate(key: Key, body: dict[str, Any]) -> CronTask | None:
    """The CronTask model of ``body``; None (logged) if it does not parse.

    A schedule stored before the CRD's pattern became stricter fails the
    model's pattern: it is kept as it is, so the schedule parser refuses it
    with a condition and an Event rather than the CronTask going unnoticed.
    """
    try:
        return CronTask.model_validate(body)
    except ValidationError as exc:
        if not all(tuple(e["loc"][:2]) == ("spec", "schedule") for e in exc.errors()):
            log.warning("CronTask %s/%s does not parse: %s", *key, exc)
            return None
    raw = (body.get("spec") or {}).get("schedule")
    placeholder = {**body, "spec": {**body["spec"], "schedule": "@daily"}}
    try:
        crontask = CronTask.model_validate(placeholder)
    except ValidationError as exc:
        log.warning("CronTask %s/%s does not parse: %s", *key, exc)
        return None
    crontask.spec = crontask.spec.model_copy(update={"schedule": str(raw)})
    return crontask


def _condition(
    current: dict[str, Any],
    crontask: CronTask,
    type_: str,
    status: str,
    reason: str,
    message: str,
    clock: Clock,
) -> dict[str, Any]:
    """A condition; its transition time moves only when its status does."""
    previous: dict[str, Any] = next(
        (c for c in current.get("conditions") or () if c.get("type") == type_), {}
    )
    since = previous.get("lastTransitionTime") if previous.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or iso(float(int(clock.now()))).replace(".000Z", "Z"),
        "observedGeneration": crontask.metadata.generation,
    }


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _slot_of(meta: dict[str, Any]) -> float:
    stamp = (meta.get("annotations") or {}).get(SCHEDULED_AT_ANNOTATION)
    if stamp:
        with contextlib.suppress(ValueError):
            return to_timestamp(_parse_time(stamp))
    return 0.0


def _finish_order(child: Child) -> tuple[float, float]:
    return (child.finished_at or child.slot, child.slot)
