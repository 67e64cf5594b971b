from __future__ import annotations

import dataclasses
import random

from taskmill.dispatch import transitions
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.leases import LeaseInfo
from taskmill.models.lease import ReportedError
from taskmill.models.task import HISTORY_LIMIT, TaskStatus

NOW = 1_800_000_000.0
RETRY = transitions.RetrySettings(max_attempts=3, backoff=BackoffPolicy(jitter=0))


def lease(attempt: int = 1) -> LeaseInfo:
    return LeaseInfo(
        id="L",
        key=("ns", "t"),
        uid="u",
        worker="w1",
        attempt=attempt,
        started_at=NOW - 2,
        expires_at=NOW + 28,
        lease_seconds=30,
    )


def status(patch: dict[str, object]) -> TaskStatus:
    return TaskStatus.model_validate({k: v for k, v in patch.items() if v is not None})


def test_a_lease_records_running_the_attempt_and_the_holder() -> None:
    patch = transitions.leased(None, lease())

    assert patch["phase"] == "Running"
    assert patch["attempts"] == 1
    assert patch["lease"] == {
        "worker": "w1",
        "id": "L",
        "expiresAt": transitions.iso(NOW + 28),
        "startedAt": transitions.iso(NOW - 2),
        "holder": None,  # a merge patch: removes an earlier attempt's holder
    }
    assert patch["startedAt"] == transitions.iso(NOW - 2)


def test_a_lease_records_the_authenticated_holder() -> None:
    held = dataclasses.replace(lease(), holder="system:serviceaccount:ns:worker/pod-1")
    patch = transitions.leased(None, held)

    assert patch["lease"]["holder"] == "system:serviceaccount:ns:worker/pod-1"
    restored = status(patch).lease  # what a restarted operator reads back
    assert restored is not None
    assert restored.holder == "system:serviceaccount:ns:worker/pod-1"


def test_success_clears_the_lease_and_records_result_and_history() -> None:
    patch = transitions.succeeded(None, lease(), {"ok": 1}, NOW)

    assert patch["phase"] == "Succeeded"
    assert patch["lease"] is None
    assert patch["result"] == {"ok": 1}
    assert [h["outcome"] for h in patch["history"]] == ["Succeeded"]
    assert {c["type"]: c["status"] for c in patch["conditions"]} == {
        "Ready": "True",
        "Complete": "True",
    }


def test_a_retryable_failure_waits_for_the_backoff() -> None:
    error = ReportedError(type="ValueError", message="bad", traceback="tb")

    patch = transitions.failed(None, lease(attempt=2), error, NOW, RETRY, random.Random(0))

    assert patch["phase"] == "Waiting"
    assert patch["reason"] == "Backoff"
    assert patch["nextAttemptAt"] == transitions.iso(NOW + 2)  # 1 s * 2^(2-1)
    assert patch["lastError"] == {"type": "ValueError", "message": "bad", "traceback": "tb"}


def test_the_last_attempt_failing_is_dead() -> None:
    error = ReportedError(message="bad")

    patch = transitions.failed(None, lease(attempt=3), error, NOW, RETRY, random.Random(0))

    assert patch["phase"] == "Dead"
    assert patch["reason"] == "AttemptsExhausted"
    assert {c["type"]: c["status"] for c in patch["conditions"]} == {
        "Ready": "False",
        "Stalled": "True",
        "Failed": "True",
    }


def test_a_permanent_failure_is_dead_at_once() -> None:
    error = ReportedError(message="no", retryable=False)

    patch = transitions.failed(None, lease(attempt=1), error, NOW, RETRY, random.Random(0))

    assert (patch["phase"], patch["reason"]) == ("Dead", "PermanentFailure")


def test_a_requested_retry_delay_replaces_the_backoff() -> None:
    error = ReportedError(message="later", retry_after_seconds=42)

    patch = transitions.failed(None, lease(), error, NOW, RETRY, random.Random(0))

    assert (patch["reason"], patch["nextAttemptAt"]) == (
        "RetryRequested",
        transitions.iso(NOW + 42),
    )


def test_a_released_task_is_pending_again_and_the_attempt_does_not_count() -> None:
    patch = transitions.released(None, lease(attempt=2), NOW)

    assert (patch["phase"], patch["attempts"]) == ("Pending", 1)
    assert patch["history"][-1]["outcome"] == "Released"


def test_history_keeps_only_the_latest_attempts() -> None:
    current = TaskStatus()
    error = ReportedError(message="x")
    many = transitions.RetrySettings(max_attempts=1000, backoff=BackoffPolicy())
    for attempt in range(1, HISTORY_LIMIT + 6):
        patch = transitions.failed(current, lease(attempt), error, NOW, many, random.Random(0))
        current = status(patch)

    history = current.history or []
    assert len(history) == HISTORY_LIMIT
    assert history[-1].attempt == HISTORY_LIMIT + 5


def test_long_tracebacks_keep_their_end() -> None:
    error = ReportedError(message="m", traceback="start " + "x" * 10_000 + " the end")

    patch = transitions.failed(None, lease(), error, NOW, RETRY, random.Random(0))

    assert patch["lastError"]["traceback"].endswith("the end")
    assert len(patch["lastError"]["traceback"]) <= 4096
