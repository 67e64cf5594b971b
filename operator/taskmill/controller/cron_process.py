"""The CronTask controller in a process of its own.

While Tasks flow, the operator's process is busy: its event loop serves the
lease API and writes statuses, and every thread in it shares one GIL. A
timer in that process fires late by whatever is ahead of it (measured under
a saturating load: p99 0.5 s in a thread of its own). Here the
:class:`~taskmill.controller.cron.CronController` runs in a child process,
with its own interpreter and API connections, so a fire waits only for the
kernel to give it a core.

The operator keeps its watches: :class:`CronProcess` takes CronTask and
child-Task events in the operator (``observe`` / ``observe_task``) and
writes them to the child's stdin, one JSON line each. The child writes one
line per fire back on stdout: the fire lag, for the operator's metrics.

The child lives while :meth:`CronProcess.run` does (only while leading). It
exits when its stdin closes, so it never outlives the operator, even one
killed with SIGKILL. If it dies on its own it is started again, and the
operator replays the latest version of every CronTask and child it holds:
the controller rebuilds its state from them as after a restart.

A child that lives but whose event loop is stuck (a computation that does
not return, a process stopped) would fire nothing and never die, so the
operator sends a heartbeat: every ``heartbeat_seconds`` a ``["ping", n]``
line on stdin, which the child's loop answers with ``pong n`` on stdout. No
answer within ``heartbeat_timeout_seconds`` and the child is killed, then
started again like one that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from taskmill import logs
from taskmill.controller.cron import CronController
from taskmill.controller.effects import Effects
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.clock import WallClock
from taskmill.kube.client import KubeClient
from taskmill.kube.config import KubeConfig

# Named, not __name__: the child runs this module as __main__.
log = logging.getLogger("taskmill.controller.cron_process")

#: The largest message: a Kubernetes object is at most ~1.5 MiB in etcd.
MAX_LINE = 16 * 1024 * 1024
#: Between restarts of a child that keeps dying.
RESTART = BackoffPolicy(initial_seconds=0.5, factor=2, max_seconds=30, jitter=0)
#: A child that ran this long before dying starts the backoff afresh.
HEALTHY_SECONDS = 60.0
#: How long a child may take to stop after its stdin closes.
STOP_SECONDS = 10.0
#: Between heartbeats, and how long an answer may take: generous, since the
#: child answers after the events queued before the ping (a replay of
#: thousands of CronTasks takes seconds).
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TIMEOUT_SECONDS = 60.0

# Message kinds on the child's stdin: a CronTask event, a child Task event,
# and the end of the replay that starts each child.
_CRONTASK, _TASK, _SYNCED = "c", "t", "synced"
# A heartbeat on stdin, and its answer on stdout (beside the fire lags).
_PING, _PONG = "ping", b"pong "

Key = tuple[str, str, str]


class CronProcess:
    """Runs the CronTask controller in a child process; see the module docs."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        max_connections: int,
        events_per_second: float,
        component: str,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        heartbeat_timeout_seconds: float = HEARTBEAT_TIMEOUT_SECONDS,
    ) -> None:
        self._heartbeat_seconds = heartbeat_seconds
        self._heartbeat_timeout = heartbeat_timeout_seconds
        #: Children killed because they stopped answering the heartbeat.
        self.unresponsive_kills = 0
        #: The newest heartbeat the running child answered.
        self._pong = 0
        self._ponged = asyncio.Event()
        self._settings = {
            # The temporary files behind inline certificates stay with this
            # process, which outlives the child; their paths are passed on.
            "config": config.to_dict(),
            "max_connections": max_connections,
            "events_per_second": events_per_second,
            "component": component,
        }
        #: The latest version of every CronTask and child Task, by (kind, namespace,
        #: name), as JSON: encoded once, replayed to every new child as it is.
        self._latest: dict[Key, bytes] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._lags: deque[float] = deque(maxlen=1000)
        #: Called with every fire lag the child reports (the metrics' histogram).
        self.lag_observers: list[Callable[[float], None]] = []

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def fire_lags(self) -> list[float]:
        """The last 1000 fire lags (seconds), for metrics."""
        return list(self._lags)

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A CronTask watch event."""
        self._hand_over(_CRONTASK, event_type, body)

    def observe_task(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event of a Task labelled as some CronTask's child."""
        self._hand_over(_TASK, event_type, body)

    def _hand_over(self, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        try:
            encoded = orjson.dumps(body)
        except TypeError:  # never into the caller's watch loop
            log.exception("cannot hand %s/%s to the CronTask process", *key[1:])
            return
        if event_type == "DELETED":
            self._latest.pop(key, None)
        else:
            self._latest[key] = encoded
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(_event(kind, event_type, encoded))

    async def run(self) -> None:
        """Keep a child running until cancelled; stop it then."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                code: int | str = await self._run_child()
            except Exception as exc:  # cannot start one (no memory, no pids): try again
                code = f"{type(exc).__name__}: {exc}"
            failures = 1 if time.monotonic() - started > HEALTHY_SECONDS else failures + 1
            delay = RESTART.base_delay(failures)
            log.error("the CronTask process ended (%s); starting it in %.1fs", code, delay)
            await asyncio.sleep(delay)

    async def _run_child(self) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",  # the working directory is not put on sys.path
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        lags: asyncio.Task[None] | None = None
        try:
            assert process.stdin is not None
            assert process.stdout is not None
            settings = {**self._settings, "log_level": logging.getLogger().getEffectiveLevel()}
            process.stdin.write(_line(settings))
            for (kind, _, _), encoded in self._latest.items():
                process.stdin.write(_event(kind, None, encoded))
            # The child fires nothing before this line: every CronTask and
            # child it knows of has arrived (Forbid and Replace see the
            # children of a CronTask before its first fire).
            process.stdin.write(_line([_SYNCED]))
            # From here on events go straight to the child (nothing was awaited
            # since the replay, so none slipped in between).
            self._process = process
            self._pong = 0
            lags = asyncio.create_task(self._read_lags(process.stdout))
            watch = asyncio.create_task(self._watch(process))
            try:
                return await process.wait()
            finally:
                watch.cancel()
        finally:
            self._process = None
            try:
                if process.returncode is None and process.stdin is not None:
                    process.stdin.close()  # how the child is told to stop
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), STOP_SECONDS)
            finally:
                # Also when cancelled again while waiting: never leave it behind.
                if process.returncode is None:
                    log.warning("the CronTask process did not stop; killing it")
                    process.kill()
                if lags is not None:
                    lags.cancel()

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        """Ping the child; kill it when an answer does not come in time."""
        assert process.stdin is not None
        sequence = 0
        while process.returncode is None:
            sequence += 1
            process.stdin.write(_line([_PING, sequence]))
            try:
                await asyncio.wait_for(self._answered(sequence), self._heartbeat_timeout)
            except TimeoutError:
                log.error(
                    "the CronTask process (pid %d) did not answer a heartbeat within %.1fs; "
                    "killing it",
                    process.pid,
                    self._heartbeat_timeout,
                )
                self.unresponsive_kills += 1
                process.kill()  # the restart path of run() takes it from here
                return
            await asyncio.sleep(self._heartbeat_seconds)

    async def _answered(self, sequence: int) -> None:
        while self._pong < sequence:
            self._ponged.clear()
            await self._ponged.wait()

    async def _read_lags(self, stdout: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # an overlong line: not ours to read
                continue
            if not line:
                return
            if line.startswith(_PONG):
                with contextlib.suppress(ValueError):
                    self._pong = max(self._pong, int(line[len(_PONG) :]))
                    self._ponged.set()
                continue
            try:
                lag = float(line)
            except ValueError:
                continue
            self._lags.append(lag)
            for observe in self.lag_observers:
                observe(lag)


def _line(message: Any) -> bytes:
    return orjson.dumps(message) + b"\n"


def _event(kind: str, event_type: str | None, encoded_body: bytes) -> bytes:
    """The line ``[kind, event_type, body]`` around a body encoded already."""
    return b"[%b,%b,%b]\n" % (orjson.dumps(kind), orjson.dumps(event_type), encoded_body)


# -- the child ------------------------------------------------------------


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    settings = orjson.loads(await stdin.readline())
    logs.setup(logging.getLevelName(settings["log_level"]))
    client = KubeClient(
        KubeConfig.from_dict(settings["config"]),
        max_connections=settings["max_connections"],
        # Longer than a minute, so connections opened for a burst of
        # once-a-minute CronTasks are still open for the next burst (a TLS
        # handshake per child costs milliseconds of CPU on both sides).
        keepalive_seconds=75,
    )

    def report(lag: float) -> None:
        with contextlib.suppress(BrokenPipeError):  # the operator is gone; stdin says so next
            sys.stdout.buffer.write(b"%f\n" % lag)
            sys.stdout.buffer.flush()

    clock = WallClock()
    effects = Effects(
        client,
        clock,
        max_concurrent_writes=settings["max_connections"],
        events_per_second=settings["events_per_second"],
        component=settings["component"],
    )
    controller = CronController(client, effects, clock=clock, on_fire=report)

    def answer(sequence: int) -> None:
        # Written by this loop, so an answer says the loop still turns.
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.buffer.write(b"%b%d\n" % (_PONG, sequence))
            sys.stdout.buffer.flush()

    def take(line: bytes) -> bool:
        """Hand one event to the controller; False at the end of the replay."""
        try:
            kind, *event = orjson.loads(line)
            if kind == _SYNCED:
                return False
            if kind == _PING:
                answer(int(event[0]))
                return True
            event_type, body = event
            if kind == _TASK:
                controller.observe_task(event_type, body)
            else:
                controller.observe(event_type, body)
        except Exception:  # one bad event must not stop every CronTask
            log.exception("the CronTask process could not take an event")
        return True

    async def read_events() -> None:
        while line := await stdin.readline():
            take(line)

    # Everything the operator knows first, then the timers.
    while (line := await stdin.readline()) and take(line):
        pass
    if not line:  # the operator went away during the replay
        await client.close()
        return
    reading = asyncio.create_task(read_events())
    firing = asyncio.create_task(controller.run())
    try:
        # Stdin closing (the operator stopping, or gone) ends the child; so
        # does the controller failing, which the operator sees as an exit.
        done, _ = await asyncio.wait({reading, firing}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in (reading, firing):
            task.cancel()
        await asyncio.gather(reading, firing, return_exceptions=True)
        await client.close()


def main() -> None:
    # Ctrl-C in a terminal, or a SIGTERM to the process group, reaches this
    # process too; the operator handles it and closes our stdin, which is how
    # this process stops (after its in-flight creates).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        asyncio.run(_serve())
    except Exception:
        log.exception("the CronTask process failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
