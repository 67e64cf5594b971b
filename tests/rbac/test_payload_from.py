"""``payloadFrom`` is admitted only with the requester's own right to read.

The ValidatingAdmissionPolicy of :mod:`taskmill.crdgen.admission` runs in
the real API server (RBAC enforced); requests are made with real
ServiceAccount tokens from the TokenRequest API. ``writer`` may create and
edit Tasks and CronTasks but read no Secret or ConfigMap; ``reader`` may
also ``get`` the Secret ``s1`` and the ConfigMap ``c1`` (by name only).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing.controlplane import ControlPlane, Response
from taskmill.testing.pytest_plugin import fresh_namespace

API = "/apis/taskmill.dev/v1alpha1"


@dataclass
class Users:
    plane: ControlPlane
    namespace: str
    writer: str
    reader: str

    def identity(self, name: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{name}"

    def create(self, token: str, plural: str, body: dict[str, Any]) -> Response:
        return self.plane.request(
            "POST", f"{API}/namespaces/{self.namespace}/{plural}", body, token=token
        )

    def patch(self, token: str, plural: str, name: str, patch: dict[str, Any]) -> Response:
        return self.plane.request(
            "PATCH",
            f"{API}/namespaces/{self.namespace}/{plural}/{name}",
            patch,
            token=token,
            content_type="application/merge-patch+json",
        )


def task(name: str, payload_from: dict[str, Any] | None, type_: str = "echo") -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_}
    if payload_from is not None:
        spec["payloadFrom"] = payload_from
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name},
        "spec": spec,
    }


def crontask(name: str, payload_from: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "CronTask",
        "metadata": {"name": name},
        "spec": {
            "schedule": "@daily",
            "taskTemplate": {"spec": {"type": "echo", "payloadFrom": payload_from}},
        },
    }


def secret(name: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": "payload"}}


def config_map(name: str) -> dict[str, Any]:
    return {"configMapKeyRef": {"name": name, "key": "payload"}}


def refusal(response: Response) -> str:
    assert response.status == 403, (response.status, response.text)
    message: str = response.json()["message"]
    return message


def _ok(response: Response) -> None:
    assert response.status in (200, 201), (response.status, response.text)


@pytest.fixture(scope="module")
def policy(lone_plane: ControlPlane) -> ControlPlane:
    from taskmill.testing.stack import install_admission

    install_admission(lone_plane)
    return lone_plane


@pytest.fixture
def users(policy: ControlPlane, request: pytest.FixtureRequest) -> Iterator[Users]:
    plane = policy
    for namespace in fresh_namespace(plane, request.node.name):
        ns = f"/api/v1/namespaces/{namespace}"
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
        for name in ("writer", "reader"):
            _ok(plane.request("POST", f"{ns}/serviceaccounts", {"metadata": {"name": name}}))
        roles = {
            "tasks": [
                {
                    "apiGroups": ["taskmill.dev"],
                    "resources": ["tasks", "crontasks"],
                    "verbs": ["get", "list", "create", "update", "patch"],
                }
            ],
            "payloads": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["s1"],
                    "verbs": ["get"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["c1"],
                    "verbs": ["get"],
                },
            ],
        }
        grants = {"tasks": ["writer", "reader"], "payloads": ["reader"]}
        for role, rules in roles.items():
            _ok(
                plane.request("POST", f"{rbac}/roles", {"metadata": {"name": role}, "rules": rules})
            )
            binding = {
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [
                    {"kind": "ServiceAccount", "name": sa, "namespace": namespace}
                    for sa in grants[role]
                ],
            }
            _ok(plane.request("POST", f"{rbac}/rolebindings", binding))
        users = Users(
            plane,
            namespace,
            writer=plane.create_token("writer", namespace),
            reader=plane.create_token("reader", namespace),
        )
        _wait_enforced(users)
        yield users


def _wait_enforced(users: Users, timeout: float = 30) -> None:
    """The API server picks a new policy up within a second or so: wait (dry
    run, nothing stored) until the writer's payloadFrom Task is refused."""
    path = f"{API}/namespaces/{users.namespace}/tasks?dryRun=All"
    deadline = time.monotonic() + timeout
    while True:
        response = users.plane.request(
            "POST", path, task("probe", secret("s1")), token=users.writer
        )
        if response.status == 403:
            return
        assert response.status == 201, response.text
        assert time.monotonic() < deadline, "the payloadFrom policy was never enforced"
        time.sleep(0.1)


def test_a_task_naming_a_secret_needs_the_right_to_get_it(users: Users) -> None:
    message = refusal(users.create(users.writer, "tasks", task("leak", secret("s1"))))
    assert 'spec.payloadFrom.secretKeyRef names the Secret "s1"' in message
    assert f"{users.identity('writer')} may not get in namespace {users.namespace}" in message
    _ok(users.create(users.reader, "tasks", task("allowed", secret("s1"))))
    # Nothing was stored for the refused one.
    path = f"{API}/namespaces/{users.namespace}/tasks/leak"
    assert users.plane.request("GET", path).status == 404


def test_the_refusal_does_not_tell_whether_the_secret_exists(users: Users) -> None:
    ns = users.namespace
    body = {"metadata": {"name": "s1"}, "stringData": {"payload": "{}"}}
    _ok(users.plane.request("POST", f"/api/v1/namespaces/{ns}/secrets", body))
    existing = refusal(users.create(users.writer, "tasks", task("t", secret("s1"))))
    missing = refusal(users.create(users.writer, "tasks", task("t", secret("s9"))))
    assert existing.replace('"s1"', "X") == missing.replace('"s9"', "X")


def test_a_task_naming_a_config_map_needs_the_right_to_get_it(users: Users) -> None:
    message = refusal(users.create(users.writer, "tasks", task("leak", config_map("c1"))))
    assert 'spec.payloadFrom.configMapKeyRef names the ConfigMap "c1"' in message
    _ok(users.create(users.reader, "tasks", task("allowed", config_map("c1"))))
    # A right to one name is no right to another.
    message = refusal(users.create(users.reader, "tasks", task("other", config_map("c2"))))
    assert 'names the ConfigMap "c2"' in message


def test_a_crontask_template_naming_a_secret_needs_the_right_to_get_it(users: Users) -> None:
    message = refusal(users.create(users.writer, "crontasks", crontask("nightly", secret("s1"))))
    assert 'spec.taskTemplate.spec.payloadFrom.secretKeyRef names the Secret "s1"' in message
    _ok(users.create(users.reader, "crontasks", crontask("nightly", secret("s1"))))
    # Pointing the template elsewhere is checked like a create.
    changed = {"spec": {"taskTemplate": {"spec": {"payloadFrom": secret("s2")}}}}
    message = refusal(users.patch(users.reader, "crontasks", "nightly", changed))
    assert 'names the Secret "s2"' in message


def test_updates_are_checked_when_the_reference_or_the_handler_changes(users: Users) -> None:
    _ok(users.create(users.reader, "tasks", task("t", secret("s1"), type_="resize")))
    # Another user may not redirect the reference, nor route the data to another handler...
    swap = {"spec": {"payloadFrom": {"secretKeyRef": {"name": "s1", "key": "other"}}}}
    _ok(users.patch(users.reader, "tasks", "t", swap))  # same Secret, same right
    message = refusal(users.patch(users.writer, "tasks", "t", {"spec": {"type": "echo"}}))
    assert 'names the Secret "s1"' in message
    moved = {"spec": {"payloadFrom": secret("s2")}}
    assert 'names the Secret "s2"' in refusal(users.patch(users.writer, "tasks", "t", moved))
    from_config = {"spec": {"payloadFrom": {"secretKeyRef": None, **config_map("c1")}}}
    refusal(users.patch(users.writer, "tasks", "t", from_config))
    # ...but may cancel it, or label it: nothing about the data changes.
    _ok(users.patch(users.writer, "tasks", "t", {"spec": {"cancel": True}}))
    _ok(users.patch(users.writer, "tasks", "t", {"metadata": {"labels": {"seen": "yes"}}}))


def test_tasks_without_payload_from_are_not_affected(users: Users) -> None:
    _ok(users.create(users.writer, "tasks", task("plain", None)))
    inline = task("inline", None)
    inline["spec"]["payload"] = {"n": 1}
    _ok(users.create(users.writer, "tasks", inline))


def test_kubectl_apply_shows_the_refusal(users: Users, tmp_path: Path) -> None:
    kubeconfig = users.plane.write_kubeconfig(
        tmp_path / "writer.kubeconfig", token=users.writer, namespace=users.namespace
    )
    result = subprocess.run(
        [
            str(users.plane.kubectl_path),
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={tmp_path / 'cache'}",
            "apply",
            "-f",
            "-",
        ],
        input=json.dumps(task("leak", secret("s1"))),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert 'spec.payloadFrom.secretKeyRef names the Secret "s1"' in result.stderr, result.stderr
