"""The write gate: one probe round at a time, waits that grow, one opening."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.outage import Outage, OutageEnded

POLICY = BackoffPolicy(initial_seconds=0.5, factor=2, max_seconds=10, jitter=0)


def test_a_failure_closes_the_gate_until_the_backoff_has_passed() -> None:
    outage = Outage(POLICY)
    assert outage.open(100.0)
    assert outage.failed(100.0) is True
    assert not outage.open(100.4)
    assert outage.open(100.5)


def test_failures_in_the_same_round_count_once() -> None:
    outage = Outage(POLICY)
    outage.failed(100.0)
    assert outage.failed(100.1) is False
    assert outage.failed(100.2) is False
    assert (outage.failures, outage.retry_at) == (1, 100.5)


def test_each_failed_probe_doubles_the_wait_up_to_the_cap() -> None:
    outage = Outage(POLICY)
    now, waits = 0.0, []
    for _ in range(8):
        outage.failed(now)
        waits.append(outage.retry_at - now)
        now = outage.retry_at
    assert waits == [0.5, 1, 2, 4, 8, 10, 10, 10]


def test_the_first_write_that_lands_ends_the_outage_once() -> None:
    outage = Outage(POLICY)
    assert outage.succeeded(5.0) is None
    outage.failed(10.0)
    outage.failed(10.5)
    assert outage.succeeded(12.0) == OutageEnded(failures=2, seconds=2.0)
    assert outage.open(12.0)
    assert not outage.ongoing
    assert outage.succeeded(12.1) is None


@given(st.lists(st.tuples(st.floats(0, 30), st.booleans()), max_size=60))
def test_probes_are_never_closer_than_the_first_wait(steps: list[tuple[float, bool]]) -> None:
    """However writes interleave, a failing server sees at most one probe
    round per half second, and the gate never stays shut past the cap."""
    outage = Outage(POLICY)
    now = 0.0
    last_round: float | None = None
    for gap, ok in steps:
        now += gap
        if not outage.open(now):
            assert outage.retry_at - now <= POLICY.max_seconds
            continue
        if ok:
            outage.succeeded(now)
            last_round = None
        else:
            if outage.failed(now) is False and last_round is not None:
                assert now - last_round >= POLICY.initial_seconds
            last_round = now
