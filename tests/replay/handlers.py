"""The one handler of the replay's validation run: a type no other test's
worker serves, so the measured Tasks run on that test's worker slots alone."""

from __future__ import annotations

import asyncio
from typing import Any

import taskmill


@taskmill.handler("replay_sleep")
async def replay_sleep(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> None:
    await asyncio.sleep(float(payload.get("seconds", 0)))
