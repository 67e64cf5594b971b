"""What a handler gets besides its payload: who it is working for, and a way
to report progress and to notice cancellation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class HandlerContext:
    """Passed to handlers that take a second argument.

    ``uid`` and ``attempt`` together identify this execution: use them to make
    side effects idempotent, since delivery is at-least-once.
    """

    name: str
    namespace: str
    uid: str
    type: str
    attempt: int
    logger: logging.Logger
    #: Set when the Task is cancelled or the attempt timed out. Sync handlers
    #: poll it (``ctx.cancelled.is_set()`` or ``.wait(timeout)``); async
    #: handlers are also cancelled with ``asyncio.CancelledError``.
    cancelled: threading.Event = field(default_factory=threading.Event)
    _report_progress: Callable[[float | None, str | None], None] | None = field(
        default=None, repr=False
    )

    def progress(self, percent: float | None = None, message: str | None = None) -> None:
        """Report progress; buffered and sent with the next heartbeat, never blocking."""
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError("percent must be between 0 and 100")
        if self._report_progress is not None:
            self._report_progress(percent, message)
