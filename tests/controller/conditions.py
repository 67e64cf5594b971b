"""Waiting on a condition with a deadline, for the controller tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(
    condition: Callable[[], Any], what: str = "the condition", limit: float = 20
) -> None:
    """Poll ``condition`` until it is true; fail the test after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
