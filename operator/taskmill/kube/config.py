"""Where the API server is and how to authenticate: kubectl's rules.

In a pod (``KUBERNETES_SERVICE_HOST`` set and a service-account token
mounted) the in-cluster settings apply; otherwise the kubeconfig named by
``$KUBECONFIG`` (the first file of the list that defines the current context)
or ``~/.kube/config``. Client certificates, bearer tokens and token files are
supported; credential ``exec`` plugins are not yet.

Why not ``kubernetes_asyncio.config``: importing it loads the whole generated
client (about 1.4 s here), which every CLI call and every worker would pay;
the loader needed is small, and the service-account token must be re-read
from its file when it rotates, which the hot-path client does on a 401.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(Exception):
    """No usable cluster connection settings."""


@dataclass(frozen=True)
class KubeConfig:
    server: str
    namespace: str = "default"
    ca_path: str | None = None
    insecure: bool = False
    cert_path: str | None = None
    key_path: str | None = None
    token: str | None = None
    #: Re-read on every 401, so rotated service-account tokens are picked up.
    token_path: str | None = None
    #: Temporary files holding inline certificate data; kept alive with the config.
    _tempfiles: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        context = ssl.create_default_context(cafile=self.ca_path)
        if self.cert_path and self.key_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def bearer_token(self) -> str | None:
        if self.token_path:
            try:
                return Path(self.token_path).read_text().strip()
            except OSError:
                return self.token
        return self.token

    def auth_headers(self) -> dict[str, str]:
        token = self.bearer_token()
        return {"Authorization": f"Bearer {token}"} if token else {}


def load(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
) -> KubeConfig:
    """Connection settings: the given kubeconfig, else in-cluster, else ``$KUBECONFIG``."""
    if kubeconfig is not None:
        return from_kubeconfig([Path(kubeconfig)], context)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists():
        return in_cluster()
    paths = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return from_kubeconfig(paths or [Path.home() / ".kube" / "config"], context)


def in_cluster() -> KubeConfig:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    namespace_file = SA_DIR / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
    return KubeConfig(
        server=f"https://{host}:{port}",
        namespace=namespace,
        ca_path=str(SA_DIR / "ca.crt"),
        token_path=str(SA_DIR / "token"),
    )


def from_kubeconfig(paths: list[Path], context: str | None = None) -> KubeConfig:
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in paths:
        if path.exists():
            docs.append((path, yaml.safe_load(path.read_text()) or {}))
    if not docs:
        names = ", ".join(str(p) for p in paths)
        raise ConfigError(f"no kubeconfig found (looked at {names}); set KUBECONFIG")
    context_name = context or next(
        (d["current-context"] for _, d in docs if d.get("current-context")), None
    )
    if not context_name:
        raise ConfigError("the kubeconfig has no current-context; pass --context")
    ctx = _named(docs, "contexts", context_name, "context")
    cluster = _named(docs, "clusters", ctx.get("cluster", ""), "cluster")
    user = _named(docs, "users", ctx.get("user", ""), "user") if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"context {context_name!r} uses a credential plugin, not supported yet")
    base = docs[0][0].parent
    temps: list[Any] = []
    return KubeConfig(
        server=cluster["server"].rstrip("/"),
        namespace=ctx.get("namespace") or "default",
        ca_path=_file(cluster, "certificate-authority", base, temps),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_path=_file(user, "client-certificate", base, temps),
        key_path=_file(user, "client-key", base, temps),
        token=user.get("token"),
        token_path=str(base / user["tokenFile"]) if user.get("tokenFile") else None,
        _tempfiles=tuple(temps),
    )


def _named(
    docs: list[tuple[Path, dict[str, Any]]], section: str, name: str, key: str
) -> dict[str, Any]:
    for _, doc in docs:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                value: dict[str, Any] = item.get(key) or {}
                return value
    raise ConfigError(f"kubeconfig has no {key} named {name!r}")


def _file(section: dict[str, Any], key: str, base: Path, temps: list[Any]) -> str | None:
    """A path for ``key`` or ``key-data`` (inline base64 goes to a private temp file)."""
    if section.get(f"{key}-data"):
        tmp = tempfile.NamedTemporaryFile(prefix="taskmill-", suffix=".pem")  # noqa: SIM115
        tmp.write(base64.b64decode(section[f"{key}-data"]))
        tmp.flush()
        temps.append(tmp)
        return tmp.name
    if section.get(key):
        return str(base / section[key])
    return None
