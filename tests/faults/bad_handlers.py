"""Handlers that misbehave in every way a handler can, for the bad-input suite.

Loaded by the suite's worker beside ``examples.handlers``; none of them may
end the worker, and each must end its Task with an error that says what
went wrong.
"""

from __future__ import annotations

import threading
from typing import Any

import taskmill


@taskmill.handler("returns_a_set")
def returns_a_set(payload: dict[str, Any]) -> object:
    return {1, 2, 3}


@taskmill.handler("returns_too_much")
def returns_too_much(payload: dict[str, Any]) -> dict[str, str]:
    return {"blob": "x" * 20_000}


@taskmill.handler("exits")
def exits(payload: dict[str, Any]) -> None:
    raise SystemExit(3)


@taskmill.handler("exits_async")
async def exits_async(payload: dict[str, Any]) -> None:
    raise KeyboardInterrupt


class Unprintable(Exception):
    """Its text cannot be had, and it holds a lock (it cannot be pickled)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def __str__(self) -> str:
        raise RuntimeError("no text")


@taskmill.handler("raises_unprintable")
def raises_unprintable(payload: dict[str, Any]) -> None:
    raise Unprintable


@taskmill.handler("raises_bad_unicode")
def raises_bad_unicode(payload: dict[str, Any]) -> None:
    raise ValueError("half a surrogate pair: \ud800")
