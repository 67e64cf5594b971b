"""Graceful shutdown against the real operator: SIGTERM under load loses
nothing and wastes no attempt."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

import taskmill
from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.stack import start_worker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def phases(client: taskmill.Client) -> dict[str, str]:
    return {
        t.metadata.name: (t.status.phase.value if t.status else "Pending") for t in client.list()
    }


def wait_until(condition: object, limit_seconds: float, what: str) -> None:
    deadline = time.monotonic() + limit_seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_sigterm_under_load_hands_back_running_work_without_wasting_attempts(
    crds: ControlPlane, operator: str, namespace: str, tmp_path: Path
) -> None:
    client = taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace)
    names = [
        client.submit("slow_noop", {"seconds": 3}, name=f"s-{i}").metadata.name for i in range(10)
    ]
    first = start_worker(
        operator,
        "tests.worker.slow_handlers",
        tmp_path / "first.log",
        cwd=ROOT,
        concurrency=4,
        extra_args=["--grace-seconds", "0.5"],
    )
    try:
        wait_until(
            lambda: list(phases(client).values()).count("Running") == 4, 60, "4 Tasks Running"
        )
        first.signal(signal.SIGTERM)
        assert first.popen.wait(30) == 0, first.log_tail()
    finally:
        first.stop()

    after_stop = client.list()
    assert not [t for t in after_stop if t.status and t.status.phase.value == "Running"]
    released = [
        t.metadata.name
        for t in after_stop
        if t.status and any(h.outcome.value == "Released" for h in t.status.history or [])
    ]
    assert len(released) == 4, first.log_tail()

    second = start_worker(
        operator, "tests.worker.slow_handlers", tmp_path / "second.log", cwd=ROOT, concurrency=5
    )
    try:
        for name in names:
            assert client.wait(name, timeout=90) == {"attempt": 1}
    finally:
        assert second.stop() == 0, second.log_tail()

    for task in client.list():
        assert task.status is not None
        assert task.status.attempts == 1, task.metadata.name
        outcomes = [h.outcome.value for h in task.status.history or []]
        expected = ["Released", "Succeeded"] if task.metadata.name in released else ["Succeeded"]
        assert outcomes == expected, (task.metadata.name, outcomes)
    client.close()
