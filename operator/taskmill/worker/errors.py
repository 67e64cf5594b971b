"""Exceptions a handler raises to steer what happens to its Task.

Any other exception is a retryable failure: the Task is attempted again after
its backoff, until ``maxAttempts``.
"""

from __future__ import annotations


class Retry(Exception):
    """Ask for another attempt after ``delay_seconds`` (instead of the backoff).

    The attempt still counts: a Task that keeps asking for retries ends Dead
    after ``maxAttempts``.
    """

    def __init__(self, message: str = "retry requested", *, delay_seconds: float = 0) -> None:
        super().__init__(message)
        if delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")
        self.delay_seconds = delay_seconds


class Fail(Exception):
    """Fail the Task permanently: it goes Dead now, whatever attempts are left."""
