"""`taskmill dev`: the README's first command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskmill.testing.controlplane import ControlPlane

pytestmark = pytest.mark.integration


def taskmill(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskmill", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_dev_up_runs_the_examples_and_dev_down_stops_everything(tmp_path: Path) -> None:
    env = {**os.environ, "TASKMILL_DEV_DIR": str(tmp_path / "dev")}
    up = taskmill("dev", "up", "--detach", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert "kubectl get tasks" in up.stdout

        exports = taskmill("dev", "env", env=env).stdout
        kubeconfig = exports.split("KUBECONFIG=")[1].split()[0]
        plane = ControlPlane.attach(tmp_path / "dev" / "controlplane")
        assert plane.is_running()
        for name, phase in [("echo-hello", "Succeeded"), ("fail-twice", "Dead")]:
            plane.kubectl(
                "--kubeconfig",
                kubeconfig,
                "wait",
                f"tasks.taskmill.dev/{name}",
                f"--for=jsonpath={{.status.phase}}={phase}",
                "--timeout=60s",
            )
        echo = json.loads(
            plane.kubectl("get", "tasks.taskmill.dev/echo-hello", "-o", "json").stdout
        )
        assert echo["status"]["result"] == {"greeting": "hello from Taskmill"}
        # The payloadFrom admission policy is in force, as the chart installs it.
        policy = json.loads(
            plane.kubectl("get", "validatingadmissionpolicybinding", "-o", "json").stdout
        )
        assert [b["spec"]["policyName"] for b in policy["items"]] == ["taskmill-payloadfrom"]

        again = taskmill("dev", "up", "--detach", env=env)
        assert again.returncode != 0
        assert "already running" in again.stderr
    finally:
        down = taskmill("dev", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not plane.is_running()
    assert not (tmp_path / "dev").exists()
    assert "no dev environment is running" in taskmill("dev", "env", env=env).stderr
