"""What a CronTask's controller does next, decided without I/O.

:func:`plan` takes what the controller knows of one CronTask (its model and
stored status, its children, the newest slot it fired, its parsed schedule)
and ``now``, and returns a :class:`Plan`: the slot to fire now and what the
concurrency policy says about it, the finished children to prune, the status
patch, an Event to post, and when to look again. :func:`child_body` is the
child Task a fire creates, and :func:`retry_at` says whether (and when) a
create that failed on the way is tried again. The controller
(:mod:`taskmill.controller.cron`) carries these out.

The schedule math is :mod:`taskmill.dispatch.schedule`'s; any failure of it
(a slot that cannot be computed, or a fault in that code) is contained to its
CronTask: the plan says why in ``error`` and fires nothing.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskmill.dispatch import schedule as schedules
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import to_timestamp
from taskmill.dispatch.transitions import iso
from taskmill.models.base import API_VERSION
from taskmill.models.crontask import ConcurrencyPolicy
from taskmill.models.resources import CronTask
from taskmill.models.task import CONDITION_READY, CONDITION_STALLED, Phase
from taskmill.models.times import parse_time

#: Label on every child: the CronTask's name (hashed if longer than a label value may be).
CRONTASK_LABEL = "taskmill.dev/crontask"
#: Annotation on every child: its slot time, RFC 3339 UTC.
SCHEDULED_AT_ANNOTATION = "taskmill.dev/scheduled-at"
CONDITION_SCHEDULE_VALID = "ScheduleValid"
#: The longest a child's create is retried, whatever the schedule.
MAX_RETRY_SECONDS = 300.0

#: Task names are DNS subdomains.
MAX_NAME = 253
MAX_LABEL_VALUE = 63


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


@dataclass(frozen=True, slots=True)
class Child:
    """What the controller knows of one child Task."""

    name: str
    uid: str
    phase: Phase
    #: Its slot (the scheduled-at annotation), 0 if it has none.
    slot: float
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return not self.phase.is_finished


@dataclass(frozen=True, slots=True)
class Owned:
    """A Task that names a CronTask as its controller."""

    owner_uid: str
    owner_name: str
    child: Child


def child_of(body: Mapping[str, Any]) -> Owned | None:
    """The child a Task's body describes; None if no CronTask controls it."""
    meta = body.get("metadata") or {}
    owner = next(
        (
            ref
            for ref in meta.get("ownerReferences") or ()
            if ref.get("kind") == "CronTask" and ref.get("controller")
        ),
        None,
    )
    if owner is None:
        return None
    status = body.get("status") or {}
    try:
        phase = Phase(status.get("phase", "Pending"))
    except ValueError:
        phase = Phase.PENDING
    finished = _timestamp(status.get("finishedAt"))
    slot = _timestamp((meta.get("annotations") or {}).get(SCHEDULED_AT_ANNOTATION))
    child = Child(meta.get("name", ""), meta.get("uid", ""), phase, slot or 0.0, finished)
    return Owned(owner.get("uid", ""), owner.get("name", ""), child)


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return to_timestamp(parse_time(text))
    except ValueError:
        return None


class Verdict(enum.Enum):
    """What ``concurrencyPolicy`` says about a due slot."""

    CREATE = "create"
    #: Forbid: a child is still active; the slot is skipped.
    SKIP = "skip"
    #: Replace: delete the active children, then create.
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Fire:
    """The slot to act on now."""

    slot: float
    #: Older slots since the last fire that are dropped (run once, not once per slot).
    skipped: int
    #: Older than ``startingDeadlineSeconds``: not fired, a Warning says so.
    too_late: bool
    #: None when too late.
    verdict: Verdict | None
    #: The active children, oldest slot first: the one Forbid waits for, or those
    #: Replace deletes.
    active: tuple[Child, ...]
    #: The child's name.
    name: str
    #: The Warning to post (too late).
    event: EventSpec | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    fire: Fire | None
    #: Finished children beyond the history limits, oldest first.
    prune: tuple[Child, ...]
    #: What differs from the stored status; empty when nothing is to be written.
    status: dict[str, Any]
    #: Why the schedule cannot be used (from parsing, or from computing its slots).
    error: schedules.ScheduleError | None
    #: Set when ``error`` comes from a fault in the schedule code (not a ScheduleError).
    fault: Exception | None
    #: Post this Warning (the schedule's error, once per generation).
    warning: EventSpec | None
    #: When to look again without any change (the next slot), if ever.
    look_again_at: float | None


def plan(
    crontask: CronTask,
    stored_status: Mapping[str, Any],
    children: Iterable[Child],
    *,
    schedule: schedules.Schedule | None,
    error: schedules.ScheduleError | None,
    last_slot: float,
    scheduled: float | None,
    warned_generation: int | None,
    now: float,
) -> Plan:
    """Everything one CronTask needs now.

    ``last_slot`` is the newest slot fired or skipped (it is not fired
    again); ``scheduled`` the newest slot whose fire is over (its create
    answered), the one ``lastScheduleTime`` records — a slot whose create
    has not been answered is not recorded, so a restart tries it again.
    ``error`` is why ``schedule`` could not be parsed (``schedule`` is None
    then). ``warned_generation`` is the generation a Warning was posted for.
    """
    kids = list(children)
    spec = crontask.spec
    fault: Exception | None = None
    fire: Fire | None = None
    next_at: float | None = None
    if schedule is not None and error is None and not spec.suspend:
        try:
            fire = _due(crontask, schedule, kids, last_slot, now)
            next_at = schedule.next_after(max(now, fire.slot if fire else last_slot))
        except Exception as exc:
            error, fault = not_computable(crontask, exc), exc
            fire, next_at = None, None
    warning = None
    generation = crontask.metadata.generation
    if error is not None and warned_generation != generation:
        warning = EventSpec("Warning", str(error.reason), error.message)
    desired = desired_status(
        crontask, stored_status, kids, error=error, scheduled=scheduled, next_at=next_at, now=now
    )
    patch = {k: v for k, v in desired.items() if stored_status.get(k) != v}
    return Plan(
        fire=fire,
        prune=prune(crontask, kids),
        status=patch,
        error=error,
        fault=fault,
        warning=warning,
        look_again_at=next_at,
    )


def not_computable(crontask: CronTask, exc: Exception) -> schedules.ScheduleError:
    """``exc`` from the schedule math, as the ScheduleError the CronTask reports."""
    if isinstance(exc, schedules.ScheduleError):
        return exc
    return schedules.ScheduleError(
        schedules.Problem.NOT_COMPUTABLE,
        f"schedule {crontask.spec.schedule!r}: "
        f"its slots cannot be computed ({type(exc).__name__}: {exc})",
    )


def _due(
    crontask: CronTask,
    schedule: schedules.Schedule,
    children: list[Child],
    last_slot: float,
    now: float,
) -> Fire | None:
    spec = crontask.spec
    due = schedules.due_slot(
        schedule,
        last_slot=last_slot,
        now=now,
        starting_deadline_seconds=spec.starting_deadline_seconds,
    )
    if due is None:
        return None
    active = tuple(sorted((c for c in children if c.active), key=lambda c: c.slot))
    name = child_name(crontask.metadata.name, due.slot)
    if due.too_late:
        event = EventSpec(
            "Warning",
            "MissedSchedule",
            f"slot {iso(due.slot)} missed by {now - due.slot:.0f}s, more than "
            f"startingDeadlineSeconds={spec.starting_deadline_seconds}; skipped",
        )
        return Fire(due.slot, due.skipped, True, None, active, name, event)
    verdict = Verdict.CREATE
    if active and spec.concurrency_policy is ConcurrencyPolicy.FORBID:
        verdict = Verdict.SKIP
    elif active and spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
        verdict = Verdict.REPLACE
    return Fire(due.slot, due.skipped, False, verdict, active, name)


def prune(crontask: CronTask, children: Iterable[Child]) -> tuple[Child, ...]:
    """Finished children beyond the history limits, the earliest finished first.

    ``Dead`` and ``Cancelled`` count as failed; active children are never pruned."""
    kids = list(children)
    spec = crontask.spec
    succeeded = sorted((c for c in kids if c.phase is Phase.SUCCEEDED), key=_finish_order)
    failed = sorted(
        (c for c in kids if c.phase in (Phase.DEAD, Phase.CANCELLED)), key=_finish_order
    )
    doomed = succeeded[: max(0, len(succeeded) - spec.successful_tasks_history_limit)]
    doomed += failed[: max(0, len(failed) - spec.failed_tasks_history_limit)]
    return tuple(doomed)


def _finish_order(child: Child) -> tuple[float, float, str]:
    return (child.finished_at or child.slot, child.slot, child.name)


def desired_status(
    crontask: CronTask,
    stored_status: Mapping[str, Any],
    children: Iterable[Child],
    *,
    error: schedules.ScheduleError | None,
    scheduled: float | None,
    next_at: float | None,
    now: float,
) -> dict[str, Any]:
    """The status the CronTask should have (every field the controller owns)."""
    kids = list(children)
    generation = crontask.metadata.generation
    status: dict[str, Any] = {"observedGeneration": generation}
    stored_last = _timestamp(stored_status.get("lastScheduleTime"))
    if scheduled is not None and (stored_last is None or scheduled > stored_last):
        status["lastScheduleTime"] = iso(scheduled)
    active = sorted((c for c in kids if c.active), key=lambda c: c.slot)
    status["active"] = [{"name": c.name, "uid": c.uid} for c in active] or None
    # Like CronJob's: when the newest successful child finished.
    succeeded = [c.finished_at or c.slot for c in kids if c.phase is Phase.SUCCEEDED]
    if succeeded:
        newest = max(succeeded)
        stored_success = _timestamp(stored_status.get("lastSuccessfulTime"))
        if stored_success is None or newest > stored_success:
            status["lastSuccessfulTime"] = iso(newest)
    status["nextScheduleTime"] = iso(next_at) if next_at is not None else None
    valid = ("False", str(error.reason), error.message) if error else ("True", "Valid", "")
    # Ready and Stalled are kstatus' (Flux, cli-utils): a CronTask that
    # cannot fire is a failure that needs a person, not work in progress.
    wanted = [(CONDITION_SCHEDULE_VALID, *valid), (CONDITION_READY, *valid)]
    if error:
        wanted.append((CONDITION_STALLED, "True", str(error.reason), error.message))
    status["conditions"] = [
        condition(stored_status, generation, type_, value, reason, message, now)
        for type_, value, reason, message in wanted
    ]
    return status


def condition(
    stored_status: Mapping[str, Any],
    generation: int | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: float,
) -> dict[str, Any]:
    """A condition; its transition time moves only when its status does."""
    previous: Mapping[str, Any] = next(
        (c for c in stored_status.get("conditions") or () if c.get("type") == type_), {}
    )
    since = previous.get("lastTransitionTime") if previous.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or iso(float(int(now))).replace(".000Z", "Z"),
        "observedGeneration": generation,
    }


def child_body(
    namespace: str,
    crontask_name: str,
    owner_uid: str,
    template: Mapping[str, Any],
    slot: float,
) -> dict[str, Any]:
    """The child Task for ``slot``: the template's spec, labels and annotations,
    the CronTask's label, the slot's annotation and the owner reference."""
    template_meta = template.get("metadata") or {}
    labels = {**(template_meta.get("labels") or {}), CRONTASK_LABEL: label_value(crontask_name)}
    annotations = {**(template_meta.get("annotations") or {}), SCHEDULED_AT_ANNOTATION: iso(slot)}
    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {
            "name": child_name(crontask_name, slot),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "CronTask",
                    "name": crontask_name,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template.get("spec") or {},
    }


def retry_deadline(schedule: schedules.Schedule | None, crontask: CronTask, slot: float) -> float:
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


def retry_at(
    policy: BackoffPolicy, *, attempt: int, transient: bool, now: float, deadline: float
) -> float | None:
    """When to try a failed create again (after attempt number ``attempt``);
    None when it is not tried again: the failure will not pass, or the next
    try would come at or after ``deadline``."""
    if not transient:
        return None
    when = now + policy.base_delay(attempt)
    return when if when < deadline else None
