"""What GitOps tools see of real Tasks: kstatus (Flux, cli-utils) and the
shipped Argo CD health checks, on objects the operator has written."""

from __future__ import annotations

import json
import time
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


def crontask(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "CronTask",
        "metadata": {"name": name},
        "spec": {"schedule": "@hourly", "taskTemplate": {"spec": {"type": "echo"}}, **spec},
    }


def test_a_crontask_that_cannot_fire_reads_as_failed_and_shows_it_in_kubectl_get(
    crds: ControlPlane, operator: str, namespace: str, kstatus_command: Path
) -> None:
    apply(crds, namespace, crontask("hourly"))
    apply(crds, namespace, crontask("lost", timeZone="Mars/Olympus"))
    apply(
        crds,
        namespace,
        {
            "apiVersion": "taskmill.dev/v1alpha1",
            "kind": "TaskQueue",
            "metadata": {"name": "q"},
            "spec": {},
        },
    )

    def crontasks() -> dict[str, dict[str, Any]]:
        out = crds.kubectl("get", "-n", namespace, "crontasks.taskmill.dev", "-o", "json").stdout
        return {i["metadata"]["name"]: i for i in json.loads(out)["items"]}

    deadline = time.monotonic() + 30
    while not all(c.get("status", {}).get("conditions") for c in crontasks().values()):
        assert time.monotonic() < deadline, "the operator wrote no CronTask conditions"
        time.sleep(0.2)
    queue = json.loads(
        crds.kubectl("get", "-n", namespace, "taskqueues.taskmill.dev/q", "-o", "json").stdout
    )
    found = crontasks()
    verdicts = kstatus.compute(kstatus_command, [found["hourly"], found["lost"], queue])
    assert {name: status for name, (status, _) in verdicts.items()} == {
        "hourly": "Current",
        "lost": "Failed",
        "q": "Current",
    }
    assert "Mars/Olympus" in verdicts["lost"][1]
    assert health("CronTask", found["lost"])[0] == "Degraded"
    assert health("CronTask", found["hourly"])[0] == "Healthy"
    table = crds.kubectl("get", "-n", namespace, "crontasks.taskmill.dev").stdout.splitlines()
    # Columns are aligned: the value starts where its heading does.
    valid = table[0].index("VALID")
    assert {row.split()[0]: row[valid:].split()[0] for row in table[1:]} == {
        "hourly": "True",
        "lost": "False",
    }
