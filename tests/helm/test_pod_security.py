"""The chart's pods pass Pod Security admission at the ``restricted`` level.

The release is installed into a namespace labelled
``pod-security.kubernetes.io/enforce=restricted`` on the real API server.
There is no kubelet, but the controller-manager's ReplicaSet controller
still creates the Pods, and those creates go through admission: a Pod the
profile forbids is refused and the ReplicaSet reports ``ReplicaFailure``.
A second release with one forbidden setting shows that refusal, so the
first one's Pods exist because admission let them in, not because it
was not asked.
"""

from __future__ import annotations

import json

from taskmill.testing.controlplane import ControlPlane
from tests.helm.chart import CHART, helm


def enforce_restricted(plane: ControlPlane, namespace: str) -> None:
    plane.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )


def install(plane: ControlPlane, release: str, namespace: str, *sets: str) -> None:
    args = [arg for value in ("crds.enabled=false", *sets) for arg in ("--set", value)]
    helm("install", release, str(CHART), "-n", namespace, *args, plane=plane)


def wait(plane: ControlPlane, namespace: str, target: str, condition: str) -> None:
    result = plane.kubectl(
        "wait",
        "-n",
        namespace,
        target,
        f"--for={condition}",
        "--timeout=90s",
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"{target} never met {condition}: {result.stderr}"


def pods(plane: ControlPlane, namespace: str, release: str, component: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component={component}"
    out = plane.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return [p["metadata"]["name"] for p in json.loads(out)["items"]]


def test_default_release_is_admitted_under_restricted(crds: ControlPlane, namespace: str) -> None:
    plane = crds
    enforce_restricted(plane, namespace)
    install(plane, "tmpsa", namespace)
    for component in ("operator", "worker"):
        # Created by the ReplicaSet controller, through admission.
        wait(
            plane,
            namespace,
            f"deployment/tmpsa-taskmill-{component}",
            "jsonpath={.status.replicas}=2",
        )
        assert len(pods(plane, namespace, "tmpsa", component)) == 2, component
    replica_sets = json.loads(
        plane.kubectl("get", "replicasets", "-n", namespace, "-o", "json").stdout
    )["items"]
    assert len(replica_sets) == 2
    for rs in replica_sets:
        conditions = rs["status"].get("conditions") or []
        assert not [c for c in conditions if c["type"] == "ReplicaFailure"], conditions

    # The same chart with one forbidden setting: its worker Pods are refused.
    install(plane, "tmpsb", namespace, "worker.securityContext.allowPrivilegeEscalation=true")
    target = (
        "replicaset",
        "-l",
        "app.kubernetes.io/instance=tmpsb,app.kubernetes.io/component=worker",
    )
    wait(plane, namespace, "deployment/tmpsb-taskmill-operator", "jsonpath={.status.replicas}=2")
    result = plane.kubectl(
        "wait",
        "-n",
        namespace,
        *target,
        "--for=condition=ReplicaFailure",
        "--timeout=90s",
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (rs,) = json.loads(plane.kubectl("get", "-n", namespace, *target, "-o", "json").stdout)["items"]
    (failure,) = [c for c in rs["status"]["conditions"] if c["type"] == "ReplicaFailure"]
    assert 'violates PodSecurity "restricted:latest"' in failure["message"]
    assert "allowPrivilegeEscalation" in failure["message"]
    assert not pods(plane, namespace, "tmpsb", "worker")
    for release in ("tmpsa", "tmpsb"):
        helm("uninstall", release, "-n", namespace, plane=plane)
