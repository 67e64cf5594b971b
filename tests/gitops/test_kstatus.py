"""What GitOps tools see of real Tasks: kstatus (Flux, cli-utils) and the
shipped Argo CD health checks, on objects the operator has written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import apply, get, task, wait_phase
from tests.gitops import kstatus
from tests.gitops.health import health

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kstatus_command() -> Path:
    binary = kstatus.build()
    if binary is None:
        pytest.skip("kstatus is built with Go, and go is not on the PATH")
    return binary


def objects(plane: ControlPlane, namespace: str, *names: str) -> list[dict[str, Any]]:
    return [get(plane, namespace, name) for name in names]


def test_tasks_read_as_in_progress_current_or_failed_as_their_phase_says(
    crds: ControlPlane, worker: str, namespace: str, kstatus_command: Path
) -> None:
    # Read before the operator can have written anything: the CRD's default.
    apply(crds, namespace, task("fresh", "nobody.handles.this"))
    fresh = get(crds, namespace, "fresh")

    apply(crds, namespace, task("ok", "echo", payload={"a": 1}))
    apply(crds, namespace, task("broken", "fail", maxAttempts=1))
    apply(crds, namespace, task("busy", "sleep", payload={"seconds": 60}))
    apply(crds, namespace, task("stopped", "sleep", payload={"seconds": 60}))
    wait_phase(crds, namespace, "ok", "Succeeded")
    wait_phase(crds, namespace, "broken", "Dead")
    wait_phase(crds, namespace, "busy", "Running")
    wait_phase(crds, namespace, "stopped", "Running")
    crds.kubectl(
        "patch",
        "-n",
        namespace,
        "tasks.taskmill.dev/stopped",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"cancel": True}}),
    )
    wait_phase(crds, namespace, "stopped", "Cancelled")

    seen = [fresh, *objects(crds, namespace, "ok", "broken", "busy", "stopped")]
    verdicts = kstatus.compute(kstatus_command, seen)
    assert {name: status for name, (status, _) in verdicts.items()} == {
        "fresh": "InProgress",
        "ok": "Current",
        "broken": "Failed",
        "busy": "InProgress",
        "stopped": "Current",
    }
    assert "attempts failed" in verdicts["broken"][1]

    argo = {obj["metadata"]["name"]: health("Task", obj)[0] for obj in seen}
    assert argo == {
        "fresh": "Progressing",
        "ok": "Healthy",
        "broken": "Degraded",
        "busy": "Progressing",
        "stopped": "Healthy",
    }
    crds.kubectl("delete", "-n", namespace, "tasks.taskmill.dev/busy", "--wait=false")
