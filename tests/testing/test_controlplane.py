"""The local control plane, for real: versions, RBAC, controllers, lifetime and failures.

One control plane (the session's ``control_plane`` fixture) serves most
tests; the lifetime tests start small ones of their own (no controller
manager, so a few seconds each).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing import controlplane
from taskmill.testing.assets import KUBERNETES_VERSION, ensure_assets
from taskmill.testing.controlplane import ControlPlane, ControlPlaneError

pytestmark = pytest.mark.integration


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    interval = 0.05
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, 0.5)


def create(cp: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = cp.request("POST", path, body)
    assert response.status == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def configmap(name: str, **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **metadata}}


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (e.g. a workdir): leaks show up here."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and text.encode() in cmdline:
            found.append(int(entry.name))
    return found


# --- the shared control plane ---------------------------------------------------------


def test_server_reports_the_pinned_version(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl("version", "-o", "json")
    assert json.loads(result.stdout)["serverVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_admin_kubeconfig_works_for_any_client(control_plane: ControlPlane) -> None:
    result = subprocess.run(
        [str(control_plane.kubectl_path), "auth", "whoami", "-o", "json"],
        env={**os.environ, **control_plane.env()},
        capture_output=True,
        text=True,
        check=True,
    )
    groups = json.loads(result.stdout)["status"]["userInfo"]["groups"]
    assert "system:masters" in groups


def test_service_account_tokens_authenticate_and_rbac_is_enforced(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    ns = f"/api/v1/namespaces/{namespace}"
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    create(cp, f"{ns}/serviceaccounts", {"metadata": {"name": "reader"}})
    create(
        cp,
        f"{rbac}/roles",
        {
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    create(
        cp,
        f"{rbac}/rolebindings",
        {
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmap-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = cp.create_token("reader", namespace, duration_seconds=600)

    # RBAC reads its rules from an informer: the grant takes effect promptly, not instantly.
    wait_for(
        lambda: cp.request("GET", f"{ns}/configmaps", token=token).status == 200,
        "the Role to grant listing configmaps",
    )
    forbidden = cp.request("GET", f"{ns}/secrets", token=token)
    assert forbidden.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in forbidden.json()["message"]
    assert cp.request("GET", f"{ns}/configmaps", token=token + "x").status == 401

    # The same through kubectl with a kubeconfig holding only the token.
    config = cp.write_kubeconfig(tmp_path / "reader.kubeconfig", token=token, namespace=namespace)
    kubectl = [str(cp.kubectl_path), f"--kubeconfig={config}"]
    allowed = subprocess.run([*kubectl, "auth", "can-i", "list", "configmaps"], capture_output=True)
    denied = subprocess.run([*kubectl, "get", "secrets"], capture_output=True, text=True)
    assert allowed.returncode == 0
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr


def test_token_audience_is_honoured(control_plane: ControlPlane, namespace: str) -> None:
    wait_for(
        lambda: (
            control_plane.request(
                "GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
            ).status
            == 200
        ),
        "the service-account controller to create `default`",
    )
    token = control_plane.create_token("default", namespace, audience="taskmill-lease-api")
    review = create(
        control_plane,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {"spec": {"token": token, "audiences": ["taskmill-lease-api"]}},
    )
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == f"system:serviceaccount:{namespace}:default"
    # A token for another audience does not work against the API server itself.
    assert control_plane.request("GET", "/api", token=token).status == 401


def test_resource_quota_refuses_the_object_over_the_count(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    ns = f"/api/v1/namespaces/{namespace}"
    # The root-CA publisher adds kube-root-ca.crt to every namespace; let it
    # land first so it does not race the quota for a slot.
    wait_for(
        lambda: cp.request("GET", f"{ns}/configmaps/kube-root-ca.crt").status == 200,
        "kube-root-ca.crt",
    )
    create(
        cp,
        f"{ns}/resourcequotas",
        {"metadata": {"name": "cap"}, "spec": {"hard": {"count/configmaps": "3"}}},
    )

    def used() -> str | None:
        status = cp.request("GET", f"{ns}/resourcequotas/cap").json().get("status", {})
        value = status.get("used", {}).get("count/configmaps")
        return None if value is None else str(value)

    wait_for(lambda: used() is not None, "the quota controller to fill the quota's status")
    assert used() == "1"  # kube-root-ca.crt
    for i in range(2):
        create(cp, f"{ns}/configmaps", configmap(f"cm-{i}"))
    refused = cp.request("POST", f"{ns}/configmaps", configmap("one-too-many"))
    assert refused.status == 403
    assert refused.json()["reason"] == "Forbidden"
    assert "exceeded quota: cap" in refused.json()["message"]


def test_namespace_deletion_completes(control_plane: ControlPlane) -> None:
    cp = control_plane
    name = f"doomed-{os.getpid()}-{time.monotonic_ns() % 100000}"
    create(cp, "/api/v1/namespaces", {"metadata": {"name": name}})
    create(cp, f"/api/v1/namespaces/{name}/configmaps", configmap("content"))
    assert cp.request("DELETE", f"/api/v1/namespaces/{name}").status == 200
    wait_for(
        lambda: cp.request("GET", f"/api/v1/namespaces/{name}").status == 404,
        "the namespace controller to finish deleting the namespace",
        timeout=120,
    )


def test_garbage_collector_deletes_dependents(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    ns = f"/api/v1/namespaces/{namespace}"
    owner = create(cp, f"{ns}/configmaps", configmap("owner"))
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    create(cp, f"{ns}/configmaps", configmap("dependent", ownerReferences=[reference]))
    assert cp.request("DELETE", f"{ns}/configmaps/owner").status == 200
    wait_for(
        lambda: cp.request("GET", f"{ns}/configmaps/dependent").status == 404,
        "the garbage collector to delete the dependent",
        timeout=120,
    )


def test_new_namespaces_get_a_default_service_account(
    control_plane: ControlPlane, namespace: str
) -> None:
    wait_for(
        lambda: (
            control_plane.request(
                "GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
            ).status
            == 200
        ),
        "the `default` ServiceAccount",
    )


def test_kubectl_reports_failures_with_stderr(control_plane: ControlPlane) -> None:
    with pytest.raises(subprocess.CalledProcessError, match="no-such-thing"):
        control_plane.kubectl("get", "configmap", "no-such-thing")
    assert control_plane.kubectl("get", "ns", "default", check=False).returncode == 0


# --- lifetime and failures --------------------------------------------------------------


def test_stop_ends_the_processes_and_removes_the_workdir() -> None:
    cp = ControlPlane(controller_manager=False)
    cp.start()
    workdir, pids = cp.workdir, cp.pids
    assert set(pids) == {"etcd", "kube-apiserver"}
    assert cp.is_running()
    assert cp.request("GET", "/readyz").status == 200
    cp.stop()
    assert not workdir.exists()
    assert processes_mentioning(str(workdir)) == []
    assert not cp.is_running()
    cp.stop()  # idempotent


def test_a_broken_binary_fails_clearly_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = ensure_assets(controller_manager=False)
    assets_dir = tmp_path / "assets"
    assets_dir.mkdir()
    (assets_dir / "etcd").symlink_to(real.etcd)
    broken = assets_dir / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'simulated start-up failure' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets_dir))
    workdir = tmp_path / "plane"

    cp = ControlPlane(workdir, controller_manager=False)
    with pytest.raises(ControlPlaneError) as failure:
        cp.start()
    message = str(failure.value)
    assert "kube-apiserver exited with code 1" in message
    assert "simulated start-up failure" in message
    assert not workdir.exists()
    assert processes_mentioning(str(workdir)) == []  # etcd, which had started, is gone too


def test_a_port_taken_by_someone_else_is_a_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        cp = ControlPlane(
            tmp_path / "plane",
            controller_manager=False,
            apiserver_flags={"secure-port": str(port)},
        )
        with pytest.raises(ControlPlaneError, match="address already in use"):
            cp.start()
    assert not (tmp_path / "plane").exists()
    assert processes_mentioning(str(tmp_path / "plane")) == []


def test_a_picked_port_lost_to_a_race_is_picked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = squatter.getsockname()[1]
        real_free_ports = controlplane.free_ports
        calls: list[list[int]] = []

        def first_pick_loses_the_race(count: int) -> list[int]:
            ports = real_free_ports(count)
            if not calls:
                ports[-1] = taken  # the API server's
            calls.append(ports)
            return ports

        monkeypatch.setattr(controlplane, "free_ports", first_pick_loses_the_race)
        with ControlPlane(controller_manager=False) as cp:
            assert len(calls) == 2
            assert cp.server == f"https://127.0.0.1:{calls[1][-1]}"
            assert cp.request("GET", "/readyz").status == 200


def test_controller_manager_is_required_unless_disabled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = ensure_assets(controller_manager=False)
    for name, target in (("etcd", real.etcd), ("kube-apiserver", real.kube_apiserver)):
        (tmp_path / name).symlink_to(target)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(ControlPlaneError, match="controller_manager=False"):
        ControlPlane(tmp_path / "plane").start()
    assert not (tmp_path / "plane").exists()


def test_a_detached_plane_outlives_its_starter_and_attach_stops_it(tmp_path: Path) -> None:
    workdir = tmp_path / "dev"
    starter = """
import sys
from taskmill.testing.controlplane import ControlPlane
cp = ControlPlane(sys.argv[1], controller_manager=False, detached=True)
cp.start()
print(cp.server)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    started = subprocess.run(
        [sys.executable, "-c", starter, str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    # The starting process has exited; the plane has not.
    cp = ControlPlane.attach(workdir)
    assert cp.server == started.stdout.strip()
    assert cp.is_running()
    assert cp.request("GET", "/readyz").status == 200
    assert "default" in cp.kubectl("get", "ns", "-o", "name").stdout
    with pytest.raises(ControlPlaneError, match="already running"):
        ControlPlane(workdir, controller_manager=False).start()

    cp.stop()
    assert not cp.is_running()
    assert not workdir.exists()
    assert processes_mentioning(str(workdir)) == []
    with pytest.raises(ControlPlaneError, match="no control plane state"):
        ControlPlane.attach(workdir)


def test_processes_die_with_a_killed_owner(tmp_path: Path) -> None:
    """kill -9 of the Python process (no atexit, no stop) still ends a non-detached plane."""
    workdir = tmp_path / "plane"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from taskmill.testing.controlplane import ControlPlane\n"
            "cp = ControlPlane(sys.argv[1], controller_manager=False)\n"
            "cp.start()\n"
            "print('up', flush=True)\n"
            "sys.stdin.read()\n",
            str(workdir),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "up"
        assert len(set(processes_mentioning(str(workdir))) - {owner.pid}) == 2  # etcd, apiserver
    finally:
        owner.kill()
        owner.wait()
    wait_for(lambda: processes_mentioning(str(workdir)) == [], "the orphans to exit", 30)


def test_custom_apiserver_flags_are_applied(tmp_path: Path) -> None:
    flags = {"max-requests-inflight": "123", "enable-priority-and-fairness": "false"}
    (tmp_path / "plane").mkdir()
    with ControlPlane(tmp_path / "plane", controller_manager=False, apiserver_flags=flags) as cp:
        cmdline = Path(f"/proc/{cp.pids['kube-apiserver']}/cmdline").read_bytes().split(b"\0")
        assert b"--max-requests-inflight=123" in cmdline
        assert b"--enable-priority-and-fairness=false" in cmdline
        # The workdir existed before: only the plane's own entries go on stop.
        (tmp_path / "plane" / "mine.txt").write_text("keep me")
    assert (tmp_path / "plane").exists()
    assert sorted(p.name for p in (tmp_path / "plane").iterdir()) == ["mine.txt"]


def test_only_a_known_component_can_be_stopped_or_started() -> None:
    plane = ControlPlane()
    with pytest.raises(ControlPlaneError, match="no process 'etcd'"):
        plane.stop_component("etcd")
    with pytest.raises(ControlPlaneError, match="no process 'kube-apiserver'"):
        plane.start_component("kube-apiserver")
