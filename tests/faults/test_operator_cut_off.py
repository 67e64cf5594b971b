"""The operator cut off from its API server, the server itself still up.

A proxy between the operator and the API server refuses connections and
drops open ones, as an API server restart does, while the test keeps
reading the real server. While cut off nothing can be written, so nothing
must be attempted in a loop: leasing waits behind the write gate, outcomes
wait in the worker, and the outage is logged when it starts and when it
ends. Afterwards every Task succeeds, each exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.proxy import Proxy
from taskmill.testing.stack import Process, start_operator, start_worker
from tests.e2e.helpers import apply, task

ROOT = Path(__file__).resolve().parents[2]
TASKS = 20
#: How long the operator stays cut off: more than the ~16 s after which a
#: worker used to drop an outcome it could not deliver.
OUTAGE_SECONDS = 20


def phases(plane: ControlPlane, namespace: str) -> dict[str, str]:
    out = plane.kubectl("get", "-n", namespace, "tasks.taskmill.dev", "-o", "json").stdout
    items = json.loads(out)["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}


def wait_for(condition: object, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def lines(process: Process, text: str) -> int:
    return process.log_path.read_text(errors="replace").count(text)


@pytest.fixture
def proxy(lone_plane: ControlPlane) -> Iterator[Proxy]:
    address = urlsplit(lone_plane.server)
    assert address.hostname is not None
    assert address.port is not None
    with Proxy(address.hostname, address.port) as cut:
        yield cut


def test_an_operator_cut_off_from_its_api_server_waits_and_then_loses_nothing(
    lone_plane: ControlPlane, lone_namespace: str, proxy: Proxy, tmp_path: Path
) -> None:
    kubeconfig = lone_plane.write_kubeconfig(
        tmp_path / "through-proxy.kubeconfig", server=f"https://{proxy.address}"
    )
    operator, url = start_operator(
        lone_plane,
        tmp_path / "operator.log",
        kubeconfig=kubeconfig,
        extra_args=["--namespace", lone_namespace],
    )
    worker = None
    try:
        # Tasks running when the operator is cut off finish during the
        # outage: their outcomes meet an operator that cannot write, and the
        # worker's free slots ask for the Tasks still queued.
        for i in range(TASKS):
            apply(lone_plane, lone_namespace, task(f"t{i:02}", "sleep", payload={"seconds": 2}))
        worker = start_worker(url, "examples.handlers", tmp_path / "worker.log", cwd=ROOT)
        wait_for(lambda: "Running" in phases(lone_plane, lone_namespace).values(), "a start")
        proxy.cut()
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.5)  # holding the fault, not waiting for a result
            assert operator.alive()
            assert worker.alive()
        log_bytes = operator.log_path.stat().st_size
        started = lines(operator, "does not take status writes")
        proxy.restore()

        wait_for(
            lambda: set(phases(lone_plane, lone_namespace).values()) == {"Succeeded"},
            "every Task to succeed",
            limit=120,
        )
        listed = json.loads(
            lone_plane.kubectl(
                "get", "-n", lone_namespace, "tasks.taskmill.dev", "-o", "json"
            ).stdout
        )["items"]
        # Each ran once: no attempt was lost to the outage or counted twice.
        assert sorted(i["status"]["attempts"] for i in listed) == [1] * TASKS
        # The outage was reported once when it started (not per write) and
        # once when it ended; the log did not balloon meanwhile.
        assert started == 1
        assert lines(operator, "takes status writes again") == 1
        assert log_bytes < 200_000, f"{log_bytes} bytes of log during the outage"
        assert lines(operator, "lease of ") == 0
    finally:
        if worker is not None:
            worker.stop()
        operator.stop()
