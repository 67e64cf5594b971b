"""The engine's Dead decisions against a real API server, with one Task's
status write held back to force an order the watch would only sometimes give."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskmill.controller.engine import Engine
from taskmill.controller.informer import TaskInformer
from taskmill.controller.settings import OperatorSettings
from taskmill.controller.status_writer import StatusWriter
from taskmill.kube import config as kubeconfig
from taskmill.kube.client import KubeClient, path
from taskmill.models.base import API_VERSION
from taskmill.models.task import Phase
from taskmill.testing.controlplane import ControlPlane
from tests.controller.conditions import until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


class HoldFirstWrite:
    """The engine's status writer, holding the first write of one Task until
    released; every write is noted as (Task, reason)."""

    def __init__(self, inner: StatusWriter, held: str) -> None:
        self.inner = inner
        self.held = held
        self.release = asyncio.Event()
        self.writes: list[tuple[str, Any]] = []

    async def write(self, namespace: str, name: str, *args: Any) -> dict[str, Any]:
        first_of_held = name == self.held and all(n != name for n, _ in self.writes)
        self.writes.append((name, args[1].get("reason")))
        if first_of_held:
            await self.release.wait()
        return await self.inner.write(namespace, name, *args)


def depends_on(name: str, other: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {"name": name},
        "spec": {"type": "echo", "dependsOn": [{"name": other}]},
    }


async def test_both_members_of_a_cycle_are_dead_of_the_cycle_whichever_write_lands_first(
    lone_plane: ControlPlane, lone_namespace: str
) -> None:
    # Alone on a plane: the session operator would act on these objects too.
    namespace = lone_namespace
    async with KubeClient(kubeconfig.load(lone_plane.kubeconfig)) as client:
        url = path("tasks", namespace)
        await client.create(url, depends_on("ping", "pong"))
        await client.create(url, depends_on("pong", "ping"))
        engine = Engine(client, OperatorSettings(namespaces=(namespace,)))
        writer = HoldFirstWrite(engine.writer, held="pong")
        engine.writer = writer  # type: ignore[assignment]
        try:
            informer = TaskInformer(client, (namespace,), engine.observe, engine.known_in)
            await informer.list_all()
            engine.mark_synced()
            # pong saw the cycle first (its write is held); ping saw it next
            # and its Dead write landed: pong is looked at again and now finds
            # a Dead dependency. It must not write a second reason.
            await until(
                lambda: engine.records[(namespace, "ping")].status.phase is Phase.DEAD,
                "ping Dead in the engine",
            )
            for _ in range(20):  # let spawned writes start (no I/O is awaited here)
                await asyncio.sleep(0)
            assert [r for n, r in writer.writes if n == "pong"] == ["DependencyCycle"]

            writer.release.set()
            await until(
                lambda: engine.records[(namespace, "pong")].status.phase is Phase.DEAD,
                "pong Dead in the engine",
            )
            for name, other in (("ping", "pong"), ("pong", "ping")):
                status = (await client.get(f"{url}/{name}"))["status"]
                assert status["phase"] == "Dead"
                assert status["reason"] == "DependencyCycle"
                assert status["message"] == f"dependency cycle: {name} → {other} → {name}"
        finally:
            writer.release.set()
            await engine.close()
