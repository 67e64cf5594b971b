"""The Tasks the operator knows: the newest version of each, and who waits on whom.

Fed by the Task watch and by the results of our own writes, in the order
their resourceVersions say: etcd issues them as increasing integers (the API
server's watch cache relies on the same), so an older version — the echo of
a write we already took in, a replayed event — is dropped. Every change is
told to the listeners (the Task reconciler, metrics), with the version
before and after, so nothing else keeps its own copy of a Task's phase.

Only the validated model is kept, not the raw body it came from: with
100,000 Tasks pending, the body (managedFields and all) would be a third of
the operator's memory. A Task that does not validate is kept as an
:class:`InvalidTask`, enough to mark it Dead and count it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from taskmill.dispatch.keys import TaskKey
from taskmill.models.resources import Task
from taskmill.models.task import DEFAULT_QUEUE, TaskStatus

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TaskRecord:
    """One Task as last seen."""

    key: TaskKey
    uid: str
    resource_version: str
    task: Task

    @property
    def status(self) -> TaskStatus:
        return self.task.status or TaskStatus()

    @property
    def queue(self) -> str:
        return self.task.spec.queue

    @property
    def phase(self) -> str:
        return self.status.phase.value

    @property
    def reason(self) -> str:
        return self.status.reason or ""

    def reference(self) -> dict[str, Any]:
        """What an Event about this Task needs to name it."""
        namespace, name = self.key
        return {"metadata": {"namespace": namespace, "name": name, "uid": self.uid}}


@dataclass(slots=True)
class InvalidTask:
    """A Task whose spec does not validate: why, and its status as stored."""

    key: TaskKey
    uid: str
    resource_version: str
    message: str
    raw_status: dict[str, Any]
    queue: str = DEFAULT_QUEUE

    @property
    def phase(self) -> str:
        return str(self.raw_status.get("phase") or "Pending")

    @property
    def reason(self) -> str:
        return str(self.raw_status.get("reason") or "")

    def reference(self) -> dict[str, Any]:
        namespace, name = self.key
        return {"metadata": {"namespace": namespace, "name": name, "uid": self.uid}}


Entry = TaskRecord | InvalidTask
Listener = Callable[[TaskKey, Entry | None, Entry | None], None]


def newer(candidate: str, known: str) -> bool:
    try:
        return int(candidate) > int(known)
    except ValueError:
        return candidate != known


class TaskStore:
    def __init__(self) -> None:
        self._entries: dict[TaskKey, Entry] = {}
        #: Dependency -> the Tasks that wait for it (their dependsOn names it).
        self._dependents: dict[TaskKey, set[TaskKey]] = {}
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def entry(self, key: TaskKey) -> Entry | None:
        return self._entries.get(key)

    def record(self, key: TaskKey) -> TaskRecord | None:
        entry = self._entries.get(key)
        return entry if isinstance(entry, TaskRecord) else None

    def get(self, key: TaskKey, /) -> Task | None:
        """The Task's model, if known and valid (dispatch.task_decisions.Neighbours)."""
        entry = self._entries.get(key)
        return entry.task if isinstance(entry, TaskRecord) else None

    def known_in(self, namespace: str | None) -> dict[TaskKey, str]:
        """Key and uid of the Tasks known in a namespace (all of them for ``None``)."""
        return {
            key: entry.uid
            for key, entry in self._entries.items()
            if namespace is None or key[0] == namespace
        }

    def dependents(self, key: TaskKey) -> set[TaskKey]:
        return self._dependents.get(key, set())

    def observe(self, event_type: str | None, body: dict[str, Any]) -> bool:
        """Take in a watch event or a write's result; True when it changed what is known."""
        meta = body.get("metadata") or {}
        key: TaskKey = (meta.get("namespace", ""), meta.get("name", ""))
        known = self._entries.get(key)
        if event_type == "DELETED":
            if known is None or known.uid != meta.get("uid", known.uid):
                return False
            self._set(key, known, None)
            return True
        uid = meta.get("uid", "")
        rv = meta.get("resourceVersion", "")
        if known is not None and known.uid == uid and not newer(rv, known.resource_version):
            return False  # the echo of our own write, or an older event
        entry: Entry
        try:
            entry = TaskRecord(key, uid, rv, Task.model_validate(body))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            spec, status = body.get("spec"), body.get("status")
            queue = spec.get("queue") if isinstance(spec, dict) else None
            entry = InvalidTask(
                key,
                uid,
                rv,
                f"invalid Task: {where}: {first['msg']}",
                status if isinstance(status, dict) else {},
                queue if isinstance(queue, str) and queue else DEFAULT_QUEUE,
            )
        if known is not None and known.uid != uid:
            self._set(key, known, None)  # deleted and created again
            known = None
        self._set(key, known, entry)
        return True

    def adopt(self, body: dict[str, Any]) -> bool:
        """Take in the object one of our writes returned: only while the Task
        is still known as that object. Its DELETED event may have come first
        (the watch overtook the write's response); it must not come back."""
        meta = body.get("metadata") or {}
        key: TaskKey = (meta.get("namespace", ""), meta.get("name", ""))
        known = self._entries.get(key)
        if known is None or known.uid != meta.get("uid"):
            return False
        return self.observe("MODIFIED", body)

    def _set(self, key: TaskKey, old: Entry | None, new: Entry | None) -> None:
        if isinstance(old, TaskRecord):
            for dependency in _dependencies(old):
                waiting = self._dependents.get(dependency)
                if waiting is not None:
                    waiting.discard(key)
                    if not waiting:
                        del self._dependents[dependency]
        if new is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = new
            if isinstance(new, TaskRecord):
                for dependency in _dependencies(new):
                    self._dependents.setdefault(dependency, set()).add(key)
        for listener in self._listeners:
            try:
                listener(key, old, new)
            except Exception:
                log.exception("a listener failed on the change of Task %s/%s", *key)


def _dependencies(record: TaskRecord) -> list[TaskKey]:
    namespace = record.key[0]
    return [(namespace, d.name) for d in record.task.spec.depends_on or ()]
