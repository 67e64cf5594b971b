"""The chart's RBAC, proven against an API server that enforces it.

Each test installs the chart (``crds.enabled=false``, namespaced scope:
ServiceAccounts, Roles and bindings; its Deployments never run, there is no
kubelet) and then runs ``taskmill operator`` and ``taskmill worker`` as local
processes holding only those ServiceAccounts' tokens — exactly what the pods
would hold. Everything the product needs works; a step outside the roles is
forbidden; the lease API lets only the chart's worker identity in; and two
operator replicas hand over leadership when the leader is killed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskmill.testing.controlplane import ControlPlane, free_ports
from taskmill.testing.stack import Process, spawn, start_worker, taskmill_command, wait_until_ready
from tests.e2e.helpers import apply, task, wait_phase
from tests.helm.chart import CHART, helm

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "tmr"
PREFIX = f"{RELEASE}-taskmill"
AUDIENCE = "taskmill"


@dataclass
class Stack:
    plane: ControlPlane
    namespace: str
    workdir: Path
    operator_token: str
    worker_token: str
    processes: list[Process]

    @property
    def worker_identity(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{PREFIX}-worker"

    def start_operator(self, name: str) -> tuple[Process, str]:
        kubeconfig = self.plane.write_kubeconfig(
            self.workdir / "operator.kubeconfig", token=self.operator_token
        )
        port = free_ports(1)[0]
        process = spawn(
            name,
            taskmill_command(
                "operator",
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                self.namespace,
                "--lease-host",
                "127.0.0.1",
                "--lease-port",
                str(port),
                "--no-worker-after-seconds",
                "5",
                "--leader-elect",
                "--leader-election-name",
                f"{PREFIX}-leader",
                "--leader-election-namespace",
                self.namespace,
                "--leader-election-identity",
                name,
                "--leader-election-lease-seconds",
                "3",
                "--leader-election-renew-deadline-seconds",
                "2",
                "--leader-election-retry-seconds",
                "0.3",
                "--auth-audience",
                AUDIENCE,
                "--worker-identity",
                self.worker_identity,
            ),
            self.workdir / f"{name}.log",
        )
        self.processes.append(process)
        return process, f"http://127.0.0.1:{port}"

    def start_worker(self, name: str, lease_url: str) -> Process:
        token_file = self.workdir / "worker-token"
        token_file.write_text(self.worker_token)
        process = start_worker(
            lease_url,
            "examples.handlers",
            self.workdir / f"{name}.log",
            cwd=ROOT,
            extra_args=["--token-file", str(token_file), "--name", name],
            name=name,
            # Nothing but the token: no kubeconfig reaches the worker.
            env={"KUBECONFIG": "/nonexistent"},
        )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(30)}" for p in self.processes)


@pytest.fixture
def stack(lone_plane: ControlPlane, lone_namespace: str, tmp_path: Path) -> Iterator[Stack]:
    # Alone on a plane: the session operator (which watches every namespace)
    # could otherwise do writes the role under test should allow or refuse.
    crds, namespace = lone_plane, lone_namespace
    helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "crds.enabled=false",
        "--set",
        "rbac.scope=namespaced",
        "--set",
        "worker.handlers={examples.handlers}",
        plane=crds,
    )
    stack = Stack(
        crds,
        namespace,
        tmp_path,
        operator_token=crds.create_token(f"{PREFIX}-operator", namespace),
        worker_token=crds.create_token(f"{PREFIX}-worker", namespace, audience=AUDIENCE),
        processes=[],
    )
    yield stack
    for process in stack.processes:
        process.stop(10)
    helm("uninstall", RELEASE, "-n", namespace, plane=crds, check=False)


def post(url: str, body: object, token: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"{}")


def test_operator_and_worker_run_with_chart_identities_only(stack: Stack) -> None:
    plane, ns = stack.plane, stack.namespace
    operator, url = stack.start_operator("operator-0")
    wait_until_ready(f"{url}/readyz", operator, 60)
    stack.start_worker("worker-0", url)
    apply(plane, ns, task("rbac-echo", "echo", payload={"hello": "rbac"}))
    try:
        done = wait_phase(plane, ns, "rbac-echo", "Succeeded", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc
    assert done["status"]["result"]
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'taskmill_task_transitions_total{phase="Succeeded"} 1.0' in metrics
    assert "taskmill_leader 1.0" in metrics

    # Outside the roles: forbidden.
    secrets = plane.request("GET", f"/api/v1/namespaces/{ns}/secrets", token=stack.worker_token)
    assert secrets.status in (401, 403)  # its audience is the lease API's, not the API server's
    api_worker = plane.create_token(f"{PREFIX}-worker", ns)
    assert plane.request("GET", f"/api/v1/namespaces/{ns}/secrets", token=api_worker).status == 403
    tasks_url = f"/apis/taskmill.dev/v1alpha1/namespaces/{ns}/tasks"
    assert plane.request("GET", tasks_url, token=api_worker).status == 403
    patch = plane.request(
        "PATCH",
        f"{tasks_url}/rbac-echo",
        {"spec": {"priority": 5}},
        token=stack.operator_token,
        content_type="application/merge-patch+json",
    )
    assert patch.status == 403, patch.text
    elsewhere = plane.request(
        "GET", "/apis/taskmill.dev/v1alpha1/namespaces/default/tasks", token=stack.operator_token
    )
    assert elsewhere.status == 403
    assert operator.alive(), stack.logs()


def test_lease_api_admits_only_the_worker_identity(stack: Stack) -> None:
    plane, ns = stack.plane, stack.namespace
    operator, url = stack.start_operator("operator-0")
    wait_until_ready(f"{url}/readyz", operator, 60)
    body = {"worker": "probe", "types": ["echo"], "max": 1, "waitSeconds": 0}
    assert post(f"{url}/v1/lease", body)[0] == 401
    assert post(f"{url}/v1/lease", body, token="not-a-token")[0] == 401
    # A real token of the right identity, but for the API server's audience.
    wrong_audience = plane.create_token(f"{PREFIX}-worker", ns)
    assert post(f"{url}/v1/lease", body, token=wrong_audience)[0] == 401
    # A valid lease-API token of another identity.
    intruder = plane.create_token(f"{PREFIX}-operator", ns, audience=AUDIENCE)
    status, reply = post(f"{url}/v1/lease", body, token=intruder)
    assert status == 403, reply
    status, reply = post(f"{url}/v1/lease", body, token=stack.worker_token)
    assert status == 200, reply
    assert post(f"{url}/v1/lease", {"worker": ""}, token=stack.worker_token)[0] == 400
    heartbeat = {"worker": "probe", "leases": [{"id": "nope", "uid": "nope"}]}
    status, _ = post(f"{url}/v1/heartbeat", heartbeat, token=stack.worker_token)
    assert status in (200, 400, 409)


def wait_ready(url: str, timeout: float) -> float:
    """Seconds until ``url`` answers 200 (polling with a deadline)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def test_standby_takes_over_when_the_leader_is_killed(stack: Stack) -> None:
    plane, ns = stack.plane, stack.namespace
    first, first_url = stack.start_operator("operator-a")
    wait_until_ready(f"{first_url}/readyz", first, 60)
    second, second_url = stack.start_operator("operator-b")
    wait_until_ready(f"{second_url}/healthz", second, 60)
    # The standby is alive but not Ready, and refuses lease calls.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{second_url}/readyz", timeout=2)
    assert refused.value.code == 503
    body = {"worker": "probe", "types": ["echo"], "max": 1, "waitSeconds": 0}
    status, reply = post(f"{second_url}/v1/lease", body, token=stack.worker_token)
    assert (status, reply.get("error")) == (503, "NotLeader")
    lease = json.loads(
        plane.kubectl("get", "-n", ns, "lease", f"{PREFIX}-leader", "-o", "json").stdout
    )
    assert lease["spec"]["holderIdentity"] == "operator-a"

    stack.start_worker("worker-a", first_url)
    stack.start_worker("worker-b", second_url)
    apply(plane, ns, task("before", "echo"))
    wait_phase(plane, ns, "before", "Succeeded", timeout=60)

    first.kill()  # kill -9: no release, the Lease must lapse
    took = wait_ready(f"{second_url}/readyz", timeout=20)
    assert took < 10, f"failover took {took:.1f}s"
    lease = json.loads(
        plane.kubectl("get", "-n", ns, "lease", f"{PREFIX}-leader", "-o", "json").stdout
    )
    assert lease["spec"]["holderIdentity"] == "operator-b"
    assert lease["spec"]["leaseTransitions"] >= 1
    apply(plane, ns, task("after", "echo"))
    try:
        wait_phase(plane, ns, "after", "Succeeded", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc


def test_a_leader_that_loses_the_lease_stops_and_exits_non_zero(stack: Stack) -> None:
    plane, ns = stack.plane, stack.namespace
    operator, url = stack.start_operator("operator-0")
    wait_until_ready(f"{url}/readyz", operator, 60)
    # Another holder takes the Lease (as a partitioned leader would find).
    plane.kubectl(
        "patch",
        "-n",
        ns,
        "lease",
        f"{PREFIX}-leader",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"holderIdentity": "usurper", "leaseDurationSeconds": 60}}),
    )
    deadline = time.monotonic() + 15
    while operator.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not operator.alive(), stack.logs()
    assert operator.popen.returncode not in (0, None)
    assert "lost the leader Lease" in operator.log_tail(), stack.logs()


def test_crontasks_fire_under_the_operator_role(stack: Stack) -> None:
    plane, ns = stack.plane, stack.namespace
    operator, url = stack.start_operator("operator-0")
    wait_until_ready(f"{url}/readyz", operator, 60)
    stack.start_worker("worker-0", url)
    apply(
        plane,
        ns,
        {
            "apiVersion": "taskmill.dev/v1alpha1",
            "kind": "CronTask",
            "metadata": {"name": "tick"},
            "spec": {"schedule": "@every 2s", "taskTemplate": {"spec": {"type": "echo"}}},
        },
    )
    deadline = time.monotonic() + 60
    succeeded: list[str] = []
    while not succeeded and time.monotonic() < deadline:
        children = json.loads(
            plane.kubectl(
                "get",
                "-n",
                ns,
                "tasks.taskmill.dev",
                "-l",
                "taskmill.dev/crontask=tick",
                "-o",
                "json",
            ).stdout
        )["items"]
        succeeded = [
            c["metadata"]["name"]
            for c in children
            if (c.get("status") or {}).get("phase") == "Succeeded"
        ]
        time.sleep(0.2)
    assert succeeded, stack.logs()
    crontask = json.loads(
        plane.kubectl("get", "-n", ns, "crontasks.taskmill.dev", "tick", "-o", "json").stdout
    )
    assert crontask["status"]["lastScheduleTime"], crontask
    # A refused write is logged with the API server's reason ("403 Forbidden: ... is
    # forbidden: User ... cannot ..."); port numbers and pids may contain "403".
    assert "forbidden" not in operator.log_tail(200).lower(), stack.logs()
    assert "created tick-" in operator.log_tail(200), stack.logs()  # by this operator's role
