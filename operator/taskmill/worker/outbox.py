"""Outcomes on their way to the operator, sent many to a request.

The operator answers a report only once the Task's status is written, which
takes a round trip to the API server. Sending each outcome on its own would
cost the operator one HTTP request per Task; instead the first outcome goes
out at once, and whatever finishes while reports are in flight waits for the
next one and travels with it. At low load nothing waits; at high load one
request carries many outcomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from taskmill.models.lease import MAX_BATCH, CompleteRequest, OutcomeResult

#: Keeps a request well under the operator's 1 MiB body limit; an outcome
#: larger than this travels alone.
MAX_BATCH_BYTES = 512 * 1024

Send = Callable[[list[bytes]], Awaitable[list[OutcomeResult]]]


@dataclass
class _Pending:
    lease_id: str
    body: bytes
    answer: asyncio.Future[OutcomeResult]


class Outbox:
    """``deliver`` an outcome and get the operator's answer for it.

    ``send`` posts a list of serialized outcomes and returns one result per
    outcome, in order; if it raises, every outcome of that request gets the
    exception (the caller retries).
    """

    def __init__(self, send: Send, *, in_flight: int = 2) -> None:
        self._send = send
        self._limit = in_flight
        self._in_flight = 0
        self._queue: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Outcomes waiting for a report in flight to return."""
        return len(self._queue)

    async def deliver(self, request: CompleteRequest) -> OutcomeResult:
        answer: asyncio.Future[OutcomeResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request.lease_id, orjson.dumps(request.to_api()), answer))
        self._dispatch()
        return await answer

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self._limit:
            batch: list[_Pending] = []
            size = 0
            while self._queue and len(batch) < MAX_BATCH:
                item = self._queue[0]
                if batch and size + len(item.body) > MAX_BATCH_BYTES:
                    break
                batch.append(self._queue.pop(0))
                size += len(item.body)
            self._in_flight += 1
            task = asyncio.create_task(self._post(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, batch: list[_Pending]) -> None:
        try:
            results = await self._send([item.body for item in batch])
            by_lease = {result.lease_id: result for result in results}
            for item in batch:
                result = by_lease.get(item.lease_id)
                if result is None:
                    result = OutcomeResult(lease_id=item.lease_id, error="InternalError")
                if not item.answer.done():
                    item.answer.set_result(result)
        except Exception as exc:
            for item in batch:
                if not item.answer.done():
                    item.answer.set_exception(exc)
        finally:
            self._in_flight -= 1
            self._dispatch()
