"""Kubernetes Events for Task transitions, rate-limited.

Events are for people (``kubectl describe``), not an audit log: at high
throughput only the first few per second are posted and the rest are counted
and dropped, so Events never compete with status writes for the API server.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from taskmill.dispatch.tokenbucket import TokenBucket
from taskmill.kube.client import ApiError, KubeClient, path
from taskmill.models.base import API_VERSION

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, client: KubeClient, *, per_second: float, component: str) -> None:
        self._client = client
        self._bucket = TokenBucket.full(per_second, per_second * 4, time.monotonic())
        self._component = component
        self.dropped = 0

    async def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event about ``obj`` (a Task body); never raises."""
        if not self._bucket.take(time.monotonic()):
            self.dropped += 1
            return
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace", "default")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
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
