"""pytest fixtures for tests against a real local control plane.

Installed with ``taskmill[testing]`` (entry point ``pytest11``), so any
project that depends on Taskmill gets:

- ``control_plane`` (session scope): a started
  :class:`~taskmill.testing.controlplane.ControlPlane`, shared by every test
  of the session and stopped at its end. The first session on a machine
  builds the binaries (see :mod:`taskmill.testing.assets`).
- ``namespace`` (function scope): a fresh namespace named after the test,
  deleted afterwards without waiting for the deletion to finish.

Tests that use either fixture are marked ``integration`` automatically, so
``pytest -m "not integration"`` runs the rest without a control plane.

Environment variables:

- ``TASKMILL_TEST_KEEP=1`` keeps the control plane's workdir (logs, etcd
  data, kubeconfig) after the session, and prints where it is;
- ``TASKMILL_TEST_CONTROLLER_MANAGER=0`` runs without
  kube-controller-manager (e.g. with envtest assets that lack it).

This module is imported into every pytest session where Taskmill is
installed: it imports nothing heavy until a fixture is used.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from taskmill.testing.controlplane import ControlPlane

_CONTROL_PLANE_FIXTURE = "control_plane"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the control plane (directly or not) ``integration``."""
    for item in items:
        if _CONTROL_PLANE_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.lower() not in ("0", "false", "no", "off")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A real kube-apiserver + etcd (+ kube-controller-manager) for the whole session."""
    from taskmill.testing.controlplane import ControlPlane

    keep = _flag("TASKMILL_TEST_KEEP", False)
    plane = ControlPlane(
        controller_manager=_flag("TASKMILL_TEST_CONTROLLER_MANAGER", True),
        keep_workdir=keep,
    )
    with plane:
        yield plane
        if keep:
            print(f"\ntaskmill: control plane files kept in {plane.workdir}")


def namespace_name(test_name: str, suffix: str | None = None) -> str:
    """A valid, unique namespace name (an RFC 1123 label) derived from a test's name."""
    suffix = suffix or secrets.token_hex(3)
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
    slug = slug.removeprefix("test-") or "test"
    # 63 characters at most, and it must end with an alphanumeric.
    return f"{slug[: 62 - len(suffix)].rstrip('-')}-{suffix}"


def fresh_namespace(plane: ControlPlane, test_name: str) -> Iterator[str]:
    """Create a namespace named after a test, yield its name, then delete it
    (not waited for): the body of a ``namespace`` fixture, on any plane."""
    name = namespace_name(test_name)
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    response = plane.request("POST", "/api/v1/namespaces", body)
    if response.status != 201:
        raise RuntimeError(f"creating namespace {name} failed ({response.status}): {response.text}")
    yield name
    # Deletion runs in the namespace controller; waiting would only slow tests.
    plane.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards (not waited for)."""
    yield from fresh_namespace(control_plane, request.node.name)
