"""Fixtures shared by the integration tests: Taskmill running on the real
control plane from :mod:`taskmill.testing.pytest_plugin`.

The operator and the worker run as separate processes, started exactly as
their containers start them. They are shared by the session; each test works
in its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.pytest_plugin import fresh_namespace
from taskmill.testing.stack import Process

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    from taskmill.testing.stack import install_crds

    install_crds(control_plane)
    return control_plane


@pytest.fixture(scope="session")
def lone_plane() -> Iterator[ControlPlane]:
    """A second control plane, with the CRDs, where no session operator runs.

    The session operator watches every namespace of ``crds``: a test that
    must see what *its* operator (or engine) does alone, such as the RBAC
    tests, works here, in a ``lone_namespace``.
    """
    from taskmill.testing.stack import install_crds

    with ControlPlane(controller_manager=False) as plane:
        install_crds(plane)
        yield plane


@pytest.fixture
def lone_namespace(lone_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on ``lone_plane``."""
    yield from fresh_namespace(lone_plane, request.node.name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on ``lone_plane`` are integration tests too (the plugin marks
    those on ``control_plane``)."""
    for item in items:
        if "lone_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@dataclass
class OperatorHandle:
    """The session's operator process, which a test may crash and restart."""

    plane: ControlPlane
    log_dir: Path
    process: Process
    url: str
    restarts: int = 0

    def restart(self, *, crash: bool) -> None:
        """Stop (``kill -9`` when ``crash``) and start again on the same port."""
        from taskmill.testing.stack import start_operator

        if crash:
            self.process.kill()
        else:
            self.process.stop()
        self.restarts += 1
        port = int(self.url.rsplit(":", 1)[1])
        self.process, self.url = start_operator(
            self.plane,
            self.log_dir / f"operator-{self.restarts}.log",
            port=port,
            extra_args=OPERATOR_ARGS,
        )


OPERATOR_ARGS = ["--no-worker-after-seconds", "2"]


@pytest.fixture(scope="session")
def operator_handle(
    crds: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorHandle]:
    from taskmill.testing.stack import start_operator

    logs = tmp_path_factory.mktemp("operator")
    process, url = start_operator(crds, logs / "operator.log", extra_args=OPERATOR_ARGS)
    handle = OperatorHandle(crds, logs, process, url)
    yield handle
    code = handle.process.stop()
    assert code == 0, f"operator exited with {code}:\n{handle.process.log_tail()}"


@pytest.fixture(scope="session")
def operator(operator_handle: OperatorHandle) -> str:
    """A running ``taskmill operator``; its lease API URL."""
    return operator_handle.url


@pytest.fixture(scope="session")
def worker(operator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running ``taskmill worker --handlers examples.handlers``; yields the lease URL."""
    from taskmill.testing.stack import start_worker

    logs = tmp_path_factory.mktemp("worker")
    process = start_worker(operator, "examples.handlers", logs / "worker.log", cwd=ROOT)
    yield operator
    code = process.stop()
    assert code == 0, f"worker exited with {code}:\n{process.log_tail()}"
