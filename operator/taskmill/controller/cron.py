"""CronTask firing: one reconciler per CronTask, children named after their slot.

:class:`CronController` is fed watch events: ``observe`` for CronTasks and
``observe_task`` for their child Tasks (the operator hands both over, see
:mod:`taskmill.controller.run`). It keeps, per CronTask, the parsed schedule
and the children it knows; each change puts the CronTask on a
:class:`~taskmill.controller.workqueue.KeyedQueue` (one step at a time per
CronTask), whose step asks :func:`taskmill.dispatch.crontask_plan.plan` what
to do and carries it out through :class:`~taskmill.controller.effects.Effects`.
In :meth:`CronController.run` a single :class:`~taskmill.dispatch.timers.Timers`
heap on the injected clock says when to look at a CronTask again: the loop
sleeps until the earliest (no polling), and the step decides afresh. The
schedule math is pure, in :mod:`taskmill.dispatch.schedule`. The operator runs
this in a process of its own (:mod:`taskmill.controller.cron_process`), so
fires are not delayed by the Task reconciler's work in the operator's process.

Firing a slot, in order:

1. ``concurrencyPolicy``: ``Forbid`` skips the slot while a child is active;
   ``Replace`` deletes active children, as CronJob's Replace deletes the
   running Job (the Task reconciler treats deletion as cancellation and tells the
   running attempt to stop). Deleting rather than setting ``spec.cancel``
   keeps the operator's rule of never writing a Task's spec.
2. Create the child Task, named ``<crontask>-<slot unix seconds>`` (see
   :func:`child_name`), owned by the CronTask. A second create of the same
   slot — another replica, or this one after a restart — is a 409
   AlreadyExists and a no-op, so a slot can never run twice. A create that
   fails on the way (unreachable, 5xx, 429) is tried again with
   :data:`CREATE_RETRY` backoff, as a timer: the CronTask is free meanwhile.
3. Write ``status`` (``lastScheduleTime``, ``nextScheduleTime``, ``active``,
   conditions) through the status subresource with a resourceVersion
   precondition; on a conflict the CronTask is read again and decided again.
   Spec and metadata are never written: GitOps tools see no drift.

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
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from taskmill.controller.effects import Effects, Failure
from taskmill.controller.events import EventRecorder
from taskmill.controller.workqueue import KeyedQueue
from taskmill.dispatch import crontask_plan as plans
from taskmill.dispatch import schedule as schedules
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import Clock, WallClock, to_timestamp
from taskmill.dispatch.crontask_plan import (
    CONDITION_SCHEDULE_VALID,
    CRONTASK_LABEL,
    MAX_RETRY_SECONDS,
    SCHEDULED_AT_ANNOTATION,
    Child,
    child_name,
    label_value,
)
from taskmill.dispatch.timers import Timers
from taskmill.dispatch.transitions import iso
from taskmill.kube.client import UNREACHABLE, ApiError, KubeClient, path
from taskmill.models.resources import CronTask, Task
from taskmill.models.task import Phase

__all__ = [
    "CONDITION_SCHEDULE_VALID",
    "CREATE_RETRY",
    "CRONTASK_LABEL",
    "MAX_RETRY_SECONDS",
    "SCHEDULED_AT_ANNOTATION",
    "CronController",
    "child_name",
    "label_value",
]

log = logging.getLogger(__name__)

#: Between attempts to create a child after a transient error (no jitter: one
#: create per CronTask and slot, nothing to spread).
CREATE_RETRY = BackoffPolicy(initial_seconds=0.2, factor=2, max_seconds=5, jitter=0)
#: Status writes and deletes in flight at once, when the controller builds its
#: own Effects (given only an EventRecorder).
MAX_CONCURRENT_WRITES = 16

Key = tuple[str, str]  # namespace, name


@dataclass(frozen=True)
class Creating:
    """A child's create that has not been answered yet (or is to be tried again)."""

    slot: float
    body: dict[str, Any]
    #: Attempts made so far.
    attempt: int
    #: Past this, no further attempt (:func:`~taskmill.dispatch.crontask_plan.retry_deadline`).
    deadline: float
    #: When the next attempt is due.
    retry_at: float
    #: When the slot was fired (for the log's lag).
    fired_at: float

    @property
    def name(self) -> str:
        name: str = self.body["metadata"]["name"]
        return name


@dataclass
class Record:
    key: Key
    body: dict[str, Any]
    crontask: CronTask
    #: The newest slot fired (or skipped) so far: never fired again.
    last_slot: float
    schedule: schedules.Schedule | None = None
    #: Why the schedule cannot be used, while it cannot.
    error: schedules.ScheduleError | None = None
    #: The newest slot whose fire is over: what ``lastScheduleTime`` records.
    scheduled: float | None = None
    warned_generation: int | None = None
    creating: Creating | None = None
    #: While a fire is not over: ``last_slot`` before it, restored if leading
    #: ends meanwhile, so the next term tries the slot again (a second create
    #: of it is a no-op).
    unsettled_from: float | None = None


class CronController:
    def __init__(
        self,
        client: KubeClient,
        effects: Effects | EventRecorder,
        *,
        clock: Clock | None = None,
        create_retry: BackoffPolicy = CREATE_RETRY,
        on_fire: Callable[[float], None] = lambda lag: None,
    ) -> None:
        self._client = client
        self.clock: Clock = clock or WallClock()
        if isinstance(effects, EventRecorder):
            recorder = effects
            effects = Effects(
                client,
                self.clock,
                max_concurrent_writes=MAX_CONCURRENT_WRITES,
                events_per_second=1,
                component="taskmill",
            )
            effects.events = recorder  # Events as the caller's recorder posts them
        self.effects = effects
        self._create_retry = create_retry
        self._records: dict[Key, Record] = {}
        #: Children by (namespace, owner uid), so they may arrive before their CronTask.
        self._children: dict[tuple[str, str], dict[str, Child]] = {}
        self._queue: KeyedQueue[Key] = KeyedQueue(self._step, name="crontask")
        self._timers: Timers[Key] = Timers()
        self._wake = asyncio.Event()
        self._leading = False
        #: The latest timer time the loop slept until (see :meth:`now`).
        self._reached = 0.0
        #: Told each fire's lag: seconds after the slot the child's create is sent.
        self._on_fire = on_fire

    def now(self) -> float:
        """The clock's time, or the time of the last timer slept until if later.

        Having slept until a timer's time, the loop takes that time as come:
        on a clock that moves only when told (tests, a simulation) the timer
        still fires, and on the wall clock the two differ by the sleep's
        rounding at most."""
        return max(self.clock.now(), self._reached)

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
        if record is None or record.crontask.metadata.uid != meta.get("uid"):
            record = Record(key, body, crontask, last_slot=self._initial_last(crontask))
            self._records[key] = record
        elif _older(body, record.body):
            return  # an event from before a version this controller wrote or read
        self._take(record, body, crontask)
        _parse(record)
        self._queue.enqueue(key)

    def observe_task(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event of a Task labelled as some CronTask's child."""
        owned = plans.child_of(body)
        if owned is None:
            return
        namespace = (body.get("metadata") or {}).get("namespace", "")
        children = self._children.setdefault((namespace, owned.owner_uid), {})
        child = owned.child
        if event_type == "DELETED":
            children.pop(child.name, None)
        else:
            previous = children.get(child.name)
            children[child.name] = child
            if previous is not None and previous.phase == child.phase:
                return
        record = self._records.get((namespace, owned.owner_name))
        if record is not None and record.crontask.metadata.uid == owned.owner_uid:
            self._queue.enqueue(record.key)

    # -- the timer loop ----------------------------------------------------

    async def run(self) -> None:
        """Fire schedules until cancelled (run it only while leading)."""
        self._leading = True
        self._timers = Timers()
        for key in list(self._records):
            self._queue.enqueue(key)
        try:
            while True:
                self._wake.clear()
                self.tick()
                next_at = self._timers.next_at()
                delay = None if next_at is None else max(0.0, next_at - self.now())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                except TimeoutError:
                    if next_at is not None:
                        self._reached = max(self._reached, next_at)
        finally:
            self._leading = False
            await self._queue.close()
            for record in self._records.values():
                if record.unsettled_from is not None:
                    record.last_slot = record.unsettled_from
                record.creating = record.unsettled_from = None

    def tick(self) -> None:
        """Look at every CronTask whose timer is due (the loop does this each
        time it wakes; a test or simulation moving a fake clock may too)."""
        for key in self._timers.due(self.now()):
            self._queue.enqueue(key)

    async def idle(self) -> None:
        """Wait until no CronTask's effects are running (tests, orderly shutdown)."""
        await self._queue.idle()

    def _arm(self, key: Key, when: float) -> None:
        earliest = self._timers.next_at()
        self._timers.at(key, when)
        if earliest is None or when < earliest:
            self._wake.set()

    # -- the step: decide, then hand back the effects ------------------------

    def _step(self, key: Key) -> Coroutine[Any, Any, None] | None:
        record = self._records.get(key)
        if record is None or not self._leading:
            return None  # not leading: the leader writes status and fires
        crontask = record.crontask
        now = self.now()
        creating = record.creating
        if creating is not None:
            if not crontask.spec.suspend:
                if creating.retry_at > now:
                    self._arm(key, creating.retry_at)
                    return None
                return self._create(record, creating)
            log.info("CronTask %s/%s changed; %s not retried", *key, creating.name)
            # Settled here without a requeue: this step goes on to the status.
            record.creating = record.unsettled_from = None
            record.scheduled = max(record.scheduled or creating.slot, creating.slot)
        children = self._children_of(record)
        plan = plans.plan(
            crontask,
            record.body.get("status") or {},
            children.values(),
            schedule=record.schedule,
            error=record.error,
            last_slot=record.last_slot,
            scheduled=record.scheduled,
            warned_generation=record.warned_generation,
            now=now,
        )
        if plan.fault is not None:  # a fault in the schedule code: contained to this CronTask
            log.error("CronTask %s/%s: schedule computation failed", *key, exc_info=plan.fault)
        if plan.error is not None and record.error is None:
            # Its next spec change (or event) parses and tries it afresh.
            record.schedule, record.error = None, plan.error
        if plan.look_again_at is not None:
            self._arm(key, plan.look_again_at)
        if plan.fire is not None:
            record.unsettled_from, record.last_slot = record.last_slot, plan.fire.slot
            return self._fire(record, plan.fire, now)
        if plan.warning is not None:
            # One Warning per generation: the schedule is read again only when
            # the spec changes, so there is nothing to retry.
            record.warned_generation = crontask.metadata.generation
            log.warning("CronTask %s/%s: %s", *key, plan.warning.message)
        if not (plan.prune or plan.status or plan.warning):
            return None
        for child in plan.prune:
            children.pop(child.name, None)  # its DELETED event would too
        # The version decided on: a status written meanwhile refuses the patch.
        resource_version = str(record.body.get("metadata", {}).get("resourceVersion", ""))
        return self._reconcile(record, plan, resource_version)

    # -- effects -------------------------------------------------------------

    async def _fire(self, record: Record, fire: plans.Fire, now: float) -> None:
        key = record.key
        if fire.skipped:
            log.info("CronTask %s/%s: %d missed slots run once", *key, fire.skipped)
        if fire.event is not None:
            log.warning(
                "CronTask %s/%s missed its slot %s by more than startingDeadlineSeconds",
                *key,
                iso(fire.slot),
            )
            await self.effects.event(record.body, *dataclasses.astuple(fire.event))
            self._settled(record, fire.slot)
            return
        if fire.verdict is plans.Verdict.SKIP:
            log.info(
                "CronTask %s/%s: slot %s skipped, %s still running (Forbid)",
                *key,
                iso(fire.slot),
                fire.active[0].name,
            )
            self._settled(record, fire.slot)
            return
        if fire.verdict is plans.Verdict.REPLACE:
            for child in fire.active:
                log.info("CronTask %s/%s: deleting %s (Replace)", *key, child.name)
                await self.effects.delete(
                    Task.RESOURCE_PLURAL, (key[0], child.name), child.uid, "Replace"
                )
        crontask = record.crontask
        template = (record.body.get("spec") or {}).get("taskTemplate") or {}
        creating = Creating(
            slot=fire.slot,
            body=plans.child_body(key[0], key[1], crontask.metadata.uid, template, fire.slot),
            attempt=0,
            deadline=plans.retry_deadline(record.schedule, crontask, fire.slot),
            retry_at=now,
            fired_at=now,
        )
        record.creating = creating
        self._on_fire(self.now() - fire.slot)
        await self._create(record, creating)

    async def _create(self, record: Record, creating: Creating) -> None:
        """One attempt at creating the child.

        The child's name makes a retried create idempotent, so a slot is not
        lost to a dropped connection or an API server restart: transient
        errors are tried again (a timer, then this again) until the retry
        deadline, or until the CronTask is deleted, replaced or suspended.
        """
        key, name = record.key, creating.name
        attempt = creating.attempt + 1
        error: Exception
        try:
            created: dict[str, Any] = await self._client.create(
                path(Task.RESOURCE_PLURAL, key[0]), creating.body
            )
        except ApiError as exc:
            if exc.already_exists:
                log.info("CronTask %s/%s: %s exists already (no-op)", *key, name)
                self._settled(record, creating.slot)
                return
            error, transient = exc, exc.is_transient
        except UNREACHABLE as exc:
            error, transient = exc, True
        else:
            log.info(
                "CronTask %s/%s: created %s, %.0f ms after its slot",
                *key,
                name,
                (creating.fired_at - creating.slot) * 1000,
            )
            uid = created.get("metadata", {}).get("uid", "")
            children = self._children.setdefault((key[0], record.crontask.metadata.uid), {})
            children.setdefault(name, Child(name, uid, Phase.PENDING, creating.slot))
            self._settled(record, creating.slot)
            return
        if self._records.get(key) is not record or record.creating is not creating:
            return  # deleted or replaced meanwhile
        when = plans.retry_at(
            self._create_retry,
            attempt=attempt,
            transient=transient,
            now=self.now(),
            deadline=creating.deadline,
        )
        if when is None:
            log.warning("CronTask %s/%s: cannot create %s: %s", *key, name, error)
            await self.effects.event(record.body, "Warning", "FailedCreate", str(error))
            self._settled(record, creating.slot)
            return
        (log.warning if attempt == 1 else log.info)(
            "CronTask %s/%s: create of %s failed (%s), retrying in %.1fs",
            *key,
            name,
            error,
            when - self.now(),
        )
        record.creating = dataclasses.replace(creating, attempt=attempt, retry_at=when)
        self._arm(key, when)

    def _settled(self, record: Record, slot: float) -> None:
        """A fire is over: ``lastScheduleTime`` may record its slot."""
        record.creating = record.unsettled_from = None
        record.scheduled = slot if record.scheduled is None else max(record.scheduled, slot)
        self._queue.requeue(record.key)

    async def _reconcile(self, record: Record, plan: plans.Plan, resource_version: str) -> None:
        key = record.key
        if plan.warning is not None:
            await self.effects.event(record.body, *dataclasses.astuple(plan.warning))
        for child in plan.prune:
            if await self.effects.delete(
                Task.RESOURCE_PLURAL, (key[0], child.name), child.uid, "history limit"
            ):
                log.info("CronTask %s/%s: pruned %s", *key, child.name)
        if plan.status:
            await self._write_status(record, plan.status, resource_version)

    async def _write_status(
        self, record: Record, patch: dict[str, Any], resource_version: str
    ) -> None:
        """Merge ``patch`` into ``status`` if the CronTask is still at ``resource_version``."""
        key = record.key
        uid = record.crontask.metadata.uid
        written = await self.effects.write_status(
            CronTask.RESOURCE_PLURAL, key, resource_version, patch
        )
        if self._records.get(key) is not record:
            return  # deleted or replaced meanwhile
        if written.body is not None:
            self._take(record, written.body)
            return
        if written.failure is Failure.CONFLICT:
            # Someone else wrote: read it again, take it in, decide again.
            fresh = await self.effects.read(CronTask.RESOURCE_PLURAL, key)
            if fresh is None or self._records.get(key) is not record:
                return  # gone, or unreadable: its next watch event brings it
            if fresh.get("metadata", {}).get("uid") != uid:
                return  # another CronTask by that name: its own events bring it
            self._take(record, fresh)
            self._queue.requeue(key)
        elif written.failure is Failure.TRANSIENT:
            self._arm(key, max(self.now(), self.effects.outage.retry_at))
        elif written.failure is Failure.REFUSED:
            log.warning("CronTask %s/%s: status write failed: %s", *key, written.error)
        # GONE: its DELETED event ends it.

    # -- the store -----------------------------------------------------------

    def _take(self, record: Record, body: dict[str, Any], crontask: CronTask | None = None) -> None:
        """Take a newer version of the CronTask into its record."""
        if _older(body, record.body):
            return
        crontask = crontask or _validate(record.key, body)
        if crontask is None:
            return
        spec_changed = (crontask.spec.schedule, crontask.spec.time_zone) != (
            record.crontask.spec.schedule,
            record.crontask.spec.time_zone,
        )
        record.body, record.crontask = body, crontask
        status_last = crontask.status.last_schedule_time if crontask.status else None
        if status_last is not None:
            record.last_slot = max(record.last_slot, to_timestamp(status_last))
        if spec_changed:
            _parse(record)

    def _children_of(self, record: Record) -> dict[str, Child]:
        return self._children.setdefault((record.key[0], record.crontask.metadata.uid), {})

    def _initial_last(self, crontask: CronTask) -> float:
        if crontask.status and crontask.status.last_schedule_time:
            return to_timestamp(crontask.status.last_schedule_time)
        created = crontask.metadata.creation_timestamp
        return to_timestamp(created) if created else self.clock.now()


def _parse(record: Record) -> None:
    """Parse the record's schedule afresh (clearing an error found computing it)."""
    spec = record.crontask.spec
    try:
        record.schedule = schedules.parse(spec.schedule, spec.time_zone)
        record.error = None
    except schedules.ScheduleError as exc:
        record.schedule = None
        record.error = exc


def _older(body: dict[str, Any], than: dict[str, Any]) -> bool:
    """Whether ``body`` is an older version than ``than`` (by resourceVersion,
    which etcd's revisions make comparable; unknown if either is not a number)."""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return int(body["metadata"]["resourceVersion"]) < int(than["metadata"]["resourceVersion"])
    return False


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
