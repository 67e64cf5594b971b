"""Running one handler call: payload in, outcome out, whatever the handler does.

Sync handlers run in a thread pool, async ones on the loop. The per-attempt
timeout (the Task's ``timeoutSeconds``, else the handler's own) cancels an
async handler; a sync one cannot be interrupted by Python, so its context's
``cancelled`` event is set, the attempt is reported as timed out, and the
thread is left to finish on its own (handlers that may run long should check
``ctx.cancelled``). Every exception becomes a reported error; nothing a
handler does can end the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import traceback
from typing import Any

import orjson

from taskmill.models.lease import CompleteRequest, LeasedTask, Outcome, ReportedError
from taskmill.worker.context import HandlerContext
from taskmill.worker.errors import Fail, Retry
from taskmill.worker.registry import HandlerSpec


class Cancelled(Exception):
    """The Task was cancelled (or the lease lost) while the handler ran."""


async def call_handler(
    spec: HandlerSpec,
    leased: LeasedTask,
    ctx: HandlerContext,
    pool: concurrent.futures.Executor,
    cancel: asyncio.Event,
) -> CompleteRequest:
    """Run the handler once and describe its outcome as a ``complete`` call."""
    timeout = leased.timeout_seconds or spec.timeout_seconds
    args: tuple[Any, ...] = (
        (leased.payload or {}, ctx) if spec.wants_context else (leased.payload or {},)
    )
    if spec.is_async:
        work: asyncio.Future[Any] = asyncio.ensure_future(spec.func(*args))
    else:
        work = asyncio.get_running_loop().run_in_executor(pool, lambda: spec.func(*args))
    cancelled = asyncio.ensure_future(cancel.wait())
    try:
        done, _ = await asyncio.wait(
            {work, cancelled}, timeout=timeout, return_when="FIRST_COMPLETED"
        )
    except asyncio.CancelledError:
        # The worker is handing the Task back (shutdown): stop the handler too.
        ctx.cancelled.set()
        work.cancel()
        raise
    finally:
        cancelled.cancel()
    if work not in done:
        ctx.cancelled.set()
        work.cancel()
        if cancel.is_set():
            raise Cancelled(leased.lease_id)
        return _failure(
            leased,
            ReportedError(
                type="TimeoutError",
                message=f"attempt exceeded its timeout of {timeout:g}s",
                timed_out=True,
            ),
        )
    try:
        result = work.result()
    except Retry as exc:
        return _failure(leased, _error(exc, retry_after=exc.delay_seconds))
    except Fail as exc:
        return _failure(leased, _error(exc, retryable=False))
    except asyncio.CancelledError:
        return _failure(
            leased, ReportedError(type="CancelledError", message="handler was cancelled")
        )
    except Exception as exc:
        return _failure(leased, _error(exc))
    try:
        orjson.dumps(result)
    except TypeError as exc:
        message = f"handler returned a value that is not JSON: {exc}"
        return _failure(
            leased, ReportedError(type="ResultNotJSON", message=message, retryable=False)
        )
    return CompleteRequest(lease_id=leased.lease_id, outcome=Outcome.SUCCEEDED, result=result)


def _failure(leased: LeasedTask, error: ReportedError) -> CompleteRequest:
    return CompleteRequest(lease_id=leased.lease_id, outcome=Outcome.FAILED, error=error)


def _error(
    exc: BaseException, *, retryable: bool = True, retry_after: float | None = None
) -> ReportedError:
    return ReportedError(
        type=type(exc).__name__,
        message=str(exc)[:4096],
        traceback="".join(traceback.format_exception(exc))[-16384:],
        retryable=retryable,
        retry_after_seconds=retry_after,
    )
