"""The dispatch queue: eligible Tasks ordered by priority, then creation.

Workers ask for Tasks of the types they handle, so the queue keeps one heap
per type; taking ``n`` Tasks for ``k`` types costs O(n * k * log N), whatever
the number N of queued Tasks. Tasks not yet eligible (``runAt``, backoff) wait
in a second heap keyed by the time they become eligible and move over when
asked for work or when ``promote`` runs.

Removal is lazy: ``discard`` forgets the entry, and its stale heap records are
skipped when they surface. Every (re)insert gets a fresh sequence number, so a
stale record never shadows a newer one.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

TaskKey = tuple[str, str]
"""``(namespace, name)``: a Task's identity in the queue."""


@dataclass(frozen=True, slots=True)
class QueueItem:
    key: TaskKey
    type: str
    priority: int
    #: Creation time (seconds since the epoch): FIFO within a priority.
    created: float
    #: Not before this time (0: now).
    eligible_at: float = 0.0


class DispatchQueue:
    def __init__(self) -> None:
        self._seq = itertools.count()
        # type -> heap of (-priority, created, seq, key)
        self._ready: dict[str, list[tuple[int, float, int, TaskKey]]] = {}
        # heap of (eligible_at, seq, key)
        self._delayed: list[tuple[float, int, TaskKey]] = []
        # key -> (seq of its live record, item)
        self._live: dict[TaskKey, tuple[int, QueueItem]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def get(self, key: TaskKey) -> QueueItem | None:
        entry = self._live.get(key)
        return entry[1] if entry else None

    def put(self, item: QueueItem, now: float) -> None:
        """Add the item, or replace the queued item with the same key."""
        current = self._live.get(item.key)
        if current is not None and current[1] == item:
            return  # unchanged: keep its place
        seq = next(self._seq)
        self._live[item.key] = (seq, item)
        if item.eligible_at > now:
            heapq.heappush(self._delayed, (item.eligible_at, seq, item.key))
        else:
            self._push_ready(seq, item)

    def discard(self, key: TaskKey) -> QueueItem | None:
        entry = self._live.pop(key, None)
        return entry[1] if entry else None

    def promote(self, now: float) -> None:
        """Move every delayed item whose time has come into its ready heap."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, seq, key = heapq.heappop(delayed)
            entry = self._live.get(key)
            if entry is not None and entry[0] == seq:
                self._push_ready(seq, entry[1])

    def next_eligible_at(self) -> float | None:
        """When the earliest delayed item becomes eligible, if any."""
        delayed = self._delayed
        while delayed:
            eligible_at, seq, key = delayed[0]
            entry = self._live.get(key)
            if entry is not None and entry[0] == seq:
                return eligible_at
            heapq.heappop(delayed)
        return None

    def pop(self, types: Iterable[str], limit: int, now: float) -> list[QueueItem]:
        """Remove and return up to ``limit`` eligible items of the given types,
        best first: higher priority, then earlier creation."""
        self.promote(now)
        heaps = [(t, self._ready[t]) for t in set(types) if t in self._ready]
        taken: list[QueueItem] = []
        while len(taken) < limit:
            best: tuple[int, float, int, TaskKey] | None = None
            best_heap: list[tuple[int, float, int, TaskKey]] | None = None
            for _, heap in heaps:
                self._drop_stale(heap)
                if heap and (best is None or heap[0] < best):
                    best, best_heap = heap[0], heap
            if best is None or best_heap is None:
                break
            heapq.heappop(best_heap)
            _, item = self._live.pop(best[3])
            taken.append(item)
        return taken

    def ready_count(self, type_: str) -> int:
        """Ready records of a type, stale ones included: an upper bound, for metrics."""
        return len(self._ready.get(type_, ()))

    def _push_ready(self, seq: int, item: QueueItem) -> None:
        heap = self._ready.setdefault(item.type, [])
        heapq.heappush(heap, (-item.priority, item.created, seq, item.key))

    def _drop_stale(self, heap: list[tuple[int, float, int, TaskKey]]) -> None:
        live = self._live
        while heap:
            seq, key = heap[0][2], heap[0][3]
            entry = live.get(key)
            if entry is not None and entry[0] == seq:
                return
            heapq.heappop(heap)

    def types(self) -> list[str]:
        """Types that have ready items (or stale records of them)."""
        return [t for t, heap in self._ready.items() if heap]

    def items_of_type(self, type_: str) -> list[QueueItem]:
        """The ready items of one type, in no particular order."""
        live = self._live
        out = []
        for _, _, seq, key in self._ready.get(type_, ()):
            entry = live.get(key)
            if entry is not None and entry[0] == seq:
                out.append(entry[1])
        return out
