"""Scale: the operator with up to 100,000 pending Tasks.

Targets (from the issue): operator RSS < 1 GiB with 100,000 pending Tasks;
restart → first lease < 60 s; lease latency that does not grow with the
number of Tasks waiting.

One control plane, the operator, and the workers as the chart runs them
(2 workers x 4 slots, ``examples.handlers``). In one namespace:

1. **fill**: *parked* Tasks are created (``--create-concurrency`` at once)
   until ``--steps`` pending are reached (1,000, then 10,000, then 100,000).
   Their type, ``parked``, is one no worker handles, so they stay Pending in
   the operator's dispatcher for the whole run. The operator runs with
   ``--no-worker-after-seconds 1e9``: otherwise, 30 s after a type was last
   asked for, every one of its Pending Tasks gets a ``Waiting/NoWorker``
   status write (100,000 writes, a one-off per Task) and this would measure
   that sweep, not the steady state of a long queue. The API server's own
   write counters during each fill are in the JSON, to show that the creates
   were the only Task writes (``PUT leases`` there are the API server's own
   heartbeat Leases).
2. at each step, once the operator has seen every parked Task (its
   ``taskmill_tasks{phase="Pending"}`` gauge):
   - operator **RSS** (VmRSS) and its peak so far (VmHWM), and its CPU over
     ``--idle-seconds`` of quiet (background sweeps that grow with N show here);
   - **lease latency**: ``--probes`` ``noop`` Tasks, labelled, created at
     ``--probe-rate`` per second (paced, so this is latency, not throughput),
     in the same namespace and queue as the parked ones. Each is timed on
     the client's clock from the moment its create is sent until a watch
     (label-selected to the probes) shows it leased (``Running``, or
     already past it). p50/p90/p99/max per step.
3. **restart** at the last step: SIGTERM the operator, create one probe
   while it is down, spawn a new operator on the same lease port (the
   workers keep polling that URL, backing off to at most 10 s between
   failures), and time from the spawn: ``/readyz`` (the operator lists every
   Task, in pages, before it serves leases), the probe seen leased, and the
   operator's gauge counting every parked Task again. RSS after the restart,
   and one more probe round.

The pending Tasks share the probes' namespace and queue, and the dispatcher
keeps them in a lane of their own ((namespace, queue, ``parked``)): by
design (see ``taskmill.dispatch.dispatcher``) a decision never scans the
Tasks of a lane and never looks at lanes of types the worker did not ask
for, so what this benchmark puts under load is everything around the
decision that does grow with N: the engine's record of every Task, the
dispatcher's index, the watch stream, garbage collection over a larger
heap, and the full list on restart.
``bench/dispatch_decision.py`` times the decision itself at the same sizes.

    python bench/scale.py [--steps 1000,10000,100000] [--max-pending N]
        [--probes 200] [--probe-rate 20] [--create-concurrency 48]
        [--workers 2] [--worker-concurrency 4] [--idle-seconds 5] [--profile]

``--max-pending`` (default: the largest step) caps the steps and, if it is
not one of them, is added as the last; a short run: ``--steps 500,2000
--probes 40``. The full run creates 100,000 Tasks at the API server's pace
(a few hundred per second on 2 cores) and takes 10-20 minutes.
``--profile`` records the restarted operator with py-spy from its spawn
until it counts every parked Task again
(``bench/results/scale-restart.speedscope.json``). Writes JSON to
bench/results/scale.json and prints one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import harness

from taskmill.kube.client import ApiError, KubeClient

NAMESPACE = "scale"
PARKED_TYPE = "parked"
PROBE_TYPE = "noop"
#: Set on probes only, so the watch that times them sees nothing else.
PROBE_LABEL = "bench.taskmill.dev/probe"
#: See the module docstring: no NoWorker sweep over the parked Tasks.
OPERATOR_ARGS = ("--no-worker-after-seconds", "1e9")
#: Phases a probe can be seen in once it has been leased (a watch event per
#: write, but the Running one may arrive after the probe was already fetched
#: in a later state when the watch is re-established).
LEASED_PHASES = frozenset({"Running", "Succeeded", "Dead", "Waiting"})
RSS_TARGET = 1 << 30
RESTART_TARGET_SECONDS = 60.0
WARM_UP_PROBES = 20
MIB = 1 << 20


# --- timing probes with a watch ---


class ProbeWatch:
    """When each probe was first seen leased, on this process's clock.

    One watch on the namespace's Tasks, label-selected to the probes, for the
    whole run (the API server is never restarted); re-established from the
    last resourceVersion when the server ends the stream.
    """

    def __init__(self, api: KubeClient, namespace: str) -> None:
        self.api = api
        self.url = harness.tasks_path(namespace)
        self.seen: dict[str, float] = {}
        #: Probes seen Succeeded: their last write is behind them.
        self.finished: set[str] = set()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rv = ""

    async def start(self) -> None:
        await self._list()
        self._task = asyncio.create_task(self._run(), name="probe-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(
        self, names: Iterable[str], within: float, *, finished: bool = False
    ) -> list[str]:
        """Wait until every named probe was seen leased (or ``finished``);
        returns those that were not."""
        wanted = set(names)
        deadline = time.monotonic() + within
        while True:
            done = self.finished if finished else self.seen.keys()
            missing = sorted(wanted - done)
            remaining = deadline - time.monotonic()
            if not missing or remaining <= 0:
                return missing
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)

    async def _list(self) -> None:
        listed = await self.api.get(self.url, params={"labelSelector": PROBE_LABEL})
        for item in listed["items"]:
            self._note(item)
        self._rv = listed["metadata"]["resourceVersion"]

    async def _run(self) -> None:
        params = {"labelSelector": PROBE_LABEL}
        while True:
            try:
                async for event in self.api.watch(
                    self.url, resource_version=self._rv, params=params
                ):
                    if event.get("type") == "ERROR":
                        await self._list()  # e.g. 410 Gone: start over from a list
                        break
                    obj = event["object"]
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._note(obj)
            except (ApiError, OSError, TimeoutError) as exc:
                print(f"scale: probe watch interrupted ({exc!r}); resuming", file=sys.stderr)
                await asyncio.sleep(0.5)

    def _note(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        leased = status.get("phase") in LEASED_PHASES and status.get("attempts", 0) >= 1
        if leased and name not in self.seen:
            self.seen[name] = time.perf_counter()
            self._arrived.set()
        if status.get("phase") == "Succeeded" and name not in self.finished:
            self.finished.add(name)
            self._arrived.set()


def probe_manifest(name: str) -> dict[str, Any]:
    manifest = harness.task_manifest(name, NAMESPACE, PROBE_TYPE)
    manifest["metadata"]["labels"] = {PROBE_LABEL: "true"}
    return manifest


async def create_probe(api: KubeClient, name: str) -> float:
    """Create one probe; returns the perf_counter time its create was sent."""
    sent = time.perf_counter()
    await api.create(harness.tasks_path(NAMESPACE), probe_manifest(name))
    return sent


async def probe_round(
    api: KubeClient, watch: ProbeWatch, stack: harness.Stack, label: str, count: int, rate: float
) -> dict[str, Any]:
    """Lease latency of ``count`` probes created ``rate`` per second."""
    names = [f"probe-{label}-{i}" for i in range(count)]
    sent: dict[str, float] = {}
    round_trips: list[float] = []
    # Paced against a schedule, not one after another: a slow create must not
    # delay the next, or the rate would drop exactly when things get slow.
    start = time.perf_counter()

    async def one(index: int) -> None:
        await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
        sent[names[index]] = await create_probe(api, names[index])
        round_trips.append(time.perf_counter() - sent[names[index]])

    operator_pid = stack.operator.pid  # type: ignore[union-attr]
    cpu_before = harness.cpu_seconds(operator_pid)
    await asyncio.gather(*(one(i) for i in range(count)))
    missing = await watch.wait(names, within=120)
    elapsed = time.perf_counter() - start
    cpu = harness.cpu_seconds(operator_pid) - cpu_before
    # Their Succeeded writes must not spill into what comes next (a fill's
    # write count, an idle CPU sample).
    await watch.wait(names, within=120, finished=True)
    latencies = [watch.seen[name] - sent[name] for name in names if name in watch.seen]
    return {
        "probes": count,
        "rate_per_second": rate,
        "not_leased_within_120s": len(missing),
        **quantiles_ms(latencies),
        "create_round_trip_p50_ms": round(1000 * harness.percentile(round_trips, 0.5), 1),
        "operator_cpu_percent": round(100 * cpu / elapsed, 1),
    }


def quantiles_ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(1000 * harness.percentile(samples, 0.5), 1),
        "p90_ms": round(1000 * harness.percentile(samples, 0.9), 1),
        "p99_ms": round(1000 * harness.percentile(samples, 0.99), 1),
        "max_ms": round(1000 * max(samples, default=float("nan")), 1),
    }


# --- filling the queue ---


async def create_parked(api: KubeClient, index: int) -> None:
    name = f"parked-{index:06d}"
    manifest = harness.task_manifest(name, NAMESPACE, PARKED_TYPE)
    for attempt in range(1, 6):
        try:
            await api.create(harness.tasks_path(NAMESPACE), manifest)
            return
        except ApiError as exc:
            if exc.already_exists and attempt > 1:
                return  # an earlier attempt landed although its answer was lost
            if exc.status < 500 or attempt == 5:
                raise
        except (OSError, TimeoutError):
            if attempt == 5:
                raise
        await asyncio.sleep(0.5 * attempt)


async def fill(api: KubeClient, start: int, stop: int, concurrency: int) -> float:
    """Create parked Tasks ``start..stop-1``; returns the seconds it took."""
    began = time.perf_counter()
    done = 0
    report_every = max(1000, (stop - start) // 10)

    async def one(offset: int) -> None:
        nonlocal done
        await create_parked(api, start + offset)
        done += 1
        if done % report_every == 0:
            rate = done / (time.perf_counter() - began)
            print(f"scale: {start + done} parked Tasks ({rate:.0f}/s)", file=sys.stderr)

    await harness.run_bounded(stop - start, concurrency, one)
    return time.perf_counter() - began


async def operator_pending(stack: harness.Stack) -> float:
    """The operator's count of Pending Tasks (its scrape is a blocking call)."""
    return await asyncio.to_thread(stack.operator_metric, "taskmill_tasks", 'phase="Pending"')


async def until_seen(stack: harness.Stack, pending: int, within: float) -> None:
    """Wait until the operator has taken in every parked Task from its watch."""
    deadline = time.monotonic() + within
    while (seen := await operator_pending(stack)) < pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"operator sees {seen:.0f} of {pending} Pending Tasks")
        await asyncio.sleep(0.5)


# --- process figures ---


def memory(stack: harness.Stack) -> dict[str, float]:
    """RSS in MiB: the operator's now and at its peak, and the control plane's."""
    operator_pid = stack.operator.pid  # type: ignore[union-attr]
    figures = {
        "operator_rss_mib": harness.rss_bytes(operator_pid) / MIB,
        "operator_peak_rss_mib": harness.peak_rss_bytes(operator_pid) / MIB,
    }
    for name, pid in stack.plane.pids.items():
        figures[f"{name}_rss_mib"] = harness.rss_bytes(pid) / MIB
    return {name: round(value, 1) for name, value in figures.items()}


async def idle_cpu_percent(stack: harness.Stack, seconds: float) -> float:
    """The operator's CPU with nothing happening but N Tasks waiting."""
    pid = stack.operator.pid  # type: ignore[union-attr]
    before, started = harness.cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    return round(100 * (harness.cpu_seconds(pid) - before) / (time.perf_counter() - started), 1)


# --- the run ---


def child_operator() -> int | None:
    """The pid of an operator process this process started, if one runs."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == me and b"\0operator\0" in (entry / "cmdline").read_bytes():
                return int(entry.name)
    return None


async def spawned_operator(within: float = 30) -> int:
    """The pid of the operator being started: Stack.start_operator hands it
    over only once it is ready, too late to profile its start."""
    deadline = time.monotonic() + within
    while (pid := child_operator()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the restarted operator's process did not appear")
        await asyncio.sleep(0.01)
    return pid


def start_profiler(pid: int, target: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--rate", "200", "--format", "speedscope",
         "--output", str(target), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def restart(
    api: KubeClient, watch: ProbeWatch, stack: harness.Stack, pending: int, profile: bool
) -> dict[str, Any]:
    """Stop the operator, put a probe in while it is down, start it again on
    the same port, and time what a restarted operator has to do."""
    port = int(stack.lease_url.rsplit(":", 1)[1])
    stopping = time.perf_counter()
    stack.stop_operator()
    stopped = time.perf_counter() - stopping
    # Created while no operator runs, so its lease can only come from the new one.
    name = "probe-restart"
    await create_probe(api, name)
    spawned = time.perf_counter()
    # start_operator blocks until /readyz answers; in a thread, so this loop
    # keeps reading the probe watch meanwhile and its timestamps stay true.
    starting = asyncio.create_task(
        asyncio.to_thread(stack.start_operator, OPERATOR_ARGS, port=port)
    )
    profiler = None
    if profile:
        target = harness.RESULTS / "scale-restart.speedscope.json"
        profiler = start_profiler(await spawned_operator(), target)
    await starting
    ready = time.perf_counter() - spawned
    at_ready = memory(stack)
    missing = await watch.wait([name], within=600)
    if missing:
        raise TimeoutError("the probe created during the restart was not leased in 600 s")
    first_lease = watch.seen[name] - spawned
    at_first_lease = memory(stack)
    await until_seen(stack, pending, within=900)
    all_seen = time.perf_counter() - spawned
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT, not SIGTERM
        profiler.wait(60)
    return {
        "pending": pending,
        "shutdown_seconds": round(stopped, 2),
        "spawn_to_ready_seconds": round(ready, 2),
        "spawn_to_first_lease_seconds": round(first_lease, 2),
        "spawn_to_all_pending_seen_seconds": round(all_seen, 2),
        "memory_at_ready": at_ready,
        "memory_at_first_lease": at_first_lease,
        "memory_all_seen": memory(stack),
    }


async def run(args: argparse.Namespace, steps: list[int], workdir: Path) -> dict[str, Any]:
    with harness.stack(
        workdir,
        workers=args.workers,
        concurrency=args.worker_concurrency,
        operator_args=OPERATOR_ARGS,
    ) as stack:
        plane = stack.plane
        async with harness.client(plane, connections=args.create_concurrency + 8) as api:
            await harness.create_namespace(api, NAMESPACE)
            watch = ProbeWatch(api, NAMESPACE)
            await watch.start()
            try:
                # Workers connected, connections open, code paths warm.
                await probe_round(api, watch, stack, "warm", WARM_UP_PROBES, args.probe_rate)
                empty = memory(stack)
                results: dict[str, Any] = {"empty": {"memory": empty}, "steps": []}
                created = 0
                for pending in steps:
                    writes_before = harness.apiserver_writes(plane)
                    seconds = await fill(api, created, pending, args.create_concurrency)
                    writes = harness.writes_between(writes_before, harness.apiserver_writes(plane))
                    rate = (pending - created) / seconds
                    created = pending
                    await until_seen(stack, pending, within=600)
                    step: dict[str, Any] = {
                        "pending": pending,
                        "fill_creates_per_second": round(rate, 1),
                        "api_writes_during_fill": writes,
                        "operator_idle_cpu_percent": await idle_cpu_percent(
                            stack, args.idle_seconds
                        ),
                    }
                    step["lease_latency"] = await probe_round(
                        api, watch, stack, str(pending), args.probes, args.probe_rate
                    )
                    step["memory"] = memory(stack)
                    # What one more waiting Task costs the operator, on average.
                    grown = step["memory"]["operator_rss_mib"] - empty["operator_rss_mib"]
                    step["operator_rss_kib_per_pending"] = round(grown * 1024 / pending, 2)
                    results["steps"].append(step)
                    print(f"scale: {summary_of_step(step)}", file=sys.stderr)

                results["restart"] = await restart(api, watch, stack, created, args.profile)
                results["restart"]["lease_latency_after"] = await probe_round(
                    api, watch, stack, "after-restart", args.probes, args.probe_rate
                )
                results["restart"]["memory_after_probes"] = memory(stack)
                return results
            finally:
                await watch.close()


def summary_of_step(step: dict[str, Any]) -> str:
    latency, mem = step["lease_latency"], step["memory"]
    return (
        f"{step['pending']} pending: operator RSS {mem['operator_rss_mib']:.0f} MiB "
        f"(peak {mem['operator_peak_rss_mib']:.0f}), lease p50 {latency['p50_ms']:.0f} ms "
        f"p99 {latency['p99_ms']:.0f} ms, idle CPU {step['operator_idle_cpu_percent']:.1f}%"
    )


def parse_steps(args: argparse.Namespace) -> list[int]:
    steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    top = args.max_pending if args.max_pending is not None else steps[-1]
    steps = [s for s in steps if s <= top]
    if not steps or steps[-1] != top:
        steps.append(top)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", default="1000,10000,100000")
    parser.add_argument("--max-pending", type=int, default=None)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--probe-rate", type=float, default=20.0)
    parser.add_argument("--create-concurrency", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    steps = parse_steps(args)
    with tempfile.TemporaryDirectory(prefix="taskmill-bench-") as tmp:
        results = asyncio.run(run(args, steps, Path(tmp)))

    last = results["steps"][-1]
    first = results["steps"][0]
    again = results["restart"]
    peak_rss = max(
        again["memory_after_probes"]["operator_peak_rss_mib"],
        last["memory"]["operator_peak_rss_mib"],
    )
    growth = last["lease_latency"]["p99_ms"] / first["lease_latency"]["p99_ms"]
    targets = {
        "rss_below_1gib": last["memory"]["operator_rss_mib"] * MIB < RSS_TARGET
        and again["memory_all_seen"]["operator_rss_mib"] * MIB < RSS_TARGET,
        "restart_to_first_lease_below_60s": again["spawn_to_first_lease_seconds"]
        < RESTART_TARGET_SECONDS,
        "lease_p99_ratio_last_to_first_step": round(growth, 2),
    }
    latencies = ", ".join(
        f"{s['pending']}: {s['lease_latency']['p50_ms']:.0f}/{s['lease_latency']['p99_ms']:.0f}"
        for s in results["steps"]
    )
    summary = (
        f"scale: {last['pending']} pending: operator RSS "
        f"{last['memory']['operator_rss_mib']:.0f} MiB (peak {peak_rss:.0f} MiB, "
        f"{again['memory_all_seen']['operator_rss_mib']:.0f} MiB after restart; target < 1024); "
        f"restart -> ready {again['spawn_to_ready_seconds']:.1f} s, -> first lease "
        f"{again['spawn_to_first_lease_seconds']:.1f} s (target < 60); lease latency "
        f"p50/p99 ms by pending {latencies}; after restart "
        f"{again['lease_latency_after']['p50_ms']:.0f}/{again['lease_latency_after']['p99_ms']:.0f}"
        f" ({args.probes} probes at {args.probe_rate:g}/s, "
        f"{args.workers}x{args.worker_concurrency} worker slots)"
    )
    harness.write_result(
        "scale",
        {
            "parameters": {**vars(args), "steps": steps},
            "operator_args": list(OPERATOR_ARGS),
            "apiserver_flags": harness.APISERVER_FLAGS,
            "targets": targets,
            **results,
        },
        summary,
    )


if __name__ == "__main__":
    main()
