"""Bad input at every layer, each answered where the user looks, nothing lost.

One operator and one worker serve this whole module, on a plane of their
own. Every bad input a user (or a handler) can produce is tried: schema
violations the API server refuses with the field named, Tasks the operator
must end or hold with a reason, handlers that return or raise what cannot
be reported as it is, a worker's call for a lease it never held. At the end
the operator and the worker are the same processes as at the start, and
still dispatching.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing.controlplane import ControlPlane, KubectlError
from taskmill.testing.pytest_plugin import fresh_namespace
from taskmill.testing.stack import Process, start_operator, start_worker
from tests.e2e.helpers import apply, get, task, wait_phase, warning_reasons

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    plane: ControlPlane
    namespace: str
    operator: Process
    worker: Process
    url: str
    pids: tuple[int, int]


@pytest.fixture(scope="module")
def stack(lone_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("bad-input")
    for namespace in fresh_namespace(lone_plane, "bad-input"):
        operator, url = start_operator(
            lone_plane,
            logs / "operator.log",
            extra_args=["--namespace", namespace, "--no-worker-after-seconds", "2"],
        )
        worker = start_worker(
            url,
            "examples.handlers",
            logs / "worker.log",
            cwd=ROOT,
            extra_args=["--handlers", "tests.faults.bad_handlers"],
        )
        try:
            yield Stack(lone_plane, namespace, operator, worker, url, (operator.pid, worker.pid))
        finally:
            worker.stop()
            operator.stop()


def status(stack: Stack, name: str) -> dict[str, Any]:
    result: dict[str, Any] = get(stack.plane, stack.namespace, name).get("status") or {}
    return result


def wait_reason(stack: Stack, name: str, reason: str, limit: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while (current := status(stack, name)).get("reason") != reason:
        assert time.monotonic() < deadline, f"{name}: expected {reason}, status {current}"
        time.sleep(0.2)
    return current


# --- refused by the API server, with the field named ------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({"type": "echo", "priority": "high"}, "spec.priority", id="wrong-type"),
        pytest.param({"type": "echo", "colour": "red"}, "colour", id="unknown-field"),
        pytest.param({"type": "echo", "maxAttempts": 0}, "spec.maxAttempts", id="out-of-range"),
        pytest.param({"type": "bad type!"}, "spec.type", id="bad-type-name"),
        pytest.param(
            {
                "type": "echo",
                "payload": {"a": 1},
                "payloadFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}},
            },
            "spec.payloadFrom",
            id="payload-and-payloadFrom",
        ),
        pytest.param(
            {"type": "echo", "dependsOn": [{"name": "self-loop"}]}, "spec.dependsOn", id="self"
        ),
    ],
)
def test_a_schema_violation_is_refused_at_apply_with_the_field_named(
    stack: Stack, spec: dict[str, Any], field: str
) -> None:
    manifest = task("self-loop", "echo") | {"spec": spec}
    with pytest.raises(KubectlError) as refused:
        apply(stack.plane, stack.namespace, manifest)
    assert field in refused.value.stderr


# --- held or ended by the operator, with a reason ----------------------------------


def test_a_payload_as_large_as_the_api_server_takes_ends_dead_and_the_next_task_runs(
    stack: Stack,
) -> None:
    # create, not apply: apply would copy the payload into an annotation,
    # which the API server caps at 256 KiB.
    huge = task("huge", "echo", payload={"blob": "x" * 1_200_000})
    stack.plane.kubectl("create", "-n", stack.namespace, "-f", "-", input=json.dumps(huge))
    apply(stack.plane, stack.namespace, task("after-huge", "echo", payload={"ok": True}))
    dead = wait_phase(stack.plane, stack.namespace, "huge", "Dead")["status"]
    assert dead["reason"] == "PayloadTooLarge"
    assert "payloadFrom" in dead["message"]
    assert "PayloadTooLarge" in warning_reasons(
        stack.plane, stack.namespace, "huge", expect="PayloadTooLarge"
    )
    done = wait_phase(stack.plane, stack.namespace, "after-huge", "Succeeded")
    assert done["status"]["result"] == {"ok": True}


def test_a_task_naming_a_missing_queue_waits_with_the_reason(stack: Stack) -> None:
    apply(stack.plane, stack.namespace, task("lost-queue", "echo", queue="nowhere"))
    waiting = wait_reason(stack, "lost-queue", "QueueNotFound")
    assert waiting["phase"] == "Waiting"
    assert "nowhere" in waiting["message"]


def test_a_task_of_a_type_no_worker_handles_waits_with_the_reason(stack: Stack) -> None:
    apply(stack.plane, stack.namespace, task("orphan", "nobody.handles.this"))
    waiting = wait_reason(stack, "orphan", "NoWorker")
    assert waiting["phase"] == "Waiting"


def test_a_dependency_cycle_ends_dead_with_the_cycle_named(stack: Stack) -> None:
    apply(stack.plane, stack.namespace, task("ping", "echo", dependsOn=[{"name": "pong"}]))
    apply(stack.plane, stack.namespace, task("pong", "echo", dependsOn=[{"name": "ping"}]))
    dead = wait_phase(stack.plane, stack.namespace, "ping", "Dead")["status"]
    assert dead["reason"] == "DependencyCycle"
    assert "pong" in dead["message"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(" ", "InvalidAnnotation", id="blank"),
        pytest.param("1", "RetryIgnored", id="not-dead"),
    ],
)
def test_a_retry_annotation_that_cannot_be_acted_on_is_reported_and_changes_nothing(
    stack: Stack, value: str, reason: str
) -> None:
    name = f"annotated-{reason.lower()}"
    apply(stack.plane, stack.namespace, task(name, "echo"))
    wait_phase(stack.plane, stack.namespace, name, "Succeeded")
    stack.plane.kubectl(
        "annotate",
        "-n",
        stack.namespace,
        f"tasks.taskmill.dev/{name}",
        f"taskmill.dev/retry={value}",
    )
    assert reason in warning_reasons(stack.plane, stack.namespace, name, expect=reason)
    after = status(stack, name)
    assert (after["phase"], after["attempts"]) == ("Succeeded", 1)


# --- handlers that misbehave --------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "error_type", "says"),
    [
        pytest.param("returns_a_set", "ResultNotJSON", "not JSON", id="result-not-json"),
        pytest.param("returns_too_much", "ResultTooLarge", "more than", id="result-too-large"),
        pytest.param("exits", "SystemExit", "3", id="sync-system-exit"),
        pytest.param("exits_async", "KeyboardInterrupt", "", id="async-keyboard-interrupt"),
        pytest.param("raises_unprintable", "Unprintable", "could not be printed", id="no-str"),
        pytest.param("raises_bad_unicode", "ValueError", "surrogate", id="lone-surrogate"),
    ],
)
def test_a_misbehaving_handler_ends_its_task_with_an_error_that_says_why(
    stack: Stack, type_: str, error_type: str, says: str
) -> None:
    name = type_.replace("_", "-")
    apply(stack.plane, stack.namespace, task(name, type_, maxAttempts=1))
    dead = wait_phase(stack.plane, stack.namespace, name, "Dead")["status"]
    assert dead["lastError"]["type"] == error_type
    assert says in dead["lastError"]["message"]


def test_a_completion_for_a_lease_never_granted_is_refused(stack: Stack) -> None:
    body = json.dumps({"leaseId": "never-granted", "outcome": "succeeded", "result": {}})
    request = urllib.request.Request(
        f"{stack.url}/v1/complete",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Taskmill-Worker": "w"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 409


# --- and afterwards -----------------------------------------------------------------


def test_zz_after_all_of_it_the_same_operator_and_worker_still_dispatch(stack: Stack) -> None:
    apply(stack.plane, stack.namespace, task("still-here", "echo", payload={"n": 1}))
    done = wait_phase(stack.plane, stack.namespace, "still-here", "Succeeded")
    assert done["status"]["result"] == {"n": 1}
    assert (stack.operator.pid, stack.worker.pid) == stack.pids
    assert stack.operator.alive()
    assert stack.worker.alive()
