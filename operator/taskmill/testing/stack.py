"""Taskmill on a control plane: CRDs installed, operator and workers running
as local processes, started exactly as their containers start them
(``taskmill operator``, ``taskmill worker``).

Used by ``taskmill dev`` and by the integration tests; usable by anyone
testing their own handlers (see ``docs/testing.md``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.processes import free_ports


def install_crds(plane: ControlPlane, *, timeout: float = 60) -> None:
    """Apply the CRDs generated from the models and wait until they are served."""
    from taskmill.crdgen.render import crd_yaml, render_crds

    docs = render_crds()
    manifest = "---\n".join(crd_yaml(doc, header=False) for doc in docs)
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest)
    names = [f"crd/{doc['metadata']['name']}" for doc in docs]
    plane.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s", *names)
    # Established is not yet servable: until each resource's storage has
    # initialized, lists answer 429. Wait until they answer.
    deadline = time.monotonic() + timeout
    for doc in docs:
        spec = doc["spec"]
        url = f"/apis/{spec['group']}/{spec['versions'][0]['name']}/{spec['names']['plural']}"
        while plane.request("GET", url).status != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not served {timeout:g}s after its CRD was applied")
            time.sleep(0.05)


def install_admission(plane: ControlPlane) -> None:
    """Apply the ``payloadFrom`` admission policy and its binding
    (:mod:`taskmill.crdgen.admission`), as the chart does."""
    import yaml

    from taskmill.crdgen.admission import render_policy

    manifest = yaml.safe_dump_all(render_policy(), sort_keys=False)
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest)


@dataclass
class Process:
    """A Taskmill command running in the background, logging to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, for reliability tests."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def taskmill_command(*args: str) -> list[str]:
    """The command line of a ``taskmill`` subcommand, using this interpreter."""
    return [sys.executable, "-m", "taskmill", *args]


def spawn(
    name: str,
    args: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    detached: bool = False,
) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=detached,
        )
    return Process(name, popen, log_path)


def start_operator(
    plane: ControlPlane,
    log_path: Path,
    *,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    detached: bool = False,
    timeout: float = 60,
    kubeconfig: Path | None = None,
) -> tuple[Process, str]:
    """Start ``taskmill operator`` against the plane (through ``kubeconfig``
    when given, else the plane's admin one); returns it and its lease URL."""
    port = port or free_ports(1)[0]
    process = spawn(
        "operator",
        taskmill_command(
            "operator",
            "--kubeconfig",
            str(kubeconfig or plane.kubeconfig),
            "--lease-host",
            "127.0.0.1",
            "--lease-port",
            str(port),
            *extra_args,
        ),
        log_path,
        detached=detached,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/readyz", process, timeout)
    except BaseException:
        process.stop(5)
        raise
    return process, url


def start_worker(
    lease_url: str,
    handlers: str,
    log_path: Path,
    *,
    cwd: str | os.PathLike[str] | None = None,
    concurrency: int = 4,
    extra_args: Sequence[str] = (),
    detached: bool = False,
    name: str = "worker",
    env: dict[str, str] | None = None,
) -> Process:
    """Start ``taskmill worker``; ``name`` labels its process, ``env`` is added
    to this process's environment."""
    return spawn(
        name,
        taskmill_command(
            "worker",
            "--handlers",
            handlers,
            "--lease-url",
            lease_url,
            "--concurrency",
            str(concurrency),
            *extra_args,
        ),
        log_path,
        env=env,
        cwd=cwd,
        detached=detached,
    )


def wait_until_ready(url: str, process: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(
        f"{process.name} not ready at {url} after {timeout:g}s:\n{process.log_tail()}"
    )
