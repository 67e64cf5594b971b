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
