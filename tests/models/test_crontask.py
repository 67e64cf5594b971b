"""The CronTask model: a full manifest parses, bad input is refused."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from taskmill.models import crontask, resources

MANIFEST = """
apiVersion: taskmill.dev/v1alpha1
kind: CronTask
metadata: {name: nightly-report, namespace: reports}
spec:
  schedule: "30 2 * * MON-FRI"
  timeZone: Europe/Berlin
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 300
  suspend: false
  successfulTasksHistoryLimit: 5
  failedTasksHistoryLimit: 2
  taskTemplate:
    metadata:
      labels: {app: reports}
      annotations: {owner: team-a}
    spec:
      type: reports.nightly
      payload: {format: pdf}
      queue: reports
      maxAttempts: 2
status:
  lastScheduleTime: "2030-01-01T01:30:00Z"
  nextScheduleTime: "2030-01-02T01:30:00Z"
  active: [{name: nightly-report-1893461400, uid: u-1}]
"""


def manifest(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(MANIFEST)
    doc["spec"].update(spec)
    return doc


def test_full_manifest_parses() -> None:
    obj = resources.CronTask.model_validate(manifest())
    assert obj.spec.concurrency_policy is crontask.ConcurrencyPolicy.FORBID
    assert obj.spec.time_zone == "Europe/Berlin"
    assert obj.spec.task_template.metadata is not None
    assert obj.spec.task_template.metadata.labels == {"app": "reports"}
    assert obj.spec.task_template.spec.type == "reports.nightly"
    assert obj.status is not None
    assert obj.status.active is not None
    assert obj.status.active[0].name == "nightly-report-1893461400"


def test_defaults_match_cronjob() -> None:
    spec = crontask.CronTaskSpec.model_validate(
        {"schedule": "@hourly", "taskTemplate": {"spec": {"type": "noop"}}}
    )
    assert spec.concurrency_policy is crontask.ConcurrencyPolicy.ALLOW
    assert spec.suspend is False
    assert spec.successful_tasks_history_limit == 3
    assert spec.failed_tasks_history_limit == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("concurrencyPolicy", "Sometimes"),
        ("startingDeadlineSeconds", -1),
        ("successfulTasksHistoryLimit", "three"),
        ("failedTasksHistoryLimit", 1001),
        ("timeZone", "Europe Berlin"),
        ("suspend", "no-thanks"),
        ("taskTemplate", {"spec": {}}),  # the template's Task has no type
        ("taskTemplate", {"metadata": {"labels": {"a": 1}}, "spec": {"type": "x"}}),
    ],
)
def test_bad_spec_is_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        resources.CronTask.model_validate(manifest(**{field: value}))


def test_to_api_is_camel_case_without_nones() -> None:
    spec = crontask.CronTaskSpec.model_validate(
        {"schedule": "@daily", "taskTemplate": {"spec": {"type": "noop"}}}
    )
    dumped = spec.to_api()
    assert dumped["concurrencyPolicy"] == "Allow"
    assert dumped["taskTemplate"] == {
        "spec": {"type": "noop", "priority": 0, "queue": "default", "cancel": False}
    }
    assert "timeZone" not in dumped
    assert "startingDeadlineSeconds" not in dumped
