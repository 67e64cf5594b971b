"""The control plane itself goes away under load: kube-apiserver stopped and
started again with etcd kept, then etcd stopped and started again under the
running API server. On a control plane of its own: these outages would stop
every other test's API server too.

An outage longer than a worker's outcome retries (about 16 s) makes a worker
drop outcomes of finished work; their leases then expire after the outage and
the Tasks run again. The checker explains those executions by the expiry and
counts them as "redone after success"; ``WORKERS_KEEP_OUTCOMES`` says whether
the workers are expected to keep them instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.pytest_plugin import fresh_namespace
from tests.faults.harness import FaultRun, scale, scaled, work

pytestmark = pytest.mark.integration

#: Whether a worker keeps an outcome until the operator takes it, however
#: long the API server is away (then no finished work is ever redone).
WORKERS_KEEP_OUTCOMES = False
#: Longer than a worker's outcome retries, so that the above matters.
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
    specs = work(scaled(300), seconds=0.3)
    # Slow enough that Tasks keep arriving across both outages.
    load = run.produce(specs, per_second=8 * scale())
    run.wait_for(lambda: run.executions() >= len(specs) // 6, "a sixth of the load", 120)
    run.outage("kube-apiserver", APISERVER_OUTAGE_SECONDS)
    resumed = run.executions() + 10
    run.wait_for(lambda: run.executions() >= resumed, "dispatching after the API server", 120)
    run.outage("etcd", ETCD_OUTAGE_SECONDS)
    load.finish()
    items = run.wait_finished([n for n, _ in specs], timeout=300)
    report = run.report("control-plane-outages", {n: "Succeeded" for n, _ in specs}, items)
    assert report.ok, report.failures
    assert all(d["explanation"]["kind"] == "lease-expired" for d in report.duplicates)
    if WORKERS_KEEP_OUTCOMES:
        assert report.redone_after_success == [], report.dumps()
