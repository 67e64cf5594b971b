"""The first Task end to end: kubectl apply → operator → worker → status."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from taskmill.kube import config as kube_config
from taskmill.kube.client import KubeClient, path
from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import apply, get, task, wait_phase, warning_reasons

pytestmark = pytest.mark.integration


def test_echo_task_succeeds_with_its_payload_as_result(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    payload = {"greeting": "hello", "n": [1, 2, 3], "nested": {"ok": True}}
    apply(crds, namespace, task("echo-1", "echo", payload=payload))

    done = wait_phase(crds, namespace, "echo-1", "Succeeded")

    status = done["status"]
    assert status["result"] == payload
    assert status["attempts"] == 1
    assert "lease" not in status
    assert status["history"][0]["outcome"] == "Succeeded"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Complete": "True",
    }


def test_failing_task_is_dead_after_max_attempts(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(
        crds,
        namespace,
        task(
            "fail-1",
            "fail",
            maxAttempts=2,
            backoff={"initialSeconds": 0.2},
            payload={"message": "boom"},
        ),
    )

    dead = wait_phase(crds, namespace, "fail-1", "Dead")

    status = dead["status"]
    assert status["attempts"] == 2
    assert status["reason"] == "AttemptsExhausted"
    assert status["lastError"]["message"] == "boom"
    assert status["lastError"]["type"] == "RuntimeError"
    assert "RuntimeError: boom" in status["lastError"]["traceback"]
    assert [h["outcome"] for h in status["history"]] == ["Failed", "Failed"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False",
        "Stalled": "True",
        "Failed": "True",
    }
    assert "AttemptsExhausted" in warning_reasons(
        crds, namespace, "fail-1", expect="AttemptsExhausted"
    )


def test_a_new_task_reads_pending_before_the_operator_writes(
    crds: ControlPlane, namespace: str
) -> None:
    # No operator fixture here on purpose: the CRD's status default does it.
    apply(crds, namespace, task("nobody", "no-such-handler"))

    status = get(crds, namespace, "nobody")["status"]

    assert status["phase"] == "Pending"
    assert status["attempts"] == 0


def test_oversized_payload_is_dead_with_a_reason_and_a_warning_event(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("big", "echo", payload={"blob": "x" * (70 * 1024)}))
    apply(crds, namespace, task("small", "echo", payload={"after": "big"}))

    dead = wait_phase(crds, namespace, "big", "Dead")
    wait_phase(crds, namespace, "small", "Succeeded")  # dispatch goes on

    assert dead["status"]["reason"] == "PayloadTooLarge"
    assert warning_reasons(crds, namespace, "big", expect="PayloadTooLarge") == ["PayloadTooLarge"]


def test_the_operator_writes_status_only_and_exactly_twice(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    """The write budget: create, then Running, then Succeeded; nothing else."""
    events = asyncio.run(_watch_one_task(crds, namespace, "budget"))

    phases = [(e["type"], (e["object"].get("status") or {}).get("phase")) for e in events]
    assert phases == [("ADDED", "Pending"), ("MODIFIED", "Running"), ("MODIFIED", "Succeeded")]
    final = events[-1]["object"]
    assert final["metadata"]["generation"] == 1  # the spec was never written
    assert "finalizers" not in final["metadata"]
    assert not [k for k in final["metadata"].get("annotations", {}) if "kopf" in k]


async def _watch_one_task(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    config = kube_config.load(plane.kubeconfig)
    async with KubeClient(config) as client:
        tasks_url = path("tasks", namespace)
        listed = await client.get(tasks_url)
        seen: list[dict[str, Any]] = []

        async def collect() -> None:
            async for event in client.watch(
                tasks_url, resource_version=listed["metadata"]["resourceVersion"]
            ):
                if event["type"] == "BOOKMARK":
                    continue
                seen.append(event)
                if (event["object"].get("status") or {}).get("phase") == "Succeeded":
                    return

        watcher = asyncio.create_task(collect())
        await client.create(tasks_url, task(name, "echo", payload={"x": 1}))
        await asyncio.wait_for(watcher, timeout=60)
        return seen


def test_lease_api_refuses_malformed_calls_and_unknown_leases(worker: str) -> None:
    async def call(route: str, body: bytes) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                worker + route,
                data=body,
                headers={"Content-Type": "application/json", "Taskmill-Worker": "w"},
            ) as response,
        ):
            return response.status, await response.json()

    async def calls() -> list[tuple[int, dict[str, Any]]]:
        return [
            await call("/v1/lease", b"{not json"),
            await call("/v1/lease", b'{"worker": "w", "types": []}'),
            await call("/v1/lease", b'{"worker": "w", "types": ["echo"], "max": 0}'),
            await call("/v1/complete", b'{"leaseId": "nope", "outcome": "succeeded"}'),
            await call("/v1/heartbeat", b'{"leaseId": "nope"}'),
            await call("/v1/complete", b'{"leaseId": "x", "outcome": "exploded"}'),
            await call("/v1/outcomes", b'{"outcomes": []}'),
            await call(
                "/v1/outcomes",
                b'{"outcomes": [{"leaseId": "a", "outcome": "succeeded"},'
                b' {"leaseId": "b", "outcome": "failed"}]}',
            ),
        ]

    results = asyncio.run(calls())

    assert [status for status, _ in results] == [400, 400, 400, 409, 409, 400, 400, 200]
    assert results[0][1]["error"] == "MalformedJSON"
    assert "types" in results[1][1]["message"]
    assert "max" in results[2][1]["message"]
    assert "outcome" in results[5][1]["message"]
    assert "outcomes" in results[6][1]["message"]
    # Each outcome of a batch is answered on its own, like a 409 of /v1/complete.
    assert results[7][1] == {
        "results": [
            {"leaseId": "a", "error": "LeaseConflict"},
            {"leaseId": "b", "error": "LeaseConflict"},
        ]
    }


def test_a_task_no_worker_handles_waits_with_a_reason(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("orphan", "nobody-handles-this"))

    waiting = wait_phase(crds, namespace, "orphan", "Waiting")

    assert waiting["status"]["reason"] == "NoWorker"
    assert "nobody-handles-this" in waiting["status"]["message"]
    assert waiting["status"]["attempts"] == 0
