"""Operator metrics from Task watch events."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from taskmill.controller.metrics import OperatorMetrics


def task(uid: str, phase: str | None, reason: str = "", **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"uid": uid, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": dict(status),
    }
    if phase:
        body["status"].update(phase=phase, reason=reason)
    return body


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float:
    result = metrics.registry.get_sample_value(name, labels)
    return 0.0 if result is None else result


def test_a_task_lifecycle_is_counted_once() -> None:
    m = OperatorMetrics()
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
    assert value(m, "taskmill_tasks", phase="Succeeded") == 1
    assert value(m, "taskmill_tasks", phase="Pending") == 0
    assert value(m, "taskmill_task_lease_latency_seconds_count") == 1
    assert value(m, "taskmill_task_lease_latency_seconds_sum") == 0.25
    m.observe("DELETED", task("a", "Succeeded"))
    assert value(m, "taskmill_tasks", phase="Succeeded") == 0


def test_dead_and_waiting_reasons() -> None:
    m = OperatorMetrics(leading=lambda: False)
    m.observe("ADDED", task("b", None))
    m.observe("MODIFIED", task("b", "Waiting", "QueuePaused"))
    m.observe("MODIFIED", task("b", "Dead", "PayloadTooLarge"))
    assert value(m, "taskmill_task_waiting_total", reason="QueuePaused") == 1
    assert value(m, "taskmill_task_dead_total", reason="PayloadTooLarge") == 1
    assert value(m, "taskmill_leader") == 0


def test_first_sight_is_a_state_not_a_transition() -> None:
    m = OperatorMetrics()
    m.observe("ADDED", task("c", "Succeeded"))
    assert value(m, "taskmill_tasks", phase="Succeeded") == 1
    assert value(m, "taskmill_task_transitions_total", phase="Succeeded") == 0


def test_throttling_and_fire_lag_are_read_at_scrape_time() -> None:
    throttled = [0]
    lags: list[float] = []
    metrics = OperatorMetrics(throttled=lambda: throttled[0], fire_lags=lambda: lags)

    throttled[0] = 7
    lags.extend([0.01 * i for i in range(1, 101)])
    text = generate_latest(metrics.registry).decode()

    assert "taskmill_dispatch_throttled_total 7.0" in text
    assert 'taskmill_crontask_fire_lag_seconds{quantile="0.5"} 0.51' in text
    assert 'taskmill_crontask_fire_lag_seconds{quantile="0.99"} 1.0' in text
