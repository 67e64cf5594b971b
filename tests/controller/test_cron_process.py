"""The CronTask controller's own process, against a real API server: it fires,
reports fire lags, is started again when it dies, and stops with ``run``."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from taskmill.controller.cron_process import CronProcess
from taskmill.dispatch.transitions import iso
from taskmill.kube import config as kubeconfig
from taskmill.kube.client import KubeClient, path
from taskmill.models.base import API_VERSION
from taskmill.testing.controlplane import ControlPlane
from tests.controller.conditions import until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def every_second(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "CronTask",
        "metadata": {"name": name},
        "spec": {"schedule": "@every 1s", "taskTemplate": {"spec": {"type": "noop"}}, **spec},
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_fires_from_its_own_process_restarts_it_and_stops_it(
    lone_plane: ControlPlane, lone_namespace: str
) -> None:
    # Alone on a plane: the session operator would act on these objects too.
    namespace = lone_namespace
    config = kubeconfig.load(lone_plane.kubeconfig)
    async with KubeClient(config) as client:
        crontask = await client.create(path("crontasks", namespace), every_second("tick"))
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

            # An event that cannot be encoded is logged and dropped: it neither
            # raises into the caller's watch loop nor spoils the next replay.
            cron.observe_task("ADDED", {"metadata": {"namespace": namespace}, "odd": {1, 2}})

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


async def test_a_restarted_process_knows_every_child_before_it_fires(
    lone_plane: ControlPlane, lone_namespace: str
) -> None:
    # Alone on a plane: the session operator would act on these objects too.
    namespace = lone_namespace
    config = kubeconfig.load(lone_plane.kubeconfig)
    async with KubeClient(config) as client:
        manifest = every_second("solo", concurrencyPolicy="Forbid")
        await client.create(path("crontasks", namespace), manifest)
        # Its last fire 10 s ago: a slot is due the moment the process starts.
        crontask = await client.merge_patch(
            path("crontasks", namespace, "solo", "status"),
            {"status": {"lastScheduleTime": iso(time.time() - 10)}},
        )
        uid = crontask["metadata"]["uid"]

        def child(name: str, owner_uid: str, phase: str) -> dict[str, Any]:
            return {
                "apiVersion": API_VERSION,
                "kind": "Task",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": f"uid-{name}",
                    "annotations": {
                        "taskmill.dev/scheduled-at": "2026-01-01T00:00:00Z",
                        "padding": "x" * 2048,
                    },
                    "ownerReferences": [
                        {"kind": "CronTask", "name": "other", "uid": owner_uid, "controller": True}
                    ],
                },
                "status": {"phase": phase},
            }

        last = crontask["status"]["lastScheduleTime"]
        cron = CronProcess(config, max_connections=4, events_per_second=5, component="test")
        # A slot is due at once, and the CronTask's one running child comes
        # last, after more than a pipe's worth of other CronTasks' children: a
        # fire before the replay ends would not know it and would start a
        # second child despite Forbid.
        cron.observe("ADDED", crontask)
        for i in range(400):
            cron.observe_task("ADDED", child(f"filler-{i}", "some-other-uid", "Succeeded"))
        cron.observe_task("ADDED", child("solo-running", uid, "Running"))
        running = asyncio.create_task(cron.run())
        try:
            status: dict[str, Any] = {}

            async def poll_status() -> None:
                while True:
                    got = await client.get(path("crontasks", namespace, "solo"))
                    status.update(got.get("status") or {})
                    await asyncio.sleep(0.1)

            polling = asyncio.create_task(poll_status())
            try:
                await until(
                    lambda: status.get("lastScheduleTime") not in (None, last), "a slot handled"
                )
            finally:
                polling.cancel()
                await asyncio.gather(polling, return_exceptions=True)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

        assert (await client.get(path("tasks", namespace)))["items"] == []
        assert [a["name"] for a in status.get("active", [])] == ["solo-running"], status


async def test_a_wedged_process_is_killed_and_started_again(
    lone_plane: ControlPlane, lone_namespace: str
) -> None:
    namespace = lone_namespace
    config = kubeconfig.load(lone_plane.kubeconfig)
    async with KubeClient(config) as client:
        crontask = await client.create(path("crontasks", namespace), every_second("tick"))
        children: set[str] = set()

        async def count_children() -> None:
            while True:
                items = (await client.get(path("tasks", namespace)))["items"]
                children.update(item["metadata"]["name"] for item in items)
                await asyncio.sleep(0.1)

        cron = CronProcess(
            config,
            max_connections=4,
            events_per_second=5,
            component="test",
            heartbeat_seconds=0.2,
            heartbeat_timeout_seconds=2.0,
        )
        cron.observe("ADDED", crontask)
        running = asyncio.create_task(cron.run())
        counting = asyncio.create_task(count_children())
        try:
            await until(lambda: children, "a first child")
            first = cron.pid
            assert first is not None
            # Its event loop stops turning but the process lives, as with a
            # computation that never returns: only the heartbeat can tell.
            os.kill(first, signal.SIGSTOP)
            stopped_at = len(children)
            await until(lambda: cron.pid not in (None, first), "a new process", limit=30)
            assert cron.unresponsive_kills == 1
            assert not alive(first)
            await until(lambda: len(children) >= stopped_at + 2, "children from the new process")
            # A healthy process is left alone: heartbeats go on being answered.
            second = cron.pid
            await until(lambda: len(children) >= stopped_at + 5, "more children")
            assert cron.pid == second
            assert cron.unresponsive_kills == 1
        finally:
            counting.cancel()
            running.cancel()
            await asyncio.gather(counting, running, return_exceptions=True)


async def test_a_schedule_that_cannot_be_computed_stops_only_its_own_crontask(
    lone_plane: ControlPlane, lone_namespace: str
) -> None:
    namespace = lone_namespace
    config = kubeconfig.load(lone_plane.kubeconfig)
    async with KubeClient(config) as client:
        good = await client.create(path("crontasks", namespace), every_second("good"))
        manifest = every_second("stuck")
        manifest["spec"]["schedule"] = "0 0 1 1 *"
        await client.create(path("crontasks", namespace), manifest)
        # Its last slot near the end of the calendar: the next cannot be computed.
        stuck = await client.merge_patch(
            path("crontasks", namespace, "stuck", "status"),
            {"status": {"lastScheduleTime": "9999-06-01T00:00:00Z"}},
        )

        cron = CronProcess(config, max_connections=4, events_per_second=5, component="test")
        cron.observe("ADDED", stuck)
        cron.observe("ADDED", good)
        running = asyncio.create_task(cron.run())
        state: dict[str, Any] = {}

        async def poll() -> None:
            while True:
                got = await client.get(path("crontasks", namespace, "stuck"))
                state["conditions"] = (got.get("status") or {}).get("conditions") or []
                events = await client.get(path("events", namespace, group="", version="v1"))
                state["reasons"] = [
                    e["reason"] for e in events["items"] if e["involvedObject"]["name"] == "stuck"
                ]
                tasks = (await client.get(path("tasks", namespace)))["items"]
                state["children"] = {t["metadata"]["name"] for t in tasks}
                await asyncio.sleep(0.1)

        polling = asyncio.create_task(poll())
        try:
            await until(
                lambda: any(
                    c["reason"] == "ScheduleNotComputable" and c["status"] == "False"
                    for c in state.get("conditions", [])
                ),
                "ScheduleValid=False on the stuck CronTask",
            )
            await until(
                lambda: "ScheduleNotComputable" in state.get("reasons", []), "a Warning Event"
            )
            seen = len(state["children"])
            await until(lambda: len(state["children"]) >= seen + 2, "the good one firing on")
            assert all(name.startswith("good-") for name in state["children"])
        finally:
            polling.cancel()
            running.cancel()
            await asyncio.gather(polling, running, return_exceptions=True)
