"""Kubernetes Events for Task transitions, rate-limited.

Events are for people (``kubectl describe``), not an audit log: at high
throughput only the first few per second are posted and the rest are counted
and dropped, so Events never compete with status writes for the API server.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from taskmill.dispatch.clock import Clock, WallClock
from taskmill.dispatch.tokenbucket import TokenBucket
from taskmill.dispatch.transitions import iso
from taskmill.kube.client import ApiError, KubeClient, path
from taskmill.models.base import API_VERSION

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(
        self,
        client: KubeClient,
        *,
        per_second: float,
        component: str,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or WallClock()
        self._client = client
        self._bucket = TokenBucket.full(per_second, per_second * 4, self._clock.now())
        self._component = component
        self.dropped = 0

    async def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event about ``obj`` (a Task body); never raises."""
        now_ts = self._clock.now()
        if not self._bucket.take(now_ts):
            self.dropped += 1
            return
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace", "default")
        now = iso(float(int(now_ts))).replace(".000Z", "Z")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', 'task')}.{uuid.uuid4().hex[:12]}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", API_VERSION),
                "kind": obj.get("kind", "Task"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self._component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self._component,
        }
        try:
            await self._client.create(path("events", namespace, group="", version="v1"), event)
        except (ApiError, OSError) as exc:
            log.warning(
                "could not post Event %s for %s/%s: %s", reason, namespace, meta.get("name"), exc
            )
