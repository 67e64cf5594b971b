"""Per-key serialisation: never two steps for the same object at once.

The guarantee controller-runtime's workqueue and kopf's per-object
processing give: events for one key are handled in order, one at a time, and
events that arrive while a key is busy fold into one more pass once it is
free. A reconciler is a function ``step(key)`` that decides from what is
known now and returns either ``None`` (nothing to wait for: the common case,
run inline with no task created) or a coroutine carrying out its effects
(status writes, deletes, Events). While that coroutine runs, the key is busy;
a write's result re-queues the key (:meth:`KeyedQueue.requeue`) and the step
runs again with the new state, rather than the write calling back into
decision code.

Work that is not a reconcile but must not overlap one (granting a lease,
recording a worker's outcome) takes the key with :meth:`KeyedQueue.hold`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

Step = Callable[[K], Coroutine[Any, Any, None] | None]


class KeyedQueue(Generic[K]):
    def __init__(self, step: Step[K], *, name: str) -> None:
        self._step = step
        self._name = name
        #: Busy keys, each with the holders waiting for it (in arrival order).
        self._busy: dict[K, list[asyncio.Future[None]]] = {}
        #: Busy keys that must be looked at again once free.
        self._dirty: set[K] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.steps = 0

    def __contains__(self, key: object) -> bool:
        """Whether the key is busy (a step's effects or a holder running)."""
        return key in self._busy

    def dirty(self, key: K) -> bool:
        """Whether the busy key is to be looked at again once free."""
        return key in self._dirty

    def enqueue(self, key: K) -> None:
        """Look at ``key``: now if it is free, else once it is."""
        if key in self._busy:
            self._dirty.add(key)
        else:
            self._run(key)

    #: A write's result re-queues the key (it is busy then, so this marks it).
    requeue = enqueue

    def _decide(self, key: K) -> Coroutine[Any, Any, None] | None:
        self.steps += 1
        try:
            return self._step(key)
        except Exception:
            # One object's fault stays with it: the next event looks again.
            log.exception("%s: step for %s failed", self._name, key)
            return None

    def _run(self, key: K) -> None:
        work = self._decide(key)
        if work is None:
            return
        self._busy[key] = []
        task = asyncio.get_running_loop().create_task(self._drive(key, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drive(self, key: K, work: Coroutine[Any, Any, None]) -> None:
        try:
            while True:
                try:
                    await work
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: effects for %s failed", self._name, key)
                if key not in self._dirty or self._busy.get(key):
                    break  # clean, or a holder is waiting: it goes first
                self._dirty.discard(key)
                next_work = self._decide(key)
                if next_work is None:
                    break
                work = next_work
        finally:
            self._release(key)

    def _release(self, key: K) -> None:
        waiters = self._busy.pop(key, [])
        while waiters:
            first = waiters.pop(0)
            if not first.done():
                self._busy[key] = waiters
                first.set_result(None)
                return
        if key in self._dirty:
            self._dirty.discard(key)
            self._run(key)

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        """Have ``key`` to oneself for the block (waiting while it is busy)."""
        if key in self._busy:
            turn = asyncio.get_running_loop().create_future()
            self._busy[key].append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._release(key)  # it was our turn: pass it on
                raise
        else:
            self._busy[key] = []
        try:
            yield
        finally:
            self._release(key)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no key is busy (for tests and orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
