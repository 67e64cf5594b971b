"""Policy options as written on the command line, and orders as priorities."""

from __future__ import annotations

import re

import pytest

from taskmill.dispatch.dispatcher import Candidate
from taskmill.replay.policy import (
    Order,
    Policy,
    ordered,
    parse_backoff,
    parse_concurrency,
    parse_rate,
)


def test_options_parse() -> None:
    assert parse_concurrency("resize=4") == ("resize", 4)
    assert parse_rate("email=2.5/s") == ("email", 2.5)
    assert parse_rate("email=3") == ("email", 3.0)
    backoff = parse_backoff("1,2,300")
    assert (backoff.initial_seconds, backoff.factor, backoff.max_seconds) == (1, 2, 300)


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_concurrency, "resize"),
        (parse_concurrency, "resize=-1"),
        (parse_concurrency, "=4"),
        (parse_rate, "email=0/s"),
        (parse_rate, "email=fast"),
        (parse_rate, "email=nan"),
        (parse_backoff, "1,2"),
        (parse_backoff, "10,2,5"),
        (parse_backoff, "1,0.5,5"),
    ],
)
def test_bad_options_say_what_is_wrong(parse: object, text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse(text)  # type: ignore[operator]


def test_limits_become_one_taskqueue_spec() -> None:
    spec = Policy(concurrency={"a": 2}, rates={"b": 0.5}).queue_spec(lease_seconds=20)

    assert spec.lease_seconds == 20
    assert spec.concurrency is not None
    assert spec.concurrency.per_type is not None
    assert [(t.type, t.limit) for t in spec.concurrency.per_type] == [("a", 2)]
    assert [(r.type, r.per_second, r.burst) for r in spec.rate_limits or []] == [("b", 0.5, 1)]


def test_orders_are_priorities_that_follow_time() -> None:
    old = Candidate(key=("ns", "old"), queue="q", type="t", priority=9, created=100.0)
    new = Candidate(key=("ns", "new"), queue="q", type="t", priority=0, created=200.0)

    assert ordered(Order.PRIORITY, old, 0) is old
    assert ordered(Order.FIFO, old, 0).priority > ordered(Order.FIFO, new, 0).priority
    newest = Order.REVERSE_CHRONOLOGICAL
    assert ordered(newest, new, 0).priority > ordered(newest, old, 0).priority
    # LIFO: the old Task waiting again since 300 comes before the new one (since 200).
    assert ordered(Order.LIFO, old, 300).priority > ordered(Order.LIFO, new, 200).priority
