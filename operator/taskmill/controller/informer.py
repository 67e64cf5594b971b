"""List, then watch, Tasks: the operator's hot path, on its own watch.

kopf watches TaskQueues and CronTasks, where events are rare. Tasks are the
hot path: each one costs three watch events, and kopf's per-event machinery
(a worker task per object, cause detection, a diff-base, deep copies, kwargs
for handlers) measured about a quarter of the operator's CPU per Task in
``bench/throughput.py``. This informer does what the Task reconciler needs and no
more: one paged list, then one watch per scope from the list's
resourceVersion, every event decoded once (orjson) and handed over as it is.

It resumes from the last resourceVersion it saw (bookmarks keep that fresh
on quiet namespaces), and when the server says that version is gone (410) it
lists again and reports Tasks that vanished meanwhile as deleted, so the
reconciler never keeps a lease for a Task that no longer exists. No error ends
it: the API server being away, and any error it did not expect, is retried
with capped backoff, and a watch event may be as large as any object the API
server stores.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.outage import PROBE_BACKOFF
from taskmill.kube.client import ApiError, KubeClient, path
from taskmill.models.base import API_VERSION
from taskmill.models.resources import Task

log = logging.getLogger(__name__)

EventSink = Callable[[str | None, dict[str, Any]], None]

#: Between attempts to reach an API server that is away (the operator's
#: initial load uses it too): the same waits as the status writes' probes.
RECONNECT = PROBE_BACKOFF

#: Errors after which the watch is simply opened again.
_TRANSIENT = (ApiError, OSError, TimeoutError, aiohttp.ClientError, ValueError)


class TaskInformer:
    """Feeds every Task event of ``namespaces`` (all when empty) to ``sink``.

    ``known(namespace)`` returns the keys (and uids) the sink holds in a
    namespace (all namespaces for ``None``): after a relist, those not listed
    are reported as ``DELETED``.
    """

    def __init__(
        self,
        client: KubeClient,
        namespaces: tuple[str, ...],
        sink: EventSink,
        known: Callable[[str | None], Mapping[TaskKey, str]],
        *,
        page: int = 500,
        watch_seconds: int = 300,
    ) -> None:
        self._client = client
        self._scopes: tuple[str | None, ...] = namespaces or (None,)
        self._sink = sink
        self._known = known
        self._page = page
        self._watch_seconds = watch_seconds
        self._versions: dict[str | None, str] = {}

    async def list_all(self) -> int:
        """List every Task in every scope; returns how many."""
        return sum([await self._list(scope) for scope in self._scopes])

    async def watch(self, stop: asyncio.Event) -> None:
        """Watch every scope until ``stop`` is set (after :meth:`list_all`)."""
        watches = [asyncio.create_task(self._watch_scope(scope)) for scope in self._scopes]
        try:
            await stop.wait()
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    def _url(self, scope: str | None) -> str:
        return path(Task.RESOURCE_PLURAL, scope)

    async def _list(self, scope: str | None) -> int:
        before = dict(self._known(scope))
        params = {"limit": str(self._page)}
        count = 0
        while True:
            listed = await self._client.get(self._url(scope), params=params)
            for item in listed.get("items", []):
                # Items of a list carry neither; the store validates whole objects.
                item.setdefault("apiVersion", API_VERSION)
                item.setdefault("kind", "Task")
                meta = item.get("metadata", {})
                before.pop((meta.get("namespace", ""), meta.get("name", "")), None)
                self._sink(None, item)
                count += 1
            metadata = listed.get("metadata", {})
            token = metadata.get("continue")
            if not token:
                self._versions[scope] = metadata.get("resourceVersion", "")
                break
            params = {"limit": str(self._page), "continue": token}
        for (namespace, name), uid in sorted(before.items()):
            gone = {"metadata": {"namespace": namespace, "name": name, "uid": uid}}
            self._sink("DELETED", gone)
        return count

    async def _watch_scope(self, scope: str | None) -> None:
        failures = 0
        while True:
            try:
                await self._stream(scope)
                failures = 0  # the server ended the watch normally: resume at once
            except Exception as exc:
                if isinstance(exc, ApiError) and exc.status == 410:
                    # The server no longer has the history to resume from.
                    log.info("Task watch of %s expired; listing again", _scope_name(scope))
                    await self._relist(scope)
                    continue
                failures += 1
                delay = RECONNECT.base_delay(failures)
                if isinstance(exc, _TRANSIENT):
                    log.warning(
                        "Task watch of %s failed (%s); retrying in %.1fs",
                        _scope_name(scope),
                        exc,
                        delay,
                    )
                else:
                    # Not an error we know, but a watch that ends for good
                    # would stop all dispatching: report it and go on.
                    log.exception(
                        "Task watch of %s failed; retrying in %.1fs", _scope_name(scope), delay
                    )
                await asyncio.sleep(delay)

    async def _relist(self, scope: str | None) -> None:
        for failures in itertools.count(1):
            try:
                await self._list(scope)
                return
            except Exception as exc:
                delay = RECONNECT.base_delay(failures)
                log.warning(
                    "cannot list Tasks of %s (%s); retrying in %.1fs",
                    _scope_name(scope),
                    exc,
                    delay,
                    exc_info=not isinstance(exc, _TRANSIENT),
                )
                await asyncio.sleep(delay)

    async def _stream(self, scope: str | None) -> None:
        async for event in self._client.watch(
            self._url(scope),
            resource_version=self._versions.get(scope),
            timeout_seconds=self._watch_seconds,
        ):
            kind = event.get("type")
            body = event.get("object") or {}
            if kind == "ERROR":
                raise ApiError(body.get("code", 500), body.get("reason", ""), str(body))
            version = (body.get("metadata") or {}).get("resourceVersion")
            if version:
                self._versions[scope] = version
            if kind == "BOOKMARK":
                continue
            try:
                self._sink(kind, body)
            except Exception:
                # The sink never raises by contract; should it, the event is
                # logged and the watch goes on.
                log.exception("failed to take in a Task event")


def _scope_name(scope: str | None) -> str:
    return scope or "all namespaces"
