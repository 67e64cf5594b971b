"""The shipped Argo CD health checks, on the test cases laid out as Argo CD's
own resource customizations are (health_test.yaml beside testdata/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gitops.health import CHECKS, KINDS, health


def cases() -> list[Any]:
    found = []
    for kind in KINDS:
        spec = yaml.safe_load((CHECKS / kind / "health_test.yaml").read_text())
        for case in spec["tests"]:
            found.append(pytest.param(kind, case, id=f"{kind}-{case['inputPath']}"))
    return found


@pytest.mark.parametrize(("kind", "case"), cases())
def test_each_case_gets_the_health_it_names(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CHECKS / kind / case["inputPath"]).read_text())
    expected = case["healthStatus"]
    assert health(kind, obj) == (expected["status"], expected["message"])


def test_every_kind_has_a_check_and_cases_for_each_of_its_healths() -> None:
    statuses = {
        kind: {
            case["healthStatus"]["status"]
            for case in yaml.safe_load((CHECKS / kind / "health_test.yaml").read_text())["tests"]
        }
        for kind in KINDS
    }
    assert statuses == {
        "Task": {"Progressing", "Healthy", "Degraded"},
        "CronTask": {"Healthy", "Degraded", "Suspended"},
        "TaskQueue": {"Healthy", "Suspended"},
    }


def test_the_argocd_cm_snippet_holds_the_checks_as_they_are() -> None:
    script = Path(__file__).resolve().parents[2] / "hack" / "update-argocd-health.py"
    run = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    data = yaml.safe_load((CHECKS.parent / "argocd-cm.yaml").read_text())["data"]
    for kind in KINDS:
        lua = (CHECKS / kind / "health.lua").read_text()
        assert data[f"resource.customizations.health.taskmill.dev_{kind}"] == lua
