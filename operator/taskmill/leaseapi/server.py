"""HTTP routes of the lease API (aiohttp), in front of a :class:`LeaseBackend`
(the operator's is :class:`taskmill.controller.leasing.Leasing`).

Every request body is validated strictly against the wire models: anything
malformed is a 400 naming the field, a lease that is not current (or not the
caller's) is a 409, a body over 1 MiB a 413 and one that does not arrive
within the body timeout a 408; an unexpected error is a logged 500. Bodies
are read only after the caller's token was checked. Every status is declared
in the OpenAPI document (:mod:`taskmill.leaseapi.openapi`), and the
connection limits in front of all this are :mod:`taskmill.leaseapi.connections`.
No request can stop the operator.

With an ``authenticate`` callback (:mod:`taskmill.leaseapi.auth`) the lease
routes first check the caller's token: 401 without a valid one, 403 for an
identity that is not an allowed worker. Every lease is granted to a
:class:`~taskmill.models.lease.Holder` and only that holder may heartbeat or
complete it: the worker name (a pod-bound token's pod, else the leasing
request's ``worker`` and then the ``Taskmill-Worker`` header, which those
calls must send) together with the token's identity. With ``serving``
returning False (a standby replica under leader election) they answer 503
``NotLeader``; ``/healthz``, ``/readyz`` and ``/openapi.json`` never need a
token.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from taskmill.leaseapi.auth import Authenticator, AuthError, Caller
from taskmill.models.lease import (
    MAX_WORKER_CHARS,
    WORKER_HEADER,
    WORKER_NAME,
    CompleteRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    Holder,
    LeasedTask,
    LeaseRequest,
    LeaseResponse,
    OutcomeResult,
    OutcomesRequest,
    OutcomesResponse,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024

M = TypeVar("M", bound=BaseModel)


class LeaseBackend(Protocol):
    async def lease(self, request: LeaseRequest, holder: Holder) -> list[LeasedTask]: ...
    def heartbeat(self, request: HeartbeatRequest, holder: Holder) -> HeartbeatResponse: ...
    async def complete(self, request: CompleteRequest, holder: Holder) -> None: ...


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"error": code, "message": message})


#: Seconds a 503 asks the caller to wait before retrying.
RETRY_AFTER = "1"


def _unavailable(code: str, message: str) -> web.Response:
    response = _error(503, code, message)
    response.headers["Retry-After"] = RETRY_AFTER
    return response


class BadRequest(Exception):
    """A malformed call: answered 400 with ``code`` and the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class BodyError(Exception):
    """A body too large (413) or too slow (408): answered, then the connection closes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def _read(request: web.Request, within_seconds: float) -> bytes:
    """The body, refused (413) by its declared length before any of it is read,
    or as soon as it grows past the limit; and within ``within_seconds``, so a
    client sending a byte at a time cannot hold the handler."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise BodyError(413, "TooLarge", f"the body may be at most {MAX_BODY_BYTES} bytes")
    try:
        async with asyncio.timeout(within_seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BodyError(413, "TooLarge", f"the body may be at most {MAX_BODY_BYTES} bytes") from exc
    except TimeoutError as exc:
        raise BodyError(
            408, "RequestTimeout", f"the body did not arrive within {within_seconds:g} s"
        ) from exc


async def _parse(request: web.Request, model: type[M], within_seconds: float) -> M:
    raw = await _read(request, within_seconds)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("MalformedJSON", f"body is not JSON: {exc}") from exc
    try:
        # Strict (the request models' config) and by alias only: the document
        # names camelCase keys, so snake_case ones are unknown keys.
        return model.model_validate(data, by_name=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest("InvalidRequest", f"{where}: {first['msg']}") from exc


def holder_of(
    request: web.Request, caller: Caller | None, *, leased_as: str | None = None
) -> Holder:
    """The holder a call acts as. A pod-bound token names its pod; otherwise the
    worker names itself (``leased_as``, the lease request's ``worker``, or the
    ``Taskmill-Worker`` header), and without a name there is no holder to check
    the lease against, so the call is refused rather than let through."""
    header = request.headers.get(WORKER_HEADER)
    if header is not None and not (
        len(header) <= MAX_WORKER_CHARS and re.fullmatch(WORKER_NAME, header)
    ):
        raise BadRequest(
            "InvalidRequest",
            f"{WORKER_HEADER}: 1 to {MAX_WORKER_CHARS} visible ASCII characters",
        )
    identity = caller.identity if caller is not None else None
    if caller is not None and caller.pod:
        return Holder(caller.pod, identity)
    worker = leased_as or header
    if not worker:
        raise BadRequest("MissingWorker", f"name the calling worker in the {WORKER_HEADER} header")
    return Holder(worker, identity)


class _NeverRaised(Exception):
    """The ``unavailable`` error of a backend that has none."""


def build_app(
    backend: LeaseBackend,
    *,
    conflict: type[Exception],
    unavailable: type[Exception] = _NeverRaised,
    version: str,
    ready: Callable[[], bool] = lambda: True,
    extra_routes: Callable[[web.Application], None] | None = None,
    authenticate: Authenticator | None = None,
    serving: Callable[[], bool] = lambda: True,
    synced: Callable[[], bool] = lambda: True,
    body_timeout_seconds: float = 30.0,
) -> web.Application:
    """The aiohttp application. ``conflict`` is the backend's "lease not current"
    error (409); ``unavailable`` its "cannot write now, retry" error (503)."""
    from taskmill.leaseapi.openapi import document

    openapi = orjson.dumps(document(version))

    @web.middleware
    async def errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except BadRequest as exc:
            return _error(400, exc.code, str(exc))
        except BodyError as exc:
            response = _error(exc.status, exc.code, str(exc))
            response.force_close()  # the rest of the body is never read
            return response
        except AuthError as exc:
            response = _error(exc.status, exc.code, str(exc))
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="taskmill"'
            elif exc.status == 503:
                response.headers["Retry-After"] = RETRY_AFTER
            return response
        except conflict as exc:
            return _error(409, "LeaseConflict", f"lease {exc} is not current")
        except unavailable as exc:
            return _unavailable("Unavailable", str(exc))
        except Exception:
            log.exception("lease API %s %s failed", request.method, request.path)
            return _error(500, "InternalError", "the operator could not handle this call")

    async def guard(request: web.Request) -> web.Response | Caller | None:
        """The refusal, or the authenticated caller (None when auth is off)."""
        if not serving():
            return _unavailable("NotLeader", "this operator replica is a standby; retry")
        if not synced():
            # Until every Task is loaded, an unknown lease may just not be
            # loaded yet: a 409 now would make a worker drop a finished result.
            return _unavailable("Starting", "the operator is still loading Tasks; retry")
        if authenticate is not None:
            return await authenticate.authenticate(request.headers.get("Authorization"))
        return None

    async def lease(request: web.Request) -> web.Response:
        if isinstance(caller := await guard(request), web.Response):
            return caller
        body = await _parse(request, LeaseRequest, body_timeout_seconds)
        tasks = await backend.lease(body, holder_of(request, caller, leased_as=body.worker))
        return _json(200, LeaseResponse(tasks=tasks).to_api())

    async def heartbeat(request: web.Request) -> web.Response:
        if isinstance(caller := await guard(request), web.Response):
            return caller
        body = await _parse(request, HeartbeatRequest, body_timeout_seconds)
        reply = backend.heartbeat(body, holder_of(request, caller))
        return _json(200, reply.to_api())

    async def complete(request: web.Request) -> web.Response:
        if isinstance(caller := await guard(request), web.Response):
            return caller
        body = await _parse(request, CompleteRequest, body_timeout_seconds)
        await backend.complete(body, holder_of(request, caller))
        return web.Response(status=204)

    async def outcomes(request: web.Request) -> web.Response:
        if isinstance(caller := await guard(request), web.Response):
            return caller
        body = await _parse(request, OutcomesRequest, body_timeout_seconds)
        holder = holder_of(request, caller)
        settled = await asyncio.gather(
            *(backend.complete(item, holder) for item in body.outcomes), return_exceptions=True
        )
        results = []
        for item, outcome in zip(body.outcomes, settled, strict=True):
            error = None
            if isinstance(outcome, conflict):
                error = "LeaseConflict"
            elif isinstance(outcome, unavailable):
                error = "Unavailable"  # the worker keeps it and reports it again
            elif isinstance(outcome, BaseException):
                log.error("outcome of lease %s failed", item.lease_id, exc_info=outcome)
                error = "InternalError"
            results.append(OutcomeResult(lease_id=item.lease_id, error=error))
        return _json(200, OutcomesResponse(results=results).to_api())

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok") if ready() else web.Response(status=503, text="not ready")

    async def spec(_: web.Request) -> web.Response:
        return web.Response(body=openapi, content_type="application/json")

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/v1/lease", lease)
    app.router.add_post("/v1/heartbeat", heartbeat)
    app.router.add_post("/v1/complete", complete)
    app.router.add_post("/v1/outcomes", outcomes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", spec)
    if extra_routes is not None:
        extra_routes(app)
    return app
