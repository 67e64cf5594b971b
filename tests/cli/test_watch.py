"""`get -w` as a user runs it: a process that prints a row per change until
Ctrl-C (or SIGTERM), exiting 0 without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

import taskmill
from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.stack import taskmill_command
from tests.cli.test_top_live import Screen

pytestmark = pytest.mark.integration


def start(plane: ControlPlane, namespace: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        taskmill_command(
            "get", "-w", *args, "-n", namespace, "--kubeconfig", str(plane.kubeconfig)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes], signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    code = process.wait(30)
    assert process.stderr is not None
    return code, process.stderr.read().decode()


def test_watch_prints_each_change_and_ends_on_ctrl_c(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
        client.submit("echo", {}, name="before")
        client.wait("before", timeout=60)
        process = start(crds, namespace)
        try:
            screen = Screen(process)
            screen.wait_for(r"NAME\s+TYPE\s+PHASE\s+ATTEMPTS\s+REASON\s+AGE\n")
            screen.wait_for(r"before\s+echo\s+Succeeded\s+1")
            client.submit("echo", {"n": 1}, name="during")
            screen.wait_for(r"\nduring\s+echo\s+Pending\s+0")
            screen.wait_for(r"\nduring\s+echo\s+Succeeded\s+1")
            client.submit("nobody-handles-this", {}, name="stuck")
            screen.wait_for(r"\nstuck\s+nobody-handles-this\s+Pending")
            client.cancel("stuck")
            screen.wait_for(r"\nstuck\s+nobody-handles-this\s+Cancelled")
        finally:
            code, stderr = stop(process, signal.SIGINT)

    assert code == 0, stderr
    assert stderr == ""
    assert screen.text.count("NAME") == 1  # one header, then rows only
    assert "before" not in screen.text.split("\n", 2)[2]  # an unchanged Task is not repeated


def test_watch_keeps_to_the_selector_and_format_and_ends_on_sigterm(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    process = start(
        crds,
        namespace,
        "-l",
        "team=x",
        "-o",
        'jsonpath={.metadata.name}{" "}{.status.phase}{"\\n"}',
    )
    try:
        screen = Screen(process)
        with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
            client.submit("nobody-handles-this", {}, name="first", labels={"team": "x"})
            screen.wait_for(r"(?m)^first Pending$")  # the list is done: the watch follows it
            client.submit("echo", {}, name="other", labels={"team": "y"})
            client.submit("echo", {}, name="mine", labels={"team": "x"})
            client.wait("other", timeout=60)
            client.wait("mine", timeout=60)
            client.cancel("first")
        screen.wait_for(r"(?m)^mine Succeeded$")
        screen.wait_for(r"(?m)^first Cancelled$")
    finally:
        code, stderr = stop(process, signal.SIGTERM)

    assert code == 0, stderr
    assert "other" not in screen.text
    lines = screen.text.splitlines()
    assert lines[0] == "first Pending"
    # Created after the list, so seen by the watch from its first state on.
    assert next(line for line in lines if line.startswith("mine")) == "mine Pending"


def test_watching_a_missing_task_is_an_error(crds: ControlPlane, namespace: str) -> None:
    process = start(crds, namespace, "no-such-task")
    code = process.wait(60)
    assert process.stderr is not None

    assert code == 1
    assert process.stderr.read().decode() == 'error: tasks.taskmill.dev "no-such-task" not found\n'


@pytest.mark.parametrize("watch", [False, True])
def test_a_reader_that_went_away_ends_the_command_quietly(
    crds: ControlPlane, namespace: str, watch: bool
) -> None:
    """`taskmill get -w | head -1`: no traceback, no misleading error."""
    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
        client.submit("nobody-handles-this", {}, name="piped")
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    args = ["-w"] if watch else []
    try:
        result = subprocess.run(
            taskmill_command("get", *args, "-n", namespace, "--kubeconfig", str(crds.kubeconfig)),
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)

    assert result.returncode == 1
    assert result.stderr == b""
