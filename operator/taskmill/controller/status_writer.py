"""Status writes with a resourceVersion precondition.

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

Every write is a JSON merge patch of ``/status`` that carries
``metadata.resourceVersion``: if anything changed the Task since we looked,
the API server answers 409 and nothing is written. Writes run concurrently,
bounded by a semaphore.

Writes that fail because the API server is away (unreachable, 5xx, 429) feed
:class:`~taskmill.dispatch.outage.Outage`, which the engine asks before work
that needs a write; its start and end are logged once each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from taskmill.dispatch.clock import Clock
from taskmill.dispatch.outage import Outage
from taskmill.kube.client import ApiError, KubeClient, is_transient, path
from taskmill.models.resources import Task

log = logging.getLogger(__name__)

StatusPatch = dict[str, Any]


class StatusWriter:
    def __init__(self, client: KubeClient, clock: Clock, *, max_concurrent: int) -> None:
        self._client = client
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrent)
        self.writes = 0
        self.conflicts = 0
        self.outage = Outage()

    async def write(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        patch: StatusPatch,
        generation: int | None = None,
    ) -> dict[str, Any]:
        """Merge ``patch`` into the Task's status if it is still at ``resource_version``.

        Returns the updated object. Raises :class:`ApiError` (409 on a stale
        version, 404 when the Task is gone).
        """
        if generation is not None:
            patch = {**patch, "observedGeneration": generation}
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        async with self._slots:
            self.writes += 1
            try:
                result: dict[str, Any] = await self._client.merge_patch(
                    path(Task.RESOURCE_PLURAL, namespace, name, "status"), body
                )
            except Exception as exc:
                if isinstance(exc, ApiError) and exc.is_conflict:
                    self.conflicts += 1
                elif is_transient(exc) and self.outage.failed(self._clock.now()):
                    log.warning(
                        "the API server does not take status writes (%s); leasing and "
                        "outcomes wait, probing again with backoff up to %gs",
                        exc,
                        self.outage.backoff.max_seconds,
                    )
                raise
        if ended := self.outage.succeeded(self._clock.now()):
            log.info(
                "the API server takes status writes again, after %.1fs and %d failed probes",
                ended.seconds,
                ended.failures,
            )
        return result

    async def read(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client.get(path(Task.RESOURCE_PLURAL, namespace, name))
        return result
