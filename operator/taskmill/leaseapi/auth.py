"""Who may call the lease API: ServiceAccount tokens checked by TokenReview.

Workers send ``Authorization: Bearer <token>``, a projected ServiceAccount
token whose audience is the operator's (``taskmill`` by default). The
operator asks the API server about it (``POST
/apis/authentication.k8s.io/v1/tokenreviews`` with that audience, which needs
``create`` on ``tokenreviews``) and then checks the answer itself:

- no token, a token the API server does not accept, or one whose
  ``status.audiences`` lacks ours → :class:`Unauthenticated` (HTTP 401);
- a valid token of an identity that is not a configured worker
  (``system:serviceaccount:<ns>:<name>``) → :class:`Forbidden` (HTTP 403);
- the API server cannot be asked → :class:`AuthUnavailable` (HTTP 503: the
  worker retries; nothing is leased unauthenticated).

A token bound to a pod (the projected tokens the chart mounts) also names
the pod (``status.user.extra["authentication.kubernetes.io/pod-name"]``):
the server then uses that pod name as the worker's name, and
``<user>/<pod>`` as the lease holder's identity, so a worker can only
heartbeat or complete leases its own pod holds, whatever it claims in the
``Taskmill-Worker`` header or the request body. An unbound token's holder
is its user and the worker name it leased under: another ServiceAccount
can never act on its leases, but every holder of that same token can, so
per-pod isolation needs pod-bound tokens.

Answers are cached by the token's SHA-256 for ``cache_seconds`` (60 s;
rejections for at most 5 s, so a token that was not yet valid is not
refused for long), in a bounded LRU, so a worker's steady stream of lease,
heartbeat and complete calls costs one TokenReview a minute, not one per
call. Concurrent calls with the same uncached token share one review.

Auth is off unless the operator is started with ``--auth-audience``
(``taskmill dev`` and most tests run without it); the Helm chart turns it on.
The server side is :mod:`taskmill.leaseapi.server`; the worker's side is
:mod:`taskmill.worker.leaseclient` (``--token-file``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from taskmill.kube.client import ApiError, KubeClient, path

log = logging.getLogger(__name__)

DEFAULT_AUDIENCE = "taskmill"
REJECTION_CACHE_SECONDS = 5.0


class AuthError(Exception):
    """A call that may not proceed; ``status`` is its HTTP status."""

    status = 401
    code = "Unauthorized"


class Unauthenticated(AuthError):
    """No token, or one the API server does not accept for our audience."""


class Forbidden(AuthError):
    """A valid token of an identity that is not an allowed worker."""

    status = 403
    code = "Forbidden"


class AuthUnavailable(AuthError):
    """The token could not be checked (API server unreachable or refusing)."""

    status = 503
    code = "AuthUnavailable"


POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"


@dataclass(frozen=True)
class Caller:
    """An authenticated, allowed caller."""

    #: The ServiceAccount user name, e.g. ``system:serviceaccount:ns:worker``.
    user: str
    #: The pod its token is bound to, if any.
    pod: str | None = None

    @property
    def identity(self) -> str:
        """Who a lease granted to this caller belongs to: the user, and its pod
        when the token is bound to one, so neither an unbound token of the same
        ServiceAccount nor another pod can act as that pod."""
        return f"{self.user}/{self.pod}" if self.pod else self.user


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller from an ``Authorization`` header, or raise :class:`AuthError`."""
        ...


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("no Authorization header: send the worker's token as a Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


@dataclass(frozen=True)
class _Verdict:
    expires: float
    caller: Caller | None
    reason: str


class TokenReviewAuthenticator:
    """Check tokens with TokenReview; allow only ``workers`` (ServiceAccount user names)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        audience: str = DEFAULT_AUDIENCE,
        workers: Iterable[str],
        cache_seconds: float = 60.0,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.audience = audience
        self.workers = frozenset(workers)
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        self.clock = clock
        self.reviews = 0  # TokenReviews sent, for tests and metrics
        self._cache: OrderedDict[str, _Verdict] = OrderedDict()
        self._pending: dict[str, asyncio.Future[_Verdict]] = {}

    async def authenticate(self, authorization: str | None) -> Caller:
        token = bearer_token(authorization)
        key = hashlib.sha256(token.encode()).hexdigest()
        verdict = self._cached(key)
        if verdict is None:
            pending = self._pending.get(key)
            if pending is not None:
                verdict = await asyncio.shield(pending)
            else:
                future: asyncio.Future[_Verdict] = asyncio.get_running_loop().create_future()
                self._pending[key] = future
                try:
                    verdict = await self._review(token)
                    future.set_result(verdict)
                    self._remember(key, verdict)
                except BaseException as exc:
                    future.set_exception(exc)
                    future.exception()  # retrieved: no "never retrieved" warning
                    raise
                finally:
                    del self._pending[key]
        if verdict.caller is None:
            raise Unauthenticated(verdict.reason)
        if verdict.caller.user not in self.workers:
            raise Forbidden(f"{verdict.caller.user} is not an allowed worker identity")
        return verdict.caller

    def _cached(self, key: str) -> _Verdict | None:
        verdict = self._cache.get(key)
        if verdict is None:
            return None
        if verdict.expires <= self.clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return verdict

    def _remember(self, key: str, verdict: _Verdict) -> None:
        self._cache[key] = verdict
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def _review(self, token: str) -> _Verdict:
        self.reviews += 1
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            review: dict[str, Any] = await self.client.create(
                path("tokenreviews", group="authentication.k8s.io", version="v1"), body
            )
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning("TokenReview failed (%s); refusing the call with 503 for now", exc)
            raise AuthUnavailable(f"cannot verify the token: {exc}") from exc
        status = review.get("status") or {}
        now = self.clock()
        rejected = now + min(REJECTION_CACHE_SECONDS, self.cache_seconds)
        if not status.get("authenticated"):
            reason = status.get("error") or "the API server did not accept the token"
            return _Verdict(rejected, None, f"invalid token: {reason}")
        if self.audience not in (status.get("audiences") or []):
            reason = f"the token is not meant for audience {self.audience!r}"
            return _Verdict(rejected, None, reason)
        user = status.get("user") or {}
        username = str(user.get("username") or "")
        if not username:
            return _Verdict(rejected, None, "the token names no user")
        pods = (user.get("extra") or {}).get(POD_NAME_EXTRA) or []
        caller = Caller(username, str(pods[0]) if pods else None)
        return _Verdict(now + self.cache_seconds, caller, "")
