"""Operator settings, grouped; each field says what it changes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorSettings:
    #: Namespaces to watch; empty means all (cluster-wide).
    namespaces: tuple[str, ...] = ()
    #: Address and port of the lease API (workers connect here).
    lease_host: str = "0.0.0.0"
    lease_port: int = 8080
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
    extra: dict[str, str] = field(default_factory=dict)
