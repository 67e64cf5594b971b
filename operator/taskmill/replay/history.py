"""A history of Tasks as ``taskmill replay`` needs it, from Task objects.

Each Task gives its arrival (``metadata.creationTimestamp``), its spec (type,
queue, priority, dependencies, limits), and its measured attempts from
``status.history``: start, end, outcome and worker. What a history cannot
know is said in docs/replay.md: how long a handler would have run under
another load, Tasks already deleted (``ttlSecondsAfterFinished``), attempts
beyond the last :data:`~taskmill.models.task.HISTORY_LIMIT`, and arrivals
finer than a second (the API server stores creation times in whole seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from taskmill.dispatch.clock import to_timestamp
from taskmill.dispatch.keys import TaskKey
from taskmill.models.resources import ObjectMeta, Task
from taskmill.models.task import AttemptOutcome, Phase, TaskStatus


class HistoryError(ValueError):
    """Input that is not a list of Tasks: said with the item at fault."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One measured attempt."""

    started: float
    ended: float
    outcome: AttemptOutcome
    worker: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)


@dataclass(frozen=True, slots=True)
class Record:
    """One Task as it really went."""

    task: Task
    arrival: float
    attempts: tuple[Attempt, ...]
    phase: Phase
    reason: str | None
    #: The first attempt's start and the final end, if there were.
    first_start: float | None
    final_end: float | None

    @property
    def key(self) -> TaskKey:
        return (self.task.metadata.namespace or "", self.task.metadata.name or "")

    @property
    def type(self) -> str:
        return self.task.spec.type

    @property
    def queue(self) -> str:
        return self.task.spec.queue

    @property
    def priority(self) -> int:
        return self.task.spec.priority

    @property
    def wait(self) -> float | None:
        """Arrival to first start."""
        return None if self.first_start is None else self.first_start - self.arrival

    @property
    def completion(self) -> float | None:
        """Arrival to final end."""
        return None if self.final_end is None else self.final_end - self.arrival


def items_of(document: Any) -> list[Mapping[str, Any]]:
    """The Task objects of what ``taskmill get -o json`` (or the API) gives:
    a List, one Task, or a JSON array of Tasks."""
    if isinstance(document, Mapping) and "items" in document:
        items = document["items"]
    elif isinstance(document, Mapping):
        items = [document]
    else:
        items = document
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise HistoryError("expected a Task, a List of Tasks, or a JSON array of Tasks")
    return items


def from_objects(objects: Iterable[Mapping[str, Any]]) -> list[Record]:
    """Records of Task objects, in arrival order (then namespace and name)."""
    records = []
    seen: set[TaskKey] = set()
    for index, obj in enumerate(objects):
        record = _record(index, obj)
        if record.key in seen:
            raise HistoryError(f"item {index}: Task {record.key[0]}/{record.key[1]} appears twice")
        seen.add(record.key)
        records.append(record)
    records.sort(key=lambda r: (r.arrival, r.key))
    return records


def _record(index: int, obj: Mapping[str, Any]) -> Record:
    kind = obj.get("kind", "Task")
    name = (obj.get("metadata") or {}).get("name", "?")
    if kind != "Task":
        raise HistoryError(f"item {index} ({name}) is a {kind}, not a Task")
    try:
        task = Task.model_validate(obj)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HistoryError(f"item {index} ({name}): {where}: {first['msg']}") from None
    created = task.metadata.creation_timestamp
    if created is None or not task.metadata.name:
        raise HistoryError(f"item {index} ({name}) has no name or creationTimestamp")
    status = task.status or TaskStatus()
    attempts = tuple(
        Attempt(
            started=to_timestamp(a.started_at),
            ended=to_timestamp(a.finished_at),
            outcome=a.outcome,
            worker=a.worker,
        )
        for a in status.history or ()
        if a.started_at is not None and a.finished_at is not None
    )
    if status.started_at is not None:
        first_start: float | None = to_timestamp(status.started_at)
    else:
        first_start = attempts[0].started if attempts else None
    final_end = None
    if status.phase.is_finished:
        if status.finished_at is not None:
            final_end = to_timestamp(status.finished_at)
        elif attempts:
            final_end = attempts[-1].ended
    namespace = task.metadata.namespace or "default"
    # Only what the simulation needs: its own status is the replay's to write.
    meta = task.metadata
    clean = task.model_copy(
        update={
            "metadata": ObjectMeta(
                name=meta.name,
                namespace=namespace,
                uid=meta.uid or f"replay-{namespace}-{meta.name}",
                creation_timestamp=created,
            ),
            # TTL deletion would take finished Tasks out of the report.
            "spec": task.spec.model_copy(
                update={"ttl_seconds_after_finished": None, "cancel": False}
            ),
            "status": None,
        }
    )
    return Record(
        task=clean,
        arrival=to_timestamp(created),
        attempts=attempts,
        phase=status.phase,
        reason=status.reason,
        first_start=first_start,
        final_end=final_end,
    )


def peak_concurrency(records: Iterable[Record]) -> int:
    """The most attempts that ran at once: the worker slots the history shows
    in use (a worker's slot count itself is not recorded)."""
    edges = []
    for record in records:
        for attempt in record.attempts:
            edges.append((attempt.started, 1))
            edges.append((attempt.ended, -1))
    edges.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same time
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak
