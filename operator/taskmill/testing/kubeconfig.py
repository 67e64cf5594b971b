"""Kubeconfig files for the local control plane: one cluster, one user, one context.

The admin's kubeconfig embeds its certificate and key, so it works copied
anywhere; a ServiceAccount's carries a bearer token instead; the controller
manager's names the PKI files, which it reads from the workdir. Each is
written readable by its owner only, since it holds a credential.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from taskmill.testing.pki import write_private

__all__ = [
    "CONTEXT",
    "document",
    "embedded_client_certificate",
    "write",
]

#: The name of the cluster and of the context, and the current context.
CONTEXT = "taskmill"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def embedded_client_certificate(cert_pem: bytes, key_pem: bytes) -> dict[str, str]:
    """A user entry carrying a client certificate and its key in the file itself."""
    return {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}


def document(
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    credentials: Mapping[str, str],
    namespace: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig for ``server`` (trusting ``ca_pem``) as ``user`` with ``credentials``
    (the ``user`` entry's fields), its context's namespace set if ``namespace`` is."""
    context: dict[str, str] = {"cluster": CONTEXT, "user": user}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [{"name": CONTEXT, "context": context}],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write(path: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` as YAML to ``path``, readable by its owner only."""
    write_private(path, yaml.safe_dump(dict(config), sort_keys=False).encode())
    return path
