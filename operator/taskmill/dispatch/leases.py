"""The lease book: which worker holds which Task, and until when.

A lease is granted when the operator has recorded it in the Task's status;
heartbeats push its expiry out by ``lease_seconds``; a lease whose expiry
passes without a heartbeat is handed back by ``expire`` so the Task can be
retried (at-least-once delivery). Expiry uses a heap with lazy deletion, so
checking costs nothing while no lease is due.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, replace

from taskmill.dispatch.keys import TaskKey


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    id: str
    key: TaskKey
    uid: str
    worker: str
    attempt: int
    started_at: float
    expires_at: float
    lease_seconds: float
    #: Heartbeats never extend the lease past this (the attempt's
    #: ``timeoutSeconds`` plus one lease period): a worker that keeps a hung
    #: handler's heartbeat going still loses the lease.
    deadline: float = float("inf")
    #: The authenticated identity it was granted to (see
    #: :class:`taskmill.models.lease.Holder`); None when the lease API does
    #: not authenticate. Only the same ``(worker, holder)`` may heartbeat or
    #: complete it.
    holder: str | None = None


class LeaseBook:
    def __init__(self) -> None:
        self._by_id: dict[str, LeaseInfo] = {}
        self._by_key: dict[TaskKey, str] = {}
        self._expiry: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, lease: LeaseInfo) -> None:
        """Record a lease (granted now, or found in a Task's status on restart)."""
        old = self._by_key.get(lease.key)
        if old is not None and old != lease.id:
            self._by_id.pop(old, None)
        self._by_id[lease.id] = lease
        self._by_key[lease.key] = lease.id
        heapq.heappush(self._expiry, (lease.expires_at, next(self._seq), lease.id))

    def get(self, lease_id: str) -> LeaseInfo | None:
        return self._by_id.get(lease_id)

    def for_key(self, key: TaskKey) -> LeaseInfo | None:
        lease_id = self._by_key.get(key)
        return self._by_id.get(lease_id) if lease_id else None

    def heartbeat(self, lease_id: str, now: float) -> LeaseInfo | None:
        """Extend a live lease; ``None`` when the id is not (or no longer) current."""
        lease = self._by_id.get(lease_id)
        if lease is None:
            return None
        extended = replace(
            lease,
            expires_at=max(lease.expires_at, min(now + lease.lease_seconds, lease.deadline)),
        )
        self._by_id[lease_id] = extended
        if extended.expires_at != lease.expires_at:
            heapq.heappush(self._expiry, (extended.expires_at, next(self._seq), lease_id))
        return extended

    def remove(self, lease_id: str) -> LeaseInfo | None:
        lease = self._by_id.pop(lease_id, None)
        if lease is not None and self._by_key.get(lease.key) == lease_id:
            del self._by_key[lease.key]
        return lease

    def remove_key(self, key: TaskKey) -> LeaseInfo | None:
        lease_id = self._by_key.get(key)
        return self.remove(lease_id) if lease_id else None

    def next_expiry(self) -> float | None:
        heap = self._expiry
        while heap:
            expires_at, _, lease_id = heap[0]
            lease = self._by_id.get(lease_id)
            if lease is not None and lease.expires_at == expires_at:
                return expires_at
            heapq.heappop(heap)
        return None

    def expire(self, now: float) -> list[LeaseInfo]:
        """Remove and return every lease whose expiry has passed."""
        expired: list[LeaseInfo] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, _, lease_id = heapq.heappop(heap)
            lease = self._by_id.get(lease_id)
            if lease is not None and lease.expires_at == expires_at:
                self.remove(lease_id)
                expired.append(lease)
        return expired
