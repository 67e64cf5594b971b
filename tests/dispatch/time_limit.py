"""A time limit for one call, so a schedule computation that hangs fails its
test instead of hanging the run."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


class TimeLimitExceeded(AssertionError):
    """The guarded code ran past its limit (a hang, or a search not bounded)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` in the block after ``seconds`` of wall time.

    SIGALRM interrupts pure-Python loops (the kind a hang in schedule math
    is); it works on the main thread, where pytest runs tests.
    """

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitExceeded(f"did not return within {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
