"""The producer SDK against the real API server, operator and worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator

import pytest

import taskmill
from taskmill.client import PayloadTooLarge, TaskNotFound, WaitTimeout
from taskmill.kube.client import ApiError
from taskmill.models.task import PAYLOAD_MAX_BYTES, RETRY_ANNOTATION
from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import wait_phase

pytestmark = pytest.mark.integration


@pytest.fixture
def client(crds: ControlPlane, namespace: str) -> Iterator[taskmill.Client]:
    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as c:
        yield c


def test_submit_and_wait_returns_the_result(worker: str, client: taskmill.Client) -> None:
    task = client.submit("echo", {"to": "ada", "n": [1, 2]})

    assert task.metadata.name.startswith("echo-")
    assert client.wait(task.metadata.name, timeout=60) == {"to": "ada", "n": [1, 2]}


def test_a_repeated_submit_with_the_same_name_runs_once(
    worker: str, client: taskmill.Client
) -> None:
    first = client.submit_detailed("echo", {"v": 1}, name="once")
    again = client.submit_detailed("echo", {"v": 2}, name="once")
    assert client.wait("once", timeout=60) == {"v": 1}
    late = client.submit_detailed("echo", {"v": 3}, name="once")

    assert (first.created, again.created, late.created) == (True, False, False)
    assert first.task.metadata.uid == again.task.metadata.uid == late.task.metadata.uid
    status = client.get("once").status
    assert status is not None
    assert status.attempts == 1
    assert len(status.history or []) == 1


def test_concurrent_submits_of_one_name_are_one_task(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    async def go() -> set[str]:
        async with taskmill.AsyncClient(kubeconfig=str(crds.kubeconfig), namespace=namespace) as c:
            tasks = await asyncio.gather(*(c.submit("echo", {}, name="race") for _ in range(8)))
            await c.wait("race", timeout=60)
            return {t.metadata.uid for t in tasks}

    assert len(asyncio.run(go())) == 1


def test_wait_on_a_dead_task_raises_with_the_last_error(
    worker: str, client: taskmill.Client
) -> None:
    client.submit("fail", {"message": "no luck"}, name="doomed", max_attempts=1)

    with pytest.raises(taskmill.TaskDead) as caught:
        client.wait("doomed", timeout=60)

    assert caught.value.reason == "AttemptsExhausted"
    assert caught.value.last_error is not None
    assert caught.value.last_error.message == "no luck"
    assert "RuntimeError: no luck" in str(caught.value)


def test_a_handler_retry_waits_its_delay(worker: str, client: taskmill.Client) -> None:
    client.submit("retry_later", {"delay": 2}, name="later", max_attempts=3)

    assert client.wait("later", timeout=60) == {"attempt": 2}

    history = client.get("later").status.history  # type: ignore[union-attr]
    assert history is not None
    assert [h.outcome.value for h in history] == ["Failed", "Succeeded"]
    assert history[0].finished_at is not None
    assert history[1].started_at is not None
    assert (history[1].started_at - history[0].finished_at).total_seconds() >= 2


@pytest.mark.parametrize("type_", ["sleep", "sync_sleep"])
def test_a_timeout_stops_the_handler(worker: str, client: taskmill.Client, type_: str) -> None:
    started = time.monotonic()
    client.submit(type_, {"seconds": 30}, name="slow", timeout_seconds=1, max_attempts=1)

    with pytest.raises(taskmill.TaskDead) as caught:
        client.wait("slow", timeout=60)

    assert time.monotonic() - started < 20
    assert caught.value.last_error is not None
    assert caught.value.last_error.type == "TimeoutError"
    history = client.get("slow").status.history  # type: ignore[union-attr]
    assert [h.outcome.value for h in history or []] == ["TimedOut"]


def test_cancel_stops_a_running_task_and_wait_says_so(
    crds: ControlPlane, worker: str, namespace: str, client: taskmill.Client
) -> None:
    client.submit("sync_sleep", {"seconds": 60}, name="stopme")
    wait_phase(crds, namespace, "stopme", "Running")

    cancelled = client.cancel("stopme")

    assert cancelled.spec.cancel is True
    with pytest.raises(taskmill.TaskCancelled):
        client.wait("stopme", timeout=30)


def test_wait_gives_up_clearly(client: taskmill.Client) -> None:
    client.submit("nobody-handles-this", {}, name="stuck")

    with pytest.raises(WaitTimeout, match=r"stuck not finished after 0.5s \(phase Pending\)"):
        client.wait("stuck", timeout=0.5)


def test_an_oversized_payload_is_refused_before_sending(client: taskmill.Client) -> None:
    with pytest.raises(PayloadTooLarge, match="payloadFrom"):
        client.submit("echo", {"blob": "x" * PAYLOAD_MAX_BYTES}, name="big")

    with pytest.raises(TaskNotFound):
        client.get("big")


def test_submit_to_a_missing_namespace_is_an_api_error(client: taskmill.Client) -> None:
    with pytest.raises(ApiError) as caught:
        client.submit("echo", {}, namespace="no-such-namespace")

    assert caught.value.status == 404


def test_run_at_and_dependencies_reach_the_spec(client: taskmill.Client) -> None:
    at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    task = client.submit("echo", {}, name="later-on", run_at=at, depends_on=["a", ("b", "Failed")])

    assert task.spec.run_at == at
    assert [(d.name, d.condition.value) for d in task.spec.depends_on or []] == [
        ("a", "Succeeded"),
        ("b", "Failed"),
    ]


def test_retry_sets_a_new_annotation_and_the_dead_task_runs_again(
    crds: ControlPlane, worker: str, namespace: str, client: taskmill.Client
) -> None:
    client.submit("fail", {}, name="again", max_attempts=1)
    with pytest.raises(taskmill.TaskDead):
        client.wait("again", timeout=60)

    first = client.retry("again").metadata.annotations[RETRY_ANNOTATION]
    second = client.retry("again").metadata.annotations[RETRY_ANNOTATION]

    assert first != second
    # The operator's side: it acts on the newest value and attempts the Task again.
    crds.kubectl(
        "wait",
        "-n",
        namespace,
        "tasks.taskmill.dev/again",
        f"--for=jsonpath={{.status.observedRetry}}={second}",
        "--timeout=60s",
    )
    status = wait_phase(crds, namespace, "again", "Dead")["status"]
    assert len(status["history"]) >= 2
