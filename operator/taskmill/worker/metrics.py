"""The worker's Prometheus metrics, and the small HTTP server that serves them.

Each :class:`~taskmill.worker.runner.Worker` owns a private
``CollectorRegistry`` (so several workers, e.g. in tests, never collide), and
``taskmill worker --metrics-port 9100`` serves it at ``/metrics`` next to a
``/healthz`` liveness probe, on the worker's own event loop (aiohttp; no
extra thread). Names follow Prometheus conventions: ``_total`` counters,
base units (seconds), a ``_ratio`` gauge.

- ``taskmill_worker_tasks_total{type,outcome}``: attempts finished here, by
  outcome (``succeeded``, ``failed``, ``timed_out``, ``retry``,
  ``permanent_failure``, ``cancelled``, ``released``, ``lease_lost``);
- ``taskmill_worker_task_failures_total{type}``: attempts that did not succeed;
- ``taskmill_worker_task_duration_seconds{type}``: handler run time (histogram);
- ``taskmill_worker_tasks_in_flight``: handlers running now;
- ``taskmill_worker_slots``: ``--concurrency``;
- ``taskmill_worker_utilization_ratio``: in flight / slots, 0..1;
- ``taskmill_worker_lease_errors_total``: failed calls to the lease API.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# No ``*_created`` series: they double every counter's and histogram's series.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

#: Buckets for handler durations: 5 ms to 10 min.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class WorkerMetrics:
    def __init__(self, slots: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, memory, open fds
        PlatformCollector(registry=r)
        self.tasks = Counter(
            "taskmill_worker_tasks",
            "Attempts finished by this worker, by Task type and outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self.failures = Counter(
            "taskmill_worker_task_failures",
            "Attempts that did not succeed (failed, timed out, retry or permanent failure).",
            ["type"],
            registry=r,
        )
        self.duration = Histogram(
            "taskmill_worker_task_duration_seconds",
            "How long handlers ran, by Task type.",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "taskmill_worker_tasks_in_flight", "Handlers running now.", registry=r
        )
        self.slots = Gauge(
            "taskmill_worker_slots", "Handlers this worker runs at once.", registry=r
        )
        self.utilization = Gauge(
            "taskmill_worker_utilization_ratio",
            "Busy slots as a fraction of all slots (0..1).",
            registry=r,
        )
        self.lease_errors = Counter(
            "taskmill_worker_lease_errors",
            "Calls to the operator's lease API that failed.",
            registry=r,
        )
        self._slots = slots
        self.slots.set(slots)
        self.set_in_flight(0)

    def set_in_flight(self, running: int) -> None:
        self.in_flight.set(running)
        self.utilization.set(running / self._slots if self._slots else 0.0)

    def finished(self, type_: str, outcome: str, seconds: float | None) -> None:
        self.tasks.labels(type=type_, outcome=outcome).inc()
        if outcome in ("failed", "timed_out", "retry", "permanent_failure"):
            self.failures.labels(type=type_).inc()
        if seconds is not None:
            self.duration.labels(type=type_).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve(metrics: WorkerMetrics, host: str, port: int) -> web.AppRunner:
    """Serve ``/metrics`` and ``/healthz``; the caller cleans the runner up."""

    async def scrape(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
