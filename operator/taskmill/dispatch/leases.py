"""The lease book: which Tasks are running, and under which lease.

The one record of it in the operator (``status.lease`` is its persisted
copy, read back only when a restarted operator restores its leases). The
dispatcher counts a queue's running Tasks from it, the lease API checks
heartbeats and outcomes against it, and the Task reconciler decides from it.

A Task is running from the moment the dispatcher hands it out — *claimed*:
its place in the queue's concurrency is taken while its lease is being
recorded — until its attempt ends. Claims are made and released only by the
:class:`~taskmill.dispatch.dispatcher.Dispatcher` (which keeps its lane
counts in step); a lease is attached to a claim once it is granted.

A lease whose expiry passes without a heartbeat is over: heartbeats for it
are refused, and the reconciler records the failed attempt (at-least-once
delivery). Leases of Tasks cancelled or deleted while running are *revoked*:
kept for one lease period, so the worker's next heartbeat tells it to stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from taskmill.dispatch.keys import TaskKey

LaneKey = tuple[str, str, str]
"""``(namespace, queue, type)``."""


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

    def expired(self, now: float) -> bool:
        return self.expires_at <= now


class LeaseBook:
    def __init__(self) -> None:
        #: Running Tasks: key -> lane whose concurrency they count against.
        self._claims: dict[TaskKey, LaneKey] = {}
        self._by_id: dict[str, LeaseInfo] = {}
        self._by_key: dict[TaskKey, str] = {}
        #: Revoked lease id -> until when heartbeats are told to cancel.
        self._revoked: dict[str, float] = {}
        #: Progress reported per running Task and not yet written: (lease id, progress).
        self._progress: dict[TaskKey, tuple[str, dict[str, Any]]] = {}

    def __len__(self) -> int:
        """The number of granted leases."""
        return len(self._by_id)

    # ------------------------------------------------------------ claims (dispatcher only)

    def claim(self, key: TaskKey, lane: LaneKey) -> None:
        self._claims[key] = lane

    def release(self, key: TaskKey) -> tuple[LaneKey | None, LeaseInfo | None]:
        """End a running Task's claim and its lease, if any."""
        lane = self._claims.pop(key, None)
        lease_id = self._by_key.pop(key, None)
        lease = self._by_id.pop(lease_id, None) if lease_id else None
        self._progress.pop(key, None)
        return lane, lease

    def running(self, key: TaskKey) -> bool:
        return key in self._claims

    def claimed(self) -> int:
        """The number of running Tasks (claimed, leased or not yet)."""
        return len(self._claims)

    def running_keys(self) -> Iterator[TaskKey]:
        return iter(self._claims)

    def lane_of(self, key: TaskKey) -> LaneKey | None:
        return self._claims.get(key)

    # ------------------------------------------------------------ leases

    def grant(self, lease: LeaseInfo) -> None:
        """Attach a lease to its Task's claim (granted now, or restored)."""
        if lease.key not in self._claims:
            raise ValueError(f"{lease.key} is not running: a lease needs a claim first")
        old = self._by_key.get(lease.key)
        if old is not None and old != lease.id:
            self._by_id.pop(old, None)
            self._progress.pop(lease.key, None)
        self._by_id[lease.id] = lease
        self._by_key[lease.key] = lease.id

    def get(self, lease_id: str) -> LeaseInfo | None:
        return self._by_id.get(lease_id)

    def for_key(self, key: TaskKey) -> LeaseInfo | None:
        lease_id = self._by_key.get(key)
        return self._by_id.get(lease_id) if lease_id else None

    def heartbeat(self, lease_id: str, now: float) -> LeaseInfo | None:
        """Extend a live lease; ``None`` when it is unknown or already expired."""
        lease = self._by_id.get(lease_id)
        if lease is None or lease.expired(now):
            return None
        expires_at = max(lease.expires_at, min(now + lease.lease_seconds, lease.deadline))
        if expires_at == lease.expires_at:
            return lease
        extended = replace(lease, expires_at=expires_at)
        self._by_id[lease_id] = extended
        return extended

    # ------------------------------------------------------------ revoked leases

    def revoke(self, lease: LeaseInfo, now: float) -> None:
        """Its Task was cancelled or deleted: heartbeats say stop for one lease period."""
        self._revoked[lease.id] = now + lease.lease_seconds

    def revoked(self, lease_id: str) -> bool:
        return lease_id in self._revoked

    def forget_revoked(self, lease_id: str) -> bool:
        """Forget a revoked lease (its worker reported); True if it was revoked."""
        return self._revoked.pop(lease_id, None) is not None

    def drop_revoked_before(self, now: float) -> None:
        for lease_id in [i for i, until in self._revoked.items() if until < now]:
            del self._revoked[lease_id]

    # ------------------------------------------------------------ progress

    def report_progress(self, lease: LeaseInfo, progress: dict[str, Any]) -> None:
        self._progress[lease.key] = (lease.id, progress)

    def unwritten_progress(self, key: TaskKey) -> dict[str, Any] | None:
        """Progress reported under the Task's current lease and not yet written."""
        entry = self._progress.get(key)
        lease_id = self._by_key.get(key)
        if entry is None or entry[0] != lease_id:
            return None
        return entry[1]

    def progress_written(self, key: TaskKey, progress: dict[str, Any]) -> None:
        entry = self._progress.get(key)
        if entry is not None and entry[1] is progress:
            del self._progress[key]

    def with_progress(self) -> list[TaskKey]:
        return list(self._progress)
