"""Leases and the history: a Task found Running at start-up keeps its lease
and the attempt its own start time; a lease not yet written records no
attempt when its Task is cancelled."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.controller.engine import Engine
from taskmill.controller.settings import OperatorSettings
from taskmill.dispatch.leases import LeaseInfo
from taskmill.dispatch.transitions import iso
from tests.controller.conditions import until

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


class Writes:
    """The engine's status writer, noting each patch."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def write(
        self, namespace: str, name: str, rv: str, patch: dict[str, Any], *_: Any
    ) -> dict[str, Any]:
        self.patches.append(patch)
        raise OSError("not needed here")


@pytest.mark.asyncio
async def test_a_task_cancelled_while_its_lease_write_is_in_flight_records_no_attempt() -> None:
    engine = Engine(None, OperatorSettings())  # type: ignore[arg-type]
    writes = Writes()
    engine.writer = writes  # type: ignore[assignment]
    pending = running({}, [])
    pending["status"] = {"phase": "Pending"}
    engine.observe("ADDED", pending)
    # A grant is on its way: the lease is in the book, not yet in the Task.
    engine.leases.add(LeaseInfo("L", ("ns", "t"), "u", "w", 1, T0, T0 + 30, 30.0))
    cancelled = {**pending, "spec": {"type": "echo", "cancel": True}}
    cancelled["metadata"] = {**pending["metadata"], "resourceVersion": "6"}
    engine.observe("MODIFIED", cancelled)
    await until(lambda: writes.patches, "the Cancelled write")
    [patch] = writes.patches
    assert patch["phase"] == "Cancelled"
    assert "history" not in patch  # no attempt started
    await engine.close()
