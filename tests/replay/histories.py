"""Task objects with a recorded history, as `taskmill get -o json` shows them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from taskmill.dispatch.transitions import iso

T0 = 1_800_000_000.0


def task_object(
    name: str,
    arrival: float,
    attempts: Sequence[tuple[float, float, str]] = (),
    *,
    phase: str | None = None,
    reason: str | None = None,
    namespace: str = "ns",
    **spec: Any,
) -> dict[str, Any]:
    """A Task that arrived ``arrival`` seconds after T0 and ran ``attempts``
    (start and end in seconds after T0, outcome). Its phase is Succeeded if the
    last attempt succeeded, else Dead, unless given."""
    history = [
        {
            "attempt": i + 1,
            "worker": "w",
            "startedAt": iso(T0 + start),
            "finishedAt": iso(T0 + end),
            "outcome": outcome,
        }
        for i, (start, end, outcome) in enumerate(attempts)
    ]
    if phase is None:
        phase = (
            "Pending"
            if not attempts
            else ("Succeeded" if attempts[-1][2] == "Succeeded" else "Dead")
        )
    status: dict[str, Any] = {"phase": phase, "attempts": len(attempts)}
    if reason:
        status["reason"] = reason
    if history:
        status["history"] = history
        status["startedAt"] = history[0]["startedAt"]
    if phase in ("Succeeded", "Dead", "Cancelled") and attempts:
        status["finishedAt"] = history[-1]["finishedAt"]
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "creationTimestamp": iso(T0 + arrival),
        },
        "spec": {"type": spec.pop("type", "work"), **spec},
        "status": status,
    }


@st.composite
def histories(
    draw: st.DrawFn, *, max_tasks: int = 25, failures: bool = True, whole_seconds: bool = False
) -> list[dict[str, Any]]:
    """Tasks of a few types and priorities arriving over 20 s, each with up to
    three attempts (failures before a last success or failure). The attempt
    times only need to be plausible: the replay takes their durations."""
    count = draw(st.integers(1, max_tasks))
    out = []
    for i in range(count):
        arrival = float(draw(st.integers(0, 20)))
        durations = draw(
            st.lists(
                st.integers(0, 5).map(float)
                if whole_seconds
                else st.floats(0, 5, allow_nan=False).map(lambda d: round(d, 3)),
                min_size=1,
                max_size=3 if failures else 1,
            )
        )
        last = draw(st.sampled_from(["Succeeded", "Failed"])) if failures else "Succeeded"
        attempts = []
        at = arrival
        for n, duration in enumerate(durations):
            outcome = last if n == len(durations) - 1 else "Failed"
            attempts.append((at, at + duration, outcome))
            at += duration + 1
        out.append(
            task_object(
                f"t{i:03d}",
                arrival,
                attempts,
                type=draw(st.sampled_from(["a", "b", "c"])),
                priority=draw(st.integers(0, 3)),
                maxAttempts=3,
            )
        )
    return out
