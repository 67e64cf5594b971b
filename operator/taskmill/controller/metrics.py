"""The operator's Prometheus metrics, served at ``/metrics`` on the lease port.

Everything is derived from the changes of the operator's Task store
(:meth:`OperatorMetrics.changed` listens to
:class:`~taskmill.controller.store.TaskStore`, which holds the one copy of
each Task): no extra API calls, a few counters per change, and no copy of
the phases here. Only phase *changes* count, so replays of the same state
(resyncs, a restart's initial list) do not inflate the counters after the
first sight.

- ``taskmill_tasks{namespace,queue,phase}``: Tasks this operator sees
  (gauge); at most ``MAX_QUEUE_SERIES`` namespace and queue pairs get series
  of their own, the rest are summed under ``namespace="_other"``, so many
  namespaces cannot flood the scraper;
- ``taskmill_task_transitions_total{phase}``: Tasks entering each phase —
  ``phase="Succeeded"`` is throughput, ``phase="Dead"`` the dead count;
- ``taskmill_task_dead_total{reason}``: Tasks that went Dead, by reason;
- ``taskmill_task_retries_total{reason}``: attempts that ended without
  finishing the Task (it went from Running back to Waiting or Pending:
  ``Backoff``, ``RetryRequested``, ``LeaseExpired``, ``Released``);
- ``taskmill_task_waiting_total{reason}``: Tasks held back, by reason
  (``QueuePaused``, ``NoWorker``, ``Dependencies``, ...);
- ``taskmill_task_lease_latency_seconds``: creation → first lease of a
  Task (its ``startedAt`` on attempt 1), a histogram;
- ``taskmill_leader``: 1 while this replica leads (or runs without
  election), else 0;
- ``taskmill_dispatch_throttled_total``: dispatch decisions that found a
  lane held back by its token bucket (rate limiting at work);
- ``taskmill_crontask_fire_lag_seconds``: CronTask fire lag, slot time to
  child create, a histogram;
- ``process_*`` and ``python_*``: the process' CPU, memory, file
  descriptors and the interpreter, from prometheus_client's collectors.

No ``*_created`` series are exported: they double the series of every
counter and histogram and no dashboard here reads them. Throttling is read
from the dispatcher at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from taskmill.controller.store import Entry, TaskRecord
from taskmill.dispatch.keys import TaskKey

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Fine around the 250 ms a fire should stay under, so alerts can use the bound.
FIRE_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1, 2.5, 5, 10, 60)
PHASES = ("Pending", "Waiting", "Running", "Succeeded", "Dead", "Cancelled")
#: Namespace and queue pairs with series of their own in ``taskmill_tasks``.
MAX_QUEUE_SERIES = 500
OTHER = "_other"

disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream


class _Live(Collector):
    """Figures read from the running operator at scrape time: the dispatcher's
    throttled decisions, and the Tasks by namespace, queue and phase."""

    def __init__(
        self, throttled: Callable[[], int], tasks: Callable[[], Mapping[tuple[str, str, str], int]]
    ) -> None:
        self._throttled = throttled
        self._tasks = tasks

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "taskmill_dispatch_throttled",
            "Dispatch decisions that found a lane held back by its rate limit",
            value=self._throttled(),
        )
        family = GaugeMetricFamily(
            "taskmill_tasks",
            "Tasks seen, by namespace, queue and phase",
            labels=["namespace", "queue", "phase"],
        )
        for labels, count in sorted(self._tasks().items()):
            family.add_metric(labels, count)
        yield family


class OperatorMetrics:
    def __init__(
        self,
        leading: Callable[[], bool] = lambda: True,
        *,
        throttled: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        #: Tasks by (namespace, queue, phase); pairs past the bound count as OTHER.
        self._counts: dict[tuple[str, str, str], int] = {}
        self._pairs: set[tuple[str, str]] = set()
        r.register(_Live(throttled, lambda: self._counts))
        self.transitions = Counter(
            "taskmill_task_transitions", "Tasks entering a phase", ["phase"], registry=r
        )
        self.dead = Counter("taskmill_task_dead", "Tasks that went Dead", ["reason"], registry=r)
        self.retries = Counter(
            "taskmill_task_retries", "Attempts that ended without finishing", ["reason"], registry=r
        )
        self.waiting = Counter(
            "taskmill_task_waiting", "Tasks held back, by reason", ["reason"], registry=r
        )
        self.lease_latency = Histogram(
            "taskmill_task_lease_latency_seconds",
            "Creation to first lease of a Task",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fire_lag = Histogram(
            "taskmill_crontask_fire_lag_seconds",
            "CronTask fire lag: slot time to the child's create",
            buckets=FIRE_LAG_BUCKETS,
            registry=r,
        )
        leader = Gauge("taskmill_leader", "1 while this replica leads", registry=r)
        leader.set_function(lambda: 1.0 if leading() else 0.0)
        for phase in PHASES:
            self.transitions.labels(phase)

    def observe_fire_lag(self, seconds: float) -> None:
        """One CronTask fire (from the CronTask process)."""
        self.fire_lag.observe(max(0.0, seconds))

    def _count(self, pair: tuple[str, str], phase: str, delta: int) -> None:
        key = (*pair, phase)
        count = self._counts.get(key, 0) + delta
        if count:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    def _pair(self, namespace: str, queue: str) -> tuple[str, str]:
        pair = (namespace, queue)
        if pair in self._pairs:
            return pair
        if len(self._pairs) >= MAX_QUEUE_SERIES:
            return (OTHER, OTHER)
        self._pairs.add(pair)
        return pair

    def changed(self, key: TaskKey, old: Entry | None, new: Entry | None) -> None:
        """One change of a Task in the store: ``old`` and ``new`` versions (None: absent)."""
        if old is not None:
            self._count(self._pair(key[0], old.queue), old.phase, -1)
        if new is None:
            return
        phase, reason = new.phase, new.reason
        self._count(self._pair(key[0], new.queue), phase, +1)
        if old is None or old.uid != new.uid:
            return  # first sight (e.g. the initial list): a state, not a change
        if (old.phase, old.reason) == (phase, reason):
            return
        if old.phase != phase:
            self.transitions.labels(phase).inc()
        if phase == "Dead" and old.phase != "Dead":
            self.dead.labels(reason or "Unknown").inc()
        elif phase in ("Waiting", "Pending") and old.phase == "Running":
            self.retries.labels(reason or "Unknown").inc()
        elif phase == "Waiting" and reason:
            self.waiting.labels(reason).inc()
        if phase == "Running" and old.phase != "Running" and isinstance(new, TaskRecord):
            status = new.status
            created = new.task.metadata.creation_timestamp
            if status.attempts == 1 and created is not None and status.started_at is not None:
                latency = (status.started_at - created).total_seconds()
                self.lease_latency.observe(max(0.0, latency))

    def install(self, app: web.Application) -> None:
        """Add ``GET /metrics`` to the lease API's application."""

        async def metrics(_: web.Request) -> web.Response:
            response = web.Response(body=generate_latest(self.registry))
            response.headers["Content-Type"] = CONTENT_TYPE_LATEST
            return response

        app.router.add_get("/metrics", metrics)
