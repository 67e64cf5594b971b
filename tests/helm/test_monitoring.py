"""The chart's PrometheusRule and Grafana dashboard: valid PromQL, real metrics.

Every expression is parsed and type-checked by ``promql-parser`` (the Rust
PromQL parser's bindings: function arity, argument types, matchers), and
every metric it selects must be one the operator or the worker registers —
read from their real registries, so a renamed metric fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest

from taskmill.controller.metrics import OperatorMetrics
from taskmill.worker.metrics import WorkerMetrics
from tests.helm.chart import CHART, one, render

MONITORING = (
    "monitoring.prometheusRule.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
)
ALERTS = {
    "TaskmillTasksDead",
    "TaskmillTasksPendingTooLong",
    "TaskmillLeasesExpiring",
    "TaskmillCronTaskFireLag",
    "TaskmillNoLeader",
}


def exported_series() -> dict[str, str]:
    """Series name -> family type, for everything operator and worker register."""
    registries = [
        OperatorMetrics().registry,
        WorkerMetrics(slots=1).registry,
    ]
    series: dict[str, str] = {}
    for registry in registries:
        for family in registry.collect():
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""],
            }[family.type]
            for suffix in suffixes:
                series[family.name + suffix] = family.type
    return series


def selected(expr: str) -> Iterator[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return iter(found)


def rule_exprs() -> dict[str, str]:
    rule = one(render(*MONITORING), "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    return {r["alert"]: r["expr"] for r in group["rules"]}


def dashboard() -> Any:
    config = one(render(*MONITORING), "ConfigMap", "tm-taskmill-dashboard")
    return json.loads(config["data"]["taskmill.json"])


def dashboard_exprs() -> dict[str, str]:
    return {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    }


def test_rules_cover_dead_pending_leases_fire_lag_and_leadership() -> None:
    rule = one(render(*MONITORING), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    assert {r["alert"] for r in group["rules"]} == ALERTS
    for r in group["rules"]:
        assert r["labels"]["severity"] == "warning"
        assert r["annotations"]["summary"]
        if "for" in r:
            assert promql_parser.parse_duration(r["for"]).total_seconds() > 0


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_expression_parses_and_uses_exported_metrics(source: str) -> None:
    exprs = rule_exprs() if source == "rules" else dashboard_exprs()
    assert exprs
    exported = exported_series()
    for where, expr in exprs.items():
        try:
            selectors = list(selected(expr))
        except ValueError as exc:
            pytest.fail(f"{where}: {expr!r} does not parse: {exc}")
        assert selectors, where
        for selector in selectors:
            assert selector.name in exported, f"{where}: {selector.name} is not exported"


def test_rules_select_this_releases_operator_and_use_the_thresholds() -> None:
    for alert, expr in rule_exprs().items():
        for selector in selected(expr):
            matchers = {(m.name, m.value) for m in selector.matchers.matchers}
            assert ("job", "tm-taskmill") in matchers, alert
    defaults = rule_exprs()
    custom = render(
        "monitoring.prometheusRule.enabled=true",
        'monitoring.prometheusRule.selector=namespace="tm"\\,service="ops"',
        "monitoring.prometheusRule.cronFireLagSeconds=90",
        "monitoring.prometheusRule.pendingSeconds=1200",
    )
    (group,) = one(custom, "PrometheusRule")["spec"]["groups"]
    rules = {r["alert"]: r["expr"] for r in group["rules"]}
    assert rules["TaskmillCronTaskFireLag"].endswith("> 90")
    assert "[1200s:1m]" in rules["TaskmillTasksPendingTooLong"]
    for alert, expr in rules.items():
        assert expr != defaults[alert]
        for selector in selected(expr):
            matchers = {(m.name, m.value) for m in selector.matchers.matchers}
            assert {("namespace", "tm"), ("service", "ops")} <= matchers, alert


def test_fire_lag_and_latency_quantiles_read_histogram_buckets() -> None:
    for where, expr in {**rule_exprs(), **dashboard_exprs()}.items():
        if "histogram_quantile" in expr:
            names = {s.name or "" for s in selected(expr)}
            assert all(n.endswith("_bucket") for n in names), where
    assert "taskmill_crontask_fire_lag_seconds_bucket" in rule_exprs()["TaskmillCronTaskFireLag"]


def test_dashboard_ships_verbatim_with_the_sidecar_label() -> None:
    docs = render(
        *MONITORING,
        "monitoring.grafanaDashboard.namespace=grafana",
        "monitoring.grafanaDashboard.annotations.grafana_folder=Ops",
    )
    config = one(docs, "ConfigMap", "tm-taskmill-dashboard")
    assert config["metadata"]["namespace"] == "grafana"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"] == {"grafana_folder": "Ops"}
    shipped = json.loads(config["data"]["taskmill.json"])
    assert shipped == json.loads((CHART / "dashboards" / "taskmill.json").read_text())
    ids = [panel["id"] for panel in shipped["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in shipped["templating"]["list"]}
    assert {"datasource", "operator_job", "worker_job"} <= variables


def test_monitoring_objects_are_off_by_default() -> None:
    docs = render()
    assert not [d for d in docs if d["kind"] in ("PrometheusRule", "PodMonitor")]
    assert not [d for d in docs if d["kind"] == "ConfigMap"]
