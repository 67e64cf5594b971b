"""Connection limits of the lease API on real loopback sockets: what a slow,
idle or greedy client can hold, and that others are served meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from taskmill.leaseapi import connections
from taskmill.leaseapi.server import MAX_BODY_BYTES, build_app
from tests.leaseapi.test_auth import Backend

pytestmark = pytest.mark.asyncio

LIMITS = connections.ConnectionLimits(
    header_timeout_seconds=0.5,
    body_timeout_seconds=0.8,
    idle_timeout_seconds=1.0,
    max_connections_per_address=4,
)


@dataclass
class Served:
    port: int
    guard: connections.ConnectionGuard

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self, path: str) -> bytes:
        reader, writer = await self.connect()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        try:
            return await asyncio.wait_for(reader.read(), timeout=5)
        finally:
            writer.close()


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    app = build_app(
        Backend(), conflict=KeyError, version="t", body_timeout_seconds=LIMITS.body_timeout_seconds
    )
    runner = web.AppRunner(
        app,
        keepalive_timeout=LIMITS.idle_timeout_seconds,
        lingering_time=connections.LINGER_SECONDS,
    )
    await runner.setup()
    server, guard = await connections.listen(runner, "127.0.0.1", 0, LIMITS)
    port = server.sockets[0].getsockname()[1]
    yield Served(port, guard)
    server.close()
    await runner.cleanup()
    await server.wait_closed()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    start = time.monotonic()
    data = await asyncio.wait_for(reader.read(), timeout=seconds)
    return data, time.monotonic() - start


def post(path: str, body: bytes, **headers: Any) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_headers_sent_a_byte_at_a_time_are_cut_off(served: Served) -> None:
    reader, writer = await served.connect()
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000

    async def trickle() -> None:
        for byte in request:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.02)  # the slow client under test, not synchronisation

    sender = asyncio.create_task(trickle())
    try:
        data, took = await closed_within(reader, 5)
    finally:
        sender.cancel()
        writer.close()
    assert data.startswith(b"HTTP/1.1 408")
    assert took < LIMITS.header_timeout_seconds + 1
    assert served.guard.timed_out == 1
    assert b"200 OK" in await served.get("/healthz")  # the server carries on


async def test_a_connection_that_never_sends_anything_is_closed(served: Served) -> None:
    reader, writer = await served.connect()
    data, took = await closed_within(reader, 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408")
    assert took < LIMITS.header_timeout_seconds + 1


async def test_an_idle_keep_alive_connection_is_closed(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert status.startswith(b"HTTP/1.1 200")
    await asyncio.wait_for(reader.readexactly(2), timeout=5)  # "ok"
    data, took = await closed_within(reader, 5)  # then nothing: the server hangs up
    writer.close()
    assert data == b""
    assert took < LIMITS.idle_timeout_seconds + 1
    # The header deadline is for the first request; it is the idle timeout
    # that closed this one, after more than the header timeout.
    assert took > LIMITS.header_timeout_seconds


async def test_a_body_sent_a_byte_at_a_time_gets_408_and_others_are_served(
    served: Served,
) -> None:
    body = b'{"worker": "w1", "types": ["echo"], "waitSeconds": 0}'
    reader, writer = await served.connect()
    writer.write(post("/v1/lease", b"", Content_Length=len(body)))

    async def trickle() -> None:
        for byte in body:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)  # the slow client under test

    sender = asyncio.create_task(trickle())
    try:
        # Meanwhile another client is served at once.
        start = time.monotonic()
        assert b"200 OK" in await served.get("/healthz")
        assert time.monotonic() - start < 0.5
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        answered = time.monotonic() - start
        data, _ = await closed_within(reader, connections.LINGER_SECONDS + 2)
    finally:
        sender.cancel()
        writer.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert b'"RequestTimeout"' in data
    assert answered < LIMITS.body_timeout_seconds + 0.5


async def test_a_declared_body_over_the_limit_is_refused_unread(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(post("/v1/complete", b"", Content_Length=MAX_BODY_BYTES + 1))
    data, _ = await closed_within(reader, 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 413")
    assert b'"TooLarge"' in data
    assert b"application/json" in data


async def test_a_chunked_body_over_the_limit_is_refused(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(post("/v1/outcomes", b"", Transfer_Encoding="chunked"))
    chunk = b"x" * 65536
    for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    writer.write(b"0\r\n\r\n")
    data, _ = await closed_within(reader, 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 413")
    assert b'"TooLarge"' in data


async def test_connections_beyond_the_per_address_limit_are_refused(served: Served) -> None:
    held = [await served.connect() for _ in range(LIMITS.max_connections_per_address)]
    deadline = time.monotonic() + 5
    while sum(served.guard.open.values()) < len(held):  # accepted by the server
        assert time.monotonic() < deadline, served.guard.open
        await asyncio.sleep(0.01)
    reader, writer = await served.connect()
    data, _ = await closed_within(reader, 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1" in data
    assert served.guard.refused == 1
    for _, w in held:
        w.close()
    deadline = time.monotonic() + 5
    while served.guard.open:  # their slots are given back...
        assert time.monotonic() < deadline, served.guard.open
        await asyncio.sleep(0.01)
    assert b"200 OK" in await served.get("/healthz")  # ...and new connections are served
