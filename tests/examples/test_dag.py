"""examples/dag.yaml runs on the real control plane, in dependency order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import get, stamp, wait_phase

DAG = Path(__file__).resolve().parents[2] / "examples" / "dag.yaml"


def test_the_example_dag_finishes_in_order(crds: ControlPlane, worker: str, namespace: str) -> None:
    tasks: list[dict[str, Any]] = [d for d in yaml.safe_load_all(DAG.read_text()) if d]
    edges = [
        (t["metadata"]["name"], dep["name"])
        for t in tasks
        for dep in t["spec"].get("dependsOn", [])
    ]
    assert len(edges) == 5
    crds.kubectl("apply", "-n", namespace, "-f", str(DAG))

    # The sink finishes last; by then every Task has.
    wait_phase(crds, namespace, "dag-report", "Succeeded", timeout=90)
    status = {
        t["metadata"]["name"]: get(crds, namespace, t["metadata"]["name"])["status"] for t in tasks
    }
    for name, current in status.items():
        assert current["phase"] == "Succeeded", (name, current)
        assert current["attempts"] == 1, name
    for dependant, dependency in edges:
        started = stamp(status[dependant]["startedAt"])
        assert started >= stamp(status[dependency]["finishedAt"]), (dependant, dependency)
