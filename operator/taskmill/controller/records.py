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
    """One Task as last seen. Only the validated model is kept, not the raw
    body it came from: with 100,000 Tasks pending, the body (managedFields
    and all) would be a third of the operator's memory."""

    key: TaskKey
    uid: str
    resource_version: str
    task: Task

    @property
    def status(self) -> TaskStatus:
        return self.task.status or TaskStatus()

    def reference(self) -> dict[str, Any]:
        """What an Event about this Task needs to name it."""
        namespace, name = self.key
        return {"metadata": {"namespace": namespace, "name": name, "uid": self.uid}}


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
