"""The Task model: a full manifest parses, bad input is refused, dumps are API-ready."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from taskmill.models import resources, task

MANIFEST = """
apiVersion: taskmill.dev/v1alpha1
kind: Task
metadata:
  name: invoice-2024-0001
  namespace: billing
  labels: {team: billing}
spec:
  type: billing.send_invoice
  payload: {customer: 42, lines: [{sku: A1, qty: 2}], draft: false}
  priority: 10
  queue: billing
  maxAttempts: 5
  backoff: {initialSeconds: 2, factor: 3, maxSeconds: 600, jitter: 0.2}
  timeoutSeconds: 120
  activeDeadlineSeconds: 3600
  runAt: "2030-01-02T03:04:05Z"
  dependsOn:
  - name: render-invoice
  - name: notify-failure
    condition: Failed
  ttlSecondsAfterFinished: 86400
status:
  phase: Running
  attempts: 2
  lease: {worker: worker-0, id: abc, expiresAt: "2030-01-02T03:05:00Z"}
  history:
  - {attempt: 1, worker: worker-0, outcome: Failed, message: boom}
  result: [1, 2, 3]
  conditions:
  - {type: Complete, status: "False", reason: Running}
"""


def manifest(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(MANIFEST)
    doc["spec"].update(spec)
    return doc


def test_full_manifest_parses() -> None:
    obj = resources.Task.model_validate(yaml.safe_load(MANIFEST))
    assert obj.metadata.name == "invoice-2024-0001"
    assert obj.spec.type == "billing.send_invoice"
    assert obj.spec.payload == {"customer": 42, "lines": [{"sku": "A1", "qty": 2}], "draft": False}
    assert obj.spec.backoff is not None
    assert obj.spec.backoff.max_seconds == 600
    assert obj.spec.run_at == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert obj.spec.depends_on is not None
    assert [d.condition for d in obj.spec.depends_on] == [
        task.DependencyCondition.SUCCEEDED,
        task.DependencyCondition.FAILED,
    ]
    assert obj.status is not None
    assert obj.status.phase is task.Phase.RUNNING
    assert obj.status.result == [1, 2, 3]
    assert obj.status.history is not None
    assert obj.status.history[0].outcome is task.AttemptOutcome.FAILED


def test_minimal_spec_takes_the_defaults() -> None:
    spec = task.TaskSpec.model_validate({"type": "noop"})
    assert spec.priority == 0
    assert spec.queue == task.DEFAULT_QUEUE
    assert spec.cancel is False
    assert spec.max_attempts is None  # resolved later: Task, then queue, then built-in


def test_new_status_reads_pending() -> None:
    assert task.TaskStatus().phase is task.Phase.PENDING
    # The CRD's status default is what a fresh TaskStatus dumps to: Pending,
    # and in progress (Reconciling) for kstatus, before any write.
    assert resources.TASK.status_default == task.TaskStatus().to_api()
    conditions = {c["type"]: c["status"] for c in resources.TASK.status_default["conditions"]}
    assert conditions == {"Ready": "False", "Reconciling": "True"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", "high"),  # wrong type
        ("priority", 1_000_001),  # out of range
        ("maxAttempts", 0),
        ("timeoutSeconds", 0),
        ("queue", "Not_A_Label"),  # bad pattern
        ("queue", "x" * 64),  # too long
        ("type", "1starts-with-digit"),
        ("type", "has space"),
        ("payload", [1, 2]),  # a payload is an object
        ("backoff", {"jitter": 1.5}),
        ("backoff", {"factor": 0.5}),
        ("dependsOn", [{"name": "Upper"}]),
        ("dependsOn", [{"name": "a", "condition": "Sometimes"}]),
        ("runAt", "next tuesday"),
        ("cancel", "maybe"),
    ],
)
def test_bad_spec_is_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        resources.Task.model_validate(manifest(**{field: value}))


def test_missing_type_is_refused() -> None:
    doc = manifest()
    del doc["spec"]["type"]
    with pytest.raises(ValidationError, match="type"):
        resources.Task.model_validate(doc)


def test_to_api_is_camel_case_without_nones() -> None:
    spec = task.TaskSpec(type="noop", max_attempts=2, backoff=task.Backoff(initial_seconds=1.5))
    assert spec.to_api() == {
        "type": "noop",
        "priority": 0,
        "queue": "default",
        "maxAttempts": 2,
        "backoff": {"initialSeconds": 1.5},
        "cancel": False,
    }


def test_to_api_round_trips_the_manifest() -> None:
    doc = yaml.safe_load(MANIFEST)
    dumped = resources.Task.model_validate(doc).to_api()
    assert dumped["spec"]["dependsOn"] == [
        {"name": "render-invoice", "condition": "Succeeded"},
        {"name": "notify-failure", "condition": "Failed"},
    ]
    assert dumped["spec"]["runAt"] == "2030-01-02T03:04:05Z"
    assert dumped["status"]["lease"] == {
        "worker": "worker-0",
        "id": "abc",
        "expiresAt": "2030-01-02T03:05:00Z",
    }
    assert "nextAttemptAt" not in dumped["status"]


def test_unknown_fields_are_ignored_when_parsing() -> None:
    # An older operator must read objects written by a newer CRD; the API
    # server, not the model, refuses unknown fields at apply time.
    spec = task.TaskSpec.model_validate({"type": "noop", "colour": "red"})
    assert "colour" not in spec.to_api()
