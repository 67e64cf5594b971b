"""A lean asyncio client for the Kubernetes API: aiohttp and orjson.

Taskmill's hot path is a handful of status PATCHes per Task, so this client
is deliberately thin: one pooled connection set, JSON in and out with orjson,
API errors as :class:`ApiError` carrying the API's own ``Status`` reason, and
watch streams as async iterators.

Credentials come from :class:`~taskmill.kube.config.KubeConfig`. A token
file is re-read at most once a minute; an exec plugin's credential is used
until it expires, and the plugin runs in a thread, so the event loop goes
on meanwhile. A 401 re-reads the token file or runs the plugin again, and
the request (or the watch) is retried once. A plugin that hands out client
certificates gets a new connection pool when the certificate changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from taskmill.kube.config import KubeConfig
from taskmill.kube.exec_plugin import ExecCredential
from taskmill.models.base import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"
#: How often a 429 Too Many Requests is retried (after its Retry-After) before it is raised.
TOO_MANY_REQUESTS_RETRIES = 5
#: How long a token read from a file is used before the file is read again.
TOKEN_REREAD_SECONDS = 60.0
JSON_PATCH = "application/json-patch+json"
#: A bound on one watch event, far above any object the API server stores
#: (etcd keeps at most about 1.5 MiB per object; a request body is capped at
#: 3 MiB), so only a broken stream can reach it.
MAX_WATCH_EVENT_BYTES = 64 * 1024 * 1024


#: Errors of the connection rather than of the API: the server is away, the
#: connection broke, or the answer took too long. Worth trying again.
UNREACHABLE = (OSError, TimeoutError, aiohttp.ClientError)


def is_transient(exc: BaseException) -> bool:
    """Whether the same request may succeed later."""
    return isinstance(exc, UNREACHABLE) or (isinstance(exc, ApiError) and exc.is_transient)


class ApiError(Exception):
    """The API server said no. ``reason`` is its machine-readable reason."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    @property
    def is_conflict(self) -> bool:
        return self.status == 409

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def is_transient(self) -> bool:
        """The same request may succeed later: throttled, or the server failed."""
        return self.status == 429 or self.status >= 500


def path(
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
    *,
    group: str = GROUP,
    version: str = VERSION,
) -> str:
    """The URL path of a resource collection or object."""
    base = f"/api/{version}" if group == "" else f"/apis/{group}/{version}"
    if namespace is not None:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name is not None:
        base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
    return base


class KubeClient:
    def __init__(
        self,
        config: KubeConfig,
        *,
        max_connections: int = 64,
        timeout_seconds: float = 30,
        keepalive_seconds: float = 60,
    ) -> None:
        self.config = config
        self._connections = max_connections
        self._keepalive = keepalive_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        #: Sessions replaced after a new exec client certificate; closed with this client.
        self._retired: list[aiohttp.ClientSession] = []
        self._session_credential: ExecCredential | None = None
        self._auth_headers: dict[str, str] | None = None
        self._auth_read_at = 0.0
        #: Per-request options: the TLS server name and the proxy, when set.
        self._options: dict[str, Any] = {}
        if config.tls_server_name:
            self._options["server_hostname"] = config.tls_server_name
        if config.proxy_url:
            self._options["proxy"] = config.proxy_url

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self.config.ssl_context(self._session_credential),
                limit=self._connections,
                keepalive_timeout=self._keepalive,
            )
            self._session = aiohttp.ClientSession(
                base_url=self.config.server,
                connector=connector,
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                headers={"Accept": "application/json", "User-Agent": "taskmill"},
            )
        return self._session

    async def close(self) -> None:
        for session in self._retired:
            await session.close()
        self._retired.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _file_auth(self, *, force: bool = False) -> dict[str, str]:
        """Authorization headers, the token file re-read at most once a minute
        (and after a 401): the kubelet rotates projected tokens long before
        they expire, and reading the file on every write costs syscalls."""
        now = time.monotonic()
        if force or self._auth_headers is None or now - self._auth_read_at > TOKEN_REREAD_SECONDS:
            self._auth_headers = self.config.auth_headers()
            self._auth_read_at = now
        return self._auth_headers

    async def _auth(
        self, refused: ExecCredential | None = None, *, force: bool = False
    ) -> tuple[dict[str, str], ExecCredential | None]:
        """Headers for the next request, and the exec credential they carry.

        ``force``: the last attempt got a 401 with ``refused``; read the token
        file again, or drop that credential so the plugin runs again."""
        plugin = self.config.exec_authenticator
        if plugin is None or self.config.token or self.config.token_path:
            return self._file_auth(force=force), None
        if force:
            plugin.invalidate(refused)
        credential = plugin.cached()
        if credential is None:
            credential = await asyncio.to_thread(plugin.get)
        if credential.client_certificate_data and credential != self._session_credential:
            # A new certificate needs new TLS connections; requests still
            # running on the old pool finish there.
            if self._session is not None:
                self._retired.append(self._session)
                self._session = None
            self._session_credential = credential
        if credential.token:
            return {"Authorization": f"Bearer {credential.token}"}, credential
        return self.config.basic_auth_header(), credential

    def _may_reauthenticate(self) -> bool:
        return bool(self.config.token_path or self.config.exec_authenticator)

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
        data = orjson.dumps(body) if body is not None else None
        timeout = aiohttp.ClientTimeout(total=timeout_seconds) if timeout_seconds else self._timeout
        reauthenticated = False
        used: ExecCredential | None = None
        for attempt in range(1, TOO_MANY_REQUESTS_RETRIES + 2):
            auth, used = await self._auth(used, force=reauthenticated)
            headers = {"Content-Type": content_type, **auth}
            async with self.session.request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                timeout=timeout,
                **self._options,
            ) as response:
                raw = await response.read()
            if response.status == 401 and not reauthenticated and self._may_reauthenticate():
                reauthenticated = True
                continue  # the token rotated or expired: read it, or run the plugin, again
            if response.status == 429 and attempt <= TOO_MANY_REQUESTS_RETRIES:
                # Priority and fairness, or a resource whose storage is still
                # initializing: the server says when to come back.
                await asyncio.sleep(_retry_after(response.headers.get("Retry-After")))
                continue
            if response.status >= 400:
                raise _api_error(response.status, raw)
            return orjson.loads(raw) if raw else None
        raise _api_error(response.status, raw)

    async def get(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        return await self.request("GET", url, params=params)

    async def create(self, url: str, obj: Mapping[str, Any]) -> Any:
        return await self.request("POST", url, body=obj)

    async def merge_patch(self, url: str, patch: Mapping[str, Any]) -> Any:
        return await self.request("PATCH", url, body=patch, content_type=MERGE_PATCH)

    async def delete(self, url: str, body: Mapping[str, Any] | None = None) -> Any:
        return await self.request("DELETE", url, body=body)

    async def watch(
        self,
        url: str,
        *,
        resource_version: str | None = None,
        params: Mapping[str, str] | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) until the server ends the stream."""
        query = {"watch": "true", "allowWatchBookmarks": "true"}
        query["timeoutSeconds"] = str(timeout_seconds)
        if resource_version:
            query["resourceVersion"] = resource_version
        query.update(params or {})
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        auth, used = await self._auth()
        response = await self.session.get(
            url, params=query, headers=auth, timeout=timeout, **self._options
        )
        if response.status == 401 and self._may_reauthenticate():
            response.release()
            auth, used = await self._auth(used, force=True)
            response = await self.session.get(
                url, params=query, headers=auth, timeout=timeout, **self._options
            )
        async with response:
            if response.status >= 400:
                raise _api_error(response.status, await response.read())
            async for line in _lines(response.content.iter_any()):
                yield orjson.loads(line)


async def _lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The non-blank lines of a stream of chunks, each as long as it needs to be.

    aiohttp's ``readline`` refuses a line longer than its buffer limit
    (``LineTooLong``), and one watch event is one line holding a whole
    object: any Task the API server accepts (about 1.5 MiB in etcd) must come
    through, so lines are assembled here from the chunks as they arrive, each
    byte copied once.
    """
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            parts.append(chunk[start:end])
            line = b"".join(parts)
            parts.clear()
            size = 0
            if line.strip():
                yield line
            start = end + 1
        if start < len(chunk):
            parts.append(chunk[start:])
            size += len(chunk) - start
            if size > MAX_WATCH_EVENT_BYTES:
                raise ValueError(f"a watch event is longer than {MAX_WATCH_EVENT_BYTES} bytes")
    if parts and (line := b"".join(parts)).strip():
        yield line


def _retry_after(header: str | None) -> float:
    try:
        return min(10.0, max(0.05, float(header))) if header else 1.0
    except ValueError:
        return 1.0


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ApiError(status, "Unknown", raw.decode(errors="replace")[:500])
    if isinstance(body, dict):
        return ApiError(status, body.get("reason", ""), body.get("message", ""), body)
    return ApiError(status, "Unknown", str(body)[:500], body)
