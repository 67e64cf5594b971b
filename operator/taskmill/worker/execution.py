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
from collections.abc import Coroutine
from typing import Any

import orjson

from taskmill.models.lease import CompleteRequest, LeasedTask, Outcome, ReportedError
from taskmill.worker.context import HandlerContext
from taskmill.worker.errors import Fail, Retry
from taskmill.worker.registry import HandlerSpec


class Cancelled(Exception):
    """The Task was cancelled (or the lease lost) while the handler ran."""


class HandlerExit(Exception):
    """A handler raised an exception that is not an ``Exception`` (e.g. ``SystemExit``)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


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
        work: asyncio.Future[Any] = asyncio.ensure_future(_contained(spec.func(*args)))
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
    except BaseException as exc:
        # SystemExit and KeyboardInterrupt too: a handler's exit() ends its
        # attempt, never the worker.
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


async def _contained(handler: Coroutine[Any, Any, Any]) -> Any:
    """Run an async handler so that whatever it raises stays in its result.

    asyncio re-raises SystemExit and KeyboardInterrupt out of the event loop,
    which would end the worker; here they become the attempt's error."""
    try:
        return await handler
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise HandlerExit(exc) from exc


def _error(
    exc: BaseException, *, retryable: bool = True, retry_after: float | None = None
) -> ReportedError:
    if isinstance(exc, HandlerExit):
        exc = exc.cause
    return ReportedError(
        type=type(exc).__name__,
        message=_printable(_describe(exc))[:4096],
        traceback=_printable("".join(traceback.format_exception(exc)))[-16384:],
        retryable=retryable,
        retry_after_seconds=retry_after,
    )


def _describe(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot say what it is."""
    try:
        return str(exc)
    except Exception as err:
        return f"<{type(exc).__name__} could not be printed: {type(err).__name__}>"


def _printable(text: str) -> str:
    """Text that can travel as JSON: lone surrogates become ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")
