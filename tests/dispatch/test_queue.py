from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from taskmill.dispatch.queue import DispatchQueue, QueueItem


def item(
    name: str, priority: int = 0, created: float = 0.0, type_: str = "t", at: float = 0.0
) -> QueueItem:
    return QueueItem(
        key=("ns", name), type=type_, priority=priority, created=created, eligible_at=at
    )


def names(items: list[QueueItem]) -> list[str]:
    return [i.key[1] for i in items]


def test_higher_priority_first_then_oldest_first() -> None:
    queue = DispatchQueue()
    for it in [
        item("low-old", 0, 1),
        item("high-new", 5, 9),
        item("low-new", 0, 2),
        item("high-old", 5, 3),
    ]:
        queue.put(it, now=100)

    assert names(queue.pop(["t"], 10, now=100)) == ["high-old", "high-new", "low-old", "low-new"]
    assert len(queue) == 0


def test_only_the_asked_types_are_taken_best_first_across_them() -> None:
    queue = DispatchQueue()
    queue.put(item("a", 1, type_="email"), now=0)
    queue.put(item("b", 3, type_="sms"), now=0)
    queue.put(item("c", 2, type_="pdf"), now=0)

    assert names(queue.pop(["email", "sms"], 5, now=0)) == ["b", "a"]
    assert names(queue.pop(["pdf"], 5, now=0)) == ["c"]


def test_a_delayed_item_waits_for_its_time() -> None:
    queue = DispatchQueue()
    queue.put(item("later", at=50), now=0)

    assert queue.pop(["t"], 1, now=49.9) == []
    assert queue.next_eligible_at() == 50
    assert names(queue.pop(["t"], 1, now=50)) == ["later"]
    assert queue.next_eligible_at() is None


def test_a_replaced_item_is_taken_once_with_its_new_values() -> None:
    queue = DispatchQueue()
    queue.put(item("x", priority=0), now=0)
    queue.put(item("y", priority=1), now=0)
    queue.put(item("x", priority=9), now=0)

    taken = queue.pop(["t"], 10, now=0)

    assert names(taken) == ["x", "y"]
    assert taken[0].priority == 9


def test_a_discarded_item_is_never_taken() -> None:
    queue = DispatchQueue()
    queue.put(item("x"), now=0)
    queue.put(item("later", at=5), now=0)
    queue.discard(("ns", "x"))
    queue.discard(("ns", "later"))

    assert queue.pop(["t"], 10, now=10) == []
    assert queue.next_eligible_at() is None


def test_putting_an_unchanged_item_keeps_its_place() -> None:
    queue = DispatchQueue()
    first = item("first", created=1)
    queue.put(first, now=0)
    queue.put(item("second", created=1), now=0)
    queue.put(first, now=0)

    assert names(queue.pop(["t"], 2, now=0)) == ["first", "second"]


@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.integers(0, 20), st.sampled_from("abc"), st.booleans()),
        max_size=60,
    ),
    st.integers(1, 7),
)
def test_pops_come_out_in_priority_then_creation_order(
    entries: list[tuple[int, int, str, bool]], batch: int
) -> None:
    queue = DispatchQueue()
    expected = {}
    for index, (priority, created, type_, discard) in enumerate(entries):
        it = item(f"t{index}", priority, created, type_)
        queue.put(it, now=0)
        expected[it.key] = it
        if discard:
            queue.discard(it.key)
            del expected[it.key]

    taken: list[QueueItem] = []
    while batch_items := queue.pop("abc", batch, now=0):
        taken.extend(batch_items)

    assert sorted(i.key for i in taken) == sorted(expected)
    order = [(-i.priority, i.created) for i in taken]
    assert order == sorted(order)
