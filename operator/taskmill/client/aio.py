"""``AsyncClient``: submit, inspect, cancel, retry and wait for Tasks (asyncio).

Waiting watches the one Task (a ``fieldSelector`` watch from the
resourceVersion just read), so a result arrives as soon as the operator
writes it, with no polling; a watch that ends or expires (410 Gone) is
re-established from a fresh read.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from taskmill.client.errors import (
    PayloadTooLarge,
    TaskCancelled,
    TaskDead,
    TaskDeleted,
    TaskNotFound,
    WaitTimeout,
)
from taskmill.kube import config as kube_config
from taskmill.models.base import API_VERSION
from taskmill.models.resources import Task
from taskmill.models.task import PAYLOAD_MAX_BYTES, RETRY_ANNOTATION, Phase

if TYPE_CHECKING:
    from taskmill.kube.client import KubeClient

#: ``depends_on`` entries: a Task name (condition ``Succeeded``), a
#: ``(name, condition)`` pair, or a ``{"name": ..., "condition": ...}`` dict.
Dependency = str | tuple[str, str] | Mapping[str, str]


@dataclass(frozen=True)
class Submitted:
    """What :meth:`AsyncClient.submit_detailed` did."""

    task: Task
    #: False when a Task of that name existed already (and was returned).
    created: bool


def generate_name(type_: str) -> str:
    """A fresh Task name for a type: ``send-email-3f9c2a61b0``."""
    slug = re.sub(r"[^a-z0-9]+", "-", type_.lower()).strip("-")[:40].strip("-") or "task"
    return f"{slug}-{secrets.token_hex(5)}"


def task_manifest(
    type_: str,
    payload: Mapping[str, Any] | None,
    *,
    name: str,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    run_at: dt.datetime | str | None = None,
    depends_on: Iterable[Dependency] | None = None,
    timeout_seconds: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Task object ``submit`` creates; refuses an oversized payload first."""
    spec: dict[str, Any] = {"type": type_}
    if payload is not None:
        if not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a JSON object (a dict), not {type(payload).__name__}")
        size = len(orjson.dumps(dict(payload)))
        if size > PAYLOAD_MAX_BYTES:
            raise PayloadTooLarge(
                f"payload is {size} bytes of JSON, more than {PAYLOAD_MAX_BYTES}; "
                "put large inputs in a ConfigMap or Secret and use spec.payloadFrom"
            )
        spec["payload"] = dict(payload)
    if queue is not None:
        spec["queue"] = queue
    if priority is not None:
        spec["priority"] = priority
    if max_attempts is not None:
        spec["maxAttempts"] = max_attempts
    if timeout_seconds is not None:
        spec["timeoutSeconds"] = timeout_seconds
    if run_at is not None:
        if isinstance(run_at, dt.datetime):
            if run_at.tzinfo is None:
                raise ValueError("run_at must be timezone-aware (e.g. datetime.now(UTC))")
            run_at = run_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        spec["runAt"] = run_at
    if depends_on is not None:
        spec["dependsOn"] = [_dependency(d) for d in depends_on]
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": API_VERSION, "kind": "Task", "metadata": metadata, "spec": spec}


def _dependency(dep: Dependency) -> dict[str, str]:
    if isinstance(dep, str):
        return {"name": dep}
    if isinstance(dep, tuple):
        return {"name": dep[0], "condition": dep[1]}
    return dict(dep)


def outcome(body: Mapping[str, Any]) -> tuple[bool, Any]:
    """``(finished, result)`` for a Task object; raises if it ended without a result."""
    task = Task.model_validate(body)
    status = task.status
    namespace, name = task.metadata.namespace or "", task.metadata.name
    if status is None:
        return False, None
    if status.phase == Phase.SUCCEEDED:
        return True, status.result
    if status.phase == Phase.DEAD:
        raise TaskDead(namespace, name, status.reason, status.last_error, status.message)
    if status.phase == Phase.CANCELLED:
        raise TaskCancelled(namespace, name, f"task {namespace}/{name} was cancelled")
    return False, None


class AsyncClient:
    """Tasks through the Kubernetes API.

    ``namespace`` defaults to the kubeconfig context's namespace (in a pod:
    the pod's own); ``kubeconfig``/``context`` pick a file and context, as
    kubectl's ``--kubeconfig``/``--context`` do. Use it as an async context
    manager, or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        config: kube_config.KubeConfig | None = None,
    ) -> None:
        self.config = config or kube_config.load(kubeconfig, context)
        self.namespace = namespace or self.config.namespace
        # aiohttp is imported on first use: ``import taskmill`` (and every CLI
        # start) stays fast.
        from taskmill.kube.client import KubeClient

        self.kube: KubeClient = KubeClient(self.config)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.kube.close()

    # ------------------------------------------------------------------ create

    async def submit(
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
        """Create a Task and return it. ``name`` is the idempotency key: if a
        Task of that name exists, it is returned and nothing new runs."""
        submitted = await self.submit_detailed(
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
        return submitted.task

    async def submit_detailed(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        namespace: str | None = None,
        **options: Any,
    ) -> Submitted:
        """:meth:`submit`, also saying whether the Task was created or already there."""
        from taskmill.kube.client import ApiError, path

        ns = namespace or self.namespace
        manifest = task_manifest(type, payload, name=name or generate_name(type), **options)
        try:
            body = await self.kube.create(path("tasks", ns), manifest)
            return Submitted(Task.model_validate(body), created=True)
        except ApiError as exc:
            if not exc.already_exists:
                raise
        existing = await self.get_raw(manifest["metadata"]["name"], namespace=ns)
        return Submitted(Task.model_validate(existing), created=False)

    # ------------------------------------------------------------------ read

    async def get(self, name: str, *, namespace: str | None = None) -> Task:
        return Task.model_validate(await self.get_raw(name, namespace=namespace))

    async def get_raw(self, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        """The Task object as the API server returns it."""
        from taskmill.kube.client import ApiError, path

        ns = namespace or self.namespace
        try:
            body: dict[str, Any] = await self.kube.get(path("tasks", ns, name))
        except ApiError as exc:
            if exc.is_not_found:
                raise TaskNotFound(f"task {ns}/{name} not found") from exc
            raise
        return body

    async def list(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        selector: str | None = None,
    ) -> builtins.list[Task]:
        listed = await self.list_raw(
            namespace=namespace, all_namespaces=all_namespaces, selector=selector
        )
        return [Task.model_validate(item) for item in listed["items"]]

    async def list_raw(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """The ``TaskList`` as the API server returns it."""
        from taskmill.kube.client import path

        ns = None if all_namespaces else (namespace or self.namespace)
        params = {}
        if selector:
            params["labelSelector"] = selector
        if field_selector:
            params["fieldSelector"] = field_selector
        listed: dict[str, Any] = await self.kube.get(path("tasks", ns), params=params)
        return listed

    # ------------------------------------------------------------------ change

    async def cancel(self, name: str, *, namespace: str | None = None) -> Task:
        """Set ``spec.cancel: true``; a running attempt is told through its lease."""
        return await self._patch(name, namespace, {"spec": {"cancel": True}})

    async def retry(self, name: str, *, namespace: str | None = None) -> Task:
        """Ask the operator to run a finished Task again: a new value of the
        ``taskmill.dev/retry`` annotation (no spec change, so GitOps sees no drift)."""
        value = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        return await self._patch(
            name, namespace, {"metadata": {"annotations": {RETRY_ANNOTATION: value}}}
        )

    async def _patch(self, name: str, namespace: str | None, patch: dict[str, Any]) -> Task:
        from taskmill.kube.client import ApiError, path

        ns = namespace or self.namespace
        try:
            body = await self.kube.merge_patch(path("tasks", ns, name), patch)
        except ApiError as exc:
            if exc.is_not_found:
                raise TaskNotFound(f"task {ns}/{name} not found") from exc
            raise
        return Task.model_validate(body)

    # ------------------------------------------------------------------ wait

    async def wait(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's documented API
        namespace: str | None = None,
    ) -> Any:
        """Wait until the Task finishes; return its ``status.result``.

        Raises :class:`TaskDead` (with ``reason`` and ``last_error``),
        :class:`TaskCancelled`, :class:`TaskDeleted`, :class:`TaskNotFound`, or
        :class:`WaitTimeout` after ``timeout`` seconds (``None``: no limit).
        """
        ns = namespace or self.namespace
        seen: builtins.list[str | None] = [None]
        try:
            async with asyncio.timeout(timeout):
                return await self._watch_until_finished(ns, name, seen)
        except TimeoutError as exc:
            if isinstance(exc, WaitTimeout):
                raise
            raise WaitTimeout(ns, name, timeout or 0, seen[0]) from None

    async def _watch_until_finished(
        self, ns: str, name: str, seen: builtins.list[str | None]
    ) -> Any:
        from taskmill.kube.client import ApiError, path

        while True:
            body = await self.get_raw(name, namespace=ns)
            seen[0] = (body.get("status") or {}).get("phase")
            finished, result = outcome(body)
            if finished:
                return result
            rv = body["metadata"]["resourceVersion"]
            try:
                async for event in self.kube.watch(
                    path("tasks", ns),
                    resource_version=rv,
                    params={"fieldSelector": f"metadata.name={name}"},
                ):
                    kind = event.get("type")
                    if kind == "BOOKMARK":
                        continue
                    if kind == "ERROR":
                        break  # e.g. 410 Gone: read again and watch from there
                    obj = event["object"]
                    if kind == "DELETED":
                        raise TaskDeleted(ns, name, f"task {ns}/{name} was deleted")
                    seen[0] = (obj.get("status") or {}).get("phase")
                    finished, result = outcome(obj)
                    if finished:
                        return result
            except ApiError as exc:
                if exc.status != 410:
                    raise
