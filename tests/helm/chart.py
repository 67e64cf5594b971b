"""Helpers for the chart tests: run the pinned helm, render the chart, find objects."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from taskmill.testing.assets import ensure_helm
from taskmill.testing.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "taskmill"
HANDLERS = ["--set", "worker.handlers={examples.handlers}"]
#: chart-testing style value files: each must lint, render and install.
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


class HelmError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"helm {' '.join(self.cmd[1:])} failed ({self.returncode}):\n{self.stderr}"


def helm(
    *args: str, plane: ControlPlane | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run helm; with ``plane``, against its API server as the admin."""
    argv = [str(ensure_helm()), *args]
    env = {"HOME": tempfile.gettempdir(), "PATH": "/usr/bin:/bin"}
    if plane is not None:
        argv += ["--kubeconfig", str(plane.kubeconfig)]
        env["HELM_CACHE_HOME"] = str(plane.workdir / "helm" / "cache")
        env["HELM_CONFIG_HOME"] = str(plane.workdir / "helm" / "config")
        env["HELM_DATA_HOME"] = str(plane.workdir / "helm" / "data")
    else:
        env["HELM_CACHE_HOME"] = env["HELM_CONFIG_HOME"] = env["HELM_DATA_HOME"] = "/nonexistent"
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if check and result.returncode != 0:
        raise HelmError(result.returncode, argv, result.stdout, result.stderr)
    return result


def render(*set_args: str, namespace: str = "taskmill", handlers: bool = True) -> list[Any]:
    """``helm template`` with ``--set`` arguments; returns the documents."""
    sets = [arg for value in set_args for arg in ("--set", value)]
    out = helm(
        "template",
        "tm",
        str(CHART),
        "--namespace",
        namespace,
        *(HANDLERS if handlers else []),
        *sets,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> list[Any]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> Any:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


#: The Prometheus Operator kinds the chart can create, as schemaless CRDs: the
#: API server then stores them like the real ones (group, version, kind,
#: namespaced), without this repository copying the operator's schemas.
MONITORING_KINDS = {
    "ServiceMonitor": "servicemonitors",
    "PodMonitor": "podmonitors",
    "PrometheusRule": "prometheusrules",
}


def install_monitoring_crds(plane: ControlPlane) -> None:
    """Apply (idempotently) stand-ins for the monitoring.coreos.com/v1 CRDs."""
    for kind, plural in MONITORING_KINDS.items():
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
    for plural in MONITORING_KINDS.values():
        plane.kubectl(
            "wait",
            f"crd/{plural}.monitoring.coreos.com",
            "--for=condition=Established",
            "--timeout=60s",
        )
