"""The worker sends its token, re-reading a rotated token file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from taskmill.worker.leaseclient import LeaseApiError, LeaseClient

pytestmark = pytest.mark.asyncio


async def start(valid: set[str], seen: list[str]) -> TestServer:
    async def lease(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        seen.append(header)
        if header.removeprefix("Bearer ") not in valid:
            return web.json_response({"error": "Unauthorized", "message": "no"}, status=401)
        return web.json_response({"tasks": []})

    app = web.Application()
    app.router.add_post("/v1/lease", lease)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_fixed_token_is_sent() -> None:
    seen: list[str] = []
    server = await start({"abc"}, seen)
    client = LeaseClient(str(server.make_url("")), "w", token="abc")
    try:
        assert await client.lease(["echo"], 1, 0) == []
        assert seen == ["Bearer abc"]
    finally:
        await client.close()
        await server.close()


async def test_token_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    seen: list[str] = []
    server = await start({"one", "two"}, seen)
    token = tmp_path / "token"
    token.write_text("one\n")
    client = LeaseClient(str(server.make_url("")), "w", token_file=token)
    try:
        await client.lease(["echo"], 1, 0)
        token.write_text("two-and-more")  # a different size, so a new stamp
        token.write_text("two")
        stat = token.stat()
        os.utime(token, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        await client.lease(["echo"], 1, 0)
        assert seen == ["Bearer one", "Bearer two"]
    finally:
        await client.close()
        await server.close()


async def test_a_401_rereads_the_token_once(tmp_path: Path) -> None:
    seen: list[str] = []
    server = await start({"fresh"}, seen)
    token = tmp_path / "token"
    token.write_text("stale")
    client = LeaseClient(str(server.make_url("")), "w", token_file=token)
    try:
        with pytest.raises(LeaseApiError, match="401"):
            await client.lease(["echo"], 1, 0)
        assert seen == ["Bearer stale", "Bearer stale"]
    finally:
        await client.close()
        await server.close()


async def test_a_missing_token_file_is_a_lease_api_error(tmp_path: Path) -> None:
    client = LeaseClient("http://127.0.0.1:9", "w", token_file=tmp_path / "absent")
    try:
        with pytest.raises(LeaseApiError, match="token file"):
            await client.lease(["echo"], 1, 0)
    finally:
        await client.close()
