"""``helm lint`` and ``helm template`` with value combinations (no API server)."""

from __future__ import annotations

import pytest

from tests.helm.chart import CHART, HANDLERS, find, helm, one, render

CRD_NAMES = {"tasks.taskmill.dev", "crontasks.taskmill.dev", "taskqueues.taskmill.dev"}


def test_chart_lints_strictly() -> None:
    result = helm("lint", "--strict", str(CHART), *HANDLERS)
    assert "0 chart(s) failed" in result.stdout


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
    policy = one(render(), "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "lease", "protocol": "TCP"}]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    assert not find(render("networkPolicy.enabled=false"), "NetworkPolicy")


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
    ],
)
def test_schema_rejects_bad_values(value: str, complaint: str) -> None:
    result = helm("template", "tm", str(CHART), *HANDLERS, "--set", value, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_workers_without_handlers_are_refused() -> None:
    result = helm("template", "tm", str(CHART), check=False)
    assert result.returncode != 0
    assert "worker.handlers" in result.stderr
    assert render("worker.enabled=false", handlers=False)


def test_operator_rollouts_and_drains_cannot_deadlock_on_not_ready_standbys() -> None:
    docs = render()
    strategy = one(docs, "Deployment", "tm-taskmill-operator")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == "100%"
    assert not find(docs, "PodDisruptionBudget", "tm-taskmill-operator")
    assert find(docs, "PodDisruptionBudget", "tm-taskmill-worker")
    enabled = render("operator.podDisruptionBudget.enabled=true")
    budget = one(enabled, "PodDisruptionBudget", "tm-taskmill-operator")
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


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
