"""``dependsOn``: whether a dependency holds, can still hold, or never will,
and dependency cycles.

A dependency names a Task in the same namespace and the condition it must
end in: ``Succeeded`` (the default), ``Failed`` (ended Dead or Cancelled) or
``Finished`` (any end). A Task whose dependency can no longer hold is Dead
(``DependencyFailed``); one that depends on itself through others is Dead
(``DependencyCycle``), with the cycle named.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

from taskmill.models.task import DependencyCondition, Phase


class DependencyState(enum.Enum):
    SATISFIED = "satisfied"
    WAITING = "waiting"
    MISSING = "missing"
    IMPOSSIBLE = "impossible"


_FAILED = frozenset({Phase.DEAD, Phase.CANCELLED})


def evaluate(condition: DependencyCondition, phase: Phase | None) -> DependencyState:
    """The state of one dependency, given the phase of the Task it names
    (``None``: no such Task)."""
    if phase is None:
        return DependencyState.MISSING
    if not phase.is_finished:
        return DependencyState.WAITING
    holds = {
        DependencyCondition.SUCCEEDED: phase == Phase.SUCCEEDED,
        DependencyCondition.FAILED: phase in _FAILED,
        DependencyCondition.FINISHED: True,
    }[condition]
    return DependencyState.SATISFIED if holds else DependencyState.IMPOSSIBLE


def find_cycle(
    start: str, edges: Callable[[str], Iterable[str]], *, limit: int = 10_000
) -> list[str] | None:
    """A path ``start → ... → start`` through ``edges``, if there is one.

    Iterative depth-first search over at most ``limit`` nodes; the path comes
    back in dependency order, starting and ending with ``start``.
    """
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack and len(seen) < limit:
        node, trail = stack.pop()
        for successor in sorted(edges(node), reverse=True):
            if successor == start:
                return [*trail, start]
            if successor not in seen:
                seen.add(successor)
                stack.append((successor, [*trail, successor]))
    return None
