"""The worker's side of the lease API: three JSON calls over one session.

When the operator authenticates workers (:mod:`taskmill.leaseapi.auth`), each
call carries ``Authorization: Bearer <token>``: either a fixed ``token`` or
one read from ``token_file`` — a projected ServiceAccount token that the
kubelet rotates in place, so the file is re-read whenever its modification
time or size changes, and once more after a 401.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from taskmill.models.lease import (
    WORKER_HEADER,
    HeartbeatRequest,
    HeartbeatResponse,
    LeasedTask,
    LeaseRequest,
    LeaseResponse,
    OutcomeResult,
    OutcomesResponse,
)


class LeaseLost(Exception):
    """409: the lease is no longer ours (expired, or the Task was deleted)."""


class LeaseApiError(Exception):
    """The operator answered with an error other than 409, or could not be reached."""


#: Where a worker finds its token when no ``--token-file`` is given: the
#: chart's projected lease-API token, else the standard ServiceAccount token.
DEFAULT_TOKEN_FILES = (
    Path("/var/run/secrets/taskmill/token"),
    Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
)


def default_token_file() -> Path | None:
    return next((p for p in DEFAULT_TOKEN_FILES if p.is_file()), None)


class TokenFile:
    """A token file re-read when it changes (the kubelet rotates projected tokens)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    def token(self, *, force: bool = False) -> str:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise LeaseApiError(f"cannot read the token file {self.path}: {exc}") from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        if force or stamp != self._stamp:
            try:
                self._token = self.path.read_text().strip()
            except OSError as exc:
                raise LeaseApiError(f"cannot read the token file {self.path}: {exc}") from exc
            self._stamp = stamp
        return self._token


class LeaseClient:
    def __init__(
        self,
        url: str,
        worker: str,
        *,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.worker = worker
        self._headers = {WORKER_HEADER: worker, "Content-Type": "application/json"}
        self._token = token or None
        self._token_file = TokenFile(token_file) if token_file else None
        self._session: aiohttp.ClientSession | None = None

    def _auth(self, *, force: bool = False) -> dict[str, str]:
        token = self._token_file.token(force=force) if self._token_file else self._token
        return {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, route: str, body: dict[str, Any] | bytes, limit_seconds: float) -> Any:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        try:
            for retry in (False, True):
                async with self.session.post(
                    self.url + route,
                    data=data,
                    headers=self._auth(force=retry),
                    timeout=aiohttp.ClientTimeout(total=limit_seconds),
                ) as response:
                    raw = await response.read()
                if response.status == 401 and self._token_file is not None and not retry:
                    continue  # the token may have just rotated: read it again, once
                break
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

    async def outcomes(self, serialized: list[bytes]) -> list[OutcomeResult]:
        """Report several outcomes (each already JSON) in one call; one result each."""
        data = b'{"outcomes":[' + b",".join(serialized) + b"]}"
        reply = await self._post("/v1/outcomes", data, limit_seconds=30)
        return OutcomesResponse.model_validate(reply).results
