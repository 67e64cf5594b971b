"""The worker's side of the lease API: three JSON calls over one session."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from taskmill.models.lease import (
    WORKER_HEADER,
    CompleteRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    LeasedTask,
    LeaseRequest,
    LeaseResponse,
)


class LeaseLost(Exception):
    """409: the lease is no longer ours (expired, or the Task was deleted)."""


class LeaseApiError(Exception):
    """The operator answered with an error other than 409, or could not be reached."""


class LeaseClient:
    def __init__(self, url: str, worker: str, *, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.worker = worker
        headers = {WORKER_HEADER: worker, "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, route: str, body: dict[str, Any], limit_seconds: float) -> Any:
        try:
            async with self.session.post(
                self.url + route,
                data=orjson.dumps(body),
                timeout=aiohttp.ClientTimeout(total=limit_seconds),
            ) as response:
                raw = await response.read()
                if response.status == 409:
                    raise LeaseLost(raw.decode(errors="replace"))
                if response.status >= 400:
                    raise LeaseApiError(f"{route}: HTTP {response.status}: {raw[:300]!r}")
                return orjson.loads(raw) if raw else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LeaseApiError(f"{route}: {exc!r}") from exc

    async def lease(self, types: list[str], count: int, wait_seconds: float) -> list[LeasedTask]:
        request = LeaseRequest(
            worker=self.worker, types=types, max=count, wait_seconds=wait_seconds
        )
        data = await self._post("/v1/lease", request.to_api(), limit_seconds=wait_seconds + 15)
        return LeaseResponse.model_validate(data).tasks

    async def heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        data = await self._post("/v1/heartbeat", request.to_api(), limit_seconds=10)
        return HeartbeatResponse.model_validate(data)

    async def complete(self, request: CompleteRequest) -> None:
        await self._post("/v1/complete", request.to_api(), limit_seconds=15)
