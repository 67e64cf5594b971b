"""Per-key serialisation: one step per key at a time, events folded, holders in turn."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from taskmill.controller.workqueue import KeyedQueue

pytestmark = pytest.mark.asyncio


class Recorder:
    """A reconciler whose effects wait on a gate the test opens."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.overlaps = 0
        self.steps: list[str] = []
        self.gate = asyncio.Event()
        self.with_effects = True

    def step(self, key: str) -> Coroutine[Any, Any, None] | None:
        self.steps.append(key)
        if not self.with_effects:
            return None
        return self.effects(key)

    async def effects(self, key: str) -> None:
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        try:
            await self.gate.wait()
        finally:
            self.running.discard(key)


async def test_a_step_without_effects_runs_inline() -> None:
    recorder = Recorder()
    recorder.with_effects = False
    queue = KeyedQueue(recorder.step, name="test")
    queue.enqueue("a")
    assert recorder.steps == ["a"]
    assert "a" not in queue


async def test_events_for_a_busy_key_fold_into_one_more_pass() -> None:
    recorder = Recorder()
    queue = KeyedQueue(recorder.step, name="test")
    queue.enqueue("a")
    for _ in range(5):
        queue.enqueue("a")
    queue.enqueue("b")
    assert recorder.steps == ["a", "b"]
    recorder.gate.set()
    await queue.idle()
    assert recorder.steps.count("a") == 2  # the first pass and one for the five events
    assert recorder.overlaps == 0


async def test_a_holder_waits_for_the_key_and_a_dirty_key_runs_after_it() -> None:
    recorder = Recorder()
    queue = KeyedQueue(recorder.step, name="test")
    queue.enqueue("a")
    order: list[str] = []

    async def holder() -> None:
        async with queue.hold("a"):
            order.append("held")
            assert not recorder.running
            queue.requeue("a")  # what a write's result does

    waiting = asyncio.create_task(holder())
    await asyncio.sleep(0)
    assert order == []
    recorder.gate.set()
    await asyncio.wait_for(waiting, timeout=5)
    await queue.idle()
    assert order == ["held"]
    assert recorder.steps == ["a", "a"]  # requeued by the holder: looked at again


async def test_a_cancelled_holder_passes_its_turn_on() -> None:
    recorder = Recorder()
    queue = KeyedQueue(recorder.step, name="test")
    queue.enqueue("a")
    entered: list[int] = []

    async def holder(n: int) -> None:
        async with queue.hold("a"):
            entered.append(n)

    first = asyncio.create_task(holder(1))
    second = asyncio.create_task(holder(2))
    await asyncio.sleep(0)
    first.cancel()
    recorder.gate.set()
    await asyncio.wait_for(second, timeout=5)
    assert entered == [2]
    assert "a" not in queue


async def test_a_failing_step_is_contained_to_its_key() -> None:
    def step(key: str) -> None:
        if key == "bad":
            raise RuntimeError("boom")

    queue = KeyedQueue(step, name="test")
    queue.enqueue("bad")
    queue.enqueue("good")
    assert "bad" not in queue
