"""Lease calls may name any task types; what the engine remembers of them stays bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskmill.controller.engine import Engine
from taskmill.controller.settings import OperatorSettings
from taskmill.models.lease import Holder, LeaseRequest

pytestmark = pytest.mark.asyncio

HORIZON = 0.05


async def test_types_no_worker_asked_for_lately_are_forgotten() -> None:
    # No Task exists, so the engine never calls the API server: no client needed.
    client: Any = None
    engine = Engine(client, OperatorSettings(no_worker_after_seconds=HORIZON))
    for batch in range(10):
        types = [f"made-up-{batch}-{i}" for i in range(100)]
        request = LeaseRequest(worker="w", types=types, wait_seconds=0)
        assert await engine.lease(request, Holder("w")) == []
    assert len(engine._wanted) == 1000
    await asyncio.sleep(HORIZON * 2)  # the horizon passing is what is tested
    await engine.lease(LeaseRequest(worker="w", types=["echo"], wait_seconds=0), Holder("w"))
    engine._mark_unwanted()
    assert list(engine._wanted) == ["echo"]  # still wanted: asked for just now
