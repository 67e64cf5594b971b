"""Faults under load on the real control plane: no Task lost, every duplicate
execution explained.

Each scenario runs its own operator(s) and workers in a namespace of
``lone_plane`` (no session operator there), puts a steady load of recorded
Tasks through them, does one kind of fault mid-load, waits (with a deadline)
until every Task has finished, and hands the execution log, the final Tasks
and the recorded process lifetimes to the checker
(:mod:`taskmill.testing.faults.history`), whose report is printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.faults.records import parse_time
from tests.faults.harness import (
    FaultRun,
    Service,
    history_outcomes,
    rate,
    ready,
    scaled,
    work,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def run(lone_plane: ControlPlane, lone_namespace: str, tmp_path: Path) -> Iterator[FaultRun]:
    fault_run = FaultRun(lone_plane, lone_namespace, tmp_path)
    fault_run.create_queue(retryPolicy={"maxAttempts": 5, "backoff": {"initialSeconds": 0.5}})
    yield fault_run
    fault_run.close()


def lease_expiries(items: list[dict[str, Any]]) -> int:
    return sum(history_outcomes(i).count("LeaseExpired") for i in items)


def test_a_killed_worker_loses_no_task(run: FaultRun) -> None:
    """kill -9 of a worker mid-load: its leases expire and its Tasks run elsewhere."""
    url = run.start_operator("operator")
    run.start_worker("worker-a", url)
    run.start_worker("worker-b", url)
    specs = work(scaled(300), seconds=0.4)
    load = run.produce(specs, per_second=rate(40))
    run.wait_for(lambda: run.executions() >= len(specs) // 3, "a third of the load", 120)
    run.kill("worker-a")
    run.start_worker("worker-c", url)  # the Deployment's replacement
    load.finish()
    items = run.wait_finished([n for n, _ in specs], timeout=180)
    report = run.report("worker-kill", {n: "Succeeded" for n, _ in specs}, items)
    assert report.ok, report.failures
    # The fault hit: the killed worker held leases, and they expired.
    assert lease_expiries(items) >= 1, run.logs()
    assert all(d["worker"] == "worker-a" for d in report.duplicates)


def test_a_paused_worker_comes_back_to_refused_completions(run: FaultRun) -> None:
    """SIGSTOP for longer than the lease, then SIGCONT: the late completions
    are refused (409) and each Task is counted once."""
    url = run.start_operator("operator")
    run.start_worker("worker-a", url)
    run.start_worker("worker-b", url)
    specs = work(scaled(300), seconds=1.0)
    load = run.produce(specs, per_second=rate(25))
    run.wait_for(lambda: run.executions() >= len(specs) // 4, "a quarter of the load", 120)
    run.pause("worker-a", run.lease_seconds + 4)
    load.finish()
    items = run.wait_finished([n for n, _ in specs], timeout=180)
    report = run.report("worker-pause", {n: "Succeeded" for n, _ in specs}, items)
    assert report.ok, report.failures
    assert lease_expiries(items) >= 1, run.logs()
    for item in items:
        assert history_outcomes(item).count("Succeeded") == 1, item["status"]
    refused = run.members["worker-a"].process.log_tail(100_000).count("lease is no longer ours")
    late = [
        d for d in report.duplicates if d["worker"] == "worker-a" and d["outcome"] != "cancelled"
    ]
    print(f"{len(late)} late completions of the paused worker; {refused} refused with 409")
    assert refused >= 1, run.logs()
    assert all(d["explanation"]["kind"] == "lease-expired" for d in report.duplicates)


def test_an_operator_killed_and_restarted_leases_nothing_twice(run: FaultRun) -> None:
    """kill -9 of the operator mid-load, then a restart on the same address:
    the new operator takes over the current leases and hands out none of
    their Tasks again while they are current (the checker's lease invariant)."""
    url = run.start_operator("operator-1")
    run.start_worker("worker-a", url)
    run.start_worker("worker-b", url)
    specs = work(scaled(300), seconds=0.4)
    load = run.produce(specs, per_second=rate(40))
    run.wait_for(lambda: run.executions() >= len(specs) // 3, "a third of the load", 120)
    run.kill("operator-1")
    run.start_operator("operator-2", port=int(url.rsplit(":", 1)[1]))
    load.finish()
    items = run.wait_finished([n for n, _ in specs], timeout=180)
    report = run.report("operator-kill", {n: "Succeeded" for n, _ in specs}, items)
    assert report.ok, report.failures
    assert not report.violations


def test_a_gracefully_stopped_worker_wastes_no_attempt(run: FaultRun) -> None:
    """SIGTERM of a worker under load: it finishes or hands back what it
    holds; no Task is lost, none runs twice, and no attempt is wasted."""
    url = run.start_operator("operator")
    run.start_worker("worker-a", url)
    run.start_worker("worker-b", url)
    specs = work(scaled(300), seconds=0.4)
    load = run.produce(specs, per_second=rate(40))
    run.wait_for(lambda: run.executions() >= len(specs) // 3, "a third of the load", 120)
    started = time.monotonic()
    assert run.terminate("worker-a") == 0, run.logs()
    assert time.monotonic() - started < 30
    run.start_worker("worker-c", url)
    load.finish()
    items = run.wait_finished([n for n, _ in specs], timeout=180)
    report = run.report("worker-sigterm", {n: "Succeeded" for n, _ in specs}, items)
    assert report.ok, report.failures
    assert report.duplicates == [], report.dumps()
    assert lease_expiries(items) == 0
    assert all(item["status"]["attempts"] == 1 for item in items)


def test_the_standby_takes_over_when_the_leader_is_killed(run: FaultRun) -> None:
    """Two operator replicas with leader election behind one Service address;
    kill -9 the leader mid-load. The standby takes the Lease, the Service
    sends the workers to it, and dispatching resumes: the outcomes of work
    finished meanwhile reach the new leader, which took over the leases."""
    leader = run.start_operator("operator-a", leader_elect=True)
    standby = run.start_operator("operator-b", leader_elect=True, wait_ready=False)
    assert not ready(standby)
    with Service([leader, standby]) as service:
        run.start_worker("worker-a", service.url)
        run.start_worker("worker-b", service.url)
        specs = work(scaled(300), seconds=0.4)
        load = run.produce(specs, per_second=rate(40))
        run.wait_for(lambda: run.executions() >= len(specs) // 3, "a third of the load", 120)
        run.kill("operator-a")
        killed = time.monotonic()
        run.wait_for(lambda: ready(standby), "the standby to lead", 30)
        took = time.monotonic() - killed
        load.finish()
        items = run.wait_finished([n for n, _ in specs], timeout=180)
    report = run.report("leader-failover", {n: "Succeeded" for n, _ in specs}, items)
    assert report.ok, report.failures
    print(f"the standby led {took:.1f}s after the leader was killed")
    assert took < 20, f"failover took {took:.1f}s"
    killed_at = run.members["operator-a"].life.end
    assert killed_at is not None
    after = [
        i
        for i in items
        if (started := parse_time(i["status"]["history"][-1]["startedAt"])) and started > killed_at
    ]
    assert after, "nothing was dispatched after the failover"
    assert report.redone_after_success == [], report.dumps()


def crontask(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "CronTask",
        "metadata": {"name": name},
        "spec": {
            "schedule": "@every 1s",
            "startingDeadlineSeconds": 30,
            "successfulTasksHistoryLimit": 1000,
            "failedTasksHistoryLimit": 1000,
            "taskTemplate": {
                "spec": {"type": "fault_work", "queue": "faults", "payload": {"seconds": 0.05}}
            },
            **spec,
        },
    }


def test_a_crontask_fires_each_slot_once_across_an_operator_restart(run: FaultRun) -> None:
    """``@every 1s`` across kill -9 and restart of the operator: no slot fired
    twice; every slot fired while an operator led; of the slots missed while
    none did, the newest is fired once on restart (as a CronJob does) and the
    rest are reported skipped."""
    port = int(run.start_operator("operator-1").rsplit(":", 1)[1])
    url = f"http://127.0.0.1:{port}"
    run.start_worker("worker-a", url)
    run.apply(crontask("tick"))

    def slots() -> list[int]:
        return sorted(
            int(i["metadata"]["name"].rsplit("-", 1)[1])
            for i in run.list_tasks()
            if i["metadata"]["name"].startswith("tick-")
        )

    run.wait_for(lambda: len(slots()) >= 5, "five fires", 60)
    run.kill("operator-1")
    killed_at = time.time()
    time.sleep(3)  # holding the operator down across three slots
    run.start_operator("operator-2", port=port)
    back_at = time.time()
    run.wait_for(lambda: slots()[-1] >= back_at + 5, "five fires after the restart", 60)
    run.apply(crontask("tick", suspend=True))
    suspended_at = time.time()
    names = [f"tick-{s}" for s in slots() if s <= suspended_at]
    items = run.wait_finished(names, timeout=60)
    children = [i for i in items if i["metadata"]["name"] in set(names)]
    fired = sorted(int(i["metadata"]["name"].rsplit("-", 1)[1]) for i in children)
    report = run.report(
        "crontask-restart", {i["metadata"]["name"]: "Succeeded" for i in children}, children
    )
    assert report.ok, report.failures
    assert len(fired) == len(set(fired))
    for child in children:
        scheduled = child["metadata"]["annotations"]["taskmill.dev/scheduled-at"]
        slot = int(child["metadata"]["name"].rsplit("-", 1)[1])
        assert parse_time(scheduled) == slot
    missing = sorted(set(range(fired[0], fired[-1] + 1)) - set(fired))
    # The restarted operator's CronTask process starts after it has listed
    # the Tasks, a few seconds after it answers ready on a busy machine.
    outside = [s for s in missing if not killed_at - 1 <= s <= back_at + 5]
    assert not outside, f"slots lost while an operator led: {outside} (fired {fired})"
    assert missing, "the operator was down for three slots, yet none was skipped"
    operator_log = run.members["operator-2"].process.log_tail(100_000)
    assert "missed slots run once" in operator_log, run.logs()


def test_retries_and_dead_count_their_attempts_across_kills(run: FaultRun) -> None:
    """Tasks that fail twice then succeed, and Tasks that always fail, while
    the operator is killed and restarted, one worker is stopped gracefully
    and another is killed. A kill during an attempt costs that attempt (its
    lease expires, which counts), nothing else does."""
    url = run.start_operator("operator-1")
    port = int(url.rsplit(":", 1)[1])
    run.start_worker("worker-a", url)
    run.start_worker("worker-b", url)
    flaky = work(scaled(150), "flaky", spec={"maxAttempts": 6}, seconds=0.1, failAttempts=2)
    doomed = work(scaled(50), "doomed", spec={"maxAttempts": 3}, seconds=0.1, alwaysFail=True)
    specs = [*flaky, *doomed]
    total = 3 * len(specs)
    load = run.produce(specs, per_second=rate(40))
    run.wait_for(lambda: run.executions() >= total // 4, "a quarter of the executions", 120)
    run.kill("operator-1")
    run.start_operator("operator-2", port=port)
    run.wait_for(lambda: run.executions() >= total // 2, "half of the executions", 120)
    assert run.terminate("worker-a") == 0, run.logs()
    run.start_worker("worker-c", url)
    run.wait_for(lambda: run.executions() >= 2 * total // 3, "two thirds of the executions", 120)
    run.kill("worker-b")
    run.start_worker("worker-d", url)
    load.finish()
    items = run.wait_finished([n for n, _ in specs], timeout=240)
    expected = {n: "Succeeded" for n, _ in flaky} | {n: "Dead" for n, _ in doomed}
    report = run.report("retries-and-dead", expected, items)
    assert report.ok, report.failures
    exactly_three = 0
    for item in items:
        status, name = item["status"], item["metadata"]["name"]
        counted = [h for h in status["history"] if h["outcome"] != "Released"]
        assert [h["attempt"] for h in counted] == list(range(1, status["attempts"] + 1)), name
        lost = sum(1 for h in counted if h["outcome"] == "LeaseExpired")
        if name.startswith("doomed"):
            assert (status["attempts"], status["reason"]) == (3, "AttemptsExhausted"), status
            continue
        assert counted[-1]["outcome"] == "Succeeded", status
        assert all(h["outcome"] in ("Failed", "LeaseExpired") for h in counted[:-1]), status
        # Attempts 1 and 2 fail whatever happens; a later attempt lost to a
        # killed worker is the only other attempt there can be.
        late_losses = sum(1 for h in counted[2:] if h["outcome"] == "LeaseExpired")
        assert status["attempts"] == 3 + late_losses, status
        exactly_three += status["attempts"] == 3 and lost == 0
    print(f"{exactly_three} of {len(flaky)} flaky Tasks: exactly 3 attempts, no lease lost")
    assert exactly_three >= len(flaky) // 2
