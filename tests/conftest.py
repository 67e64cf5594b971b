"""Fixtures shared by the integration tests: Taskmill running on the real
control plane from :mod:`taskmill.testing.pytest_plugin`.

The operator and the worker run as separate processes, started exactly as
their containers start them. They are shared by the session; each test works
in its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmill.testing.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    from taskmill.testing.stack import install_crds

    install_crds(control_plane)
    return control_plane


@pytest.fixture(scope="session")
def operator(crds: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running ``taskmill operator``; yields its lease API URL."""
    from taskmill.testing.stack import start_operator

    logs = tmp_path_factory.mktemp("operator")
    process, url = start_operator(
        crds, logs / "operator.log", extra_args=["--no-worker-after-seconds", "2"]
    )
    yield url
    code = process.stop()
    assert code == 0, f"operator exited with {code}:\n{process.log_tail()}"


@pytest.fixture(scope="session")
def worker(operator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running ``taskmill worker --handlers examples.handlers``; yields the lease URL."""
    from taskmill.testing.stack import start_worker

    logs = tmp_path_factory.mktemp("worker")
    process = start_worker(operator, "examples.handlers", logs / "worker.log", cwd=ROOT)
    yield operator
    code = process.stop()
    assert code == 0, f"worker exited with {code}:\n{process.log_tail()}"
