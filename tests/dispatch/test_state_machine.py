"""The Task state machine, simulated on a fake clock with the real dispatch
core: dispatcher, lease book, backoff and status transitions.

Workers take Tasks, and each attempt succeeds, fails (retryably or not), or
its worker vanishes and the lease expires. Whatever happens: every Task ends
Succeeded or Dead, never holds two leases, never makes more attempts than
``maxAttempts``, and never starts a retry before its backoff allows.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from taskmill.dispatch import transitions
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import FakeClock, to_timestamp
from taskmill.dispatch.dispatcher import Candidate, Dispatcher
from taskmill.dispatch.leases import LeaseBook, LeaseInfo
from taskmill.models.lease import ReportedError
from taskmill.models.task import AttemptOutcome, Phase, TaskStatus

OUTCOMES = ["succeed", "fail", "fail_permanently", "vanish"]
LEASE_SECONDS = 10.0


def merge(status: TaskStatus, patch: dict[str, object]) -> TaskStatus:
    data = status.to_api()
    for key, value in patch.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return TaskStatus.model_validate(data)


@settings(max_examples=150, deadline=None)
@given(
    tasks=st.lists(st.integers(1, 4), min_size=1, max_size=12),
    outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=200),
    seed=st.integers(0, 2**32),
)
def test_every_task_ends_and_no_invariant_breaks(
    tasks: list[int], outcomes: list[str], seed: int
) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    dispatcher = Dispatcher()
    leases = LeaseBook()
    policy = BackoffPolicy(initial_seconds=1, factor=2, max_seconds=8, jitter=0.1)
    statuses: dict[tuple[str, str], TaskStatus] = {}
    max_attempts: dict[tuple[str, str], int] = {}
    failed_at: dict[tuple[str, str], tuple[float, int]] = {}
    for i, attempts in enumerate(tasks):
        key = ("ns", f"t{i}")
        statuses[key] = TaskStatus()
        max_attempts[key] = attempts
        dispatcher.put(Candidate(key, "q", "t", created=float(i)), clock.now())
    outcome_of = iter(outcomes * 100)

    def requeue(key: tuple[str, str]) -> None:
        status = statuses[key]
        if status.phase.is_finished:
            return
        eligible = to_timestamp(status.next_attempt_at) if status.next_attempt_at else 0.0
        dispatcher.put(Candidate(key, "q", "t", eligible_at=eligible), clock.now())

    for _ in range(2000):
        if all(s.phase.is_finished for s in statuses.values()):
            break
        now = clock.now()
        for lease in leases.expire(now):
            dispatcher.finished(lease.key)
            error = ReportedError(type="LeaseExpired", message="gone")
            retry = transitions.RetrySettings(max_attempts[lease.key], policy)
            patch = transitions.failed(
                statuses[lease.key], lease, error, now, retry, rng, AttemptOutcome.LEASE_EXPIRED
            )
            statuses[lease.key] = merge(statuses[lease.key], patch)
            failed_at[lease.key] = (now, lease.attempt)
            requeue(lease.key)
        for candidate in dispatcher.take(["t"], 3, now):
            key = candidate.key
            assert leases.for_key(key) is None, "a second live lease"
            status = statuses[key]
            if key in failed_at:  # a retry: not before its backoff
                when, attempt = failed_at[key]
                assert now >= when + policy.base_delay(attempt) * (1 - policy.jitter) - 1e-6
            lease = LeaseInfo(
                f"{key[1]}-{status.attempts + 1}",
                key,
                "u",
                "w",
                status.attempts + 1,
                now,
                now + LEASE_SECONDS,
                LEASE_SECONDS,
            )
            assert lease.attempt <= max_attempts[key]
            leases.add(lease)
            statuses[key] = merge(status, transitions.leased(status, lease))
            outcome = next(outcome_of)
            if outcome == "vanish":
                continue  # no heartbeat, no completion: the lease will expire
            leases.remove(lease.id)
            dispatcher.finished(key)
            retry = transitions.RetrySettings(max_attempts[key], policy)
            if outcome == "succeed":
                patch = transitions.succeeded(statuses[key], lease, {"ok": True}, now)
            else:
                error = ReportedError(message="x", retryable=outcome == "fail")
                patch = transitions.failed(statuses[key], lease, error, now, retry, rng)
                failed_at[key] = (now, lease.attempt)
            statuses[key] = merge(statuses[key], patch)
            requeue(key)
        wake = [t for t in (dispatcher.next_wakeup(), leases.next_expiry()) if t is not None]
        clock.set(max(now + 0.01, min(wake)) if wake else now + 1)

    for key, status in statuses.items():
        assert status.phase in (Phase.SUCCEEDED, Phase.DEAD), (key, status.phase)
        assert status.attempts <= max_attempts[key]
        assert status.lease is None
        if status.phase == Phase.DEAD and status.reason == "AttemptsExhausted":
            assert status.attempts == max_attempts[key]
    assert len(leases) == 0
    assert dispatcher.running() == 0
