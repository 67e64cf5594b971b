"""The operator's decision loop on a virtual clock, with no API server.

:class:`Simulation` holds Tasks as models, carries out each
:func:`~taskmill.dispatch.task_decisions.decide` the way the Task reconciler
does (patches merged as if written, the dispatcher and lease book changed,
"look again" times kept in a :class:`~taskmill.dispatch.timers.Timers`),
and plays workers that take Tasks, heartbeat, report outcomes or vanish.
Only pure code runs: a step is microseconds, so a property test can run
thousands of Task lifetimes in a second.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from taskmill.dispatch import task_decisions, transitions
from taskmill.dispatch.clock import FakeClock, to_datetime
from taskmill.dispatch.dispatcher import Dispatcher
from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.leases import LeaseInfo
from taskmill.dispatch.task_decisions import Decision, LeaseAction
from taskmill.dispatch.timers import Timers
from taskmill.models.lease import CompleteRequest
from taskmill.models.resources import Task
from taskmill.models.task import TaskStatus
from taskmill.models.taskqueue import TaskQueueSpec

T0 = 1_800_000_000.0


def task_body(name: str, created: float = T0, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": transitions.iso(created),
        },
        "spec": {"type": "echo", **spec},
    }


def merged(status: TaskStatus | None, patch: dict[str, Any]) -> TaskStatus:
    """``status`` with a JSON merge patch applied, as the API server stores it."""
    data = status.to_api() if status else {}
    for key, value in patch.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return TaskStatus.model_validate(data)


@dataclass
class Simulation:
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    dispatcher: Dispatcher = field(default_factory=Dispatcher)
    tasks: dict[TaskKey, Task] = field(default_factory=dict)
    timers: Timers[TaskKey] = field(default_factory=Timers)
    synced: bool = True
    asked: dict[str, float] = field(default_factory=dict)
    #: Every decision carried out, in order: (key, decision).
    decisions: list[tuple[TaskKey, Decision]] = field(default_factory=list)
    #: Events posted: (key, reason).
    events: list[tuple[TaskKey, str]] = field(default_factory=list)
    deleted: list[TaskKey] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    serving_since: float = T0 - 3600
    no_worker_after: float = 60.0
    _versions: int = 1

    # ---------------------------------------------------------------- the API's side

    def create(self, body: dict[str, Any]) -> TaskKey:
        task = Task.model_validate(body)
        key = (task.metadata.namespace or "", task.metadata.name or "")
        self.tasks[key] = task
        self.reconcile(key)
        return key

    def edit(self, key: TaskKey, **changes: Any) -> None:
        """Change a Task's spec or metadata, as a user would."""
        task = self.tasks[key]
        data = task.to_api()
        for path, value in changes.items():
            where, name = path.split("__")
            data.setdefault(where, {})[name] = value
        self.tasks[key] = Task.model_validate(self._bumped(data))
        self.reconcile(key)

    def _bumped(self, data: dict[str, Any]) -> dict[str, Any]:
        self._versions += 1
        data["metadata"]["resourceVersion"] = str(self._versions)
        return data

    def status(self, key: TaskKey) -> TaskStatus:
        return self.tasks[key].status or TaskStatus()

    def write(self, key: TaskKey, patch: dict[str, Any]) -> None:
        task = self.tasks[key]
        data = task.to_api()
        data["status"] = merged(task.status, patch).to_api()
        self.tasks[key] = Task.model_validate(self._bumped(data))

    # ---------------------------------------------------------------- the reconciler

    def facts(self, key: TaskKey) -> task_decisions.Facts:
        task = self.tasks[key]
        leases = self.dispatcher.leases
        return task_decisions.Facts(
            now=self.clock.now(),
            queue=self.dispatcher.queues.spec(key[0], task.spec.queue),
            lease=leases.for_key(key),
            claimed=leases.running(key) and leases.for_key(key) is None,
            synced=self.synced,
            neighbours=self,
            type_asked_at=self.asked.get(task.spec.type),
            serving_since=self.serving_since,
            no_worker_after=self.no_worker_after,
            progress=leases.unwritten_progress(key),
        )

    def get(self, key: TaskKey, /) -> Task | None:
        return self.tasks.get(key)

    def reconcile(self, key: TaskKey, *, depth: int = 0) -> None:
        """Decide and carry out until nothing more follows, as the reconciler's
        write results re-queue the key."""
        assert depth < 50, f"{key} does not settle"
        if key not in self.tasks:
            return
        before = self.status(key).phase
        decision = task_decisions.decide(self.tasks[key], self.facts(key))
        self.decisions.append((key, decision))
        now = self.clock.now()
        lease = self.dispatcher.leases.for_key(key)
        task_decisions.apply_in_memory(decision, key, self.tasks[key], self.dispatcher, now)
        if decision.lease is LeaseAction.REVOKE and lease is not None:
            self.revoked.append(lease.id)
        if decision.look_again_at is not None:
            self.timers.at(key, decision.look_again_at)
        if decision.delete:
            self.deleted.append(key)
            del self.tasks[key]
            self._wake_dependents(key)
            return
        if decision.patch is not None:
            self.write(key, decision.patch)
            if "progress" in decision.patch:
                self.dispatcher.leases.progress_written(key, decision.patch["progress"])
        if decision.announce is not None:
            self.events.append((key, str(decision.announce.reason)))
        if decision.patch is not None:
            self.reconcile(key, depth=depth + 1)
            if self.status(key).phase != before:
                self._wake_dependents(key)

    def _wake_dependents(self, key: TaskKey) -> None:
        for other, task in list(self.tasks.items()):
            if any((other[0], d.name) == key for d in task.spec.depends_on or ()):
                self.reconcile(other)

    def run_until(self, when: float) -> None:
        """Move the clock, acting on every timer on the way."""
        while True:
            next_at = self.timers.next_at()
            if next_at is None or next_at > when:
                break
            self.clock.set(max(self.clock.now(), next_at))
            for key in self.timers.due(self.clock.now()):
                self.reconcile(key)
        self.clock.set(max(self.clock.now(), when))

    # ---------------------------------------------------------------- workers

    def lease(self, types: list[str], count: int, worker: str = "w") -> list[LeaseInfo]:
        """What the lease API does: take, grant, record the lease."""
        now = self.clock.now()
        for type_ in types:
            self.asked[type_] = now
        granted = []
        for item in self.dispatcher.take(types, count, now):
            task = self.tasks.get(item.key)
            queue = self.dispatcher.queues.spec(item.key[0], task.spec.queue) if task else None
            if task is None or queue is None or not task_decisions.leasable(task):
                self.dispatcher.finished(item.key)
                self.reconcile(item.key)
                continue
            lease = task_decisions.new_lease(
                task,
                queue,
                lease_id=f"{item.key[1]}-{self._versions}",
                worker=worker,
                holder=None,
                now=now,
            )
            self.dispatcher.leases.grant(lease)
            self.write(item.key, transitions.leased(task.status, lease))
            self.reconcile(item.key)
            granted.append(lease)
        return granted

    def complete(self, lease: LeaseInfo, request: CompleteRequest) -> None:
        task = self.tasks[lease.key]
        queue = self.dispatcher.queues.spec(lease.key[0], task.spec.queue)
        current = self.dispatcher.leases.get(lease.id)
        assert current is not None, "completing a lease that is not current"
        patch = task_decisions.outcome(task, lease, request, queue, self.clock.now())
        self.write(lease.key, patch)
        announce = task_decisions.ended(patch)
        if announce is not None:
            self.events.append((lease.key, str(announce.reason)))
        self.reconcile(lease.key)
        self._wake_dependents(lease.key)

    def heartbeat(self, lease: LeaseInfo) -> LeaseInfo | None:
        return self.dispatcher.leases.heartbeat(lease.id, self.clock.now())

    def set_queue(self, name: str, namespace: str = "ns", **spec: Any) -> None:
        self.dispatcher.set_queue((namespace, name), TaskQueueSpec.model_validate(spec))
        for key in list(self.tasks):
            self.reconcile(key)


def at(seconds: float) -> dt.datetime:
    return to_datetime(T0 + seconds)
