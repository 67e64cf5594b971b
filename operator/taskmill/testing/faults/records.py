"""What a fault run records, as plain values: executions, final Tasks,
process lifetimes and the faults done to them.

Times are seconds since the epoch (``time.time()``) on one machine, so an
execution's start, a Task's ``status.history`` timestamps and a process's
death can be compared directly. Reading and writing are here too: the
execution log is JSON lines (see :mod:`taskmill.testing.faults.recorder`),
the rest JSON documents.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskmill.models.times import parse_time as parse_wire_time

#: Execution outcomes a recorder writes.
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"


@dataclass(frozen=True)
class Execution:
    """One call of a handler, as the handler itself saw it."""

    uid: str
    name: str
    attempt: int
    worker: str
    pid: int
    start: float
    end: float
    #: ``succeeded`` (returned), ``failed`` (raised), ``cancelled`` (stopped
    #: by a cancellation: lease lost, Task cancelled, worker handing back).
    outcome: str
    namespace: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Execution:
        return cls(
            uid=str(data["uid"]),
            name=str(data.get("name", "")),
            attempt=int(data["attempt"]),
            worker=str(data["worker"]),
            pid=int(data["pid"]),
            start=float(data["start"]),
            end=float(data["end"]),
            outcome=str(data["outcome"]),
            namespace=str(data.get("namespace", "")),
        )


@dataclass(frozen=True)
class Attempt:
    """One entry of a Task's ``status.history``: what the operator recorded."""

    attempt: int
    worker: str | None
    started: float | None
    finished: float | None
    #: ``Succeeded``, ``Failed``, ``TimedOut``, ``LeaseExpired``, ``Cancelled``, ``Released``.
    outcome: str


@dataclass(frozen=True)
class FinalTask:
    """A Task as it was read at the end of the run."""

    uid: str
    name: str
    phase: str
    #: ``status.attempts``: attempts counted so far.
    attempts: int
    history: tuple[Attempt, ...] = ()
    namespace: str = ""

    @classmethod
    def from_object(cls, body: Mapping[str, Any]) -> FinalTask:
        """From a Task object as the API server returns it."""
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        history = tuple(
            Attempt(
                attempt=int(entry.get("attempt", 0)),
                worker=entry.get("worker"),
                started=parse_time(entry.get("startedAt")),
                finished=parse_time(entry.get("finishedAt")),
                outcome=str(entry.get("outcome", "")),
            )
            for entry in status.get("history") or []
        )
        return cls(
            uid=str(meta.get("uid", "")),
            name=str(meta.get("name", "")),
            phase=str(status.get("phase", "Pending")),
            attempts=int(status.get("attempts", 0)),
            history=history,
            namespace=str(meta.get("namespace", "")),
        )


@dataclass
class Lifetime:
    """A process of the run: when it started and how it ended.

    ``role`` is ``operator``, ``worker``, ``kube-apiserver`` or ``etcd``;
    ``ended_by`` is ``SIGKILL`` (a crash), ``SIGTERM`` (a graceful stop),
    ``exit`` (it ended on its own) or None while it runs.
    """

    role: str
    name: str
    pid: int
    start: float
    end: float | None = None
    ended_by: str | None = None


@dataclass(frozen=True)
class Outage:
    """A stretch of time in which a process was there but not serving:
    ``kind`` ``paused`` (SIGSTOP .. SIGCONT) or ``down`` (stopped, then
    started again in its place, e.g. the API server with etcd kept)."""

    kind: str
    role: str
    name: str
    start: float
    end: float
    pid: int | None = None


@dataclass
class RunRecord:
    """Lifetimes and outages of one run, in the order they happened."""

    lifetimes: list[Lifetime] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "lifetimes": [asdict(item) for item in self.lifetimes],
            "outages": [asdict(item) for item in self.outages],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        return cls(
            lifetimes=[Lifetime(**item) for item in data.get("lifetimes", [])],
            outages=[Outage(**item) for item in data.get("outages", [])],
        )


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time, as the API stores it."""
    if not value:
        return None
    return parse_wire_time(str(value)).timestamp()


def read_executions(path: str | os.PathLike[str]) -> list[Execution]:
    """The execution log; a line cut short by a crash mid-write is skipped
    (a write of one line is a single ``write(2)``, so only the last can be)."""
    return list(_parse_lines(Path(path).read_text().splitlines()))


def _parse_lines(lines: Iterable[str]) -> Iterator[Execution]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield Execution.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue


def read_tasks(path: str | os.PathLike[str]) -> list[FinalTask]:
    """Tasks from a JSON list of Task objects, or a ``kubectl get -o json`` List."""
    data = json.loads(Path(path).read_text())
    items = data.get("items", []) if isinstance(data, dict) else data
    return [FinalTask.from_object(item) for item in items]
