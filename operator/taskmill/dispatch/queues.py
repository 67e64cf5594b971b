"""Queue settings: each TaskQueue's spec, and the limits the dispatcher applies.

The one place they are kept. The operator puts what the TaskQueue watch
says; the dispatcher reads the limits of a lane's queue on every decision;
the Task decisions read a queue's retry policy and lease period. A
namespace's ``default`` queue exists without a TaskQueue object, with the
operator's lease period, until one named ``default`` is created.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskmill.models.task import DEFAULT_QUEUE
from taskmill.models.taskqueue import TaskQueueSpec

QueueKey = tuple[str, str]
"""``(namespace, queue)``."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a TaskQueue allows. ``None`` means unlimited."""

    paused: bool = False
    total: int | None = None
    per_type: tuple[tuple[str, int], ...] = ()
    #: ``(type, perSecond, burst)`` token buckets.
    rates: tuple[tuple[str, float, int], ...] = ()

    def type_limit(self, type_: str) -> int | None:
        return next((limit for t, limit in self.per_type if t == type_), None)

    def rate(self, type_: str) -> tuple[float, int] | None:
        return next(
            ((per_second, burst) for t, per_second, burst in self.rates if t == type_), None
        )

    @classmethod
    def of(cls, spec: TaskQueueSpec) -> Limits:
        """A TaskQueue's spec as limits."""
        concurrency = spec.concurrency
        return cls(
            paused=spec.paused,
            total=concurrency.total if concurrency else None,
            per_type=tuple((t.type, t.limit) for t in (concurrency.per_type or []))
            if concurrency
            else (),
            rates=tuple((r.type, r.per_second, r.burst) for r in spec.rate_limits or ()),
        )


UNLIMITED = Limits()


class QueueBook:
    def __init__(self, default_lease_seconds: float = 30.0) -> None:
        self._specs: dict[QueueKey, TaskQueueSpec] = {}
        self._limits: dict[QueueKey, Limits] = {}
        #: The implicit ``default`` queue: one object, not one per Task that asks.
        self.implicit_default = TaskQueueSpec(lease_seconds=int(default_lease_seconds))

    def put(self, queue: QueueKey, spec: TaskQueueSpec) -> bool:
        """A TaskQueue as its watch says; True when its limits changed."""
        self._specs[queue] = spec
        return self.set_limits(queue, Limits.of(spec))

    def remove(self, queue: QueueKey) -> bool:
        """A TaskQueue deleted; True when its limits changed."""
        self._specs.pop(queue, None)
        return self._limits.pop(queue, UNLIMITED) != UNLIMITED

    def set_limits(self, queue: QueueKey, limits: Limits) -> bool:
        """Limits alone, with no TaskQueue behind them (benchmarks, tests)."""
        old = self._limits.get(queue, UNLIMITED)
        self._limits[queue] = limits
        return old != limits

    def limits(self, queue: QueueKey) -> Limits:
        return self._limits.get(queue, UNLIMITED)

    def spec(self, namespace: str, name: str) -> TaskQueueSpec | None:
        """The queue's spec; ``default`` exists implicitly until one is created."""
        spec = self._specs.get((namespace, name))
        if spec is None and name == DEFAULT_QUEUE:
            return self.implicit_default
        return spec

    def __contains__(self, queue: object) -> bool:
        return queue in self._specs
