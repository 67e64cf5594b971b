"""examples/gitops: the kustomization renders and applies to a real API server.

``work/`` is rendered with the pinned kubectl's kustomize; the result is
applied server-side (dry run first, then for real, then once more) against
the session's API server with Taskmill's CRDs. To keep tests independent it
goes into the test's namespace through an overlay, as a second cluster or
team would reuse it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from taskmill.testing.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "examples" / "gitops"


def kustomize(plane: ControlPlane, path: Path) -> list[dict[str, Any]]:
    out = plane.kubectl("kustomize", str(path)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_work_renders_with_namespace_queues_and_crontasks(crds: ControlPlane) -> None:
    docs = kustomize(crds, GITOPS / "work")
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [
        ("CronTask", "hourly-digest"),
        ("CronTask", "nightly-report"),
        ("Namespace", "reports"),
        ("TaskQueue", "default"),
        ("TaskQueue", "email"),
    ]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "reports"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "reports"


def test_work_applies_server_side_and_a_second_apply_changes_nothing(
    crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    shutil.copytree(GITOPS / "work", tmp_path / "work")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(f"resources: [../work]\nnamespace: {namespace}\n")
    rendered = json.dumps({"apiVersion": "v1", "kind": "List", "items": kustomize(crds, overlay)})
    apply = ["apply", "--server-side", "--field-manager=gitops", "-f", "-"]
    dry = crds.kubectl(*apply, "--dry-run=server", input=rendered)
    assert "(server dry run)" in dry.stdout
    crds.kubectl(*apply, input=rendered)

    def generations() -> dict[str, int]:
        out = crds.kubectl(
            "get", "-n", namespace, "taskqueues.taskmill.dev,crontasks.taskmill.dev", "-o", "json"
        ).stdout
        return {
            f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["generation"]
            for i in json.loads(out)["items"]
        }

    first = generations()
    assert sorted(first) == [
        "CronTask/hourly-digest",
        "CronTask/nightly-report",
        "TaskQueue/default",
        "TaskQueue/email",
    ]
    crds.kubectl(*apply, input=rendered)
    assert generations() == first
    diff = crds.kubectl(
        "diff", "--server-side", "--field-manager=gitops", "-f", "-", input=rendered, check=False
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_argo_cd_and_flux_point_at_the_kustomization_and_the_chart() -> None:
    argo = list(yaml.safe_load_all((GITOPS / "argocd" / "application.yaml").read_text()))
    paths = {app["metadata"]["name"]: app["spec"]["source"]["path"] for app in argo}
    assert paths == {"taskmill": "charts/taskmill", "taskmill-reports": "examples/gitops/work"}
    for app in argo:
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert app["kind"] == "Application"
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    flux = {
        d["kind"]: d
        for d in yaml.safe_load_all((GITOPS / "flux" / "kustomization.yaml").read_text())
    }
    assert set(flux) == {"GitRepository", "HelmRelease", "Kustomization"}
    assert flux["Kustomization"]["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert flux["Kustomization"]["spec"]["path"] == "./examples/gitops/work"
    assert flux["HelmRelease"]["spec"]["chart"]["spec"]["chart"] == "./charts/taskmill"
    for source in (flux["Kustomization"], flux["HelmRelease"]["spec"]["chart"]):
        assert source["spec"]["sourceRef"]["name"] == flux["GitRepository"]["metadata"]["name"]
    for path in (*paths.values(), "examples/gitops/work", "charts/taskmill"):
        assert (ROOT / path.removeprefix("./")).is_dir(), path
