"""Child processes that may outlive the object, or the Python process, that started them.

The control plane's etcd, kube-apiserver and kube-controller-manager are
each a :class:`Process`: spawned in a session of its own with its output in a
log file, and either tied to this Python process (:func:`die_with_parent`)
or detached from it. A detached one is found again from another process by
the record :meth:`Process.to_state` writes; since a pid can be reused once
its process is gone, a process is identified by its pid *and* the kernel's
start time of that pid (:func:`process_start_time`), and a recycled pid is
never signalled.

Nothing here knows what the processes are: the control plane decides their
command lines, environment and readiness.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Process",
    "die_with_parent",
    "free_ports",
    "poll",
    "process_start_time",
]

_LOG_TAIL_LINES = 30


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


def poll(condition: Callable[[], bool], timeout: float) -> bool:
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


def process_start_time(pid: int) -> int | None:
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


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get SIGKILL when this process dies (Linux).

    SIGKILL rather than SIGTERM: all of a control plane's processes get it
    at once, and an API server shutting down gracefully while its etcd
    disappears hangs.
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


class Process:
    """A process started here (with its ``popen``) or found in a state record (without)."""

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
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        cwd: Path,
        env: Mapping[str, str],
        detached: bool,
    ) -> Process:
        """Start ``argv`` with stdout and stderr appended to ``log``.

        The child runs in a session of its own, so a Ctrl-C at the terminal
        reaches only Python, which can then stop its children in order.
        Unless ``detached``, it dies with this process (:func:`die_with_parent`).
        """
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                preexec_fn=None if detached else die_with_parent(),
            )
        return cls(name, popen.pid, process_start_time(popen.pid), log, popen)

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
        now = process_start_time(self.pid)
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
        return poll(lambda: not self.alive(), timeout)

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.signal(signal.SIGKILL)
            self.wait(5.0)

    def tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the log, for an error message."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready record from which :meth:`from_state` finds the process again."""
        return {
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "log": str(self.log),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> Process:
        return cls(str(data["name"]), int(data["pid"]), data.get("start_time"), Path(data["log"]))
