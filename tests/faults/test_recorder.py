"""The recording wrapper: one line per call, whatever the handler does."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing.faults.recorder import WORKER_ENV, recording
from taskmill.testing.faults.records import read_executions
from taskmill.worker.context import HandlerContext
from taskmill.worker.registry import Registry


def context(attempt: int = 1) -> HandlerContext:
    return HandlerContext(
        name="t", namespace="ns", uid="u-1", type="x", attempt=attempt, logger=logging.getLogger()
    )


def test_each_call_appends_its_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKER_ENV, "w-7")
    log = tmp_path / "executions.jsonl"

    @recording(log)
    def flaky(payload: dict[str, Any], ctx: HandlerContext) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    with pytest.raises(RuntimeError):
        flaky({}, context(1))
    assert flaky({}, context(2)) == 2
    first, second = read_executions(log)
    assert (first.outcome, first.attempt, first.worker) == ("failed", 1, "w-7")
    assert (second.outcome, second.attempt, second.uid, second.name) == ("succeeded", 2, "u-1", "t")
    assert first.start <= first.end <= second.start


def test_an_async_handler_cancelled_midway_is_recorded_as_cancelled(tmp_path: Path) -> None:
    log = tmp_path / "executions.jsonl"

    @recording(log)
    async def slow(payload: dict[str, Any]) -> None:
        await asyncio.sleep(30)

    async def main() -> None:
        call = asyncio.ensure_future(slow({}, context()))
        await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(main())
    [execution] = read_executions(log)
    assert execution.outcome == "cancelled"


def test_the_wrapper_registers_with_the_context_argument(tmp_path: Path) -> None:
    registry = Registry()
    registry.register("x", recording(tmp_path / "log")(lambda payload: None), timeout_seconds=None)
    spec = registry.get("x")
    assert spec is not None
    assert spec.wants_context


def test_lines_from_many_threads_never_interleave(tmp_path: Path) -> None:
    log = tmp_path / "executions.jsonl"
    record = recording(log)(lambda payload: "x" * 2000)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: record({}, context(i + 1)), range(400)))
    (tmp_path / "partial").write_text(log.read_text() + '{"uid": "cut')
    assert sorted(e.attempt for e in read_executions(log)) == list(range(1, 401))
    assert len(read_executions(tmp_path / "partial")) == 400  # a torn last line is skipped
