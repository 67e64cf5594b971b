"""Every rule of :func:`taskmill.dispatch.task_decisions.decide`, and outcomes,
as plain function calls: a Task, the facts around it, the decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from taskmill.dispatch import task_decisions, transitions
from taskmill.dispatch.dispatcher import Candidate
from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.leases import LeaseInfo
from taskmill.dispatch.task_decisions import KEEP, NOTHING, Decision, Facts, LeaseAction
from taskmill.models.lease import CompleteRequest, Outcome, ReportedError
from taskmill.models.resources import Task
from taskmill.models.task import (
    PAYLOAD_MAX_BYTES,
    RESULT_MAX_BYTES,
    RETRY_ANNOTATION,
    Phase,
    Reason,
)
from taskmill.models.taskqueue import TaskQueueSpec
from tests.dispatch.simulation import T0, task_body

KEY = ("ns", "t")
QUEUE = TaskQueueSpec(lease_seconds=30)


def task(
    *,
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    created: float = T0,
    deleting: bool = False,
    name: str = "t",
    **spec: Any,
) -> Task:
    body = task_body(name, created, **spec)
    if status is not None:
        body["status"] = status
    if annotations:
        body["metadata"]["annotations"] = annotations
    if deleting:
        body["metadata"]["deletionTimestamp"] = transitions.iso(created + 1)
    return Task.model_validate(body)


class Others:
    def __init__(self, *tasks: Task) -> None:
        self.tasks = {("ns", t.metadata.name or ""): t for t in tasks}

    def get(self, key: TaskKey, /) -> Task | None:
        return self.tasks.get(key)


def facts(**changes: Any) -> Facts:
    base = Facts(
        now=T0 + 10,
        queue=QUEUE,
        lease=None,
        claimed=False,
        synced=True,
        neighbours=Others(),
        type_asked_at=T0 + 9,
        serving_since=T0 - 3600,
        no_worker_after=60.0,
    )
    return replace(base, **changes)


def lease(lease_id: str = "L", expires_at: float = T0 + 40, attempt: int = 1) -> LeaseInfo:
    return LeaseInfo(lease_id, KEY, "uid-t", "w", attempt, T0 + 5, expires_at, 30.0)


def running(lease_id: str = "L", attempts: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "phase": "Running",
        "attempts": attempts,
        "startedAt": transitions.iso(T0 + 5),
        "lease": {
            "worker": "w",
            "id": lease_id,
            "expiresAt": transitions.iso(T0 + 40),
            "startedAt": transitions.iso(T0 + 5),
        },
        **extra,
    }


def queued(decision: Decision) -> Candidate:
    assert isinstance(decision.queue, Candidate), decision
    return decision.queue


# ------------------------------------------------------------------ new and queued


def test_a_new_task_is_queued_without_a_write() -> None:
    decision = task_decisions.decide(task(priority=5), facts())
    candidate = queued(decision)
    assert candidate == Candidate(KEY, "default", "echo", 5, T0, 0.0)
    assert decision.patch is None
    assert not decision.acts


def test_a_task_in_backoff_is_queued_for_its_next_attempt() -> None:
    status = {"phase": "Waiting", "reason": "Backoff", "attempts": 1}
    status["nextAttemptAt"] = transitions.iso(T0 + 20)
    decision = task_decisions.decide(task(status=status), facts())
    assert queued(decision).eligible_at == T0 + 20
    assert decision.patch is None


def test_run_at_in_the_future_says_so_once_and_queues_for_then() -> None:
    spec = {"runAt": transitions.iso(T0 + 100)}
    first = task_decisions.decide(task(**spec), facts())
    assert queued(first).eligible_at == T0 + 100
    assert first.patch is not None
    assert first.patch["reason"] == Reason.RUN_AT
    assert first.patch["nextAttemptAt"] == transitions.iso(T0 + 100)
    said = task(status={"phase": "Waiting", "reason": "RunAt"}, **spec)
    assert task_decisions.decide(said, facts()).patch is None


def test_a_paused_queue_says_so_and_keeps_the_task_queued() -> None:
    decision = task_decisions.decide(task(), facts(queue=TaskQueueSpec(paused=True)))
    assert decision.patch is not None
    assert decision.patch["reason"] == Reason.QUEUE_PAUSED
    assert decision.announce is not None
    assert decision.announce.type == "Normal"
    queued(decision)


def test_a_missing_queue_is_waited_for_and_said_once() -> None:
    decision = task_decisions.decide(task(queue="emails"), facts(queue=None))
    assert decision.queue is None
    assert decision.waits_for_queue == "emails"
    assert decision.patch is not None
    assert decision.patch["reason"] == Reason.QUEUE_NOT_FOUND
    said = task(queue="emails", status={"phase": "Waiting", "reason": "QueueNotFound"})
    again = task_decisions.decide(said, facts(queue=None))
    assert again.patch is None
    assert again.waits_for_queue == "emails"


def test_a_payload_over_the_limit_is_dead() -> None:
    payload = {"x": "y" * PAYLOAD_MAX_BYTES}
    decision = task_decisions.decide(task(payload=payload), facts())
    assert decision.patch is not None
    assert decision.patch["phase"] == Phase.DEAD
    assert decision.patch["reason"] == Reason.PAYLOAD_TOO_LARGE
    assert decision.queue is None


# ------------------------------------------------------------------ no worker


def test_no_worker_is_said_of_an_eligible_task_whose_type_nobody_asks_for() -> None:
    old = task(created=T0 - 120)
    quiet = facts(type_asked_at=None)
    decision = task_decisions.decide(old, quiet)
    assert decision.patch is not None
    assert decision.patch["reason"] == Reason.NO_WORKER
    assert decision.announce is not None
    assert decision.announce.type == "Warning"
    queued(decision)  # still leased as soon as a worker asks


@pytest.mark.parametrize(
    ("why", "the_task", "the_facts"),
    [
        ("asked lately", task(created=T0 - 120), facts(type_asked_at=T0 - 5)),
        ("too new", task(created=T0), facts(type_asked_at=None)),
        ("just started", task(created=T0 - 120), facts(type_asked_at=None, serving_since=T0)),
        (
            "said already",
            task(created=T0 - 120, status={"phase": "Waiting", "reason": "NoWorker"}),
            facts(type_asked_at=None),
        ),
        (
            "not eligible yet",
            task(created=T0 - 120, runAt=transitions.iso(T0 + 500)),
            facts(type_asked_at=None),
        ),
    ],
)
def test_no_worker_is_not_said(why: str, the_task: Task, the_facts: Facts) -> None:
    decision = task_decisions.decide(the_task, the_facts)
    assert decision.patch is None or decision.patch["reason"] != Reason.NO_WORKER, why


# ------------------------------------------------------------------ running, leases


def test_a_running_task_found_with_a_lease_restores_it_from_its_own_start() -> None:
    history = [
        {
            "attempt": 1,
            "outcome": "Failed",
            "startedAt": transitions.iso(T0),
            "finishedAt": transitions.iso(T0 + 3),
        }
    ]
    with_start = task(status=running(attempts=2, history=history))
    decision = task_decisions.decide(with_start, facts())
    assert decision.lease is LeaseAction.RESTORE
    assert decision.restored is not None
    assert decision.restored.attempt == 2
    assert decision.restored.started_at == T0 + 5
    # At least one lease period from now, whatever the stored expiry said.
    assert decision.restored.expires_at == T0 + 40
    assert decision.look_again_at == T0 + 40

    stored = running(attempts=2, history=history)
    del stored["lease"]["startedAt"]
    # Written before lease start times were: it began when attempt 1 ended.
    without = task_decisions.decide(task(status=stored), facts())
    assert without.restored is not None
    assert without.restored.started_at == T0 + 3


def test_a_running_task_with_its_lease_is_looked_at_again_when_the_lease_may_expire() -> None:
    decision = task_decisions.decide(task(status=running()), facts(lease=lease()))
    assert decision == Decision(queue=None, look_again_at=T0 + 40)


def test_an_expired_lease_ends_the_attempt_with_a_retry() -> None:
    the_task = task(status=running(), maxAttempts=3)
    decision = task_decisions.decide(the_task, facts(now=T0 + 41, lease=lease()))
    patch = decision.patch
    assert patch is not None
    assert patch["phase"] == Phase.WAITING
    assert patch["reason"] == Reason.BACKOFF
    assert patch["lease"] is None
    assert patch["history"][-1]["outcome"] == "LeaseExpired"
    assert decision.announce is not None
    assert decision.announce.reason == Reason.LEASE_EXPIRED
    assert decision.lease is LeaseAction.KEEP  # freed once the end is recorded


def test_an_expired_last_attempt_is_dead() -> None:
    the_task = task(status=running(attempts=2), maxAttempts=2)
    decision = task_decisions.decide(the_task, facts(now=T0 + 41, lease=lease(attempt=2)))
    assert decision.patch is not None
    assert decision.patch["phase"] == Phase.DEAD
    assert decision.patch["reason"] == Reason.ATTEMPTS_EXHAUSTED


def test_progress_reported_is_written() -> None:
    progress = {"percent": 50.0, "updatedAt": transitions.iso(T0 + 9)}
    decision = task_decisions.decide(
        task(status=running()), facts(lease=lease(), progress=progress)
    )
    assert decision.patch == {"progress": progress}


def test_a_lease_the_task_no_longer_records_is_ended() -> None:
    status = {"phase": "Waiting", "reason": "Backoff", "attempts": 1}
    decision = task_decisions.decide(task(status=status), facts(lease=lease()))
    assert decision.lease is LeaseAction.END
    queued(decision)


def test_a_task_being_leased_is_left_to_its_grant() -> None:
    assert task_decisions.decide(task(), facts(claimed=True)) == NOTHING


# ------------------------------------------------------------------ deadlines, cancel, TTL


def test_the_active_deadline_is_waited_for_then_ends_the_task() -> None:
    spec = {"activeDeadlineSeconds": 60}
    before = task_decisions.decide(task(**spec), facts())
    assert before.look_again_at == T0 + 60
    queued(before)
    after = task_decisions.decide(task(status=running(), **spec), facts(now=T0 + 60, lease=lease()))
    assert after.patch is not None
    assert after.patch["reason"] == Reason.DEADLINE_EXCEEDED
    assert after.lease is LeaseAction.REVOKE  # the running attempt is told to stop


def test_cancel_records_the_running_attempt_and_revokes_its_lease() -> None:
    decision = task_decisions.decide(task(status=running(), cancel=True), facts(lease=lease()))
    assert decision.patch is not None
    assert decision.patch["phase"] == Phase.CANCELLED
    assert decision.patch["history"][-1]["outcome"] == "Cancelled"
    assert decision.lease is LeaseAction.REVOKE


def test_cancel_while_the_lease_is_not_yet_recorded_records_no_attempt() -> None:
    decision = task_decisions.decide(task(cancel=True), facts(lease=lease()))
    assert decision.patch is not None
    assert decision.patch["phase"] == Phase.CANCELLED
    assert "history" not in decision.patch


def test_a_task_being_deleted_writes_nothing_and_stops_its_attempt() -> None:
    decision = task_decisions.decide(task(status=running(), deleting=True), facts(lease=lease()))
    assert decision.patch is None
    assert decision.lease is LeaseAction.REVOKE


def test_a_finished_task_is_deleted_after_its_ttl() -> None:
    status = {"phase": "Succeeded", "finishedAt": transitions.iso(T0 + 5)}
    the_task = task(status=status, ttlSecondsAfterFinished=30)
    waiting = task_decisions.decide(the_task, facts())
    assert waiting == Decision(look_again_at=T0 + 35)
    assert task_decisions.decide(the_task, facts(now=T0 + 35)).delete


def test_a_finished_task_without_ttl_stays_and_frees_a_stale_lease() -> None:
    the_task = task(status={"phase": "Dead"})
    assert task_decisions.decide(the_task, facts()) == Decision()
    assert task_decisions.decide(the_task, facts(lease=lease())).lease is LeaseAction.END


# ------------------------------------------------------------------ retry annotation


def test_a_dead_task_is_retried_by_a_new_annotation_value() -> None:
    dead = {"phase": "Dead", "attempts": 3, "reason": "AttemptsExhausted"}
    the_task = task(status=dead, annotations={RETRY_ANNOTATION: "1"})
    decision = task_decisions.decide(the_task, facts())
    assert decision.patch is not None
    assert decision.patch["phase"] == Phase.PENDING
    assert decision.patch["attempts"] == 0
    assert decision.patch["observedRetry"] == "1"
    assert decision.announce is not None
    assert decision.announce.reason == Reason.RETRIED
    seen = {**dead, "observedRetry": "1"}
    assert task_decisions.decide(task(status=seen, annotations={RETRY_ANNOTATION: "1"}), facts())


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        ("again", {"phase": "Running"}, Reason.RETRY_IGNORED),
        (" ", {"phase": "Dead"}, Reason.INVALID_ANNOTATION),
        ("x" * 254, {"phase": "Dead"}, Reason.INVALID_ANNOTATION),
    ],
)
def test_a_retry_value_that_cannot_be_acted_on_is_remembered_and_reported(
    value: str, status: dict[str, Any], reason: Reason
) -> None:
    decision = task_decisions.decide(
        task(status=status, annotations={RETRY_ANNOTATION: value}), facts()
    )
    assert decision.patch == {"observedRetry": value}
    assert decision.announce is not None
    assert decision.announce.reason == reason
    assert decision.queue == KEEP


# ------------------------------------------------------------------ dependencies


def other(name: str, phase: str | None = None, **spec: Any) -> Task:
    return task(name=name, status={"phase": phase} if phase else None, **spec)


def test_a_task_waits_for_its_dependencies_and_says_which() -> None:
    the_task = task(dependsOn=[{"name": "a"}, {"name": "b"}])
    decision = task_decisions.decide(the_task, facts(neighbours=Others(other("a", "Running"))))
    assert decision.queue is None
    assert decision.patch is not None
    assert decision.patch["reason"] == Reason.DEPENDENCIES
    assert decision.patch["message"] == "waiting for a; no such Task: b"


def test_a_missing_dependency_is_not_reported_before_every_task_is_listed() -> None:
    the_task = task(dependsOn=[{"name": "later"}])
    decision = task_decisions.decide(the_task, facts(synced=False))
    assert decision.patch is None
    assert decision.queue is None


def test_dependencies_met_queue_the_task() -> None:
    the_task = task(dependsOn=[{"name": "a"}, {"name": "b", "condition": "Finished"}])
    neighbours = Others(other("a", "Succeeded"), other("b", "Dead"))
    queued(task_decisions.decide(the_task, facts(neighbours=neighbours)))


def test_a_dependency_that_can_no_longer_hold_is_dead() -> None:
    the_task = task(dependsOn=[{"name": "a"}])
    decision = task_decisions.decide(the_task, facts(neighbours=Others(other("a", "Dead"))))
    assert decision.patch is not None
    assert decision.patch["reason"] == Reason.DEPENDENCY_FAILED
    assert "'a' ended Dead, not Succeeded" in decision.patch["message"]


def test_a_cycle_is_dead_and_named() -> None:
    ping = task(name="t", dependsOn=[{"name": "pong"}])
    pong = other("pong", dependsOn=[{"name": "t"}])
    decision = task_decisions.decide(ping, facts(neighbours=Others(ping, pong)))
    assert decision.patch is not None
    assert decision.patch["reason"] == Reason.DEPENDENCY_CYCLE
    assert decision.patch["message"] == "dependency cycle: t → pong → t"


def test_dependencies_are_looked_at_only_before_the_first_attempt() -> None:
    status = {"phase": "Waiting", "reason": "Backoff", "attempts": 1}
    the_task = task(status=status, dependsOn=[{"name": "gone"}])
    queued(task_decisions.decide(the_task, facts()))


# ------------------------------------------------------------------ outcomes


def outcome_of(request: CompleteRequest, the_task: Task | None = None) -> dict[str, Any]:
    return task_decisions.outcome(the_task or task(status=running()), lease(), request, QUEUE, T0)


def test_outcomes_become_patches() -> None:
    ok = outcome_of(CompleteRequest(lease_id="L", outcome=Outcome.SUCCEEDED, result={"n": 1}))
    assert ok["phase"] == Phase.SUCCEEDED
    assert ok["result"] == {"n": 1}
    released = outcome_of(CompleteRequest(lease_id="L", outcome=Outcome.RELEASED))
    assert released["phase"] == Phase.PENDING
    assert released["attempts"] == 0
    error = ReportedError(message="slow", timed_out=True)
    timed_out = outcome_of(CompleteRequest(lease_id="L", outcome=Outcome.FAILED, error=error))
    assert timed_out["history"][-1]["outcome"] == "TimedOut"
    assert timed_out["phase"] == Phase.WAITING
    permanent = ReportedError(message="no", retryable=False)
    dead = outcome_of(CompleteRequest(lease_id="L", outcome=Outcome.FAILED, error=permanent))
    assert dead["reason"] == Reason.PERMANENT_FAILURE
    assert task_decisions.ended(dead) is not None
    assert task_decisions.ended(ok) is None


def test_a_result_over_the_limit_fails_the_task_for_good() -> None:
    big = CompleteRequest(
        lease_id="L", outcome=Outcome.SUCCEEDED, result={"x": "y" * RESULT_MAX_BYTES}
    )
    patch = outcome_of(big)
    assert patch["phase"] == Phase.DEAD
    assert patch["lastError"]["type"] == "ResultTooLarge"


def test_backoff_jitter_is_the_same_for_the_same_attempt() -> None:
    jittery = task(status=running(), backoff={"initialSeconds": 10, "jitter": 0.5})
    request = CompleteRequest(lease_id="L", outcome=Outcome.FAILED, error=ReportedError())
    first = outcome_of(request, jittery)
    assert outcome_of(request, jittery)["nextAttemptAt"] == first["nextAttemptAt"]


def test_retry_settings_come_from_the_task_then_the_queue_then_defaults() -> None:
    queue = TaskQueueSpec.model_validate({"retryPolicy": {"maxAttempts": 7}})
    assert task_decisions.retry_settings(task(maxAttempts=2).spec, queue).max_attempts == 2
    assert task_decisions.retry_settings(task().spec, queue).max_attempts == 7
    assert task_decisions.retry_settings(task().spec, None).max_attempts == 3


def test_an_invalid_task_is_dead_once() -> None:
    decision = task_decisions.invalid({}, "invalid Task: spec.type: missing", T0)
    assert decision.patch is not None
    assert decision.patch["reason"] == Reason.INVALID_TASK
    dead = task_decisions.invalid({"phase": "Dead"}, "x", T0)
    assert dead == Decision(lease=LeaseAction.REVOKE)  # no write; not queued, not running
