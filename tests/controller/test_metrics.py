"""Operator metrics from the changes of the Task store."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from prometheus_client import generate_latest

from taskmill.controller.metrics import OperatorMetrics
from taskmill.controller.store import TaskStore

_versions = itertools.count(1)


class Watched(OperatorMetrics):
    """Metrics listening to a store that is fed watch events, as in the operator."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = TaskStore()
        self.store.listen(self.changed)

    def observe(self, event_type: str, body: dict[str, Any]) -> None:
        body["metadata"]["resourceVersion"] = str(next(_versions))
        self.store.observe(event_type, body)


def task(
    uid: str,
    phase: str | None,
    reason: str = "",
    *,
    namespace: str = "ns",
    queue: str | None = None,
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "name": uid,
            "uid": uid,
            "namespace": namespace,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"type": "t"} | ({"queue": queue} if queue else {}),
        "status": dict(status),
    }
    if phase:
        body["status"].update(phase=phase, reason=reason)
    return body


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float:
    result = metrics.registry.get_sample_value(name, labels)
    return 0.0 if result is None else result


def test_a_task_lifecycle_is_counted_once() -> None:
    m = Watched()
    m.observe("ADDED", task("a", None))
    m.observe("MODIFIED", task("a", None))  # no change: nothing counted
    running = task("a", "Running", attempts=1, startedAt="2026-01-01T00:00:00.250000Z")
    m.observe("MODIFIED", running)
    m.observe("MODIFIED", task("a", "Waiting", "Backoff", attempts=1))
    m.observe("MODIFIED", task("a", "Running", attempts=2))
    m.observe("MODIFIED", task("a", "Succeeded", attempts=2))
    assert value(m, "taskmill_task_transitions_total", phase="Running") == 2
    assert value(m, "taskmill_task_transitions_total", phase="Succeeded") == 1
    assert value(m, "taskmill_task_retries_total", reason="Backoff") == 1
    assert value(m, "taskmill_tasks", namespace="ns", queue="default", phase="Succeeded") == 1
    assert value(m, "taskmill_tasks", namespace="ns", queue="default", phase="Pending") == 0
    assert value(m, "taskmill_task_lease_latency_seconds_count") == 1
    assert value(m, "taskmill_task_lease_latency_seconds_sum") == 0.25
    m.observe("DELETED", task("a", "Succeeded"))
    assert value(m, "taskmill_tasks", namespace="ns", queue="default", phase="Succeeded") == 0


def test_dead_and_waiting_reasons() -> None:
    m = Watched(leading=lambda: False)
    m.observe("ADDED", task("b", None))
    m.observe("MODIFIED", task("b", "Waiting", "QueuePaused"))
    m.observe("MODIFIED", task("b", "Dead", "PayloadTooLarge"))
    assert value(m, "taskmill_task_waiting_total", reason="QueuePaused") == 1
    assert value(m, "taskmill_task_dead_total", reason="PayloadTooLarge") == 1
    assert value(m, "taskmill_leader") == 0


def test_first_sight_is_a_state_not_a_transition() -> None:
    m = Watched()
    m.observe("ADDED", task("c", "Succeeded"))
    assert value(m, "taskmill_tasks", namespace="ns", queue="default", phase="Succeeded") == 1
    assert value(m, "taskmill_task_transitions_total", phase="Succeeded") == 0


def test_throttling_is_read_at_scrape_time_and_fire_lag_is_a_histogram() -> None:
    throttled = [0]
    metrics = Watched(throttled=lambda: throttled[0])

    throttled[0] = 7
    for i in range(1, 101):
        metrics.observe_fire_lag(0.01 * i)
    text = generate_latest(metrics.registry).decode()

    assert "taskmill_dispatch_throttled_total 7.0" in text
    assert value(metrics, "taskmill_crontask_fire_lag_seconds_count") == 100
    assert value(metrics, "taskmill_crontask_fire_lag_seconds_bucket", le="0.25") == 25
    assert value(metrics, "taskmill_crontask_fire_lag_seconds_bucket", le="+Inf") == 100


def test_no_created_series_and_the_process_is_described() -> None:
    metrics = Watched()
    metrics.observe("ADDED", task("a", "Running"))
    metrics.observe_fire_lag(0.1)
    text = generate_latest(metrics.registry).decode()

    assert "_created" not in text
    assert value(metrics, "process_resident_memory_bytes") > 0
    assert value(metrics, "process_cpu_seconds_total") > 0


def test_tasks_are_counted_by_namespace_and_queue() -> None:
    m = Watched()
    m.observe("ADDED", task("a", "Pending", namespace="billing", queue="email"))
    m.observe("ADDED", task("b", "Pending", namespace="billing", queue="email"))
    m.observe("ADDED", task("c", "Pending", namespace="ops"))
    m.observe("MODIFIED", task("b", "Running", namespace="billing", queue="email"))
    # A queue edited on a Pending Task moves it.
    m.observe("MODIFIED", task("c", "Pending", namespace="ops", queue="batch"))

    def tasks(namespace: str, queue: str, phase: str) -> float:
        return value(m, "taskmill_tasks", namespace=namespace, queue=queue, phase=phase)

    assert tasks("billing", "email", "Pending") == 1
    assert tasks("billing", "email", "Running") == 1
    assert tasks("ops", "default", "Pending") == 0
    assert tasks("ops", "batch", "Pending") == 1
    m.observe("DELETED", task("a", "Pending", namespace="billing", queue="email"))
    assert tasks("billing", "email", "Pending") == 0


def test_series_of_namespace_and_queue_pairs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("taskmill.controller.metrics.MAX_QUEUE_SERIES", 3)
    m = Watched()
    for i in range(10):
        m.observe("ADDED", task(f"t{i}", "Pending", namespace=f"ns{i}"))
    text = generate_latest(m.registry).decode()
    series = [line for line in text.splitlines() if line.startswith("taskmill_tasks{")]
    assert len(series) == 4
    other = value(m, "taskmill_tasks", namespace="_other", queue="_other", phase="Pending")
    assert other == 7
