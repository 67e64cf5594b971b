"""Operator settings, grouped; each field says what it changes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorSettings:
    #: Namespaces to watch; empty means all (cluster-wide).
    namespaces: tuple[str, ...] = ()
    #: Address and port of the lease API (workers connect here).
    lease_host: str = "0.0.0.0"
    lease_port: int = 8080
    #: What one client connection of the lease API may hold: header, body
    #: and idle timeouts, and connections per source address (see
    #: :mod:`taskmill.leaseapi.connections`).
    lease_header_timeout_seconds: float = 10.0
    lease_body_timeout_seconds: float = 30.0
    lease_idle_timeout_seconds: float = 30.0
    lease_max_connections_per_address: int = 256
    #: Lease duration when the Task's queue does not set one.
    lease_seconds: float = 30.0
    #: How often workers are asked to heartbeat, as a fraction of the lease.
    heartbeat_fraction: float = 1 / 3
    #: Status writes in flight at once (each is one API request).
    max_concurrent_writes: int = 64
    #: A Pending Task whose type no worker has asked for in this long is
    #: marked ``Waiting/NoWorker`` (one write; it is leased as soon as a worker
    #: for its type appears).
    no_worker_after_seconds: float = 30.0
    #: Kubernetes Events per second at most (burst 4x), so a flood of failures
    #: cannot flood etcd.
    events_per_second: float = 5.0
    #: Identity written into Events and logs.
    instance: str = "taskmill-operator"
    #: Authenticate lease-API callers: the audience their ServiceAccount
    #: tokens must carry (checked with TokenReview). None: auth is off.
    auth_audience: str | None = None
    #: ServiceAccount user names allowed to lease
    #: (``system:serviceaccount:<namespace>:<name>``); others get 403.
    worker_identities: tuple[str, ...] = ()
    #: How long a TokenReview answer is reused for the same token.
    token_cache_seconds: float = 60.0
    #: TokenReviews a second at most for tokens not accepted before (bursts of
    #: ``token_reviews_burst``); more unknown tokens get 503 and retry. Tokens
    #: already accepted are checked again whenever their answer expires.
    token_reviews_per_second: float = 20.0
    token_reviews_burst: int = 100
    #: Run only while holding this ``coordination.k8s.io/v1`` Lease
    #: (``namespace/name``); None: no leader election (a single replica).
    leader_lease: tuple[str, str] | None = None
    #: This replica's identity in the Lease (default: host name and pid).
    leader_identity: str = ""
    #: A leader's claim lasts this long without renewal; standbys take over
    #: after it lapses.
    leader_lease_seconds: float = 15.0
    #: A leader that has not renewed for this long stops at once.
    leader_renew_deadline_seconds: float = 10.0
    #: How often the leader renews and standbys try to acquire.
    leader_retry_seconds: float = 2.0
