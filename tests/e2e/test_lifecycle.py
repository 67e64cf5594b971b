"""What happens to a Task over its life: retries by annotation, dependencies,
deadlines, TTL, cancellation, and leases of workers that die."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.stack import start_worker
from tests.conftest import OperatorHandle
from tests.e2e.helpers import apply, get, queue, stamp, task, wait_phase, warning_reasons

pytestmark = pytest.mark.integration


def _wait_for(plane: ControlPlane, namespace: str, name: str, jsonpath: str, value: str) -> None:
    plane.kubectl(
        "wait",
        "-n",
        namespace,
        f"tasks.taskmill.dev/{name}",
        f"--for=jsonpath={{{jsonpath}}}={value}",
        "--timeout=60s",
        timeout=90,
    )


def test_a_dead_task_runs_again_when_the_retry_annotation_changes(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("flaky", "fail", maxAttempts=1))
    wait_phase(crds, namespace, "flaky", "Dead")

    crds.kubectl("annotate", "-n", namespace, "tasks.taskmill.dev/flaky", "taskmill.dev/retry=1")
    _wait_for(crds, namespace, "flaky", ".status.observedRetry", "1")
    again = wait_phase(crds, namespace, "flaky", "Dead")

    assert again["status"]["attempts"] == 1
    assert [h["outcome"] for h in again["status"]["history"]] == ["Failed", "Failed"]
    assert again["metadata"]["generation"] == 1  # no spec write: GitOps sees no drift


def test_a_chain_runs_in_order(crds: ControlPlane, worker: str, namespace: str) -> None:
    # Created last-first, so only the dependencies can order them.
    apply(crds, namespace, task("c3", "echo", dependsOn=[{"name": "c2"}]))
    apply(crds, namespace, task("c2", "echo", dependsOn=[{"name": "c1"}]))
    apply(crds, namespace, task("c1", "sleep", payload={"seconds": 0.3}))

    c3 = wait_phase(crds, namespace, "c3", "Succeeded")
    c2, c1 = get(crds, namespace, "c2"), get(crds, namespace, "c1")

    assert stamp(c2["status"]["startedAt"]) >= stamp(c1["status"]["finishedAt"])
    assert stamp(c3["status"]["startedAt"]) >= stamp(c2["status"]["finishedAt"])


def test_a_dependant_of_a_dead_task_is_dead_and_an_on_failure_follow_up_runs(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("doomed", "fail", maxAttempts=1))
    apply(crds, namespace, task("next", "echo", dependsOn=[{"name": "doomed"}]))
    apply(
        crds,
        namespace,
        task("cleanup", "echo", dependsOn=[{"name": "doomed", "condition": "Failed"}]),
    )

    dead = wait_phase(crds, namespace, "next", "Dead")
    wait_phase(crds, namespace, "cleanup", "Succeeded")

    assert dead["status"]["reason"] == "DependencyFailed"
    assert "doomed" in dead["status"]["message"]
    assert dead["status"]["attempts"] == 0


def test_a_dependency_cycle_is_dead_with_the_cycle_named(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("ping", "echo", dependsOn=[{"name": "pong"}]))
    apply(crds, namespace, task("pong", "echo", dependsOn=[{"name": "ping"}]))

    dead = wait_phase(crds, namespace, "pong", "Dead")

    assert dead["status"]["reason"] == "DependencyCycle"
    assert dead["status"]["message"] == "dependency cycle: pong → ping → pong"


def test_a_missing_dependency_waits_with_a_reason(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("hopeful", "echo", dependsOn=[{"name": "ghost"}]))

    waiting = wait_phase(crds, namespace, "hopeful", "Waiting")
    assert waiting["status"]["reason"] == "Dependencies"
    assert "ghost" in waiting["status"]["message"]

    apply(crds, namespace, task("ghost", "echo"))
    wait_phase(crds, namespace, "hopeful", "Succeeded")


def test_the_active_deadline_ends_a_task_dead(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("late", "sleep", payload={"seconds": 60}, activeDeadlineSeconds=2))

    dead = wait_phase(crds, namespace, "late", "Dead")

    assert dead["status"]["reason"] == "DeadlineExceeded"


def test_a_finished_task_is_deleted_after_its_ttl(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("brief", "echo", ttlSecondsAfterFinished=1))
    wait_phase(crds, namespace, "brief", "Succeeded")

    crds.kubectl(
        "wait",
        "-n",
        namespace,
        "tasks.taskmill.dev/brief",
        "--for=delete",
        "--timeout=30s",
        timeout=60,
    )


def test_cancel_stops_a_running_handler(crds: ControlPlane, worker: str, namespace: str) -> None:
    apply(
        crds,
        namespace,
        queue("quick", leaseSeconds=5),
    )
    apply(crds, namespace, task("long", "sleep", queue="quick", payload={"seconds": 120}))
    wait_phase(crds, namespace, "long", "Running")

    crds.kubectl(
        "patch",
        "-n",
        namespace,
        "tasks.taskmill.dev/long",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"cancel": True}}),
    )
    cancelled = wait_phase(crds, namespace, "long", "Cancelled")

    assert cancelled["status"]["history"][-1]["outcome"] == "Cancelled"
    assert "lease" not in cancelled["status"]


HANDLERS = """
import time
import taskmill

@taskmill.handler("only_here")
def only_here(payload, ctx):
    if payload.get("hang_on_first") and ctx.attempt == 1:
        time.sleep(120)
    return {"attempt": ctx.attempt}
"""


def test_a_killed_workers_task_runs_again_after_its_lease_expires(
    crds: ControlPlane, operator: str, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "lonely_handlers.py").write_text(textwrap.dedent(HANDLERS))
    apply(
        crds,
        namespace,
        queue("short", leaseSeconds=5),
    )
    apply(
        crds,
        namespace,
        task(
            "survivor",
            "only_here",
            queue="short",
            payload={"hang_on_first": True},
            backoff={"initialSeconds": 0.1},
        ),
    )
    doomed = start_worker(operator, "lonely_handlers", tmp_path / "w1.log", cwd=tmp_path)
    try:
        wait_phase(crds, namespace, "survivor", "Running")
        doomed.kill()
    finally:
        doomed.stop()
    rescuer = start_worker(operator, "lonely_handlers", tmp_path / "w2.log", cwd=tmp_path)
    try:
        done = wait_phase(crds, namespace, "survivor", "Succeeded", timeout=90)
    finally:
        rescuer.stop()

    status: dict[str, Any] = done["status"]
    assert [h["outcome"] for h in status["history"]] == ["LeaseExpired", "Succeeded"]
    assert status["result"] == {"attempt": 2}


def test_an_operator_crash_neither_loses_nor_repeats_work(
    crds: ControlPlane, worker: str, operator_handle: OperatorHandle, namespace: str
) -> None:
    apply(crds, namespace, task("in-flight", "sleep", payload={"seconds": 3}))
    wait_phase(crds, namespace, "in-flight", "Running")

    operator_handle.restart(crash=True)
    apply(crds, namespace, task("after", "echo", payload={"n": 1}))

    running = wait_phase(crds, namespace, "in-flight", "Succeeded")
    after = wait_phase(crds, namespace, "after", "Succeeded")
    # The running attempt kept its lease across the restart: one attempt, not two.
    assert running["status"]["attempts"] == 1
    assert [h["outcome"] for h in running["status"]["history"]] == ["Succeeded"]
    assert after["status"]["attempts"] == 1


def test_progress_reported_by_a_handler_reaches_the_status(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(
        crds,
        namespace,
        queue("chatty", leaseSeconds=5),
    )
    apply(crds, namespace, task("progressing", "sleep", queue="chatty", payload={"seconds": 20}))

    deadline = time.monotonic() + 30
    progress: dict[str, Any] = {}
    while not progress and time.monotonic() < deadline:
        progress = get(crds, namespace, "progressing")["status"].get("progress", {})
        time.sleep(0.5)

    assert 0 < progress["percent"] <= 100
    assert "updatedAt" in progress


def test_a_retry_annotation_on_a_task_that_is_not_dead_is_reported_once(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("fine", "echo"))
    wait_phase(crds, namespace, "fine", "Succeeded")

    crds.kubectl("annotate", "-n", namespace, "tasks.taskmill.dev/fine", "taskmill.dev/retry=x")
    _wait_for(crds, namespace, "fine", ".status.observedRetry", "x")

    done = get(crds, namespace, "fine")
    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["attempts"] == 1
    assert warning_reasons(crds, namespace, "fine", expect="RetryIgnored") == ["RetryIgnored"]
