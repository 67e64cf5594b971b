"""The peer: the pipeline's no-op workload on Celery with Redis, in two durability modes.

Taskmill's pipeline (bench/throughput.py) is compared with the nearest common
alternative: Celery, its broker and its result backend both one Redis on this
machine. Redis runs twice, each time a fresh ``redis-server`` this script
starts on a free loopback port in a temporary directory (the same file system
the pipeline's etcd writes to):

- ``none``: ``--save "" --appendonly no``, nothing ever reaches the disk;
- ``always``: ``--save "" --appendonly yes --appendfsync always``, every write
  is in the append-only file and fsynced before Redis replies, as etcd fsyncs
  every write before it acknowledges it. This is the fair match.

``CONFIG GET`` checks each mode before anything runs. Per mode:

1. ``--workers`` Celery workers (default 2, as the pipeline), each the
   prefork pool with ``--worker-concurrency`` processes (default 4), until
   all of them answer a ping; then a warm-up of a few hundred tasks;
2. timed: one client process sends N no-op tasks with ``apply_async`` from
   ``--concurrency`` threads (default 32, the pipeline client's concurrency),
   each a plain loop over its share, after which each thread waits for its
   own tasks' results with ``ResultSet.join_native()`` (Celery gives every
   thread its own result backend, so a thread can only wait for what it
   sent). The clock runs from the first ``apply_async`` until the client holds
   the last result. The threads matter with ``appendfsync always``: Redis
   answers a task's LPUSH only after the fsync, so a single loop would wait
   one fsync per task, where Redis (like etcd) fsyncs once for all the writes
   that arrived together. Waiting costs no polling: the Redis result backend
   publishes every result on a channel the sending thread subscribed to along
   with the task, and ``join_native`` blocks reading that socket.

Reports tasks/s of each mode, how long submitting alone took, Redis commands
and append-only-file bytes per task, and CPU per task of the workers (the main
process and its prefork children), of redis-server and of the client (split
into submitting and collecting). The Taskmill figure beside them is read from
``--taskmill-json`` (default bench/results/throughput.json, if there); this
script does not run Taskmill.

    python bench/celery_peer.py [--tasks 10000] [--concurrency 32] [--workers 2]
        [--worker-concurrency 4] [--modes none always] [--taskmill-json PATH]

Writes JSON to bench/results/celery_peer.json. Needs ``redis-server`` on PATH
(``hack/bench celery_peer`` installs it from the Debian packages).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import harness
import redis
from celery import Celery
from celery.result import ResultSet
from celery_app import NOOP, REDIS_URL_ENV, SETTINGS, make_app

from taskmill.testing.processes import die_with_parent, free_ports

#: redis-server's arguments for each mode. Both turn RDB snapshots off, so the
#: only difference is the append-only file, and no BGSAVE fork lands inside a
#: timed run.
MODES: dict[str, list[str]] = {
    "none": ["--save", "", "--appendonly", "no"],
    "always": ["--save", "", "--appendonly", "yes", "--appendfsync", "always"],
}
#: What ``CONFIG GET`` must answer in each mode (appendfsync is moot without AOF).
EXPECTED: dict[str, dict[str, str]] = {
    "none": {"appendonly": "no", "save": ""},
    "always": {"appendonly": "yes", "appendfsync": "always", "save": ""},
}
LABELS = {"none": "no persistence", "always": "appendfsync always"}

#: Celery's default pool, a child process per slot, so ``--concurrency 4``
#: gives the 4 slots a Taskmill worker has (there, in one process: an event
#: loop and a thread pool for synchronous handlers).
POOL = "prefork"
WARM_UP = 200
#: The whole timed run must end within this, or the run fails.
RUN_TIMEOUT = 3600.0


# --- CPU of process trees ---


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants alive right now."""
    children = _children_by_parent()
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """CPU of a process tree: every live member, plus the children it reaped.

    ``harness.cpu_seconds`` counts a process and its waited-for children, so
    summing it over the live tree counts each CPU second once: a prefork child
    that exited and was reaped is in its parent's figure, a live one in its own.
    """
    total = 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            total += harness.cpu_seconds(pid)
    return total


@dataclass
class TreeCpuMeter:
    """CPU used by named process trees between :meth:`start` and :meth:`stop`."""

    roots: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._start = {name: tree_cpu_seconds(pid) for name, pid in self.roots.items()}

    def stop(self) -> dict[str, float]:
        return {name: tree_cpu_seconds(pid) - self._start[name] for name, pid in self.roots.items()}


# --- redis-server ---


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.directory / "redis.log").read_text().splitlines()[-20:])
        return ""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise SystemExit(
            "redis-server is not on PATH: run `hack/bench celery_peer`, which installs it, "
            "or `apt-get install redis-server`"
        )
    return found


@contextlib.contextmanager
def running_redis(mode: str, workdir: Path) -> Iterator[RedisServer]:
    """A redis-server of our own in ``mode``, stopped (and waited for) on exit."""
    directory = workdir / f"redis-{mode}"
    directory.mkdir(parents=True)
    (port,) = free_ports(1)
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--logfile", str(directory / "redis.log"),
        "--daemonize", "no",
        *MODES[mode],
    ]  # fmt: skip
    # A session of its own, so a Ctrl-C reaches only this script, which then
    # stops Redis after the workers instead of everything dying at once.
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent()
    )
    server = RedisServer(process, port, directory)
    try:
        deadline = time.monotonic() + 30
        with server.client() as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited:\n{server.log_tail()}")
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server not answering:\n{server.log_tail()}")
                time.sleep(0.05)
        yield server
    finally:
        stop_process(process, 30)


def check_mode(server: RedisServer, mode: str) -> dict[str, Any]:
    """Redis really runs in ``mode``: what ``CONFIG GET`` and ``INFO`` say, for the JSON."""
    with server.client() as client:
        config = {key: client.config_get(key)[key] for key in ("appendonly", "appendfsync", "save")}
        persistence = client.info("persistence")
        version = client.info("server")["redis_version"]
    wrong = {key: config[key] for key, want in EXPECTED[mode].items() if config[key] != want}
    if wrong or bool(persistence["aof_enabled"]) != (mode == "always"):
        raise RuntimeError(f"redis-server is not in mode {mode!r}: {config}, {persistence}")
    return {
        "redis_version": version,
        "config": config,
        "aof_enabled": persistence["aof_enabled"],
        "arguments": MODES[mode],
    }


# --- Celery workers ---


def worker_command(index: int, concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "celery_app", "worker",
        "--pool", POOL,
        "--concurrency", str(concurrency),
        "--hostname", f"bench-{index}@%h",
        "--loglevel", "WARNING",
    ]  # fmt: skip


def start_workers(
    url: str, count: int, concurrency: int, logs: Path
) -> list[subprocess.Popen[bytes]]:
    # bench/ is the working directory and on the path, so ``-A celery_app``
    # imports the same module the client does.
    env = {**os.environ, REDIS_URL_ENV: url, "PYTHONPATH": str(harness.BENCH_DIR)}
    workers = []
    for index in range(count):
        with (logs / f"celery-worker-{index}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    worker_command(index, concurrency),
                    cwd=harness.BENCH_DIR,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )
            )
    return workers


def wait_for_workers(
    app: Celery, workers: Sequence[subprocess.Popen[bytes]], logs: Path, timeout: float
) -> list[str]:
    """Names of the workers, once every one of them answers a broadcast ping."""
    deadline = time.monotonic() + timeout
    while True:
        for index, worker in enumerate(workers):
            if worker.poll() is not None:
                log = (logs / f"celery-worker-{index}.log").read_text()
                raise RuntimeError(f"celery worker {index} exited:\n{log[-3000:]}")
        replies = app.control.ping(timeout=1.0)
        names = sorted(name for reply in replies for name in reply)
        if len(names) >= len(workers):
            return names
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {names} of {len(workers)} Celery workers answer")


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (a Celery worker's warm shutdown), then SIGKILL to its whole session."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        # Started with a session of its own, so its group is ours alone:
        # this also ends prefork children an unclean exit left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


# --- the workload ---


def client_app(url: str, concurrency: int) -> Celery:
    app = make_app(url)
    # One producer (a broker connection) per submitting thread: with the
    # default pool of 10, threads beyond the tenth would only queue for one.
    app.conf.broker_pool_limit = max(concurrency, 10)
    return app


@dataclass
class LaneOutcome:
    submitted_at: float  # perf_counter when this lane's last apply_async returned
    submit_cpu: float
    collect_cpu: float


class Lanes:
    """``concurrency`` long-lived client threads, each sending its share and collecting it.

    Celery gives every thread its own result backend, and so its own pub/sub
    subscriptions: a thread can only wait for the results of the tasks it sent
    itself. Hence each lane collects its own, and the threads live from the
    warm-up to the end, so the timed run finds their connections open.
    """

    def __init__(self, app: Celery, concurrency: int) -> None:
        self._noop = app.tasks[NOOP]
        self._app = app
        self._inboxes: list[queue.Queue[int | None]] = [queue.Queue() for _ in range(concurrency)]
        self._outbox: queue.Queue[LaneOutcome | BaseException] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._serve, args=(inbox,), name=f"lane-{i}", daemon=True)
            for i, inbox in enumerate(self._inboxes)
        ]
        for thread in self._threads:
            thread.start()

    def _serve(self, inbox: queue.Queue[int | None]) -> None:
        while (share := inbox.get()) is not None:
            try:
                self._outbox.put(self._one_share(share))
            except BaseException as error:  # handed to run(), which raises it
                self._outbox.put(error)

    def _one_share(self, share: int) -> LaneOutcome:
        cpu_started = time.thread_time()
        results = [self._noop.apply_async() for _ in range(share)]
        submitted_at = time.perf_counter()
        cpu_submitted = time.thread_time()
        if results:
            # propagate=True: a task that failed fails the run, so every
            # counted task really succeeded.
            values = ResultSet(results, app=self._app).join_native(
                timeout=RUN_TIMEOUT, propagate=True
            )
            if len(values) != share:
                raise AssertionError(f"expected {share} results, got {len(values)}")
        return LaneOutcome(
            submitted_at, cpu_submitted - cpu_started, time.thread_time() - cpu_submitted
        )

    def run(self, count: int) -> list[LaneOutcome]:
        """Send ``count`` tasks spread over the lanes; return once all results are in."""
        lanes = len(self._inboxes)
        for lane, inbox in enumerate(self._inboxes):
            inbox.put(len(range(lane, count, lanes)))
        outcomes = [self._outbox.get(timeout=RUN_TIMEOUT) for _ in range(lanes)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [outcome for outcome in outcomes if isinstance(outcome, LaneOutcome)]

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for thread in self._threads:
            thread.join(30)


def submit_and_collect(lanes: Lanes, count: int) -> dict[str, float]:
    """Send ``count`` no-op tasks and wait for every result; times and client CPU."""
    cpu_started = time.process_time()
    started = time.perf_counter()
    outcomes = lanes.run(count)
    finished = time.perf_counter()
    cpu_finished = time.process_time()
    return {
        "seconds": finished - started,
        "submit_seconds": max(outcome.submitted_at for outcome in outcomes) - started,
        "client_cpu": cpu_finished - cpu_started,
        "client_submit_cpu": sum(outcome.submit_cpu for outcome in outcomes),
        "client_collect_cpu": sum(outcome.collect_cpu for outcome in outcomes),
    }


def command_counts(server: RedisServer) -> dict[str, int]:
    """Calls of each Redis command so far, from ``INFO commandstats``."""
    with server.client() as client:
        stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(values["calls"])
        for name, values in stats.items()
        if isinstance(values, dict)
    }


def aof_size(server: RedisServer) -> int:
    with server.client() as client:
        return int(client.info("persistence").get("aof_current_size", 0))


def run_mode(args: argparse.Namespace, mode: str, workdir: Path) -> dict[str, Any]:
    count = args.tasks
    with running_redis(mode, workdir) as server:
        checked = check_mode(server, mode)
        app = client_app(server.url, args.concurrency)
        workers = start_workers(server.url, args.workers, args.worker_concurrency, workdir)
        try:
            names = wait_for_workers(app, workers, workdir, timeout=300)
            lanes = Lanes(app, args.concurrency)
            # Warm up: every pool process forked and connected, each lane's
            # producer and result subscription open; nothing measured.
            submit_and_collect(lanes, max(WARM_UP, args.concurrency))

            load_before = os.getloadavg()
            commands_before = command_counts(server)
            aof_before = aof_size(server)
            roots = {f"worker-{i}": worker.pid for i, worker in enumerate(workers)}
            roots["redis-server"] = server.process.pid
            processes = {name: len(process_tree(pid)) for name, pid in roots.items()}
            meter = TreeCpuMeter(roots)
            meter.start()
            timing = submit_and_collect(lanes, count)
            used = meter.stop()
            commands_after = command_counts(server)
            aof_after = aof_size(server)
            lanes.close()
        finally:
            app.close()
            for worker in workers:
                stop_process(worker, 60)

    # The client in total (every thread of this process), and its lanes'
    # threads by phase; the rest of the total is the main thread waiting.
    used["client"] = timing["client_cpu"]
    used["client (submit)"] = timing["client_submit_cpu"]
    used["client (collect)"] = timing["client_collect_cpu"]
    commands = {
        name: calls - commands_before.get(name, 0)
        for name, calls in sorted(commands_after.items())
        if calls - commands_before.get(name, 0) > 0
    }
    return {
        "redis": checked,
        "workers": names,
        "processes": processes,
        "load_average_before": load_before,
        "tasks": count,
        "seconds": round(timing["seconds"], 3),
        "tasks_per_second": round(count / timing["seconds"], 1),
        "submit_seconds": round(timing["submit_seconds"], 3),
        "submit_tasks_per_second": round(count / timing["submit_seconds"], 1),
        "redis_commands": commands,
        "redis_commands_per_task": round(sum(commands.values()) / count, 3),
        "aof_bytes_per_task": round((aof_after - aof_before) / count, 1),
        "cpu_seconds": {name: round(value, 3) for name, value in used.items()},
        "cpu_ms_per_task": harness.cpu_ms_per_task(used, count),
    }


# --- the Taskmill figure and the report ---


def taskmill_figure(target: Path | None) -> dict[str, Any] | None:
    """The pipeline's figures from a throughput.json, or None when there is none."""
    if target is None:
        return None
    document = json.loads(target.read_text())
    pipeline = document["pipeline"]
    return {
        "source": str(target),
        "finished_at": document.get("finished_at"),
        "tasks": pipeline["tasks"],
        "tasks_per_second": pipeline["tasks_per_second"],
        "cpu_ms_per_task": pipeline.get("cpu_ms_per_task"),
        "parameters": document.get("parameters"),
    }


def filesystem_of(target: Path) -> str:
    """The file-system type ``target`` lives on: whether fsync means a disk."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mountpoint, fstype, *_ = line.split()
            inside = str(target).startswith(mountpoint.rstrip("/") + "/")
            if inside and len(mountpoint) > len(best):
                best, kind = mountpoint, fstype
    return kind


def summarise(
    args: argparse.Namespace, results: dict[str, Any], taskmill: dict[str, Any] | None
) -> str:
    celery = ", ".join(
        f"{LABELS[mode]} {result['tasks_per_second']:.0f}" for mode, result in results.items()
    )
    if taskmill is None:
        head = f"celery_peer: Celery+Redis tasks/s: {celery} (no Taskmill figure given)"
    else:
        head = (
            f"celery_peer: Taskmill {taskmill['tasks_per_second']:.0f} tasks/s "
            f"({Path(taskmill['source']).name}, N={taskmill['tasks']}) vs Celery+Redis {celery}"
        )
        if "always" in results:
            ratio = taskmill["tasks_per_second"] / results["always"]["tasks_per_second"]
            head += f" = {ratio:.2f}x durable Celery"
    cpu = "; ".join(
        f"{mode}: workers {result['cpu_ms_per_task']['workers']:.2f} ms, redis-server "
        f"{result['cpu_ms_per_task']['redis-server']:.2f} ms, client "
        f"{result['cpu_ms_per_task']['client']:.2f} ms"
        for mode, result in results.items()
    )
    return (
        f"{head}; CPU/task {cpu} (N={args.tasks}, {args.concurrency} submitting threads, "
        f"{args.workers}x{args.worker_concurrency} {POOL} slots)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32, help="submitting threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument(
        "--taskmill-json",
        type=Path,
        default=None,
        help="Taskmill's throughput.json (default bench/results/throughput.json, if there)",
    )
    args = parser.parse_args()
    # A SIGTERM ends the run like a Ctrl-C, through the finally blocks that
    # stop the workers and Redis; a SIGKILL leaves that to PR_SET_PDEATHSIG.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    taskmill_json: Path | None = args.taskmill_json
    if taskmill_json is None and (harness.RESULTS / "throughput.json").exists():
        taskmill_json = harness.RESULTS / "throughput.json"
    taskmill = taskmill_figure(taskmill_json)
    redis_server_binary()  # fail before starting anything

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="taskmill-bench-celery-") as tmp:
        filesystem = filesystem_of(Path(tmp))
        for mode in args.modes:
            results[mode] = run_mode(args, mode, Path(tmp))

    summary = summarise(args, results, taskmill)
    comparison: dict[str, float] = {}
    if taskmill is not None:
        comparison = {
            f"taskmill_over_{mode}": round(
                taskmill["tasks_per_second"] / result["tasks_per_second"], 3
            )
            for mode, result in results.items()
        }
    harness.write_result(
        "celery_peer",
        {
            "parameters": {
                **vars(args),
                "taskmill_json": None if taskmill_json is None else str(taskmill_json),
            },
            "celery": {
                "versions": {
                    package: metadata.version(package) for package in ("celery", "kombu", "redis")
                },
                "pool": POOL,
                "settings": SETTINGS,
                "worker_command": worker_command(0, args.worker_concurrency),
                "warm_up_tasks": WARM_UP,
                "client_broker_pool_limit": max(args.concurrency, 10),
                "submission": f"one client process, {args.concurrency} threads each calling "
                "apply_async in a loop, then ResultSet.join_native() on the result "
                "backend's pub/sub",
            },
            "redis_directory_filesystem": filesystem,
            "taskmill": taskmill,
            "comparison": comparison,
            "modes": results,
        },
        summary,
    )


if __name__ == "__main__":
    main()
