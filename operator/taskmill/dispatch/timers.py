"""One timer heap on the injected clock: "look at this again at time t".

A decision that may change with time alone (a ``runAt`` or a deadline
passing, a TTL running out, a lease's expiry, a retry after an outage) asks
for its object to be looked at again then, as controller-runtime's
``RequeueAfter`` does: the timer carries no action, only the token of what to
look at, and the reconciler decides afresh when it fires. So a timer that is
no longer needed costs one idle look, and nothing is ever cancelled.

Each token has at most one pending time, the earliest asked for: a later
time is asked for again by the look the earlier one causes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class Timers(Generic[T]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._at: dict[T, float] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._at)

    def at(self, token: T, when: float) -> None:
        """Have ``token`` come due at ``when`` (or earlier, if already asked)."""
        current = self._at.get(token)
        if current is not None and current <= when:
            return
        self._at[token] = when
        heapq.heappush(self._heap, (when, next(self._seq), token))

    def pending(self, token: T) -> float | None:
        return self._at.get(token)

    def due(self, now: float) -> list[T]:
        """Remove and return the tokens whose time has come, earliest first."""
        out: list[T] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, token = heapq.heappop(heap)
            if self._at.get(token) == when:
                del self._at[token]
                out.append(token)
        return out

    def next_at(self) -> float | None:
        """The earliest pending time, if any."""
        heap = self._heap
        while heap:
            when, _, token = heap[0]
            if self._at.get(token) == when:
                return when
            heapq.heappop(heap)  # superseded by an earlier time, already due
        return None
