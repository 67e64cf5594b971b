"""Throughput of the whole pipeline against the API server's own ceiling.

One control plane, three phases in this order:

1. **ceiling**: a bare async client does exactly the writes a Task needs (a
   create, then the operator's two status merge patches, ``Running`` with the
   lease and ``Succeeded`` with history and condition, each carrying the
   resourceVersion precondition) for N Tasks, ``--concurrency`` at a time,
   with no operator at all;
2. **pipeline**: the operator and the workers as the chart runs them (2
   workers x 4 slots) and N no-op Tasks created by a client at the same
   concurrency, timed from the first create until the operator has seen the
   last ``Succeeded``;
3. **ceiling again**, so drift of the machine shows;
4. with ``--two-write-ceiling``, the ceiling of a Task without its
   ``Running`` write (what keeping leases only in memory would buy).

Reports tasks/s of each, the ratio to the ceiling (the mean of the two),
API writes per Task as the API server counted them, and CPU per Task of the
operator, the workers, kube-apiserver and etcd.

    python bench/throughput.py [--tasks 10000] [--concurrency 32]
        [--workers 2] [--worker-concurrency 4] [--profile] [--two-write-ceiling]

``--profile`` records the operator with py-spy during the pipeline
(``bench/results/throughput-operator.speedscope.json``, and a top-down text
summary printed at the end). Writes JSON to bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

from taskmill.dispatch.leases import LeaseInfo
from taskmill.dispatch.transitions import leased, succeeded
from taskmill.kube.client import KubeClient
from taskmill.testing.controlplane import ControlPlane


async def ceiling(
    api: KubeClient, namespace: str, count: int, concurrency: int, *, record_lease: bool = True
) -> float:
    """Seconds for ``count`` Tasks' worth of writes by a bare client.

    ``record_lease=False`` leaves out the ``Running`` write: what a Task
    would cost if leases lived only in the operator's memory (see the
    README's "Fewer writes" for what that would give up).
    """

    async def one(index: int) -> None:
        name = f"c-{index}"
        created = await api.create(
            harness.tasks_path(namespace), harness.task_manifest(name, namespace)
        )
        now = time.time()
        lease = LeaseInfo(
            id=f"lease-{index}",
            key=(namespace, name),
            uid=created["metadata"]["uid"],
            worker="bench-worker",
            attempt=1,
            started_at=now,
            expires_at=now + 30,
            lease_seconds=30,
        )
        status_path = harness.tasks_path(namespace, name, "status")
        latest = created
        if record_lease:
            latest = await api.merge_patch(
                status_path,
                {
                    "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                    "status": {**leased(None, lease), "observedGeneration": 1},
                },
            )
        await api.merge_patch(
            status_path,
            {
                "metadata": {"resourceVersion": latest["metadata"]["resourceVersion"]},
                "status": {**succeeded(None, lease, None, time.time()), "observedGeneration": 1},
            },
        )

    started = time.perf_counter()
    await harness.run_bounded(count, concurrency, one)
    return time.perf_counter() - started


async def measured_ceiling(
    api: KubeClient,
    plane: ControlPlane,
    namespace: str,
    count: int,
    concurrency: int,
    *,
    record_lease: bool = True,
) -> dict[str, Any]:
    """:func:`ceiling` with the API server's writes and CPU counted around it."""
    before = harness.apiserver_writes(plane)
    meter = harness.CpuMeter(plane.pids)
    meter.start()
    seconds = await ceiling(api, namespace, count, concurrency, record_lease=record_lease)
    used = meter.stop()
    return summary_of(count, seconds, harness.apiserver_writes(plane), before, used)


async def remove_all(api: KubeClient, namespace: str) -> None:
    """Delete the namespace's Tasks in one request and wait until they are gone."""
    # Deleting a whole collection takes the API server minutes at 10,000+.
    await api.request("DELETE", harness.tasks_path(namespace), timeout_seconds=900)
    deadline = time.monotonic() + 600
    while (await api.get(harness.tasks_path(namespace), params={"limit": "1"}))["items"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Tasks in {namespace} not deleted")
        await asyncio.sleep(0.5)


async def pipeline(
    api: KubeClient, stack: harness.Stack, namespace: str, count: int, concurrency: int
) -> float:
    """Seconds from the first create until the operator saw the last Succeeded."""
    baseline = stack.operator_metric("taskmill_task_transitions_total", 'phase="Succeeded"')

    async def one(index: int) -> None:
        await api.create(
            harness.tasks_path(namespace), harness.task_manifest(f"p-{index}", namespace)
        )

    started = time.perf_counter()
    creating = asyncio.create_task(harness.run_bounded(count, concurrency, one))

    def done() -> bool:
        seen = stack.operator_metric("taskmill_task_transitions_total", 'phase="Succeeded"')
        return seen - baseline >= count

    while not done():
        if creating.done() and creating.exception() is not None:
            raise creating.exception()  # type: ignore[misc]
        if time.perf_counter() - started > 3600:
            raise TimeoutError("pipeline did not finish within an hour")
        # Each poll renders the operator's metrics (a little of its CPU):
        # a quarter second is well under 1 % of any run's length.
        await asyncio.sleep(0.25)
    elapsed = time.perf_counter() - started
    await creating
    return elapsed


async def verify_succeeded(api: KubeClient, namespace: str, count: int) -> None:
    """Every Task really is Succeeded, as the API server stores it."""
    phases: dict[str, int] = {}
    token = ""
    while True:
        params = {"limit": "2000", **({"continue": token} if token else {})}
        page = await api.get(harness.tasks_path(namespace), params=params)
        for item in page["items"]:
            phase = item.get("status", {}).get("phase", "?")
            phases[phase] = phases.get(phase, 0) + 1
        token = page["metadata"].get("continue", "")
        if not token:
            break
    if phases.get("Succeeded", 0) != count:
        raise AssertionError(f"expected {count} Succeeded, found {phases}")


def start_profiler(pid: int, target: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not installed (pip install py-spy): not profiling", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "speedscope",
            "--output",
            str(target),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    count, concurrency = args.tasks, args.concurrency
    # The ceiling runs with no operator at all; its Tasks are deleted before
    # the operator starts, so they cost the pipeline nothing.
    with harness.stack(workdir, workers=0, concurrency=1, operator=False) as stack:
        plane = stack.plane
        async with harness.client(plane) as api:
            for namespace in ("ceiling", "pipeline", "ceiling-after"):
                await harness.create_namespace(api, namespace)

            results: dict[str, Any] = {}
            results["ceiling"] = await measured_ceiling(api, plane, "ceiling", count, concurrency)
            await remove_all(api, "ceiling")

            stack.start_operator()
            for _ in range(args.workers):
                stack.add_worker(args.worker_concurrency)
            # Warm up: workers polling, connections open, nothing measured.
            await warm_up(api, stack, "pipeline")

            profiler = None
            if args.profile:
                profiler = start_profiler(
                    stack.operator.pid,  # type: ignore[union-attr]
                    harness.RESULTS / "throughput-operator.speedscope.json",
                )
            before = harness.apiserver_writes(plane)
            meter = harness.CpuMeter(stack.pids())
            meter.start()
            seconds = await pipeline(api, stack, "pipeline", count, concurrency)
            used = meter.stop()
            system = meter.system
            writes = harness.apiserver_writes(plane)
            if profiler is not None:
                # py-spy writes its output on SIGINT, as on Ctrl-C.
                profiler.send_signal(signal.SIGINT)
                profiler.wait(120)
            results["pipeline"] = summary_of(count, seconds, writes, before, used)
            results["pipeline"]["system_cpu_ms_per_task"] = harness.cpu_ms_per_task(system, count)
            results["pipeline"]["lease_latency_p99_bucket_s"] = lease_p99(stack)
            await verify_succeeded(api, "pipeline", count + WARM_UP)

            stack.stop()
            results["ceiling_after"] = await measured_ceiling(
                api, plane, "ceiling-after", count, concurrency
            )
            if args.two_write_ceiling:
                await harness.create_namespace(api, "ceiling-two-writes")
                results["ceiling_two_writes"] = await measured_ceiling(
                    api, plane, "ceiling-two-writes", count, concurrency, record_lease=False
                )
    return results


WARM_UP = 200


async def warm_up(api: KubeClient, stack: harness.Stack, namespace: str) -> None:
    baseline = stack.operator_metric("taskmill_task_transitions_total", 'phase="Succeeded"')
    for index in range(WARM_UP):
        await api.create(
            harness.tasks_path(namespace), harness.task_manifest(f"warm-{index}", namespace)
        )
    await harness.wait_for(
        lambda: (
            stack.operator_metric("taskmill_task_transitions_total", 'phase="Succeeded"') - baseline
            >= WARM_UP
        ),
        limit=300,
        what="warm-up Tasks Succeeded",
    )


def lease_p99(stack: harness.Stack) -> float | None:
    """The bucket holding the p99 of the operator's create→lease histogram."""
    import urllib.request

    with urllib.request.urlopen(f"{stack.lease_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith("taskmill_task_lease_latency_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    if not buckets:
        return None
    total = buckets[-1][1]
    for bound, cumulative in buckets:
        if cumulative >= 0.99 * total:
            return bound
    return None


def summary_of(
    count: int,
    seconds: float,
    writes_after: dict[str, float],
    writes_before: dict[str, float],
    used: dict[str, float],
) -> dict[str, Any]:
    writes = harness.writes_between(writes_before, writes_after)
    return {
        "tasks": count,
        "seconds": round(seconds, 3),
        "tasks_per_second": round(count / seconds, 1),
        "api_writes": writes,
        "api_writes_per_task": round(sum(writes.values()) / count, 3),
        "cpu_seconds": {name: round(value, 3) for name, value in used.items()},
        "cpu_ms_per_task": harness.cpu_ms_per_task(used, count),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--two-write-ceiling",
        action="store_true",
        help="also measure the ceiling without the Running write (create + finish only)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskmill-bench-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    ceiling_rate = (
        results["ceiling"]["tasks_per_second"] + results["ceiling_after"]["tasks_per_second"]
    ) / 2
    pipe = results["pipeline"]
    ratio = pipe["tasks_per_second"] / ceiling_rate
    cpu = pipe["cpu_ms_per_task"]
    summary = (
        f"throughput: {pipe['tasks_per_second']:.0f} tasks/s end to end vs ceiling "
        f"{ceiling_rate:.0f} tasks/s ({results['ceiling']['tasks_per_second']:.0f} before, "
        f"{results['ceiling_after']['tasks_per_second']:.0f} after) = {ratio:.0%}; "
        f"{pipe['api_writes_per_task']:.2f} API writes/Task; CPU/Task: operator "
        f"{cpu.get('operator', 0):.2f} ms, workers {cpu.get('workers', 0):.2f} ms, "
        f"kube-apiserver {cpu.get('kube-apiserver', 0):.2f} ms, etcd {cpu.get('etcd', 0):.2f} ms "
        f"(N={args.tasks}, concurrency {args.concurrency}, "
        f"{args.workers}x{args.worker_concurrency} worker slots)"
    )
    harness.write_result(
        "throughput",
        {
            "parameters": vars(args),
            "apiserver_flags": harness.APISERVER_FLAGS,
            "ratio_to_ceiling": round(ratio, 3),
            **results,
        },
        summary,
    )


if __name__ == "__main__":
    main()
