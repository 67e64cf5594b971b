"""``helm install`` / ``upgrade`` / ``uninstall`` into the session's real API server.

There is no kubelet: Deployments are created but their pods never run, so
the tests assert on the objects. Each test installs into its own namespace
with its own release name (cluster-scoped RBAC names carry both).

The session's ``crds`` fixture has already applied Taskmill's CRDs
server-side, so most installs use ``crds.enabled=false``. The test of the
CRD-owning path adopts the existing CRDs the way Helm documents (its
ownership label and annotations), then proves that ``helm upgrade`` changes
them and ``helm uninstall`` leaves them and the Tasks in place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskmill.testing.controlplane import ControlPlane
from tests.helm.chart import (
    CHART,
    CI_VALUES,
    HANDLERS,
    MONITORING_KINDS,
    helm,
    install_monitoring_crds,
)

CRD_NAMES = ("tasks.taskmill.dev", "crontasks.taskmill.dev", "taskqueues.taskmill.dev")


def get(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def exists(plane: ControlPlane, *args: str) -> bool:
    result = plane.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    assert result.returncode == 0, result.stderr
    return bool(result.stdout.strip())


def install(plane: ControlPlane, release: str, namespace: str, *sets: str) -> str:
    args = [arg for value in sets for arg in ("--set", value)]
    return helm(
        "install", release, str(CHART), "-n", namespace, *HANDLERS, *args, plane=plane
    ).stdout


@pytest.mark.parametrize("scope", ["cluster", "namespaced"])
def test_install_upgrade_uninstall(crds: ControlPlane, namespace: str, scope: str) -> None:
    plane, release = crds, f"tm{scope[0]}"
    notes = install(plane, release, namespace, "crds.enabled=false", f"rbac.scope={scope}")
    prefix = f"{release}-taskmill"
    # NOTES.txt tells the user the next step.
    assert f"get lease {prefix}-leader" in notes
    assert "kubectl wait tasks.taskmill.dev/hello" in notes
    # With the stock example handlers, the note's Task is one they run.
    assert "spec: {type: echo, payload: {hello: taskmill}}" in notes
    assert "examples/worker-image" in notes
    assert "install the Task, CronTask and TaskQueue CRDs yourself" in notes

    operator = get(plane, "-n", namespace, "deployment", f"{prefix}-operator")
    assert operator["spec"]["replicas"] == 2
    worker = get(plane, "-n", namespace, "deployment", f"{prefix}-worker")
    assert worker["spec"]["template"]["spec"]["serviceAccountName"] == f"{prefix}-worker"
    for kind, name in [
        ("service", prefix),
        ("serviceaccount", f"{prefix}-operator"),
        ("serviceaccount", f"{prefix}-worker"),
        ("networkpolicy", f"{prefix}-operator"),
        ("poddisruptionbudget", f"{prefix}-worker"),
        ("role", f"{prefix}-leader-election"),
    ]:
        assert exists(plane, "-n", namespace, kind, name), f"{kind}/{name} missing"
    cluster_role = f"{prefix}-{namespace}-operator"
    if scope == "cluster":
        assert exists(plane, "clusterrole", cluster_role)
        assert not exists(plane, "-n", namespace, "role", f"{prefix}-operator")
    else:
        assert not exists(plane, "clusterrole", cluster_role)
        assert exists(plane, "-n", namespace, "role", f"{prefix}-operator")

    # The API server agrees with the rendered RBAC: ask it as the operator.
    operator_sa = f"system:serviceaccount:{namespace}:{prefix}-operator"
    worker_sa = f"system:serviceaccount:{namespace}:{prefix}-worker"

    def can(user: str, verb: str, resource: str, *extra: str) -> bool:
        result = plane.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, "--as", user, *extra, check=False
        )
        return result.stdout.strip() == "yes"

    assert can(operator_sa, "list", "tasks.taskmill.dev")
    assert can(operator_sa, "patch", "tasks.taskmill.dev", "--subresource=status")
    assert not can(operator_sa, "patch", "tasks.taskmill.dev")
    assert can(operator_sa, "create", "tokenreviews.authentication.k8s.io")
    assert can(operator_sa, "update", f"leases.coordination.k8s.io/{prefix}-leader")
    assert not can(operator_sa, "update", "leases.coordination.k8s.io/someone-else")
    assert not can(worker_sa, "list", "tasks.taskmill.dev")
    assert not can(worker_sa, "get", "secrets")

    helm(
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        "--reuse-values",
        "--set",
        "operator.replicas=3",
        "--set",
        "worker.concurrency=9",
        plane=plane,
    )
    operator = get(plane, "-n", namespace, "deployment", f"{prefix}-operator")
    assert operator["spec"]["replicas"] == 3
    worker = get(plane, "-n", namespace, "deployment", f"{prefix}-worker")
    assert "--concurrency=9" in worker["spec"]["template"]["spec"]["containers"][0]["args"]

    helm("uninstall", release, "-n", namespace, plane=plane)
    assert not exists(plane, "-n", namespace, "deployment", f"{prefix}-operator")
    if scope == "cluster":
        assert not exists(plane, "clusterrole", cluster_role)


def test_install_with_quota_and_values_file(
    crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "crds: {enabled: false}\n"
        "quota: {enabled: true, maxTasks: 2}\n"
        "worker: {handlers: [examples.handlers], replicas: 1}\n"
        "operator: {replicas: 1}\n"
    )
    helm("install", "tmq", str(CHART), "-n", namespace, "-f", str(values), plane=crds)
    quota = get(crds, "-n", namespace, "resourcequota", "tmq-taskmill-tasks")
    assert quota["spec"]["hard"] == {"count/tasks.taskmill.dev": "2"}
    assert not exists(crds, "-n", namespace, "poddisruptionbudget", "tmq-taskmill-operator")
    helm("uninstall", "tmq", "-n", namespace, plane=crds)


def test_schema_refuses_a_typo_at_install(crds: ControlPlane, namespace: str) -> None:
    result = helm(
        "install",
        "tmx",
        str(CHART),
        "-n",
        namespace,
        *HANDLERS,
        "--set",
        "crds.enabled=false",
        "--set",
        "operatr.replicas=1",
        plane=crds,
        check=False,
    )
    assert result.returncode != 0
    assert "operatr" in result.stderr
    assert not exists(crds, "-n", namespace, "deployments")


def test_chart_owns_crds_upgrades_them_and_keeps_them(crds: ControlPlane, namespace: str) -> None:
    plane, release = crds, "tmcrd"
    # Adopt the CRDs the session installed (server-side, field manager
    # kubectl): Helm takes over objects that carry its ownership metadata.
    for name in CRD_NAMES:
        plane.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        plane.kubectl(
            "annotate",
            "--overwrite",
            "crd",
            name,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )
    install(plane, release, namespace)
    for name in CRD_NAMES:
        crd = get(plane, "crd", name)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == release

    # helm upgrade updates CRDs rendered from templates (a chart's crds/
    # folder would be installed once and never touched again).
    helm(
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        "--reuse-values",
        "--set",
        "commonLabels.taskmill-test=upgraded",
        plane=plane,
    )
    for name in CRD_NAMES:
        assert get(plane, "crd", name)["metadata"]["labels"]["taskmill-test"] == "upgraded"

    plane.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input="apiVersion: taskmill.dev/v1alpha1\nkind: Task\n"
        "metadata: {name: survivor}\nspec: {type: echo}\n",
    )
    result = helm("uninstall", release, "-n", namespace, plane=plane)
    assert "kept due to the resource policy" in result.stdout + result.stderr
    for name in CRD_NAMES:
        assert exists(plane, "crd", name)
    assert exists(plane, "-n", namespace, "tasks.taskmill.dev", "survivor")
    assert not exists(plane, "-n", namespace, "deployment", f"{release}-taskmill-operator")


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_ci_values_install(crds: ControlPlane, namespace: str, values: Path) -> None:
    # chart-testing's contract: each ci/*-values.yaml installs. The session
    # owns the CRDs, so the release must not.
    plane, release = crds, "tmci"
    install_monitoring_crds(plane)
    helm(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "-f",
        str(values),
        "--set",
        "crds.enabled=false",
        "--wait=false",
        plane=plane,
    )
    status = json.loads(helm("status", release, "-n", namespace, "-o", "json", plane=plane).stdout)
    assert status["info"]["status"] == "deployed"
    rendered = [
        d
        for d in yaml.safe_load_all(
            helm(
                "template",
                release,
                str(CHART),
                "-n",
                namespace,
                "-f",
                str(values),
                "--set",
                "crds.enabled=false",
            ).stdout
        )
        if d
    ]
    # Everything rendered (monitoring objects included) is on the server.
    for doc in rendered:
        ns = doc["metadata"].get("namespace")
        where = ["-n", ns] if ns else []
        kind = doc["kind"].lower()
        if doc["apiVersion"].startswith("monitoring.coreos.com"):
            kind = f"{MONITORING_KINDS[doc['kind']]}.monitoring.coreos.com"
        assert exists(plane, *where, kind, doc["metadata"]["name"]), doc["kind"]
    helm("uninstall", release, "-n", namespace, plane=plane)
