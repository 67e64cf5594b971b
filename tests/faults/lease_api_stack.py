"""An operator whose lease API authenticates workers, on the real control plane,
and the ServiceAccount tokens to call it with.

It runs alone on ``lone_plane`` in one namespace, with short connection
limits so tests see them act in seconds. Two ServiceAccounts: ``worker``
(the configured worker identity) and ``intruder`` (a valid token of an
identity that is not a worker).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskmill.testing.controlplane import ControlPlane, free_ports
from taskmill.testing.stack import Process, spawn, start_worker, taskmill_command, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "taskmill"
WORKER_SA = "worker"
INTRUDER_SA = "intruder"
#: The limits the operator runs with here (its defaults are 10, 30, 30, 256).
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
PER_ADDRESS = 64
REVIEWS_PER_SECOND = 5.0


@dataclass
class SecuredOperator:
    plane: ControlPlane
    namespace: str
    workdir: Path
    port: int = 0
    process: Process | None = None
    processes: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def worker_identity(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{WORKER_SA}"

    def start(self) -> None:
        self.port = self.port or free_ports(1)[0]
        self.process = spawn(
            "operator",
            taskmill_command(
                "operator",
                "--kubeconfig",
                str(self.plane.kubeconfig),
                "--namespace",
                self.namespace,
                "--lease-host",
                "127.0.0.1",
                "--lease-port",
                str(self.port),
                "--no-worker-after-seconds",
                "2",
                "--auth-audience",
                AUDIENCE,
                "--worker-identity",
                self.worker_identity,
                "--token-reviews-per-second",
                str(REVIEWS_PER_SECOND),
                "--lease-header-timeout-seconds",
                str(HEADER_TIMEOUT),
                "--lease-body-timeout-seconds",
                str(BODY_TIMEOUT),
                "--lease-idle-timeout-seconds",
                str(IDLE_TIMEOUT),
                "--lease-max-connections-per-address",
                str(PER_ADDRESS),
            ),
            self.workdir / f"operator-{len(self.processes)}.log",
        )
        self.processes.append(self.process)
        wait_until_ready(f"{self.url}/readyz", self.process, 60)

    def restart(self) -> None:
        assert self.process is not None
        assert self.process.stop(10) == 0, self.process.log_tail()
        self.start()

    def start_worker(self, name: str, token: str) -> Process:
        token_file = self.workdir / f"{name}.token"
        token_file.write_text(token)
        process = start_worker(
            self.url,
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

    def token(self, service_account: str = WORKER_SA, **kwargs: Any) -> str:
        return self.plane.create_token(
            service_account, self.namespace, audience=kwargs.pop("audience", AUDIENCE), **kwargs
        )

    def pod_token(self, pod: str, service_account: str = WORKER_SA) -> str:
        """A token bound to a Pod of that ServiceAccount (created here; without a
        kubelet it stays Pending, which is all a bound token needs)."""
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod},
            "spec": {
                "serviceAccountName": service_account,
                "automountServiceAccountToken": False,
                "containers": [{"name": "worker", "image": "taskmill:test"}],
            },
        }
        created = self.plane.request("POST", f"/api/v1/namespaces/{self.namespace}/pods", body)
        assert created.status == 201, created.text
        uid = created.json()["metadata"]["uid"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [AUDIENCE],
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid},
            },
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{service_account}/token"
        response = self.plane.request("POST", path, request)
        assert response.status == 201, response.text
        return str(response.json()["status"]["token"])

    def post(
        self,
        route: str,
        body: Any,
        *,
        token: str | None = None,
        worker: str | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if worker is not None:
            headers["Taskmill-Worker"] = worker
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + route, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _decoded(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _decoded(error.read())

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(40)}" for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop(10)


def _decoded(raw: bytes) -> dict[str, Any]:
    """A JSON reply, or the text of one that is not (aiohttp's own 400s)."""
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"text": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


def secured_operator(plane: ControlPlane, namespace: str, workdir: Path) -> SecuredOperator:
    for account in (WORKER_SA, INTRUDER_SA):
        plane.kubectl("create", "serviceaccount", account, "-n", namespace)
    stack = SecuredOperator(plane, namespace, workdir)
    stack.start()
    return stack


_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def token_reviews(plane: ControlPlane) -> float:
    """TokenReviews the API server has served, from its ``apiserver_request_total``."""
    total = 0.0
    for line in plane.request("GET", "/metrics", timeout=30).text.splitlines():
        match = _SAMPLE.match(line)
        if match and 'resource="tokenreviews"' in match["labels"]:
            total += float(match["value"])
    return total


def forged(token: str, **claims: Any) -> str:
    """``token`` with some claims changed: the same shape, a signature that no
    longer matches, so only the API server can tell."""
    header, body, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"
