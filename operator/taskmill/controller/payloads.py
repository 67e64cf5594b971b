"""Where a leased Task's payload comes from: ``spec.payload``, or the
ConfigMap or Secret key that ``spec.payloadFrom`` names (read at lease time,
so large inputs never sit in the Task or in the operator's memory)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from taskmill.kube.client import ApiError, KubeClient, path
from taskmill.models.task import TaskSpec


class BadPayload(Exception):
    """``payloadFrom`` names something missing or not a JSON object: the Task
    cannot run as it is. (An API server that is busy or away is not a bad
    payload: that error is raised as it is, and the grant tried again.)"""


async def resolve_payload(
    client: KubeClient, namespace: str, spec: TaskSpec
) -> dict[str, Any] | None:
    source = spec.payload_from
    if source is None:
        return spec.payload
    ref, plural = (
        (source.config_map_key_ref, "configmaps")
        if source.config_map_key_ref
        else (source.secret_key_ref, "secrets")
    )
    kind = plural[:-1]
    if ref is None:
        raise BadPayload("payloadFrom names neither a configMapKeyRef nor a secretKeyRef")
    try:
        obj = await client.get(path(plural, namespace, ref.name, group="", version="v1"))
    except ApiError as exc:
        if exc.is_transient:
            raise  # the API server is busy or away: the grant is tried again
        raise BadPayload(f"payloadFrom: {kind} {ref.name!r}: {exc.message}") from exc
    data = obj.get("data") or {}
    if ref.key not in data:
        raise BadPayload(f"payloadFrom: {kind} {ref.name!r} has no key {ref.key!r}")
    raw = base64.b64decode(data[ref.key]) if plural == "secrets" else data[ref.key]
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadPayload(f"payloadFrom: key {ref.key!r} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadPayload(f"payloadFrom: key {ref.key!r} is not a JSON object")
    return value
