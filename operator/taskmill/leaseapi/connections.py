"""Connection limits of the lease API: what a slow or greedy client can hold.

aiohttp closes a connection that sits idle (``idle_timeout_seconds``, its
``keepalive_timeout``, which also runs from the moment a connection opens
until its first request has arrived). It has no per-address connection limit
and no separate header deadline, so :class:`ConnectionGuard` adds both in
front of its protocol, at accept time:

- at most ``max_connections_per_address`` open connections per source
  address; one more is answered ``503`` (``Retry-After: 1``) and closed at
  once, before anything of it is parsed;
- a connection's first request must finish its headers within
  ``header_timeout_seconds`` of connecting, else it gets ``408`` and is
  closed (a slowloris client trickling header bytes never gets further).

The body deadline (``body_timeout_seconds``) is the server's, which reads
bodies only after the caller's token was checked
(:mod:`taskmill.leaseapi.server`). Without these, 50 slowloris connections
and 2,000 idle ones were all still open after 90 s.

Hand-made rather than a library because aiohttp offers no hook for either
limit and a fronting proxy is not something every install has.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)

_END_OF_HEADERS = b"\r\n\r\n"


def _answer(status: str, code: str, message: str, *extra: str) -> bytes:
    """A whole HTTP response with the lease API's error body, for a connection
    aiohttp never sees a request of."""
    body = json.dumps({"error": code, "message": message}).encode()
    head = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_BUSY = _answer(
    "503 Service Unavailable",
    "TooManyConnections",
    "this address holds as many connections as it may; retry",
    "Retry-After: 1",
)
_LATE = _answer(
    "408 Request Timeout", "RequestTimeout", "the request headers did not arrive in time"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may take of the lease API."""

    #: A new connection's first request must have sent all its headers by then.
    header_timeout_seconds: float = 10.0
    #: A request body must have arrived this long after its headers (408 if not).
    body_timeout_seconds: float = 30.0
    #: A connection with no request in flight is closed after this long. More
    #: than the 15 s an aiohttp client keeps an idle connection, so a worker
    #: never reuses one the server is just closing.
    idle_timeout_seconds: float = 30.0
    #: Open connections per source address; a worker uses at most 100 (its
    #: HTTP client's pool), so this leaves room for two per address.
    max_connections_per_address: int = 256


#: After refusing a body (408, 413), aiohttp keeps reading what is still on its
#: way this long, so the client sees the answer rather than a reset; its
#: default of 10 s let a trickling client hold the connection that long again.
LINGER_SECONDS = 1.0


class ConnectionGuard:
    """A protocol factory: aiohttp's, behind the per-address and header limits."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], limits: ConnectionLimits) -> None:
        self.factory = factory
        self.limits = limits
        #: Open connections by source address.
        self.open: Counter[str] = Counter()
        self.refused = 0  # over the per-address limit
        self.timed_out = 0  # headers not done in time

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self)


class _Guarded(asyncio.Protocol):
    """Counts its connection and watches its first headers, then hands every
    event to the aiohttp protocol it wraps."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.address = ""
        self.deadline: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else ""
        limit = self.guard.limits.max_connections_per_address
        if self.guard.open[self.address] >= limit:
            self.guard.refused += 1
            if self.guard.refused % 1000 == 1:  # a flood is logged, not every connection
                log.warning(
                    "lease API: %s holds %d connections already; refusing more",
                    self.address,
                    limit,
                )
            transport.write(_BUSY)
            transport.close()
            return
        self.guard.open[self.address] += 1
        self.deadline = asyncio.get_running_loop().call_later(
            self.guard.limits.header_timeout_seconds, self._headers_late, transport
        )
        self.inner = self.guard.factory()
        self.inner.connection_made(transport)

    def _headers_late(self, transport: asyncio.Transport) -> None:
        self.deadline = None
        self.guard.timed_out += 1
        transport.write(_LATE)
        transport.close()

    def data_received(self, data: bytes) -> None:
        if self.deadline is not None:
            window = self.tail + data
            if _END_OF_HEADERS in window:
                self.deadline.cancel()
                self.deadline = None
            else:
                self.tail = window[-(len(_END_OF_HEADERS) - 1) :]
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is None:
            return  # refused: never counted
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.guard.open[self.address] -= 1
        if self.guard.open[self.address] <= 0:
            del self.guard.open[self.address]
        self.inner.connection_lost(exc)


async def listen(
    runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits
) -> tuple[asyncio.Server, ConnectionGuard]:
    """Serve ``runner``'s application on ``host:port`` behind the guard.

    The runner carries the rest of ``limits``: make it with
    ``keepalive_timeout=limits.idle_timeout_seconds`` and
    ``lingering_time=LINGER_SECONDS``.

    Stop it with ``server.close()``, then ``runner.cleanup()`` (which closes
    the open connections), then ``await server.wait_closed()``."""
    factory = runner.server
    assert factory is not None, "runner.setup() first"
    guard = ConnectionGuard(factory, limits)
    server = await asyncio.get_running_loop().create_server(guard, host, port, reuse_address=True)
    return server, guard
