"""The control plane itself goes away under load: kube-apiserver stopped and
started again with etcd kept, then etcd stopped and started again under the
running API server. On a control plane of its own: these outages would stop
every other test's API server too.

The API server's outage is longer than the ~16 s after which a worker once
gave up an outcome it could not deliver (its lease then expired and the
finished work was done again, which the checker counts as "redone after
success"). A worker now keeps the outcome, and keeps heartbeating, until the
operator takes it: no finished outcome is given up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.pytest_plugin import fresh_namespace
from tests.faults.harness import FaultRun, scale, scaled, work

pytestmark = pytest.mark.integration

#: Longer than the outcome retries of a worker that would give up.
APISERVER_OUTAGE_SECONDS = 20
ETCD_OUTAGE_SECONDS = 8


@pytest.fixture(scope="module")
def outage_plane() -> Iterator[ControlPlane]:
    from taskmill.testing.stack import install_crds

    with ControlPlane(controller_manager=False) as plane:
        install_crds(plane)
        yield plane


@pytest.fixture
def run(
    outage_plane: ControlPlane, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[FaultRun]:
    for namespace in fresh_namespace(outage_plane, request.node.name):
        fault_run = FaultRun(outage_plane, namespace, tmp_path)
        fault_run.create_queue(retryPolicy={"maxAttempts": 5, "backoff": {"initialSeconds": 0.5}})
        yield fault_run
        fault_run.close()


def test_the_api_server_and_etcd_go_away_and_come_back(run: FaultRun) -> None:
    url = run.start_operator("operator")
    run.start_worker("worker-a", url)
    run.start_worker("worker-b", url)
    specs = work(scaled(300), seconds=1.0)
    # Slow enough that Tasks keep arriving across both outages, with about
    # ten running at any time.
    load = run.produce(specs, per_second=10 * scale())
    run.wait_for(lambda: run.executions() >= len(specs) // 6, "a sixth of the load", 120)
    run.outage("kube-apiserver", APISERVER_OUTAGE_SECONDS)
    resumed = run.executions() + 10
    run.wait_for(lambda: run.executions() >= resumed, "dispatching after the API server", 120)
    run.outage("etcd", ETCD_OUTAGE_SECONDS)
    load.finish()
    items = run.wait_finished([n for n, _ in specs], timeout=300)
    report = run.report("control-plane-outages", {n: "Succeeded" for n, _ in specs}, items)
    assert report.ok, report.failures
    # Both outages hit running work: handlers finished while nothing could be written.
    assert all(run.ended_during(outage) >= 1 for outage in run.record.outages), run.record
    assert all(d["explanation"]["kind"] == "lease-expired" for d in report.duplicates)
    # No outcome of finished work was given up: a worker keeps it until the
    # operator takes it. (A lease granted by a write that stalled while etcd
    # was away can reach its worker already expired; that work is redone,
    # explained by the expiry, and counted under "started-after-lease-ended".)
    lost_outcomes = [d for d in report.duplicates if d["timing"] == "outcome-not-taken"]
    assert lost_outcomes == [], report.dumps()
