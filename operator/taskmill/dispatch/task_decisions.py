"""What happens to a Task next: pure decisions, clock injected.

:func:`decide` takes a Task and what the operator knows besides (:class:`Facts`:
its queue, its lease, the other Tasks of its namespace, the time, which types
workers ask for) and returns a :class:`Decision`: the status patch to write
(with a precondition on the version decided on), the Event to post once it
lands, whether the Task waits in the dispatcher and as what, what becomes of
its lease, and when to look at it again. The operator carries decisions out
(:mod:`taskmill.controller.tasks`); a simulation runs them on a virtual clock.

A decision makes at most one write; what follows from it is decided again
once its result is known. So each step is one transition of the state
machine, and the order of the checks in :func:`decide` is the priority of
the rules: a retry request, then a finished Task, cancellation, the deadline,
a running attempt, the payload, dependencies, the queue, ``runAt``, and
finally "no worker asks for this type".

Outcomes reported by workers and expired leases become patches here too
(:func:`outcome`, and the lease branch of :func:`decide`), with retry
resolution: Task first, then its queue's ``retryPolicy``, then the defaults.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from taskmill.dispatch import transitions
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import to_timestamp
from taskmill.dispatch.dependencies import DependencyState, evaluate, find_cycle
from taskmill.dispatch.dispatcher import Candidate, Dispatcher
from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.leases import LeaseInfo
from taskmill.dispatch.transitions import StatusPatch
from taskmill.models.lease import CompleteRequest, Outcome, ReportedError
from taskmill.models.resources import Task
from taskmill.models.task import (
    DEFAULT_MAX_ATTEMPTS,
    PAYLOAD_MAX_BYTES,
    RESULT_MAX_BYTES,
    RETRY_ANNOTATION,
    AttemptOutcome,
    Phase,
    Reason,
    TaskSpec,
    TaskStatus,
)
from taskmill.models.taskqueue import TaskQueueSpec


class Neighbours(Protocol):
    """The other Tasks the operator knows, for dependencies."""

    def get(self, key: TaskKey, /) -> Task | None: ...


@dataclass(frozen=True, slots=True)
class Facts:
    """What the operator knows about a Task's surroundings, now."""

    now: float
    #: Its queue's spec; None when the queue does not exist.
    queue: TaskQueueSpec | None
    #: Its lease in the lease book, if it has one.
    lease: LeaseInfo | None
    #: Handed out by the dispatcher and its lease not yet recorded: a grant
    #: is in progress and owns the Task's place in the dispatcher.
    claimed: bool
    #: Whether every Task has been listed (a missing dependency may yet appear before).
    synced: bool
    neighbours: Neighbours
    #: When a worker last asked for the Task's type (None: not lately).
    type_asked_at: float | None = None
    #: Since when the operator answers workers: NoWorker needs a horizon of that.
    serving_since: float = 0.0
    no_worker_after: float = 60.0
    #: The period of a lease restored from ``status.lease``.
    lease_seconds: float = 30.0
    #: Progress reported under the current lease and not yet written.
    progress: dict[str, Any] | None = None


class LeaseAction(enum.Enum):
    KEEP = "keep"
    #: The attempt is over (its end is recorded, or it never started): free its place.
    END = "end"
    #: Cancelled or deleted while running: end it, and tell its worker to stop.
    REVOKE = "revoke"
    #: Found in ``status.lease`` and not in the book: take it in (see ``restored``).
    RESTORE = "restore"


KEEP: Literal["keep"] = "keep"


@dataclass(frozen=True, slots=True)
class Announcement:
    """An Event to post (and a line to log): for people, not for machines."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    #: Merged into ``status`` if the Task is still at the version decided on.
    patch: StatusPatch | None = None
    #: Posted once the patch lands (at once when there is no patch).
    announce: Announcement | None = None
    #: The Task's place in the dispatcher: queued as this candidate, not
    #: queued (None), or left as it is (KEEP).
    queue: Candidate | Literal["keep"] | None = None
    lease: LeaseAction = LeaseAction.KEEP
    restored: LeaseInfo | None = None
    #: The missing queue it waits for.
    waits_for_queue: str | None = None
    #: When the decision may change with time alone.
    look_again_at: float | None = None
    #: ``ttlSecondsAfterFinished`` passed: delete it (if it is still this object).
    delete: bool = False

    @property
    def acts(self) -> bool:
        """Whether carrying it out needs the API server."""
        return self.patch is not None or self.announce is not None or self.delete


NOTHING = Decision(queue=KEEP)


@dataclass(frozen=True)
class RetrySettings:
    """What decides between another attempt and Dead, resolved Task → queue → defaults."""

    max_attempts: int
    backoff: BackoffPolicy


def retry_settings(spec: TaskSpec | None, queue: TaskQueueSpec | None) -> transitions.RetrySettings:
    """Task first, then its queue's retryPolicy, then the built-in defaults."""
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


def attempt_timeout(spec: TaskSpec, queue: TaskQueueSpec) -> int | None:
    """An attempt's ``timeoutSeconds``: the Task's, else its queue's retryPolicy's."""
    return spec.timeout_seconds or (
        queue.retry_policy.timeout_seconds if queue.retry_policy else None
    )


def new_lease(
    task: Task,
    queue: TaskQueueSpec,
    *,
    lease_id: str,
    worker: str,
    holder: str | None,
    now: float,
) -> LeaseInfo:
    """The lease a Task is granted now, on its queue's terms."""
    lease_seconds = float(queue.lease_seconds)
    timeout = attempt_timeout(task.spec, queue)
    status = task.status or TaskStatus()
    return LeaseInfo(
        id=lease_id,
        key=(task.metadata.namespace or "", task.metadata.name or ""),
        uid=task.metadata.uid or "",
        worker=worker,
        holder=holder,
        attempt=status.attempts + 1,
        started_at=now,
        expires_at=now + lease_seconds,
        lease_seconds=lease_seconds,
        deadline=now + timeout + lease_seconds if timeout else float("inf"),
    )


def leasable(task: Task) -> bool:
    """Whether a Task the dispatcher handed out may still be leased as it is now."""
    status = task.status or TaskStatus()
    meta = task.metadata
    return (
        status.phase in (Phase.PENDING, Phase.WAITING)
        and not task.spec.cancel
        and meta.deletion_timestamp is None
    )


def decide(task: Task, facts: Facts) -> Decision:
    """The next step for ``task``."""
    status = task.status or TaskStatus()
    retry = _retry_requested(task, status, facts.now)
    if retry is not None:
        return retry
    if status.phase.is_finished:
        return _finished(task, status, facts)
    if task.spec.cancel or task.metadata.deletion_timestamp is not None:
        return _cancelled(task, status, facts)
    if facts.claimed:
        return NOTHING  # a grant is recording its lease: it decides what follows
    deadline = _deadline(task)
    if deadline is not None and facts.now >= deadline:
        seconds = task.spec.active_deadline_seconds
        return _dead(
            status,
            Reason.DEADLINE_EXCEEDED,
            f"activeDeadlineSeconds ({seconds}s) passed",
            facts,
            lease=LeaseAction.REVOKE if facts.lease is not None else LeaseAction.KEEP,
        )
    if status.phase == Phase.RUNNING:
        return _running(task, status, facts, deadline)
    lease = LeaseAction.END if facts.lease is not None else LeaseAction.KEEP
    # A version newer than the one the lease was recorded in, without that
    # lease: the attempt is over. Its place is freed in any case below.
    payload = task.spec.payload
    if payload is not None and len(orjson.dumps(payload)) > PAYLOAD_MAX_BYTES:
        message = f"payload is larger than {PAYLOAD_MAX_BYTES} bytes; use payloadFrom"
        return _dead(status, Reason.PAYLOAD_TOO_LARGE, message, facts, lease=lease)
    if task.spec.depends_on and status.attempts == 0:
        waiting = _dependencies(task, status, facts, lease)
        if waiting is not None:
            return waiting
    queue = facts.queue
    if queue is None:
        name = task.spec.queue
        message = f"TaskQueue {name!r} does not exist in namespace {_namespace(task)!r}"
        if status.reason == Reason.QUEUE_NOT_FOUND:
            return Decision(lease=lease, waits_for_queue=name, look_again_at=deadline)
        return Decision(
            patch=transitions.waiting(status, Reason.QUEUE_NOT_FOUND, message, facts.now),
            announce=Announcement("Warning", Reason.QUEUE_NOT_FOUND, message),
            lease=lease,
            waits_for_queue=name,
            look_again_at=deadline,
        )
    return _queued(task, status, facts, queue, lease, deadline)


def _queued(
    task: Task,
    status: TaskStatus,
    facts: Facts,
    queue: TaskQueueSpec,
    lease: LeaseAction,
    deadline: float | None,
) -> Decision:
    now = facts.now
    eligible_at = to_timestamp(status.next_attempt_at) if status.next_attempt_at else 0.0
    patch: StatusPatch | None = None
    announce: Announcement | None = None
    run_at = task.spec.run_at
    if run_at is not None and status.attempts == 0:
        eligible_at = max(eligible_at, to_timestamp(run_at))
    if queue.paused:
        # Said once; a runAt is not said meanwhile, or the two reasons
        # would take turns, one write each.
        if status.reason != Reason.QUEUE_PAUSED:
            message = f"TaskQueue {task.spec.queue!r} is paused"
            patch = transitions.waiting(status, Reason.QUEUE_PAUSED, message, now)
            announce = Announcement("Normal", Reason.QUEUE_PAUSED, message)
    elif (
        run_at is not None
        and status.attempts == 0
        and to_timestamp(run_at) > now
        and status.reason != Reason.RUN_AT
    ):
        patch = transitions.waiting(
            status, Reason.RUN_AT, "waiting for spec.runAt", now, to_timestamp(run_at)
        )
    created = task.metadata.creation_timestamp
    candidate = Candidate(
        key=_key(task),
        queue=task.spec.queue,
        type=task.spec.type,
        priority=task.spec.priority,
        created=to_timestamp(created) if created else now,
        eligible_at=eligible_at,
    )
    if patch is None and not queue.paused and _unwanted(candidate, status, facts):
        horizon = facts.no_worker_after
        message = f"no worker has asked for tasks of type {candidate.type!r} in {horizon:g}s"
        patch = transitions.waiting(status, Reason.NO_WORKER, message, now)
        announce = Announcement("Warning", Reason.NO_WORKER, message)
    return Decision(
        patch=patch, announce=announce, queue=candidate, lease=lease, look_again_at=deadline
    )


def _unwanted(candidate: Candidate, status: TaskStatus, facts: Facts) -> bool:
    """Eligible for a while, and no worker has asked for its type lately."""
    horizon, now = facts.no_worker_after, facts.now
    if status.reason == Reason.NO_WORKER or candidate.eligible_at > now:
        return False
    if now - facts.serving_since < horizon or now - candidate.created < horizon:
        return False  # workers may not have (re)connected yet
    return facts.type_asked_at is None or now - facts.type_asked_at >= horizon


def _running(task: Task, status: TaskStatus, facts: Facts, deadline: float | None) -> Decision:
    recorded = status.lease
    held = facts.lease
    if recorded is None:
        # Running with no lease recorded (a status edited by hand): no
        # attempt of ours to follow; its deadline, if any, still ends it.
        return Decision(
            lease=LeaseAction.END if held is not None else LeaseAction.KEEP,
            look_again_at=deadline,
        )
    if held is None or held.id != recorded.id:
        restored = restore_lease(task, status, facts)
        return Decision(
            queue=None,
            lease=LeaseAction.RESTORE,
            restored=restored,
            look_again_at=_earliest(restored.expires_at, deadline),
        )
    if held.expired(facts.now):
        error = ReportedError(
            type=Reason.LEASE_EXPIRED.value,
            message=f"no heartbeat from {held.worker} for {held.lease_seconds:g}s",
        )
        patch = transitions.failed(
            status,
            held,
            error,
            facts.now,
            retry_settings(task.spec, facts.queue),
            _rng(task, held),
            AttemptOutcome.LEASE_EXPIRED,
        )
        # Looked at again a lease period on, should the write not land.
        return Decision(
            patch=patch,
            announce=ended(patch),
            queue=None,
            look_again_at=facts.now + held.lease_seconds,
        )
    if facts.progress is not None:
        return Decision(
            patch={"progress": facts.progress},
            queue=None,
            look_again_at=_earliest(held.expires_at, deadline),
        )
    return Decision(queue=None, look_again_at=_earliest(held.expires_at, deadline))


def restore_lease(task: Task, status: TaskStatus, facts: Facts) -> LeaseInfo:
    """A lease found in ``status.lease``: its worker has one lease period from
    now to heartbeat before it expires."""
    recorded = status.lease
    assert recorded is not None
    now = facts.now
    # The attempt's own start, recorded with its lease; a lease written
    # before that was recorded began after the previous attempt ended.
    if recorded.started_at is not None:
        started = to_timestamp(recorded.started_at)
    elif status.history and status.history[-1].finished_at is not None:
        started = to_timestamp(status.history[-1].finished_at)
    elif status.started_at is not None:
        started = to_timestamp(status.started_at)
    else:
        started = now
    return LeaseInfo(
        id=recorded.id,
        key=_key(task),
        uid=task.metadata.uid or "",
        worker=recorded.worker,
        holder=recorded.holder,
        attempt=max(status.attempts, 1),
        started_at=started,
        expires_at=max(to_timestamp(recorded.expires_at), now + facts.lease_seconds),
        lease_seconds=facts.lease_seconds,
    )


def apply_in_memory(
    decision: Decision, key: TaskKey, task: Task | None, dispatcher: Dispatcher, now: float
) -> bool:
    """The in-memory part of a decision: the Task's place in the dispatcher
    and its lease in the book. True when a Task was queued."""
    queued = decision.queue
    if isinstance(queued, Candidate):
        dispatcher.put(queued, now)
    elif queued is None:
        dispatcher.discard(key)
    action = decision.lease
    if action is LeaseAction.END:
        dispatcher.finished(key)
    elif action is LeaseAction.REVOKE:
        lease = dispatcher.finished(key)
        if lease is not None:
            dispatcher.leases.revoke(lease, now)
    elif action is LeaseAction.RESTORE and decision.restored is not None and task is not None:
        dispatcher.restore(running_candidate(task), decision.restored)
    return isinstance(queued, Candidate)


def running_candidate(task: Task) -> Candidate:
    """A running Task as the dispatcher counts it."""
    spec = task.spec
    return Candidate(_key(task), spec.queue, spec.type, spec.priority)


def _finished(task: Task, status: TaskStatus, facts: Facts) -> Decision:
    lease = LeaseAction.END if facts.lease is not None else LeaseAction.KEEP
    ttl = task.spec.ttl_seconds_after_finished
    if ttl is None:
        return Decision(lease=lease)
    finished_at = status.finished_at
    expires = to_timestamp(finished_at) + ttl if finished_at else facts.now + ttl
    if facts.now >= expires:
        return Decision(lease=lease, delete=True)
    return Decision(lease=lease, look_again_at=expires)


def _cancelled(task: Task, status: TaskStatus, facts: Facts) -> Decision:
    lease = facts.lease
    action = LeaseAction.REVOKE if lease is not None else LeaseAction.KEEP
    if task.metadata.deletion_timestamp is not None:
        return Decision(lease=action)  # being deleted: nothing to record
    recorded = status.lease
    if lease is not None and (recorded is None or recorded.id != lease.id):
        # Its lease was never recorded: no attempt started, none goes into the history.
        lease = None
    why = "cancelled by spec.cancel"
    return Decision(patch=transitions.cancelled(status, lease, why, facts.now), lease=action)


def _retry_requested(task: Task, status: TaskStatus, now: float) -> Decision | None:
    """Act on a new ``taskmill.dev/retry`` value."""
    value = task.metadata.annotations.get(RETRY_ANNOTATION)
    if value is None or value == status.observed_retry:
        return None
    if not value.strip() or len(value) > 253:
        message = f"{RETRY_ANNOTATION} must be a new, non-empty value of at most 253 characters"
        reason = Reason.INVALID_ANNOTATION
    elif status.phase != Phase.DEAD:
        message = f"only a Dead Task is retried; this one is {status.phase.value}"
        reason = Reason.RETRY_IGNORED
    else:
        message = f"retried ({RETRY_ANNOTATION}={value})"
        return Decision(
            patch=transitions.retried(status, value, now),
            announce=Announcement("Normal", Reason.RETRIED, message),
        )
    # Remember the value either way, so it is reported once and never acted on later.
    return Decision(
        patch={"observedRetry": value},
        announce=Announcement("Warning", reason, message),
        queue=KEEP,
    )


def _dependencies(
    task: Task, status: TaskStatus, facts: Facts, lease: LeaseAction
) -> Decision | None:
    """None when every dependency holds; otherwise wait for them (saying so),
    or Dead when one never can hold or they form a cycle."""
    namespace = _namespace(task)
    waiting: list[str] = []
    missing: list[str] = []
    for dependency in task.spec.depends_on or []:
        other = facts.neighbours.get((namespace, dependency.name))
        phase = (other.status or TaskStatus()).phase if other else None
        state = evaluate(dependency.condition, phase)
        if state is DependencyState.IMPOSSIBLE:
            message = (
                f"dependency {dependency.name!r} ended {phase.value if phase else '?'}, "
                f"not {dependency.condition.value}"
            )
            return _dead(status, Reason.DEPENDENCY_FAILED, message, facts, lease=lease)
        if state is DependencyState.WAITING:
            waiting.append(dependency.name)
        elif state is DependencyState.MISSING:
            missing.append(dependency.name)
    if not waiting and not missing:
        return None
    cycle = find_cycle(_key(task)[1], _unfinished_dependencies(namespace, facts.neighbours))
    if cycle is not None:
        message = "dependency cycle: " + " → ".join(cycle)
        return _dead(status, Reason.DEPENDENCY_CYCLE, message, facts, lease=lease)
    deadline = _deadline(task)
    if missing and not facts.synced:
        # The initial list may not have reached them yet.
        return Decision(lease=lease, look_again_at=deadline)
    parts = []
    if waiting:
        parts.append("waiting for " + ", ".join(sorted(waiting)))
    if missing:
        parts.append("no such Task: " + ", ".join(sorted(missing)))
    message = "; ".join(parts)
    patch = None
    if status.reason != Reason.DEPENDENCIES or status.message != message:
        patch = transitions.waiting(status, Reason.DEPENDENCIES, message, facts.now)
    # Woken when a dependency changes: the store indexes dependsOn.
    return Decision(patch=patch, lease=lease, look_again_at=deadline)


def _unfinished_dependencies(namespace: str, neighbours: Neighbours) -> Callable[[str], list[str]]:
    def edges(name: str) -> list[str]:
        task = neighbours.get((namespace, name))
        if task is None or (task.status or TaskStatus()).phase.is_finished:
            return []
        out = []
        for dependency in task.spec.depends_on or []:
            other = neighbours.get((namespace, dependency.name))
            if other is not None and not (other.status or TaskStatus()).phase.is_finished:
                out.append(dependency.name)
        return out

    return edges


def _dead(
    status: TaskStatus, reason: Reason, message: str, facts: Facts, *, lease: LeaseAction
) -> Decision:
    return Decision(
        patch=transitions.dead(status, reason, message, facts.now),
        announce=Announcement("Warning", reason, message),
        lease=lease,
    )


def outcome(
    task: Task,
    lease: LeaseInfo,
    request: CompleteRequest,
    queue: TaskQueueSpec | None,
    now: float,
) -> StatusPatch:
    """The end of an attempt as its worker reports it."""
    status = task.status or TaskStatus()
    if request.outcome == Outcome.RELEASED:
        return transitions.released(status, lease, now)
    if request.outcome == Outcome.SUCCEEDED:
        size = len(orjson.dumps(request.result))
        if size <= RESULT_MAX_BYTES:
            return transitions.succeeded(status, lease, request.result, now)
    retry = retry_settings(task.spec, queue)
    rng = _rng(task, lease)
    if request.outcome == Outcome.SUCCEEDED:
        error = ReportedError(
            type="ResultTooLarge",
            message=f"result is {size} bytes, more than {RESULT_MAX_BYTES}",
            retryable=False,
        )
        return transitions.failed(status, lease, error, now, retry, rng)
    error = request.error or ReportedError(message="failed without an error")
    kind = AttemptOutcome.TIMED_OUT if error.timed_out else AttemptOutcome.FAILED
    return transitions.failed(status, lease, error, now, retry, rng, kind)


def ended(patch: StatusPatch) -> Announcement | None:
    """The Event for an attempt's end that people should see: Dead, or a retry
    after an expired lease. Successes are counted in metrics, not posted."""
    if patch.get("phase") == Phase.DEAD.value:
        return Announcement("Warning", patch.get("reason", ""), patch.get("message", ""))
    last = (patch.get("history") or [{}])[-1]
    if last.get("outcome") == AttemptOutcome.LEASE_EXPIRED.value:
        message = f"attempt {last.get('attempt')} lost its lease: {last.get('message', '')}"
        return Announcement("Warning", Reason.LEASE_EXPIRED, message)
    return None


def invalid(status: dict[str, Any], message: str, now: float) -> Decision:
    """A Task whose spec does not validate: Dead, once. It is not queued, and
    an attempt running under an earlier, valid version is told to stop."""
    if status.get("phase") == Phase.DEAD.value:
        return Decision(lease=LeaseAction.REVOKE)
    return Decision(
        patch=transitions.dead(None, Reason.INVALID_TASK, message, now),
        announce=Announcement("Warning", Reason.INVALID_TASK, message),
        lease=LeaseAction.REVOKE,
    )


def _rng(task: Task, lease: LeaseInfo) -> random.Random:
    """Backoff jitter, seeded by the attempt: the same decision made twice (a
    write retried after a conflict, a replay) picks the same delay."""
    return random.Random(f"{task.metadata.uid}/{lease.id}/{lease.attempt}")


def _deadline(task: Task) -> float | None:
    seconds = task.spec.active_deadline_seconds
    created = task.metadata.creation_timestamp
    if seconds is None or created is None:
        return None
    return to_timestamp(created) + seconds


def _earliest(*times: float | None) -> float | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def _key(task: Task) -> TaskKey:
    return (task.metadata.namespace or "", task.metadata.name or "")


def _namespace(task: Task) -> str:
    return task.metadata.namespace or ""
