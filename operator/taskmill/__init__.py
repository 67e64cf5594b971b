"""Taskmill: a Kubernetes-native task scheduler.

Layers import one way only (enforced by ``lint-imports``, contracts in ``.importlinter``)::

    models        pydantic models of the custom resources and the lease wire
                  protocol; no I/O
    dispatch      the pure dispatch core: queue, backoff, state transitions;
                  the clock is injected, no I/O
    kube, leaseapi, controller, worker, testing
                  adapters: the Kubernetes client, the lease HTTP API, the kopf
                  operator, the worker runtime, the local control plane
    cli           the ``taskmill`` / ``kubectl taskmill`` commands

The names a handler author needs are re-exported here.
"""

from taskmill.client import AsyncClient, Client, TaskCancelled, TaskDead
from taskmill.worker.registry import Fail, HandlerContext, Retry, handler

__all__ = [
    "AsyncClient",
    "Client",
    "Fail",
    "HandlerContext",
    "Retry",
    "TaskCancelled",
    "TaskDead",
    "handler",
]
__version__ = "0.1.0"
