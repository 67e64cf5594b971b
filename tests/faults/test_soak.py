"""Soak: a mixed load for many minutes while the memory of the operator and
the workers is sampled; growth after warm-up must stay under a bound.

Nine Tasks in ten are deleted by their TTL soon after they finish, so the
operator's state stays bounded and growth means a leak (the tenth stays for
the checker).

Run by ``hack/faults --soak MINUTES`` (skipped otherwise). The load mixes
successes, retries, Dead Tasks, cancellations, a CronTask and TTL
deletions. RSS is read from ``/proc/<pid>/status`` every
``SAMPLE_SECONDS``; the first quarter of the run (at least a minute) is
warm-up; growth is the median of the last fifth of the samples minus the
median of the first fifth after warm-up.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.faults.history import check
from taskmill.testing.faults.records import FinalTask, read_executions
from tests.faults.harness import GROUP_PATH, FaultRun, work

MINUTES = float(os.environ.get("TASKMILL_FAULTS_SOAK_MINUTES", "0") or 0)
SAMPLE_SECONDS = 10.0
#: Allowed RSS growth after warm-up, per process: a leak of one object per
#: Task would exceed it within minutes at this load.
GROWTH_BOUND_MIB = {"operator": 40.0, "worker": 20.0}
PER_SECOND = 10.0
KEEP_ONE_IN = 10
TTL_SECONDS = 10

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(MINUTES <= 0, reason="a soak runs only with hack/faults --soak MINUTES"),
]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def growth(samples: list[float], warmup: int) -> float:
    settled = samples[warmup:]
    if len(settled) < 10:
        return 0.0
    fifth = max(1, len(settled) // 5)
    return statistics.median(settled[-fifth:]) - statistics.median(settled[:fifth])


@pytest.fixture
def run(lone_plane: ControlPlane, lone_namespace: str, tmp_path: Path) -> Iterator[FaultRun]:
    fault_run = FaultRun(lone_plane, lone_namespace, tmp_path, lease_seconds=10)
    fault_run.create_queue(retryPolicy={"maxAttempts": 3, "backoff": {"initialSeconds": 0.5}})
    yield fault_run
    fault_run.close()


def test_memory_stays_flat_under_a_mixed_load(run: FaultRun) -> None:
    url = run.start_operator("operator")
    run.start_worker("worker-a", url)
    run.start_worker("worker-b", url)
    run.apply(
        {
            "apiVersion": "taskmill.dev/v1alpha1",
            "kind": "CronTask",
            "metadata": {"name": "soak-tick"},
            "spec": {
                "schedule": "@every 2s",
                "taskTemplate": {"spec": {"type": "fault_work", "queue": "faults"}},
            },
        }
    )
    count = int(MINUTES * 60 * PER_SECOND)
    kinds = {
        0: ("ok", {}, {}),
        1: ("retry", {}, {"failAttempts": 1}),
        2: ("dead", {"maxAttempts": 2}, {"alwaysFail": True}),
    }
    specs = []
    for i in range(count):
        prefix, spec, payload = kinds[i % len(kinds)]
        # Most Tasks are deleted soon after they finish, so that what the
        # operator must hold stays bounded and growth means a leak; one in
        # KEEP_ONE_IN stays for the checker.
        if (i // len(kinds) + 1) % KEEP_ONE_IN:  # whole rounds of the kinds are kept
            prefix, spec = f"ttl-{prefix}", {**spec, "ttlSecondsAfterFinished": TTL_SECONDS}
        [(_, body)] = work(1, spec=spec, seconds=0.1, **payload)
        specs.append((f"{prefix}-{i:06d}", body))
    load = run.produce(specs, per_second=PER_SECOND)
    samples: dict[str, list[float]] = {name: [] for name in run.members}
    cancelled: list[str] = []
    end = time.monotonic() + MINUTES * 60
    tasks_url = f"{GROUP_PATH}/namespaces/{run.namespace}/tasks"
    while time.monotonic() < end:
        for name, member in run.members.items():
            value = rss_mib(member.process.pid)
            if value is not None:
                samples[name].append(value)
        name = f"cancel-{len(cancelled):05d}"
        run.create_task(name, work(1, seconds=30)[0][1], time.monotonic() + 60)
        cancelled.append(name)
        run.plane.request(
            "PATCH",
            f"{tasks_url}/{name}",
            {"spec": {"cancel": True}},
            content_type="application/merge-patch+json",
        )
        time.sleep(SAMPLE_SECONDS)  # the sampling interval
    load.finish()
    run.apply(
        {
            "apiVersion": "taskmill.dev/v1alpha1",
            "kind": "CronTask",
            "metadata": {"name": "soak-tick"},
            "spec": {
                "schedule": "@every 2s",
                "suspend": True,
                "taskTemplate": {"spec": {"type": "fault_work", "queue": "faults"}},
            },
        }
    )
    kept = [n for n, _ in specs if not n.startswith("ttl")]
    items = run.wait_finished(kept + cancelled, timeout=600)
    expected = {
        n: "Dead"
        if n.startswith("dead")
        else "Cancelled"
        if n.startswith("cancel")
        else "Succeeded"
        for n in kept + cancelled
    }
    ttl_names = {n for n, _ in specs if n.startswith("ttl")}
    # Every TTL'd Task ran to its end before it was deleted.
    ended = {e.name for e in read_executions(run.log) if e.outcome in ("succeeded", "failed")}
    assert ttl_names <= ended | {i["metadata"]["name"] for i in run.list_tasks()}
    remaining = {i["metadata"]["uid"] for i in items}
    executions = [e for e in read_executions(run.log) if e.uid in remaining]
    tasks = [FinalTask.from_object(i) for i in items if i["metadata"]["name"] in expected]
    report = check(expected, tasks, [e for e in executions if e.uid in {t.uid for t in tasks}])
    warmup = max(int(60 / SAMPLE_SECONDS), len(next(iter(samples.values()))) // 4)
    memory: dict[str, Any] = {}
    for name, values in samples.items():
        role = run.members[name].life.role
        memory[name] = {
            "first_mib": round(values[0], 1) if values else None,
            "peak_mib": round(max(values), 1) if values else None,
            "growth_after_warmup_mib": round(growth(values, warmup), 1),
            "bound_mib": GROWTH_BOUND_MIB[role],
            "samples": len(values),
        }
    ttl_gone = sum(1 for n, _ in specs if n.startswith("ttl")) - sum(
        1 for i in run.list_tasks() if i["metadata"]["name"].startswith("ttl")
    )
    document = {"minutes": MINUTES, "memory": memory, "ttl_deleted": ttl_gone, **report.to_json(20)}
    target = os.environ.get("TASKMILL_FAULTS_REPORT_DIR")
    if target:
        soak_report = {"scenario": "soak", **report.to_json(), "memory": memory}
        (Path(target) / "soak.json").write_text(json.dumps(soak_report, indent=2))
    print(f"\n== soak report\n{json.dumps(document, indent=2)}")
    assert report.ok, report.failures
    for name, figures in memory.items():
        assert figures["growth_after_warmup_mib"] <= figures["bound_mib"], (name, figures)
