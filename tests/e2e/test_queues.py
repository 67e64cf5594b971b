"""TaskQueues: a Task waits for its queue, and takes its defaults from it."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import apply, queue, stamp, task, wait_phase, warning_reasons

pytestmark = pytest.mark.integration


def test_a_task_waits_for_a_missing_queue_and_starts_when_it_appears(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, task("early", "echo", queue="reports", payload={"v": 1}))

    waiting = wait_phase(crds, namespace, "early", "Waiting")
    assert waiting["status"]["reason"] == "QueueNotFound"
    assert "reports" in waiting["status"]["message"]
    assert "QueueNotFound" in warning_reasons(crds, namespace, "early", expect="QueueNotFound")

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


def _many(plane: ControlPlane, namespace: str, count: int, type_: str, **spec: Any) -> None:
    items = [task(f"{type_}-{i:03d}", type_, **spec) for i in range(count)]
    plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )


def _wait_all(plane: ControlPlane, namespace: str, phase: str, timeout: int = 120) -> list[Any]:
    plane.kubectl(
        "wait",
        "-n",
        namespace,
        "tasks.taskmill.dev",
        "--all",
        f"--for=jsonpath={{.status.phase}}={phase}",
        f"--timeout={timeout}s",
        timeout=timeout + 30,
    )
    listed = plane.kubectl("get", "-n", namespace, "tasks.taskmill.dev", "-o", "json").stdout
    items: list[Any] = json.loads(listed)["items"]
    return items


def test_a_rate_limit_of_5_per_second_never_starts_more_than_6_in_a_second(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, queue("slow", rateLimits=[{"type": "noop", "perSecond": 5, "burst": 1}]))
    _many(crds, namespace, 20, "noop", queue="slow")

    tasks = _wait_all(crds, namespace, "Succeeded")

    starts = sorted(stamp(t["status"]["startedAt"]) for t in tasks)
    assert len(starts) == 20
    busiest = max(sum(1 for s in starts if first <= s < first + 1.0) for first in starts)
    assert busiest <= 6
    assert starts[-1] - starts[0] >= 19 / 5 - 0.5  # the limit held them back


def test_queue_concurrency_bounds_the_tasks_running_at_once(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(crds, namespace, queue("narrow", concurrency={"total": 1}))
    _many(crds, namespace, 4, "sleep", queue="narrow", payload={"seconds": 0.3})

    tasks = _wait_all(crds, namespace, "Succeeded")

    spans = sorted(
        (stamp(t["status"]["startedAt"]), stamp(t["status"]["finishedAt"])) for t in tasks
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.005  # one at a time (clock granularity: 1 ms)
