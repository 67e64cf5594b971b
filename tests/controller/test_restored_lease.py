"""A Task found Running at start-up keeps its lease, and the attempt keeps
its own start time: its history entry must not claim an earlier one."""

from __future__ import annotations

from typing import Any

from taskmill.controller.engine import Engine
from taskmill.controller.settings import OperatorSettings
from taskmill.dispatch.transitions import iso

T0 = 1_800_000_000.0


def running(lease: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "t", "namespace": "ns", "uid": "u", "resourceVersion": "5"},
        "spec": {"type": "echo"},
        "status": {
            "phase": "Running",
            "attempts": len(history) + 1,
            "startedAt": iso(T0),
            "lease": {"worker": "w", "id": "L", "expiresAt": iso(T0 + 60), **lease},
            "history": history,
        },
    }


def failed_first_attempt() -> list[dict[str, Any]]:
    return [
        {"attempt": 1, "outcome": "Failed", "startedAt": iso(T0), "finishedAt": iso(T0 + 3)},
    ]


def restored_start(body: dict[str, Any]) -> float:
    engine = Engine(None, OperatorSettings())  # type: ignore[arg-type]  # no I/O on this path
    engine.observe("ADDED", body)
    lease = engine.leases.get("L")
    assert lease is not None
    assert lease.attempt == 2
    return lease.started_at


def test_a_restored_lease_starts_when_its_attempt_was_leased() -> None:
    body = running({"startedAt": iso(T0 + 4.5)}, failed_first_attempt())
    assert restored_start(body) == T0 + 4.5


def test_a_lease_written_without_its_start_begins_after_the_previous_attempt() -> None:
    # Not the Task's first start (T0), which would overlap attempt 1.
    assert restored_start(running({}, failed_first_attempt())) == T0 + 3
