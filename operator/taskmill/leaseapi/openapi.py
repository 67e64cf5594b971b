"""The lease API's OpenAPI document, built from the wire models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from taskmill.models import lease as wire

ROUTES: tuple[tuple[str, str, type[BaseModel], type[BaseModel] | None], ...] = (
    ("/v1/lease", "Long-poll for Tasks to run", wire.LeaseRequest, wire.LeaseResponse),
    (
        "/v1/heartbeat",
        "Keep a lease alive; learn of cancellation",
        wire.HeartbeatRequest,
        wire.HeartbeatResponse,
    ),
    ("/v1/complete", "Report the outcome of an attempt", wire.CompleteRequest, None),
    (
        "/v1/outcomes",
        "Report the outcomes of several attempts, each answered on its own",
        wire.OutcomesRequest,
        wire.OutcomesResponse,
    ),
)


#: Every error a lease route can answer, whatever the route (409 is added for
#: the routes that name a lease). The server answers each with an ErrorBody.
_ERRORS = {
    "400": "Malformed request: not JSON, a field out of its schema, an unknown key, or"
    " (MissingWorker) no worker name on a call that needs one",
    "401": "No valid token (when the operator authenticates workers)",
    "403": "The token's identity is not an allowed worker",
    "408": "The body did not arrive within the body timeout; the connection is closed",
    "413": "The body is larger than the limit (1 MiB)",
    "500": "An unexpected error, logged by the operator; nothing was changed",
    "503": "A standby replica, an operator still loading Tasks, an API server that takes"
    " no writes now, or a token that could not be checked now; retry (Retry-After)",
}


def document(version: str) -> dict[str, Any]:
    models: list[type[BaseModel]] = [wire.ErrorBody]
    for _, _, request, response in ROUTES:
        models.append(request)
        if response is not None:
            models.append(response)
    _, schemas = models_json_schema(
        [(m, "validation") for m in models],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    error = {"$ref": "#/components/schemas/ErrorBody"}
    worker_header = {
        "name": wire.WORKER_HEADER,
        "in": "header",
        "description": "The calling worker's name (400 MissingWorker without it; a pod-bound"
        " token's pod name takes its place). Only the holder a lease was granted to may act"
        " on it (409 otherwise).",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": wire.MAX_WORKER_CHARS,
            "pattern": wire.WORKER_NAME,
        },
    }
    paths: dict[str, Any] = {}
    for route, summary, request, response in ROUTES:
        responses: dict[str, Any] = {code: _json(text, error) for code, text in _ERRORS.items()}
        if route != "/v1/lease":
            responses["409"] = _json(
                "The lease is not current (expired, foreign or completed), or the caller is"
                " not its holder",
                error,
            )
        if response is not None:
            ref = {"$ref": f"#/components/schemas/{response.__name__}"}
            responses["200"] = _json("OK", ref)
        else:
            responses["204"] = {"description": "Recorded"}
        paths[route] = {
            "post": {
                "summary": summary,
                "operationId": route.rsplit("/", 1)[-1],
                # The lease call names its worker in the body; the others must
                # say who they are, to be checked against the lease's holder.
                "parameters": [worker_header | {"required": route != "/v1/lease"}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{request.__name__}"}
                        }
                    },
                },
                "responses": dict(sorted(responses.items())),
            }
        }
    text = {"text/plain": {"schema": {"type": "string"}}}
    paths["/healthz"] = _probe("The process is up", {"200": {"description": "ok", "content": text}})
    paths["/readyz"] = _probe(
        "Ready to serve: leading, Tasks loaded",
        {
            "200": {"description": "ok", "content": text},
            "503": {"description": "not ready", "content": text},
        },
    )
    paths["/openapi.json"] = _probe(
        "This document", {"200": _json("The OpenAPI document", {"type": "object"})}
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Taskmill lease API", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "serviceAccountToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A ServiceAccount token with the operator's audience",
                }
            },
        },
        "security": [{}, {"serviceAccountToken": []}],
    }


def _probe(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A GET route that needs no token."""
    return {"get": {"summary": summary, "security": [], "responses": responses}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
