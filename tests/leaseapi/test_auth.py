"""The lease API's authentication: TokenReview verdicts, caching, and HTTP statuses."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from taskmill.kube.client import ApiError
from taskmill.leaseapi.auth import (
    AuthUnavailable,
    Forbidden,
    TokenReviewAuthenticator,
    Unauthenticated,
)
from taskmill.leaseapi.server import build_app
from taskmill.models.lease import HeartbeatResponse, Holder
from tests.leaseapi.jwts import NOW, jwt, name_of

pytestmark = pytest.mark.asyncio

WORKER = "system:serviceaccount:tm:worker"


class FakeReviews:
    """Answers TokenReviews from a table token -> (username, audiences)."""

    def __init__(self, tokens: dict[str, tuple[str, list[str]]]) -> None:
        self.tokens = tokens
        self.calls = 0
        self.fail = False

    async def create(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        assert url == "/apis/authentication.k8s.io/v1/tokenreviews"
        assert body["spec"]["audiences"] == ["taskmill"]
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail:
            raise ApiError(500, "InternalError", "etcd is down")
        name = name_of(body["spec"]["token"])
        known = self.tokens.get(name)
        if known is None:
            return {"status": {"authenticated": False, "error": "invalid bearer token"}}
        user, audiences = known
        pod_bound = name.startswith("pod")
        extra = {"authentication.kubernetes.io/pod-name": ["worker-7f9c"]} if pod_bound else {}
        return {
            "status": {
                "authenticated": True,
                "user": {"username": user, "extra": extra},
                "audiences": audiences,
            }
        }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(reviews: FakeReviews, clock: Clock | None = None) -> TokenReviewAuthenticator:
    return TokenReviewAuthenticator(
        reviews,  # type: ignore[arg-type]
        audience="taskmill",
        workers=[WORKER],
        clock=clock or Clock(),
        cache_size=2,
        rejection_cache_size=2,
        wall_clock=lambda: NOW,
    )


def bearer(name: str) -> str:
    audience = "https://kubernetes.default.svc" if name == "wrong-audience" else "taskmill"
    return f"Bearer {jwt(name, audience=audience)}"


REVIEWS = {
    "good": (WORKER, ["taskmill"]),
    "pod-bound": (WORKER, ["taskmill"]),
    "other": ("system:serviceaccount:tm:intruder", ["taskmill"]),
    "wrong-audience": (WORKER, ["https://kubernetes.default.svc"]),
}


async def test_an_allowed_worker_is_identified() -> None:
    auth = authenticator(FakeReviews(REVIEWS))
    caller = await auth.authenticate(bearer("good"))
    assert (caller.user, caller.pod) == (WORKER, None)


@pytest.mark.parametrize("header", [None, "", "Basic Zm9v", "Bearer ", "Bearer bogus"])
async def test_missing_or_invalid_tokens_are_unauthenticated(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        await authenticator(FakeReviews(REVIEWS)).authenticate(header)


async def test_a_token_for_another_audience_is_unauthenticated_without_a_review() -> None:
    reviews = FakeReviews(REVIEWS)
    with pytest.raises(Unauthenticated, match="audience"):
        await authenticator(reviews).authenticate(bearer("wrong-audience"))
    assert reviews.calls == 0


async def test_an_audience_the_api_server_denies_is_unauthenticated() -> None:
    """The token's own claims may list our audience; the review's answer decides."""
    reviews = FakeReviews({"liar": (WORKER, ["https://kubernetes.default.svc"])})
    with pytest.raises(Unauthenticated, match="audience"):
        await authenticator(reviews).authenticate(bearer("liar"))
    assert reviews.calls == 1


@pytest.mark.parametrize(
    "token",
    [
        "x" * 100,
        "a.b",
        "a.b.c.d",
        "e30.e30.e30",  # {}.{}.{}: no algorithm, no claims
        jwt("good", expires=NOW - 3600),
        jwt("good", nbf=NOW + 3600),
        jwt("good", issuer=""),
        jwt("good", audience=["api", "other"]),
        jwt("good") + "x" * 9000,
    ],
)
async def test_what_cannot_be_a_token_costs_no_review(token: str) -> None:
    reviews = FakeReviews(REVIEWS)
    auth = authenticator(reviews)
    with pytest.raises(Unauthenticated, match="invalid token"):
        await auth.authenticate(f"Bearer {token}")
    assert (reviews.calls, auth.refused_unreviewed) == (0, 1)


async def test_a_flood_of_rejected_tokens_does_not_evict_workers() -> None:
    reviews = FakeReviews(REVIEWS)
    auth = authenticator(reviews)
    auth._budget.burst = auth._budget.tokens = 1000
    await auth.authenticate(bearer("good"))
    for i in range(50):  # well-shaped, so each one is reviewed
        with pytest.raises(Unauthenticated):
            await auth.authenticate(bearer(f"garbage-{i}"))
    assert reviews.calls == 51
    assert (await auth.authenticate(bearer("good"))).user == WORKER
    assert reviews.calls == 51  # still cached
    assert len(auth._rejected) == 2


async def test_unknown_tokens_share_a_review_budget_that_known_ones_skip() -> None:
    reviews, clock = FakeReviews(REVIEWS), Clock()
    auth = TokenReviewAuthenticator(
        reviews,  # type: ignore[arg-type]
        workers=[WORKER],
        reviews_per_second=1,
        reviews_burst=3,
        clock=clock,
        wall_clock=lambda: NOW,
    )
    await auth.authenticate(bearer("good"))
    for i in range(2):
        with pytest.raises(Unauthenticated):
            await auth.authenticate(bearer(f"unknown-{i}"))
    with pytest.raises(AuthUnavailable, match="too many"):
        await auth.authenticate(bearer("unknown-2"))
    assert reviews.calls == 3
    clock.now += 61  # the worker's answer went stale; the budget is refilled by now...
    auth._budget.tokens, auth._budget.stamp = 0, clock.now  # ...unless a flood spent it
    assert (await auth.authenticate(bearer("good"))).user == WORKER
    assert reviews.calls == 4
    clock.now += 1
    with pytest.raises(Unauthenticated):
        await auth.authenticate(bearer("unknown-2"))  # one more second, one more review


async def test_a_revoked_token_is_no_longer_known_good() -> None:
    reviews, clock = FakeReviews(dict(REVIEWS)), Clock()
    auth = authenticator(reviews, clock)
    await auth.authenticate(bearer("good"))
    del reviews.tokens["good"]
    clock.now += 61
    with pytest.raises(Unauthenticated):
        await auth.authenticate(bearer("good"))
    key = hashlib.sha256(jwt("good").encode()).hexdigest()
    assert key not in auth._accepted
    assert key in auth._rejected


async def test_another_identity_is_forbidden() -> None:
    with pytest.raises(Forbidden, match="intruder"):
        await authenticator(FakeReviews(REVIEWS)).authenticate(bearer("other"))


async def test_reviews_are_cached_then_expire() -> None:
    reviews, clock = FakeReviews(REVIEWS), Clock()
    auth = authenticator(reviews, clock)
    for _ in range(5):
        await auth.authenticate(bearer("good"))
    assert reviews.calls == 1
    clock.now += 61
    await auth.authenticate(bearer("good"))
    assert reviews.calls == 2


async def test_concurrent_calls_share_one_review() -> None:
    reviews = FakeReviews(REVIEWS)
    auth = authenticator(reviews)
    results = await asyncio.gather(*(auth.authenticate(bearer("good")) for _ in range(10)))
    assert [r.user for r in results] == [WORKER] * 10
    assert reviews.calls == 1


async def test_the_cache_is_bounded() -> None:
    tokens = {f"t{i}": (WORKER, ["taskmill"]) for i in range(5)}
    reviews = FakeReviews(tokens)
    auth = authenticator(reviews)
    for i in range(5):
        await auth.authenticate(bearer(f"t{i}"))
    assert len(auth._accepted) == 2


async def test_rejections_are_cached_briefly() -> None:
    reviews, clock = FakeReviews(REVIEWS), Clock()
    auth = authenticator(reviews, clock)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await auth.authenticate(bearer("late"))
    assert reviews.calls == 1
    reviews.tokens["late"] = (WORKER, ["taskmill"])
    clock.now += 6
    assert (await auth.authenticate(bearer("late"))).user == WORKER


async def test_an_unreachable_api_server_is_unavailable_not_allowed() -> None:
    reviews = FakeReviews(REVIEWS)
    reviews.fail = True
    with pytest.raises(AuthUnavailable):
        await authenticator(reviews).authenticate(bearer("good"))


class Backend:
    """Records the holder each call acts as."""

    def __init__(self) -> None:
        self.holders: list[Holder] = []

    async def lease(self, request: Any, holder: Holder) -> list[Any]:
        self.holders.append(holder)
        return []

    def heartbeat(self, request: Any, holder: Holder) -> HeartbeatResponse:
        self.holders.append(holder)
        return HeartbeatResponse(expires_at=datetime.now(UTC))

    async def complete(self, request: Any, holder: Holder) -> None:
        self.holders.append(holder)


async def serve(backend: Backend | None = None, **kwargs: Any) -> TestClient[Any, Any]:
    app = build_app(backend or Backend(), conflict=KeyError, version="test", **kwargs)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


LEASE = {"worker": "w1", "types": ["echo"], "max": 1, "waitSeconds": 0}


async def test_http_statuses_with_auth() -> None:
    client = await serve(authenticate=authenticator(FakeReviews(REVIEWS)))
    try:
        response = await client.post("/v1/lease", json=LEASE)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["error"] == "Unauthorized"
        headers = {"Authorization": bearer("other")}
        assert (await client.post("/v1/lease", json=LEASE, headers=headers)).status == 403
        headers = {"Authorization": bearer("good")}
        assert (await client.post("/v1/lease", json=LEASE, headers=headers)).status == 200
        response = await client.post("/v1/lease", data=b"{", headers=headers)
        assert response.status == 400
        # Probes and the OpenAPI document need no token.
        for route in ("/healthz", "/readyz", "/openapi.json"):
            assert (await client.get(route)).status == 200
    finally:
        await client.close()


async def test_unauthenticated_calls_are_refused_before_the_body_is_read() -> None:
    client = await serve(authenticate=authenticator(FakeReviews(REVIEWS)))
    try:
        assert (await client.post("/v1/lease", data=b"{")).status == 401
    finally:
        await client.close()


async def test_a_standby_refuses_lease_calls() -> None:
    client = await serve(serving=lambda: False, ready=lambda: False)
    try:
        response = await client.post("/v1/lease", json=LEASE)
        assert response.status == 503
        assert (await response.json())["error"] == "NotLeader"
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


async def test_without_auth_no_token_is_needed() -> None:
    client = await serve()
    try:
        assert (await client.post("/v1/lease", json=LEASE)).status == 200
    finally:
        await client.close()


async def test_a_pod_bound_token_makes_its_pod_the_lease_holder() -> None:
    backend = Backend()
    client = await serve(backend, authenticate=authenticator(FakeReviews(REVIEWS)))
    try:
        pod = {"Authorization": bearer("pod-bound"), "Taskmill-Worker": "someone-else"}
        plain = {"Authorization": bearer("good"), "Taskmill-Worker": "worker-7f9c"}
        assert (await client.post("/v1/lease", json=LEASE, headers=pod)).status == 200
        heartbeat = {"leaseId": "x"}
        assert (await client.post("/v1/heartbeat", json=heartbeat, headers=pod)).status == 200
        assert (await client.post("/v1/heartbeat", json=heartbeat, headers=plain)).status == 200
        bound = Holder("worker-7f9c", f"{WORKER}/worker-7f9c")
        # An unbound token of the same ServiceAccount naming the pod is another holder.
        assert backend.holders == [bound, bound, Holder("worker-7f9c", WORKER)]
    finally:
        await client.close()


async def test_an_unbound_token_holds_as_its_user_and_worker_name() -> None:
    backend = Backend()
    client = await serve(backend, authenticate=authenticator(FakeReviews(REVIEWS)))
    try:
        headers = {"Authorization": bearer("good")}
        assert (await client.post("/v1/lease", json=LEASE, headers=headers)).status == 200
        headers["Taskmill-Worker"] = "w2"
        outcome = {"leaseId": "x", "outcome": "succeeded"}
        assert (await client.post("/v1/complete", json=outcome, headers=headers)).status == 204
        assert backend.holders == [Holder("w1", WORKER), Holder("w2", WORKER)]
    finally:
        await client.close()


@pytest.mark.parametrize("auth", [True, False])
@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/heartbeat", {"leaseId": "x"}),
        ("/v1/complete", {"leaseId": "x", "outcome": "succeeded"}),
        ("/v1/outcomes", {"outcomes": [{"leaseId": "x", "outcome": "failed"}]}),
    ],
)
async def test_a_call_on_a_lease_without_a_worker_name_is_refused(
    route: str, body: dict[str, Any], auth: bool
) -> None:
    """Without a pod-bound token or the worker header there is no holder to check
    the lease against: the call is refused, never let through unchecked."""
    backend = Backend()
    kwargs: dict[str, Any] = {"authenticate": authenticator(FakeReviews(REVIEWS))} if auth else {}
    client = await serve(backend, **kwargs)
    try:
        headers = {"Authorization": bearer("good")} if auth else {}
        response = await client.post(route, json=body, headers=headers)
        assert response.status == 400
        assert (await response.json())["error"] == "MissingWorker"
        assert backend.holders == []
    finally:
        await client.close()


async def test_without_auth_the_worker_name_alone_is_the_holder() -> None:
    backend = Backend()
    client = await serve(backend)
    try:
        headers = {"Taskmill-Worker": "w1"}
        assert (await client.post("/v1/lease", json=LEASE, headers=headers)).status == 200
        assert (
            await client.post("/v1/heartbeat", json={"leaseId": "x"}, headers=headers)
        ).status == 200
        assert backend.holders == [Holder("w1"), Holder("w1")]
    finally:
        await client.close()
