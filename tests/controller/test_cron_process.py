"""The CronTask controller's own process, against a real API server: it fires,
reports fire lags, is started again when it dies, and stops with ``run``."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskmill.controller.cron_process import CronProcess
from taskmill.kube import config as kubeconfig
from taskmill.kube.client import KubeClient, path
from taskmill.models.base import API_VERSION
from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.pytest_plugin import fresh_namespace

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


# Alone on its plane: the session operator would fire the CronTask too.
@pytest.fixture(scope="session")
def crds(lone_plane: ControlPlane) -> ControlPlane:
    return lone_plane


@pytest.fixture
def namespace(lone_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from fresh_namespace(lone_plane, request.node.name)


async def until(condition: Callable[[], Any], what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_fires_from_its_own_process_restarts_it_and_stops_it(
    crds: ControlPlane, namespace: str
) -> None:
    config = kubeconfig.load(crds.kubeconfig)
    async with KubeClient(config) as client:
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "CronTask",
            "metadata": {"name": "tick"},
            "spec": {"schedule": "@every 1s", "taskTemplate": {"spec": {"type": "noop"}}},
        }
        crontask = await client.create(path("crontasks", namespace), manifest)
        children: set[str] = set()

        async def count_children() -> None:
            while True:
                items = (await client.get(path("tasks", namespace)))["items"]
                children.update(item["metadata"]["name"] for item in items)
                await asyncio.sleep(0.1)

        cron = CronProcess(config, max_connections=4, events_per_second=5, component="test")
        cron.observe("ADDED", crontask)  # before the child process runs: replayed to it
        running = asyncio.create_task(cron.run())
        counting = asyncio.create_task(count_children())
        try:
            await until(lambda: children, "a first child")
            first = cron.pid
            assert first is not None
            assert first != os.getpid()
            await until(cron.fire_lags, "a fire lag reported")
            assert all(0 <= lag < 5 for lag in cron.fire_lags())

            os.kill(first, signal.SIGKILL)
            await until(lambda: cron.pid not in (None, first), "a new process")
            second = cron.pid
            assert second is not None
            seen = len(children)
            await until(lambda: len(children) >= seen + 2, "children from the new process")
        finally:
            counting.cancel()
            running.cancel()
            await asyncio.gather(counting, running, return_exceptions=True)

        assert cron.pid is None
        assert not alive(second)
