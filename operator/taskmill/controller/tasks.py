"""The Task reconciler: watch events in, decisions carried out.

Every change of a Task (a watch event, or the result of one of our writes)
goes into the :class:`~taskmill.controller.store.TaskStore`, which queues
its key, and the keys of the Tasks that depend on it, in a
:class:`~taskmill.controller.workqueue.KeyedQueue`. A step for a key builds
the :class:`~taskmill.dispatch.task_decisions.Facts`, asks
:func:`~taskmill.dispatch.task_decisions.decide`, applies the in-memory part
at once (the dispatcher, the lease book, timers) and, if the decision needs
the API server, carries it out through
:class:`~taskmill.controller.effects.Effects`. A write's result goes back
into the store, which queues the key again: decision code is never called
from a write's callback, and never runs twice at once for the same Task.

Time comes only from the injected clock: one
:class:`~taskmill.dispatch.timers.Timers` heap holds every "look again at"
(``runAt``, deadlines, TTLs, lease expiries, retries after an outage) and
the periodic sweep (progress writes, NoWorker), so a test drives it all by
moving a fake clock and calling :meth:`TaskController.run_due`.

The lease API's side — leasing, heartbeats, outcomes — is
:mod:`taskmill.controller.leasing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, Literal

from taskmill.controller.effects import Effects, Failure, Written
from taskmill.controller.settings import OperatorSettings
from taskmill.controller.store import Entry, InvalidTask, TaskRecord, TaskStore
from taskmill.controller.workqueue import KeyedQueue
from taskmill.dispatch import task_decisions
from taskmill.dispatch.clock import Clock, WallClock
from taskmill.dispatch.dispatcher import Dispatcher
from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.queues import QueueBook
from taskmill.dispatch.task_decisions import Decision
from taskmill.dispatch.timers import Timers
from taskmill.kube.client import KubeClient, path
from taskmill.models.resources import Task, TaskQueue
from taskmill.models.task import DEFAULT_QUEUE, Phase
from taskmill.models.taskqueue import TaskQueueSpec

log = logging.getLogger(__name__)

TASKS = Task.RESOURCE_PLURAL

#: How often reported progress is written to running Tasks, and Tasks whose
#: type no worker asks for are looked for: progress is for people watching,
#: so it is batched rather than costing a write per heartbeat.
SWEEP_SECONDS = 5.0
#: The longest the timer loop sleeps, so a clock that jumps is noticed.
MAX_SLEEP_SECONDS = 1.0
#: When a refused status write is decided again.
REFUSED_RETRY_SECONDS = 30.0

_FINISHED = frozenset({Phase.SUCCEEDED.value, Phase.DEAD.value, Phase.CANCELLED.value})

Token = tuple[Literal["task"], TaskKey] | tuple[Literal["sweep"], None]
SWEEP: Token = ("sweep", None)


class TaskController:
    def __init__(
        self,
        client: KubeClient,
        settings: OperatorSettings,
        *,
        clock: Clock | None = None,
        effects: Effects | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or WallClock()
        self.effects = effects or Effects(
            client,
            self.clock,
            max_concurrent_writes=settings.max_concurrent_writes,
            events_per_second=settings.events_per_second,
            component=settings.instance,
        )
        self.client = client
        self.dispatcher = Dispatcher(QueueBook(settings.lease_seconds))
        self.leases = self.dispatcher.leases
        self.store = TaskStore()
        self.store.listen(self._changed)
        self.queue: KeyedQueue[TaskKey] = KeyedQueue(self._step, name="tasks")
        self.timers: Timers[Token] = Timers()
        self.timers.at(SWEEP, self.clock.now() + SWEEP_SECONDS)
        #: Whether the initial list of Tasks has been taken in (see mark_synced).
        self.synced = False
        #: Since when workers may ask: NoWorker waits a horizon of that.
        self.serving_since = self.clock.now()
        #: When a worker last asked for each type.
        self._asked: dict[str, float] = {}
        #: Tasks waiting for a missing TaskQueue, by (namespace, queue), and
        #: the queue each waits for (so a deleted Task leaves no entry).
        self._parked: dict[tuple[str, str], set[TaskKey]] = {}
        self._parked_on: dict[TaskKey, tuple[str, str]] = {}
        #: Set when a Task enters the dispatcher, for long-polling leasers.
        self.work_arrived = asyncio.Event()
        self._wake = asyncio.Event()
        self._sleep_until = float("inf")

    # ------------------------------------------------------------------ intake

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Take in one watch event of a Task. Never raises."""
        try:
            self.store.observe(event_type, body)
        except Exception:
            meta = body.get("metadata") or {}
            log.exception("failed to take in Task %s/%s", meta.get("namespace"), meta.get("name"))

    def _changed(self, key: TaskKey, old: Entry | None, new: Entry | None) -> None:
        self.queue.enqueue(key)
        if old is None or new is None or _ended(old) != _ended(new):
            # A dependency others wait for appeared, went, or ended: only
            # that can change what they decide.
            for dependent in sorted(self.store.dependents(key)):
                self.queue.enqueue(dependent)

    def known_in(self, namespace: str | None) -> dict[TaskKey, str]:
        return self.store.known_in(namespace)

    def mark_synced(self) -> None:
        """Every Task has been listed (see :class:`~taskmill.controller.informer.TaskInformer`):
        the state a restarted operator works from. Until then the lease API
        answers 503, so a worker finishing an attempt across a restart retries
        instead of being told its lease is unknown."""
        self.synced = True
        # Dependencies not listed during the load really are missing now: say so.
        for entry in list(self.store):
            if isinstance(entry, TaskRecord) and entry.task.spec.depends_on:
                self.queue.enqueue(entry.key)

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
        spec: TaskQueueSpec | None = None
        if event_type != "DELETED":
            try:
                spec = TaskQueue.model_validate(body).spec
            except Exception as exc:
                log.warning("ignoring invalid TaskQueue %s/%s: %s", *queue_key, exc)
                return
        self.dispatcher.set_queue(queue_key, spec)
        if spec is not None:
            parked = self._parked.pop(queue_key, set())
            for key in parked:
                self._parked_on.pop(key, None)
            self._enqueue_all(parked)
        elif queue_key[1] != DEFAULT_QUEUE:
            # Its Tasks wait for it to exist again.
            self._enqueue_all(
                c.key for c in list(self.dispatcher.pending()) if (c.key[0], c.queue) == queue_key
            )

    def _enqueue_all(self, keys: Iterable[TaskKey]) -> None:
        for key in sorted(keys):
            self.queue.enqueue(key)

    def worker_asked(self, types: Iterable[str]) -> None:
        now = self.clock.now()
        for type_ in types:
            self._asked[type_] = now

    def queue_spec(self, record: TaskRecord) -> TaskQueueSpec | None:
        return self.dispatcher.queues.spec(record.key[0], record.task.spec.queue)

    # ------------------------------------------------------------------ deciding

    def facts(self, record: TaskRecord) -> task_decisions.Facts:
        key = record.key
        lease = self.leases.for_key(key)
        return task_decisions.Facts(
            now=self.clock.now(),
            queue=self.queue_spec(record),
            lease=lease,
            claimed=lease is None and self.leases.running(key),
            synced=self.synced,
            neighbours=self.store,
            type_asked_at=self._asked.get(record.task.spec.type),
            serving_since=self.serving_since,
            no_worker_after=self.settings.no_worker_after_seconds,
            lease_seconds=self.settings.lease_seconds,
            progress=self.leases.unwritten_progress(key),
        )

    def _step(self, key: TaskKey) -> Coroutine[Any, Any, None] | None:
        entry = self.store.entry(key)
        if entry is None:
            self._forget(key)
            return None
        if isinstance(entry, InvalidTask):
            # Not runnable as it is: out of the dispatcher, and an attempt
            # running under an earlier, valid version is told to stop.
            decision = task_decisions.invalid(entry.raw_status, entry.message, self.clock.now())
        else:
            decision = task_decisions.decide(entry.task, self.facts(entry))
        self._apply(entry, decision)
        return self.carry_out(entry, decision) if decision.acts else None

    def _forget(self, key: TaskKey) -> None:
        """Deleted: out of the dispatcher; a running attempt is told to stop."""
        self.dispatcher.discard(key)
        queue = self._parked_on.pop(key, None)
        if queue is not None:
            self._parked.get(queue, set()).discard(key)
        lease = self.dispatcher.finished(key)
        if lease is not None:
            self.leases.revoke(lease, self.clock.now())

    def _apply(self, entry: Entry, decision: Decision) -> None:
        """The in-memory part of a decision, at once."""
        key = entry.key
        task = entry.task if isinstance(entry, TaskRecord) else None
        if task_decisions.apply_in_memory(decision, key, task, self.dispatcher, self.clock.now()):
            self.work_arrived.set()
        if decision.waits_for_queue is not None:
            queue = (key[0], decision.waits_for_queue)
            self._parked.setdefault(queue, set()).add(key)
            self._parked_on[key] = queue
        if decision.look_again_at is not None:
            self.look_again(key, decision.look_again_at)

    async def carry_out(self, entry: Entry, decision: Decision) -> None:
        """The part of a decision that needs the API server."""
        key = entry.key
        if decision.delete:
            await self.effects.delete(TASKS, key, entry.uid, "ttlSecondsAfterFinished passed")
            return
        if decision.patch is not None:
            generation = entry.task.metadata.generation if isinstance(entry, TaskRecord) else None
            written = await self.effects.write_status(
                TASKS, key, entry.resource_version, decision.patch, generation
            )
            if not written.landed:
                await self.not_written(key, written)
                return
            self._landed(key, decision)
            assert written.body is not None
            self.store.adopt(written.body)
        if decision.announce is not None:
            announce = decision.announce
            await self.effects.event(
                entry.reference(), announce.type, announce.reason, announce.message
            )

    def _landed(self, key: TaskKey, decision: Decision) -> None:
        patch = decision.patch or {}
        phase = patch.get("phase")
        if phase == Phase.WAITING.value:
            log.info("Task %s/%s waits: %s: %s", *key, patch["reason"], patch["message"])
        elif phase == Phase.DEAD.value:
            log.warning("Task %s/%s is Dead: %s: %s", *key, patch["reason"], patch["message"])
        if "progress" in patch:
            self.leases.progress_written(key, patch["progress"])

    async def not_written(self, key: TaskKey, written: Written) -> None:
        """The one policy for a write that did not land (see :mod:`.effects`)."""
        if written.failure is Failure.CONFLICT:
            body = await self.effects.read(TASKS, key)
            if body is None:
                self.look_again(key, self.clock.now() + 1.0)
            elif not self.store.observe("MODIFIED", body):
                self.queue.requeue(key)
        elif written.failure is Failure.TRANSIENT:
            self.look_again(key, max(self.effects.outage.retry_at, self.clock.now() + 0.1))
        elif written.failure is Failure.REFUSED:
            # Refused as it is (a webhook, a validation rule): try again later
            # rather than never, so an expired lease is not held for good.
            self.look_again(key, self.clock.now() + REFUSED_RETRY_SECONDS)

    # ------------------------------------------------------------------ time

    def look_again(self, key: TaskKey, when: float) -> None:
        self.timers.at(("task", key), when)
        if when < self._sleep_until:
            self._wake.set()

    def run_due(self) -> None:
        """Act on every timer whose time has come (the loop calls this; tests too)."""
        now = self.clock.now()
        for token in self.timers.due(now):
            if token[0] == "task":
                self.queue.enqueue(token[1])
            else:
                self._sweep(now)
                self.timers.at(SWEEP, now + SWEEP_SECONDS)

    async def run_timers(self) -> None:
        """Run timers on the injected clock until cancelled."""
        while True:
            self._wake.clear()
            self.run_due()
            now = self.clock.now()
            next_at = self.timers.next_at()
            delay = MAX_SLEEP_SECONDS if next_at is None else max(0.0, next_at - now)
            delay = min(delay, MAX_SLEEP_SECONDS)
            self._sleep_until = now + delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._sleep_until = float("inf")

    def _sweep(self, now: float) -> None:
        """Every few seconds: progress to write, revoked leases to forget,
        Tasks of types no worker asks for."""
        self._enqueue_all(self.leases.with_progress())
        self.leases.drop_revoked_before(now)
        horizon = self.settings.no_worker_after_seconds
        # An entry older than the horizon says no more than a missing one:
        # dropping them bounds the map by the types asked for in one horizon,
        # however many made-up types lease calls name.
        for type_ in [t for t, at in self._asked.items() if now - at >= horizon]:
            del self._asked[type_]
        if now - self.serving_since < horizon:
            return  # workers may not have reconnected yet
        for type_ in self.dispatcher.ready_types():
            if type_ in self._asked:
                continue
            for item in self.dispatcher.ready_of_type(type_):
                if item.eligible_at > now or now - item.created < horizon:
                    continue
                if self.dispatcher.limits((item.key[0], item.queue)).paused:
                    continue
                record = self.store.record(item.key)
                if record is not None and record.reason != "NoWorker":
                    self.queue.enqueue(item.key)

    async def close(self) -> None:
        await self.queue.close()


def _ended(entry: Entry) -> bool:
    return entry.phase in _FINISHED
