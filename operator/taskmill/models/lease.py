"""The lease wire protocol between workers and the operator (JSON over HTTP).

A worker long-polls ``POST /v1/lease`` for as many Tasks as it has free
slots, of the types it handles. Each granted Task carries a ``leaseId``
that is already recorded in the Task's status. While the handler runs the
worker sends ``POST /v1/heartbeat`` every ``heartbeatSeconds``; the reply says
whether the Task was cancelled. ``POST /v1/complete`` reports the outcome;
``POST /v1/outcomes`` reports several at once, each answered on its own (a
busy worker sends what finished while its previous report was in flight, so
one request carries many outcomes).
Any call naming a lease that is no longer current (expired, foreign, or
already completed) gets ``409 Conflict`` and changes nothing.

A lease belongs to a :class:`Holder`: the worker name it was leased to and,
when the operator authenticates workers, the identity of the token that
leased it. Heartbeats and completions are checked against both, always: a
call from any other holder gets 409, like a stale lease.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, Strict

from taskmill.models.base import HANDLER_TYPE, ApiModel, Timestamp

#: Header naming the calling worker; heartbeats and completions from another
#: worker than the lease holder's get 409. Required on those calls unless the
#: worker's token is bound to a pod (then the pod's name is the worker).
WORKER_HEADER = "Taskmill-Worker"
#: A worker's name: visible ASCII, so it fits the header unchanged.
WORKER_NAME = r"^[!-~]+$"
#: Longest worker name (a DNS subdomain, like the pod names workers use).
MAX_WORKER_CHARS = 253
#: Longest long-poll a worker may ask for.
MAX_WAIT_SECONDS = 60.0
#: Most Tasks one lease call may ask for.
MAX_BATCH = 256


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: only the same holder may heartbeat or complete it."""

    #: The worker's name: the pod its token is bound to, else the name it
    #: leased under (``LeaseRequest.worker``, then the ``Taskmill-Worker`` header).
    worker: str
    #: The authenticated identity (a ServiceAccount user name, with ``/<pod>``
    #: for a pod-bound token); None when the lease API does not authenticate.
    identity: str | None = None


class WireModel(ApiModel):
    """Requests refuse unknown keys: a typo in a worker is a 400, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class RequestModel(WireModel):
    """A request body, validated strictly: ``"1"`` is no number and ``1`` no
    boolean, so what the OpenAPI document allows is exactly what is taken.
    (The server also refuses snake_case keys: only the documented camelCase.)"""

    model_config = ConfigDict(strict=True)


#: Enums arrive as JSON strings; strict validation would want enum members.
#: Lax for an enum still takes only its values.
_FromJSON = Strict(False)


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: An integer as JSON Schema counts them: ``3`` and ``3.0`` (JSON has one
#: number type), never ``"3"`` or ``true``.
JsonInt = Annotated[int, BeforeValidator(_integral)]


class LeaseRequest(RequestModel):
    worker: str = Field(
        min_length=1,
        max_length=MAX_WORKER_CHARS,
        pattern=WORKER_NAME,
        description="The worker's name (ignored for a pod-bound token: its pod is the name).",
    )
    types: list[Annotated[str, Field(max_length=253, pattern=HANDLER_TYPE)]] = Field(
        min_length=1, max_length=256, description="Task types it handles."
    )
    max: JsonInt = Field(default=1, ge=1, le=MAX_BATCH, description="Free slots.")
    wait_seconds: float = Field(default=20.0, ge=0, le=MAX_WAIT_SECONDS)


class LeasedTask(WireModel):
    lease_id: str
    namespace: str
    name: str
    uid: str
    type: str
    attempt: int = Field(ge=1)
    payload: dict[str, Any] | None = None
    timeout_seconds: float | None = None
    expires_at: Timestamp
    heartbeat_seconds: float


class LeaseResponse(WireModel):
    tasks: list[LeasedTask]


class ProgressReport(RequestModel):
    percent: float | None = Field(default=None, ge=0, le=100)
    message: str | None = Field(default=None, max_length=1024)


class HeartbeatRequest(RequestModel):
    lease_id: str = Field(min_length=1, max_length=128)
    progress: ProgressReport | None = None


class HeartbeatResponse(WireModel):
    expires_at: Timestamp
    cancel: bool = False


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: The worker hands the Task back unstarted or unfinished (shutdown); the
    #: attempt does not count.
    RELEASED = "released"


class ReportedError(RequestModel):
    type: str = Field(default="Error", max_length=256)
    message: str = Field(default="", max_length=64 * 1024)
    traceback: str | None = Field(default=None, max_length=256 * 1024)
    retryable: bool = True
    #: A handler's ``Retry(delay_seconds=...)``: overrides the backoff delay.
    retry_after_seconds: float | None = Field(default=None, ge=0, le=7 * 86400)
    timed_out: bool = False


class CompleteRequest(RequestModel):
    lease_id: str = Field(min_length=1, max_length=128)
    outcome: Annotated[Outcome, _FromJSON]
    result: Any | None = None
    error: ReportedError | None = None


class OutcomesRequest(RequestModel):
    outcomes: list[CompleteRequest] = Field(min_length=1, max_length=MAX_BATCH)


class OutcomeResult(WireModel):
    lease_id: str
    #: ``None``: taken. ``LeaseConflict``: the lease is not current (as a 409
    #: of ``/v1/complete``). ``Unavailable``: the API server takes no writes
    #: now, and ``InternalError``: not taken; report it again.
    error: str | None = None


class OutcomesResponse(WireModel):
    results: list[OutcomeResult]


class ErrorBody(WireModel):
    error: str
    message: str
