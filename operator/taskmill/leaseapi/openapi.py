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
    paths: dict[str, Any] = {}
    for route, summary, request, response in ROUTES:
        responses: dict[str, Any] = {
            "400": _json("Malformed request", error),
            "409": _json("The lease is not current (expired, foreign or completed)", error),
            "401": _json("No valid token (when the operator authenticates workers)", error),
            "403": _json("The token's identity is not an allowed worker", error),
            "503": _json(
                "A standby replica, an operator still loading Tasks, an API server that"
                " takes no writes now, or a token that could not be checked; retry",
                error,
            ),
        }
        if response is not None:
            ref = {"$ref": f"#/components/schemas/{response.__name__}"}
            responses["200"] = _json("OK", ref)
        else:
            responses["204"] = {"description": "Recorded"}
        if route == "/v1/lease":
            del responses["409"]
        paths[route] = {
            "post": {
                "summary": summary,
                "operationId": route.rsplit("/", 1)[-1],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{request.__name__}"}
                        }
                    },
                },
                "responses": responses,
            }
        }
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


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
