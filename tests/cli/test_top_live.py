"""`top` running live in a (pretend) terminal: the screen follows the watch."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading

import pytest

import taskmill
from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.stack import taskmill_command

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Screen:
    """Collects a process's output; waits for text to appear in it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.text = ""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        while chunk := process.stdout.read1(65536):
            with self._changed:
                self.text += ANSI.sub("", chunk.decode(errors="replace"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, limit_seconds: float = 60) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: re.search(pattern, self.text), limit_seconds)
        assert found, f"{pattern!r} never appeared:\n{self.text[-3000:]}"


def test_top_follows_tasks_live(crds: ControlPlane, worker: str, namespace: str) -> None:
    env = {
        **os.environ,
        "TTY_COMPATIBLE": "1",
        "TTY_INTERACTIVE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "160",
        "LINES": "60",
    }
    process = subprocess.Popen(
        taskmill_command("top", "-n", namespace, "--kubeconfig", str(crds.kubeconfig)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        screen = Screen(process)
        screen.wait_for(r"depth\s+0\s+running\s+0\s+succeeded\s+0\s+dead\s+0")
        with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
            for i in range(2):
                client.submit("echo", {}, name=f"live-{i}")
            client.submit("fail", {}, name="live-bad", max_attempts=1)
            client.submit("sync_sleep", {"seconds": 60}, name="live-slow")

        screen.wait_for(r"depth\s+0\s+running\s+1\s+succeeded\s+2\s+dead\s+1")
        screen.wait_for(r"live-slow\s+│\s+sync_sleep")
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
            client.cancel("live-slow")
    assert code == 0, process.stderr.read().decode() if process.stderr else ""
