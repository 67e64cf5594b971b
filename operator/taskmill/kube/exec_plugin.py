"""Credential ``exec`` plugins, run the way kubectl (client-go) runs them.

A kubeconfig ``user`` with an ``exec`` stanza names a command (``aws eks
get-token``, ``gke-gcloud-auth-plugin``, ``kubelogin``, ``tsh``...) that
prints an ``ExecCredential`` (``client.authentication.k8s.io/v1`` or
``v1beta1``) holding a bearer token or a client certificate and key, and
maybe an ``expirationTimestamp``. What is honoured:

- ``args``, ``env`` (added to this process's environment) and a relative
  ``command`` with a path separator resolved against the kubeconfig's
  directory (a bare name is looked up on ``PATH``);
- ``KUBERNETES_EXEC_INFO``: the request, with ``spec.interactive`` and, with
  ``provideClusterInfo``, ``spec.cluster`` (server, CA data, TLS server
  name, proxy, and the cluster's ``client.authentication.k8s.io/exec``
  extension as ``config``);
- ``interactiveMode``: ``Never`` (no stdin), ``IfAvailable`` (stdin when it
  is a terminal; v1beta1's default) or ``Always`` (refused without one). An
  interactive plugin shares this process's terminal; otherwise its stderr is
  captured, shown on failure in the error and passed on after success;
- caching: :class:`ExecAuthenticator` keeps the credential until its
  ``expirationTimestamp`` (forever when it has none) and runs the plugin
  again when it expires or when the API server answers 401 to it
  (:meth:`~ExecAuthenticator.invalidate`; the client then retries once).

Why by hand: the ``kubernetes`` and ``kubernetes_asyncio`` loaders run exec
plugins too, but neither honours ``interactiveMode``, neither caches nor
re-runs on a 401, the asyncio one sends no cluster info and takes no client
certificates, and the synchronous one logs a failing plugin and carries on
unauthenticated. The protocol is small and fully specified by its API types.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskmill.kube.errors import ConfigError
from taskmill.models.times import parse_time

GROUP = "client.authentication.k8s.io"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta1")
#: The cluster extension handed to the plugin as ``spec.cluster.config``.
EXTENSION = f"{GROUP}/exec"
#: Lines of a failed plugin's stderr quoted in the error.
STDERR_LINES = 10


class ExecPluginError(ConfigError):
    """The plugin could not be run, failed, or printed no usable credential."""


class InteractiveMode(enum.StrEnum):
    NEVER = "Never"
    IF_AVAILABLE = "IfAvailable"
    ALWAYS = "Always"


@dataclass(frozen=True)
class ExecConfig:
    """A kubeconfig user's ``exec`` stanza, checked (see :func:`parse`)."""

    command: str
    api_version: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    interactive_mode: InteractiveMode = InteractiveMode.IF_AVAILABLE
    install_hint: str = ""
    #: ``spec.cluster`` of the request as JSON, when ``provideClusterInfo`` is set.
    cluster_json: str | None = None
    #: The directory of the kubeconfig file that defined the stanza.
    directory: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecConfig:
        """The inverse of ``dataclasses.asdict`` (for a config sent to a child process)."""
        return cls(
            command=data["command"],
            api_version=data["api_version"],
            args=tuple(data.get("args") or ()),
            env=tuple((name, value) for name, value in data.get("env") or ()),
            interactive_mode=InteractiveMode(data.get("interactive_mode", "IfAvailable")),
            install_hint=data.get("install_hint") or "",
            cluster_json=data.get("cluster_json"),
            directory=data.get("directory") or "",
        )

    def argv(self) -> list[str]:
        command = self.command
        if os.sep in command and not os.path.isabs(command) and self.directory:
            command = os.path.normpath(os.path.join(self.directory, command))
        return [command, *self.args]


@dataclass(frozen=True)
class ExecCredential:
    """What a plugin printed: a token, or a client certificate and key (PEM)."""

    token: str | None = None
    client_certificate_data: str | None = None
    client_key_data: str | None = None
    #: Seconds since the epoch; None: valid until the API server says otherwise.
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def parse(
    stanza: Mapping[str, Any],
    *,
    directory: Path,
    cluster: Mapping[str, Any],
    cluster_ca: bytes | None,
    user: str,
) -> ExecConfig:
    """Check a kubeconfig ``exec`` stanza the way kubectl does, naming the user on error."""
    where = f"user {user!r}: exec"
    api_version = stanza.get("apiVersion")
    if api_version == f"{GROUP}/v1alpha1":
        raise ConfigError(f"{where}: apiVersion {api_version} is no longer supported; use v1")
    if api_version not in API_VERSIONS:
        raise ConfigError(f"{where}: apiVersion must be one of {', '.join(API_VERSIONS)}")
    command = stanza.get("command")
    if not command or not isinstance(command, str):
        raise ConfigError(f"{where}: command is required")
    args = stanza.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{where}: args must be a list of strings")
    env = []
    for item in stanza.get("env") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{where}: each env entry needs a name and a value")
        env.append((item["name"], str(item.get("value", ""))))
    mode = stanza.get("interactiveMode")
    if mode is None:
        if api_version == f"{GROUP}/v1":
            raise ConfigError(f"{where}: interactiveMode is required for {api_version}")
        mode = InteractiveMode.IF_AVAILABLE
    try:
        interactive_mode = InteractiveMode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in InteractiveMode)
        raise ConfigError(f"{where}: interactiveMode {mode!r} is not one of {choices}") from None
    cluster_json = None
    if stanza.get("provideClusterInfo"):
        cluster_json = json.dumps(cluster_info(cluster, cluster_ca))
    return ExecConfig(
        command=command,
        api_version=api_version,
        args=tuple(args),
        env=tuple(env),
        interactive_mode=interactive_mode,
        install_hint=str(stanza.get("installHint") or ""),
        cluster_json=cluster_json,
        directory=str(directory),
    )


def cluster_info(cluster: Mapping[str, Any], ca: bytes | None) -> dict[str, Any]:
    """The ``spec.cluster`` a plugin that asked for cluster info receives."""
    info: dict[str, Any] = {"server": cluster.get("server", "")}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "disable-compression"):
        if cluster.get(key):
            info[key] = cluster[key]
    if ca:
        info["certificate-authority-data"] = base64.b64encode(ca).decode()
    for extension in cluster.get("extensions") or []:
        if isinstance(extension, Mapping) and extension.get("name") == EXTENSION:
            info["config"] = extension.get("extension")
    return info


def exec_info(config: ExecConfig, *, interactive: bool) -> dict[str, Any]:
    """The ``KUBERNETES_EXEC_INFO`` request."""
    spec: dict[str, Any] = {"interactive": interactive}
    if config.cluster_json is not None:
        spec["cluster"] = json.loads(config.cluster_json)
    return {"apiVersion": config.api_version, "kind": "ExecCredential", "spec": spec}


def parse_output(stdout: bytes, config: ExecConfig) -> ExecCredential:
    """The credential in a plugin's stdout, or why there is none."""
    name = config.command
    try:
        document = json.loads(stdout)
    except ValueError as exc:
        raise ExecPluginError(f"exec plugin {name!r} printed no JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("kind") != "ExecCredential":
        raise ExecPluginError(f"exec plugin {name!r} printed no ExecCredential")
    if document.get("apiVersion") != config.api_version:
        raise ExecPluginError(
            f"exec plugin {name!r} answered in {document.get('apiVersion')}, "
            f"not the requested {config.api_version}"
        )
    status = document.get("status")
    if not isinstance(status, dict):
        raise ExecPluginError(f"exec plugin {name!r}: the ExecCredential has no status")
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if bool(cert) != bool(key):
        raise ExecPluginError(
            f"exec plugin {name!r}: clientCertificateData and clientKeyData come together"
        )
    if not token and not cert:
        raise ExecPluginError(
            f"exec plugin {name!r}: the ExecCredential holds neither a token "
            "nor clientCertificateData and clientKeyData"
        )
    expires_at = None
    if status.get("expirationTimestamp"):
        expires_at = _timestamp(status["expirationTimestamp"], name)
    return ExecCredential(
        token=token, client_certificate_data=cert, client_key_data=key, expires_at=expires_at
    )


def _timestamp(value: Any, name: str) -> float:
    try:
        stamp = parse_time(str(value))
    except ValueError:
        raise ExecPluginError(
            f"exec plugin {name!r}: expirationTimestamp {value!r} is not an RFC 3339 time"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or detached
        return False


def run(config: ExecConfig, *, terminal: Callable[[], bool] = _stdin_is_terminal) -> ExecCredential:
    """Run the plugin once and return its credential (blocking)."""
    interactive = False
    if config.interactive_mode is not InteractiveMode.NEVER:
        interactive = terminal()
        if config.interactive_mode is InteractiveMode.ALWAYS and not interactive:
            raise ExecPluginError(
                f"exec plugin {config.command!r} needs an interactive terminal "
                "(interactiveMode: Always) and stdin is not one"
            )
    env = dict(os.environ)
    env.update(config.env)
    env["KUBERNETES_EXEC_INFO"] = json.dumps(exec_info(config, interactive=interactive))
    try:
        # Interactive: the plugin prompts on this terminal. Otherwise no stdin,
        # and stderr is kept for the error message.
        result = subprocess.run(
            config.argv(),
            env=env,
            cwd=config.directory or None,
            stdin=None if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None if interactive else subprocess.PIPE,
            check=False,
        )
    except OSError as exc:
        hint = f"\n{config.install_hint}" if config.install_hint else ""
        raise ExecPluginError(
            f"cannot run exec plugin {config.command!r}: {exc.strerror or exc}{hint}"
        ) from None
    stderr = (result.stderr or b"").decode(errors="replace")
    if result.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-STDERR_LINES:])
        raise ExecPluginError(
            f"exec plugin {config.command!r} exited with {result.returncode}"
            + (f": {tail}" if tail else "")
        )
    if stderr:
        sys.stderr.write(stderr)  # warnings a plugin prints, as kubectl shows them
    return parse_output(result.stdout, config)


class ExecAuthenticator:
    """The current credential of one exec plugin, shared by every client and
    thread using the same :class:`~taskmill.kube.config.KubeConfig`."""

    def __init__(
        self,
        config: ExecConfig,
        *,
        runner: Callable[[ExecConfig], ExecCredential] = run,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._run = runner
        self._clock = clock
        self._lock = threading.Lock()
        self._credential: ExecCredential | None = None
        #: How often the plugin ran (for logs and tests).
        self.runs = 0

    def cached(self) -> ExecCredential | None:
        """The credential if one is held and has not expired; never runs the plugin."""
        credential = self._credential
        if credential is None or credential.expired(self._clock()):
            return None
        return credential

    def get(self) -> ExecCredential:
        """The cached credential, or a new one from the plugin (one run at a time)."""
        with self._lock:
            credential = self.cached()
            if credential is None:
                credential = self._run(self.config)
                self.runs += 1
                self._credential = credential
            return credential

    def invalidate(self, used: ExecCredential | None) -> None:
        """The API server refused ``used``: drop it, unless a newer one replaced it."""
        with self._lock:
            if used is None or self._credential is used:
                self._credential = None
