"""Validation on the real control plane: a run recorded with a real operator
and worker, replayed under the policy that ran, reproduces each Task's
completion time within the stated tolerance."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import taskmill
from taskmill.cli.main import plugin
from taskmill.replay.report import TOLERANCE_FRACTION, TOLERANCE_SECONDS, within_tolerance
from taskmill.testing.controlplane import ControlPlane
from taskmill.testing.stack import start_worker
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

TYPE = "replay_sleep"
SLOTS = 3
COUNT = 24


@pytest.fixture
def replay_worker(operator: str, tmp_path: Path) -> Iterator[None]:
    process = start_worker(
        operator,
        "tests.replay.handlers",
        tmp_path / "worker.log",
        cwd=ROOT,
        concurrency=SLOTS,
        name="replay-worker",
    )
    yield
    code = process.stop()
    assert code == 0, f"worker exited with {code}:\n{process.log_tail()}"


def replay(plane: ControlPlane, namespace: str, *args: str) -> Any:
    result = CliRunner().invoke(
        plugin,
        ["replay", "-n", namespace, "--kubeconfig", str(plane.kubeconfig), *args],
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_a_recorded_run_replayed_under_its_policy_ends_when_it_really_did(
    crds: ControlPlane, replay_worker: None, namespace: str
) -> None:
    rng = random.Random(7)
    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
        # Served once: the worker is connected before the measured Tasks arrive.
        client.submit(TYPE, {"seconds": 0}, name="warm-up")
        client.wait("warm-up", timeout=60)
        # Creation times are stored in whole seconds, and the replay takes
        # them as arrivals: begin early in a second so they are near the truth.
        deadline = time.monotonic() + 2
        while time.time() % 1 > 0.2 and time.monotonic() < deadline:
            time.sleep(0.01)
        names = [f"job-{i:02d}" for i in range(COUNT)]
        for name in names:
            seconds = round(rng.uniform(0.2, 0.6), 2)
            client.submit(TYPE, {"seconds": seconds}, name=name, labels={"batch": "measured"})
        for name in names:
            client.wait(name, timeout=120)

    # What ran: one worker of SLOTS slots, the operator's priority order.
    report = json.loads(
        replay(crds, namespace, "-l", "batch=measured", "--workers", str(SLOTS), "-o", "json")
    )

    assert sorted(t["name"] for t in report["tasks"]) == names
    off = []
    for task in report["tasks"]:
        real, simulated = task["real"], task["simulated"]
        assert (real["phase"], simulated["phase"]) == ("Succeeded", "Succeeded")
        if not within_tolerance(real["completion"], simulated["completion"]):
            off.append((task["name"], real["completion"], simulated["completion"]))
    assert not off, (
        f"completion (real, simulated) beyond {TOLERANCE_SECONDS}s + "
        f"{TOLERANCE_FRACTION:.0%}: {off}"
    )
    makespan = report["makespan"]
    assert within_tolerance(makespan["real"], makespan["simulated"]), makespan
    # The slots were really all in use, or the run would prove little.
    assert report["overall"]["wait"]["real"]["max"] > 1

    table = replay(crds, namespace, "-l", "batch=measured", "--order", "reverse-chronological")
    assert "order=reverse-chronological, workers=" in table
    assert re.search(rf"^all\s+{COUNT}\s+wait\s", table, re.M), table
