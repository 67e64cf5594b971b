"""Handlers only the SIGTERM test's own workers load (the session worker does
not know ``slow_noop``, so it never takes these Tasks)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import taskmill


@taskmill.handler("slow_noop")
async def slow_noop(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> dict[str, Any]:
    await asyncio.sleep(float(payload.get("seconds", 1)))
    return {"attempt": ctx.attempt}


@taskmill.handler("stuck")
def stuck(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> None:
    """A sync handler that ignores ``ctx.cancelled``: it cannot be stopped."""
    threading.Event().wait(float(payload.get("seconds", 120)))
