"""The generated CRDs in a real kube-apiserver: accepted, and refusing bad objects at apply time.

What a unit test of the schema cannot show: that the API server takes the
schemas as structural, that its CEL cost estimator accepts the rules, that
defaults (including the whole-``status`` default) are applied, and that each
refusal names the offending field.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from taskmill.crdgen import render

if TYPE_CHECKING:
    from taskmill.testing.controlplane import ControlPlane

pytestmark = pytest.mark.integration

GROUP = "taskmill.dev"
CRONTASK_NIGHTLY = "crontasks.taskmill.dev/nightly"


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> list[dict[str, Any]]:
    """The CRDs rendered from the models, applied and Established.

    Left installed afterwards: other tests of the session share the API server.
    """
    docs = render.render_crds()
    control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-",
        input="".join(render.crd_yaml(doc) for doc in docs),
    )  # fmt: skip
    names = [f"crd/{doc['metadata']['name']}" for doc in docs]
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    return docs


@pytest.fixture
def ns(crds: list[dict[str, Any]], namespace: str) -> str:
    return namespace


def manifest(kind: str, name: str, spec: dict[str, Any]) -> str:
    doc = {"apiVersion": f"{GROUP}/v1alpha1", "kind": kind, "metadata": {"name": name}}
    # JSON, not YAML: kubectl's YAML 1.1 reads keys like `n` or `on` as booleans.
    return json.dumps({**doc, "spec": spec})


def apply(cp: ControlPlane, ns: str, kind: str, name: str, spec: dict[str, Any]) -> Any:
    return cp.kubectl("apply", "-n", ns, "-f", "-", input=manifest(kind, name, spec), check=False)


def get(cp: ControlPlane, ns: str, resource: str) -> Any:
    return json.loads(cp.kubectl("get", "-n", ns, resource, "-o", "json").stdout)


def test_crds_are_established(control_plane: ControlPlane, crds: list[dict[str, Any]]) -> None:
    for doc in crds:
        crd = json.loads(
            control_plane.kubectl("get", "crd", doc["metadata"]["name"], "-o", "json").stdout
        )
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", crd["status"]
        assert conditions.get("NamesAccepted") == "True", crd["status"]
        assert "NonStructuralSchema" not in conditions, crd["status"]


def test_valid_task_is_applied_with_its_defaults(control_plane: ControlPlane, ns: str) -> None:
    spec = {
        "type": "send_email",
        "payload": {"to": "a@example.com", "n": [1, 2]},
        "backoff": {"initialSeconds": 1, "maxSeconds": 10},
        "dependsOn": [{"name": "render"}],
        "runAt": "2030-01-02T03:04:05Z",
    }
    result = apply(control_plane, ns, "Task", "hello", spec)
    assert result.returncode == 0, result.stderr

    task = get(control_plane, ns, "tasks.taskmill.dev/hello")
    assert task["spec"]["priority"] == 0
    assert task["spec"]["queue"] == "default"
    assert task["spec"]["cancel"] is False
    assert task["spec"]["dependsOn"] == [{"name": "render", "condition": "Succeeded"}]
    assert task["spec"]["payload"] == {"to": "a@example.com", "n": [1, 2]}
    # No one wrote a status: the CRD's default makes a new Task read as
    # Pending, and as in progress to kstatus (Reconciling).
    status = task["status"]
    assert (status["phase"], status["attempts"]) == ("Pending", 0)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False",
        "Reconciling": "True",
    }


TASK_REFUSALS = [
    pytest.param({"priority": "high"}, "spec.priority", "must be of type integer", id="wrong-type"),
    pytest.param({"colour": "red"}, "spec.colour", "unknown field", id="unknown-field"),
    pytest.param(
        {"dependsOn": [{"name": "a", "condition": "Sometimes"}]},
        "spec.dependsOn[0].condition",
        "Unsupported value",
        id="bad-enum",
    ),
    pytest.param(
        {"payload": {"a": 1}, "payloadFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
        "spec.payloadFrom",
        "mutually exclusive",
        id="payload-and-payloadFrom",
    ),
    pytest.param(
        {"payloadFrom": {}}, "spec.payloadFrom", "exactly one", id="payloadFrom-without-ref"
    ),
    pytest.param(
        {
            "payloadFrom": {
                "configMapKeyRef": {"name": "cm", "key": "k"},
                "secretKeyRef": {"name": "s", "key": "k"},
            }
        },
        "spec.payloadFrom",
        "exactly one",
        id="payloadFrom-with-two-refs",
    ),
    pytest.param(
        {"backoff": {"initialSeconds": 10, "maxSeconds": 1.5}},
        "spec.backoff.maxSeconds",
        "at least initialSeconds",
        id="backoff-max-below-initial",
    ),
    pytest.param(
        {"dependsOn": [{"name": "a"}, {"name": "a", "condition": "Failed"}]},
        "spec.dependsOn[1]",
        "Duplicate value",
        id="duplicate-dependency",
    ),
    pytest.param(
        {"dependsOn": [{"name": "other"}, {"name": "bad"}]},
        "spec.dependsOn",
        "cannot depend on itself",
        id="self-dependency",
    ),
    pytest.param({"priority": 2_000_000}, "spec.priority", "less than or equal", id="range"),
    pytest.param({"queue": "Bad_Queue"}, "spec.queue", "should match", id="pattern"),
    pytest.param({"payload": [1, 2]}, "spec.payload", "must be of type object", id="payload-list"),
]


@pytest.mark.parametrize(("change", "field", "reason"), TASK_REFUSALS)
def test_bad_task_is_refused_at_apply_time(
    control_plane: ControlPlane, ns: str, change: dict[str, Any], field: str, reason: str
) -> None:
    result = apply(control_plane, ns, "Task", "bad", {"type": "noop", **change})
    assert result.returncode != 0, "the API server accepted it"
    assert field in result.stderr
    assert reason in result.stderr
    absent = control_plane.kubectl("get", "-n", ns, "tasks.taskmill.dev/bad", check=False)
    assert absent.returncode != 0


def test_generated_name_and_dependencies_go_together(control_plane: ControlPlane, ns: str) -> None:
    # The self-dependency rule reads metadata.name: it must see the generated one.
    doc = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Task",
        "metadata": {"generateName": "job-"},
        "spec": {"type": "noop", "dependsOn": [{"name": "job"}]},
    }
    created = control_plane.kubectl(
        "create", "-n", ns, "-f", "-", "-o", "json", input=json.dumps(doc)
    )
    assert json.loads(created.stdout)["metadata"]["name"].startswith("job-")


def test_task_without_type_is_refused(control_plane: ControlPlane, ns: str) -> None:
    result = apply(control_plane, ns, "Task", "bad", {"priority": 1})
    assert result.returncode != 0
    assert "spec.type: Required value" in result.stderr


@pytest.mark.parametrize(
    ("schedule", "accepted"),
    [
        ("*/5 9-17 * * MON-FRI", True),
        ("@daily", True),
        ("@DAILY", True),
        ("@Hourly", True),
        ("@every 1h30m", True),
        ("@every 45s", True),
        ("0 0 L * *", True),
        ("59 23 31 12 7", True),
        ("0 0 * * mon/2", True),
        ("* * * *", False),
        ("0 * * * * *", False),
        ("@every 30", False),
        ("@sometimes", False),
        # out of range or a zero step: refused like a CronJob's
        ("60 * * * *", False),
        ("* 24 * * *", False),
        ("* * 32 * *", False),
        ("* * 0 * *", False),
        ("*/0 * * * *", False),
        ("* * * 13 *", False),
        ("* * * * 8", False),
        ("@every 0.5s", False),
        ("@every 500ms", False),
        ("@every 0s", False),
        ("@every 5d", False),
    ],
)
def test_crontask_schedule_is_checked_at_apply_time(
    control_plane: ControlPlane, ns: str, schedule: str, accepted: bool
) -> None:
    spec = {"schedule": schedule, "taskTemplate": {"spec": {"type": "noop"}}}
    result = apply(control_plane, ns, "CronTask", "nightly", spec)
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "spec.schedule" in result.stderr
        assert "must be 5 cron fields" in result.stderr
        absent = control_plane.kubectl("get", "-n", ns, CRONTASK_NIGHTLY, check=False)
        assert absent.returncode != 0
    else:
        control_plane.kubectl("delete", "-n", ns, CRONTASK_NIGHTLY)


def test_crontask_defaults(control_plane: ControlPlane, ns: str) -> None:
    spec = {"schedule": "@hourly", "taskTemplate": {"spec": {"type": "noop"}}}
    assert apply(control_plane, ns, "CronTask", "hourly", spec).returncode == 0
    cron = get(control_plane, ns, "crontasks.taskmill.dev/hourly")
    assert cron["spec"]["concurrencyPolicy"] == "Allow"
    assert cron["spec"]["suspend"] is False
    assert cron["spec"]["successfulTasksHistoryLimit"] == 3
    assert cron["spec"]["failedTasksHistoryLimit"] == 1
    assert cron["spec"]["taskTemplate"]["spec"]["queue"] == "default"
    assert "status" not in cron  # only the Task has a status default


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        (
            {"rateLimits": [{"type": "a", "perSecond": 1}, {"type": "a", "perSecond": 2}]},
            "spec.rateLimits[1]",
            "Duplicate value",
        ),
        (
            {"concurrency": {"perType": [{"type": "a", "limit": 1}, {"type": "a", "limit": 2}]}},
            "spec.concurrency.perType[1]",
            "Duplicate value",
        ),
        ({"rateLimits": [{"type": "a", "perSecond": 0}]}, "perSecond", "greater than 0"),
        (
            {"retryPolicy": {"backoff": {"initialSeconds": 5, "maxSeconds": 1}}},
            "spec.retryPolicy.backoff.maxSeconds",
            "at least initialSeconds",
        ),
    ],
)
def test_bad_taskqueue_is_refused(
    control_plane: ControlPlane, ns: str, spec: dict[str, Any], field: str, reason: str
) -> None:
    result = apply(control_plane, ns, "TaskQueue", "default", spec)
    assert result.returncode != 0
    assert field in result.stderr
    assert reason in result.stderr


def test_printer_columns(control_plane: ControlPlane, ns: str) -> None:
    assert apply(control_plane, ns, "Task", "shown", {"type": "send_email"}).returncode == 0
    table = control_plane.kubectl("get", "-n", ns, "tasks.taskmill.dev").stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "TYPE", "PHASE", "ATTEMPTS", "REASON", "AGE"]
    assert row.split()[:4] == ["shown", "send_email", "Pending", "0"]
    wide = control_plane.kubectl("get", "-n", ns, "tasks.taskmill.dev", "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-3:] == ["QUEUE", "PRIORITY", "WORKER"]


def test_category_and_short_names(control_plane: ControlPlane, ns: str) -> None:
    assert apply(control_plane, ns, "Task", "t1", {"type": "noop"}).returncode == 0
    cron = {"schedule": "@daily", "taskTemplate": {"spec": {"type": "noop"}}}
    assert apply(control_plane, ns, "CronTask", "c1", cron).returncode == 0
    assert apply(control_plane, ns, "TaskQueue", "q1", {}).returncode == 0

    listed = control_plane.kubectl("get", "-n", ns, "taskmill", "-o", "name").stdout.split()
    assert sorted(listed) == [
        "crontask.taskmill.dev/c1",
        "task.taskmill.dev/t1",
        "taskqueue.taskmill.dev/q1",
    ]
    for short, name in [("tmt", "t1"), ("tmc", "c1"), ("tmq", "q1")]:
        out = control_plane.kubectl("get", "-n", ns, short, "-o", "name").stdout.split()
        assert [n.split("/")[1] for n in out] == [name], short


@pytest.mark.parametrize("result", [42, 3.5, "text", True, [1, {"a": 2}], {"x": {"y": [None]}}])
def test_status_result_takes_any_json_value(
    control_plane: ControlPlane, ns: str, result: Any
) -> None:
    assert apply(control_plane, ns, "Task", "done", {"type": "noop"}).returncode == 0
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{ns}/tasks/done/status"
    patch = {"status": {"phase": "Succeeded", "result": result}}
    response = control_plane.request(
        "PATCH", path, patch, content_type="application/merge-patch+json"
    )
    assert response.status == 200, response.text
    status = response.json()["status"]
    assert status["result"] == result
    assert status["attempts"] == 0  # the rest of the default stays


def test_status_is_written_only_through_the_subresource(
    control_plane: ControlPlane, ns: str
) -> None:
    assert apply(control_plane, ns, "Task", "t", {"type": "noop"}).returncode == 0
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{ns}/tasks/t"
    response = control_plane.request(
        "PATCH", path, {"status": {"phase": "Dead"}}, content_type="application/merge-patch+json"
    )
    assert response.status == 200, response.text
    assert response.json()["status"]["phase"] == "Pending"
    bad = control_plane.request(
        "PATCH",
        f"{path}/status",
        {"status": {"phase": "Bogus"}},
        content_type="application/merge-patch+json",
    )
    assert bad.status == 422
    assert "status.phase" in bad.text


def test_tasks_are_selected_by_type_queue_and_phase(control_plane: ControlPlane, ns: str) -> None:
    for name, type_, queue in (
        ("a", "echo", "default"),
        ("b", "echo", "slow"),
        ("c", "noop", "slow"),
    ):
        result = apply(control_plane, ns, "Task", name, {"type": type_, "queue": queue})
        assert result.returncode == 0, result.stderr

    def names(selector: str) -> list[str]:
        out = control_plane.kubectl(
            "get", "-n", ns, "tasks.taskmill.dev", "--field-selector", selector, "-o", "name"
        ).stdout
        return sorted(line.rsplit("/", 1)[1] for line in out.split())

    assert names("spec.type=echo") == ["a", "b"]
    assert names("spec.queue=slow,spec.type=noop") == ["c"]
    # Nobody wrote a status: every Task is Pending through the CRD's default.
    assert names("status.phase=Pending") == ["a", "b", "c"]
    assert names("status.phase=Dead") == []
