"""``Client``: the SDK for synchronous code.

Each ``Client`` runs an :class:`~taskmill.client.aio.AsyncClient` on its own
event loop in a daemon thread, so it works the same in scripts, web request
handlers and threads, and even inside code that already runs an event loop
(where ``asyncio.run`` would refuse). Close it (or use ``with``) to stop the
thread.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import threading
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from taskmill.client.aio import AsyncClient, Dependency, Submitted
from taskmill.kube import config as kube_config
from taskmill.models.resources import Task

T = TypeVar("T")


class Client:
    """Tasks through the Kubernetes API, for synchronous code.

    The same calls as :class:`AsyncClient`, blocking; see it for the options.
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        config: kube_config.KubeConfig | None = None,
    ) -> None:
        self._async = AsyncClient(
            namespace=namespace, kubeconfig=kubeconfig, context=context, config=config
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="taskmill-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def namespace(self) -> str:
        return self._async.namespace

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this taskmill.Client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._closed:
            return
        self._call(self._async.close())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        run_at: dt.datetime | str | None = None,
        depends_on: Iterable[Dependency] | None = None,
        timeout_seconds: int | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
    ) -> Task:
        """Create a Task (or return the existing one of that ``name``)."""
        return self._call(
            self._async.submit(
                type,
                payload,
                name=name,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                run_at=run_at,
                depends_on=depends_on,
                timeout_seconds=timeout_seconds,
                labels=labels,
                namespace=namespace,
            )
        )

    def submit_detailed(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> Submitted:
        return self._call(
            self._async.submit_detailed(type, payload, name=name, namespace=namespace, **options)
        )

    def get(self, name: str, *, namespace: str | None = None) -> Task:
        return self._call(self._async.get(name, namespace=namespace))

    def get_raw(self, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        return self._call(self._async.get_raw(name, namespace=namespace))

    def list(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        selector: str | None = None,
    ) -> builtins.list[Task]:
        return self._call(
            self._async.list(namespace=namespace, all_namespaces=all_namespaces, selector=selector)
        )

    def list_raw(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        return self._call(
            self._async.list_raw(
                namespace=namespace,
                all_namespaces=all_namespaces,
                selector=selector,
                field_selector=field_selector,
            )
        )

    def cancel(self, name: str, *, namespace: str | None = None) -> Task:
        return self._call(self._async.cancel(name, namespace=namespace))

    def retry(self, name: str, *, namespace: str | None = None) -> Task:
        return self._call(self._async.retry(name, namespace=namespace))

    def wait(self, name: str, *, timeout: float | None = None, namespace: str | None = None) -> Any:
        """Block until the Task finishes (a watch); return its result or raise."""
        return self._call(self._async.wait(name, timeout=timeout, namespace=namespace))
