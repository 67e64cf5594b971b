"""Leader election against a fake Lease store: acquire, hold, lapse, conflicts, loss."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from taskmill.controller.leader import LeaderElector
from taskmill.kube.client import ApiError

pytestmark = pytest.mark.asyncio

URL = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/lead"


class FakeLeases:
    """One Lease with resourceVersion preconditions, like the API server."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise OSError("connection refused")

    async def get(self, url: str) -> Any:
        self._check()
        assert url == URL
        if self.lease is None:
            raise ApiError(404, "NotFound", "no lease")
        return copy.deepcopy(self.lease)

    async def create(self, url: str, body: dict[str, Any]) -> Any:
        self._check()
        if self.lease is not None:
            raise ApiError(409, "AlreadyExists", "exists")
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return self.lease

    async def request(self, method: str, url: str, *, body: Any = None) -> Any:
        self._check()
        assert (method, url) == ("PUT", URL)
        assert self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return self.lease


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def elector(store: FakeLeases, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(
        store,  # type: ignore[arg-type]
        namespace="ns",
        name="lead",
        identity=identity,
        lease_seconds=3,
        renew_deadline_seconds=2,
        retry_seconds=0.01,
        clock=clock,
    )


async def test_first_comer_leads_and_the_other_waits_for_a_lapse() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await a.try_acquire_or_renew()
    assert store.lease is not None
    assert store.lease["spec"]["holderIdentity"] == "a"
    assert not await b.try_acquire_or_renew()
    clock.now += 2  # a renews in time: b sees a change and restarts its count
    assert await a.try_acquire_or_renew()
    clock.now += 2
    assert not await b.try_acquire_or_renew()
    clock.now += 3.5  # a is silent for longer than the lease
    assert await b.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "b"
    assert store.lease["spec"]["leaseTransitions"] == 1


async def test_a_stale_write_loses_the_race() -> None:
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock)
    assert await a.try_acquire_or_renew()
    stale = copy.deepcopy(store.lease)
    assert await a.try_acquire_or_renew()
    with pytest.raises(ApiError):
        await store.request("PUT", URL, body=stale)


async def test_a_leader_that_cannot_renew_steps_down_before_the_lease_lapses() -> None:
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock)
    stop = asyncio.Event()
    assert await a.acquire(stop)
    assert a.is_leader()
    store.down = True
    keeper = asyncio.create_task(a.keep(stop))
    await asyncio.sleep(0.05)
    assert not a.lost.is_set()  # still within the renew deadline
    clock.now += 2.1
    await asyncio.wait_for(a.lost.wait(), 5)
    assert not a.is_leader()
    await keeper


async def test_release_lets_a_standby_take_over_at_once() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    stop = asyncio.Event()
    assert await a.acquire(stop)
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert not a.is_leader()
    assert await b.try_acquire_or_renew()


async def test_timings_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry_seconds"):
        LeaderElector(
            FakeLeases(),  # type: ignore[arg-type]
            namespace="ns",
            name="x",
            identity="a",
            lease_seconds=2,
            renew_deadline_seconds=3,
            retry_seconds=1,
        )
