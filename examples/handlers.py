"""Example handlers: what `taskmill dev up` runs, and a template for your own.

Run them with ``taskmill worker --handlers examples.handlers`` from the
repository root (or ``--handlers handlers`` from this directory).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import taskmill


@taskmill.handler("echo")
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload: its result is the Task's ``status.result``."""
    return payload


@taskmill.handler("fail")
def fail(payload: dict[str, Any]) -> None:
    """Always fail (retryably), to show retries, backoff and Dead."""
    raise RuntimeError(payload.get("message", "this handler always fails"))


@taskmill.handler("sleep")
async def sleep(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> dict[str, Any]:
    """Sleep ``seconds`` (an async handler), reporting progress as it goes."""
    seconds = float(payload.get("seconds", 1))
    started = time.monotonic()
    steps = 10
    for step in range(steps):
        await asyncio.sleep(seconds / steps)
        ctx.progress(100 * (step + 1) / steps)
    return {"slept": round(time.monotonic() - started, 3), "attempt": ctx.attempt}


@taskmill.handler("noop")
def noop(payload: dict[str, Any]) -> None:
    """Do nothing: the benchmarks' workload."""


@taskmill.handler("sync_sleep")
def sync_sleep(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> dict[str, Any]:
    """Sleep ``seconds`` in a thread, stopping early when told to (timeout or
    cancel): sync handlers cannot be interrupted, so they watch ``ctx.cancelled``."""
    stopped = ctx.cancelled.wait(float(payload.get("seconds", 1)))
    return {"stopped": stopped, "attempt": ctx.attempt}


@taskmill.handler("retry_later")
def retry_later(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> dict[str, Any]:
    """Ask for a retry after ``delay`` seconds (default 2) on the first attempt only."""
    if ctx.attempt == 1:
        raise taskmill.Retry("not yet", delay_seconds=float(payload.get("delay", 2)))
    return {"attempt": ctx.attempt}
