"""A token bucket: ``per_second`` tokens a second, at most ``burst`` saved up.

Time is passed in, so the dispatcher runs it on any clock; the operator's
Event recorder uses the same bucket on the operator's injected clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    per_second: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, per_second: float, burst: float, now: float) -> TokenBucket:
        return cls(per_second, burst, float(burst), now)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.per_second)
            self.stamp = now

    def take(self, now: float) -> bool:
        """Spend a token if there is one."""
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def ready_at(self) -> float:
        """When the next whole token is there (``stamp`` if now)."""
        missing = 1.0 - self.tokens
        if missing <= 0:
            return self.stamp
        # Never ``stamp`` itself: a sliver of a token missing at epoch-sized
        # times rounds to no time at all, and a waiter woken then would find
        # the bucket still short and wait for the same instant again.
        return max(self.stamp + missing / self.per_second, math.nextafter(self.stamp, math.inf))
