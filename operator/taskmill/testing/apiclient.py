"""Talking to the local control plane's API server: raw HTTPS requests, kubectl, tokens.

These are for tests and for ``taskmill dev``, so they stay close to the
wire: :meth:`ApiClient.request` returns every response, errors included, as
a :class:`Response` for the caller to assert on, and :func:`kubectl` runs
the pinned binary against a given kubeconfig. Taskmill's own components
use :mod:`taskmill.kube` instead.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskmill.testing.errors import ControlPlaneError

__all__ = [
    "ApiClient",
    "KubectlError",
    "Response",
    "kubectl",
]


class KubectlError(subprocess.CalledProcessError):
    """``kubectl`` exited non-zero; the message includes its stderr."""

    def __str__(self) -> str:
        stderr = (self.stderr or "").strip()
        return f"{super().__str__()}\n{stderr}" if stderr else super().__str__()


@dataclass(frozen=True)
class Response:
    """A raw API response: status code and body."""

    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class ApiClient:
    """Requests to ``server``, trusting ``ca``; as the admin (the client certificate
    ``admin_cert``/``admin_key``) unless a request brings a bearer token."""

    def __init__(self, server: str, *, ca: Path, admin_cert: Path, admin_key: Path) -> None:
        self.server = server
        self._ca = ca
        self._admin_cert = admin_cert
        self._admin_key = admin_key
        # Loading the key pair costs more than a loopback request: keep it.
        self._admin_ssl: ssl.SSLContext | None = None

    def _ssl_context(self, *, admin: bool) -> ssl.SSLContext:
        if admin and self._admin_ssl is not None:
            return self._admin_ssl
        context = ssl.create_default_context(cafile=str(self._ca))
        if admin:
            context.load_cert_chain(str(self._admin_cert), str(self._admin_key))
            self._admin_ssl = context
        return context

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Response:
        """A raw API request (as the admin, or as ``token``'s owner); errors are responses too.

        ``body`` is sent as JSON unless it is already ``bytes``. Connection
        failures raise :class:`OSError`.
        """
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            self.server + path, data=data, method=method, headers=headers
        )
        context = self._ssl_context(admin=token is None)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return Response(response.status, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, error.read())

    def create_token(
        self,
        service_account: str,
        namespace: str = "default",
        *,
        audience: str | Sequence[str] | None = None,
        duration_seconds: int | None = None,
    ) -> str:
        """A real ServiceAccount token from the TokenRequest API.

        ``audience`` defaults to the API server's own (so the token works
        against it); the minimum ``duration_seconds`` is 600.
        """
        spec: dict[str, Any] = {}
        if audience is not None:
            spec["audiences"] = [audience] if isinstance(audience, str) else list(audience)
        if duration_seconds is not None:
            spec["expirationSeconds"] = duration_seconds
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        response = self.request(
            "POST",
            path,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        if response.status != 201:
            raise ControlPlaneError(
                f"TokenRequest for {namespace}/{service_account} failed "
                f"({response.status}): {_status_message(response)}"
            )
        return str(response.json()["status"]["token"])


def _status_message(response: Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(response.json().get("message", response.text))
    return response.text


def kubectl(
    binary: Path,
    *args: str,
    kubeconfig: Path,
    cache_dir: Path,
    input: str | None = None,
    check: bool = True,
    timeout: float | None = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``binary`` (kubectl) with ``kubeconfig``; raises :class:`KubectlError` if ``check``.

    ``cache_dir`` holds kubectl's discovery cache, which is keyed by
    host:port: a fresh control plane reusing a port must not see another
    one's cached API groups.
    """
    argv = [str(binary), f"--kubeconfig={kubeconfig}", f"--cache-dir={cache_dir}", *args]
    result = subprocess.run(
        argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
    return result
