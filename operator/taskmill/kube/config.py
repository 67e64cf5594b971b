"""Where the API server is and how to authenticate: kubectl's rules.

Which settings: a kubeconfig given explicitly (``--kubeconfig``), else the
files of ``$KUBECONFIG`` (merged as kubectl merges them: the first file to
define a name or the ``current-context`` wins), else the in-cluster settings
in a pod (``KUBERNETES_SERVICE_HOST`` and a mounted service-account token),
else ``~/.kube/config``. ``context`` picks a context other than the current
one; the context's ``namespace`` is the default namespace.

What a kubeconfig may hold: the server, its CA (file or data),
``insecure-skip-tls-verify``, ``tls-server-name`` (the name the server's
certificate is checked against, e.g. when connecting by IP), ``proxy-url``
(http or https), client certificates (file or data), a token or token file
(re-read when the API server answers 401), a username and password, and
credential ``exec`` plugins (:mod:`taskmill.kube.exec_plugin`: EKS, GKE,
AKS, kubelogin, Teleport, ...). Relative paths resolve against the file
that holds them. The legacy ``auth-provider`` stanza is refused with the
exec plugin that replaces it (kubectl itself dropped the gcp and azure
providers in 1.26).

Why this loader and not the ``kubernetes`` (or ``kubernetes_asyncio``)
library's: importing either loads its whole generated client. Measured on
a 2-core machine with Python 3.11 (wall time of ``python -c 'import X'``,
median of 7 runs, other work running): ``kubernetes.config`` 1.07 s,
``kubernetes_asyncio.config`` 1.32 s, ``yaml, ssl, subprocess, json`` 0.16 s,
an empty interpreter 0.04 s; this module and :mod:`~taskmill.kube.exec_plugin`
take 15-22 ms (``python -X importtime``, cumulative). Every CLI command
would pay the library's second before its first request. Their exec support
also falls short (see :mod:`taskmill.kube.exec_plugin`). So neither library
is a dependency; all they would add is the deprecated auth-provider stanza.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from taskmill.kube.errors import ConfigError
from taskmill.kube.exec_plugin import ExecAuthenticator, ExecConfig, ExecCredential
from taskmill.kube.exec_plugin import parse as parse_exec

__all__ = ["ConfigError", "KubeConfig", "from_kubeconfig", "in_cluster", "load"]

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

#: What replaces each auth-provider kubectl once had.
AUTH_PROVIDER_SUCCESSORS = {
    "gcp": "gke-gcloud-auth-plugin",
    "azure": "kubelogin (Azure/kubelogin)",
    "oidc": "kubelogin (int128/kubelogin, `kubectl oidc-login`)",
}


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
    username: str | None = None
    password: str | None = None
    #: The name the server's certificate must carry, when not the server URL's host.
    tls_server_name: str | None = None
    #: An http:// or https:// proxy every request goes through.
    proxy_url: str | None = None
    #: A credential plugin to run for a token or client certificate.
    exec_plugin: ExecConfig | None = None
    #: Temporary files holding inline certificate data; kept alive with the config.
    _tempfiles: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    #: The exec plugin's cached credential, shared by all clients of this config.
    _exec: ExecAuthenticator | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.exec_plugin is not None:
            object.__setattr__(self, "_exec", ExecAuthenticator(self.exec_plugin))

    @property
    def exec_authenticator(self) -> ExecAuthenticator | None:
        return self._exec

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready), for a child process: :meth:`from_dict` reads it.

        Inline certificates travel as the paths of this process's temporary
        files, so this process must outlive the reader."""
        data: dict[str, Any] = {}
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, ExecConfig):
                value = {
                    "command": value.command,
                    "api_version": value.api_version,
                    "args": list(value.args),
                    "env": [list(pair) for pair in value.env],
                    "interactive_mode": value.interactive_mode.value,
                    "install_hint": value.install_hint,
                    "cluster_json": value.cluster_json,
                    "directory": value.directory,
                }
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KubeConfig:
        values = dict(data)
        if values.get("exec_plugin") is not None:
            values["exec_plugin"] = ExecConfig.from_dict(values["exec_plugin"])
        return cls(**values)

    def ssl_context(self, credential: ExecCredential | None = None) -> ssl.SSLContext:
        """TLS settings; ``credential``: an exec plugin's, when it holds a certificate."""
        if self.insecure:
            # No verification, but client certificates are still presented.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=self.ca_path)
        if credential is not None and credential.client_certificate_data:
            _load_pem_pair(
                context, credential.client_certificate_data, credential.client_key_data or ""
            )
        elif self.cert_path and self.key_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def bearer_token(self) -> str | None:
        """The token to send now (may run the exec plugin, which blocks)."""
        if self.token_path:
            try:
                return Path(self.token_path).read_text().strip()
            except OSError:
                return self.token
        if self.token or self._exec is None:
            return self.token
        return self._exec.get().token

    def auth_headers(self) -> dict[str, str]:
        """Headers of the static credentials: token, token file, or basic auth."""
        token = self.bearer_token()
        if token:
            return {"Authorization": f"Bearer {token}"}
        return self.basic_auth_header()

    def basic_auth_header(self) -> dict[str, str]:
        if self.username is None or self.password is None:
            return {}
        pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}


def _load_pem_pair(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """``load_cert_chain`` reads files only: hand it private ones, removed at once."""
    with (
        tempfile.NamedTemporaryFile("w", prefix="taskmill-", suffix=".crt") as cert,
        tempfile.NamedTemporaryFile("w", prefix="taskmill-", suffix=".key") as key,
    ):
        cert.write(cert_pem)
        key.write(key_pem)
        cert.flush()
        key.flush()
        try:
            context.load_cert_chain(cert.name, key.name)
        except ssl.SSLError as exc:
            raise ConfigError(f"the exec plugin's client certificate is unusable: {exc}") from None


def load(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
) -> KubeConfig:
    """Connection settings: the kubeconfig given, ``$KUBECONFIG``, in-cluster, ~/.kube/config."""
    if kubeconfig is not None:
        return from_kubeconfig([Path(kubeconfig)], context)
    paths = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if paths:
        return from_kubeconfig(paths, context)
    if (
        context is None
        and os.environ.get("KUBERNETES_SERVICE_HOST")
        and (SA_DIR / "token").exists()
    ):
        return in_cluster()
    return from_kubeconfig([Path.home() / ".kube" / "config"], context)


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


Documents = list[tuple[Path, dict[str, Any]]]


def from_kubeconfig(paths: list[Path], context: str | None = None) -> KubeConfig:
    docs: Documents = []
    for path in paths:
        if path.exists():
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path} is not a valid kubeconfig: {exc}") from None
            if not isinstance(doc, dict):
                raise ConfigError(f"{path} is not a valid kubeconfig: not a mapping")
            docs.append((path.absolute(), doc))
    if not docs:
        names = ", ".join(str(p) for p in paths)
        raise ConfigError(f"no kubeconfig found (looked at {names}); set KUBECONFIG")
    context_name = context or next(
        (d["current-context"] for _, d in docs if d.get("current-context")), None
    )
    if not context_name:
        raise ConfigError("the kubeconfig has no current-context; pass --context")
    ctx, _ = _named(docs, "contexts", context_name, "context")
    cluster, cluster_dir = _named(docs, "clusters", ctx.get("cluster", ""), "cluster")
    user_name = ctx.get("user") or ""
    user, user_dir = _named(docs, "users", user_name, "user") if user_name else ({}, cluster_dir)
    if "auth-provider" in user:
        provider = (user["auth-provider"] or {}).get("name", "?")
        successor = AUTH_PROVIDER_SUCCESSORS.get(provider, "the provider's exec plugin")
        raise ConfigError(
            f"user {user_name!r} uses the auth-provider {provider!r}, which Taskmill does not "
            f"support (kubectl dropped gcp and azure in 1.26): switch the user to an exec "
            f"plugin, {successor}"
        )
    if not cluster.get("server"):
        raise ConfigError(f"cluster {ctx.get('cluster')!r} has no server")
    temps: list[Any] = []
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    ca_path = None if insecure else _file(cluster, "certificate-authority", cluster_dir, temps)
    exec_plugin = None
    if user.get("exec"):
        exec_plugin = parse_exec(
            user["exec"],
            directory=user_dir,
            cluster=cluster,
            cluster_ca=Path(ca_path).read_bytes() if ca_path else None,
            user=user_name,
        )
    return KubeConfig(
        server=str(cluster["server"]).rstrip("/"),
        namespace=ctx.get("namespace") or "default",
        ca_path=ca_path,
        insecure=insecure,
        cert_path=_file(user, "client-certificate", user_dir, temps),
        key_path=_file(user, "client-key", user_dir, temps),
        token=user.get("token") or None,
        token_path=str(user_dir / user["tokenFile"]) if user.get("tokenFile") else None,
        username=user.get("username"),
        password=user.get("password"),
        tls_server_name=cluster.get("tls-server-name") or None,
        proxy_url=_proxy(cluster.get("proxy-url"), ctx.get("cluster", "")),
        exec_plugin=exec_plugin,
        _tempfiles=tuple(temps),
    )


def _named(docs: Documents, section: str, name: str, key: str) -> tuple[dict[str, Any], Path]:
    """The first entry called ``name``, and the directory of the file holding it."""
    for path, doc in docs:
        for item in doc.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                value: dict[str, Any] = item.get(key) or {}
                return value, path.parent
    raise ConfigError(f"kubeconfig has no {key} named {name!r}")


def _proxy(url: Any, cluster: str) -> str | None:
    if not url:
        return None
    scheme = urlsplit(str(url)).scheme
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"cluster {cluster!r}: proxy-url {url!r}: only http:// and https:// proxies "
            "are supported"
        )
    return str(url)


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
