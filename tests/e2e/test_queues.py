"""TaskQueues: a Task waits for its queue, and takes its defaults from it."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import apply, task, wait_phase, warning_reasons

pytestmark = pytest.mark.integration


def queue(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_a_task_waits_for_a_missing_queue_and_starts_when_it_appears(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("early", "echo", queue="reports", payload={"v": 1}))

    waiting = wait_phase(crds, namespace, "early", "Waiting")
    assert waiting["status"]["reason"] == "QueueNotFound"
    assert "reports" in waiting["status"]["message"]
    assert "QueueNotFound" in warning_reasons(crds, namespace, "early")

    apply(crds, namespace, queue("reports"))

    assert wait_phase(crds, namespace, "early", "Succeeded")["status"]["result"] == {"v": 1}


def test_a_paused_queue_holds_its_tasks_until_resumed(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, queue("held", paused=True))
    apply(crds, namespace, task("patient", "echo", queue="held"))

    assert wait_phase(crds, namespace, "patient", "Waiting")["status"]["reason"] == "QueuePaused"

    apply(crds, namespace, queue("held", paused=False))

    wait_phase(crds, namespace, "patient", "Succeeded")


def test_the_queue_retry_policy_applies_when_the_task_sets_none(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, queue("strict", retryPolicy={"maxAttempts": 1}))
    apply(crds, namespace, task("once", "fail", queue="strict"))
    apply(
        crds,
        namespace,
        task("twice", "fail", queue="strict", maxAttempts=2, backoff={"initialSeconds": 0.1}),
    )

    assert wait_phase(crds, namespace, "once", "Dead")["status"]["attempts"] == 1
    assert wait_phase(crds, namespace, "twice", "Dead")["status"]["attempts"] == 2
