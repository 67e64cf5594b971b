"""Small helpers for tests that drive Tasks through kubectl."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from taskmill.testing.controlplane import ControlPlane


def apply(plane: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    # JSON, not YAML: PyYAML writes a key `n` bare, which kubectl's YAML 1.1
    # reads as the boolean false.
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def task(name: str, type_: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name},
        "spec": {"type": type_, **spec},
    }


def queue(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": spec,
    }


def stamp(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 time from a status."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def get(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = plane.kubectl("get", "-n", namespace, "tasks.taskmill.dev", name, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def wait_phase(
    plane: ControlPlane, namespace: str, name: str, phase: str, timeout: int = 60
) -> dict[str, Any]:
    """Wait (kubectl wait: a watch, not a sleep) until the Task is in ``phase``."""
    result = plane.kubectl(
        "wait",
        "-n",
        namespace,
        f"tasks.taskmill.dev/{name}",
        f"--for=jsonpath={{.status.phase}}={phase}",
        f"--timeout={timeout}s",
        check=False,
        timeout=timeout + 30,
    )
    if result.returncode != 0:
        current = get(plane, namespace, name)
        raise AssertionError(
            f"task {name} did not reach {phase}: {result.stderr.strip()}; "
            f"status: {json.dumps(current.get('status'), indent=1)}"
        )
    return get(plane, namespace, name)


def warning_reasons(
    plane: ControlPlane,
    namespace: str,
    name: str,
    *,
    expect: str | None = None,
    timeout: float = 30,
) -> list[str]:
    """Reasons of the Warning Events about the named object. With ``expect``,
    wait (polling with a deadline) until that reason is among them: an Event is
    posted just after the status write that a test usually waits on."""
    deadline = time.monotonic() + timeout
    while True:
        listed = plane.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        ).stdout
        reasons = [e["reason"] for e in json.loads(listed)["items"] if e["type"] == "Warning"]
        if expect is None or expect in reasons or time.monotonic() > deadline:
            return reasons
        time.sleep(0.2)
