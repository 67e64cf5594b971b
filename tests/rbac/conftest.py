"""The RBAC tests run their operator alone, on a plane with no session operator:
otherwise that operator (which watches every namespace) could do the writes
a role under test is meant to allow or refuse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.pytest_plugin import fresh_namespace


@pytest.fixture(scope="session")
def crds(lone_plane: ControlPlane) -> ControlPlane:
    return lone_plane


@pytest.fixture
def namespace(lone_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from fresh_namespace(lone_plane, request.node.name)
