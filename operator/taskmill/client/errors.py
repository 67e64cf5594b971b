"""What the SDK raises. Every error is a :class:`TaskmillError`; those about
one Task carry its ``namespace`` and ``name``."""

from __future__ import annotations

from taskmill.models.task import TaskError


class TaskmillError(Exception):
    """Base of the SDK's errors."""


class TaskFailure(TaskmillError):
    """A Task that will not produce a result."""

    def __init__(self, namespace: str, name: str, message: str) -> None:
        super().__init__(message)
        self.namespace = namespace
        self.name = name


class TaskDead(TaskFailure):
    """The Task ended ``Dead``: ``reason`` (e.g. ``AttemptsExhausted``) and
    ``last_error`` (type, message, traceback) say why."""

    def __init__(
        self,
        namespace: str,
        name: str,
        reason: str | None,
        last_error: TaskError | None,
        message: str | None = None,
    ) -> None:
        detail = message or ""
        if last_error is not None and last_error.message:
            detail = f"{last_error.type}: {last_error.message}"
        text = f"task {namespace}/{name} is Dead ({reason or 'no reason'})"
        super().__init__(namespace, name, f"{text}: {detail}" if detail else text)
        self.reason = reason
        self.last_error = last_error


class TaskCancelled(TaskFailure):
    """The Task was cancelled (``spec.cancel: true``)."""


class TaskDeleted(TaskFailure):
    """The Task was deleted while it was waited for."""


class TaskNotFound(TaskmillError, LookupError):
    """No Task of that name in that namespace."""


class WaitTimeout(TaskmillError, TimeoutError):
    """``wait`` gave up; ``phase`` is the Task's phase at that moment."""

    def __init__(self, namespace: str, name: str, timeout: float, phase: str | None) -> None:
        super().__init__(
            f"task {namespace}/{name} not finished after {timeout:g}s (phase {phase or 'unknown'})"
        )
        self.namespace = namespace
        self.name = name
        self.phase = phase


class PayloadTooLarge(TaskmillError, ValueError):
    """The payload is larger than ``PAYLOAD_MAX_BYTES``; use ``payloadFrom``."""
