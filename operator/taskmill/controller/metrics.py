"""The operator's Prometheus metrics, served at ``/metrics`` on the lease port.

Everything is derived from the Task watch events the operator receives
anyway (:func:`OperatorMetrics.observe`, called next to the engine's own
``observe``): no extra API calls, a dict lookup and a counter per event.
Only phase *changes* count, so replays of the same state (resyncs, a
restart's initial list) do not inflate the counters after the first sight.

- ``taskmill_tasks{phase}``: Tasks this operator sees, by phase (gauge);
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
- ``taskmill_crontask_fire_lag_seconds{quantile}``: CronTask fire lag, slot
  time to child create, over the last 1000 fires.

Throttling and fire lag are read from the dispatcher and the CronTask
controller at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
PHASES = ("Pending", "Waiting", "Running", "Succeeded", "Dead", "Cancelled")


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class _Live(Collector):
    """Figures read from the running operator at scrape time: the dispatcher's
    throttled decisions, and the recent CronTask fire lags."""

    def __init__(
        self, throttled: Callable[[], int], fire_lags: Callable[[], Sequence[float]]
    ) -> None:
        self._throttled = throttled
        self._fire_lags = fire_lags

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "taskmill_dispatch_throttled",
            "Dispatch decisions that found a lane held back by its rate limit",
            value=self._throttled(),
        )
        lags = sorted(self._fire_lags())
        family = GaugeMetricFamily(
            "taskmill_crontask_fire_lag_seconds",
            "CronTask fire lag (slot time to child create) over the last 1000 fires",
            labels=["quantile"],
        )
        for q in (0.5, 0.9, 0.99):
            if lags:
                family.add_metric([str(q)], lags[min(len(lags) - 1, int(q * len(lags)))])
        yield family


class OperatorMetrics:
    def __init__(
        self,
        leading: Callable[[], bool] = lambda: True,
        *,
        throttled: Callable[[], int] = lambda: 0,
        fire_lags: Callable[[], Sequence[float]] = lambda: (),
    ) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        r.register(_Live(throttled, fire_lags))
        self.tasks = Gauge("taskmill_tasks", "Tasks seen, by phase", ["phase"], registry=r)
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
        leader = Gauge("taskmill_leader", "1 while this replica leads", registry=r)
        leader.set_function(lambda: 1.0 if leading() else 0.0)
        for phase in PHASES:
            self.tasks.labels(phase)
            self.transitions.labels(phase)
        self._phase: dict[str, tuple[str, str]] = {}  # uid -> (phase, reason)

    def observe(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """One Task watch event."""
        metadata = obj.get("metadata") or {}
        uid = metadata.get("uid")
        if not uid:
            return
        previous = self._phase.get(uid)
        if event_type == "DELETED":
            if previous is not None:
                del self._phase[uid]
                self.tasks.labels(previous[0]).dec()
            return
        status = obj.get("status") or {}
        phase = str(status.get("phase") or "Pending")
        reason = str(status.get("reason") or "")
        if previous == (phase, reason):
            return
        self._phase[uid] = (phase, reason)
        if previous is not None:
            self.tasks.labels(previous[0]).dec()
        self.tasks.labels(phase).inc()
        if previous is None:
            return  # first sight (e.g. the initial list): a state, not a change
        if previous[0] != phase:
            self.transitions.labels(phase).inc()
        if phase == "Dead" and previous[0] != "Dead":
            self.dead.labels(reason or "Unknown").inc()
        elif phase in ("Waiting", "Pending") and previous[0] == "Running":
            self.retries.labels(reason or "Unknown").inc()
        elif phase == "Waiting" and reason:
            self.waiting.labels(reason).inc()
        if phase == "Running" and previous[0] != "Running" and status.get("attempts") == 1:
            created = _time(metadata.get("creationTimestamp"))
            started = _time(status.get("startedAt"))
            if created is not None and started is not None:
                self.lease_latency.observe(max(0.0, (started - created).total_seconds()))

    def install(self, app: web.Application) -> None:
        """Add ``GET /metrics`` to the lease API's application."""

        async def metrics(_: web.Request) -> web.Response:
            response = web.Response(body=generate_latest(self.registry))
            response.headers["Content-Type"] = CONTENT_TYPE_LATEST
            return response

        app.router.add_get("/metrics", metrics)
