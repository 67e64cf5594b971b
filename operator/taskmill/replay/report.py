"""Real beside simulated: per Task and in aggregate.

Wait is arrival to first start, completion arrival to final end. Figures are
p50, p95, p99 (nearest rank) and max, overall, per queue and per type, with
the makespan (first arrival to last end). A Task's outcome differs when its
simulated phase (or, Dead both times, its reason) is not what really
happened to it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taskmill.models.task import Phase
from taskmill.replay.history import Record
from taskmill.replay.simulator import Replay

#: A replay under the policy that really ran reproduces each Task's
#: completion time within this many seconds plus this fraction of it: the
#: seconds cover creation times stored in whole seconds, the fraction the
#: operator's and workers' own latency between one attempt and the next.
TOLERANCE_SECONDS = 1.0
TOLERANCE_FRACTION = 0.15

PERCENTILES = (50, 95, 99)


def within_tolerance(real: float, simulated: float) -> bool:
    return abs(simulated - real) <= TOLERANCE_SECONDS + TOLERANCE_FRACTION * abs(real)


@dataclass(frozen=True, slots=True)
class Figures:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
        }


def figures(values: Iterable[float | None]) -> Figures:
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return Figures(0, None, None, None, None)
    n = len(ordered)

    def rank(p: int) -> float:
        return ordered[max(0, math.ceil(p / 100 * n) - 1)]

    return Figures(n, rank(50), rank(95), rank(99), ordered[-1])


@dataclass(frozen=True, slots=True)
class Row:
    namespace: str
    name: str
    type: str
    queue: str
    priority: int
    arrival: float
    real_wait: float | None
    simulated_wait: float | None
    real_completion: float | None
    simulated_completion: float | None
    real_phase: Phase
    simulated_phase: Phase
    real_reason: str | None
    simulated_reason: str | None
    real_attempts: int
    simulated_attempts: int

    @property
    def differs(self) -> bool:
        """The outcome would have been another (for Tasks that really ended)."""
        if not self.real_phase.is_finished:
            return False
        if self.real_phase != self.simulated_phase:
            return True
        return self.real_phase is Phase.DEAD and self.real_reason != self.simulated_reason

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "type": self.type,
            "queue": self.queue,
            "priority": self.priority,
            "arrival": self.arrival,
            "real": {
                "wait": self.real_wait,
                "completion": self.real_completion,
                "phase": self.real_phase.value,
                "reason": self.real_reason,
                "attempts": self.real_attempts,
            },
            "simulated": {
                "wait": self.simulated_wait,
                "completion": self.simulated_completion,
                "phase": self.simulated_phase.value,
                "reason": self.simulated_reason,
                "attempts": self.simulated_attempts,
            },
            "outcomeDiffers": self.differs,
        }


@dataclass(frozen=True, slots=True)
class Group:
    """Figures of one set of Tasks (all, one queue, one type)."""

    name: str
    tasks: int
    real_wait: Figures
    simulated_wait: Figures
    real_completion: Figures
    simulated_completion: Figures

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": self.tasks,
            "wait": {"real": self.real_wait.to_json(), "simulated": self.simulated_wait.to_json()},
            "completion": {
                "real": self.real_completion.to_json(),
                "simulated": self.simulated_completion.to_json(),
            },
        }


def group(name: str, rows: Sequence[Row]) -> Group:
    return Group(
        name=name,
        tasks=len(rows),
        real_wait=figures(r.real_wait for r in rows),
        simulated_wait=figures(r.simulated_wait for r in rows),
        real_completion=figures(r.real_completion for r in rows),
        simulated_completion=figures(r.simulated_completion for r in rows),
    )


@dataclass(frozen=True)
class Report:
    replay: Replay
    rows: list[Row]
    overall: Group
    by_queue: list[Group]
    by_type: list[Group]
    real_makespan: float | None
    simulated_makespan: float | None
    #: Absolute times of every final end, for the chart; and the first arrival.
    real_ends: list[float]
    simulated_ends: list[float]
    start: float

    @property
    def differing(self) -> list[Row]:
        return [r for r in self.rows if r.differs]

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.replay.policy.describe() | {"workers": self.replay.workers},
            "tolerance": {"seconds": TOLERANCE_SECONDS, "fraction": TOLERANCE_FRACTION},
            "makespan": {"real": self.real_makespan, "simulated": self.simulated_makespan},
            "overall": self.overall.to_json(),
            "byQueue": [g.to_json() for g in self.by_queue],
            "byType": [g.to_json() for g in self.by_type],
            "outcomesDiffering": [f"{r.namespace}/{r.name}" for r in self.differing],
            "tasks": [r.to_json() for r in self.rows],
        }


def build(records: Sequence[Record], replay: Replay) -> Report:
    """The report of ``replay``: every Task of ``records`` once."""
    rows = []
    for record in records:
        sim = replay.results[record.key]
        rows.append(
            Row(
                namespace=record.key[0],
                name=record.key[1],
                type=record.type,
                queue=record.queue,
                priority=record.priority,
                arrival=record.arrival,
                real_wait=record.wait,
                simulated_wait=_since(record.arrival, sim.first_start),
                real_completion=record.completion,
                simulated_completion=_since(record.arrival, sim.final_end),
                real_phase=record.phase,
                simulated_phase=sim.phase,
                real_reason=record.reason,
                simulated_reason=sim.reason,
                real_attempts=len(record.attempts),
                simulated_attempts=sim.attempts,
            )
        )
    start = min((r.arrival for r in records), default=0.0)
    real_ends = sorted(r.final_end for r in records if r.final_end is not None)
    sim_ends = sorted(
        s.final_end for s in (replay.results[r.key] for r in records) if s.final_end is not None
    )
    return Report(
        replay=replay,
        rows=rows,
        overall=group("all", rows),
        by_queue=_grouped(rows, "queue"),
        by_type=_grouped(rows, "type"),
        real_makespan=real_ends[-1] - start if real_ends else None,
        simulated_makespan=sim_ends[-1] - start if sim_ends else None,
        real_ends=real_ends,
        simulated_ends=sim_ends,
        start=start,
    )


def _since(start: float, end: float | None) -> float | None:
    return None if end is None else end - start


def _grouped(rows: Sequence[Row], attribute: str) -> list[Group]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(getattr(row, attribute), []).append(row)
    return [group(f"{attribute}={name}", members) for name, members in sorted(groups.items())]
