"""Status transitions of a Task, as JSON merge patches of ``status``.

Each function takes the Task's current status and what happened, and returns
the fields to merge into ``status`` (``None`` deletes a field). They decide;
the operator writes. Every transition here is one write, and the happy path of
a Task costs two status writes: leased (``Running``) and finished.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from taskmill.dispatch import conditions
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import to_datetime
from taskmill.dispatch.leases import LeaseInfo
from taskmill.models.lease import ReportedError
from taskmill.models.task import (
    HISTORY_LIMIT,
    MESSAGE_MAX_CHARS,
    RETRY_ANNOTATION,
    TRACEBACK_MAX_CHARS,
    Attempt,
    AttemptOutcome,
    Phase,
    Reason,
    TaskStatus,
)

StatusPatch = dict[str, Any]


def iso(ts: float) -> str:
    """RFC 3339 in UTC with milliseconds, as the API server stores it."""
    return to_datetime(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def truncate_tail(text: str, limit: int) -> str:
    """Keep the end of a traceback: the innermost frames and the error say most."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


@dataclass(frozen=True)
class RetrySettings:
    """What decides between another attempt and Dead, resolved Task → queue → defaults."""

    max_attempts: int
    backoff: BackoffPolicy


def leased(status: TaskStatus | None, lease: LeaseInfo) -> StatusPatch:
    message = f"attempt {lease.attempt} on {lease.worker}"
    patch: StatusPatch = {
        "phase": Phase.RUNNING.value,
        "attempts": lease.attempt,
        "lease": {
            "worker": lease.worker,
            "id": lease.id,
            "expiresAt": iso(lease.expires_at),
            "startedAt": iso(lease.started_at),
            # Persisted so a restarted operator still knows who may complete it.
            "holder": lease.holder,
        },
        "reason": None,
        "message": None,
        "nextAttemptAt": None,
        "conditions": conditions.for_phase(status, Phase.RUNNING, "", message, lease.started_at),
    }
    if status is None or status.started_at is None:
        patch["startedAt"] = iso(lease.started_at)
    return patch


def succeeded(status: TaskStatus | None, lease: LeaseInfo, result: Any, now: float) -> StatusPatch:
    return {
        "phase": Phase.SUCCEEDED.value,
        "result": result,
        "finishedAt": iso(now),
        "lease": None,
        "reason": None,
        "message": None,
        "history": _history(status, lease, now, AttemptOutcome.SUCCEEDED, None),
        "conditions": conditions.for_phase(status, Phase.SUCCEEDED, "", "", now),
    }


def failed(
    status: TaskStatus | None,
    lease: LeaseInfo,
    error: ReportedError,
    now: float,
    retry: RetrySettings,
    rng: random.Random,
    outcome: AttemptOutcome = AttemptOutcome.FAILED,
) -> StatusPatch:
    """A failed attempt: another one after the backoff, or Dead."""
    message = truncate(error.message or error.type, MESSAGE_MAX_CHARS)
    last_error: dict[str, Any] = {"type": truncate(error.type, 256), "message": message}
    if error.traceback:
        last_error["traceback"] = truncate_tail(error.traceback, TRACEBACK_MAX_CHARS)
    patch: StatusPatch = {
        "lease": None,
        "lastError": last_error,
        "history": _history(status, lease, now, outcome, message),
    }
    if not error.retryable:
        return patch | _dead(status, Reason.PERMANENT_FAILURE, message, now)
    if lease.attempt >= retry.max_attempts:
        reason_text = f"{lease.attempt} of {retry.max_attempts} attempts failed: {message}"
        return patch | _dead(status, Reason.ATTEMPTS_EXHAUSTED, reason_text, now)
    if error.retry_after_seconds is not None:
        delay, reason = error.retry_after_seconds, Reason.RETRY_REQUESTED
    else:
        delay, reason = retry.backoff.delay(lease.attempt, rng), Reason.BACKOFF
    message = f"attempt {lease.attempt + 1} of {retry.max_attempts} in {delay:.1f}s"
    return patch | {
        "phase": Phase.WAITING.value,
        "reason": reason.value,
        "message": message,
        "nextAttemptAt": iso(now + delay),
        "conditions": conditions.for_phase(status, Phase.WAITING, reason.value, message, now),
    }


def released(status: TaskStatus | None, lease: LeaseInfo, now: float) -> StatusPatch:
    """Handed back by a worker (shutdown): queued again at once, attempt not counted."""
    message = f"released by {lease.worker}"
    return {
        "phase": Phase.PENDING.value,
        "attempts": lease.attempt - 1,
        "lease": None,
        "reason": Reason.RELEASED.value,
        "message": message,
        "history": _history(status, lease, now, AttemptOutcome.RELEASED, None),
        "conditions": conditions.for_phase(
            status, Phase.PENDING, Reason.RELEASED.value, message, now
        ),
    }


def retried(status: TaskStatus | None, value: str, now: float) -> StatusPatch:
    """A Dead Task retried by its annotation: attempts start again; its history
    and last error stay for the record."""
    message = truncate(f"retried: {RETRY_ANNOTATION}={value}", MESSAGE_MAX_CHARS)
    return {
        "phase": Phase.PENDING.value,
        "attempts": 0,
        "reason": Reason.RETRIED.value,
        "message": message,
        "observedRetry": value,
        "nextAttemptAt": None,
        "finishedAt": None,
        "lease": None,
        "conditions": conditions.for_phase(
            status, Phase.PENDING, Reason.RETRIED.value, message, now
        ),
    }


def cancelled(
    status: TaskStatus | None, lease: LeaseInfo | None, message: str, now: float
) -> StatusPatch:
    """``spec.cancel`` (or deletion): Cancelled; a running attempt goes into the history."""
    patch: StatusPatch = {
        "phase": Phase.CANCELLED.value,
        "reason": Reason.CANCELLED.value,
        "message": message,
        "finishedAt": iso(now),
        "lease": None,
        "nextAttemptAt": None,
        "conditions": conditions.for_phase(
            status, Phase.CANCELLED, Reason.CANCELLED.value, message, now
        ),
    }
    if lease is not None:
        patch["history"] = _history(status, lease, now, AttemptOutcome.CANCELLED, None)
    return patch


def dead(status: TaskStatus | None, reason: Reason, message: str, now: float) -> StatusPatch:
    """Dead without an attempt running (bad input, deadline, failed dependency)."""
    return _dead(status, reason, message, now) | {"lease": None}


def waiting(
    status: TaskStatus | None,
    reason: Reason,
    message: str,
    now: float,
    next_attempt_at: float | None = None,
) -> StatusPatch:
    message = truncate(message, MESSAGE_MAX_CHARS)
    return {
        "phase": Phase.WAITING.value,
        "reason": reason.value,
        "message": message,
        "nextAttemptAt": iso(next_attempt_at) if next_attempt_at is not None else None,
        "conditions": conditions.for_phase(status, Phase.WAITING, reason.value, message, now),
    }


def _dead(status: TaskStatus | None, reason: Reason, message: str, now: float) -> StatusPatch:
    message = truncate(message, MESSAGE_MAX_CHARS)
    return {
        "phase": Phase.DEAD.value,
        "reason": reason.value,
        "message": message,
        "finishedAt": iso(now),
        "nextAttemptAt": None,
        "conditions": conditions.for_phase(status, Phase.DEAD, reason.value, message, now),
    }


def _history(
    status: TaskStatus | None,
    lease: LeaseInfo,
    now: float,
    outcome: AttemptOutcome,
    message: str | None,
) -> list[dict[str, Any]]:
    entries = list(status.history or []) if status else []
    entries.append(
        Attempt(
            attempt=lease.attempt,
            worker=lease.worker,
            started_at=to_datetime(lease.started_at),
            finished_at=to_datetime(now),
            outcome=outcome,
            message=message,
        )
    )
    return [_dump_attempt(a) for a in entries[-HISTORY_LIMIT:]]


def _dump_attempt(attempt: Attempt) -> dict[str, Any]:
    data = attempt.to_api()
    for key in ("startedAt", "finishedAt"):
        value = getattr(attempt, "started_at" if key == "startedAt" else "finished_at")
        if isinstance(value, dt.datetime):
            data[key] = iso(value.timestamp())
    return data
