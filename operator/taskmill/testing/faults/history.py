"""The checker: executions, final Tasks and process lifetimes in, one report out.

Taskmill's delivery contract (see :mod:`taskmill.models.task`): every Task
ends in its phase; its handler may run more than once, but a run whose
result did not count must be explained by a lease that expired or a process
that died (or stopped) during that attempt. The checker decides that from
records alone, as a Jepsen checker judges a history, so it can be run on any
run's files and its own verdicts can be tested on hand-made histories.

Terms, per Task:

- an execution is *accepted* when ``status.history`` holds its attempt
  (same attempt number and worker) with the outcome the handler had:
  ``Succeeded`` for a return, ``Failed``/``TimedOut`` for a raise. Retries
  after a failure are accepted executions, not duplicates;
- every other execution of a Task that ran more than once is a *duplicate*:
  work done whose result did not count. Its explanation is the history entry
  of its attempt (``LeaseExpired``, ``Released``, ``Cancelled``) together with
  the faults that overlap that attempt (its worker killed, paused, stopped;
  an operator killed; the API server or etcd down). A duplicate with none of
  these is *unexplained*;
- *redone after success*: an execution that started after another execution
  of the same Task had already returned success (an outcome that was lost on
  its way, so finished work was done again).

Invariants checked besides (each breach fails the run): no two leases of one
Task overlap in time; two executions of one Task overlap only when the
earlier one's lease had ended before the later one began; at most one
accepted success per Task; every ``Succeeded`` attempt has its execution in
the log; ``status.attempts`` counts every attempt but handed-back ones.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskmill.testing.faults.records import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    Attempt,
    Execution,
    FinalTask,
    RunRecord,
)

#: Clock slack when comparing times written by different processes (the API
#: keeps milliseconds).
TOLERANCE_SECONDS = 0.002
#: How many items of each list the printed report shows (the file has all).
PRINT_LIMIT = 20

_ACCEPTS = {SUCCEEDED: {"Succeeded"}, FAILED: {"Failed", "TimedOut"}, CANCELLED: set()}
_EXPLAINING_OUTCOMES = {"LeaseExpired", "Released", "Cancelled"}
_PLANE_ROLES = {"kube-apiserver", "etcd"}


@dataclass
class Report:
    """The verdict of one run; :meth:`to_json` is what gets printed and stored."""

    expected: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    wrong_phase: list[dict[str, Any]] = field(default_factory=list)
    executions: int = 0
    accepted: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    discarded: list[dict[str, Any]] = field(default_factory=list)
    redone_after_success: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: Outcomes of every attempt in the final Tasks' histories.
    attempt_outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def succeeded(self) -> int:
        return self.by_phase.get("Succeeded", 0)

    @property
    def unexplained(self) -> list[dict[str, Any]]:
        return [d for d in self.duplicates if d["explanation"] is None]

    @property
    def failures(self) -> list[str]:
        """Why the run fails; empty when it passes."""
        reasons = []
        if self.lost:
            reasons.append(f"{len(self.lost)} Tasks lost (never Succeeded)")
        if self.wrong_phase:
            reasons.append(f"{len(self.wrong_phase)} Tasks ended in the wrong phase")
        if self.unexplained:
            reasons.append(f"{len(self.unexplained)} duplicate executions unexplained")
        reasons.extend(self.violations)
        return reasons

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self, limit: int | None = None) -> dict[str, Any]:
        def cut(items: Sequence[Any]) -> list[Any]:
            return list(items if limit is None else items[:limit])

        explanations = Counter(
            d["explanation"]["kind"] if d["explanation"] else "unexplained" for d in self.duplicates
        )
        return {
            "ok": self.ok,
            "failures": self.failures,
            "tasks": {
                "expected": self.expected,
                "succeeded": self.succeeded,
                "by_phase": dict(sorted(self.by_phase.items())),
                "lost": len(self.lost),
                "lost_names": cut(self.lost),
                "wrong_phase": cut(self.wrong_phase),
            },
            "executions": self.executions,
            "accepted": self.accepted,
            "attempt_outcomes": dict(sorted(self.attempt_outcomes.items())),
            "duplicates": {
                "count": len(self.duplicates),
                "unexplained": len(self.unexplained),
                "by_explanation": dict(sorted(explanations.items())),
                "by_timing": dict(
                    sorted(Counter(str(d.get("timing")) for d in self.duplicates).items())
                ),
                # A lease that expired with no fault recorded in its window:
                # heartbeats that did not arrive in time on their own.
                "without_fault": sum(
                    1
                    for d in self.duplicates
                    if d["explanation"] and not d["explanation"]["causes"]
                ),
                "items": cut(self.duplicates),
            },
            "redone_after_success": {
                "count": len(self.redone_after_success),
                "items": cut(self.redone_after_success),
            },
            "discarded": {"count": len(self.discarded), "items": cut(self.discarded)},
            "violations": cut(self.violations),
        }

    def dumps(self, limit: int | None = PRINT_LIMIT) -> str:
        return json.dumps(self.to_json(limit), indent=2, sort_keys=False)


def check(
    expected: Mapping[str, str],
    tasks: Iterable[FinalTask],
    executions: Iterable[Execution],
    run: RunRecord | None = None,
) -> Report:
    """Judge a run. ``expected`` maps each Task name to the phase it must end
    in (``Succeeded``, ``Dead``, ``Cancelled``); ``tasks`` are the Tasks read
    at the end; ``executions`` the recorder's log; ``run`` the lifetimes and
    outages the harness recorded."""
    run = run or RunRecord()
    report = Report(expected=len(expected))
    by_name = {task.name: task for task in tasks}
    runs: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        runs[execution.uid].append(execution)
    report.executions = sum(len(items) for items in runs.values())

    for name, phase in sorted(expected.items()):
        task = by_name.get(name)
        actual = task.phase if task is not None else "Missing"
        report.by_phase[actual] = report.by_phase.get(actual, 0) + 1
        if actual != phase:
            if phase == "Succeeded":
                report.lost.append(name)
            else:
                report.wrong_phase.append({"task": name, "expected": phase, "phase": actual})
    for task in by_name.values():
        _judge_task(task, sorted(runs.get(task.uid, []), key=lambda e: e.start), run, report)
    known = {task.uid for task in by_name.values()}
    strays = [e for uid, items in runs.items() if uid not in known for e in items]
    if strays:
        report.violations.append(
            f"{len(strays)} executions of Tasks that are not among the final Tasks "
            f"(e.g. {strays[0].name or strays[0].uid})"
        )
    return report


def _judge_task(task: FinalTask, runs: list[Execution], run: RunRecord, report: Report) -> None:
    history = list(task.history)
    report.attempt_outcomes.update(entry.outcome for entry in history)
    accepted = _accept(task, history, runs, report)
    report.accepted += len(accepted)
    successes = [e for e in runs if id(e) in accepted and e.outcome == SUCCEEDED]
    if len(successes) > 1:
        report.violations.append(f"{task.name}: {len(successes)} successes counted")
    for execution in runs:
        if id(execution) in accepted:
            continue
        item = _describe(task, execution)
        if len(runs) > 1:
            item["explanation"] = _explain(execution, history, run)
            item["timing"] = _timing(execution, _attempt_of(execution, history))
            report.duplicates.append(item)
        else:
            report.discarded.append(item)
    first_success = min((e.end for e in runs if e.outcome == SUCCEEDED), default=None)
    if first_success is not None:
        for execution in runs:
            if execution.start > first_success + TOLERANCE_SECONDS:
                item = _describe(task, execution)
                item["explanation"] = _explain(execution, history, run)
                report.redone_after_success.append(item)
    _check_leases(task, history, report)
    _check_overlaps(task, history, runs, report)
    counted = sum(1 for entry in history if entry.outcome != "Released")
    if len(history) == len(task.history) and task.attempts != counted and _finished(task):
        report.violations.append(
            f"{task.name}: status.attempts is {task.attempts}, history counts {counted}"
        )


def _finished(task: FinalTask) -> bool:
    return task.phase in ("Succeeded", "Dead", "Cancelled")


def _accept(
    task: FinalTask, history: list[Attempt], runs: list[Execution], report: Report
) -> set[int]:
    """Pair each attempt the handler ended with the execution that ended it."""
    accepted: set[int] = set()
    for entry in history:
        candidates = [
            e
            for e in runs
            if id(e) not in accepted
            and e.attempt == entry.attempt
            and (entry.worker is None or e.worker == entry.worker)
            and entry.outcome in _ACCEPTS.get(e.outcome, set())
        ]
        if candidates:
            # The operator takes the first outcome reported under a lease and
            # refuses later ones: the earliest that ended in time counted.
            finished = entry.finished if entry.finished is not None else float("inf")
            in_time = [e for e in candidates if e.end <= finished + TOLERANCE_SECONDS]
            best = min(in_time or candidates, key=lambda e: e.end if in_time else -e.end)
            accepted.add(id(best))
        elif entry.outcome == "Succeeded":
            report.violations.append(
                f"{task.name}: attempt {entry.attempt} Succeeded on {entry.worker} "
                "but no execution of it was recorded"
            )
    return accepted


def _describe(task: FinalTask, execution: Execution) -> dict[str, Any]:
    return {
        "task": task.name,
        "attempt": execution.attempt,
        "worker": execution.worker,
        "pid": execution.pid,
        "start": round(execution.start, 3),
        "end": round(execution.end, 3),
        "outcome": execution.outcome,
    }


def _attempt_of(execution: Execution, history: list[Attempt]) -> Attempt | None:
    """The history entry of the lease the execution ran under."""
    matches = [
        entry
        for entry in history
        if entry.attempt == execution.attempt
        and (entry.worker is None or entry.worker == execution.worker)
    ]
    if not matches:
        return None
    return min(matches, key=lambda entry: abs((entry.started or 0.0) - execution.start))


def _explain(execution: Execution, history: list[Attempt], run: RunRecord) -> dict[str, Any] | None:
    """The events that explain why this execution's result did not count."""
    entry = _attempt_of(execution, history)
    if entry is not None and entry.started is not None:
        window = (entry.started, entry.finished if entry.finished is not None else execution.end)
    else:
        window = (execution.start, execution.end)
    causes = _faults_during(execution, window, run)
    if entry is not None and entry.outcome in _EXPLAINING_OUTCOMES:
        kind = {
            "LeaseExpired": "lease-expired",
            "Released": "released",
            "Cancelled": "cancelled",
        }[entry.outcome]
        explanation: dict[str, Any] = {"kind": kind, "causes": causes}
        if entry.finished is not None:
            explanation["at"] = round(entry.finished, 3)
        return explanation
    if causes:
        return {"kind": "process-died", "causes": causes}
    return None


def _timing(execution: Execution, entry: Attempt | None) -> str | None:
    """Where the execution lies against the end of its lease:

    - ``outcome-not-taken``: it ended while its lease was current, yet its
      outcome did not count (lost with its worker, or never delivered);
    - ``lease-ended-while-running``: the lease ended mid-call (a paused or
      cut-off worker finishing late);
    - ``started-after-lease-ended``: the worker began it under a lease
      already recorded as over (granted late, e.g. by a write that stalled).
    """
    if entry is None or entry.finished is None:
        return None
    if execution.start > entry.finished + TOLERANCE_SECONDS:
        return "started-after-lease-ended"
    if execution.end <= entry.finished + TOLERANCE_SECONDS:
        return "outcome-not-taken"
    return "lease-ended-while-running"


def _faults_during(execution: Execution, window: tuple[float, float], run: RunRecord) -> list[str]:
    start, end = window[0] - TOLERANCE_SECONDS, window[1] + TOLERANCE_SECONDS
    causes = []
    for life in run.lifetimes:
        if life.end is None or not start <= life.end <= end:
            continue
        own_worker = life.role == "worker" and (
            life.name == execution.worker or life.pid == execution.pid
        )
        if own_worker or life.role == "operator" or life.role in _PLANE_ROLES:
            how = {"SIGKILL": "killed", "SIGTERM": "stopped"}.get(life.ended_by or "", "exited")
            causes.append(f"{life.role} {life.name} (pid {life.pid}) {how} at {life.end:.3f}")
    for outage in run.outages:
        if outage.end < start or outage.start > end:
            continue
        own_worker = outage.role == "worker" and (
            outage.name == execution.worker or outage.pid == execution.pid
        )
        if own_worker or outage.role == "operator" or outage.role in _PLANE_ROLES:
            causes.append(
                f"{outage.role} {outage.name} {outage.kind} {outage.start:.3f}..{outage.end:.3f}"
            )
    return causes


def _check_leases(task: FinalTask, history: list[Attempt], report: Report) -> None:
    """No two leases of one Task are current at once."""
    timed = sorted(
        (e for e in history if e.started is not None and e.finished is not None),
        key=lambda e: e.started or 0.0,
    )
    for before, after in itertools.pairwise(timed):
        assert before.finished is not None
        assert after.started is not None
        if after.started < before.finished - TOLERANCE_SECONDS:
            report.violations.append(
                f"{task.name}: attempt {after.attempt} leased at {after.started:.3f} while "
                f"attempt {before.attempt}'s lease was current until {before.finished:.3f}"
            )


def _check_overlaps(
    task: FinalTask, history: list[Attempt], runs: list[Execution], report: Report
) -> None:
    """Two executions at once only after the earlier one's lease had ended."""
    for i, earlier in enumerate(runs):
        for later in runs[i + 1 :]:
            if later.start >= earlier.end:
                continue
            entry = _attempt_of(earlier, history)
            ended = entry.finished if entry is not None else None
            if ended is None or ended > later.start + TOLERANCE_SECONDS:
                report.violations.append(
                    f"{task.name}: attempt {later.attempt} on {later.worker} started at "
                    f"{later.start:.3f} while attempt {earlier.attempt} on {earlier.worker} "
                    "ran under a current lease"
                )
