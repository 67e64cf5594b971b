"""The Celery application of the peer benchmark (bench/celery_peer.py): one no-op task.

The workers import this module (``celery -A celery_app worker`` run in
bench/), and find the Redis instance in ``TASKMILL_BENCH_REDIS_URL``; the
benchmark's client builds its own app with :func:`make_app` for each Redis it
starts. Broker and result backend are the same Redis, as in the smallest
Celery deployment there is.
"""

from __future__ import annotations

import os

from celery import Celery

#: The environment variable the workers read the Redis URL from.
REDIS_URL_ENV = "TASKMILL_BENCH_REDIS_URL"
#: The no-op task's registered name, the same for the workers and the client.
NOOP = "taskmill_bench.noop"

#: The settings given explicitly, and why; the benchmark records them.
#: Everything else (prefetch multiplier 4, acks on receipt, results kept a
#: day, the prefork pool) is what an untuned deployment runs.
SETTINGS: dict[str, object] = {
    # Celery 5 warns at every start when this is unset; the value changes
    # nothing here, the broker is up before any worker starts.
    "broker_connection_retry_on_startup": True,
    # The default, stated because the comparison rests on it: Taskmill keeps
    # every Task's outcome in its status, so Celery stores every result too.
    "task_ignore_result": False,
}


def make_app(redis_url: str) -> Celery:
    """A Celery app on ``redis_url`` (broker and backend) with the no-op task."""
    app = Celery("taskmill_bench", broker=redis_url, backend=redis_url, set_as_current=False)
    app.conf.update(SETTINGS)

    # shared=False: only this app gets the task. Shared tasks go to every app
    # created later too, and the client makes one app per Redis.
    @app.task(name=NOOP, shared=False)  # type: ignore[untyped-decorator]  # Celery has no types
    def noop() -> None:
        """Do nothing: what is measured is everything around a task, not the task."""

    return app


# The workers' app. Without the variable (the client imports this module for
# make_app) it points at a name that never resolves rather than at whatever
# Redis listens on the default port of a shared machine.
app = make_app(os.environ.get(REDIS_URL_ENV) or "redis://redis-url-unset.invalid:6379/0")
