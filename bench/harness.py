"""What every benchmark here shares: a control plane, CPU and write meters, results.

Benchmarks are scripts (``python bench/<name>.py``); this module sits beside
them, so it is importable without being part of the package. Everything they
start runs on this machine, on loopback, like ``taskmill dev up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskmill.kube import config as kubeconfig
from taskmill.kube.client import KubeClient, path
from taskmill.models.base import API_VERSION
from taskmill.models.resources import Task
from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.stack import Process, install_crds, start_operator, start_worker

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
HANDLERS = "examples.handlers"

#: Flags the benchmarks give the API server, and why. Everything else is the
#: dev control plane's default (``taskmill.testing.controlplane``). The
#: benchmark clients, the operator and the workers all use the admin
#: certificate (group ``system:masters``), which API Priority and Fairness
#: exempts: on a real cluster the operator's ServiceAccount lands in the
#: ``workload-high``/``global-default`` priority levels instead, whose share is
#: set by the cluster's FlowSchemas, not by these flags.
APISERVER_FLAGS: dict[str, str | None] = {
    # Events the operator posts would otherwise be kept an hour in etcd and
    # slow later runs of a long benchmark session; they are still written.
    "event-ttl": "5m",
}


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError, ValueError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": memory,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": os.getloadavg(),
    }


def write_result(name: str, data: dict[str, Any], summary: str) -> Path:
    """Write ``bench/results/<name>.json`` and print the one-line summary."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "summary": summary,
        **data,
    }
    target.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    print(summary, flush=True)
    return target


# --- CPU and memory of processes ---

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """A process and its live descendants (the operator runs its CronTask
    controller in a child process: its CPU and memory are the operator's)."""
    tree, index = [pid], 0
    while index < len(tree):
        for task in Path(f"/proc/{tree[index]}/task").glob("*"):
            with contextlib.suppress(OSError):
                tree += [int(child) for child in (task / "children").read_text().split()]
        index += 1
    return tree


def _cpu_ticks(pid: int) -> tuple[int, int, int, int]:
    """utime, stime, cutime, cstime: fields 14-17 of stat(5), which start at
    index 11 after the command name's closing parenthesis; summed over the
    process tree (cutime and cstime hold the children that have ended)."""
    totals = [0, 0, 0, 0]
    for member in process_tree(pid):
        with contextlib.suppress(OSError):  # ended in between: counted in cutime
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            for i, value in enumerate(fields[11:15]):
                totals[i] += int(value)
    utime, stime, cutime, cstime = totals
    return utime, stime, cutime, cstime


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children, in seconds."""
    return sum(_cpu_ticks(pid)) / _CLOCK_TICKS


def system_cpu_seconds(pid: int) -> float:
    """The kernel's share of :func:`cpu_seconds` (stime + cstime): on loopback
    the receiving side's TCP processing runs in the sender's system time."""
    _, stime, _, cstime = _cpu_ticks(pid)
    return (stime + cstime) / _CLOCK_TICKS


def _status_kib(pid: int, field_name: str) -> int:
    """A /proc/<pid>/status figure in KiB, summed over the process tree."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    total += int(line.split()[1])
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The sum of each process's own peak (an upper bound of the tree's peak)."""
    return _status_kib(pid, "VmHWM") * 1024


@dataclass
class CpuMeter:
    """CPU used by named processes between :meth:`start` and :meth:`stop`."""

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    #: The kernel's part of ``used``, by process.
    system: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._start_system = {name: system_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._self_start = time.process_time()

    def stop(self) -> dict[str, float]:
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}
        self.system = {
            name: system_cpu_seconds(pid) - self._start_system[name]
            for name, pid in self.pids.items()
        }
        self.used["benchmark client"] = time.process_time() - self._self_start
        return self.used


def cpu_ms_per_task(used: dict[str, float], count: int) -> dict[str, float]:
    """CPU milliseconds per task, by process (``worker-N`` summed as ``workers``)."""
    grouped: dict[str, float] = {}
    for name, seconds in used.items():
        group = "workers" if name.startswith("worker-") else name
        grouped[group] = grouped.get(group, 0.0) + seconds
    return {name: round(1000 * seconds / count, 3) for name, seconds in grouped.items()}


# --- the API server's own counters ---

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:]+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"})


def apiserver_writes(plane: ControlPlane) -> dict[str, float]:
    """Writes the API server has served, by ``verb resource[/subresource]``.

    Read from its own ``apiserver_request_total``, so a benchmark counts what
    really reached the server (retries and conflicts included), not what the
    client believes it sent.
    """
    text = plane.request("GET", "/metrics", timeout=30).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("verb", "").upper() not in WRITE_VERBS:
            continue
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        key = f"{labels['verb']} {resource}"
        counts[key] = counts.get(key, 0.0) + float(match["value"])
    return counts


def writes_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    return {key: value for key, value in sorted(delta.items()) if value > 0}


# --- the stack ---


def start_plane(workdir: Path, *, controller_manager: bool = False) -> ControlPlane:
    plane = ControlPlane(
        workdir,
        controller_manager=controller_manager,
        apiserver_flags=APISERVER_FLAGS,
    )
    plane.start()
    install_crds(plane)
    return plane


@contextlib.contextmanager
def stack(
    workdir: Path,
    *,
    workers: int,
    concurrency: int,
    controller_manager: bool = False,
    operator: bool = True,
    operator_args: Sequence[str] = (),
) -> Iterator[Stack]:
    """A control plane, the operator and ``workers`` workers running the examples."""
    workdir.mkdir(parents=True, exist_ok=True)
    plane = start_plane(workdir / "plane", controller_manager=controller_manager)
    running = Stack(plane, workdir)
    try:
        if operator:
            running.start_operator(operator_args)
        for _ in range(workers if operator else 0):
            running.add_worker(concurrency)
        yield running
    finally:
        running.stop()
        plane.stop()


@dataclass
class Stack:
    plane: ControlPlane
    workdir: Path
    operator: Process | None = None
    lease_url: str = ""
    workers: list[Process] = field(default_factory=list)

    def start_operator(self, extra_args: Sequence[str] = (), *, port: int | None = None) -> None:
        """Start the operator and wait for ``/readyz``. ``port`` (default: a free
        one) lets a restarted operator take over the lease URL its workers poll."""
        self.operator, self.lease_url = start_operator(
            self.plane,
            self.workdir / "operator.log",
            port=port,
            extra_args=["--log-level", "WARNING", *extra_args],
            timeout=600,
        )

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop(30)
            self.operator = None

    def add_worker(self, concurrency: int) -> Process:
        worker = start_worker(
            self.lease_url,
            HANDLERS,
            self.workdir / f"worker-{len(self.workers)}.log",
            cwd=REPO,
            concurrency=concurrency,
            extra_args=["--log-level", "WARNING"],
        )
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(30)
        self.workers.clear()
        self.stop_operator()

    def pids(self) -> dict[str, int]:
        pids = {f"worker-{i}": worker.pid for i, worker in enumerate(self.workers)}
        if self.operator is not None:
            pids["operator"] = self.operator.pid
        pids.update(self.plane.pids)
        return pids

    def _operator_samples(self, name: str) -> list[tuple[str, float]]:
        """``(labels, value)`` of every sample of ``name`` in the operator's ``/metrics``."""
        with urllib.request.urlopen(f"{self.lease_url}/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = []
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")):
                head, value = line.rsplit(" ", 1)
                samples.append((head[len(name) :], float(value)))
        return samples

    def operator_metric(self, name: str, labels: str = "") -> float:
        """The sum of the operator's samples of ``name`` that carry every label
        in ``labels`` (e.g. ``'phase="Pending"'``); 0 when there are none."""
        wanted = [label for label in labels.split(",") if label]
        return sum(
            value
            for found, value in self._operator_samples(name)
            if all(label in found for label in wanted)
        )

    def operator_histogram_quantile(self, name: str, q: float) -> float:
        """The q-quantile of one of the operator's histograms, interpolated
        within its bucket as PromQL's ``histogram_quantile`` does (NaN if empty)."""
        buckets = sorted(
            (float(found.split('le="', 1)[1].split('"', 1)[0]), count)
            for found, count in self._operator_samples(name + "_bucket")
        )
        total = buckets[-1][1] if buckets else 0.0
        if total == 0:
            return math.nan
        rank, lower, below = q * total, 0.0, 0.0
        for upper, count in buckets:
            if count >= rank:
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
            lower, below = upper, count
        return lower


# --- clients ---


def client(plane: ControlPlane, *, connections: int = 64) -> KubeClient:
    return KubeClient(kubeconfig.load(plane.kubeconfig), max_connections=connections)


def task_manifest(name: str, namespace: str, type_: str = "noop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": type_, "payload": {}, **spec},
    }


def tasks_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    if name is None:
        return path(Task.RESOURCE_PLURAL, namespace)
    return path(Task.RESOURCE_PLURAL, namespace, name, subresource)


async def create_namespace(api: KubeClient, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    await api.create("/api/v1/namespaces", body)


async def run_bounded(count: int, concurrency: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(0..count-1)`` with at most ``concurrency`` at once."""
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await job(index)

    await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))


async def wait_for(
    condition: Callable[[], bool], limit: float, interval: float = 0.05, what: str = ""
) -> None:
    """Poll ``condition`` until it holds; TimeoutError after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {limit:g}s: {what}")
        await asyncio.sleep(interval)


def run_command(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=True, text=True, capture_output=True, **kwargs)
