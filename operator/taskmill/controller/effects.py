"""The operator's writes to the API server, for Tasks and CronTasks alike.

Three kinds of effect, each done one way:

- **status writes** — a JSON merge patch of ``/status`` carrying
  ``metadata.resourceVersion``, so a decision based on a version that has
  since changed is refused (409) instead of overwriting what it did not see;
- **deletes** — with a uid precondition, so an object deleted and created
  again under the same name is never the one deleted;
- **Events** — rate-limited (:class:`~taskmill.controller.events.EventRecorder`).

And one policy for what goes wrong, :func:`classify`:

============  ===================================  ===============================
failure       what it means                        what the caller does
============  ===================================  ===============================
CONFLICT      changed since it was read            read it again, decide again
GONE          deleted                              nothing: its DELETED event ends it
TRANSIENT     the API server is away (5xx, 429,    decide again after the write
              unreachable, timed out)              gate's wait (:attr:`Effects.outage`)
REFUSED       any other answer (4xx)               log it; look again on the next change
============  ===================================  ===============================

Write budget per Task (API writes, the happy path):

=====================  =====  ==============================================
write                  who    why
=====================  =====  ==============================================
create                 user   the Task itself (``kubectl apply``, the SDK)
status → Running       us     the lease, recorded before a worker sees it
status → Succeeded     us     result, finishedAt, history, condition
=====================  =====  ==============================================

Three writes, and nothing else: a new Task reads as ``Pending`` through the
CRD's status default (no write), kopf handlers write nothing (event handlers
only, no finalizers, no annotations), heartbeats extend leases in memory only,
and Events are rate-limited. Each retry adds one write (``Waiting`` with
``nextAttemptAt``), and a Task that waits for a reason (unknown queue, no
worker) costs one write to say so.

Writes that fail because the API server is away feed
:class:`~taskmill.dispatch.outage.Outage`, which callers ask before work that
needs a write; its start and end are logged once each.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any

from taskmill.controller.events import EventRecorder
from taskmill.dispatch.clock import Clock
from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.outage import Outage
from taskmill.dispatch.transitions import StatusPatch
from taskmill.kube.client import UNREACHABLE, ApiError, KubeClient, path

log = logging.getLogger(__name__)


class Failure(enum.Enum):
    CONFLICT = "conflict"
    GONE = "gone"
    TRANSIENT = "transient"
    REFUSED = "refused"


def classify(exc: BaseException) -> Failure | None:
    """What a failed request means for its caller; None if it is not an API failure."""
    if isinstance(exc, ApiError):
        if exc.is_conflict:
            return Failure.CONFLICT
        if exc.is_not_found:
            return Failure.GONE
        return Failure.TRANSIENT if exc.is_transient else Failure.REFUSED
    if isinstance(exc, UNREACHABLE):
        return Failure.TRANSIENT
    return None


@dataclass(frozen=True, slots=True)
class Written:
    """The result of a status write: the object as written, or why it was not."""

    body: dict[str, Any] | None = None
    failure: Failure | None = None
    error: BaseException | None = None

    @property
    def landed(self) -> bool:
        return self.body is not None


class Effects:
    def __init__(
        self,
        client: KubeClient,
        clock: Clock,
        *,
        max_concurrent_writes: int,
        events_per_second: float,
        component: str,
    ) -> None:
        self.client = client
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrent_writes)
        self.events = EventRecorder(
            client, per_second=events_per_second, component=component, clock=clock
        )
        self.outage = Outage()
        self.writes = 0
        self.conflicts = 0

    async def write_status(
        self,
        plural: str,
        key: TaskKey,
        resource_version: str,
        patch: StatusPatch,
        generation: int | None = None,
    ) -> Written:
        """Merge ``patch`` into the object's status if it is still at ``resource_version``.

        Never raises for an API failure: the result says which one it was.
        """
        if generation is not None:
            patch = {**patch, "observedGeneration": generation}
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        async with self._slots:
            self.writes += 1
            try:
                result: dict[str, Any] = await self.client.merge_patch(
                    path(plural, *key, "status"), body
                )
            except Exception as exc:
                failure = classify(exc)
                if failure is None:
                    raise
                self._failed(plural, key, exc, failure)
                return Written(failure=failure, error=exc)
        if ended := self.outage.succeeded(self._clock.now()):
            log.info(
                "the API server takes status writes again, after %.1fs and %d failed probes",
                ended.seconds,
                ended.failures,
            )
        return Written(body=result)

    def _failed(self, plural: str, key: TaskKey, exc: BaseException, failure: Failure) -> None:
        if failure is Failure.CONFLICT:
            self.conflicts += 1
            log.debug("status write for %s %s/%s: changed meanwhile", plural, *key)
        elif failure is Failure.TRANSIENT:
            if self.outage.failed(self._clock.now()):
                log.warning(
                    "the API server does not take status writes (%s); leasing and "
                    "outcomes wait, probing again with backoff up to %gs",
                    exc,
                    self.outage.backoff.max_seconds,
                )
        elif failure is Failure.REFUSED:
            log.warning("status write for %s %s/%s refused: %s", plural, *key, exc)

    async def read(self, plural: str, key: TaskKey) -> dict[str, Any] | None:
        """The object as stored now; None when it is gone or cannot be read."""
        try:
            body: dict[str, Any] = await self.client.get(path(plural, *key))
        except Exception as exc:
            if classify(exc) is None:
                raise
            if classify(exc) is not Failure.GONE:
                log.debug("cannot read %s %s/%s: %s", plural, *key, exc)
            return None
        return body

    async def delete(self, plural: str, key: TaskKey, uid: str, why: str) -> bool:
        """Delete the object if it is still the one with ``uid``; True when deleted
        (or already gone)."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self.client.delete(path(plural, *key), options)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if failure is Failure.GONE:
                return True
            if failure is not Failure.CONFLICT:  # a conflict: another object by now
                log.warning("cannot delete %s %s/%s (%s): %s", plural, *key, why, exc)
            return False
        log.info("deleted %s %s/%s: %s", plural, *key, why)
        return True

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event about ``obj``; never raises."""
        await self.events.record(obj, type_, reason, message)
