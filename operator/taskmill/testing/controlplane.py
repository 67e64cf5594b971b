"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

This is the envtest approach: the real API server and its storage, but no
kubelet and no scheduler, so Pods never run; operators and workers run as
local processes instead. It is what Taskmill's integration tests, the
``taskmill dev`` command and users' own handler tests talk to.

Start-up, in order (:meth:`ControlPlane.start`):

1. binaries from :func:`taskmill.testing.assets.ensure_assets` (built once);
2. a fresh PKI in ``<workdir>/pki`` (:mod:`taskmill.testing.pki`): a CA, the
   API server's serving certificate, client certificates in
   ``system:masters`` for the admin kubeconfig and the controller manager,
   and the service-account signing key pair;
3. free loopback ports for etcd (client and peer: without an explicit peer
   URL etcd binds ``:2380`` on every interface) and the API server;
4. **etcd**, until ``/health`` says so; then **kube-apiserver**, with RBAC
   enforced, until ``/readyz`` is ok (that includes the RBAC bootstrap
   roles); then **kube-controller-manager**, until its service-account
   controller has created ``default/default``, which shows it is
   connected and running its controllers (garbage collector, namespace
   deletion, resource quota, CronJobs, ...).

Each process writes to ``<workdir>/logs/<name>.log``; when one dies or does
not get ready in time, :class:`ControlPlaneError` names it and quotes the
end of its log, and everything started so far is torn down.

Lifetime. By default the processes belong to the :class:`ControlPlane`
object: :meth:`~ControlPlane.stop` ends them (SIGTERM, then SIGKILL after a
deadline), leaving the ``with`` block does too, an ``atexit`` hook covers a
forgotten ``stop()``, and on Linux the kernel kills them should the Python
process die without running either (``PR_SET_PDEATHSIG``; its workdir is
then left behind). With
``detached=True`` they outlive the Python process (``taskmill dev up
--detach``): the state file ``<workdir>/controlplane.json`` records pids,
ports and paths, and :meth:`ControlPlane.attach` re-opens it from any
process to inspect or stop the plane. Process identity is checked with the
kernel's start time of each pid, so a recycled pid is never signalled.

Outages. :meth:`~ControlPlane.stop_component` stops one process (SIGTERM, or
SIGKILL with ``kill=True``) and leaves the rest, the data and the ports;
:meth:`~ControlPlane.start_component` starts it again with the same command
line and waits until it is ready: the API server stopped with etcd kept, or
etcd stopped under a running API server, as the fault tests do.

Each process runs in a session of its own, so a Ctrl-C at the terminal
reaches only Python, which then stops them in order (controller manager,
API server, etcd) instead of all three dying at once.

This module holds the plane itself: the order of start-up and shutdown,
the workdir and its state file. It is composed of
:mod:`~taskmill.testing.processes` (spawning, identifying and stopping one
process), :mod:`~taskmill.testing.flags` (each binary's command line),
:mod:`~taskmill.testing.pki` and :mod:`~taskmill.testing.kubeconfig` (the
credentials on disk) and :mod:`~taskmill.testing.apiclient` (requests,
kubectl and tokens).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from taskmill.testing import apiclient, flags, kubeconfig, pki
from taskmill.testing.apiclient import ApiClient, KubectlError, Response
from taskmill.testing.assets import Assets, ensure_assets
from taskmill.testing.errors import ControlPlaneError
from taskmill.testing.flags import (
    DEFAULT_CONTROLLERS,
    SERVICE_ACCOUNT_ISSUER,
    SERVICE_CLUSTER_IP_RANGE,
    build_flags,
)
from taskmill.testing.processes import Process, free_ports, poll

__all__ = [
    "DEFAULT_CONTROLLERS",
    "SERVICE_ACCOUNT_ISSUER",
    "SERVICE_CLUSTER_IP_RANGE",
    "STATE_FILE",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "Response",
    "build_flags",
    "free_ports",
]

STATE_FILE = "controlplane.json"
_STATE_VERSION = 1

# The files and directories a control plane creates in its workdir; in a
# workdir it did not create, stop() removes exactly these.
_ENTRIES = (
    STATE_FILE,
    "pki",
    "etcd",
    "logs",
    "kube-cache",
    "kubeconfig",
    "controller-manager.kubeconfig",
)

_STOP_TIMEOUT = 15.0
_START_ATTEMPTS = 3


class _PortInUseError(ControlPlaneError):
    """A process could not bind its port."""


def _child_environment() -> dict[str, str]:
    # etcd reads ETCD_* variables as flags, and a KUBECONFIG of the
    # user's has no business here: neither may leak into the processes.
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_") and k != "KUBECONFIG"}


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback.

    ``workdir``: where certificates, etcd's data, logs and the kubeconfig go
    (a fresh temporary directory if None). ``apiserver_flags``,
    ``etcd_flags`` and ``controller_manager_flags`` add or override flags
    (``None`` removes one), e.g. ``{"max-requests-inflight": "800"}``.
    ``keep_workdir`` keeps the files after :meth:`stop` (for debugging);
    otherwise a workdir created here is removed, and in a directory that
    existed before, only the entries created here are.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        controller_manager: bool = True,
        apiserver_flags: Mapping[str, str | None] | None = None,
        etcd_flags: Mapping[str, str | None] | None = None,
        controller_manager_flags: Mapping[str, str | None] | None = None,
        detached: bool = False,
        keep_workdir: bool = False,
        assets: Assets | None = None,
    ) -> None:
        self._requested_workdir = Path(workdir).absolute() if workdir is not None else None
        self._controller_manager = controller_manager
        self._apiserver_flags = dict(apiserver_flags or {})
        self._etcd_flags = dict(etcd_flags or {})
        self._controller_manager_flags = dict(controller_manager_flags or {})
        self.detached = detached
        self.keep_workdir = keep_workdir
        self._assets = assets
        self._workdir: Path | None = None
        self._owns_workdir = False
        self._processes: list[Process] = []
        self._server: str | None = None
        self._etcd_url: str | None = None
        self._kubectl_path: Path | None = None
        self._api: ApiClient | None = None
        self._atexit_registered = False
        #: How each process was started and how its readiness is judged, so
        #: one can be started again in its place (start_component).
        self._commands: dict[str, list[str]] = {}
        self._readiness: dict[str, tuple[str, Callable[[], bool]]] = {}

    def __repr__(self) -> str:
        state = f"server={self._server}" if self._server else "not started"
        return f"<ControlPlane {state} workdir={self._workdir}>"

    # --- paths and addresses ---

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._workdir

    @property
    def server(self) -> str:
        """The API server's URL, ``https://127.0.0.1:<port>``."""
        if self._server is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._server

    @property
    def etcd_url(self) -> str:
        if self._etcd_url is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._etcd_url

    @property
    def kubeconfig(self) -> Path:
        """An admin kubeconfig (``system:masters``), with its current context set."""
        return self.workdir / "kubeconfig"

    @property
    def _pki(self) -> pki.PkiFiles:
        return pki.PkiFiles(self.workdir / "pki")

    @property
    def pki_dir(self) -> Path:
        return self._pki.directory

    @property
    def ca_path(self) -> Path:
        """The CA certificate: it signed the API server's certificate and all client ones."""
        return self._pki.ca_cert

    @property
    def admin_cert_path(self) -> Path:
        return self._pki.admin_cert

    @property
    def admin_key_path(self) -> Path:
        return self._pki.admin_key

    @property
    def service_account_key_path(self) -> Path:
        """The private key that signs ServiceAccount tokens."""
        return self._pki.service_account_key

    @property
    def kube_cache_dir(self) -> Path:
        # kubectl's discovery cache is keyed by host:port; a fresh control
        # plane reusing a port must not see another one's cached API groups.
        return self.workdir / "kube-cache"

    @property
    def kubectl_path(self) -> Path:
        if self._kubectl_path is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._kubectl_path

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by name (``etcd``, ``kube-apiserver``, ``kube-controller-manager``)."""
        return {p.name: p.pid for p in self._processes}

    @property
    def logs(self) -> dict[str, Path]:
        """Log files by process name."""
        return {p.name: p.log for p in self._processes}

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl and Kubernetes clients here."""
        return {"KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.kube_cache_dir)}

    # --- lifetime ---

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, *, timeout: float = 120.0) -> None:
        """Start everything and return once it is ready; see the module docstring.

        ``timeout`` bounds start-up after the binaries are found (building
        them on first use takes longer, and is not counted). On failure,
        everything started is stopped and removed before the error is raised.
        """
        if self._processes or self._server is not None:
            raise ControlPlaneError("the control plane has already been started")
        assets = self._assets or ensure_assets(controller_manager=self._controller_manager)
        if self._controller_manager and assets.kube_controller_manager is None:
            raise ControlPlaneError(
                "no kube-controller-manager among the binaries (KUBEBUILDER_ASSETS has none?): "
                "add it there, unset KUBEBUILDER_ASSETS, or start with controller_manager=False "
                "(no garbage collection, namespace deletion or quota status then)"
            )
        deadline = time.monotonic() + timeout
        attempts = _START_ATTEMPTS
        while True:
            attempts -= 1
            try:
                self._start_once(assets, deadline)
                return
            except BaseException as error:
                # A port picked here can be taken by someone else before the
                # process binds it (even by the API server's own outgoing
                # connections to etcd): pick new ones and try again.
                retry = (
                    isinstance(error, _PortInUseError)
                    and attempts > 0
                    and not self._explicit_ports()
                    and time.monotonic() < deadline
                )
                self.stop(remove_workdir=retry or not self.keep_workdir)
                if not retry:
                    raise

    def _start_once(self, assets: Assets, deadline: float) -> None:
        self._prepare_workdir()
        if not self.detached and not self._atexit_registered:
            atexit.register(self._atexit)
            self._atexit_registered = True
        self._kubectl_path = assets.kubectl
        self._write_pki()
        etcd_client, etcd_peer, apiserver = free_ports(3)
        self._etcd_url = f"http://127.0.0.1:{etcd_client}"
        if "advertise-client-urls" in self._etcd_flags:
            self._etcd_url = str(self._etcd_flags["advertise-client-urls"]).split(",")[0]
        if self._apiserver_flags.get("secure-port"):
            apiserver = int(str(self._apiserver_flags["secure-port"]))
        self._server = f"https://127.0.0.1:{apiserver}"
        self._write_kubeconfigs()
        self._start_etcd(assets.etcd, etcd_client, etcd_peer, deadline)
        self._start_apiserver(assets.kube_apiserver, apiserver, deadline)
        if self._controller_manager and assets.kube_controller_manager is not None:
            self._start_controller_manager(assets.kube_controller_manager, deadline)

    def _explicit_ports(self) -> bool:
        """Whether the caller chose ports (then a conflict is theirs to solve)."""
        etcd = {"listen-client-urls", "listen-peer-urls", "advertise-client-urls"}
        return bool(etcd & self._etcd_flags.keys()) or "secure-port" in self._apiserver_flags

    def stop(self, *, timeout: float = _STOP_TIMEOUT, remove_workdir: bool | None = None) -> None:
        """Stop the processes, newest first, and remove the files (unless kept).

        Each process gets SIGTERM and ``timeout`` seconds before SIGKILL.
        Safe to call more than once, and from another process after
        :meth:`attach`.
        """
        for process in reversed(self._processes):
            process.stop(timeout)
        self._processes = []
        if self._atexit_registered:
            atexit.unregister(self._atexit)
            self._atexit_registered = False
        remove = (not self.keep_workdir) if remove_workdir is None else remove_workdir
        if self._workdir is not None:
            if remove:
                self._remove_files()
            else:
                (self._workdir / STATE_FILE).unlink(missing_ok=True)
        self._server = None
        self._api = None

    def stop_component(self, name: str, *, kill: bool = False) -> None:
        """Stop one process (``etcd``, ``kube-apiserver``, ``kube-controller-manager``)
        and leave the others, the data and the ports as they are: an outage.

        ``kill``: SIGKILL (a crash) instead of SIGTERM. The process stays in
        :attr:`pids` until :meth:`start_component` replaces it.
        """
        process = self._component(name)
        if kill:
            process.signal(signal.SIGKILL)
            process.wait(10.0)
        else:
            process.stop(_STOP_TIMEOUT)

    def start_component(self, name: str, *, timeout: float = 60.0) -> None:
        """Start a process stopped by :meth:`stop_component` again, with the
        same flags, ports and data, and return once it is ready."""
        process = self._component(name)
        if process.alive():
            raise ControlPlaneError(f"{name} is running; stop it first")
        command = self._commands.get(name)
        if command is None:
            raise ControlPlaneError(f"{name} was not started by this ControlPlane object")
        replacement = self._spawn_process(name, command, log=process.log)
        self._processes[self._processes.index(process)] = replacement
        self._write_state()
        what, ready = self._readiness[name]
        self._await(replacement, what, ready, time.monotonic() + timeout)

    def _component(self, name: str) -> Process:
        for process in self._processes:
            if process.name == name:
                return process
        known = ", ".join(p.name for p in self._processes) or "none"
        raise ControlPlaneError(f"no process {name!r} in this control plane (running: {known})")

    def is_running(self) -> bool:
        """Whether all of the control plane's processes are alive."""
        return bool(self._processes) and all(p.alive() for p in self._processes)

    @classmethod
    def attach(cls, workdir: str | os.PathLike[str]) -> ControlPlane:
        """Re-open a control plane from the state file in ``workdir`` (e.g. a detached one).

        The result can run kubectl, mint tokens, tell :meth:`is_running` and
        :meth:`stop` it; it does not stop anything when garbage-collected.
        """
        path = Path(workdir).absolute() / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise ControlPlaneError(f"no control plane state in {path.parent}") from None
        except ValueError as error:
            raise ControlPlaneError(f"unreadable control plane state {path}: {error}") from None
        if state.get("version") != _STATE_VERSION:
            raise ControlPlaneError(f"{path} was written by an incompatible Taskmill version")
        # An attached plane registers no atexit hook (only start() does), so
        # it is never stopped implicitly, whatever its `detached` says.
        plane = cls(
            path.parent,
            controller_manager=bool(state["controller_manager"]),
            detached=bool(state["detached"]),
            keep_workdir=bool(state["keep_workdir"]),
        )
        plane._workdir = path.parent
        plane._owns_workdir = bool(state["owns_workdir"])
        plane._server = str(state["server"])
        plane._etcd_url = str(state["etcd_url"])
        plane._kubectl_path = Path(state["kubectl"])
        plane._processes = [Process.from_state(p) for p in state["processes"]]
        return plane

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def _prepare_workdir(self) -> None:
        requested = self._requested_workdir
        if requested is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="taskmill-controlplane-"))
            self._owns_workdir = True
            return
        if (requested / STATE_FILE).exists():
            try:
                previous: ControlPlane | None = ControlPlane.attach(requested)
            except ControlPlaneError:
                previous = None
            if previous is not None:
                if previous.is_running():
                    raise ControlPlaneError(
                        f"a control plane is already running in {requested}; "
                        "attach to it or stop it first"
                    )
                # Whatever survives of a plane that was killed rather than stopped.
                previous.stop(remove_workdir=False)
        self._owns_workdir = not requested.exists()
        requested.mkdir(parents=True, exist_ok=True)
        self._workdir = requested
        self._remove_entries()

    def _remove_files(self) -> None:
        if self._workdir is None:
            return
        if self._owns_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        else:
            self._remove_entries()

    def _remove_entries(self) -> None:
        for entry in _ENTRIES:
            path = self.workdir / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _write_state(self) -> None:
        # Written after each process starts, so that a plane whose starter
        # died half-way can still be found and stopped.
        state = {
            "version": _STATE_VERSION,
            "detached": self.detached,
            "controller_manager": self._controller_manager,
            "owns_workdir": self._owns_workdir,
            "keep_workdir": self.keep_workdir,
            "server": self._server,
            "etcd_url": self._etcd_url,
            "kubeconfig": str(self.kubeconfig),
            "ca": str(self.ca_path),
            "kubectl": str(self.kubectl_path),
            "processes": [p.to_state() for p in self._processes],
        }
        path = self.workdir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(temporary, path)

    # --- start-up steps ---

    def _write_pki(self) -> None:
        pki.write_control_plane_pki(self.pki_dir, service_ip=flags.KUBERNETES_SERVICE_IP)

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        *,
        token: str | None = None,
        namespace: str | None = None,
        server: str | None = None,
    ) -> Path:
        """Write a self-contained kubeconfig for this API server to ``path``.

        With ``token`` (e.g. from :meth:`create_token`) it authenticates as
        that ServiceAccount, so RBAC applies; without, it is the admin's.
        ``server`` reaches the API server another way (e.g. through a
        :class:`~taskmill.testing.proxy.Proxy`); its certificate must still
        name the address.
        """
        if token is not None:
            user, credentials = "token", {"token": token}
        else:
            user = "taskmill-admin"
            credentials = kubeconfig.embedded_client_certificate(
                self.admin_cert_path.read_bytes(), self.admin_key_path.read_bytes()
            )
        document = kubeconfig.document(
            server=server or self.server,
            ca_pem=self.ca_path.read_bytes(),
            user=user,
            credentials=credentials,
            namespace=namespace,
        )
        return kubeconfig.write(Path(path), document)

    def _write_kubeconfigs(self) -> None:
        self.write_kubeconfig(self.kubeconfig, namespace="default")
        manager = kubeconfig.document(
            server=self.server,
            ca_pem=self.ca_path.read_bytes(),
            user="kube-controller-manager",
            credentials={
                "client-certificate": str(self._pki.controller_manager_cert),
                "client-key": str(self._pki.controller_manager_key),
            },
        )
        kubeconfig.write(self._controller_manager_kubeconfig, manager)

    @property
    def _controller_manager_kubeconfig(self) -> Path:
        return self.workdir / "controller-manager.kubeconfig"

    def _spawn_process(self, name: str, argv: Sequence[str], *, log: Path) -> Process:
        return Process.spawn(
            name, argv, log=log, cwd=self.workdir, env=_child_environment(), detached=self.detached
        )

    def _spawn(self, name: str, binary: Path, arguments: Sequence[str]) -> Process:
        self._commands[name] = [str(binary), *arguments]
        process = self._spawn_process(
            name, self._commands[name], log=self.workdir / "logs" / f"{name}.log"
        )
        self._processes.append(process)
        self._write_state()
        return process

    def _await(
        self, process: Process, what: str, ready: Callable[[], bool], deadline: float
    ) -> None:
        """Poll ``ready`` until it holds; fail fast if any process has exited."""

        def check() -> bool:
            for p in self._processes:
                code = p.exit_code()
                if code is not None:
                    tail = p.tail()
                    kind = (
                        _PortInUseError if "address already in use" in tail else ControlPlaneError
                    )
                    raise kind(
                        f"{p.name} exited with code {code} during start-up "
                        f"(log {p.log}); last lines:\n{tail}"
                    )
            return ready()

        if not poll(check, max(0.0, deadline - time.monotonic())):
            raise ControlPlaneError(
                f"{process.name} did not become ready ({what}) in time "
                f"(log {process.log}); last lines:\n{process.tail()}"
            )

    def etcd_flag_defaults(self, client_port: int, peer_port: int) -> dict[str, str]:
        return flags.etcd_defaults(
            data_dir=self.workdir / "etcd", client_port=client_port, peer_port=peer_port
        )

    def _start_etcd(self, binary: Path, client_port: int, peer_port: int, deadline: float) -> None:
        arguments = build_flags(self.etcd_flag_defaults(client_port, peer_port), self._etcd_flags)
        process = self._spawn("etcd", binary, arguments)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
                    return bool(json.load(response).get("health") == "true")
            except (OSError, ValueError):
                return False

        self._readiness[process.name] = ("/health", healthy)
        self._await(process, "/health", healthy, deadline)

    def apiserver_flag_defaults(self, port: int) -> dict[str, str]:
        return flags.apiserver_defaults(
            port=port,
            etcd_url=self.etcd_url,
            pki=self._pki,
            service_accounts=self._controller_manager,
        )

    def _start_apiserver(self, binary: Path, port: int, deadline: float) -> None:
        arguments = build_flags(self.apiserver_flag_defaults(port), self._apiserver_flags)
        process = self._spawn("kube-apiserver", binary, arguments)

        def ready() -> bool:
            try:
                return self.request("GET", "/readyz", timeout=5).status == 200
            except OSError:
                return False

        self._readiness[process.name] = ("/readyz", ready)
        self._await(process, "/readyz", ready, deadline)

    def controller_manager_flag_defaults(self) -> dict[str, str]:
        return flags.controller_manager_defaults(
            kubeconfig=self._controller_manager_kubeconfig, pki=self._pki
        )

    def _start_controller_manager(self, binary: Path, deadline: float) -> None:
        arguments = build_flags(
            self.controller_manager_flag_defaults(), self._controller_manager_flags
        )
        process = self._spawn("kube-controller-manager", binary, arguments)

        def ready() -> bool:
            path = "/api/v1/namespaces/default/serviceaccounts/default"
            try:
                return self.request("GET", path, timeout=5).status == 200
            except OSError:
                return False

        self._readiness[process.name] = ("the `default` ServiceAccount in `default`", ready)
        self._await(process, "the `default` ServiceAccount in `default`", ready, deadline)

    # --- talking to the API server ---

    def _client(self) -> ApiClient:
        if self._api is None:
            self._api = ApiClient(
                self.server,
                ca=self.ca_path,
                admin_cert=self.admin_cert_path,
                admin_key=self.admin_key_path,
            )
        return self._api

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
        return self._client().request(
            method, path, body, token=token, content_type=content_type, timeout=timeout
        )

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl as the admin; raises :class:`KubectlError` if ``check``."""
        return apiclient.kubectl(
            self.kubectl_path,
            *args,
            kubeconfig=self.kubeconfig,
            cache_dir=self.kube_cache_dir,
            input=input,
            check=check,
            timeout=timeout,
        )

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
        return self._client().create_token(
            service_account, namespace, audience=audience, duration_seconds=duration_seconds
        )
