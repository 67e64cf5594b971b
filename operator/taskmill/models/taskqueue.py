"""The ``TaskQueue`` resource: limits and defaults shared by the Tasks that
name it in ``spec.queue``.

Edits take effect at once (the operator watches queues). A Task naming a queue
that does not exist waits with reason ``QueueNotFound`` and starts when the
queue appears. How many Tasks a namespace may hold is not a queue setting: use
Kubernetes' own object-count quota, ``ResourceQuota`` with
``count/tasks.taskmill.dev``.
"""

from __future__ import annotations

from pydantic import Field

from taskmill.models.base import HANDLER_TYPE, ApiModel, Condition
from taskmill.models.task import Backoff

#: Lease duration when neither queue nor operator settings give one.
DEFAULT_LEASE_SECONDS = 30


class RateLimit(ApiModel):
    """A token bucket for one task type: ``burst`` starts at once, then
    ``perSecond`` on average."""

    type: str = Field(pattern=HANDLER_TYPE, max_length=253, description="The task type limited.")
    per_second: float = Field(gt=0, le=1_000_000, description="Leases per second on average.")
    burst: int = Field(default=1, ge=1, le=1_000_000, description="Leases at once after a pause.")


class TypeLimit(ApiModel):
    """A concurrency limit for one task type."""

    type: str = Field(pattern=HANDLER_TYPE, max_length=253, description="The task type limited.")
    limit: int = Field(ge=0, le=1_000_000, description="Running Tasks of this type at most.")


class Concurrency(ApiModel):
    """How many of the queue's Tasks may run at once."""

    total: int | None = Field(default=None, ge=0, description="Running Tasks at most.")
    per_type: list[TypeLimit] | None = Field(
        default=None,
        description="Running Tasks at most, per task type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class RetryPolicy(ApiModel):
    """Defaults for Tasks of this queue that do not set their own."""

    max_attempts: int | None = Field(
        default=None, ge=1, le=1000, description="Attempts before a Task is Dead."
    )
    backoff: Backoff | None = Field(default=None, description="Delay between attempts.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=7 * 86400, description="Limit of one attempt."
    )


class TaskQueueSpec(ApiModel):
    """Limits and retry defaults for the Tasks that name this queue."""

    paused: bool = Field(default=False, description="Lease nothing from this queue.")
    rate_limits: list[RateLimit] | None = Field(
        default=None,
        description="A token bucket per task type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    concurrency: Concurrency | None = Field(
        default=None, description="How many Tasks may run at once."
    )
    retry_policy: RetryPolicy | None = Field(
        default=None, description="Retry settings for Tasks that set none."
    )
    lease_seconds: int = Field(
        default=DEFAULT_LEASE_SECONDS,
        ge=5,
        le=86400,
        description="How long a lease lives without a heartbeat (visibility timeout).",
    )


class TaskQueueStatus(ApiModel):
    """Reserved for the operator's observations; none are written yet. Counts
    per queue are live in ``taskmill stats`` and the ``taskmill_tasks`` metric."""

    conditions: list[Condition] | None = Field(
        default=None,
        description="Standard conditions (none are set yet).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The generation these conditions describe."
    )
