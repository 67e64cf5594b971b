"""The dispatcher: which eligible Task is leased next, within every limit.

Pure: no I/O, time passed in. The operator feeds it Tasks and queue settings
and asks it for work; a simulation can run the same class on a virtual
clock.

**Lanes.** Eligible Tasks wait in *lanes*, one per (namespace, queue, type):
a heap ordered by priority (higher first), then creation (older first).
Everything a TaskQueue limits applies to a whole lane at once: the token
bucket of a type, the concurrency of a type, the queue's total concurrency,
``paused``. So a lane that hits a limit leaves consideration as a whole and
comes back when the limit lifts (a token refills at a known time; a running
Task of its queue finishes; the queue is edited), and no decision ever scans
the Tasks inside it.

**Choosing.** For each task type, the lanes holding that type sit in a heap
keyed by (priority of the lane's best Task, when the lane was last served).
The next Task is the head of the best lane over the types a worker asked
for: the highest priority wins, and among equal priorities the lane served
longest ago — round-robin, so one busy namespace (or queue) cannot starve
another. Within a lane, FIFO by creation. A decision costs O(k log L) for k
requested types and L lanes, whatever the number of pending Tasks.

**Delays.** Tasks not yet eligible (``runAt``, backoff) wait in one heap by
the time they become eligible and enter their lane then.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.leases import LaneKey, LeaseBook, LeaseInfo
from taskmill.dispatch.queues import UNLIMITED, Limits, QueueBook, QueueKey
from taskmill.dispatch.tokenbucket import TokenBucket
from taskmill.models.taskqueue import TaskQueueSpec

__all__ = ["UNLIMITED", "Candidate", "Dispatcher", "Limits"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible (or soon eligible) Task as the dispatcher sees it."""

    key: TaskKey
    queue: str
    type: str
    priority: int = 0
    #: Creation time (seconds since the epoch): FIFO within a priority.
    created: float = 0.0
    #: Not before this time (0: now).
    eligible_at: float = 0.0

    @property
    def lane(self) -> LaneKey:
        return (self.key[0], self.queue, self.type)


@dataclass(slots=True)
class _Lane:
    key: LaneKey
    heap: list[tuple[int, float, int, TaskKey]] = field(default_factory=list)
    running: int = 0
    served: int = 0
    #: Whether a live record of this lane is in its type's lane heap.
    listed: bool = False
    #: Token bucket, if the queue rate-limits this type.
    bucket: TokenBucket | None = None
    #: When a token wait for this lane is already scheduled.
    wake_at: float = -1.0
    #: The (priority, served) key its live record in the type heap carries.
    listed_key: tuple[int, int] | None = None


class Dispatcher:
    def __init__(self, queues: QueueBook | None = None) -> None:
        #: Queue settings (read on every decision) and running Tasks with
        #: their leases: the one record of each, shared with the operator.
        self.queues = queues or QueueBook()
        self.leases = LeaseBook()
        self._seq = itertools.count()
        self._serve = itertools.count(1)
        #: key -> (sequence of its live record, candidate)
        self._live: dict[TaskKey, tuple[int, Candidate]] = {}
        self._delayed: list[tuple[float, int, TaskKey]] = []
        self._lanes: dict[LaneKey, _Lane] = {}
        self._queue_lanes: dict[QueueKey, list[_Lane]] = {}
        #: type -> heap of (-head priority, last served, lane generation, lane key)
        self._by_type: dict[str, list[tuple[int, int, int, LaneKey]]] = {}
        self._lane_gen: dict[LaneKey, int] = {}
        #: Lanes waiting for a token: heap of (time, lane key).
        self._throttled: list[tuple[float, LaneKey]] = []
        self._queue_running: dict[QueueKey, int] = {}
        self.throttled_decisions = 0

    # ---------------------------------------------------------------- queues

    def set_limits(self, queue: QueueKey, limits: Limits) -> None:
        """Apply limits alone (benchmarks, tests); takes effect at once."""
        old = self.limits(queue)
        self.queues.set_limits(queue, limits)
        self._limits_changed(queue, old)

    def set_queue(self, queue: QueueKey, spec: TaskQueueSpec | None) -> None:
        """Apply a TaskQueue (new, edited, or deleted: None); takes effect at once."""
        old = self.limits(queue)
        if spec is None:
            self.queues.remove(queue)
        else:
            self.queues.put(queue, spec)
        self._limits_changed(queue, old)

    def _limits_changed(self, queue: QueueKey, old: Limits) -> None:
        limits = self.limits(queue)
        for lane in self._lanes_of(queue):
            rate = limits.rate(lane.key[2])
            if rate is None:
                lane.bucket = None
            elif lane.bucket is None or (lane.bucket.per_second, lane.bucket.burst) != rate:
                # A new or changed bucket starts full: like a fresh queue.
                stamp = lane.bucket.stamp if lane.bucket else 0.0
                lane.bucket = TokenBucket.full(rate[0], rate[1], stamp)
            if old != limits:
                self._relist(lane)

    def limits(self, queue: QueueKey) -> Limits:
        return self.queues.limits(queue)

    # ---------------------------------------------------------------- tasks

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def get(self, key: TaskKey) -> Candidate | None:
        entry = self._live.get(key)
        return entry[1] if entry else None

    def put(self, candidate: Candidate, now: float) -> None:
        """Add a Task, or replace the queued Task with the same key."""
        current = self._live.get(candidate.key)
        if current is not None and current[1] == candidate:
            return
        if current is not None and current[1].lane != candidate.lane:
            self._live.pop(candidate.key)  # its old lane record goes stale
        seq = next(self._seq)
        self._live[candidate.key] = (seq, candidate)
        if candidate.eligible_at > now:
            heapq.heappush(self._delayed, (candidate.eligible_at, seq, candidate.key))
        else:
            self._enter_lane(seq, candidate)

    def discard(self, key: TaskKey) -> Candidate | None:
        """Forget a queued Task (cancelled, deleted, leased elsewhere)."""
        entry = self._live.pop(key, None)
        return entry[1] if entry else None

    def restore(self, candidate: Candidate, lease: LeaseInfo) -> None:
        """Count a Task as running under ``lease`` without taking it: a lease
        found in its status on restart (or recorded by another replica)."""
        if not self.leases.running(candidate.key):
            self.discard(candidate.key)
            self._started(self._lane(candidate.lane), candidate.key)
        self.leases.grant(lease)

    def finished(self, key: TaskKey) -> LeaseInfo | None:
        """A taken Task's attempt ended (success, failure, expiry, release,
        cancel) or its lease could not be recorded: free its place, end its
        lease. Returns the lease it had, if any."""
        lane_key, lease = self.leases.release(key)
        if lane_key is None:
            return lease
        lane = self._lanes[lane_key]
        lane.running -= 1
        queue = lane_key[:2]
        self._queue_running[queue] -= 1
        limits = self.limits(queue)
        if limits.total is not None and self._queue_running[queue] == limits.total - 1:
            for other in self._lanes_of(queue):  # the queue had been full
                self._relist(other)
        else:
            self._relist(lane)
        return lease

    def running(self, queue: QueueKey | None = None) -> int:
        if queue is None:
            return self.leases.claimed()
        return self._queue_running.get(queue, 0)

    # ---------------------------------------------------------------- choosing

    def take(self, types: Iterable[str], limit: int, now: float) -> list[Candidate]:
        """Remove and return up to ``limit`` Tasks of the given types, best first,
        counting each as running until :meth:`finished`."""
        self._advance(now)
        wanted = [t for t in dict.fromkeys(types) if t in self._by_type]
        taken: list[Candidate] = []
        while len(taken) < limit:
            lane = self._best_lane(wanted, now)
            if lane is None:
                break
            key = heapq.heappop(lane.heap)[3]
            _, candidate = self._live.pop(key)
            taken.append(candidate)
            if lane.bucket is not None:
                lane.bucket.tokens -= 1
            lane.served = next(self._serve)
            self._started(lane, key)
            self._relist(lane)
        return taken

    def next_wakeup(self) -> float | None:
        """The earliest time something becomes eligible without an event:
        a delayed Task's time, or a throttled lane's next token."""
        times = []
        delayed = self._delayed
        while delayed:
            at, seq, key = delayed[0]
            entry = self._live.get(key)
            if entry is not None and entry[0] == seq:
                times.append(at)
                break
            heapq.heappop(delayed)
        if self._throttled:
            times.append(self._throttled[0][0])
        return min(times) if times else None

    def pending(self) -> Iterator[Candidate]:
        """Every queued Task, in no particular order (for reports, not for decisions)."""
        return (candidate for _, candidate in self._live.values())

    def ready_types(self) -> list[str]:
        return [t for t, heap in self._by_type.items() if heap]

    def ready_of_type(self, type_: str) -> list[Candidate]:
        """The eligible Tasks of one type (an O(n) report, e.g. to find orphaned types)."""
        out = []
        for lane in self._lanes.values():
            if lane.key[2] != type_:
                continue
            for _, _, seq, key in lane.heap:
                entry = self._live.get(key)
                if entry is not None and entry[0] == seq:
                    out.append(entry[1])
        return out

    # ---------------------------------------------------------------- internals

    def _advance(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, seq, key = heapq.heappop(delayed)
            entry = self._live.get(key)
            if entry is not None and entry[0] == seq:
                self._enter_lane(seq, entry[1])
        throttled = self._throttled
        while throttled and throttled[0][0] <= now:
            _, lane_key = heapq.heappop(throttled)
            lane = self._lanes[lane_key]
            lane.wake_at = -1.0
            self._relist(lane, now)

    def _lane(self, lane_key: LaneKey) -> _Lane:
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane(lane_key)
            self._queue_lanes.setdefault(lane_key[:2], []).append(lane)
            rate = self.limits(lane_key[:2]).rate(lane_key[2])
            if rate is not None:
                lane.bucket = TokenBucket.full(rate[0], rate[1], 0.0)
        return lane

    def _lanes_of(self, queue: QueueKey) -> list[_Lane]:
        return self._queue_lanes.get(queue, [])

    def _enter_lane(self, seq: int, candidate: Candidate) -> None:
        lane = self._lane(candidate.lane)
        heapq.heappush(lane.heap, (-candidate.priority, candidate.created, seq, candidate.key))
        self._relist(lane)

    def _started(self, lane: _Lane, key: TaskKey) -> None:
        lane.running += 1
        queue = lane.key[:2]
        self._queue_running[queue] = self._queue_running.get(queue, 0) + 1
        self.leases.claim(key, lane.key)

    def _head(self, lane: _Lane) -> tuple[int, float, int, TaskKey] | None:
        heap = lane.heap
        while heap:
            seq, key = heap[0][2], heap[0][3]
            entry = self._live.get(key)
            if entry is not None and entry[0] == seq and entry[1].lane == lane.key:
                return heap[0]
            heapq.heappop(heap)
        return None

    def _blocked(self, lane: _Lane, now: float | None) -> bool:
        """Whether a limit holds the lane back; a token wait is scheduled."""
        queue = lane.key[:2]
        limits = self.limits(queue)
        if limits.paused:
            return True
        if limits.total is not None and self._queue_running.get(queue, 0) >= limits.total:
            return True
        type_limit = limits.type_limit(lane.key[2])
        if type_limit is not None and lane.running >= type_limit:
            return True
        bucket = lane.bucket
        if bucket is not None:
            if now is not None:
                bucket.refill(now)
            if bucket.tokens < 1:
                ready_at = bucket.ready_at()
                if lane.wake_at != ready_at:
                    lane.wake_at = ready_at
                    heapq.heappush(self._throttled, (ready_at, lane.key))
                self.throttled_decisions += 1
                return True
        return False

    def _relist(self, lane: _Lane, now: float | None = None) -> None:
        """(Re)enter the lane into its type's heap under its current head, if it
        has one and no limit holds it back; older records of it go stale.

        A lane already listed under the same key keeps its record, so adding a
        Task behind the head costs no push: the type heaps hold about one
        record per lane, not one per Task."""
        head = self._head(lane)
        if head is None or self._blocked(lane, now):
            if lane.listed:
                self._lane_gen[lane.key] = self._lane_gen.get(lane.key, 0) + 1
                lane.listed = False
            return
        key = (head[0], lane.served)
        if lane.listed and lane.listed_key == key:
            return
        generation = self._lane_gen.get(lane.key, 0) + 1
        self._lane_gen[lane.key] = generation
        heap = self._by_type.setdefault(lane.key[2], [])
        heapq.heappush(heap, (key[0], key[1], generation, lane.key))
        lane.listed = True
        lane.listed_key = key

    def _best_lane(self, types: list[str], now: float) -> _Lane | None:
        best: tuple[int, int, int, LaneKey] | None = None
        best_heap: list[tuple[int, int, int, LaneKey]] | None = None
        for type_ in types:
            heap = self._by_type[type_]
            while heap:
                top = heap[0]
                lane = self._lanes[top[3]]
                if self._lane_gen.get(lane.key) != top[2] or not lane.listed:
                    heapq.heappop(heap)
                    continue
                head = self._head(lane)
                if head is None or head[0] != top[0]:
                    heapq.heappop(heap)  # its head changed: relist under the new one
                    lane.listed = False
                    self._relist(lane, now)
                    continue
                if self._blocked(lane, now):
                    # A limit it shares with lanes taken from meanwhile (the
                    # queue's total, a token): out until the limit lifts.
                    heapq.heappop(heap)
                    lane.listed = False
                    continue
                break
            if heap and (best is None or heap[0] < best):
                best, best_heap = heap[0], heap
        if best is None or best_heap is None:
            return None
        heapq.heappop(best_heap)
        lane = self._lanes[best[3]]
        lane.listed = False  # taken out; take() relists it under its next head
        return lane
