"""One handler call, turned into the outcome the worker reports."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

import taskmill
from taskmill.models.lease import CompleteRequest, LeasedTask, Outcome
from taskmill.worker.execution import Cancelled, call_handler
from taskmill.worker.registry import Registry


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        yield executor


def run(
    func: Callable[..., Any],
    pool: concurrent.futures.Executor,
    *,
    payload: dict[str, Any] | None = None,
    timeout: float | None = None,
    cancel_after: float | None = None,
) -> tuple[CompleteRequest, taskmill.HandlerContext]:
    registry = Registry()
    taskmill.handler("t", into=registry)(func)
    spec = registry.get("t")
    assert spec is not None
    leased = LeasedTask(
        lease_id="L",
        namespace="ns",
        name="n",
        uid="u",
        type="t",
        attempt=2,
        payload=payload or {"x": 1},
        timeout_seconds=timeout,
        expires_at=dt.datetime.now(dt.UTC),
        heartbeat_seconds=10,
    )
    ctx = taskmill.HandlerContext("n", "ns", "u", "t", 2, logging.getLogger("test"))

    async def go() -> CompleteRequest:
        cancel = asyncio.Event()
        if cancel_after is not None:
            asyncio.get_running_loop().call_later(cancel_after, cancel.set)
        return await call_handler(spec, leased, ctx, pool, cancel)

    return asyncio.run(go()), ctx


def test_a_sync_handler_result_is_reported(pool: concurrent.futures.Executor) -> None:
    outcome, _ = run(lambda payload: {"got": payload}, pool)

    assert outcome.outcome == Outcome.SUCCEEDED
    assert outcome.result == {"got": {"x": 1}}


def test_an_async_handler_gets_its_context(pool: concurrent.futures.Executor) -> None:
    async def handler(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> list[object]:
        return [ctx.uid, ctx.attempt, ctx.namespace]

    outcome, _ = run(handler, pool)

    assert outcome.result == ["u", 2, "ns"]


def test_an_exception_is_a_retryable_failure_with_traceback(
    pool: concurrent.futures.Executor,
) -> None:
    def handler(payload: dict[str, Any]) -> None:
        raise KeyError("missing")

    outcome, _ = run(handler, pool)

    assert outcome.outcome == Outcome.FAILED
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("KeyError", True)
    assert "raise KeyError" in (outcome.error.traceback or "")


def test_fail_is_permanent_and_retry_carries_its_delay(pool: concurrent.futures.Executor) -> None:
    def fails(payload: dict[str, Any]) -> None:
        raise taskmill.Fail("never")

    def retries(payload: dict[str, Any]) -> None:
        raise taskmill.Retry(delay_seconds=7)

    failed, _ = run(fails, pool)
    retried, _ = run(retries, pool)

    assert failed.error is not None
    assert failed.error.retryable is False
    assert retried.error is not None
    assert retried.error.retry_after_seconds == 7


def test_an_async_handler_past_its_timeout_is_stopped(pool: concurrent.futures.Executor) -> None:
    stopped = []

    async def slow(payload: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append(True)
            raise

    outcome, ctx = run(slow, pool, timeout=0.05)

    assert outcome.error is not None
    assert outcome.error.timed_out
    assert stopped == [True]
    assert ctx.cancelled.is_set()


def test_a_sync_handler_past_its_timeout_is_told_to_stop(pool: concurrent.futures.Executor) -> None:
    seen = threading.Event()

    def slow(payload: dict[str, Any], ctx: taskmill.HandlerContext) -> None:
        if ctx.cancelled.wait(30):
            seen.set()

    outcome, _ = run(slow, pool, timeout=0.05)

    assert outcome.error is not None
    assert outcome.error.type == "TimeoutError"
    assert seen.wait(5)


def test_cancellation_stops_the_handler_without_an_outcome(
    pool: concurrent.futures.Executor,
) -> None:
    async def slow(payload: dict[str, Any]) -> None:
        await asyncio.sleep(60)

    with pytest.raises(Cancelled):
        run(slow, pool, cancel_after=0.05)


def test_a_result_that_is_not_json_fails_permanently(pool: concurrent.futures.Executor) -> None:
    outcome, _ = run(lambda payload: {"when": object()}, pool)

    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("ResultNotJSON", False)


def test_handlers_must_take_a_payload_and_maybe_a_context() -> None:
    registry = Registry()

    with pytest.raises(TypeError):
        taskmill.handler("t", into=registry)(lambda: None)
    with pytest.raises(ValueError, match="invalid handler type"):
        taskmill.handler("bad type!", into=registry)(lambda payload: None)


def test_system_exit_from_a_handler_ends_the_attempt_not_the_worker(
    pool: concurrent.futures.Executor,
) -> None:
    def sync_exit(payload: dict[str, Any]) -> None:
        raise SystemExit(3)

    async def async_exit(payload: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    for handler, kind in ((sync_exit, "SystemExit"), (async_exit, "KeyboardInterrupt")):
        outcome, _ = run(handler, pool)
        assert outcome.outcome == Outcome.FAILED
        assert outcome.error is not None
        assert (outcome.error.type, outcome.error.retryable) == (kind, True)


def test_an_exception_that_cannot_print_itself_is_still_reported(
    pool: concurrent.futures.Executor,
) -> None:
    class Mute(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    def handler(payload: dict[str, Any]) -> None:
        raise Mute

    outcome, _ = run(handler, pool)

    assert outcome.error is not None
    assert outcome.error.type == "Mute"
    assert "could not be printed" in outcome.error.message


def test_an_error_text_that_is_not_valid_unicode_still_travels_as_json(
    pool: concurrent.futures.Executor,
) -> None:
    def handler(payload: dict[str, Any]) -> None:
        raise ValueError("half a pair: \ud800")

    outcome, _ = run(handler, pool)

    assert outcome.error is not None
    assert orjson.loads(orjson.dumps(outcome.to_api()))["error"]["message"] == "half a pair: ?"
