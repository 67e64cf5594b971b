"""The user commands (`taskmill` / `kubectl taskmill`) against real Tasks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import taskmill
from taskmill.cli.main import plugin
from taskmill.testing.controlplane import ControlPlane
from tests.e2e.helpers import wait_phase

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TASKMILL_UPDATE_GOLDEN") == "1"


def run(plane: ControlPlane, namespace: str | None, *args: str, input: str | None = None) -> Result:
    ns = ["-n", namespace] if namespace else []
    return CliRunner().invoke(
        plugin, [*args, *ns, "--kubeconfig", str(plane.kubeconfig)], input=input
    )


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.write_text(text)
    assert text == path.read_text()


STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def normalise(obj: Any) -> Any:
    """Blank what changes from run to run: ids, versions, times, workers."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key == "managedFields":
                continue
            if key in ("uid", "resourceVersion", "namespace", "worker"):
                out[key] = "<" + key + ">"
            else:
                out[key] = normalise(value)
        return out
    if isinstance(obj, list):
        return [normalise(v) for v in obj]
    if isinstance(obj, str):
        return STAMP.sub("<time>", obj)
    return obj


def test_submit_then_get_json_matches_the_golden_file(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    submitted = run(crds, namespace, "submit", "echo", '{"to": "ada"}', "--name", "golden-echo")
    again = run(crds, namespace, "submit", "echo", '{"to": "bob"}', "--name", "golden-echo")
    wait_phase(crds, namespace, "golden-echo", "Succeeded")

    got = run(crds, namespace, "get", "golden-echo", "-o", "json")

    assert submitted.exit_code == 0, submitted.output
    assert submitted.stdout == "task.taskmill.dev/golden-echo created\n"
    assert again.stdout == "task.taskmill.dev/golden-echo unchanged\n"
    assert got.exit_code == 0, got.output
    golden("get-echo.json", json.dumps(normalise(json.loads(got.stdout)), indent=2) + "\n")


def test_submit_wait_prints_the_result(crds: ControlPlane, worker: str, namespace: str) -> None:
    result = run(crds, namespace, "submit", "echo", "-f", "-", "--wait", input='{"n": 1}')

    assert result.exit_code == 0, result.output
    assert result.stdout == '{"n": 1}\n'


def test_describe_shows_the_attempt_timeline(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    run(
        crds,
        namespace,
        "submit",
        "fail",
        '{"message": "boom"}',
        "--name",
        "twice",
        "--max-attempts",
        "2",
    )
    wait_phase(crds, namespace, "twice", "Dead", timeout=90)

    result = run(crds, namespace, "describe", "twice")

    assert result.exit_code == 0, result.output
    # The traceback's frames are the worker's internals; keep its last line only.
    text = re.sub(r"^    (?!RuntimeError).*\n", "", result.stdout, flags=re.M)
    text = STAMP.sub("<time>", text)
    text = re.sub(r"Namespace: +\S+", "Namespace:     <namespace>", text)
    text = re.sub(r"\d+\.\d{3}s", "<duration>", text)
    text = re.sub(r"^(  \d +)\S+", r"\1<worker>", text, flags=re.M)
    text = re.sub(r"  +", "  ", text)
    golden("describe-dead.txt", text)
    assert "AttemptsExhausted" in result.stdout
    assert 'raise RuntimeError(payload.get("message"' in result.stdout
    assert text.count("Failed  boom") == 2


def test_user_mistakes_are_one_line_errors(crds: ControlPlane, namespace: str) -> None:
    cases = [
        (("submit", "echo", "{not json"), "error: PAYLOAD is not JSON"),
        (("submit", "echo", "[1, 2]"), "error: PAYLOAD must be a JSON object, not list"),
        (("get", "no-such-task"), 'error: tasks.taskmill.dev "no-such-task" not found'),
        (("describe", "no-such-task"), "not found"),
        (("cancel", "no-such-task"), 'error: tasks.taskmill.dev "no-such-task" not found'),
    ]
    for args, message in cases:
        result = run(crds, namespace, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stdout == ""
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr

    missing = run(crds, "no-such-namespace", "submit", "echo", "{}")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == 'error: namespaces "no-such-namespace" not found'


def test_get_list_formats_selectors_and_all_namespaces(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    run(crds, namespace, "submit", "echo", "{}", "--name", "a1", "--label", "team=x")
    run(crds, namespace, "submit", "echo", "{}", "--name", "b1", "--label", "team=y")
    wait_phase(crds, namespace, "a1", "Succeeded")
    wait_phase(crds, namespace, "b1", "Succeeded")

    names = run(crds, namespace, "get", "-o", "name")
    selected = run(crds, namespace, "list", "-l", "team=x")
    wide = run(crds, namespace, "get", "a1", "-o", "wide")
    everywhere = run(crds, None, "get", "-A", "-l", "team=y")
    as_yaml = run(crds, namespace, "get", "-o", "yaml")

    assert names.stdout == "task.taskmill.dev/a1\ntask.taskmill.dev/b1\n"
    lines = selected.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "PHASE", "ATTEMPTS", "REASON", "AGE"]
    assert [line.split()[:4] for line in lines[1:]] == [["a1", "echo", "Succeeded", "1"]]
    assert wide.stdout.splitlines()[0].split()[-4:] == ["QUEUE", "PRIORITY", "WORKER", "MESSAGE"]
    assert [line.split()[:2] for line in everywhere.stdout.splitlines()[1:]] == [[namespace, "b1"]]
    assert "kind: List" in as_yaml.stdout


def test_dlq_list_and_retry(crds: ControlPlane, worker: str, namespace: str) -> None:
    for name, team in (("d1", "x"), ("d2", "x"), ("d3", "y")):
        run(
            crds,
            namespace,
            "submit",
            "fail",
            "{}",
            "--name",
            name,
            "--max-attempts",
            "1",
            "--label",
            f"team={team}",
        )
    for name in ("d1", "d2", "d3"):
        wait_phase(crds, namespace, name, "Dead")
    run(crds, namespace, "submit", "echo", "{}", "--name", "alive", "--wait")

    listed = run(crds, namespace, "dlq", "list")
    usage = run(crds, namespace, "dlq", "retry")
    not_dead = run(crds, namespace, "dlq", "retry", "alive")
    one = run(crds, namespace, "dlq", "retry", "d3")
    selected = run(crds, namespace, "dlq", "retry", "--all", "-l", "team=x")

    rows = [line.split()[:4] for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "TYPE", "ATTEMPTS", "REASON"]
    assert rows[1:] == [[n, "fail", "1", "AttemptsExhausted"] for n in ("d1", "d2", "d3")]
    assert usage.exit_code == 2
    assert not_dead.exit_code == 1
    assert "is Succeeded, not Dead" in not_dead.stderr
    assert one.stdout == "task.taskmill.dev/d3 retried\n"
    assert selected.stdout == "task.taskmill.dev/d1 retried\ntask.taskmill.dev/d2 retried\n"
    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
        for name in ("d1", "d2", "d3"):
            assert "taskmill.dev/retry" in client.get(name).metadata.annotations


def test_stats_and_top_show_real_numbers(crds: ControlPlane, worker: str, namespace: str) -> None:
    from rich.console import Console

    from taskmill.cli.top import Board

    with taskmill.Client(kubeconfig=str(crds.kubeconfig), namespace=namespace) as client:
        for i in range(3):
            client.submit("echo", {}, name=f"ok-{i}")
        client.submit("fail", {}, name="bad", max_attempts=1)
        client.submit("nobody-handles-this", {}, name="queued", queue="slow")
        for i in range(3):
            client.wait(f"ok-{i}", timeout=60)
        with pytest.raises(taskmill.TaskDead):
            client.wait("bad", timeout=60)
        items = client.list_raw()["items"]

    numbers = json.loads(run(crds, namespace, "stats", "-o", "json").stdout)
    text = run(crds, namespace, "stats").stdout
    board = Board(f"namespace {namespace}")
    board.load(items)
    console = Console(record=True, width=160)
    console.print(board.render())
    screen = console.export_text()
    once = run(crds, namespace, "top", "--once")

    assert numbers["totals"]["succeeded"] == 3
    assert numbers["totals"]["dead"] == 1
    assert numbers["totals"]["depth"] == 1
    by_type = {(r["queue"], r["type"]): r for r in numbers["byQueueAndType"]}
    assert by_type["default", "echo"]["succeeded"] == 3
    assert (
        by_type["slow", "nobody-handles-this"]["pending"]
        + by_type["slow", "nobody-handles-this"]["waiting"]
        == 1
    )
    assert text.splitlines()[-3].split()[:3] == ["TOTAL", "1", str(numbers["totals"]["pending"])]
    for shown in (screen, once.stdout):
        assert re.search(r"depth\s+1\s+running\s+0\s+succeeded\s+3\s+dead\s+1", shown), shown
        assert re.search(r"throughput\s+0\.07/s", shown), shown  # 4 finished in the last minute
    assert re.search(r"│ default +│ echo +│ +0 │ +0 │ +0 │ +0 │ +3 │ +0 │ +0 │", screen), screen
    assert re.search(r"│ slow +│ nobody-handles-this +│ +1 │", screen), screen


def test_the_kubectl_plugin_has_the_user_commands() -> None:
    script = Path(sys.executable).parent / "kubectl-taskmill"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)

    for command in (
        "submit",
        "get",
        "list",
        "describe",
        "cancel",
        "dlq",
        "stats",
        "top",
        "replay",
        "version",
    ):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command
    # Not the long-running commands, nor `completion` (kubectl completes the plugin itself).
    for command in ("operator", "worker", "dev", "completion"):
        assert not re.search(rf"^\s+{command}\s", result.stdout, re.M), command


def test_get_jsonpath_custom_columns_and_no_headers(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    run(crds, namespace, "submit", "echo", '{"n": 1}', "--name", "j1", "--label", "team=x")
    run(crds, namespace, "submit", "fail", "{}", "--name", "j2", "--max-attempts", "1")
    wait_phase(crds, namespace, "j1", "Succeeded")
    wait_phase(crds, namespace, "j2", "Dead")

    names = run(crds, namespace, "get", "-o", "jsonpath={.items[*].metadata.name}")
    ranged = run(
        crds,
        namespace,
        "get",
        "-o",
        'jsonpath={range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}',
    )
    dead = run(
        crds, namespace, "get", "-o", 'jsonpath={.items[?(@.status.phase=="Dead")].metadata.name}'
    )
    one = run(crds, namespace, "get", "j1", "-o", "jsonpath={.status.result.n}")
    columns = run(
        crds,
        namespace,
        "get",
        "-o",
        "custom-columns=NAME:.metadata.name,PHASE:.status.phase,TEAM:.metadata.labels.team,"
        "RESULT:{.status.result}",
    )
    bare = run(crds, namespace, "get", "--no-headers")
    bad = run(crds, namespace, "get", "-o", "jsonpath={.items")

    assert names.stdout == "j1 j2"  # as kubectl: no newline added
    assert ranged.stdout == "j1\tSucceeded\nj2\tDead\n"
    assert dead.stdout == "j2"
    assert one.stdout == "1"
    golden("get-custom-columns.txt", columns.stdout)
    assert [line.split()[:3] for line in bare.stdout.splitlines()] == [
        ["j1", "echo", "Succeeded"],
        ["j2", "fail", "Dead"],
    ]
    assert bad.exit_code == 2
    assert "unclosed action" in bad.stderr


def test_cancel_by_selector_or_all_and_describe_of_several(
    crds: ControlPlane, operator: str, namespace: str
) -> None:
    # No worker runs these: they stay unfinished until cancelled.
    for name, team in (("c1", "x"), ("c2", "x"), ("c3", "y"), ("c4", "y")):
        run(
            crds,
            namespace,
            "submit",
            "nobody-handles-this",
            "{}",
            "--name",
            name,
            "--label",
            f"team={team}",
        )

    selected = run(crds, namespace, "cancel", "-l", "team=x")
    again = run(crds, namespace, "cancel", "-l", "team=x")
    both = run(crds, namespace, "cancel", "c3", "-l", "team=y")
    neither = run(crds, namespace, "cancel")
    everything = run(crds, namespace, "cancel", "--all")
    for name in ("c1", "c2", "c3", "c4"):
        wait_phase(crds, namespace, name, "Cancelled")
    described = run(crds, namespace, "describe", "c1", "c4", "missing")
    by_label = run(crds, namespace, "describe", "-l", "team=y")

    assert selected.stdout == "task.taskmill.dev/c1 cancelled\ntask.taskmill.dev/c2 cancelled\n"
    # Tasks already asked to stop (or finished): a second cancel finds nothing to do.
    assert again.exit_code == 0
    assert again.stderr == "No unfinished Tasks found.\n"
    assert both.exit_code == 2
    assert neither.exit_code == 2
    assert everything.stdout == "task.taskmill.dev/c3 cancelled\ntask.taskmill.dev/c4 cancelled\n"
    assert described.exit_code == 1
    assert described.stderr == 'error: tasks.taskmill.dev "missing" not found\n'
    assert re.findall(r"^Name: +(\S+)", described.stdout, re.M) == ["c1", "c4"]
    assert "\n\nName:" in described.stdout  # one blank line between Tasks
    assert re.findall(r"^Name: +(\S+)", by_label.stdout, re.M) == ["c3", "c4"]


def operator_deployment(name: str, image: str) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "taskmill",
        "app.kubernetes.io/part-of": "taskmill",
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/version": "0.1.0",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "busybox:1"},
                        {"name": "operator", "image": image},
                    ]
                },
            },
        },
    }


def test_version_reads_the_operator_deployment(
    crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    before = run(crds, namespace, "version")
    created = crds.request(
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        operator_deployment("taskmill-operator", "ghcr.io/taskmill/taskmill:0.1.0-rc1"),
    )
    assert created.status == 201, created.text
    here = run(crds, namespace, "version")
    as_json = run(crds, namespace, "version", "-o", "json")
    everywhere = run(crds, None, "version")
    client_only = run(crds, namespace, "version", "--client")
    # A user who may list Deployments in their namespace only, and one who may not at all.
    for account in ("viewer", "nobody"):
        sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}
        assert (
            crds.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", sa).status
            == 201
        )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "see-deployments"},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "viewer"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "see-deployments",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
    }
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    assert crds.request("POST", f"{rbac}/roles", role).status == 201
    assert crds.request("POST", f"{rbac}/rolebindings", binding).status == 201
    viewer = crds.write_kubeconfig(
        tmp_path / "viewer", token=crds.create_token("viewer", namespace), namespace=namespace
    )
    nobody = crds.write_kubeconfig(
        tmp_path / "nobody", token=crds.create_token("nobody", namespace), namespace=namespace
    )
    offline = crds.write_kubeconfig(tmp_path / "offline", server="https://127.0.0.1:1")
    as_viewer = CliRunner().invoke(plugin, ["version", "--kubeconfig", str(viewer)])
    as_nobody = CliRunner().invoke(plugin, ["version", "--kubeconfig", str(nobody)])
    unreachable = CliRunner().invoke(plugin, ["version", "--kubeconfig", str(offline)])

    line = (
        f"Operator Version: 0.1.0 (deployment {namespace}/taskmill-operator, "
        "image ghcr.io/taskmill/taskmill:0.1.0-rc1, 0/2 ready)"
    )
    assert before.exit_code == 0, before.output
    assert before.stdout == (
        f"Client Version: {taskmill.__version__}\n"
        "Operator Version: not found (no Deployment labelled app.kubernetes.io/part-of=taskmill,"
        f"app.kubernetes.io/component=operator in namespace {namespace})\n"
    )
    assert here.stdout == f"Client Version: {taskmill.__version__}\n{line}\n"
    assert json.loads(as_json.stdout) == {
        "clientVersion": taskmill.__version__,
        "operators": [
            {
                "namespace": namespace,
                "name": "taskmill-operator",
                "version": "0.1.0",
                "image": "ghcr.io/taskmill/taskmill:0.1.0-rc1",
                "readyReplicas": 0,
                "replicas": 2,
            }
        ],
    }
    assert line in everywhere.stdout.splitlines()
    assert client_only.stdout == f"Client Version: {taskmill.__version__}\n"
    assert as_viewer.exit_code == 0, as_viewer.output
    assert as_viewer.stdout.splitlines()[1:] == [line]  # found in the context's namespace
    assert as_nobody.exit_code == 0, as_nobody.output
    assert as_nobody.stdout.splitlines()[1].startswith(
        "Operator Version: unknown (not allowed to list Deployments: "
    )
    assert unreachable.exit_code == 1
    assert unreachable.stdout == f"Client Version: {taskmill.__version__}\n"
    assert unreachable.stderr.startswith("error: cannot reach the API server")
