"""The policy a replay runs under: the order of waiting Tasks, worker slots,
queue limits and retry settings, and how each reaches the real code.

Nothing here decides: an order is a mapping of the ``priority`` and
``created`` the dispatcher sorts by, limits are a TaskQueue spec for the
dispatcher's QueueBook, retry settings go into each Task's spec, where
:func:`~taskmill.dispatch.task_decisions.retry_settings` finds them first.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace

from taskmill.dispatch.dispatcher import Candidate
from taskmill.models.task import Backoff
from taskmill.models.taskqueue import TaskQueueSpec

#: Microseconds: finer than any stored time, so the mapping keeps every order.
_TICKS_PER_SECOND = 1_000_000


class Order(enum.StrEnum):
    #: What the operator does: priority, then first come first served.
    PRIORITY = "priority"
    #: Oldest arrival first, priority ignored.
    FIFO = "fifo"
    #: Last to start waiting first (a retried Task waits anew), priority ignored.
    LIFO = "lifo"
    #: Newest arrival first, priority ignored.
    REVERSE_CHRONOLOGICAL = "reverse-chronological"


def ordered(order: Order, candidate: Candidate, waits_since: float) -> Candidate:
    """The candidate the dispatcher is given under ``order``.

    The dispatcher serves, among the lanes (namespace, queue, type) a worker
    asks for, the lane whose head has the highest ``priority`` (the lane
    served longest ago only breaks ties), and within a lane the highest
    ``priority`` then the earliest ``created``. So a ``priority`` that grows
    strictly with a Task's time orders all waiting Tasks by that time, across
    lanes too: its negation serves oldest first (FIFO), the time itself
    newest first. ``created`` then only breaks ties between equal times.
    ``waits_since`` is when the Task (re)entered the queue: LIFO's time.
    """
    if order is Order.PRIORITY:
        return candidate
    if order is Order.FIFO:
        return replace(candidate, priority=-_ticks(candidate.created))
    if order is Order.REVERSE_CHRONOLOGICAL:
        return replace(candidate, priority=_ticks(candidate.created))
    return replace(candidate, priority=_ticks(max(waits_since, candidate.eligible_at)))


def _ticks(seconds: float) -> int:
    return round(seconds * _TICKS_PER_SECOND)


@dataclass(frozen=True)
class Policy:
    order: Order = Order.PRIORITY
    #: Worker slots over all types; None: as many as the history shows in use.
    workers: int | None = None
    #: Running Tasks at most, per type.
    concurrency: dict[str, int] = field(default_factory=dict)
    #: Leases per second at most, per type (a token bucket of burst 1).
    rates: dict[str, float] = field(default_factory=dict)
    backoff: Backoff | None = None
    max_attempts: int | None = None

    def queue_spec(self, lease_seconds: int = 30) -> TaskQueueSpec:
        """The TaskQueue every queue of the history gets in the replay."""
        spec: dict[str, object] = {"leaseSeconds": lease_seconds}
        if self.concurrency:
            spec["concurrency"] = {
                "perType": [{"type": t, "limit": n} for t, n in sorted(self.concurrency.items())]
            }
        if self.rates:
            spec["rateLimits"] = [
                {"type": t, "perSecond": r, "burst": 1} for t, r in sorted(self.rates.items())
            ]
        return TaskQueueSpec.model_validate(spec)

    def describe(self) -> dict[str, object]:
        return {
            "order": self.order.value,
            "workers": self.workers,
            "concurrency": dict(self.concurrency),
            "rates": dict(self.rates),
            "backoff": self.backoff.to_api() if self.backoff else None,
            "maxAttempts": self.max_attempts,
        }


_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def parse_concurrency(text: str) -> tuple[str, int]:
    """``TYPE=N``."""
    type_, number = _pair(text, "TYPE=N")
    if not number.isdigit():
        raise ValueError(f"{text!r}: N must be a whole number, 0 or more")
    return type_, int(number)


def parse_rate(text: str) -> tuple[str, float]:
    """``TYPE=R/s`` (the ``/s`` may be left out)."""
    type_, value = _pair(text, "TYPE=R/s")
    value = value.removesuffix("/s")
    try:
        rate = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: R must be a number of leases per second") from None
    if not 0 < rate <= 1_000_000:
        raise ValueError(f"{text!r}: R must be more than 0 and at most 1000000")
    return type_, rate


def parse_backoff(text: str) -> Backoff:
    """``initial,factor,max`` in seconds; jitter stays the Task's or the default."""
    parts = text.split(",")
    try:
        initial, factor, maximum = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r}: expected initial,factor,max, e.g. 1,2,300") from None
    if not (0 <= initial <= 86400 and 1 <= factor <= 100 and initial <= maximum <= 604800):
        raise ValueError(
            f"{text!r}: need 0 <= initial <= max, initial <= 86400, max <= 604800,"
            " and 1 <= factor <= 100 (the limits of spec.backoff)"
        )
    return Backoff(initial_seconds=initial, factor=factor, max_seconds=maximum)


def _pair(text: str, shape: str) -> tuple[str, str]:
    type_, sep, value = text.partition("=")
    if not sep or not _TYPE.match(type_):
        raise ValueError(f"{text!r} is not {shape}")
    return type_, value.strip()
