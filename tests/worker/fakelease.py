"""A fake lease endpoint for unit tests of the worker loop: the three routes of
the lease API over a real aiohttp server on loopback, backed by a list."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

from aiohttp import web

from taskmill.models.lease import CompleteRequest, HeartbeatRequest, LeaseRequest, OutcomesRequest


class FakeLeaseApi:
    def __init__(self, heartbeat_seconds: float = 0.05) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.queue: list[dict[str, Any]] = []
        self.lease_requests: list[LeaseRequest] = []
        self.heartbeats: list[HeartbeatRequest] = []
        self.completes: list[CompleteRequest] = []
        self.cancelled: set[str] = set()
        #: Completions are answered once this is set, as the operator answers
        #: only after the Task's status is written; ``held`` counts waiting ones.
        self.answer_completes = asyncio.Event()
        self.answer_completes.set()
        self.held = 0
        #: Outcomes per ``/v1/outcomes`` request.
        self.outcome_batches: list[int] = []
        #: While set, outcome reports get 503, as from an operator whose API
        #: server is away; ``refused`` counts them.
        self.unavailable = False
        self.refused = 0
        #: Leases whose heartbeats get 409: expired, as far as the operator knows.
        self.lost: set[str] = set()
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def add(self, type_: str, payload: dict[str, Any] | None = None, **extra: Any) -> str:
        lease_id = f"L{next(self._ids)}"
        self.queue.append(
            {
                "leaseId": lease_id,
                "namespace": "ns",
                "name": f"task-{lease_id.lower()}",
                "uid": f"uid-{lease_id}",
                "type": type_,
                "attempt": 1,
                "payload": payload or {},
                "expiresAt": (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)).isoformat(),
                "heartbeatSeconds": self.heartbeat_seconds,
                **extra,
            }
        )
        async with self._changed:
            self._changed.notify_all()
        return lease_id

    async def wait_for(self, predicate: Any, limit_seconds: float = 10) -> None:
        """Wait until ``predicate()`` holds, re-checking whenever a call arrives."""
        async with asyncio.timeout(limit_seconds), self._changed:
            await self._changed.wait_for(predicate)

    def outcome(self, lease_id: str) -> CompleteRequest | None:
        return next((c for c in self.completes if c.lease_id == lease_id), None)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _lease(self, request: web.Request) -> web.Response:
        body = LeaseRequest.model_validate(await request.json())
        self.lease_requests.append(body)
        await self._notify()
        deadline = asyncio.get_running_loop().time() + body.wait_seconds
        async with self._changed:
            while True:
                ready = [t for t in self.queue if t["type"] in body.types][: body.max]
                if ready:
                    for t in ready:
                        self.queue.remove(t)
                    return web.json_response({"tasks": ready})
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return web.json_response({"tasks": []})
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    return web.json_response({"tasks": []})

    async def _heartbeat(self, request: web.Request) -> web.Response:
        body = HeartbeatRequest.model_validate(await request.json())
        self.heartbeats.append(body)
        await self._notify()
        if body.lease_id in self.lost:
            return web.json_response({"error": "LeaseConflict"}, status=409)
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)).isoformat()
        return web.json_response({"expiresAt": expires, "cancel": body.lease_id in self.cancelled})

    async def _take(self, body: CompleteRequest) -> None:
        self.held += 1
        await self._notify()
        await self.answer_completes.wait()
        self.held -= 1
        self.completes.append(body)
        await self._notify()

    async def _complete(self, request: web.Request) -> web.Response:
        await self._take(CompleteRequest.model_validate(await request.json()))
        return web.Response(status=204)

    async def _outcomes(self, request: web.Request) -> web.Response:
        body = OutcomesRequest.model_validate(await request.json())
        if self.unavailable:
            self.refused += 1
            await self._notify()
            return web.json_response({"error": "Unavailable"}, status=503)
        self.outcome_batches.append(len(body.outcomes))
        await asyncio.gather(*(self._take(item) for item in body.outcomes))
        results = [{"leaseId": item.lease_id} for item in body.outcomes]
        return web.json_response({"results": results})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/lease", self._lease)
        app.router.add_post("/v1/heartbeat", self._heartbeat)
        app.router.add_post("/v1/complete", self._complete)
        app.router.add_post("/v1/outcomes", self._outcomes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
