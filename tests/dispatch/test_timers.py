"""The timer heap: earliest time per token, due in order, nothing lost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from taskmill.dispatch.timers import Timers


def test_a_token_comes_due_once_at_its_earliest_time() -> None:
    timers: Timers[str] = Timers()
    timers.at("a", 10.0)
    timers.at("a", 5.0)
    timers.at("a", 20.0)  # later than pending: the look at 5 asks again if needed
    assert timers.next_at() == 5.0
    assert timers.due(4.9) == []
    assert timers.due(5.0) == ["a"]
    assert timers.due(100.0) == []
    assert timers.next_at() is None
    assert len(timers) == 0


def test_due_returns_tokens_earliest_first() -> None:
    timers: Timers[str] = Timers()
    for token, when in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        timers.at(token, when)
    assert timers.due(2.5) == ["a", "b"]
    assert timers.pending("c") == 3.0


@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 100)), max_size=60), st.floats(0, 100))
def test_every_token_due_by_now_is_returned_exactly_once(
    asks: list[tuple[int, float]], now: float
) -> None:
    timers: Timers[int] = Timers()
    earliest: dict[int, float] = {}
    for token, when in asks:
        timers.at(token, when)
        earliest[token] = min(earliest.get(token, when), when)
    due = timers.due(now)
    assert sorted(due) == sorted(t for t, when in earliest.items() if when <= now)
    assert len(due) == len(set(due))
    rest = {t: w for t, w in earliest.items() if w > now}
    assert timers.next_at() == (min(rest.values()) if rest else None)
