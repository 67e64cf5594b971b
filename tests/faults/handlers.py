"""The fault suite's handler, recorded: ``taskmill worker --handlers tests.faults.handlers``.

``fault_work`` sleeps ``seconds`` (an async handler, so a lost lease or a
hand-back cancels it), fails while ``ctx.attempt <= failAttempts``, always
fails with ``alwaysFail``, and otherwise returns its attempt. Every call is
appended to the log named by ``TASKMILL_FAULTS_LOG``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import taskmill
from taskmill.testing.faults.recorder import LOG_ENV, recording


@taskmill.handler("fault_work")
@recording(os.environ.get(LOG_ENV, "executions.jsonl"))
async def fault_work(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> dict[str, Any]:
    await asyncio.sleep(float(payload.get("seconds", 0.2)))
    if payload.get("alwaysFail"):
        raise RuntimeError("this Task always fails")
    if ctx.attempt <= int(payload.get("failAttempts", 0)):
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return {"attempt": ctx.attempt}
