"""A Task's conditions for each phase: Job's for kubectl wait, kstatus' for GitOps."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmill.dispatch.conditions import for_phase
from taskmill.models.resources import TASK
from taskmill.models.task import Phase, TaskStatus

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC).timestamp()


def kstatus(conditions: list[dict[str, str]]) -> str:
    """What kstatus computes from conditions alone (cli-utils' rules for a
    kind it does not know: Reconciling, Stalled, then Ready; the real library
    runs on real objects in tests/gitops)."""
    for condition in conditions:
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed"
    for condition in conditions:
        if condition["type"] == "Ready":
            return "Current" if condition["status"] == "True" else "InProgress"
    return "Current"


@pytest.mark.parametrize(
    ("phase", "expected", "ready"),
    [
        (Phase.PENDING, "InProgress", "False"),
        (Phase.WAITING, "InProgress", "False"),
        (Phase.RUNNING, "InProgress", "False"),
        (Phase.SUCCEEDED, "Current", "True"),
        (Phase.DEAD, "Failed", "False"),
        (Phase.CANCELLED, "Current", None),
    ],
)
def test_each_phase_reads_as_gitops_tools_expect(
    phase: Phase, expected: str, ready: str | None
) -> None:
    conditions = for_phase(None, phase, "", "", T0)
    assert kstatus(conditions) == expected
    assert {c["type"]: c["status"] for c in conditions}.get("Ready") == ready


def test_job_conditions_stay_for_kubectl_wait() -> None:
    succeeded = {c["type"] for c in for_phase(None, Phase.SUCCEEDED, "", "", T0)}
    dead = {c["type"] for c in for_phase(None, Phase.DEAD, "AttemptsExhausted", "x", T0)}
    assert "Complete" in succeeded
    assert "Failed" not in succeeded
    assert "Failed" in dead
    assert "Complete" not in dead


def test_a_new_task_reads_as_in_progress_from_the_crd_default_alone() -> None:
    assert TASK.status_default is not None
    default = TASK.status_default["conditions"]
    assert kstatus(default) == "InProgress"
    assert TaskStatus.model_validate(TASK.status_default).conditions


@given(
    st.lists(st.sampled_from(list(Phase)), min_size=1, max_size=8),
    st.lists(st.floats(min_value=1, max_value=1e5), min_size=8, max_size=8),
)
def test_a_transition_time_moves_only_when_its_condition_changes(
    phases: list[Phase], gaps: list[float]
) -> None:
    status: TaskStatus | None = None
    now = T0
    for phase, gap in zip(phases, gaps, strict=False):
        now += gap
        conditions = for_phase(status, phase, "", "", now)
        before = {c.type: c for c in (status.conditions or [])} if status else {}
        for condition in conditions:
            old = before.get(condition["type"])
            moved = condition["lastTransitionTime"] != (
                old.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ")
                if old and old.last_transition_time
                else None
            )
            assert moved == (old is None or old.status.value != condition["status"])
        status = TaskStatus.model_validate({"phase": phase.value, "conditions": conditions})
