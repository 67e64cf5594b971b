"""Leader election on a ``coordination.k8s.io/v1`` Lease, client-go style.

Only the leader watches, dispatches, fires CronTasks and serves leases; the
other replicas wait here, answer ``/readyz`` with 503 (so the Service sends
workers only to the leader) and the lease routes with 503 ``NotLeader``.

The Lease records ``holderIdentity``, ``leaseDurationSeconds``,
``renewTime``, ``acquireTime`` and ``leaseTransitions``. Every write is an
update carrying the resourceVersion that was read, so two replicas racing for
the same Lease cannot both win: the loser gets 409 and stays a standby.

Expiry is judged on this replica's own monotonic clock, never by comparing
``renewTime`` with local wall time (clocks of nodes differ): a standby notes
when it last saw the Lease *change*, and takes over only after
``lease_seconds`` have passed with no change. The leader renews every
``retry_seconds``; if it has not renewed successfully for
``renew_deadline_seconds`` (which must be shorter than ``lease_seconds``) it
declares the leadership lost at once — before any standby can have taken
over — and :mod:`taskmill.controller.run` stops dispatching and exits
non-zero, so its Deployment restarts it as a fresh standby (simpler and
safer than rebuilding kopf and the reconcilers in-process: nothing of the old
term survives). On a clean stop the leader releases the Lease (empty
holder, duration 1 s), so a rolling update fails over in about a second.

Defaults follow client-go's ratios scaled down (15 s / 10 s / 2 s); tests
use ~3 s / 2 s / 0.3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from taskmill.kube.client import ApiError, KubeClient, path

log = logging.getLogger(__name__)


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float = 15.0,
        renew_deadline_seconds: float = 10.0,
        retry_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_seconds < renew_deadline_seconds < lease_seconds:
            raise ValueError("need retry_seconds < renew_deadline_seconds < lease_seconds")
        self.client = client
        self.url = path("leases", namespace, name, group="coordination.k8s.io", version="v1")
        self.collection = path("leases", namespace, group="coordination.k8s.io", version="v1")
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds = lease_seconds
        self.renew_deadline_seconds = renew_deadline_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.lost = asyncio.Event()
        self._leading = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    def is_leader(self) -> bool:
        return self._leading and not self.lost.is_set()

    def _spec(self, lease: dict[str, Any] | None) -> dict[str, Any]:
        now = datetime.now(UTC)
        old = (lease or {}).get("spec") or {}
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "renewTime": _micro_time(now),
            "acquireTime": old.get("acquireTime") or _micro_time(now),
            "leaseTransitions": int(old.get("leaseTransitions") or 0),
        }
        if old.get("holderIdentity") != self.identity:
            spec["acquireTime"] = _micro_time(now)
            if old.get("holderIdentity"):
                spec["leaseTransitions"] += 1
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """One round: True if this replica holds the Lease afterwards."""
        try:
            lease: dict[str, Any] = await self.client.get(self.url)
        except ApiError as exc:
            if not exc.is_not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                await self.client.create(self.collection, body)
            except ApiError as create_error:
                if create_error.already_exists or create_error.is_conflict:
                    return False
                raise
            self._renewed_at = self.clock()
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        now = self.clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # someone else holds it and it has not lapsed
        lease["spec"] = self._spec(lease)
        try:
            await self.client.request("PUT", self.url, body=lease)
        except ApiError as exc:
            if exc.is_conflict:
                return False
            raise
        self._renewed_at = self.clock()
        return True

    async def _round(self) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), self.retry_seconds * 2)
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning("leader election: cannot reach the Lease %s (%s)", self.name, exc)
            return False

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica leads (True) or ``stop`` is set (False)."""
        log.info(
            "leader election: %s waiting for Lease %s/%s", self.identity, self.namespace, self.name
        )
        while not stop.is_set():
            if await self._round():
                self._leading = True
                log.info("leader election: %s is the leader", self.identity)
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_seconds)
        return False

    async def keep(self, stop: asyncio.Event) -> None:
        """Renew until ``stop``; set :attr:`lost` if a renewal misses the deadline."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_seconds)
            if stop.is_set():
                return
            if await self._round():
                continue
            if self.clock() - self._renewed_at >= self.renew_deadline_seconds:
                log.error(
                    "leader election: %s lost the Lease %s (no renewal for %.1fs); stepping down",
                    self.identity,
                    self.name,
                    self.clock() - self._renewed_at,
                )
                self._leading = False
                self.lost.set()
                return

    async def release(self) -> None:
        """Give the Lease up at once (a clean stop), so a standby takes over quickly."""
        if not self.is_leader():
            return
        self._leading = False
        try:
            lease: dict[str, Any] = await self.client.get(self.url)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(
                holderIdentity="", leaseDurationSeconds=1, renewTime=_micro_time(datetime.now(UTC))
            )
            lease["spec"] = spec
            await self.client.request("PUT", self.url, body=lease)
            log.info("leader election: %s released the Lease %s", self.identity, self.name)
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning("leader election: could not release the Lease (%s); it will lapse", exc)
