"""The TaskQueue model: a full manifest parses, bad input is refused."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from taskmill.models import resources, taskqueue

MANIFEST = """
apiVersion: taskmill.dev/v1alpha1
kind: TaskQueue
metadata: {name: default, namespace: billing}
spec:
  paused: false
  rateLimits:
  - {type: send_email, perSecond: 5, burst: 10}
  - {type: billing.charge, perSecond: 0.5}
  concurrency:
    total: 100
    perType: [{type: send_email, limit: 4}]
  retryPolicy:
    maxAttempts: 7
    backoff: {initialSeconds: 5, maxSeconds: 60}
    timeoutSeconds: 30
  leaseSeconds: 45
status: {pending: 3, running: 1, dead: 0}
"""


def manifest(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(MANIFEST)
    doc["spec"].update(spec)
    return doc


def test_full_manifest_parses() -> None:
    obj = resources.TaskQueue.model_validate(manifest())
    assert obj.spec.rate_limits is not None
    assert [(r.type, r.per_second, r.burst) for r in obj.spec.rate_limits] == [
        ("send_email", 5.0, 10),
        ("billing.charge", 0.5, 1),
    ]
    assert obj.spec.concurrency is not None
    assert obj.spec.concurrency.per_type is not None
    assert obj.spec.concurrency.per_type[0].limit == 4
    assert obj.spec.retry_policy is not None
    assert obj.spec.retry_policy.max_attempts == 7
    assert obj.spec.lease_seconds == 45


def test_defaults() -> None:
    spec = taskqueue.TaskQueueSpec()
    assert spec.paused is False
    assert spec.lease_seconds == taskqueue.DEFAULT_LEASE_SECONDS
    assert spec.to_api() == {"paused": False, "leaseSeconds": taskqueue.DEFAULT_LEASE_SECONDS}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("paused", "sometimes"),
        ("leaseSeconds", 4),
        ("leaseSeconds", 86401),
        ("rateLimits", [{"type": "x", "perSecond": 0}]),  # perSecond > 0
        ("rateLimits", [{"type": "x", "perSecond": 1, "burst": 0}]),
        ("rateLimits", [{"type": "bad type", "perSecond": 1}]),
        ("rateLimits", [{"perSecond": 1}]),
        ("concurrency", {"total": -1}),
        ("concurrency", {"perType": [{"type": "x"}]}),
        ("retryPolicy", {"maxAttempts": 0}),
    ],
)
def test_bad_spec_is_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        resources.TaskQueue.model_validate(manifest(**{field: value}))
