"""Helpers of the control plane (processes, kubectl errors) and of the pytest plugin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taskmill.testing import apiclient, processes
from taskmill.testing.pytest_plugin import namespace_name


def test_free_ports_are_distinct() -> None:
    ports = processes.free_ports(5)
    assert len(set(ports)) == 5
    assert all(0 < p < 65536 for p in ports)


@pytest.mark.parametrize(
    "test_name",
    [
        "test_something",
        "test_param[ns-A_B/c d]",
        "test_" + "x" * 200,
        "test_",
        "__weird__",
    ],
)
def test_namespace_names_are_valid_labels(test_name: str) -> None:
    name = namespace_name(test_name)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    assert len(name) <= 63
    assert name != namespace_name(test_name)  # a random suffix each time


def test_namespace_name_keeps_the_test_name_readable() -> None:
    assert namespace_name("test_retry_backoff[fast]", "abc123") == "retry-backoff-fast-abc123"


def test_process_identity_survives_only_as_long_as_the_process() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    start = processes.process_start_time(child.pid)
    assert start is not None
    seen_from_state = processes.Process("child", child.pid, start, log=Path(os.devnull))
    assert seen_from_state.alive()
    # The same pid with another start time is another process: never ours.
    assert not processes.Process("child", child.pid, start + 1, log=Path(os.devnull)).alive()
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=10)
    assert not seen_from_state.alive()


def test_kubectl_error_shows_stderr() -> None:
    error = apiclient.KubectlError(
        1,
        ["kubectl", "get", "nope"],
        "",
        'error: the server doesn\'t have a resource type "nope"\n',
    )
    assert 'resource type "nope"' in str(error)


def test_plugin_loads_without_cryptography() -> None:
    """The plugin is imported by every pytest session: it must not need the testing extra."""
    code = (
        "import sys\n"
        "sys.modules['cryptography'] = None  # as if not installed\n"
        "import taskmill.testing.pytest_plugin\n"
        "import taskmill.testing\n"
        "assert 'taskmill.testing.controlplane' not in sys.modules\n"
        "try:\n"
        "    taskmill.testing.ControlPlane\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('ControlPlane imported without cryptography')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
