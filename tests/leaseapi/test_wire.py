"""The OpenAPI document and the server agree on what a request may be: every
body below is either valid for both or refused by both (400). The schema is
checked with jsonschema_rs, the validator schemathesis itself uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jsonschema_rs
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from taskmill.leaseapi.openapi import document
from taskmill.leaseapi.server import MAX_BODY_BYTES, build_app
from tests.leaseapi.test_auth import Backend

pytestmark = pytest.mark.asyncio

DOCUMENT = document("test")
OK = {"/v1/lease": 200, "/v1/heartbeat": 200, "/v1/complete": 204, "/v1/outcomes": 200}
LEASE = {"worker": "w1", "types": ["echo"], "waitSeconds": 0}
DONE = {"leaseId": "L", "outcome": "failed"}

CASES: list[tuple[str, Any, bool]] = [
    ("/v1/lease", LEASE, True),
    ("/v1/lease", LEASE | {"max": 3.0}, True),  # an integer, as JSON Schema counts them
    ("/v1/lease", LEASE | {"types": [""]}, False),
    ("/v1/lease", LEASE | {"types": ["1abc"]}, False),
    ("/v1/lease", LEASE | {"max": "3"}, False),
    ("/v1/lease", LEASE | {"max": 2.5}, False),
    ("/v1/lease", LEASE | {"max": True}, False),
    ("/v1/lease", LEASE | {"waitSeconds": "1"}, False),
    ("/v1/lease", LEASE | {"worker": "two words"}, False),
    ("/v1/lease", LEASE | {"wait_seconds": 1}, False),  # only the documented camelCase
    ("/v1/heartbeat", {"leaseId": "L", "progress": {"percent": 50}}, True),
    ("/v1/heartbeat", {"leaseId": "L", "progress": {"percent": "50"}}, False),
    ("/v1/heartbeat", {"lease_id": "L"}, False),
    ("/v1/complete", DONE | {"error": {"timedOut": True}}, True),
    ("/v1/complete", DONE | {"error": {"timedOut": "true"}}, False),
    ("/v1/complete", DONE | {"error": {"timedOut": 1}}, False),
    ("/v1/complete", DONE | {"error": {"retryable": "no"}}, False),
    ("/v1/complete", DONE | {"outcome": "Succeeded"}, False),
    ("/v1/complete", DONE | {"result": {"any": ["json", 1, None]}}, True),
    ("/v1/outcomes", {"outcomes": [DONE]}, True),
    ("/v1/outcomes", {"outcomes": [DONE | {"error": {"message": 3}}]}, False),
]


def schema_accepts(route: str, body: Any) -> bool:
    ref = DOCUMENT["paths"][route]["post"]["requestBody"]["content"]["application/json"]
    schema = ref["schema"] | {"components": DOCUMENT["components"]}
    return bool(jsonschema_rs.Draft202012Validator(schema).is_valid(body))


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    client = TestClient(TestServer(build_app(Backend(), conflict=KeyError, version="t")))
    await client.start_server()
    yield client
    await client.close()


@pytest.mark.parametrize(("route", "body", "valid"), CASES)
async def test_the_document_and_the_server_agree(
    client: TestClient[Any, Any], route: str, body: Any, valid: bool
) -> None:
    assert schema_accepts(route, body) is valid
    response = await client.post(route, json=body, headers={"Taskmill-Worker": "w1"})
    assert response.status == (OK[route] if valid else 400), await response.text()


async def test_every_answer_is_declared(client: TestClient[Any, Any]) -> None:
    """Each status a lease route can give, provoked, is in the document with a JSON body."""
    big = b'{"leaseId": "L", "outcome": "failed", "result": "' + b"x" * MAX_BODY_BYTES + b'"}'
    provoked = {
        ("/v1/complete", 400): (b"{", {"Taskmill-Worker": "w1"}),
        ("/v1/complete", 400, "MissingWorker"): (b'{"leaseId": "L", "outcome": "failed"}', {}),
        ("/v1/complete", 409): (b'{"leaseId": "L", "outcome": "failed"}', {"Taskmill-Worker": "w"}),
        ("/v1/complete", 413): (big, {"Taskmill-Worker": "w1"}),
        ("/v1/outcomes", 413): (big, {"Taskmill-Worker": "w1"}),
    }

    class Conflicting(Backend):
        async def complete(self, request: Any, holder: Any) -> None:
            raise KeyError(request.lease_id)

    conflicting = TestClient(TestServer(build_app(Conflicting(), conflict=KeyError, version="t")))
    await conflicting.start_server()
    try:
        for key, (data, headers) in provoked.items():
            route, status = key[0], key[1]
            target = conflicting if status == 409 else client
            response = await target.post(route, data=data, headers=headers)
            assert response.status == status, (key, await response.text())
            assert response.content_type == "application/json"
            assert str(status) in DOCUMENT["paths"][route]["post"]["responses"]
    finally:
        await conflicting.close()
