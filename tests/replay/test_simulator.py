"""The replay on hand-made histories: each policy knob, figure by figure."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.models.task import Backoff, Phase
from taskmill.replay.history import from_objects
from taskmill.replay.policy import Order, Policy
from taskmill.replay.report import Report, build
from taskmill.replay.simulator import replay
from tests.replay.histories import task_object

S, F = "Succeeded", "Failed"


def run(objects: list[dict[str, Any]], **policy: Any) -> Report:
    records = from_objects(objects)
    return build(records, replay(records, Policy(**policy)))


def completions(report: Report) -> dict[str, float | None]:
    return {row.name: row.simulated_completion for row in report.rows}


def waits(report: Report) -> dict[str, float | None]:
    return {row.name: row.simulated_wait for row in report.rows}


def three_in_a_row() -> list[dict[str, Any]]:
    """a, b, c arrive a second apart; each takes 5 s."""
    return [task_object(n, i, [(i, i + 5, S)]) for i, n in enumerate("abc")]


def test_fifo_serves_the_oldest_waiting_task_first() -> None:
    report = run(three_in_a_row(), order=Order.FIFO, workers=1)

    assert completions(report) == {"a": 5, "b": 9, "c": 13}


def test_reverse_chronological_serves_the_newest_waiting_task_first() -> None:
    report = run(three_in_a_row(), order=Order.REVERSE_CHRONOLOGICAL, workers=1)

    assert completions(report) == {"a": 5, "c": 8, "b": 14}
    assert waits(report) == {"a": 0, "c": 3, "b": 9}


def test_priority_order_is_the_operators_highest_priority_first() -> None:
    objects = [
        task_object("a", 0, [(0, 5, S)]),
        task_object("b", 1, [(1, 6, S)]),
        task_object("c", 2, [(2, 7, S)], priority=5),
    ]
    report = run(objects, order=Order.PRIORITY, workers=1)

    assert completions(report) == {"a": 5, "c": 8, "b": 14}
    fifo = run(objects, order=Order.FIFO, workers=1)
    assert completions(fifo) == {"a": 5, "b": 9, "c": 13}


def test_lifo_serves_the_task_that_started_waiting_last_and_a_retry_waits_anew() -> None:
    # x fails at 2 and waits again at once (no backoff); y has waited since 1.
    objects = [
        task_object("x", 0, [(0, 2, F), (2, 4, S)], backoff={"initialSeconds": 0}),
        task_object("y", 1, [(4, 6, S)]),
    ]
    lifo = run(objects, order=Order.LIFO, workers=1)
    newest = run(objects, order=Order.REVERSE_CHRONOLOGICAL, workers=1)

    assert completions(lifo) == {"x": 4, "y": 5}
    assert completions(newest) == {"x": 6, "y": 3}


def test_more_workers_shorten_the_waits() -> None:
    report = run(three_in_a_row(), workers=3)

    assert waits(report) == {"a": 0, "b": 0, "c": 0}
    assert report.simulated_makespan == 7


def test_workers_default_to_the_most_attempts_that_ran_at_once() -> None:
    objects = [task_object(n, 0, [(0, 5, S)]) for n in "abcd"]
    objects.append(task_object("e", 0, [(5, 10, S)]))

    report = run(objects)

    assert report.replay.workers == 4
    assert completions(report) == {"a": 5, "b": 5, "c": 5, "d": 5, "e": 10}


def test_a_task_that_would_wait_past_its_deadline_is_reported_as_differing() -> None:
    objects = [
        task_object("long", 0, [(0, 10, S)]),
        task_object("urgent", 1, [(1, 2, S)], activeDeadlineSeconds=5),
    ]
    report = run(objects, order=Order.FIFO, workers=1)

    urgent = next(r for r in report.rows if r.name == "urgent")
    assert (urgent.real_phase, urgent.simulated_phase) == (Phase.SUCCEEDED, Phase.DEAD)
    assert urgent.simulated_reason == "DeadlineExceeded"
    assert urgent.simulated_completion == 5
    assert [r.name for r in report.differing] == ["urgent"]


def test_max_attempts_cuts_a_task_short() -> None:
    objects = [task_object("flaky", 0, [(0, 1, F), (2, 3, F), (5, 6, S)])]

    assert run(objects).rows[0].simulated_phase is Phase.SUCCEEDED
    row = run(objects, max_attempts=2).rows[0]
    assert (row.simulated_phase, row.simulated_reason) == (Phase.DEAD, "AttemptsExhausted")
    assert row.simulated_attempts == 2
    assert row.differs


def test_backoff_delays_the_next_attempt() -> None:
    objects = [task_object("flaky", 0, [(0, 1, F), (2, 3, S)])]

    report = run(objects, backoff=Backoff(initial_seconds=10, factor=2, max_seconds=60))

    # 1 s attempt, 10 s ± 10 % jitter, 1 s attempt.
    assert 11 <= report.rows[0].simulated_completion <= 13  # type: ignore[operator]


def test_a_rate_limit_spaces_the_leases() -> None:
    objects = [task_object(f"r{i}", 0, [(0, 0.1, S)]) for i in range(5)]

    report = run(objects, workers=5, rates={"work": 1.0})

    assert sorted(w or 0.0 for w in waits(report).values()) == pytest.approx([0, 1, 2, 3, 4])


def test_a_concurrency_limit_holds_a_type_back() -> None:
    objects = [task_object(f"c{i}", 0, [(0, 1, S)]) for i in range(3)]
    objects.append(task_object("other", 0, [(0, 1, S)], type="free"))

    report = run(objects, workers=5, concurrency={"work": 1})

    assert completions(report) == {"c0": 1, "c1": 2, "c2": 3, "other": 1}


def test_a_dependent_task_starts_when_its_dependency_succeeds() -> None:
    objects = [
        task_object("first", 0, [(0, 3, S)]),
        task_object("then", 0, [(3, 4, S)], dependsOn=[{"name": "first"}]),
        # Its dependency is not in the history (deleted by its TTL): met.
        task_object("orphan", 0, [(0, 1, S)], dependsOn=[{"name": "gone"}]),
    ]

    report = run(objects, workers=3)

    assert waits(report) == {"first": 0, "then": 3, "orphan": 0}


def test_an_attempt_that_lost_its_lease_expires_as_it_did() -> None:
    # The worker went silent 10 s in; the lease (30 s) ran out at 40.
    objects = [task_object("lost", 0, [(0, 40, "LeaseExpired"), (41, 42, S)])]

    row = run(objects).rows[0]

    assert row.simulated_phase is Phase.SUCCEEDED
    assert row.simulated_attempts == 2
    # Expired at 40, ~1 s backoff, a 1 s attempt.
    assert 41.5 <= row.simulated_completion <= 42.5  # type: ignore[operator]


def test_a_cancel_is_replayed_at_the_time_it_was_made() -> None:
    objects = [
        task_object("stopped", 0, [(0, 5, "Cancelled")], phase="Cancelled"),
        task_object("then", 0, [(5, 6, S)]),
    ]

    report = run(objects, workers=1, order=Order.FIFO)

    assert completions(report) == {"stopped": 5, "then": 6}
    assert [r.simulated_phase for r in report.rows] == [Phase.CANCELLED, Phase.SUCCEEDED]


def test_a_task_that_never_ran_takes_its_types_median_attempt() -> None:
    objects = [
        task_object("ran1", 0, [(0, 2, S)]),
        task_object("ran2", 0, [(0, 4, S)]),
        task_object("ran3", 0, [(0, 6, S)]),
        task_object("waiting", 0),
    ]

    report = run(objects, workers=4)

    waiting = next(r for r in report.rows if r.name == "waiting")
    assert (waiting.real_completion, waiting.simulated_completion) == (None, 4)
    assert not waiting.differs  # it has no real outcome to differ from
