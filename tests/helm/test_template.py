"""``helm lint`` and ``helm template`` with value combinations (no API server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helm.chart import CHART, CI_VALUES, HANDLERS, find, helm, one, render

CRD_NAMES = {"tasks.taskmill.dev", "crontasks.taskmill.dev", "taskqueues.taskmill.dev"}


def test_chart_lints_strictly_with_its_defaults() -> None:
    # No --set: lint renders exactly what `helm install taskmill charts/taskmill` does.
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout
    docs = [d for d in yaml.safe_load_all(helm("template", "tm", str(CHART)).stdout) if d]
    worker = one(docs, "Deployment", "tm-taskmill-worker")
    assert (
        "--handlers=examples.handlers"
        in worker["spec"]["template"]["spec"]["containers"][0]["args"]
    )


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_ci_values_lint_and_render(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in result.stdout
    docs = [
        d
        for d in yaml.safe_load_all(helm("template", "tm", str(CHART), "-f", str(values)).stdout)
        if d
    ]
    assert find(docs, "Deployment", "tm-taskmill-operator")


def test_default_render_has_every_component() -> None:
    docs = render()
    kinds = {d["kind"] for d in docs}
    assert {
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } <= kinds
    assert not find(docs, "ServiceMonitor")
    assert not find(docs, "ResourceQuota")


def test_crds_are_kept_on_uninstall_and_can_be_disabled() -> None:
    crds = find(render(), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == CRD_NAMES
    for crd in crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not find(render("crds.enabled=false"), "CustomResourceDefinition")


def test_operator_pod_is_locked_down_and_probed() -> None:
    deployment = one(render(), "Deployment", "tm-taskmill-operator")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    args = container["args"]
    assert args[0] == "operator"
    assert "--leader-elect" in args
    assert "--leader-election-name=tm-taskmill-leader" in args
    assert "--auth-audience=taskmill" in args
    assert "--worker-identity=system:serviceaccount:taskmill:tm-taskmill-worker" in args
    assert deployment["spec"]["replicas"] == 2


def test_worker_gets_grace_plus_margin_and_only_a_lease_token() -> None:
    docs = render("worker.graceSeconds=40", "worker.terminationMarginSeconds=7")
    pod = one(docs, "Deployment", "tm-taskmill-worker")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 47
    assert pod["automountServiceAccountToken"] is False
    args = pod["containers"][0]["args"]
    assert args[0] == "worker"
    assert "--handlers=examples.handlers" in args
    assert "--grace-seconds=40" in args
    assert "--lease-url=http://tm-taskmill.taskmill.svc:8080" in args
    assert "--token-file=/var/run/secrets/taskmill/token" in args
    (projected,) = [v for v in pod["volumes"] if "projected" in v]
    source = projected["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "taskmill"


def test_workers_are_granted_no_api_rights() -> None:
    for scope in ("cluster", "namespaced"):
        docs = render(f"rbac.scope={scope}")
        for binding in find(docs, "RoleBinding") + find(docs, "ClusterRoleBinding"):
            for subject in binding["subjects"]:
                assert subject["name"] != "tm-taskmill-worker", binding["metadata"]["name"]


def test_cluster_scope_uses_a_cluster_role_and_watches_everything() -> None:
    docs = render("rbac.scope=cluster")
    role = one(docs, "ClusterRole", "tm-taskmill-taskmill-operator")
    assert any("tasks" in rule["resources"] for rule in role["rules"])
    args = one(docs, "Deployment", "tm-taskmill-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert not [a for a in args if a.startswith("--namespace")]


def test_namespaced_scope_has_a_role_per_watched_namespace() -> None:
    docs = render("rbac.scope=namespaced", "rbac.namespaces={team-a,team-b}")
    assert not find(docs, "ClusterRole", "tm-taskmill-taskmill-operator")
    roles = find(docs, "Role", "tm-taskmill-operator")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    args = one(docs, "Deployment", "tm-taskmill-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args
    # TokenReview is cluster-scoped: the one ClusterRole even this mode needs.
    (review,) = find(docs, "ClusterRole")
    assert review["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]


def test_operator_never_writes_a_task_spec() -> None:
    role = one(render(), "ClusterRole", "tm-taskmill-taskmill-operator")
    for rule in role["rules"]:
        if "tasks" in rule["resources"]:
            assert not {"update", "patch"} & set(rule["verbs"])


def test_leader_lease_is_narrowed_by_name() -> None:
    role = one(render(), "Role", "tm-taskmill-leader-election")
    named, create = role["rules"]
    assert named["resourceNames"] == ["tm-taskmill-leader"]
    assert "create" not in named["verbs"]
    assert create["verbs"] == ["create"]
    assert "resourceNames" not in create


def test_network_policy_admits_only_workers_to_the_lease_port() -> None:
    docs = render()
    policy = one(docs, "NetworkPolicy", "tm-taskmill-operator")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "lease", "protocol": "TCP"}]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    # Nothing may reach the workers while nothing scrapes them.
    workers = one(docs, "NetworkPolicy", "tm-taskmill-worker")
    assert workers["spec"]["policyTypes"] == ["Ingress"]
    assert workers["spec"]["ingress"] == []
    assert not find(render("networkPolicy.enabled=false"), "NetworkPolicy")


def test_network_policy_admits_the_scraper_when_monitoring_is_on() -> None:
    docs = render(
        "serviceMonitor.enabled=true",
        "monitoring.podMonitor.enabled=true",
        "monitoring.scraper.namespaceSelector.matchLabels.team=observability",
    )
    scraper = {
        "namespaceSelector": {"matchLabels": {"team": "observability"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    operator = one(docs, "NetworkPolicy", "tm-taskmill-operator")
    _, scrape_rule = operator["spec"]["ingress"]
    assert scrape_rule == {"ports": [{"port": "lease", "protocol": "TCP"}], "from": [scraper]}
    (worker_rule,) = one(docs, "NetworkPolicy", "tm-taskmill-worker")["spec"]["ingress"]
    assert worker_rule == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [scraper]}
    # Only the ServiceMonitor opens the operator; only the PodMonitor the workers.
    only_pods = render("monitoring.podMonitor.enabled=true")
    assert len(one(only_pods, "NetworkPolicy", "tm-taskmill-operator")["spec"]["ingress"]) == 1
    only_service = render("serviceMonitor.enabled=true")
    assert one(only_service, "NetworkPolicy", "tm-taskmill-worker")["spec"]["ingress"] == []


def test_workers_serve_metrics_and_are_probed_on_healthz() -> None:
    pod = one(render(), "Deployment", "tm-taskmill-worker")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--metrics-port=9100" in container["args"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    assert container["livenessProbe"]["failureThreshold"] == 3
    custom = one(
        render("worker.metrics.port=9300", "worker.livenessProbe.periodSeconds=30"),
        "Deployment",
        "tm-taskmill-worker",
    )["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=9300" in custom["args"]
    assert custom["livenessProbe"]["periodSeconds"] == 30
    off = one(render("worker.metrics.enabled=false"), "Deployment", "tm-taskmill-worker")
    (container,) = off["spec"]["template"]["spec"]["containers"]
    assert not [a for a in container["args"] if a.startswith("--metrics-port")]
    assert "ports" not in container
    assert "livenessProbe" not in container


def test_pod_monitor_scrapes_the_workers_metrics_port() -> None:
    assert not find(render(), "PodMonitor")
    monitor = one(
        render("monitoring.podMonitor.enabled=true", "monitoring.podMonitor.labels.release=prom"),
        "PodMonitor",
    )
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s"}
    result = helm(
        "template",
        "tm",
        str(CHART),
        "--set",
        "monitoring.podMonitor.enabled=true",
        "--set",
        "worker.metrics.enabled=false",
        check=False,
    )
    assert result.returncode != 0
    assert "monitoring.podMonitor needs worker.metrics.enabled" in result.stderr


def test_tmp_is_size_limited_and_ephemeral_storage_is_budgeted() -> None:
    docs = render("worker.tmpSizeLimit=2Gi")
    for name, size in (("tm-taskmill-operator", "64Mi"), ("tm-taskmill-worker", "2Gi")):
        pod = one(docs, "Deployment", name)["spec"]["template"]["spec"]
        (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
        assert tmp["emptyDir"] == {"sizeLimit": size}, name
        resources = pod["containers"][0]["resources"]
        assert resources["requests"]["ephemeral-storage"], name
        assert resources["limits"]["ephemeral-storage"], name


def test_worker_budget_lets_unhealthy_pods_go() -> None:
    budget = one(render(), "PodDisruptionBudget", "tm-taskmill-worker")
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    strict = render("worker.podDisruptionBudget.unhealthyPodEvictionPolicy=IfHealthyBudget")
    budget = one(strict, "PodDisruptionBudget", "tm-taskmill-worker")
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"


def test_workers_spread_across_nodes_and_zones_unless_overridden() -> None:
    pod = one(render(), "Deployment", "tm-taskmill-worker")["spec"]["template"]["spec"]
    constraints = pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    for constraint in constraints:
        # Spreading is a preference: a one-node cluster still runs every worker.
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        labels = constraint["labelSelector"]["matchLabels"]
        assert labels["app.kubernetes.io/component"] == "worker"
        assert labels["app.kubernetes.io/instance"] == "tm"
    custom = render(
        "worker.topologySpreadConstraints[0].maxSkew=2",
        "worker.topologySpreadConstraints[0].topologyKey=rack",
        "worker.topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
    )
    pod = one(custom, "Deployment", "tm-taskmill-worker")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == [
        {"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}
    ]


@pytest.mark.parametrize(
    ("timings", "complaint"),
    [
        ((15, 15, 2), "renewDeadlineSeconds (15) must be less than leaseDurationSeconds (15)"),
        ((10, 12, 2), "renewDeadlineSeconds (12) must be less than leaseDurationSeconds (10)"),
        ((15, 10, 10), "retryPeriodSeconds (10) must be less than renewDeadlineSeconds (10)"),
        ((15, 10, 11), "retryPeriodSeconds (11) must be less than renewDeadlineSeconds (10)"),
    ],
)
def test_impossible_leader_election_timings_fail(
    timings: tuple[int, int, int], complaint: str
) -> None:
    lease, renew, retry = timings
    sets = [
        f"operator.leaderElection.leaseDurationSeconds={lease}",
        f"operator.leaderElection.renewDeadlineSeconds={renew}",
        f"operator.leaderElection.retryPeriodSeconds={retry}",
    ]
    args = [arg for value in sets for arg in ("--set", value)]
    result = helm("template", "tm", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr
    # Without leader election the timings are unused, so not checked.
    assert render(*sets, "operator.leaderElection.enabled=false", "operator.replicas=1")


def test_leader_election_timings_the_operator_accepts_render() -> None:
    args = one(
        render(
            "operator.leaderElection.leaseDurationSeconds=4",
            "operator.leaderElection.renewDeadlineSeconds=3",
            "operator.leaderElection.retryPeriodSeconds=2",
        ),
        "Deployment",
        "tm-taskmill-operator",
    )["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-election-lease-seconds=4" in args
    assert "--leader-election-renew-deadline-seconds=3" in args
    assert "--leader-election-retry-seconds=2" in args


def test_service_monitor_when_enabled() -> None:
    monitor = one(
        render("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom"),
        "ServiceMonitor",
    )
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_quota_caps_task_count() -> None:
    quota = one(render("quota.enabled=true", "quota.maxTasks=500"), "ResourceQuota")
    assert quota["spec"]["hard"] == {"count/tasks.taskmill.dev": "500"}
    quotas = find(
        render("quota.enabled=true", "rbac.scope=namespaced", "rbac.namespaces={a,b}"),
        "ResourceQuota",
    )
    assert sorted(q["metadata"]["namespace"] for q in quotas) == ["a", "b"]


def test_single_replica_has_no_disruption_budget() -> None:
    docs = render("operator.replicas=1", "worker.replicas=1")
    assert not find(docs, "PodDisruptionBudget")


def test_auth_off_drops_tokens_and_tokenreview() -> None:
    docs = render("leaseApi.auth.enabled=false")
    assert not [r for r in find(docs, "ClusterRole") if "tokenreview" in r["metadata"]["name"]]
    pod = one(docs, "Deployment", "tm-taskmill-worker")["spec"]["template"]["spec"]
    assert not [a for a in pod["containers"][0]["args"] if a.startswith("--token-file")]


def test_image_digest_wins_over_tag() -> None:
    digest = "sha256:" + "a" * 64
    docs = render(f"image.digest={digest}", "image.tag=ignored")
    image = one(docs, "Deployment", "tm-taskmill-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]
    assert image == f"ghcr.io/taskmill/taskmill@{digest}"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("operator.replica=3", "additional properties 'replica' not allowed"),
        ("typo=1", "additional properties 'typo' not allowed"),
        ("rbac.scope=everywhere", "rbac/scope"),
        ("worker.concurrency=0", "worker/concurrency"),
        ("leaseApi.auth.extraWorkerIdentities={alice}", "extraWorkerIdentities"),
        ("image.digest=latest", "image/digest"),
        ("worker.podDisruptionBudget.unhealthyPodEvictionPolicy=Sometimes", "unhealthyPod"),
        ("worker.tmpSizeLimit=lots", "worker/tmpSizeLimit"),
        ("worker.metrics.port=0", "worker/metrics/port"),
        ("worker.livenessProbe.httpGet=x", "additional properties 'httpGet' not allowed"),
        ("monitoring.podMonitor.intervl=30s", "additional properties 'intervl' not allowed"),
        ("monitoring.prometheusRule.pendingSeconds=5", "pendingSeconds"),
    ],
)
def test_schema_rejects_bad_values(value: str, complaint: str) -> None:
    result = helm("template", "tm", str(CHART), *HANDLERS, "--set", value, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_workers_without_handlers_are_refused() -> None:
    result = helm("template", "tm", str(CHART), "--set", "worker.handlers=null", check=False)
    assert result.returncode != 0
    assert "worker.handlers must name at least one handler module" in result.stderr
    assert render("worker.enabled=false", "worker.handlers=null", handlers=False)


def test_operator_rollouts_and_drains_cannot_deadlock_on_not_ready_standbys() -> None:
    docs = render()
    strategy = one(docs, "Deployment", "tm-taskmill-operator")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == "100%"
    assert not find(docs, "PodDisruptionBudget", "tm-taskmill-operator")
    assert find(docs, "PodDisruptionBudget", "tm-taskmill-worker")
    enabled = render("operator.podDisruptionBudget.enabled=true")
    budget = one(enabled, "PodDisruptionBudget", "tm-taskmill-operator")
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_chart_and_operator_accept_the_same_leader_election_timings() -> None:
    # The chart's fail mirrors LeaderElector's own check; ask both about
    # every combination of small timings.
    from itertools import product
    from typing import cast

    from taskmill.controller.leader import LeaderElector
    from taskmill.kube.client import KubeClient

    for lease, renew, retry in product((2, 3, 4), repeat=3):
        try:
            LeaderElector(
                cast(KubeClient, None),
                namespace="taskmill",
                name="leader",
                identity="me",
                lease_seconds=lease,
                renew_deadline_seconds=renew,
                retry_seconds=retry,
            )
            operator_accepts = True
        except ValueError:
            operator_accepts = False
        result = helm(
            "template",
            "tm",
            str(CHART),
            "-s",
            "templates/operator-deployment.yaml",
            "--set",
            f"operator.leaderElection.leaseDurationSeconds={lease}",
            "--set",
            f"operator.leaderElection.renewDeadlineSeconds={renew}",
            "--set",
            f"operator.leaderElection.retryPeriodSeconds={retry}",
            check=False,
        )
        assert (result.returncode == 0) == operator_accepts, (lease, renew, retry, result.stderr)


def test_payload_from_policy_renders_with_its_binding_and_can_be_turned_off() -> None:
    from taskmill.crdgen.admission import render_policy

    docs = render()
    name = "tm-taskmill-taskmill-payloadfrom"
    policy = one(docs, "ValidatingAdmissionPolicy", name)
    binding = one(docs, "ValidatingAdmissionPolicyBinding", name)
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"]}
    assert policy["metadata"]["labels"]["app.kubernetes.io/instance"] == "tm"
    # The rules are exactly the ones `taskmill dev` applies.
    assert policy["spec"] == render_policy()[0]["spec"]
    checks = " ".join(v["expression"] for v in policy["spec"]["validations"])
    assert "resource('secrets')" in checks
    assert "resource('configmaps')" in checks
    assert "check('get').allowed()" in checks
    assert set(policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"]) == {
        "CREATE",
        "UPDATE",
    }
    off = render("admission.payloadFrom=false")
    assert not find(off, "ValidatingAdmissionPolicy")
    assert not find(off, "ValidatingAdmissionPolicyBinding")


def test_namespaced_scope_reads_configmaps_and_secrets_only_where_it_serves() -> None:
    docs = render("rbac.scope=namespaced", "rbac.namespaces={team-a,team-b}")
    readers = {
        (doc["kind"], doc["metadata"].get("namespace"))
        for doc in find(docs, "Role") + find(docs, "ClusterRole")
        for rule in doc["rules"]
        if {"secrets", "configmaps"} & set(rule["resources"])
    }
    assert readers == {("Role", "team-a"), ("Role", "team-b")}
    # Without payloadFrom, none at all.
    docs = render("rbac.scope=namespaced", "rbac.payloadFrom=false")
    for doc in find(docs, "Role") + find(docs, "ClusterRole"):
        for rule in doc["rules"]:
            assert not {"secrets", "configmaps"} & set(rule["resources"]), doc["metadata"]
