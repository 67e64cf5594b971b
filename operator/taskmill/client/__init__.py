"""The producer SDK: create Tasks from Python and wait for their results.

An adapter over :mod:`taskmill.kube` (it never talks to the operator, only
to the API server, like ``kubectl``): ``AsyncClient`` is the asyncio API,
``Client`` the same calls for synchronous code (it runs an ``AsyncClient``
on a private event-loop thread). Both find the cluster with kubectl's rules
(:func:`taskmill.kube.config.load`). See ``docs/sdk.md``.
"""

from taskmill.client.aio import AsyncClient
from taskmill.client.errors import (
    PayloadTooLarge,
    TaskCancelled,
    TaskDead,
    TaskDeleted,
    TaskmillError,
    TaskNotFound,
    WaitTimeout,
)
from taskmill.client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "PayloadTooLarge",
    "TaskCancelled",
    "TaskDead",
    "TaskDeleted",
    "TaskNotFound",
    "TaskmillError",
    "WaitTimeout",
]
