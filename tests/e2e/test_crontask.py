"""CronTasks against the real API server: firing, policies, pruning, restarts, bad input."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from taskmill.testing.controlplane import ControlPlane, KubectlError
from taskmill.testing.stack import start_operator
from tests.e2e.helpers import wait_phase, warning_reasons

pytestmark = pytest.mark.integration

LABEL = "taskmill.dev/crontask"
T = TypeVar("T")


def crontask(name: str, schedule: str, type_: str = "echo", **spec: Any) -> dict[str, Any]:
    template = spec.pop("template", {"type": type_, "payload": {"from": name}})
    return {
        "apiVersion": "taskmill.dev/v1alpha1",
        "kind": "CronTask",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "taskTemplate": {
                "metadata": {"labels": {"team": "qa"}, "annotations": {"note": "from-cron"}},
                "spec": template,
            },
            **spec,
        },
    }


def apply(plane: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    """Server-side apply, as GitOps tools do."""
    plane.kubectl(
        "apply",
        "--server-side",
        "--field-manager=gitops",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(manifest),
    )


def get_crontask(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = plane.kubectl("get", "-n", namespace, "crontasks.taskmill.dev", name, "-o", "json")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def children(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    """The CronTask's child Tasks, oldest slot first."""
    out = plane.kubectl(
        "get", "-n", namespace, "tasks.taskmill.dev", "-l", f"{LABEL}={name}", "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return sorted(items, key=slot)


def at_least(
    plane: ControlPlane, namespace: str, name: str, count: int
) -> list[dict[str, Any]] | None:
    """The children once there are ``count`` of them (for :func:`wait_until`)."""
    kids = children(plane, namespace, name)
    return kids if len(kids) >= count else None


def slot(child: dict[str, Any]) -> int:
    return int(child["metadata"]["name"].rsplit("-", 1)[1])


def phase(child: dict[str, Any]) -> str:
    return str((child.get("status") or {}).get("phase", "Pending"))


def wait_until(
    probe: Callable[[], T | None], what: str, timeout: float = 30, interval: float = 0.2
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def stays(probe: Callable[[], bool], seconds: float, interval: float = 0.25) -> None:
    """Assert ``probe`` holds at every look for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe()
        time.sleep(interval)


def suspend(plane: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    """Suspend and wait until the operator has seen it (no next schedule)."""
    manifest = json.loads(json.dumps(manifest))
    manifest["spec"]["suspend"] = True
    apply(plane, namespace, manifest)
    name = manifest["metadata"]["name"]
    wait_until(
        lambda: "nextScheduleTime" not in get_crontask(plane, namespace, name).get("status", {}),
        "the suspension to be observed",
    )


def assert_consecutive(slots: list[int], every: int) -> None:
    assert slots == list(range(slots[0], slots[0] + every * len(slots), every)), slots


def test_every_2s_fires_distinct_owned_children_and_suspend_stops_it(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    manifest = crontask("tick", "@every 2s", successfulTasksHistoryLimit=20)
    apply(crds, namespace, manifest)

    found = wait_until(lambda: at_least(crds, namespace, "tick", 4), "4 children", timeout=30)
    suspend(crds, namespace, manifest)

    owner = get_crontask(crds, namespace, "tick")
    kids = children(crds, namespace, "tick")
    slots = [slot(c) for c in kids]
    assert len(set(slots)) == len(slots) >= len(found)
    assert all(s % 2 == 0 for s in slots)
    assert_consecutive(slots, 2)
    for child in kids:
        meta = child["metadata"]
        assert meta["name"] == f"tick-{slot(child)}"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "taskmill.dev/v1alpha1",
                "kind": "CronTask",
                "name": "tick",
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"] == {"team": "qa", LABEL: "tick"}
        assert meta["annotations"]["note"] == "from-cron"
        scheduled = dt.datetime.fromisoformat(meta["annotations"]["taskmill.dev/scheduled-at"])
        assert scheduled.timestamp() == slot(child)
        assert child["spec"]["payload"] == {"from": "tick"}
    wait_phase(crds, namespace, kids[0]["metadata"]["name"], "Succeeded")

    status = owner["status"]
    assert dt.datetime.fromisoformat(status["lastScheduleTime"]).timestamp() >= slots[-1]
    assert status["conditions"][0]["type"] == "ScheduleValid"
    assert status["conditions"][0]["status"] == "True"
    assert status["observedGeneration"] == owner["metadata"]["generation"]

    # Suspended: nothing more fires.
    count = len(kids)
    stays(lambda: len(children(crds, namespace, "tick")) == count, seconds=5)


def test_status_writes_leave_a_server_side_apply_without_drift(
    crds: ControlPlane, operator: str, namespace: str
) -> None:
    manifest = crontask("gitops", "@every 2s", suspend=False)
    apply(crds, namespace, manifest)
    first = wait_until(
        lambda: (
            (c := get_crontask(crds, namespace, "gitops")).get("status", {}).get("lastScheduleTime")
            and c
        ),
        "a first fire",
    )

    apply(crds, namespace, manifest)
    again = get_crontask(crds, namespace, "gitops")
    diff = crds.kubectl(
        "diff", "--server-side", "--field-manager=gitops", "-n", namespace, "-f", "-",
        input=json.dumps(manifest), check=False,
    )  # fmt: skip

    assert first["metadata"]["generation"] == again["metadata"]["generation"] == 1
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert "finalizers" not in again["metadata"]
    assert not any(k.startswith("kopf") for k in again["metadata"].get("annotations", {}))
    shown = crds.kubectl(
        "get", "-n", namespace, "crontasks.taskmill.dev", "gitops", "-o", "json",
        "--show-managed-fields",
    )  # fmt: skip
    managers = {m["manager"]: m for m in json.loads(shown.stdout)["metadata"]["managedFields"]}
    assert {m.get("subresource") for n, m in managers.items() if n != "gitops"} <= {"status"}


def test_forbid_skips_slots_while_a_child_runs(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    apply(
        crds,
        namespace,
        crontask(
            "lonely",
            "@every 2s",
            concurrencyPolicy="Forbid",
            template={"type": "sleep", "payload": {"seconds": 5}},
        ),
    )
    first = wait_until(lambda: children(crds, namespace, "lonely"), "a first child")[0]
    first_name = first["metadata"]["name"]
    wait_phase(crds, namespace, first_name, "Running")

    def only_first_until_it_finishes() -> dict[str, Any] | None:
        kids = children(crds, namespace, "lonely")
        assert [c["metadata"]["name"] for c in kids][:1] == [first_name]
        if phase(kids[0]) == "Succeeded":
            return kids[0]
        assert len(kids) == 1, "a second child started while the first one ran"
        return None

    done = wait_until(only_first_until_it_finishes, "the first child to finish", timeout=30)
    finished_at = dt.datetime.fromisoformat(done["status"]["finishedAt"]).timestamp()
    second = wait_until(lambda: at_least(crds, namespace, "lonely", 2), "a second child")[1]
    assert slot(second) >= int(finished_at) - 2, "a slot fired during the first child's run"
    assert slot(second) - slot(first) >= 4


def test_replace_deletes_the_running_child(crds: ControlPlane, worker: str, namespace: str) -> None:
    apply(
        crds,
        namespace,
        crontask(
            "fresh",
            "@every 3s",
            concurrencyPolicy="Replace",
            template={"type": "sleep", "payload": {"seconds": 60}},
            failedTasksHistoryLimit=5,
        ),
    )
    first = wait_until(lambda: children(crds, namespace, "fresh"), "a first child")[0]
    name = first["metadata"]["name"]
    wait_phase(crds, namespace, name, "Running")

    # Like CronJob's Replace: the running child is deleted (its attempt told to
    # stop), and the next slot's child takes its place.
    crds.kubectl(
        "wait",
        "-n",
        namespace,
        f"tasks.taskmill.dev/{name}",
        "--for=delete",
        "--timeout=20s",
        timeout=40,
    )
    wait_until(
        lambda: [c for c in children(crds, namespace, "fresh") if c["metadata"]["name"] != name],
        "a replacement child",
    )


def test_history_limits_prune_the_oldest_finished_children(
    crds: ControlPlane, worker: str, namespace: str
) -> None:
    good = crontask("good", "@every 1s", successfulTasksHistoryLimit=2)
    bad = crontask(
        "bad", "@every 1s", template={"type": "fail", "maxAttempts": 1}, failedTasksHistoryLimit=1
    )
    apply(crds, namespace, good)
    apply(crds, namespace, bad)
    start = time.time()

    def fired_since_start(name: str) -> bool:
        status = get_crontask(crds, namespace, name).get("status", {})
        last = status.get("lastScheduleTime")
        return bool(last) and dt.datetime.fromisoformat(last).timestamp() >= start + 5

    wait_until(lambda: fired_since_start("good") and fired_since_start("bad"), "6 slots each")
    suspend(crds, namespace, good)
    suspend(crds, namespace, bad)
    last_good = int(
        dt.datetime.fromisoformat(
            get_crontask(crds, namespace, "good")["status"]["lastScheduleTime"]
        ).timestamp()
    )

    def pruned(name: str, count: int, final: str) -> list[dict[str, Any]] | None:
        kids = children(crds, namespace, name)
        return kids if len(kids) == count and all(phase(c) == final for c in kids) else None

    kept = wait_until(lambda: pruned("good", 2, "Succeeded"), "good pruned to 2")
    assert [slot(c) for c in kept] == [last_good - 1, last_good]
    kept_bad = wait_until(lambda: pruned("bad", 1, "Dead"), "bad pruned to 1")
    status = get_crontask(crds, namespace, "bad")["status"]
    assert dt.datetime.fromisoformat(status["lastScheduleTime"]).timestamp() == slot(kept_bad[0])
    assert "lastSuccessfulTime" in get_crontask(crds, namespace, "good")["status"]


@pytest.mark.parametrize("schedule", ["every tuesday", "61 * * * *", "* * * * 8", "@every 0.5s"])
def test_an_invalid_schedule_is_refused_at_apply_time(
    crds: ControlPlane, namespace: str, schedule: str
) -> None:
    with pytest.raises(KubectlError) as refused:
        apply(crds, namespace, crontask("nonsense", schedule))
    assert "spec.schedule" in str(refused.value)


@pytest.mark.parametrize(
    ("schedule", "zone", "reason"),
    [
        # What the CRD cannot tell: the operator refuses it.
        ("30-10 * * * *", None, "InvalidSchedule"),
        ("0 0 30 2 *", None, "InvalidSchedule"),
        ("@daily", "Mars/Olympus_Mons", "InvalidTimeZone"),
    ],
)
def test_a_bad_schedule_or_zone_is_a_condition_and_a_warning(
    crds: ControlPlane, operator: str, namespace: str, schedule: str, zone: str | None, reason: str
) -> None:
    spec = {"timeZone": zone} if zone else {}
    apply(crds, namespace, crontask("broken", schedule, **spec))

    def invalid() -> dict[str, Any] | None:
        got = get_crontask(crds, namespace, "broken")
        conditions = got.get("status", {}).get("conditions", [])
        return got if conditions and conditions[0]["status"] == "False" else None

    broken = wait_until(invalid, "ScheduleValid=False")
    condition = broken["status"]["conditions"][0]
    assert (condition["type"], condition["reason"]) == ("ScheduleValid", reason)
    assert wait_until(lambda: reason in warning_reasons(crds, namespace, "broken"), "a Warning")
    # No retry loop: the object stays as it is.
    version = broken["metadata"]["resourceVersion"]
    stays(
        lambda: get_crontask(crds, namespace, "broken")["metadata"]["resourceVersion"] == version,
        seconds=2,
    )
    assert children(crds, namespace, "broken") == []

    # Fixing it clears the condition and the CronTask starts firing.
    apply(crds, namespace, crontask("broken", "@every 1s"))
    wait_until(lambda: children(crds, namespace, "broken"), "a child after the fix")
    fixed = get_crontask(crds, namespace, "broken")["status"]["conditions"][0]
    assert fixed["status"] == "True"


def test_an_operator_restart_neither_skips_nor_repeats_a_slot(
    crds: ControlPlane, operator: str, namespace: str, tmp_path: Path
) -> None:
    """Two operators race for every slot, and one of them is killed and restarted.

    The session operator watches every namespace, so this test runs a second
    operator on this namespace: each slot must still produce exactly one
    child (a second create is a 409 no-op), with no slot lost while one
    operator is down and none fired twice when it comes back.
    """
    log = tmp_path / "operator.log"
    second, _ = start_operator(crds, log, extra_args=["--namespace", namespace])
    try:
        manifest = crontask(
            "steady", "@every 2s", startingDeadlineSeconds=30, successfulTasksHistoryLimit=100
        )
        apply(crds, namespace, manifest)
        wait_until(lambda: len(children(crds, namespace, "steady")) >= 2, "2 children")

        second.kill()
        before = len(children(crds, namespace, "steady"))
        wait_until(lambda: len(children(crds, namespace, "steady")) >= before + 2, "2 more")
        second, _ = start_operator(crds, log, extra_args=["--namespace", namespace])
        after = len(children(crds, namespace, "steady"))
        wait_until(lambda: len(children(crds, namespace, "steady")) >= after + 2, "2 more again")
        suspend(crds, namespace, manifest)
    finally:
        second.stop()

    kids = children(crds, namespace, "steady")
    slots = [slot(c) for c in kids]
    assert_consecutive(slots, 2)
    annotations = [c["metadata"]["annotations"]["taskmill.dev/scheduled-at"] for c in kids]
    assert len(set(annotations)) == len(kids)
    text = log.read_text()
    assert "steady" in text, "the second operator never saw the CronTask"
