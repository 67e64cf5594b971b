"""Properties of the replay over generated histories: it never breaks a
policy's limits, reports every Task once, and reproduces its own runs."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from taskmill.dispatch.clock import to_timestamp
from taskmill.models.task import Backoff
from taskmill.replay.history import from_objects
from taskmill.replay.policy import Order, Policy
from taskmill.replay.report import build
from taskmill.replay.simulator import Replay, replay
from tests.replay.histories import histories

orders = st.sampled_from(list(Order))


def intervals(result: Replay) -> list[tuple[float, float]]:
    """Every simulated attempt, from the Tasks' own status.history."""
    out = []
    for task in result.tasks.values():
        for attempt in (task.status.history or []) if task.status else []:
            assert attempt.started_at is not None
            assert attempt.finished_at is not None
            out.append((to_timestamp(attempt.started_at), to_timestamp(attempt.finished_at)))
    return out


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


@settings(max_examples=60, deadline=None)
@given(histories(), orders, st.integers(1, 6))
def test_every_task_of_the_history_appears_once_in_the_report(
    objects: list[dict[str, Any]], order: Order, workers: int
) -> None:
    records = from_objects(objects)
    report = build(records, replay(records, Policy(order=order, workers=workers)))

    names = [row.name for row in report.rows]
    assert sorted(names) == sorted(o["metadata"]["name"] for o in objects)
    assert len(set(names)) == len(names)
    assert report.overall.tasks == len(objects)
    assert sum(g.tasks for g in report.by_type) == len(objects)
    assert sum(g.tasks for g in report.by_queue) == len(objects)


@settings(max_examples=60, deadline=None)
@given(histories(), orders, st.integers(1, 6), st.integers(1, 3))
def test_no_more_tasks_run_than_there_are_slots_or_the_type_allows(
    objects: list[dict[str, Any]], order: Order, workers: int, per_type: int
) -> None:
    records = from_objects(objects)
    result = replay(records, Policy(order=order, workers=workers, concurrency={"a": per_type}))

    assert result.peak_running <= workers
    assert most_at_once(intervals(result)) <= workers
    of_a = [
        span
        for task in result.tasks.values()
        if task.spec.type == "a"
        for span in intervals_of(task)
    ]
    assert most_at_once(of_a) <= per_type


def intervals_of(task: Any) -> list[tuple[float, float]]:
    return [
        (to_timestamp(a.started_at), to_timestamp(a.finished_at))
        for a in (task.status.history or [] if task.status else [])
    ]


@settings(max_examples=60, deadline=None)
@given(histories(), orders, st.sampled_from([0.5, 1.0, 3.0]))
def test_leases_of_a_rate_limited_type_never_come_faster_than_the_rate(
    objects: list[dict[str, Any]], order: Order, rate: float
) -> None:
    records = from_objects(objects)
    result = replay(records, Policy(order=order, workers=4, rates={"b": rate}))

    times = sorted(g.at for g in result.grants if g.type == "b")
    # A bucket of burst 1: any n leases span at least (n - 1) / rate seconds.
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert times[j] - times[i] >= (j - i) / rate - 1e-6


@settings(max_examples=60, deadline=None)
@given(histories(failures=False), st.integers(1, 4))
def test_no_task_is_leased_while_one_of_higher_priority_waits(
    objects: list[dict[str, Any]], workers: int
) -> None:
    records = from_objects(objects)
    result = replay(records, Policy(order=Order.PRIORITY, workers=workers))

    # Starts as the grants have them (a status keeps milliseconds only).
    starts: dict[Any, float] = {}
    for grant in result.grants:
        starts.setdefault(grant.key, grant.at)
    assert set(starts) == {r.key for r in records}
    for grant in result.grants:
        for record in records:
            started = starts[record.key]
            waiting = record.arrival <= grant.at < started
            assert not (waiting and record.priority > grant.priority), (
                f"{grant.key} (priority {grant.priority}) leased at {grant.at} while "
                f"{record.key} (priority {record.priority}) waited"
            )


@settings(max_examples=40, deadline=None)
@given(histories(whole_seconds=True), orders, st.integers(1, 5))
def test_a_replayed_run_replayed_again_under_its_policy_comes_out_the_same(
    objects: list[dict[str, Any]], order: Order, workers: int
) -> None:
    """The simulator's own run is a history that ran exactly under the
    policy: replaying it reproduces every completion time."""
    # Whole seconds and no jitter: every time is exact, so is every tie.
    backoff = Backoff(initial_seconds=1, factor=2, max_seconds=60, jitter=0)
    policy = Policy(order=order, workers=workers, backoff=backoff)
    first = replay(from_objects(objects), policy)
    ran = [task.to_api() for task in first.tasks.values()]

    records = from_objects(ran)
    report = build(records, replay(records, policy))

    for row in report.rows:
        if row.real_completion is None:
            continue
        assert row.simulated_completion is not None
        assert row.simulated_completion == row.real_completion, row
        assert row.simulated_phase == row.real_phase
