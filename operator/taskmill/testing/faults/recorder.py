"""Record every execution of a handler: one JSON line each, written before
the handler returns.

Wrap a handler with :func:`recording` (or register through it)::

    from taskmill.testing.faults.recorder import recording

    @taskmill.handler("send_email")
    @recording("/var/log/executions.jsonl")
    def send_email(payload, ctx): ...

Each line holds the Task's uid, namespace and name, the attempt, the worker,
the pid, start and end (``time.time()``) and the outcome: ``succeeded``
(returned), ``failed`` (raised) or ``cancelled`` (stopped by a cancellation).
A handler killed mid-call writes nothing: it did not finish.

Why this is enough for a crash test without fsync: the file is opened with
``O_APPEND`` and each line goes out in one ``write(2)``, so lines from many
processes never interleave, and a written line is in the kernel's page cache
before the handler returns: ``kill -9`` of the worker cannot take it back
(only a crash of the machine could).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from taskmill.testing.faults.records import CANCELLED, FAILED, SUCCEEDED
from taskmill.worker.context import HandlerContext

#: The environment variable naming the worker in the records; it should be
#: the worker's ``--name``. Default: the worker's own default identity.
WORKER_ENV = "TASKMILL_FAULTS_WORKER"
#: The environment variable a handler module may read for the log's path.
LOG_ENV = "TASKMILL_FAULTS_LOG"


def worker_identity() -> str:
    return os.environ.get(WORKER_ENV) or f"{socket.gethostname()}-{os.getpid()}"


class ExecutionLog:
    """An append-only log file shared by processes; one ``write(2)`` per line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        # Opened lazily and again after a fork, so each process has its own.
        if self._fd is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def append(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            fd = self._descriptor()
            written = os.write(fd, line)
        if written != len(line):  # a full disk; a short line would be skipped when read
            raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")


def recording(
    log: str | os.PathLike[str] | ExecutionLog,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a handler (sync or async, taking ``(payload)`` or ``(payload, ctx)``)
    so that each call appends its line to ``log`` before returning."""
    target = log if isinstance(log, ExecutionLog) else ExecutionLog(log)

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        wants_context = len(inspect.signature(func).parameters) >= 2

        def args(payload: dict[str, Any], ctx: HandlerContext) -> tuple[Any, ...]:
            return (payload, ctx) if wants_context else (payload,)

        def write(ctx: HandlerContext, start: float, outcome: str) -> None:
            target.append(
                {
                    "uid": ctx.uid,
                    "namespace": ctx.namespace,
                    "name": ctx.name,
                    "attempt": ctx.attempt,
                    "worker": worker_identity(),
                    "pid": os.getpid(),
                    "start": start,
                    "end": time.time(),
                    "outcome": outcome,
                }
            )

        if inspect.iscoroutinefunction(func):

            async def run_async(payload: dict[str, Any], ctx: HandlerContext) -> Any:
                start, outcome = time.time(), FAILED
                try:
                    result = await func(*args(payload, ctx))
                    outcome = SUCCEEDED
                    return result
                except asyncio.CancelledError:
                    outcome = CANCELLED
                    raise
                finally:
                    write(ctx, start, outcome)

            wrapper: Callable[..., Any] = run_async
        else:

            def run_sync(payload: dict[str, Any], ctx: HandlerContext) -> Any:
                start, outcome = time.time(), FAILED
                try:
                    result = func(*args(payload, ctx))
                    outcome = SUCCEEDED
                    return result
                finally:
                    write(ctx, start, outcome)

            wrapper = run_sync
        # Not functools.wraps: its __wrapped__ would make inspect.signature
        # report the inner signature, and the registry would then call the
        # wrapper without the context it needs.
        wrapper.__name__ = getattr(func, "__name__", "handler")
        wrapper.__qualname__ = getattr(func, "__qualname__", wrapper.__name__)
        wrapper.__doc__ = func.__doc__
        return wrapper

    return wrap
