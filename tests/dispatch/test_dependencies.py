from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmill.dispatch.dependencies import DependencyState, evaluate, find_cycle
from taskmill.models.task import DependencyCondition, Phase

S, F, E = DependencyCondition.SUCCEEDED, DependencyCondition.FAILED, DependencyCondition.FINISHED
OK, WAIT, GONE, NEVER = (
    DependencyState.SATISFIED,
    DependencyState.WAITING,
    DependencyState.MISSING,
    DependencyState.IMPOSSIBLE,
)


@pytest.mark.parametrize(
    ("condition", "phase", "expected"),
    [
        (S, Phase.SUCCEEDED, OK),
        (S, Phase.DEAD, NEVER),
        (S, Phase.CANCELLED, NEVER),
        (S, Phase.RUNNING, WAIT),
        (S, Phase.WAITING, WAIT),
        (S, None, GONE),
        (F, Phase.DEAD, OK),
        (F, Phase.CANCELLED, OK),
        (F, Phase.SUCCEEDED, NEVER),
        (F, Phase.PENDING, WAIT),
        (E, Phase.SUCCEEDED, OK),
        (E, Phase.DEAD, OK),
        (E, Phase.RUNNING, WAIT),
    ],
)
def test_each_condition_against_each_phase(
    condition: DependencyCondition, phase: Phase | None, expected: DependencyState
) -> None:
    assert evaluate(condition, phase) == expected


def test_a_cycle_is_named_in_dependency_order() -> None:
    graph = {"a": ["b"], "b": ["c", "x"], "c": ["a"], "x": []}

    assert find_cycle("a", lambda n: graph.get(n, [])) == ["a", "b", "c", "a"]


def test_a_dag_has_no_cycle() -> None:
    graph = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}

    assert find_cycle("a", lambda n: graph.get(n, [])) is None


def test_depending_on_oneself_is_a_cycle() -> None:
    assert find_cycle("a", lambda n: ["a"]) == ["a", "a"]


@given(st.dictionaries(st.sampled_from("abcdef"), st.lists(st.sampled_from("abcdef"), max_size=3)))
def test_a_reported_cycle_is_a_real_path_back(graph: dict[str, list[str]]) -> None:
    cycle = find_cycle("a", lambda n: graph.get(n, []))

    if cycle is not None:
        assert cycle[0] == cycle[-1] == "a"
        for here, there in itertools.pairwise(cycle):
            assert there in graph.get(here, [])
