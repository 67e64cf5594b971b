"""The fault suite's harness: its own operator(s) and workers on a control
plane, a steady load of Tasks, faults done to the processes, and the
checker's report at the end.

Every process is started exactly as its container runs it (``taskmill
operator``, ``taskmill worker``) and its lifetime is recorded: pid, start,
end and how it ended, with each pause (SIGSTOP .. SIGCONT) and outage of a
control-plane component. The operator watches only the run's namespace, so
nothing else dispatches its Tasks.

Sizes: ``TASKMILL_FAULTS_SCALE`` multiplies every Task count (``hack/faults
--long`` sets 10); ``TASKMILL_FAULTS_REPORT_DIR`` is where each scenario's
full report is written as ``<scenario>.json``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskmill.testing.controlplane import ControlPlane, free_ports
from taskmill.testing.faults.history import Report, check
from taskmill.testing.faults.recorder import LOG_ENV, WORKER_ENV
from taskmill.testing.faults.records import (
    FinalTask,
    Lifetime,
    Outage,
    RunRecord,
    read_executions,
)
from taskmill.testing.proxy import Proxy
from taskmill.testing.stack import Process, spawn, taskmill_command, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
GROUP_PATH = "/apis/taskmill.dev/v1alpha1"
FINISHED = {"Succeeded", "Dead", "Cancelled"}
#: The TaskQueue every scenario's Tasks use: short leases, so expiries are quick.
QUEUE = "faults"


def scale() -> float:
    return float(os.environ.get("TASKMILL_FAULTS_SCALE", "1") or 1)


def patience() -> float:
    """How much longer than the CI size a run may wait for its Tasks."""
    return max(1.0, min(4.0, scale()))


def scaled(count: int) -> int:
    return max(1, round(count * scale()))


def rate(per_second: float) -> float:
    """A load rate for the scale: faster for a long run, though no more
    than three times (beyond that the Tasks only queue up)."""
    return per_second * min(3.0, scale())


@dataclass
class Member:
    """A process of the run and its recorded lifetime."""

    process: Process
    life: Lifetime
    url: str = ""


@dataclass
class FaultRun:
    plane: ControlPlane
    namespace: str
    workdir: Path
    #: The queue's leaseSeconds, and the operator's default for restored leases.
    lease_seconds: int = 5
    record: RunRecord = field(default_factory=RunRecord)
    members: dict[str, Member] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.workdir / "executions.jsonl"

    # --- processes ---------------------------------------------------------------

    def start_operator(
        self,
        name: str,
        *,
        port: int | None = None,
        leader_elect: bool = False,
        wait_ready: bool = True,
    ) -> str:
        """Start ``taskmill operator`` for this namespace; its lease API URL."""
        port = port or free_ports(1)[0]
        args = [
            "operator",
            "--kubeconfig",
            str(self.plane.kubeconfig),
            "--namespace",
            self.namespace,
            "--lease-host",
            "127.0.0.1",
            "--lease-port",
            str(port),
            "--lease-seconds",
            str(self.lease_seconds),
        ]
        if leader_elect:
            args += [
                "--leader-elect",
                "--leader-election-name",
                "faults-leader",
                "--leader-election-namespace",
                self.namespace,
                "--leader-election-identity",
                name,
                # Short, for a quick failover, but with room for a slow API
                # server: a leader that cannot renew in time steps down and
                # exits, and here no Deployment would start it again.
                "--leader-election-lease-seconds",
                "6",
                "--leader-election-renew-deadline-seconds",
                "4",
                "--leader-election-retry-seconds",
                "0.5",
            ]
        process = spawn(name, taskmill_command(*args), self.workdir / f"{name}.log")
        url = f"http://127.0.0.1:{port}"
        self.members[name] = Member(
            process, Lifetime("operator", name, process.pid, time.time()), url
        )
        self.record.lifetimes.append(self.members[name].life)
        wait_until_ready(f"{url}/{'readyz' if wait_ready else 'healthz'}", process, 90)
        return url

    def start_worker(
        self, name: str, lease_url: str, *, concurrency: int = 8, grace_seconds: float = 25
    ) -> None:
        process = spawn(
            name,
            taskmill_command(
                "worker",
                "--handlers",
                "tests.faults.handlers",
                "--lease-url",
                lease_url,
                "--concurrency",
                str(concurrency),
                "--grace-seconds",
                str(grace_seconds),
                "--name",
                name,
            ),
            self.workdir / f"{name}.log",
            env={WORKER_ENV: name, LOG_ENV: str(self.log)},
            cwd=ROOT,
        )
        self.members[name] = Member(process, Lifetime("worker", name, process.pid, time.time()))
        self.record.lifetimes.append(self.members[name].life)

    def kill(self, name: str) -> None:
        """``kill -9``: a crash."""
        member = self.members[name]
        member.process.kill()
        self._ended(member, "SIGKILL")

    def terminate(self, name: str, timeout: float = 60) -> int | None:
        """SIGTERM and wait for the exit: a graceful stop (a rollout, a scale-down)."""
        member = self.members[name]
        code = member.process.stop(timeout)
        self._ended(member, "SIGTERM")
        return code

    def pause(self, name: str, seconds: float) -> None:
        """SIGSTOP, hold for ``seconds`` (the fault's duration), SIGCONT."""
        member = self.members[name]
        start = time.time()
        member.process.signal(signal.SIGSTOP)
        time.sleep(seconds)  # holding the fault, not waiting for anything
        member.process.signal(signal.SIGCONT)
        self.record.outages.append(
            Outage("paused", member.life.role, name, start, time.time(), member.process.pid)
        )

    def outage(self, component: str, seconds: float) -> None:
        """Kill one control-plane process, hold it down, start it again."""
        start = time.time()
        self.plane.stop_component(component, kill=True)
        time.sleep(seconds)  # holding the outage
        self.plane.start_component(component, timeout=120)
        self.record.outages.append(Outage("down", component, component, start, time.time()))

    def _ended(self, member: Member, how: str) -> None:
        if member.life.end is None:
            member.life.end = time.time()
            member.life.ended_by = how

    def close(self) -> None:
        """Stop whatever still runs, all at once (an idle worker's stop waits
        for its long poll, so one after the other would add up)."""
        running = []
        for member in self.members.values():
            if member.life.end is not None:
                continue
            if member.process.alive():
                member.process.signal(signal.SIGTERM)
                running.append(member)
            else:
                self._ended(member, "exit")
        for member in running:
            member.process.stop(30)
            self._ended(member, "SIGTERM")
        (self.workdir / "run.json").write_text(json.dumps(self.record.to_json(), indent=1))

    def logs(self, lines: int = 25) -> str:
        return "\n".join(
            f"--- {name}\n{m.process.log_tail(lines)}" for name, m in self.members.items()
        )

    # --- Tasks -------------------------------------------------------------------

    def apply(self, manifest: dict[str, Any]) -> None:
        self.plane.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(manifest))

    def create_queue(self, **spec: Any) -> None:
        self.apply(
            {
                "apiVersion": "taskmill.dev/v1alpha1",
                "kind": "TaskQueue",
                "metadata": {"name": QUEUE},
                "spec": {"leaseSeconds": self.lease_seconds, **spec},
            }
        )

    def create_task(self, name: str, spec: dict[str, Any], deadline: float) -> None:
        """Create one Task, retrying while the API server is away; an
        AlreadyExists after a lost reply is the same Task (names are keys)."""
        body = {
            "apiVersion": "taskmill.dev/v1alpha1",
            "kind": "Task",
            "metadata": {"name": name},
            "spec": {"queue": QUEUE, **spec},
        }
        url = f"{GROUP_PATH}/namespaces/{self.namespace}/tasks"
        while True:
            try:
                status = self.plane.request("POST", url, body, timeout=10).status
                if status in (201, 409):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not create Task {name}")
            time.sleep(0.2)  # the API server is away: try again shortly

    def produce(self, specs: Iterable[tuple[str, dict[str, Any]]], per_second: float) -> Producer:
        """Create Tasks at a steady rate in the background."""
        producer = Producer(self, list(specs), per_second)
        producer.start()
        return producer

    def list_tasks(self) -> list[dict[str, Any]]:
        response = self.plane.request(
            "GET", f"{GROUP_PATH}/namespaces/{self.namespace}/tasks", timeout=30
        )
        if response.status != 200:
            raise OSError(f"listing Tasks: {response.status}")
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def executions(self) -> int:
        try:
            with self.log.open("rb") as handle:
                return sum(1 for _ in handle)
        except FileNotFoundError:
            return 0

    def check_operators(self) -> None:
        """Fail at once when no operator runs any more (one that exits on its
        own, e.g. a leader stepping down, would be restarted by its
        Deployment; here nothing would ever finish)."""
        operators = [m for m in self.members.values() if m.life.role == "operator"]
        for member in operators:
            if member.life.end is None and not member.process.alive():
                self._ended(member, "exit")
        if operators and all(m.life.end is not None for m in operators):
            raise AssertionError(f"no operator is running\n{self.logs()}")

    def ended_during(self, outage: Outage) -> int:
        """Executions that finished while ``outage`` lasted: work whose outcome
        had to wait for the outage to end."""
        return sum(1 for e in read_executions(self.log) if outage.start <= e.end <= outage.end)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``condition`` until it holds; fail after ``timeout`` seconds
        (longer for a scaled-up run)."""
        timeout *= patience()
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_operators()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:g}s waiting for {what}\n{self.logs()}"
                )
            time.sleep(0.2)

    def wait_finished(self, names: Iterable[str], timeout: float) -> list[dict[str, Any]]:
        """Poll the Task list until every named Task is finished; the list."""
        timeout *= patience()
        wanted = set(names)
        deadline = time.monotonic() + timeout
        items: list[dict[str, Any]] = []
        while True:
            try:
                items = self.list_tasks()
            except OSError:
                items = []
            done = {
                i["metadata"]["name"]
                for i in items
                if (i.get("status") or {}).get("phase") in FINISHED
            }
            if wanted <= done:
                return items
            self.check_operators()
            if time.monotonic() > deadline:
                missing = sorted(wanted - done)
                raise AssertionError(
                    f"{len(missing)} Tasks not finished after {timeout:g}s, e.g. {missing[:5]}\n"
                    f"{self.logs()}"
                )
            time.sleep(1.0)

    # --- the verdict -------------------------------------------------------------

    def report(
        self, scenario: str, expected: dict[str, str], items: list[dict[str, Any]]
    ) -> Report:
        """Run the checker, print its report, store it, and return it."""
        self.close()
        tasks = [FinalTask.from_object(item) for item in items]
        report = check(expected, tasks, read_executions(self.log), self.record)
        (self.workdir / "tasks.json").write_text(json.dumps(items))
        document = {"scenario": scenario, "scale": scale(), **report.to_json()}
        target = os.environ.get("TASKMILL_FAULTS_REPORT_DIR")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            (Path(target) / f"{scenario}.json").write_text(json.dumps(document, indent=2) + "\n")
        print(f"\n== fault report: {scenario}\n{report.dumps()}")
        return report


class Service:
    """What a Kubernetes Service gives the workers: one address that leads
    to whichever operator replica is Ready (only the leader is). A proxy
    forwards each new connection to the replica that answered ``/readyz``
    last; open connections to a replica that dies die with it."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        host, port = urls[0].removeprefix("http://").split(":")
        self.proxy = Proxy(host, int(port))
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._follow, name="service", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.proxy.address}"

    def __enter__(self) -> Service:
        self.proxy.__enter__()
        self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.join(5)
        self.proxy.__exit__(None, None, None)

    def _follow(self) -> None:
        while not self._stop.wait(0.2):  # the endpoints' readiness probe period
            for url in self.urls:
                if ready(url):
                    host, port = url.removeprefix("http://").split(":")
                    self.proxy.target = (host, int(port))
                    break


class Producer(threading.Thread):
    """Creates Tasks at a steady rate; ``join`` re-raises a failure."""

    def __init__(
        self, run: FaultRun, specs: list[tuple[str, dict[str, Any]]], per_second: float
    ) -> None:
        super().__init__(name="fault-load", daemon=True)
        self.fault_run = run
        self.specs = specs
        self.interval = 1.0 / per_second
        self.created = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start = time.monotonic()
            deadline = start + 600
            for index, (name, spec) in enumerate(self.specs):
                pause = start + index * self.interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing the load, not waiting for a condition
                self.fault_run.create_task(name, spec, deadline)
                self.created += 1
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 600) -> None:
        self.join(timeout)
        if self.error is not None:
            raise self.error
        assert not self.is_alive(), "the load did not finish in time"


def work(
    count: int, prefix: str = "t", spec: dict[str, Any] | None = None, **payload: Any
) -> list[tuple[str, dict[str, Any]]]:
    """``count`` Task specs of the recorded handler, with ``payload``."""
    return [
        (f"{prefix}-{i:05d}", {"type": "fault_work", "payload": dict(payload), **(spec or {})})
        for i in range(count)
    ]


def history_outcomes(item: dict[str, Any]) -> list[str]:
    return [h["outcome"] for h in (item.get("status") or {}).get("history") or []]


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
