"""End to end on a kind cluster: build the image, install the chart, run a Task.

Needs a Docker engine. Without one (``docker info`` fails or docker is not
installed) the whole module is skipped with the reason, and kind is never
built. With one, kind (``sigs.k8s.io/kind``, pinned) is built with Go into
the same cache as the control-plane binaries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIND_VERSION = "v0.33.0"


def _docker_problem() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker engine: the docker CLI is not installed"
    try:
        result = subprocess.run(
            [docker, "info"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return "no Docker engine: `docker info` timed out"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine: `docker info` exited {result.returncode} ({last})"
    return None


_PROBLEM = _docker_problem()
pytestmark = [
    pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or ""),
    pytest.mark.timeout(1800),
]


def run(*argv: str, timeout: float = 900, **kwargs: object) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload]
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return str(result.stdout)


def ensure_kind() -> Path:
    from taskmill.testing.assets import cache_dir

    target = cache_dir() / "assets" / f"kind-{KIND_VERSION}" / "kind"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOBIN": str(target.parent), "CGO_ENABLED": "0"}
        run("go", "install", f"sigs.k8s.io/kind@{KIND_VERSION}", env=env)
    return target


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    from taskmill.testing.assets import ensure_helm

    kind = ensure_kind()
    name = f"taskmill-{uuid.uuid4().hex[:6]}"
    image = f"taskmill:kind-{name}"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    run("docker", "build", "-t", image, str(ROOT))
    run(str(kind), "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig))
    try:
        run(str(kind), "load", "docker-image", image, "--name", name)
        yield kubeconfig, image, str(ensure_helm())
    finally:
        run(str(kind), "delete", "cluster", "--name", name)


def test_chart_runs_a_task_on_kind(cluster: tuple[Path, str, str]) -> None:
    from taskmill.testing.assets import find_kubectl

    kubeconfig, image, helm = cluster
    repository, tag = image.rsplit(":", 1)
    kubectl = [str(find_kubectl()), "--kubeconfig", str(kubeconfig)]
    run(
        helm,
        "install",
        "taskmill",
        str(ROOT / "charts" / "taskmill"),
        "--kubeconfig",
        str(kubeconfig),
        "-n",
        "taskmill",
        "--create-namespace",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "worker.handlers={examples.handlers}",
        "--wait",
        "--timeout",
        "5m",
    )
    run(*kubectl, "apply", "-f", str(ROOT / "examples" / "echo-task.yaml"))
    run(
        *kubectl,
        "wait",
        "tasks.taskmill.dev/echo-hello",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=120s",
    )
