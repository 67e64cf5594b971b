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

Each process runs in a session of its own, so a Ctrl-C at the terminal
reaches only Python, which then stops them in order (controller manager,
API server, etcd) instead of all three dying at once.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from taskmill.testing import pki
from taskmill.testing.assets import Assets, ensure_assets

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

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The first address of the service range is the `kubernetes` Service's.
_KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# What a test of an operator needs from kube-controller-manager, and no more
# (every controller is CPU taken from the API server on a small machine).
DEFAULT_CONTROLLERS: tuple[str, ...] = (
    "garbage-collector-controller",  # ownerReference cascading deletion
    "namespace-controller",  # namespace deletion finishes
    "resourcequota-controller",  # quota status, without which quota admission cannot count
    "serviceaccount-controller",  # a `default` ServiceAccount in each namespace
    "serviceaccount-token-controller",  # legacy token Secrets
    "root-ca-certificate-publisher-controller",  # kube-root-ca.crt in each namespace
    "clusterrole-aggregation-controller",  # admin/edit/view pick up aggregated rules
    "cronjob-controller",  # the peer CronTask timing is compared with
    "job-controller",
    "ttl-after-finished-controller",
    "deployment-controller",  # a chart's Deployments get ReplicaSets and (Pending) Pods
    "replicaset-controller",
)

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

_LOG_TAIL_LINES = 30
_STOP_TIMEOUT = 15.0
_START_ATTEMPTS = 3


class ControlPlaneError(RuntimeError):
    """The control plane could not be started, reached or stopped."""


class _PortInUseError(ControlPlaneError):
    """A process could not bind its port."""


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


def build_flags(
    defaults: Mapping[str, str], overrides: Mapping[str, str | None] | None = None
) -> list[str]:
    """Command-line flags from ``defaults`` updated by ``overrides``.

    Names may be given with or without the leading ``--``; an override of
    ``None`` drops a default flag. Order is that of ``defaults``, then new
    names in the order given, so a process's command line reads predictably.
    """
    merged: dict[str, str | None] = {name.removeprefix("--"): v for name, v in defaults.items()}
    for name, value in (overrides or {}).items():
        merged[name.removeprefix("--")] = value
    return [f"--{name}={value}" for name, value in merged.items() if value is not None]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on 127.0.0.1 right now.

    The sockets are held open together so the kernel cannot hand out the
    same port twice; another process may still take one before it is used,
    which then fails start-up with a clear error (address already in use).
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


# --- processes ---------------------------------------------------------------------------


def _proc_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if gone or unknown.

    Together with the pid it identifies a process across pid reuse.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split
    # after its closing parenthesis. Field 3 is the state, field 22 the start.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie has exited; only its exit status is left
        return None
    return int(fields[19])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get SIGKILL when this process dies (Linux).

    SIGKILL rather than SIGTERM: all three processes get it at once, and an
    API server shutting down gracefully while its etcd disappears hangs.
    With its owner gone, nobody needs a graceful shutdown.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so
    it is only safe from the main thread, whose end is the process's.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))
        # The parent may have died between fork() and prctl().
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class _Process:
    """One of the control plane's processes, started here or found in a state file."""

    def __init__(
        self,
        name: str,
        pid: int,
        start_time: int | None,
        log: Path,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.name = name
        self.pid = pid
        self.start_time = start_time
        self.log = log
        self.popen = popen

    @classmethod
    def spawn(
        cls, name: str, argv: Sequence[str], *, log: Path, cwd: Path, detached: bool
    ) -> _Process:
        log.parent.mkdir(parents=True, exist_ok=True)
        # etcd reads ETCD_* variables as flags, and a KUBECONFIG of the
        # user's has no business here: neither may leak into the processes.
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("ETCD_") and k != "KUBECONFIG"
        }
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=None if detached else _die_with_parent(),
            )
        return cls(name, popen.pid, _proc_start_time(popen.pid), log, popen)

    def exit_code(self) -> int | None:
        """The exit code if the process has ended (None while running or if unknown)."""
        if self.popen is not None:
            return self.popen.poll()
        return None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        with contextlib.suppress(ChildProcessError):
            # Our own child (started detached earlier in this process): reap it.
            os.waitpid(self.pid, os.WNOHANG)
        now = _proc_start_time(self.pid)
        if now is None:
            if Path("/proc/self/stat").exists():
                return False
            try:  # no /proc (not Linux): the pid's existence is all we can check
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return self.start_time is None or now == self.start_time

    def signal(self, signum: int) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the process to end; True if it did."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        return _poll(lambda: not self.alive(), timeout)

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.signal(signal.SIGKILL)
            self.wait(5.0)

    def tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "log": str(self.log),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> _Process:
        return cls(str(data["name"]), int(data["pid"]), data.get("start_time"), Path(data["log"]))


def _poll(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the control plane -------------------------------------------------------------------


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
        self._processes: list[_Process] = []
        self._server: str | None = None
        self._etcd_url: str | None = None
        self._kubectl_path: Path | None = None
        self._admin_ssl: ssl.SSLContext | None = None
        self._atexit_registered = False

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
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_path(self) -> Path:
        """The CA certificate: it signed the API server's certificate and all client ones."""
        return self.pki_dir / "ca.crt"

    @property
    def admin_cert_path(self) -> Path:
        return self.pki_dir / "admin.crt"

    @property
    def admin_key_path(self) -> Path:
        return self.pki_dir / "admin.key"

    @property
    def service_account_key_path(self) -> Path:
        """The private key that signs ServiceAccount tokens."""
        return self.pki_dir / "sa.key"

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
        self._admin_ssl = None

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
        plane._processes = [_Process.from_state(p) for p in state["processes"]]
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
        ca = pki.CertificateAuthority()
        serving = ca.issue(
            "kube-apiserver",
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ip_addresses=["127.0.0.1", "::1", _KUBERNETES_SERVICE_IP],
            server=True,
        )
        # The API server takes the user name from CN and groups from O.
        admin = ca.issue("taskmill-admin", organizations=["system:masters"], client=True)
        manager = ca.issue(
            "system:kube-controller-manager", organizations=["system:masters"], client=True
        )
        signing = pki.new_key_pair()
        files = {
            "ca.crt": ca.cert_pem,
            "ca.key": ca.key_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "admin.crt": admin.cert_pem,
            "admin.key": admin.key_pem,
            "controller-manager.crt": manager.cert_pem,
            "controller-manager.key": manager.key_pem,
            "sa.key": signing.private_pem,
            "sa.pub": signing.public_pem,
        }
        for name, data in files.items():
            _write_private(self.pki_dir / name, data)

    def _kubeconfig_document(
        self,
        user: str,
        credentials: Mapping[str, str],
        namespace: str | None,
        server: str | None = None,
    ) -> dict[str, Any]:
        context: dict[str, str] = {"cluster": "taskmill", "user": user}
        if namespace:
            context["namespace"] = namespace
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "taskmill",
                    "cluster": {
                        "server": server or self.server,
                        "certificate-authority-data": _b64(self.ca_path.read_bytes()),
                    },
                }
            ],
            "users": [{"name": user, "user": dict(credentials)}],
            "contexts": [{"name": "taskmill", "context": context}],
            "current-context": "taskmill",
            "preferences": {},
        }

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
            credentials = {
                "client-certificate-data": _b64(self.admin_cert_path.read_bytes()),
                "client-key-data": _b64(self.admin_key_path.read_bytes()),
            }
        document = self._kubeconfig_document(user, credentials, namespace, server)
        target = Path(path)
        _write_private(target, yaml.safe_dump(document, sort_keys=False).encode())
        return target

    def _write_kubeconfigs(self) -> None:
        self.write_kubeconfig(self.kubeconfig, namespace="default")
        manager = self._kubeconfig_document(
            "kube-controller-manager",
            {
                "client-certificate": str(self.pki_dir / "controller-manager.crt"),
                "client-key": str(self.pki_dir / "controller-manager.key"),
            },
            None,
        )
        _write_private(
            self.workdir / "controller-manager.kubeconfig",
            yaml.safe_dump(manager, sort_keys=False).encode(),
        )

    def _spawn(self, name: str, binary: Path, flags: Sequence[str]) -> _Process:
        process = _Process.spawn(
            name,
            [str(binary), *flags],
            log=self.workdir / "logs" / f"{name}.log",
            cwd=self.workdir,
            detached=self.detached,
        )
        self._processes.append(process)
        self._write_state()
        return process

    def _await(
        self, process: _Process, what: str, ready: Callable[[], bool], deadline: float
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

        if not _poll(check, max(0.0, deadline - time.monotonic())):
            raise ControlPlaneError(
                f"{process.name} did not become ready ({what}) in time "
                f"(log {process.log}); last lines:\n{process.tail()}"
            )

    def etcd_flag_defaults(self, client_port: int, peer_port: int) -> dict[str, str]:
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        return {
            "name": "taskmill",
            "data-dir": str(self.workdir / "etcd"),
            "listen-client-urls": client,
            "advertise-client-urls": client,
            "listen-peer-urls": peer,
            "initial-advertise-peer-urls": peer,
            "initial-cluster": f"taskmill={peer}",
            "log-level": "warn",
            # fsync stays on (no --unsafe-no-fsync): crash tests need real durability.
        }

    def _start_etcd(self, binary: Path, client_port: int, peer_port: int, deadline: float) -> None:
        flags = build_flags(self.etcd_flag_defaults(client_port, peer_port), self._etcd_flags)
        process = self._spawn("etcd", binary, flags)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
                    return bool(json.load(response).get("health") == "true")
            except (OSError, ValueError):
                return False

        self._await(process, "/health", healthy, deadline)

    def apiserver_flag_defaults(self, port: int) -> dict[str, str]:
        flags = {
            "etcd-servers": self.etcd_url,
            "secure-port": str(port),
            "bind-address": "127.0.0.1",
            "advertise-address": "127.0.0.1",
            # The endpoint reconciler publishes the advertise address as the
            # `kubernetes` Service's endpoint and refuses a loopback one; with
            # no Pods to use that Service, there is nothing to reconcile.
            "endpoint-reconciler-type": "none",
            "cert-dir": str(self.pki_dir),
            "tls-cert-file": str(self.pki_dir / "apiserver.crt"),
            "tls-private-key-file": str(self.pki_dir / "apiserver.key"),
            "client-ca-file": str(self.ca_path),
            "authorization-mode": "RBAC",
            "service-account-issuer": SERVICE_ACCOUNT_ISSUER,
            "service-account-key-file": str(self.pki_dir / "sa.pub"),
            "service-account-signing-key-file": str(self.service_account_key_path),
            "service-cluster-ip-range": SERVICE_CLUSTER_IP_RANGE,
            "allow-privileged": "true",
        }
        if not self._controller_manager:
            # Without the service-account controller no namespace gets its
            # `default` ServiceAccount, and this admission plugin would then
            # refuse every Pod.
            flags["disable-admission-plugins"] = "ServiceAccount"
        return flags

    def _start_apiserver(self, binary: Path, port: int, deadline: float) -> None:
        flags = build_flags(self.apiserver_flag_defaults(port), self._apiserver_flags)
        process = self._spawn("kube-apiserver", binary, flags)

        def ready() -> bool:
            try:
                return self.request("GET", "/readyz", timeout=5).status == 200
            except OSError:
                return False

        self._await(process, "/readyz", ready, deadline)

    def controller_manager_flag_defaults(self) -> dict[str, str]:
        return {
            "kubeconfig": str(self.workdir / "controller-manager.kubeconfig"),
            "leader-elect": "false",
            "service-account-private-key-file": str(self.service_account_key_path),
            "root-ca-file": str(self.ca_path),
            # No serving port: readiness is judged by what the controllers do.
            "secure-port": "0",
            # One identity (in system:masters) for all controllers, rather than
            # a ServiceAccount each that would need the bootstrap RBAC roles.
            "use-service-account-credentials": "false",
            "controllers": ",".join(DEFAULT_CONTROLLERS),
        }

    def _start_controller_manager(self, binary: Path, deadline: float) -> None:
        flags = build_flags(self.controller_manager_flag_defaults(), self._controller_manager_flags)
        process = self._spawn("kube-controller-manager", binary, flags)

        def ready() -> bool:
            path = "/api/v1/namespaces/default/serviceaccounts/default"
            try:
                return self.request("GET", path, timeout=5).status == 200
            except OSError:
                return False

        self._await(process, "the `default` ServiceAccount in `default`", ready, deadline)

    # --- talking to the API server ---

    def _ssl_context(self, *, admin: bool) -> ssl.SSLContext:
        if admin and self._admin_ssl is not None:
            return self._admin_ssl
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if admin:
            context.load_cert_chain(str(self.admin_cert_path), str(self.admin_key_path))
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

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl as the admin; raises :class:`KubectlError` if ``check``."""
        argv = [
            str(self.kubectl_path),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.kube_cache_dir}",
            *args,
        ]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

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
