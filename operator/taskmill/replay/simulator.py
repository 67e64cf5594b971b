"""A discrete-event replay of a history on a virtual clock.

The operator's own code decides everything: each Task's next step is
:func:`~taskmill.dispatch.task_decisions.decide`, each reported attempt
becomes a status patch through
:func:`~taskmill.dispatch.task_decisions.outcome`, and which waiting Task a
free worker slot gets is the :class:`~taskmill.dispatch.dispatcher.Dispatcher`'s
choice, under the queue limits of its QueueBook. This module only carries
the decisions out, as the Task reconciler does (patches merged as if
written, the dispatcher and lease book changed, "look again" times kept in
:class:`~taskmill.dispatch.timers.Timers`), and plays a pool of worker slots
that replays each Task's measured attempts: attempt *n* runs as long as the
recorded attempt *n* did and ends as it ended (the last recorded attempt
stands in for any beyond it).

Events at one instant are taken in this order: attempt ends, cancellations,
heartbeats, arrivals, then due looks, then free slots take Tasks.
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskmill.dispatch import task_decisions, transitions
from taskmill.dispatch.clock import FakeClock, to_timestamp
from taskmill.dispatch.dispatcher import Candidate, Dispatcher
from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.queues import QueueBook
from taskmill.dispatch.task_decisions import LeaseAction
from taskmill.dispatch.timers import Timers
from taskmill.models.lease import CompleteRequest, Outcome, ReportedError
from taskmill.models.resources import Task
from taskmill.models.task import AttemptOutcome, Phase, Reason, TaskStatus
from taskmill.replay.history import Attempt, Record, peak_concurrency
from taskmill.replay.policy import Policy, ordered

# Event kinds, in the order they are taken at one instant.
_END, _CANCEL, _BEAT, _ARRIVE = range(4)
_NOT_REPEATED = (AttemptOutcome.RELEASED, AttemptOutcome.CANCELLED)
_INSTANT = Attempt(0.0, 0.0, AttemptOutcome.SUCCEEDED)


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease the simulated workers got."""

    at: float
    key: TaskKey
    type: str
    priority: int


@dataclass(frozen=True, slots=True)
class Simulated:
    """One Task as it would have gone."""

    phase: Phase
    reason: str | None
    attempts: int
    first_start: float | None
    final_end: float | None


@dataclass
class Replay:
    policy: Policy
    workers: int
    results: dict[TaskKey, Simulated]
    grants: list[Grant]
    #: The most Tasks the dispatcher counted as running at once.
    peak_running: int
    #: The Tasks as they ended, with their simulated status.
    tasks: dict[TaskKey, Task] = field(repr=False)


class ReplayError(RuntimeError):
    """The simulation did not come to rest (a bug, not bad input)."""


def replay(records: Sequence[Record], policy: Policy, *, lease_seconds: int = 30) -> Replay:
    """Run ``records`` under ``policy`` until nothing more happens."""
    return _Simulator(records, policy, lease_seconds).run()


def _merged(status: TaskStatus | None, patch: dict[str, Any]) -> TaskStatus:
    """``status`` with a JSON merge patch applied, as the API server stores it."""
    data = status.to_api() if status else {}
    for key, value in patch.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return TaskStatus.model_validate(data)


class _Simulator:
    def __init__(self, records: Sequence[Record], policy: Policy, lease_seconds: int) -> None:
        self.policy = policy
        self.lease_seconds = float(lease_seconds)
        start = min((r.arrival for r in records), default=0.0)
        self.clock = FakeClock(start)
        self.dispatcher = Dispatcher(QueueBook(default_lease_seconds=lease_seconds))
        spec = policy.queue_spec(lease_seconds)
        for queue in sorted({(r.key[0], r.queue) for r in records}):
            self.dispatcher.set_queue(queue, spec)
        self.workers = policy.workers or max(1, peak_concurrency(records))
        self.types = sorted({r.type for r in records})
        self.records = {r.key: r for r in records}
        self.tasks: dict[TaskKey, Task] = {}
        self.timers: Timers[TaskKey] = Timers()
        self.events: list[tuple[float, int, int, TaskKey, str]] = []
        self._seq = itertools.count()
        self._leases = itertools.count(1)
        self.started: dict[TaskKey, int] = {}
        self.dependents: dict[TaskKey, list[TaskKey]] = {}
        self.stand_ins = _stand_ins(records)
        self.grants: list[Grant] = []
        self.peak_running = 0
        for record in records:
            self._push(record.arrival, _ARRIVE, record.key)
            if record.phase is Phase.CANCELLED and record.final_end is not None:
                # A user's cancel is replayed at the time it was made.
                self._push(record.final_end, _CANCEL, record.key)
            for dependency in record.task.spec.depends_on or ():
                self.dependents.setdefault((record.key[0], dependency.name), []).append(record.key)

    # ------------------------------------------------------------ the loop

    def run(self) -> Replay:
        idle = 0  # steps in a row in which nothing happened
        while (when := self._next_time()) is not None:
            self.clock.set(max(self.clock.now(), when))
            now = self.clock.now()
            granted, handled = len(self.grants), 0
            while self.events and self.events[0][0] <= now:
                _, kind, _, key, lease_id = heapq.heappop(self.events)
                self._handle(kind, key, lease_id)
                handled += 1
            for key in self.timers.due(now):
                self._reconcile(key)
                handled += 1
            self._serve(now)
            idle = 0 if handled or len(self.grants) > granted else idle + 1
            if idle > 10_000:
                raise ReplayError(f"the replay does not come to rest (at {now})")
        return Replay(
            policy=self.policy,
            workers=self.workers,
            results={key: _simulated(task) for key, task in self.tasks.items()},
            grants=self.grants,
            peak_running=self.peak_running,
            tasks=self.tasks,
        )

    def _next_time(self) -> float | None:
        times = []
        if self.events:
            times.append(self.events[0][0])
        at = self.timers.next_at()
        if at is not None:
            times.append(at)
        if self.dispatcher.running() < self.workers:
            wake = self.dispatcher.next_wakeup()
            if wake is not None:
                # Never before now: what was due has been taken already.
                times.append(max(wake, self.clock.now() + 1e-6))
        return min(times) if times else None

    def _push(self, when: float, kind: int, key: TaskKey, lease_id: str = "") -> None:
        heapq.heappush(self.events, (when, kind, next(self._seq), key, lease_id))

    def _handle(self, kind: int, key: TaskKey, lease_id: str) -> None:
        if kind == _ARRIVE:
            self.tasks[key] = self._as_policy_says(self.records[key].task)
            self._reconcile(key)
            for other in self.dependents.get(key, ()):
                self._reconcile(other)  # it waited for a Task not yet there
        elif kind == _CANCEL:
            task = self.tasks.get(key)
            if task is not None:
                spec = task.spec.model_copy(update={"cancel": True})
                self.tasks[key] = task.model_copy(update={"spec": spec})
                self._reconcile(key)
        elif kind == _BEAT:
            self.dispatcher.leases.heartbeat(lease_id, self.clock.now())
        else:
            self._attempt_ended(key, lease_id)

    def _as_policy_says(self, task: Task) -> Task:
        """Retry settings go into the spec, where they come before the queue's.
        A dependency the history lacks (deleted by its TTL, or outside the
        namespaces read) counts as met: the Task did run."""
        changes: dict[str, Any] = {}
        namespace = task.metadata.namespace or ""
        depends_on = task.spec.depends_on or []
        kept = [d for d in depends_on if (namespace, d.name) in self.records]
        if len(kept) != len(depends_on):
            changes["depends_on"] = kept or None
        if self.policy.max_attempts is not None:
            changes["max_attempts"] = self.policy.max_attempts
        if self.policy.backoff is not None:
            changes["backoff"] = self.policy.backoff
        if not changes:
            return task
        return task.model_copy(update={"spec": task.spec.model_copy(update=changes)})

    # ------------------------------------------------------------ the reconciler

    def _facts(self, key: TaskKey) -> task_decisions.Facts:
        task = self.tasks[key]
        leases = self.dispatcher.leases
        now = self.clock.now()
        lease = leases.for_key(key)
        return task_decisions.Facts(
            now=now,
            queue=self.dispatcher.queues.spec(key[0], task.spec.queue),
            lease=lease,
            claimed=leases.running(key) and lease is None,
            synced=True,
            neighbours=self.tasks,
            # The simulated workers ask for every type all along.
            type_asked_at=now,
            serving_since=float("-inf"),
        )

    def _reconcile(self, key: TaskKey, depth: int = 0) -> None:
        if depth > 20:
            raise ReplayError(f"Task {key[0]}/{key[1]} does not settle")
        task = self.tasks.get(key)
        if task is None:
            return
        before = (task.status or TaskStatus()).phase
        decision = task_decisions.decide(task, self._facts(key))
        now = self.clock.now()
        if isinstance(decision.queue, Candidate):
            current = self.dispatcher.get(key)
            candidate = ordered(self.policy.order, decision.queue, now)
            if current is None or current.eligible_at != candidate.eligible_at:
                self.dispatcher.put(candidate, now)
            # else: it waits already; under LIFO a new look is no new wait.
        elif decision.queue is None:
            self.dispatcher.discard(key)
        if decision.lease in (LeaseAction.END, LeaseAction.REVOKE):
            self.dispatcher.finished(key)
        if decision.look_again_at is not None:
            self.timers.at(key, decision.look_again_at)
        if decision.patch is not None:
            self._write(key, decision.patch)
            self._reconcile(key, depth + 1)
            after = (self.tasks[key].status or TaskStatus()).phase
            if after != before and depth == 0:
                for other in self.dependents.get(key, ()):
                    self._reconcile(other)

    def _write(self, key: TaskKey, patch: dict[str, Any]) -> None:
        task = self.tasks[key]
        self.tasks[key] = task.model_copy(update={"status": _merged(task.status, patch)})

    # ------------------------------------------------------------ the workers

    def _serve(self, now: float) -> None:
        free = self.workers - self.dispatcher.running()
        if free <= 0 or not len(self.dispatcher):
            return
        for item in self.dispatcher.take(self.types, free, now):
            task = self.tasks.get(item.key)
            queue = self.dispatcher.queues.spec(item.key[0], task.spec.queue) if task else None
            if task is None or queue is None or not task_decisions.leasable(task):
                self.dispatcher.finished(item.key)
                self._reconcile(item.key)
                continue
            lease = task_decisions.new_lease(
                task,
                queue,
                lease_id=f"replay-{next(self._leases)}",
                worker="replay",
                holder=None,
                now=now,
            )
            self.dispatcher.leases.grant(lease)
            self.grants.append(Grant(now, item.key, task.spec.type, task.spec.priority))
            self._write(item.key, transitions.leased(task.status, lease))
            self._reconcile(item.key)
            self._play(item.key, lease.id, now)
        self.peak_running = max(self.peak_running, self.dispatcher.running())

    def _play(self, key: TaskKey, lease_id: str, now: float) -> None:
        """Schedule the attempt's heartbeats and its end, as it was measured."""
        index = self.started.get(key, 0)
        self.started[key] = index + 1
        attempt = self._attempt(key, index)
        live_until = now + attempt.duration
        if attempt.outcome is AttemptOutcome.LEASE_EXPIRED:
            # Its worker went silent: the recorded end is when the lease ran out.
            live_until -= self.lease_seconds
        elif attempt.outcome is AttemptOutcome.CANCELLED and self._cancel_pending(key):
            live_until = float("inf")  # it runs until the replayed cancel
        else:
            self._push(now + attempt.duration, _END, key, lease_id)
        beat = self.lease_seconds / 3
        until = live_until if live_until != float("inf") else self.records[key].final_end or now
        at = now + beat
        while at < until:
            self._push(at, _BEAT, key, lease_id)
            at += beat
        if attempt.outcome is AttemptOutcome.LEASE_EXPIRED and until > now:
            # Its last heartbeat: the lease then runs out when it really did.
            self._push(until, _BEAT, key, lease_id)

    def _cancel_pending(self, key: TaskKey) -> bool:
        record = self.records[key]
        return record.phase is Phase.CANCELLED and record.final_end is not None

    def _attempt(self, key: TaskKey, index: int) -> Attempt:
        """Recorded attempt *index*; beyond them the last one again, unless it
        was handed back or cancelled (those would repeat for ever): then a
        stand-in success, as for a Task that never ran."""
        recorded = self.records[key].attempts
        if index < len(recorded):
            return recorded[index]
        if recorded and recorded[-1].outcome not in _NOT_REPEATED:
            return recorded[-1]
        return self.stand_ins.get(self.records[key].type, _INSTANT)

    def _attempt_ended(self, key: TaskKey, lease_id: str) -> None:
        lease = self.dispatcher.leases.get(lease_id)
        task = self.tasks.get(key)
        if lease is None or task is None:
            return  # expired, revoked or ended otherwise meanwhile
        attempt = self._attempt(key, self.started[key] - 1)
        request = _request(lease_id, attempt, last=self._is_last(key, self.started[key] - 1))
        queue = self.dispatcher.queues.spec(key[0], task.spec.queue)
        patch = task_decisions.outcome(task, lease, request, queue, self.clock.now())
        before = (task.status or TaskStatus()).phase
        self._write(key, patch)
        self._reconcile(key)
        if (self.tasks[key].status or TaskStatus()).phase != before:
            for other in self.dependents.get(key, ()):
                self._reconcile(other)

    def _is_last(self, key: TaskKey, index: int) -> bool:
        record = self.records[key]
        return index >= len(record.attempts) - 1 and record.reason == Reason.PERMANENT_FAILURE


def _request(lease_id: str, attempt: Attempt, *, last: bool) -> CompleteRequest:
    """What the worker reports at the end of a replayed attempt."""
    outcome = attempt.outcome
    if outcome is AttemptOutcome.SUCCEEDED:
        return CompleteRequest(lease_id=lease_id, outcome=Outcome.SUCCEEDED)
    if outcome is AttemptOutcome.RELEASED:
        return CompleteRequest(lease_id=lease_id, outcome=Outcome.RELEASED)
    timed_out = outcome is AttemptOutcome.TIMED_OUT
    error = ReportedError(
        type="TimedOut" if timed_out else "ReplayedFailure",
        message="as recorded",
        # The history keeps no retryable flag: a Task that went Dead as a
        # PermanentFailure failed so on its last attempt.
        retryable=not last,
        timed_out=timed_out,
    )
    return CompleteRequest(lease_id=lease_id, outcome=Outcome.FAILED, error=error)


def _stand_ins(records: Iterable[Record]) -> dict[str, Attempt]:
    """For Tasks that never ran: a success as long as their type's median attempt."""
    durations: dict[str, list[float]] = {}
    for record in records:
        for attempt in record.attempts:
            durations.setdefault(record.type, []).append(attempt.duration)
    return {
        type_: Attempt(0.0, statistics.median(values), AttemptOutcome.SUCCEEDED)
        for type_, values in durations.items()
    }


def _simulated(task: Task) -> Simulated:
    status = task.status or TaskStatus()
    return Simulated(
        phase=status.phase,
        reason=status.reason,
        attempts=status.attempts,
        first_start=to_timestamp(status.started_at) if status.started_at else None,
        final_end=to_timestamp(status.finished_at)
        if status.finished_at and status.phase.is_finished
        else None,
    )
