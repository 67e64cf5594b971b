"""The chart's PrometheusRule, checked and unit-tested by Prometheus' own promtool.

``promtool check rules`` validates the rule file as Prometheus loads it
(expressions, durations, annotation templates); ``promtool test rules``
evaluates the alerts over synthetic series of the operator's metrics: each
alert fires on a bad history, with the labels and annotations it will carry,
and stays silent on a healthy one. promtool is built by
``hack/build-promtool.sh`` (large; not part of the default set-up), so
without it these tests are skipped; ``test_monitoring.py`` parses the same
expressions with ``promql-parser`` in any case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from taskmill.testing.assets import cache_dir
from tests.helm.chart import one, render

JOB = 'job="tm-taskmill"'


def find_promtool() -> Path | None:
    explicit = os.environ.get("PROMTOOL")
    if explicit:
        return Path(explicit)
    built = sorted((cache_dir() / "assets").glob("promtool-*/promtool"))
    if built:
        return built[-1]
    on_path = shutil.which("promtool")
    return Path(on_path) if on_path else None


PROMTOOL = find_promtool()
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not built (hack/build-promtool.sh)"
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def rules() -> dict[str, Any]:
    rule = one(render("monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def expanded_annotations(alert: str, **expanded: str) -> dict[str, str]:
    """The alert's annotations as Prometheus will expand them."""
    (group,) = rules()["groups"]
    (rule,) = [r for r in group["rules"] if r["alert"] == alert]
    out = {}
    for key, text in rule["annotations"].items():
        for template, value in expanded.items():
            text = text.replace(template, value)
        out[key] = text
    return out


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    matchers = ",".join([JOB, *(f'{k}="{v}"' for k, v in labels.items())])
    return {"series": f"{name}{{{matchers}}}", "values": values}


def bad_history() -> list[dict[str, str]]:
    return [
        series("taskmill_task_dead_total", "0+5x60", reason="MaxAttempts"),
        series("taskmill_tasks", "3x60", phase="Pending"),
        series("taskmill_task_transitions_total", "7x60", phase="Running"),
        series("taskmill_task_retries_total", "0+3x60", reason="LeaseExpired"),
        # Every fire lands beyond the last finite bucket (60 s).
        series("taskmill_crontask_fire_lag_seconds_bucket", "0x60", le="1"),
        series("taskmill_crontask_fire_lag_seconds_bucket", "0x60", le="60"),
        series("taskmill_crontask_fire_lag_seconds_bucket", "0+1x60", le="+Inf"),
        series("taskmill_leader", "0x60"),
    ]


def healthy_history() -> list[dict[str, str]]:
    return [
        series("taskmill_task_dead_total", "0x60", reason="MaxAttempts"),
        series("taskmill_tasks", "3x60", phase="Pending"),
        series("taskmill_task_transitions_total", "7+2x60", phase="Running"),
        series("taskmill_task_retries_total", "0x60", reason="LeaseExpired"),
        series("taskmill_crontask_fire_lag_seconds_bucket", "0+1x60", le="1"),
        series("taskmill_crontask_fire_lag_seconds_bucket", "0+1x60", le="60"),
        series("taskmill_crontask_fire_lag_seconds_bucket", "0+1x60", le="+Inf"),
        series("taskmill_leader", "1x60"),
    ]


def write(tmp_path: Path) -> None:
    # JSON is YAML: promtool reads both files as written here.
    (tmp_path / "rules.yaml").write_text(json.dumps(rules()))
    warning = {"severity": "warning"}
    bad = {
        "TaskmillTasksDead": [
            {
                "exp_labels": {**warning, "reason": "MaxAttempts"},
                "exp_annotations": expanded_annotations(
                    "TaskmillTasksDead", **{"{{ $labels.reason }}": "MaxAttempts"}
                ),
            }
        ],
        "TaskmillTasksPendingTooLong": [
            {
                "exp_labels": warning,
                "exp_annotations": expanded_annotations("TaskmillTasksPendingTooLong"),
            }
        ],
        "TaskmillLeasesExpiring": [
            {
                "exp_labels": warning,
                "exp_annotations": expanded_annotations("TaskmillLeasesExpiring"),
            }
        ],
        "TaskmillCronTaskFireLag": [
            {
                "exp_labels": warning,
                "exp_annotations": expanded_annotations(
                    "TaskmillCronTaskFireLag", **{"{{ $value | humanizeDuration }}": "1m 0s"}
                ),
            }
        ],
        "TaskmillNoLeader": [
            {
                # absent() of a comparison carries no labels of the selector.
                "exp_labels": warning,
                "exp_annotations": expanded_annotations("TaskmillNoLeader"),
            }
        ],
    }
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "bad history: every alert fires",
                "interval": "1m",
                "input_series": bad_history(),
                "alert_rule_test": [
                    {"eval_time": "45m", "alertname": name, "exp_alerts": alerts}
                    for name, alerts in bad.items()
                ],
            },
            {
                "name": "healthy history: none fires",
                "interval": "1m",
                "input_series": healthy_history(),
                "alert_rule_test": [
                    {"eval_time": "45m", "alertname": name, "exp_alerts": []} for name in bad
                ],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(json.dumps(tests))


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    write(tmp_path)
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout + result.stderr


def test_alerts_fire_on_a_bad_history_and_not_on_a_healthy_one(tmp_path: Path) -> None:
    write(tmp_path)
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
