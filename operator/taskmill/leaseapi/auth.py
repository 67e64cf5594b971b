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
- the API server cannot be asked, or too many unknown tokens arrive at once
  → :class:`AuthUnavailable` (HTTP 503: the worker retries; nothing is
  leased unauthenticated).

A token bound to a pod (the projected tokens the chart mounts) also names
the pod (``status.user.extra["authentication.kubernetes.io/pod-name"]``):
the server then uses that pod name as the worker's name, and
``<user>/<pod>`` as the lease holder's identity, so a worker can only
heartbeat or complete leases its own pod holds, whatever it claims in the
``Taskmill-Worker`` header or the request body. An unbound token's holder
is its user and the worker name it leased under: another ServiceAccount
can never act on its leases, but every holder of that same token can, so
per-pod isolation needs pod-bound tokens.

Before any TokenReview, :mod:`taskmill.leaseapi.tokenshape` refuses (401)
what cannot be a ServiceAccount token for our audience: not a JWT, no
issuer, another audience, expired by its own ``exp``. That costs
microseconds and no API request.

Answers are cached by the token's SHA-256 for ``cache_seconds`` (60 s), so a
worker's steady stream of lease, heartbeat and complete calls costs one
TokenReview a minute, not one per call. Accepted tokens (an LRU of
``cache_size``) and rejected ones (a separate LRU of
``rejection_cache_size``, each kept at most 5 s, so a token that was not yet
valid is not refused for long) are cached apart: rejections never evict a
worker's entry. Concurrent calls with the same uncached token share one
review. Tokens never accepted before are reviewed at most
``reviews_per_second`` a second (bursts of ``reviews_burst``); beyond that
they get 503 ``AuthUnavailable`` and retry, while tokens already known to be
good are checked again whenever their answer expires.

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

from taskmill.dispatch.tokenbucket import TokenBucket
from taskmill.kube.client import ApiError, KubeClient, path
from taskmill.leaseapi import tokenshape

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
    """The token could not be checked (API server unreachable or refusing, or
    too many unknown tokens at once); the caller should retry."""

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
        rejection_cache_size: int = 256,
        reviews_per_second: float = 20.0,
        reviews_burst: int = 100,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.audience = audience
        self.workers = frozenset(workers)
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        self.rejection_cache_size = rejection_cache_size
        self.clock = clock
        self.wall_clock = wall_clock
        self.reviews = 0  # TokenReviews sent, for tests and metrics
        #: Calls refused without a TokenReview: not token-shaped, or over budget.
        self.refused_unreviewed = 0
        # Accepted and rejected tokens live apart: a flood of bad tokens
        # cycles through the small rejection cache and cannot evict workers.
        self._accepted: OrderedDict[str, _Verdict] = OrderedDict()
        self._rejected: OrderedDict[str, _Verdict] = OrderedDict()
        self._budget = TokenBucket.full(reviews_per_second, reviews_burst, clock())
        self._pending: dict[str, asyncio.Future[_Verdict]] = {}

    async def authenticate(self, authorization: str | None) -> Caller:
        token = bearer_token(authorization)
        reason = tokenshape.implausible(token, audience=self.audience, now=self.wall_clock())
        if reason is not None:
            self.refused_unreviewed += 1
            raise Unauthenticated(f"invalid token: {reason}")
        key = hashlib.sha256(token.encode()).hexdigest()
        verdict, known = self._cached(key)
        if verdict is None:
            pending = self._pending.get(key)
            if pending is not None:
                verdict = await asyncio.shield(pending)
            else:
                # A token accepted before (its answer just went stale) is
                # checked again at once; unknown ones share a budget, so
                # well-shaped garbage costs the API server a bounded rate.
                if not known and not self._budget.take(self.clock()):
                    self.refused_unreviewed += 1
                    raise AuthUnavailable("too many unknown tokens to check right now; retry")
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

    def _cached(self, key: str) -> tuple[_Verdict | None, bool]:
        """The fresh verdict on a token, if any, and whether it was accepted before."""
        now = self.clock()
        accepted = self._accepted.get(key)
        if accepted is not None:
            self._accepted.move_to_end(key)
            # A stale acceptance stays (until the LRU drops it) to mark the
            # token as known, but it is never used past its expiry.
            return (accepted if accepted.expires > now else None), True
        rejected = self._rejected.get(key)
        if rejected is not None:
            if rejected.expires > now:
                return rejected, False
            del self._rejected[key]
        return None, False

    def _remember(self, key: str, verdict: _Verdict) -> None:
        if verdict.caller is not None:
            cache, size = self._accepted, self.cache_size
            self._rejected.pop(key, None)
        else:
            cache, size = self._rejected, self.rejection_cache_size
            self._accepted.pop(key, None)  # revoked: no longer known-good
        cache[key] = verdict
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)

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
