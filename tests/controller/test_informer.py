"""The Task informer against a real API server: list, watch, resume, relist."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskmill.controller.informer import TaskInformer
from taskmill.dispatch.keys import TaskKey
from taskmill.kube import config as kubeconfig
from taskmill.kube.client import KubeClient, path
from taskmill.models.base import API_VERSION
from taskmill.testing.controlplane import ControlPlane
from tests.controller.conditions import until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


class Sink:
    """Holds Tasks by key like the engine does, and every event it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str | None, str, str]] = []
        self.held: dict[TaskKey, str] = {}

    def __call__(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        self.events.append((event_type, meta["name"], str(body.get("apiVersion", ""))))
        if event_type == "DELETED":
            self.held.pop(key, None)
        else:
            self.held[key] = meta["uid"]

    def known(self, namespace: str | None) -> dict[TaskKey, str]:
        return {k: uid for k, uid in self.held.items() if namespace in (None, k[0])}


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {"name": name},
        "spec": {"type": "noop"},
    }


async def test_lists_then_watches_and_relists_when_history_is_gone(
    crds: ControlPlane, namespace: str
) -> None:
    async with KubeClient(kubeconfig.load(crds.kubeconfig)) as client:
        url = path("tasks", namespace)
        for name in ("a", "b", "c"):
            await client.create(url, manifest(name))
        sink = Sink()
        # A Task the sink holds that the API server does not have (deleted
        # while nobody watched): the list must report it gone.
        sink.held[(namespace, "ghost")] = "uid-ghost"
        informer = TaskInformer(client, (namespace,), sink, sink.known, page=2)

        assert await informer.list_all() == 3
        assert sorted(n for t, n, _ in sink.events if t is None) == ["a", "b", "c"]
        # Listed items carry apiVersion, which the engine's validation needs.
        assert {v for t, _, v in sink.events if t is None} == {API_VERSION}
        assert ("DELETED", "ghost", "") in sink.events
        assert set(sink.held) == {(namespace, n) for n in ("a", "b", "c")}

        stop = asyncio.Event()
        watching = asyncio.create_task(informer.watch(stop))
        try:
            await client.create(url, manifest("d"))
            await client.delete(f"{url}/a")
            await until(lambda: ("DELETED", "a", API_VERSION) in sink.events, "a deleted")
            assert ("ADDED", "d", API_VERSION) in sink.events
            # Nothing listed twice: the watch resumed from the list's version.
            assert [n for t, n, _ in sink.events if t == "ADDED"] == ["d"]

            # A resourceVersion the server no longer keeps history for: it
            # answers 410 and the informer lists again, reporting what
            # vanished in between.
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await client.delete(f"{url}/b")
            informer._versions[namespace] = "1"
            sink.events.clear()
            watching = asyncio.create_task(informer.watch(stop))
            await until(lambda: ("DELETED", "b", "") in sink.events, "relist after 410")
            assert sorted(n for t, n, _ in sink.events if t is None) == ["c", "d"]
            assert set(sink.held) == {(namespace, "c"), (namespace, "d")}
        finally:
            stop.set()
            await watching


async def test_a_task_as_large_as_the_api_server_takes_comes_through_the_watch(
    crds: ControlPlane, namespace: str
) -> None:
    # 1.2 MB of payload: about the largest object etcd stores, and far longer
    # than the line buffer of aiohttp's readline, which ended the watch.
    big = manifest("big") | {"spec": {"type": "noop", "payload": {"blob": "x" * 1_200_000}}}
    async with KubeClient(kubeconfig.load(crds.kubeconfig)) as client:
        url = path("tasks", namespace)
        sink = Sink()
        informer = TaskInformer(client, (namespace,), sink, sink.known)
        await informer.list_all()
        stop = asyncio.Event()
        watching = asyncio.create_task(informer.watch(stop))
        try:
            await client.create(url, big)
            await client.create(url, manifest("after"))
            await until(lambda: ("ADDED", "after", API_VERSION) in sink.events, "the next Task")
            assert ("ADDED", "big", API_VERSION) in sink.events
            assert not watching.done()
        finally:
            stop.set()
            await watching
