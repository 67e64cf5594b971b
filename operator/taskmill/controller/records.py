"""What the engine remembers of each Task, and small helpers around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskmill.dispatch.dispatcher import Limits
from taskmill.dispatch.keys import TaskKey
from taskmill.models.resources import Task
from taskmill.models.task import TaskStatus
from taskmill.models.taskqueue import TaskQueueSpec


@dataclass
class TaskRecord:
    key: TaskKey
    uid: str
    resource_version: str
    task: Task
    body: dict[str, Any]

    @property
    def status(self) -> TaskStatus:
        return self.task.status or TaskStatus()


def limits_of(spec: TaskQueueSpec) -> Limits:
    """A TaskQueue's spec as the dispatcher's limits."""
    concurrency = spec.concurrency
    return Limits(
        paused=spec.paused,
        total=concurrency.total if concurrency else None,
        per_type=tuple((t.type, t.limit) for t in (concurrency.per_type or []))
        if concurrency
        else (),
        rates=tuple((r.type, r.per_second, r.burst) for r in spec.rate_limits or ()),
    )


def newer(candidate: str, known: str) -> bool:
    try:
        return int(candidate) > int(known)
    except ValueError:
        return candidate != known
