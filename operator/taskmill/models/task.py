"""The ``Task`` resource: one unit of work, and its delivery contract.

Life of a Task (who moves it, and what a crash does):

``Pending``
    Eligible and queued. A new Task reads as ``Pending`` before the operator
    has written anything (the CRD defaults ``status.phase``), so creating a
    Task costs no status write. Only the leader operator moves it on.
``Waiting``
    Not yet eligible: ``reason`` says why (``RunAt``, ``Backoff``,
    ``QueueNotFound``, ``Dependencies``, ...) and ``nextAttemptAt`` says when,
    if a time decides it. The operator leases a Waiting Task directly once its
    time has come; there is no separate write back to ``Pending``.
``Running``
    Leased to a worker. The lease (``status.lease``) is written, with a
    resourceVersion precondition, *before* the worker is told about the Task,
    so a crash of the operator can never hand out work that the API does not
    record. A lease lives ``leaseSeconds`` and is extended by heartbeats; if
    they stop (worker killed, network cut), the lease expires, the attempt is
    recorded as ``LeaseExpired`` and the Task is retried: delivery is
    at-least-once, and handlers make side effects idempotent with the Task's
    ``uid`` and ``attempt``.
``Succeeded``
    The handler returned; ``result`` holds its (small) return value.
``Dead``
    Attempts exhausted, deadline passed, a non-retryable failure, or a failed
    dependency. The Task stays, inspectable, until its TTL; the annotation
    ``taskmill.dev/retry=<new value>`` starts it again (a user intent, not a
    spec change, so GitOps tools see no drift).
``Cancelled``
    ``spec.cancel: true`` (or deletion). A running attempt learns it from its
    next heartbeat reply.

Retries: the delay before attempt ``n`` (n >= 2) is
``min(maxSeconds, initialSeconds * factor ** (n - 2))`` after the failure of
attempt ``n - 1``, then spread by ``±jitter``. With the defaults (1 s, x2,
300 s, 10 %) attempts 2, 3, 4, ... start about 1 s, 2 s, 4 s, ... after the
previous failure, never more than 300 s (+10 %).

``metadata.name`` is the idempotency key: creating a Task that exists is a
conflict, never a second execution.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import ConfigDict, Field

from taskmill.models.base import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    HANDLER_TYPE,
    ApiModel,
    Condition,
    ConditionStatus,
    Timestamp,
    cel,
    validations,
)

#: Largest accepted ``spec.payload``, serialized as compact JSON. Larger inputs
#: go through ``spec.payloadFrom`` (a ConfigMap or Secret key). The API server
#: cannot measure JSON size in a schema, so the SDK and CLI refuse larger
#: payloads before sending and the operator marks such a Task Dead
#: (``PayloadTooLarge``) if one arrives another way.
PAYLOAD_MAX_BYTES = 64 * 1024
#: Largest ``status.result`` (compact JSON) a worker may report.
RESULT_MAX_BYTES = 16 * 1024
#: Longest traceback kept in ``status.lastError.traceback``; the tail is kept.
TRACEBACK_MAX_CHARS = 4096
#: Longest error message kept.
MESSAGE_MAX_CHARS = 1024
#: Attempts kept in ``status.history`` (oldest dropped first).
HISTORY_LIMIT = 20

#: Built-in defaults, used when neither the Task nor its TaskQueue sets them.
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_QUEUE = "default"

#: Annotation a user sets to a new value to retry a Dead Task.
RETRY_ANNOTATION = "taskmill.dev/retry"


class Phase(enum.StrEnum):
    PENDING = "Pending"
    WAITING = "Waiting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    DEAD = "Dead"
    CANCELLED = "Cancelled"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_PHASES


FINISHED_PHASES = frozenset({Phase.SUCCEEDED, Phase.DEAD, Phase.CANCELLED})


class DependencyCondition(enum.StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    FINISHED = "Finished"


class AttemptOutcome(enum.StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    LEASE_EXPIRED = "LeaseExpired"
    CANCELLED = "Cancelled"
    #: Handed back by a worker shutting down; does not count as an attempt.
    RELEASED = "Released"


class Backoff(ApiModel):
    """Exponential backoff between attempts; unset fields come from the queue,
    then from the built-in defaults below."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.initialSeconds) || !has(self.maxSeconds)"
                " || self.maxSeconds >= self.initialSeconds",
                "maxSeconds must be at least initialSeconds",
                field_path=".maxSeconds",
            )
        )
    )

    initial_seconds: float | None = Field(
        default=None, ge=0, le=86400, description="Delay before the second attempt. Default 1."
    )
    factor: float | None = Field(
        default=None, ge=1, le=100, description="Growth of the delay per attempt. Default 2."
    )
    max_seconds: float | None = Field(
        default=None, ge=0, le=604800, description="Largest delay. Default 300."
    )
    jitter: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Spread of each delay as a fraction, e.g. 0.1 for ±10 %. Default 0.1.",
    )


class KeyRef(ApiModel):
    """A key of a ConfigMap or Secret in the Task's namespace."""

    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="Its name.")
    key: str = Field(
        min_length=1, max_length=253, description="The key holding the payload, a JSON object."
    )


class PayloadFrom(ApiModel):
    """A payload too large for ``spec.payload``: exactly one key reference."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.configMapKeyRef) != has(self.secretKeyRef)",
                "set exactly one of configMapKeyRef and secretKeyRef",
            )
        )
    )

    config_map_key_ref: KeyRef | None = Field(default=None, description="A ConfigMap key.")
    secret_key_ref: KeyRef | None = Field(default=None, description="A Secret key.")


class Dependency(ApiModel):
    name: str = Field(
        pattern=DNS_SUBDOMAIN, max_length=253, description="A Task in the same namespace."
    )
    condition: DependencyCondition = Field(
        default=DependencyCondition.SUCCEEDED,
        description="What the dependency must end as: Succeeded, Failed, or Finished (either).",
    )


class TaskSpec(ApiModel):
    """What to run and how: written by the user, never by the operator."""

    # "A Task does not depend on itself" needs metadata.name, which a rule
    # here cannot see: it sits on the whole object, in resources.TASK.
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.payload) || !has(self.payloadFrom)",
                "payload and payloadFrom are mutually exclusive",
                field_path=".payloadFrom",
            )
        )
    )

    type: str = Field(
        pattern=HANDLER_TYPE,
        max_length=253,
        description="The handler name workers route on, e.g. send_email.",
    )
    payload: dict[str, Any] | None = Field(
        default=None,
        description=(
            f"Free JSON object handed to the handler; at most {PAYLOAD_MAX_BYTES // 1024} KiB "
            "as compact JSON (use payloadFrom for more)."
        ),
    )
    payload_from: PayloadFrom | None = Field(
        default=None, description="Take the payload from a ConfigMap or Secret key instead."
    )
    priority: int = Field(
        default=0,
        ge=-1_000_000,
        le=1_000_000,
        description="Higher runs first; FIFO by creation within a priority.",
    )
    queue: str = Field(
        default=DEFAULT_QUEUE,
        pattern=DNS_LABEL,
        max_length=63,
        description="The TaskQueue whose limits apply.",
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description=f"Attempts before Dead. Default: the queue's, else {DEFAULT_MAX_ATTEMPTS}.",
    )
    backoff: Backoff | None = Field(default=None, description="Delay between attempts.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=7 * 86400, description="Limit of one attempt."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Limit of the whole Task, from creation; then Dead."
    )
    run_at: Timestamp | None = Field(default=None, description="Earliest start time.")
    depends_on: list[Dependency] | None = Field(
        default=None,
        max_length=64,
        description="Tasks in this namespace that must finish first.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the Task this long after it finished."
    )
    cancel: bool = Field(default=False, description="Stop the Task (and a running attempt).")


class TaskError(ApiModel):
    """The error of the last failed attempt."""

    type: str = Field(default="", description="Exception class, or a Taskmill reason.")
    message: str = Field(
        default="", max_length=MESSAGE_MAX_CHARS, description="What the error said."
    )
    traceback: str | None = Field(
        default=None,
        max_length=TRACEBACK_MAX_CHARS,
        description=f"The end of the handler's traceback (the last {TRACEBACK_MAX_CHARS} chars).",
    )


class Lease(ApiModel):
    """The worker running the current attempt, and until when."""

    worker: str = Field(description="Name of the worker holding the lease.")
    id: str = Field(description="Lease id; calls naming another id get 409.")
    holder: str | None = Field(
        default=None,
        max_length=512,
        description="The authenticated identity the lease was granted to (the worker's "
        "ServiceAccount user, with '/<pod>' when its token is bound to a pod); only it may "
        "heartbeat or complete the lease. Unset when the lease API does not authenticate.",
    )
    expires_at: Timestamp = Field(description="When the lease ends without a heartbeat.")
    started_at: Timestamp | None = Field(
        default=None,
        description="When this attempt's lease was granted: its history entry's startedAt "
        "after an operator restart.",
    )


class Progress(ApiModel):
    """What the running handler last reported with ctx.progress()."""

    percent: float | None = Field(default=None, ge=0, le=100, description="0 to 100.")
    message: str | None = Field(
        default=None, max_length=MESSAGE_MAX_CHARS, description="The handler's words."
    )
    updated_at: Timestamp | None = Field(default=None, description="When it was reported.")


class Attempt(ApiModel):
    """One attempt in ``status.history``."""

    attempt: int = Field(ge=1, description="Its number, from 1.")
    worker: str | None = Field(default=None, description="The worker that ran it.")
    started_at: Timestamp | None = Field(default=None, description="When it was leased.")
    finished_at: Timestamp | None = Field(default=None, description="When it ended.")
    outcome: AttemptOutcome = Field(description="How it ended.")
    message: str | None = Field(
        default=None, max_length=MESSAGE_MAX_CHARS, description="Why, when it did not succeed."
    )


class TaskStatus(ApiModel):
    """Observed state, written only by the operator through the status subresource."""

    phase: Phase = Field(
        default=Phase.PENDING,
        description="Pending, Waiting, Running, Succeeded, Dead or Cancelled.",
    )
    reason: str | None = Field(default=None, description="Why the Task is in its phase.")
    message: str | None = Field(
        default=None, max_length=MESSAGE_MAX_CHARS, description="The reason, for people."
    )
    attempts: int = Field(default=0, ge=0, description="Attempts started so far.")
    next_attempt_at: Timestamp | None = Field(
        default=None, description="When a Waiting Task becomes eligible again."
    )
    started_at: Timestamp | None = Field(default=None, description="When it was first leased.")
    finished_at: Timestamp | None = Field(
        default=None, description="When it became Succeeded, Dead or Cancelled."
    )
    last_error: TaskError | None = Field(
        default=None, description="The error of the last failed attempt."
    )
    result: Any | None = Field(
        default=None,
        description=f"The handler's return value; at most {RESULT_MAX_BYTES // 1024} KiB.",
    )
    progress: Progress | None = Field(
        default=None, description="The running attempt's last progress report."
    )
    lease: Lease | None = Field(default=None, description="The current attempt's lease.")
    history: list[Attempt] | None = Field(
        default=None,
        max_length=HISTORY_LIMIT,
        description=f"The last {HISTORY_LIMIT} attempts, oldest first.",
    )
    conditions: list[Condition] | None = Field(
        description=(
            "Complete and Failed, as a Job's; Ready, Reconciling and Stalled, as kstatus"
            " reads; Cancelled."
        ),
        # A Task nobody has written to yet is in progress (kstatus reads it so).
        default_factory=lambda: _queued_conditions(),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The generation of the spec this status describes."
    )
    observed_retry: str | None = Field(
        default=None, description=f"The last {RETRY_ANNOTATION} value acted upon."
    )


class TaskTemplateMeta(ApiModel):
    """Labels and annotations given to each Task made from a template."""

    labels: dict[str, str] | None = Field(default=None, description="Labels of each Task.")
    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations of each Task."
    )


class Reason(enum.StrEnum):
    """Machine-readable ``status.reason`` values: part of the API contract."""

    RUN_AT = "RunAt"
    BACKOFF = "Backoff"
    RETRY_REQUESTED = "RetryRequested"
    QUEUE_NOT_FOUND = "QueueNotFound"
    QUEUE_PAUSED = "QueuePaused"
    DEPENDENCIES = "Dependencies"
    NO_WORKER = "NoWorker"
    ATTEMPTS_EXHAUSTED = "AttemptsExhausted"
    PERMANENT_FAILURE = "PermanentFailure"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    DEPENDENCY_FAILED = "DependencyFailed"
    DEPENDENCY_CYCLE = "DependencyCycle"
    RETRIED = "Retried"
    RETRY_IGNORED = "RetryIgnored"
    INVALID_ANNOTATION = "InvalidAnnotation"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    INVALID_TASK = "InvalidTask"
    CANCELLED = "Cancelled"
    RELEASED = "Released"
    LEASE_EXPIRED = "LeaseExpired"


#: Task condition types, like a Job's: ``Complete`` when Succeeded, ``Failed``
#: when Dead. ``kubectl wait --for=condition=Complete task/NAME`` works.
CONDITION_COMPLETE = "Complete"
CONDITION_FAILED = "Failed"
#: kstatus' conditions (Flux, cli-utils; Argo CD through the shipped health
#: checks): ``Ready`` once Succeeded, ``Reconciling`` while on its way,
#: ``Stalled`` when Dead. See :mod:`taskmill.dispatch.conditions`.
CONDITION_READY = "Ready"
CONDITION_RECONCILING = "Reconciling"
CONDITION_STALLED = "Stalled"
#: A Cancelled Task's only condition.
CONDITION_CANCELLED = "Cancelled"


def _queued_conditions() -> list[Condition]:
    message = "waiting to be leased"
    return [
        Condition(
            type=CONDITION_READY, status=ConditionStatus.FALSE, reason="Pending", message=message
        ),
        Condition(
            type=CONDITION_RECONCILING,
            status=ConditionStatus.TRUE,
            reason="Pending",
            message=message,
        ),
    ]
