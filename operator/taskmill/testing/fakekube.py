"""An in-memory stand-in for :class:`~taskmill.kube.client.KubeClient`.

For fast tests of the controller's adapters: the same async methods
(``get``, ``create``, ``merge_patch``, ``delete``, ``request``, ``close``) on
the URLs :func:`taskmill.kube.client.path` builds, answered as the real API
server answers them where the controller depends on it:

- one resourceVersion counter for everything (strings), bumped only by a
  write that changes the object (the API server skips no-op updates);
- ``uid`` and ``creationTimestamp`` set on create (from the injected clock);
- custom resources (any group but core ``v1``) have the status subresource:
  a write to the object ignores ``status``, a write to ``/status`` changes
  only ``status``, and ``metadata.generation`` goes up when anything but
  metadata and status changes;
- ``metadata.resourceVersion`` in a patch or PUT body is a precondition,
  ``preconditions.uid`` / ``preconditions.resourceVersion`` in a delete's
  options too; refusals are :class:`~taskmill.kube.client.ApiError` with the
  server's code, reason and message (404 NotFound, 409 AlreadyExists, 409
  Conflict), and a ``Status`` body;
- an object with finalizers is marked (``deletionTimestamp``) rather than
  removed, and removed once its last finalizer goes.

Not modelled: admission, defaulting and validation by the CRD schema,
garbage collection through ownerReferences, field and set-based selectors.

For tests: :attr:`FakeKube.requests` logs every request (method, URL) for
write-budget assertions; :meth:`FakeKube.fail` makes the next matching
requests fail; :meth:`FakeKube.listen` delivers every change as a watch
event ``(type, object)`` (soon after the request, as a watch would);
:meth:`FakeKube.put`, :meth:`FakeKube.objects` and :meth:`FakeKube.object`
set up and inspect state without going through the request log.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from taskmill.dispatch.clock import Clock, WallClock, to_datetime
from taskmill.kube.client import ApiError, KubeClient

Obj = dict[str, Any]
#: (plural, namespace, name); namespace "" for cluster-scoped objects.
ObjKey = tuple[str, str, str]
Listener = Callable[[str, Obj], None]

#: Kinds of the plurals tests use, for list kinds and error details.
_KINDS = {
    "tasks": "Task",
    "crontasks": "CronTask",
    "events": "Event",
    "secrets": "Secret",
    "configmaps": "ConfigMap",
    "leases": "Lease",
    "namespaces": "Namespace",
    "pods": "Pod",
}


@dataclass(frozen=True)
class Target:
    """What a URL names."""

    group: str
    version: str
    plural: str
    namespace: str | None  # None: every namespace (collections) or cluster-scoped
    name: str | None
    subresource: str | None

    @property
    def api_version(self) -> str:
        return self.version if self.group == "" else f"{self.group}/{self.version}"

    @property
    def resource(self) -> str:
        """``tasks.taskmill.dev``, as the server names a resource in messages."""
        return self.plural if self.group == "" else f"{self.plural}.{self.group}"

    @property
    def has_status_subresource(self) -> bool:
        return self.group != ""

    def key(self) -> ObjKey:
        assert self.name is not None
        return (self.plural, self.namespace or "", self.name)


def parse_url(url: str) -> Target:
    """The resource a URL of :func:`taskmill.kube.client.path` names."""
    parts = [p for p in url.split("?", 1)[0].split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource: {url}")
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource: {url}")
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    return Target(group, version, plural, namespace, name, subresource)


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``patch`` applied to ``target`` (neither is changed).

    The RFC's algorithm is these few lines; a library for it would be one more
    dependency of the testing extra for nothing more."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def _selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class _Failure:
    method: str
    url_prefix: str
    error: BaseException
    times: int


class FakeKube:
    """An API server in a dict; see the module docs."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or WallClock()
        self._objects: dict[ObjKey, Obj] = {}
        self._versions = itertools.count(1)
        self.resource_version = "0"
        #: Every request, in order: (method, URL without the query).
        self.requests: list[tuple[str, str]] = []
        self._failures: list[_Failure] = []
        self._listeners: list[tuple[str | None, Listener]] = []
        self.closed = False

    # -- test helpers ----------------------------------------------------------

    def as_client(self) -> KubeClient:
        """This fake, typed as the client the controller's code expects."""
        return cast(KubeClient, self)

    def fail(self, method: str, url_prefix: str, error: BaseException, times: int = 1) -> None:
        """Make the next ``times`` requests of ``method`` to a URL starting with
        ``url_prefix`` fail with ``error`` (an ApiError or an OSError, say)."""
        self._failures.append(_Failure(method.upper(), url_prefix, error, times))

    def listen(self, listener: Listener, plural: str | None = None) -> Callable[[], None]:
        """Deliver every change (of ``plural``, or of anything) as ``(type, object)``,
        type ``ADDED``/``MODIFIED``/``DELETED``, on the event loop soon after the
        request that made it (or at once, outside a running loop). Returns a
        function that stops the delivery."""
        entry = (plural, listener)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    def put(self, obj: Obj, *, plural: str | None = None) -> Obj:
        """Store ``obj`` as it is (status included), filling in what the server
        would (uid, resourceVersion, creationTimestamp, generation). Not logged as
        a request; listeners are told."""
        meta = obj.get("metadata") or {}
        kind = obj.get("kind", "")
        plural = plural or next((p for p, k in _KINDS.items() if k == kind), kind.lower() + "s")
        key = (plural, meta.get("namespace", ""), meta["name"])
        stored = copy.deepcopy(obj)
        stored_meta = stored.setdefault("metadata", {})
        previous = self._objects.get(key)
        stored_meta.setdefault(
            "uid", previous["metadata"]["uid"] if previous else str(uuid.uuid4())
        )
        stored_meta.setdefault("creationTimestamp", self._timestamp())
        if "/" in stored.get("apiVersion", ""):
            stored_meta.setdefault("generation", 1)
        stored_meta["resourceVersion"] = self._next_version()
        self._objects[key] = stored
        self._notify("MODIFIED" if previous else "ADDED", plural, stored)
        return copy.deepcopy(stored)

    def objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        """Copies of the stored objects of ``plural`` (in ``namespace``), by name."""
        return [
            copy.deepcopy(obj)
            for (p, ns, _), obj in sorted(self._objects.items())
            if p == plural and (namespace is None or ns == namespace)
        ]

    def object(self, plural: str, namespace: str, name: str) -> Obj | None:
        """A copy of one stored object, or None."""
        obj = self._objects.get((plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def writes(self, method: str | None = None, url_prefix: str = "") -> list[tuple[str, str]]:
        """The logged requests that write (all but GET), optionally filtered."""
        return [
            (m, u)
            for m, u in self.requests
            if m != "GET" and (method is None or m == method) and u.startswith(url_prefix)
        ]

    # -- the client's surface --------------------------------------------------

    async def close(self) -> None:
        self.closed = True

    async def get(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        return await self.request("GET", url, params=params)

    async def create(self, url: str, obj: Mapping[str, Any]) -> Any:
        return await self.request("POST", url, body=obj)

    async def merge_patch(self, url: str, patch: Mapping[str, Any]) -> Any:
        return await self.request("PATCH", url, body=patch)

    async def delete(self, url: str, body: Mapping[str, Any] | None = None) -> Any:
        return await self.request("DELETE", url, body=body)

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout_seconds: float | None = None,
    ) -> Any:
        method = method.upper()
        url = url.split("?", 1)[0]
        self.requests.append((method, url))
        self._maybe_fail(method, url)
        target = parse_url(url)
        if method == "GET":
            return self._get(target, params or {})
        if method == "POST":
            return self._create(target, body or {})
        if method == "PATCH":
            if content_type not in ("application/json", "application/merge-patch+json"):
                raise _status(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format: {content_type}",
                )
            return self._patch(target, body or {})
        if method == "PUT":
            return self._replace(target, body or {})
        if method == "DELETE":
            return self._delete(target, body or {})
        raise _status(405, "MethodNotAllowed", f"the server does not allow this method: {method}")

    # -- the server ------------------------------------------------------------

    def _maybe_fail(self, method: str, url: str) -> None:
        for failure in self._failures:
            if failure.method == method and url.startswith(failure.url_prefix):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                raise failure.error

    def _get(self, target: Target, params: Mapping[str, str]) -> Obj:
        if target.name is not None:
            return copy.deepcopy(self._existing(target))
        selector = params.get("labelSelector", "")
        items = [
            copy.deepcopy(obj)
            for (plural, namespace, _), obj in sorted(self._objects.items())
            if plural == target.plural
            and (target.namespace is None or namespace == target.namespace)
            and _selector_matches(selector, (obj.get("metadata") or {}).get("labels") or {})
        ]
        kind = _KINDS.get(target.plural)
        return {
            "apiVersion": target.api_version,
            "kind": f"{kind}List" if kind else "List",
            "metadata": {"resourceVersion": self.resource_version},
            "items": items,
        }

    def _create(self, target: Target, body: Mapping[str, Any]) -> Obj:
        if target.name is not None:
            raise _status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise _status(
                    422,
                    "Invalid",
                    f'{target.plural} "" is invalid: metadata.name: Required value: '
                    "name or generateName is required",
                )
            meta["name"] = prefix + uuid.uuid4().hex[:5]
        namespace = target.namespace or ""
        if meta.get("namespace", namespace) != namespace:
            raise _status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent "
                "on the request",
            )
        key = (target.plural, namespace, meta["name"])
        if key in self._objects:
            raise _status(
                409,
                "AlreadyExists",
                f'{target.resource} "{meta["name"]}" already exists',
                target,
                meta["name"],
            )
        if namespace:
            meta["namespace"] = namespace
        obj.setdefault("apiVersion", target.api_version)
        if target.plural in _KINDS:
            obj.setdefault("kind", _KINDS[target.plural])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self._timestamp()
        for server_owned in ("deletionTimestamp", "resourceVersion"):
            meta.pop(server_owned, None)
        if target.has_status_subresource:
            obj.pop("status", None)  # set through /status only
            meta["generation"] = 1
        meta["resourceVersion"] = self._next_version()
        self._objects[key] = obj
        self._notify("ADDED", target.plural, obj)
        return copy.deepcopy(obj)

    def _patch(self, target: Target, patch: Mapping[str, Any]) -> Obj:
        current = self._existing(target)
        patch = dict(patch)
        patch_meta = dict(patch.pop("metadata", None) or {})
        self._check_version(target, current, patch_meta.pop("resourceVersion", None))
        if target.subresource == "status":
            updated = copy.deepcopy(current)
            if "status" in patch:
                if patch["status"] is None:
                    updated.pop("status", None)
                else:
                    updated["status"] = merge(current.get("status"), patch["status"])
        elif target.subresource is None:
            if target.has_status_subresource:
                patch.pop("status", None)
            updated = merge(copy.deepcopy(current), patch)
            updated["metadata"] = merge(current["metadata"], _mutable_meta(patch_meta))
        else:
            raise _status(
                404,
                "NotFound",
                f"the server could not find the requested resource ({target.subresource})",
            )
        return self._store(target, current, updated)

    def _replace(self, target: Target, body: Mapping[str, Any]) -> Obj:
        current = self._existing(target)
        new = copy.deepcopy(dict(body))
        new_meta = new.get("metadata") or {}
        self._check_version(target, current, new_meta.get("resourceVersion") or None)
        if target.subresource == "status":
            updated = copy.deepcopy(current)
            if "status" in new:
                updated["status"] = new["status"]
            else:
                updated.pop("status", None)
        else:
            if target.has_status_subresource:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
            meta = {k: v for k, v in current["metadata"].items() if k in _SERVER_META}
            meta.update(_mutable_meta(new_meta))
            meta.update(
                {k: current["metadata"][k] for k in _SERVER_META if k in current["metadata"]}
            )
            new["metadata"] = meta
            new.setdefault("apiVersion", current.get("apiVersion"))
            new.setdefault("kind", current.get("kind"))
            updated = new
        return self._store(target, current, updated)

    def _delete(self, target: Target, options: Mapping[str, Any]) -> Obj:
        current = self._existing(target)
        preconditions = options.get("preconditions") or {}
        uid = preconditions.get("uid")
        if uid is not None and uid != current["metadata"].get("uid"):
            raise _status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {target.resource} "{target.name}": '
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {current['metadata'].get('uid')}",
                target,
            )
        self._check_version(target, current, preconditions.get("resourceVersion"))
        key = target.key()
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return copy.deepcopy(current)
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = self._timestamp()
            return self._store(target, current, updated)
        del self._objects[key]
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self._next_version()
        self._notify("DELETED", target.plural, gone)
        return copy.deepcopy(gone)

    def _store(self, target: Target, current: Obj, updated: Obj) -> Obj:
        if updated == current:
            return copy.deepcopy(current)  # a no-op write: no new version, no event
        meta = updated["metadata"]
        if target.has_status_subresource and _spec_of(updated) != _spec_of(current):
            meta["generation"] = int(current["metadata"].get("generation") or 0) + 1
        meta["resourceVersion"] = self._next_version()
        key = target.key()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self._objects[key]
            self._notify("DELETED", target.plural, updated)
            return copy.deepcopy(updated)
        self._objects[key] = updated
        self._notify("MODIFIED", target.plural, updated)
        return copy.deepcopy(updated)

    def _existing(self, target: Target) -> Obj:
        if target.name is None:
            raise _status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        obj = self._objects.get(target.key())
        if obj is None:
            raise _status(404, "NotFound", f'{target.resource} "{target.name}" not found', target)
        return obj

    def _check_version(self, target: Target, current: Obj, wanted: str | None) -> None:
        if wanted is not None and wanted != current["metadata"].get("resourceVersion"):
            raise _status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {target.resource} "{target.name}": '
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
                target,
            )

    def _next_version(self) -> str:
        self.resource_version = str(next(self._versions))
        return self.resource_version

    def _timestamp(self) -> str:
        return to_datetime(int(self.clock.now())).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _notify(self, event_type: str, plural: str, obj: Obj) -> None:
        for wanted, listener in list(self._listeners):
            if wanted is not None and wanted != plural:
                continue
            event = copy.deepcopy(obj)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                listener(event_type, event)
            else:
                loop.call_soon(listener, event_type, event)


#: Metadata only the server sets: kept as stored whatever a write says.
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "name",
    "namespace",
)


def _mutable_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in _SERVER_META}


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _status(
    code: int, reason: str, message: str, target: Target | None = None, name: str | None = None
) -> ApiError:
    """The error the API server answers with, its ``Status`` body included."""
    details: dict[str, Any] = {}
    if target is not None:
        details = {"name": name or target.name or "", "kind": target.plural}
        if target.group:
            details["group"] = target.group
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }
    return ApiError(code, reason, message, body)
