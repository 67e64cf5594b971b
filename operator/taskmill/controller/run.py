"""``taskmill operator``: the watches, the reconcilers, and the lease API in one loop.

Who watches what, and why:

==========  ==========================================  ==============================
kind        watched by                                  handed to
==========  ==========================================  ==============================
TaskQueue   kopf (``@kopf.on.event``)                   the Task reconciler's queue book
CronTask    kopf (``@kopf.on.event``)                   the CronTask process
Task        :class:`~taskmill.controller.informer.      the Task reconciler, and the
            TaskInformer` (the hot path: one lean       CronTask process for children;
            stream, parsed once, no per-event           metrics read the Task store
            handler machinery; measured in its
            docstring)
==========  ==========================================  ==============================

kopf is embedded (``kopf.operator``) with its own registry and runs the
operator's startup and cleanup, login (every kubeconfig auth), the watches
of the low-traffic kinds, and readiness. Only ``@kopf.on.event`` handlers
are registered: they write nothing to the objects (no finalizers, no
annotations, no handler status), so the API sees only the writes listed in
:mod:`taskmill.controller.effects`.

With leader election (:mod:`taskmill.controller.leader`) the lease API starts
at once (standbys answer ``/readyz`` and the lease routes with 503) but
nothing else does until this replica holds the Lease; a leader that loses it
stops dispatching at once and :func:`run` raises :class:`LeadershipLost`, so
the process exits non-zero and is restarted as a standby. With
``auth_audience`` set, lease calls are authenticated by
:mod:`taskmill.leaseapi.auth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import kopf
from aiohttp import web

import taskmill
from taskmill.controller.cron import CRONTASK_LABEL
from taskmill.controller.cron_process import CronProcess
from taskmill.controller.informer import RECONNECT, TaskInformer
from taskmill.controller.leader import LeaderElector
from taskmill.controller.leasing import ApiUnavailable, LeaseConflict, Leasing
from taskmill.controller.metrics import OperatorMetrics
from taskmill.controller.settings import OperatorSettings
from taskmill.controller.tasks import TaskController
from taskmill.kube import config as kube_config
from taskmill.kube.client import ApiError, KubeClient
from taskmill.kube.exec_plugin import ExecCredential
from taskmill.leaseapi import connections
from taskmill.leaseapi.auth import TokenReviewAuthenticator
from taskmill.leaseapi.server import build_app
from taskmill.models.base import GROUP, VERSION

log = logging.getLogger(__name__)


class LeadershipLost(RuntimeError):
    """This replica stopped leading before it was told to stop."""


class LoopEnded(RuntimeError):
    """A loop that runs for the operator's whole life ended before it was told to stop."""


def build_registry(
    tasks: TaskController,
    connection: kube_config.KubeConfig,
    cron: CronProcess | None = None,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    handed: list[ExecCredential] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # kopf logs in again only when what it has expired or got a 401: an
        # exec plugin's credential handed out before is then not reused.
        plugin = connection.exec_authenticator
        credential = None
        if plugin is not None and not (connection.token or connection.token_path):
            if handed:
                plugin.invalidate(handed.pop())
            credential = plugin.get()
            handed.append(credential)
        expires = credential.expires_at if credential else None
        return kopf.ConnectionInfo(
            server=connection.server,
            ca_path=connection.ca_path,
            insecure=connection.insecure,
            token=credential.token if credential else connection.bearer_token(),
            username=connection.username,
            password=connection.password,
            certificate_path=connection.cert_path,
            private_key_path=connection.key_path,
            certificate_data=_pem(credential.client_certificate_data if credential else None),
            private_key_data=_pem(credential.client_key_data if credential else None),
            proxy_url=connection.proxy_url,
            expiration=dt.datetime.fromtimestamp(expires, dt.UTC) if expires else None,
            default_namespace=connection.namespace,
        )

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Handler logs must not become Kubernetes Events: one write each.
        settings.posting.enabled = False
        # Events are handed to the reconcilers at once; kopf's default 0.1 s batch
        # window would add that much to every Task's latency.
        settings.batching.batch_window = 0.0
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 10
        # Only our own kinds are watched; no cluster-wide discovery of CRDs.
        settings.scanning.disabled = True

    @kopf.on.event(GROUP, VERSION, "taskqueues", registry=registry)
    async def queue_event(event: kopf.RawEvent, **_: Any) -> None:
        tasks.observe_queue(event.get("type"), dict(event["object"]))

    if cron is not None:

        @kopf.on.event(GROUP, VERSION, "crontasks", registry=registry)
        async def crontask_event(event: kopf.RawEvent, **_: Any) -> None:
            cron.observe(event.get("type"), dict(event["object"]))

    return registry


def _pem(text: str | None) -> bytes | None:
    return text.encode() if text else None


def task_sink(
    tasks: TaskController, cron: CronProcess | None = None
) -> Callable[[str | None, dict[str, Any]], None]:
    """Where the Task informer's events go: the Task reconciler, and the
    CronTask controller for Tasks it created."""

    def take(event_type: str | None, body: dict[str, Any]) -> None:
        tasks.observe(event_type, body)
        labels = (body.get("metadata") or {}).get("labels") or {}
        if cron is not None and CRONTASK_LABEL in labels:
            cron.observe_task(event_type, body)

    return take


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Keep Python's cycle collector out of the initial load, then freeze
    what was loaded.

    Loading 100,000 Tasks creates millions of long-lived objects and no
    garbage cycles; the collector's full passes over that growing heap took
    about half of a restart's CPU. Frozen objects are never scanned again
    (reference counting still frees them), so later collections cost what
    the Tasks since the start cost, not the whole backlog."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.freeze()


async def _load_state(
    tasks: TaskController, informer: TaskInformer, settings: OperatorSettings, stop: asyncio.Event
) -> None:
    """Load the TaskQueues, then the Tasks, retrying while the API server is unreachable."""
    failures = 0
    while not stop.is_set():
        try:
            await tasks.load_queues(settings.namespaces)
            started = time.monotonic()
            with _collector_paused():
                count = await informer.list_all()
            tasks.mark_synced()
            log.info("loaded %d Tasks in %.1fs", count, time.monotonic() - started)
            return
        except (ApiError, OSError, TimeoutError) as exc:
            failures += 1
            delay = RECONNECT.base_delay(failures)
            log.warning("cannot load TaskQueues and Tasks yet (%s); retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)


def alive(loops: list[asyncio.Task[Any]]) -> bool:
    return bool(loops) and not any(loop.done() for loop in loops)


def _ended(loop: asyncio.Task[Any], stop: asyncio.Event, ended: list[str]) -> None:
    """A loop that must run until the operator stops has ended: say why, and stop."""
    if stop.is_set():
        return
    ended.append(loop.get_name())
    error = None if loop.cancelled() else loop.exception()
    log.critical("the %s loop ended; stopping the operator", loop.get_name(), exc_info=error)
    stop.set()


def _elector(client: KubeClient, settings: OperatorSettings) -> LeaderElector | None:
    if settings.leader_lease is None:
        return None
    namespace, name = settings.leader_lease
    return LeaderElector(
        client,
        namespace=namespace,
        name=name,
        identity=settings.leader_identity or f"{socket.gethostname()}-{os.getpid()}",
        lease_seconds=settings.leader_lease_seconds,
        renew_deadline_seconds=settings.leader_renew_deadline_seconds,
        retry_seconds=settings.leader_retry_seconds,
    )


async def _keep_leading(
    elector: LeaderElector, stop: asyncio.Event, *work: asyncio.Task[Any]
) -> None:
    await elector.keep(stop)
    if elector.lost.is_set():
        for task in work:  # no more dispatching, expiring, firing or status writes
            task.cancel()
        stop.set()  # and kopf's watches end


async def _stop_serving(listener: asyncio.Server, runner: web.AppRunner) -> None:
    listener.close()  # no new connections
    await runner.cleanup()  # ends the open ones
    await listener.wait_closed()


async def run(
    settings: OperatorSettings,
    *,
    kubeconfig: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the operator until ``stop`` is set (or forever)."""
    stop = stop or asyncio.Event()
    connection = kube_config.load(kubeconfig)
    client = KubeClient(connection, max_connections=settings.max_concurrent_writes + 16)
    tasks = TaskController(client, settings)
    leasing = Leasing(tasks)
    cron = CronProcess(
        connection,
        # Enough connections that many CronTasks due at the same instant all
        # send their creates at once: with fewer, the status writes that follow
        # the first creates took the freed connections and the last children
        # of a burst waited for them (bench/latency.py, 20 CronTasks on one
        # minute: the last 4 children arrived 400-500 ms after the rest).
        max_connections=64,
        events_per_second=settings.events_per_second,
        component=settings.instance,
    )
    kopf_ready = asyncio.Event()
    elector = _elector(client, settings)

    def leading() -> bool:
        return elector is None or elector.is_leader()

    metrics = OperatorMetrics(
        leading,
        throttled=lambda: tasks.dispatcher.throttled_decisions,
    )
    tasks.store.listen(metrics.changed)
    cron.lag_observers.append(metrics.observe_fire_lag)

    authenticator = None
    if settings.auth_audience:
        authenticator = TokenReviewAuthenticator(
            client,
            audience=settings.auth_audience,
            workers=settings.worker_identities,
            cache_seconds=settings.token_cache_seconds,
            reviews_per_second=settings.token_reviews_per_second,
            reviews_burst=settings.token_reviews_burst,
        )
    limits = connections.ConnectionLimits(
        header_timeout_seconds=settings.lease_header_timeout_seconds,
        body_timeout_seconds=settings.lease_body_timeout_seconds,
        idle_timeout_seconds=settings.lease_idle_timeout_seconds,
        max_connections_per_address=settings.lease_max_connections_per_address,
    )
    #: The loops dispatching depends on: should one end, the replica is not
    #: Ready (and the operator stops, so that it is started again).
    loops: list[asyncio.Task[Any]] = []
    app = build_app(
        leasing,
        conflict=LeaseConflict,
        unavailable=ApiUnavailable,
        version=taskmill.__version__,
        ready=lambda: kopf_ready.is_set() and leading() and tasks.synced and alive(loops),
        authenticate=authenticator,
        serving=leading,
        synced=lambda: tasks.synced,
        extra_routes=metrics.install,
        body_timeout_seconds=limits.body_timeout_seconds,
    )
    # handler_cancellation: a worker that hangs up (killed, restarted) ends its
    # long poll, so no Task is leased to a connection nobody reads.
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        keepalive_timeout=limits.idle_timeout_seconds,
        lingering_time=connections.LINGER_SECONDS,
    )
    await runner.setup()
    listener, _ = await connections.listen(runner, settings.lease_host, settings.lease_port, limits)
    log.info(
        "lease API listening on %s:%d (pid %d)",
        settings.lease_host,
        settings.lease_port,
        os.getpid(),
    )
    if elector is not None and not await elector.acquire(stop):
        await _stop_serving(listener, runner)
        await client.close()
        return
    informer = TaskInformer(client, settings.namespaces, task_sink(tasks, cron), tasks.known_in)
    await _load_state(tasks, informer, settings, stop)
    timers = asyncio.create_task(tasks.run_timers(), name="timers")
    watching = asyncio.create_task(informer.watch(stop), name="task-watch")
    cron_timers = asyncio.create_task(cron.run(), name="cron")
    loops += [timers, watching, cron_timers]
    ended: list[str] = []
    for loop in loops:
        loop.add_done_callback(lambda task: _ended(task, stop, ended))
    keeper = None
    if elector is not None:
        keeper = asyncio.create_task(
            _keep_leading(elector, stop, timers, cron_timers, watching), name="leader"
        )
    try:
        await kopf.operator(
            registry=build_registry(tasks, connection, cron),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=True,
            stop_flag=stop,
            ready_flag=kopf_ready,
        )
    finally:
        stop.set()  # whatever ended kopf: the loops below are cancelled, not failed
        timers.cancel()
        watching.cancel()
        cron_timers.cancel()
        await asyncio.gather(cron_timers, return_exceptions=True)
        if keeper is not None:
            keeper.cancel()
        await asyncio.gather(
            timers, watching, *([keeper] if keeper else []), return_exceptions=True
        )
        await leasing.close()
        await tasks.close()
        await _stop_serving(listener, runner)
        if elector is not None and not elector.lost.is_set():
            await elector.release()
        await client.close()
    if elector is not None and elector.lost.is_set():
        raise LeadershipLost(f"{elector.identity} lost the leader Lease {elector.name}")
    if ended:
        raise LoopEnded(f"the {', '.join(ended)} loop ended before the operator was stopped")
