"""The token bucket's wake-up time."""

from __future__ import annotations

from taskmill.dispatch.tokenbucket import TokenBucket


def test_a_bucket_a_sliver_short_is_ready_strictly_later() -> None:
    # At epoch-sized times a tiny shortfall rounds to no time: the wake-up
    # must still move forward, or a waiter would wake at the same instant for ever.
    now = 1_800_000_011.867333
    bucket = TokenBucket(per_second=3.0, burst=1, tokens=1 - 1e-12, stamp=now)

    ready = bucket.ready_at()

    assert ready > now
    bucket.refill(ready)
    assert bucket.tokens > 1 - 1e-12
