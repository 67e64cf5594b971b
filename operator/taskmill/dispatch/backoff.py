"""Retry delays: exponential, capped, with jitter.

After attempt ``n`` (1-based) fails, the next attempt waits::

    base(n) = min(maxSeconds, initialSeconds * factor ** (n - 1))
    delay   = base(n) * uniform(1 - jitter, 1 + jitter)

With the defaults (1 s, x2, 300 s, 10 %): 1 s, 2 s, 4 s, 8 s, ... 256 s, then
300 s, each ±10 %. Settings resolve field by field: the Task's ``backoff``,
then its TaskQueue's ``retryPolicy.backoff``, then these defaults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from taskmill.models.task import Backoff

DEFAULT_INITIAL_SECONDS = 1.0
DEFAULT_FACTOR = 2.0
DEFAULT_MAX_SECONDS = 300.0
DEFAULT_JITTER = 0.1


@dataclass(frozen=True)
class BackoffPolicy:
    initial_seconds: float = DEFAULT_INITIAL_SECONDS
    factor: float = DEFAULT_FACTOR
    max_seconds: float = DEFAULT_MAX_SECONDS
    jitter: float = DEFAULT_JITTER

    @classmethod
    def resolve(cls, *layers: Backoff | None) -> BackoffPolicy:
        """The first layer that sets a field wins, field by field."""
        values: dict[str, float] = {}
        for layer in layers:
            if layer is None:
                continue
            for name in ("initial_seconds", "factor", "max_seconds", "jitter"):
                value = getattr(layer, name)
                if value is not None and name not in values:
                    values[name] = float(value)
        return cls(**values)

    def base_delay(self, failed_attempts: int) -> float:
        """The delay before the next attempt, before jitter."""
        if failed_attempts < 1:
            raise ValueError("failed_attempts starts at 1")
        # Cap the exponent first: factor ** 10_000 overflows a float.
        exponent = failed_attempts - 1
        if self.factor > 1 and self.initial_seconds > 0:
            delay = self.initial_seconds
            for _ in range(exponent):
                delay *= self.factor
                if delay >= self.max_seconds:
                    return self.max_seconds
            return min(self.max_seconds, delay)
        return min(self.max_seconds, self.initial_seconds)

    def delay(self, failed_attempts: int, rng: random.Random) -> float:
        base = self.base_delay(failed_attempts)
        if self.jitter <= 0 or base <= 0:
            return base
        return base * rng.uniform(1 - self.jitter, 1 + self.jitter)
