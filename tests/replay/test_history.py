"""Task objects into a history: what is taken, and clear errors for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.models.task import AttemptOutcome, Phase
from taskmill.replay.history import HistoryError, from_objects, items_of, peak_concurrency
from tests.replay.histories import T0, task_object


def test_a_task_gives_its_arrival_spec_and_measured_attempts() -> None:
    obj = task_object(
        "t", 2, [(3, 4.5, "Failed"), (6, 7.25, "Succeeded")], queue="q", priority=4, type="x"
    )

    (record,) = from_objects([obj])

    assert record.key == ("ns", "t")
    assert (record.type, record.queue, record.priority) == ("x", "q", 4)
    assert record.arrival == T0 + 2
    assert [(a.duration, a.outcome) for a in record.attempts] == [
        (1.5, AttemptOutcome.FAILED),
        (1.25, AttemptOutcome.SUCCEEDED),
    ]
    assert record.phase is Phase.SUCCEEDED
    assert (record.wait, record.completion) == (1, 5.25)
    assert record.task.status is None  # the replay writes its own


def test_a_list_one_task_or_an_array_are_read() -> None:
    obj = task_object("t", 0)

    assert items_of({"apiVersion": "v1", "kind": "List", "items": [obj]}) == [obj]
    assert items_of(obj) == [obj]
    assert items_of([obj]) == [obj]
    with pytest.raises(HistoryError, match="expected a Task"):
        items_of([1, 2])


def test_records_come_in_arrival_order() -> None:
    records = from_objects([task_object("late", 5), task_object("b", 0), task_object("a", 0)])

    assert [r.key[1] for r in records] == ["a", "b", "late"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "TaskQueue"}, "item 0 \\(t\\) is a TaskQueue, not a Task"),
        ({"spec": {"priority": 1}}, "item 0 \\(t\\): spec.type"),
        ({"metadata": {"name": "t"}}, "no name or creationTimestamp"),
    ],
)
def test_what_is_not_a_task_is_named_with_its_item(change: dict[str, Any], message: str) -> None:
    obj = task_object("t", 0) | change

    with pytest.raises(HistoryError, match=message):
        from_objects([obj])


def test_a_task_twice_is_an_error() -> None:
    with pytest.raises(HistoryError, match="appears twice"):
        from_objects([task_object("t", 0), task_object("t", 1)])


def test_the_peak_counts_attempts_that_ran_at_once() -> None:
    records = from_objects(
        [
            task_object("a", 0, [(0, 2, "Succeeded")]),
            task_object("b", 0, [(1, 3, "Succeeded")]),
            task_object("c", 0, [(2, 4, "Succeeded")]),  # starts as a ends
        ]
    )

    assert peak_concurrency(records) == 2
