from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.models.task import Backoff


def test_default_delays_double_from_one_second_up_to_five_minutes() -> None:
    policy = BackoffPolicy()

    delays = [policy.base_delay(n) for n in range(1, 12)]

    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_fields_resolve_from_the_task_then_the_queue_then_defaults() -> None:
    task = Backoff(initial_seconds=5)
    queue = Backoff(initial_seconds=9, factor=3, jitter=0)

    policy = BackoffPolicy.resolve(task, None, queue)

    assert policy == BackoffPolicy(initial_seconds=5, factor=3, max_seconds=300, jitter=0)


def test_a_huge_attempt_number_is_capped_not_overflowed() -> None:
    assert BackoffPolicy(factor=100).base_delay(1000) == 300


def test_zero_jitter_gives_the_exact_formula() -> None:
    policy = BackoffPolicy(initial_seconds=0.5, factor=3, max_seconds=100, jitter=0)

    assert policy.delay(3, random.Random(1)) == pytest.approx(4.5)


@given(
    initial=st.floats(0, 1000),
    factor=st.floats(1, 10),
    maximum=st.floats(0, 10_000),
    jitter=st.floats(0, 1),
    failed=st.integers(1, 1000),
    seed=st.integers(),
)
def test_delay_follows_the_formula_within_the_jitter(
    initial: float, factor: float, maximum: float, jitter: float, failed: int, seed: int
) -> None:
    policy = BackoffPolicy(initial, factor, maximum, jitter)

    delay = policy.delay(failed, random.Random(seed))

    try:
        expected = min(maximum, initial * factor ** (failed - 1))
    except OverflowError:
        expected = maximum if initial > 0 else 0.0
    assert expected * (1 - jitter) - 1e-9 <= delay <= expected * (1 + jitter) + 1e-9
