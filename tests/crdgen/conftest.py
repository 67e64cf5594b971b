"""The schema tests get an API server of their own, with no operator on it:
they check what the API server itself accepts, defaults and stores, which a
running operator (the session's, started by other tests) would change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmill.testing.controlplane import ControlPlane


@pytest.fixture(scope="package")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane(controller_manager=False) as plane:
        yield plane
