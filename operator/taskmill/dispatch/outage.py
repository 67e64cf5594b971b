"""Whether the API server takes writes, and when to ask it again if not.

Every state change of a Task is a write, so while the API server is away
nothing can move: leasing a Task, ending an attempt and expiring a lease all
fail. Trying again at once turns an outage into a busy loop (each failed
lease write re-queues the Task, the next poll takes it again) that floods
the log and hammers the server as it comes back. Instead the first failure
closes the gate: work that needs a write waits until ``retry_at``, then one
round of writes probes the server; each failed probe doubles the wait (up to
``backoff.max_seconds``), and the first write that lands opens the gate for
everything. Time is the caller's clock, so this is decided without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskmill.dispatch.backoff import BackoffPolicy

#: 0.5 s, 1 s, 2 s, ... 10 s between probes of an API server that is away.
PROBE_BACKOFF = BackoffPolicy(initial_seconds=0.5, factor=2, max_seconds=10, jitter=0)


@dataclass(frozen=True)
class OutageEnded:
    failures: int
    seconds: float


class Outage:
    def __init__(self, backoff: BackoffPolicy = PROBE_BACKOFF) -> None:
        self.backoff = backoff
        #: Failed probes since the last write that landed (0: no outage).
        self.failures = 0
        #: When the first of them failed.
        self.since = 0.0
        #: Writes wait until then.
        self.retry_at = 0.0

    @property
    def ongoing(self) -> bool:
        return self.failures > 0

    def open(self, now: float) -> bool:
        """Whether a write may be tried now."""
        return now >= self.retry_at

    def failed(self, now: float) -> bool:
        """A write failed for a reason that may pass (unreachable, 5xx, 429).

        Returns True when this starts an outage. Failures of writes sent in
        the same probe round count once, so many writes in flight at the
        moment the server goes away do not stretch the wait."""
        if not self.open(now):
            return False
        started = self.failures == 0
        if started:
            self.since = now
        self.failures += 1
        self.retry_at = now + self.backoff.base_delay(self.failures)
        return started

    def succeeded(self, now: float) -> OutageEnded | None:
        """A write landed: the outage, if there was one, is over."""
        if self.failures == 0:
            return None
        ended = OutageEnded(self.failures, now - self.since)
        self.failures = 0
        self.retry_at = 0.0
        return ended
