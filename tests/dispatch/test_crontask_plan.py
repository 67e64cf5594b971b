"""CronTask planning as plain functions: the due slot and the concurrency
verdict, the child's body, pruning, the status and its conditions, retries."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from taskmill.dispatch import crontask_plan as plans
from taskmill.dispatch import schedule as schedules
from taskmill.dispatch.backoff import BackoffPolicy
from taskmill.dispatch.crontask_plan import Child, Verdict
from taskmill.dispatch.transitions import iso
from taskmill.models.resources import CronTask
from taskmill.models.task import Phase

NOW = 1_700_000_105.0  # @every 10s slots fall on ...080, ...090, ...100, ...110
EVERY_10S = schedules.parse("@every 10s")


def crontask(**spec: Any) -> CronTask:
    return CronTask.model_validate(
        {
            "apiVersion": "taskmill.dev/v1alpha1",
            "kind": "CronTask",
            "metadata": {"name": "nightly", "namespace": "ns", "uid": "cron-uid", "generation": 3},
            "spec": {"schedule": "@every 10s", "taskTemplate": {"spec": {"type": "echo"}}, **spec},
        }
    )


def plan(
    task: CronTask | None = None,
    *,
    children: list[Child] | None = None,
    status: dict[str, Any] | None = None,
    last_slot: float = 1_700_000_090,
    scheduled: float | None = None,
    now: float = NOW,
    schedule: schedules.Schedule | None = EVERY_10S,
    error: schedules.ScheduleError | None = None,
    warned: int | None = None,
) -> plans.Plan:
    return plans.plan(
        task or crontask(),
        status or {},
        children or [],
        schedule=schedule,
        error=error,
        last_slot=last_slot,
        scheduled=scheduled,
        warned_generation=warned,
        now=now,
    )


def running(slot: float, name: str | None = None) -> Child:
    return Child(name or f"nightly-{int(slot)}", f"uid-{int(slot)}", Phase.RUNNING, slot)


def test_the_newest_due_slot_is_fired_and_the_next_is_when_to_look_again() -> None:
    fired = plan(last_slot=1_700_000_070)
    assert fired.fire is not None
    assert fired.fire.slot == 1_700_000_100
    assert fired.fire.skipped == 2
    assert not fired.fire.too_late
    assert fired.fire.verdict is Verdict.CREATE
    assert fired.fire.name == "nightly-1700000100"
    assert fired.look_again_at == 1_700_000_110


def test_nothing_is_due_between_slots() -> None:
    quiet = plan(last_slot=1_700_000_100)
    assert quiet.fire is None
    assert quiet.look_again_at == 1_700_000_110
    assert quiet.status["nextScheduleTime"] == iso(1_700_000_110)


def test_a_slot_past_the_starting_deadline_is_too_late_with_a_warning() -> None:
    late = plan(crontask(startingDeadlineSeconds=3))
    assert late.fire is not None
    assert late.fire.too_late
    assert late.fire.verdict is None
    assert late.fire.event is not None
    assert late.fire.event.reason == "MissedSchedule"
    assert "startingDeadlineSeconds=3" in late.fire.event.message
    assert plan(crontask(startingDeadlineSeconds=5)).fire.too_late is False  # type: ignore[union-attr]


def test_concurrency_policies_judge_the_active_children() -> None:
    old, done = running(1_700_000_090), Child("nightly-1", "u1", Phase.SUCCEEDED, 1.0)
    allow = plan(children=[old, done])
    forbid = plan(crontask(concurrencyPolicy="Forbid"), children=[old, done])
    replace = plan(crontask(concurrencyPolicy="Replace"), children=[done, old])
    idle_forbid = plan(crontask(concurrencyPolicy="Forbid"), children=[done])
    assert allow.fire is not None
    assert allow.fire.verdict is Verdict.CREATE
    assert forbid.fire is not None
    assert forbid.fire.verdict is Verdict.SKIP
    assert forbid.fire.active == (old,)
    assert replace.fire is not None
    assert replace.fire.verdict is Verdict.REPLACE
    assert replace.fire.active == (old,)  # finished children are left alone
    assert idle_forbid.fire is not None
    assert idle_forbid.fire.verdict is Verdict.CREATE


def test_suspended_fires_nothing_and_clears_the_next_time() -> None:
    stored = {"nextScheduleTime": iso(1_700_000_080)}
    suspended = plan(crontask(suspend=True), last_slot=1_700_000_070, status=stored)
    assert suspended.fire is None
    assert suspended.look_again_at is None
    assert suspended.status["nextScheduleTime"] is None  # merge patch: removed


def test_an_invalid_schedule_is_conditions_and_one_warning_per_generation() -> None:
    try:
        schedules.parse("61 * * * *")
    except schedules.ScheduleError as exc:
        error = exc
    first = plan(schedule=None, error=error)
    assert first.fire is None
    assert first.look_again_at is None
    assert first.warning is not None
    assert first.warning.reason == "InvalidSchedule"
    conditions = {c["type"]: c for c in first.status["conditions"]}
    assert conditions["ScheduleValid"]["status"] == "False"
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Stalled"]["status"] == "True"
    assert conditions["Stalled"]["observedGeneration"] == 3
    assert plan(schedule=None, error=error, warned=3).warning is None
    # The status as written: nothing more to write.
    written = {**first.status}
    again = plan(schedule=None, error=error, warned=3, status=written, now=NOW + 60)
    assert again.status == {}


def test_a_schedule_that_cannot_be_computed_is_contained() -> None:
    yearly = schedules.parse("0 0 1 1 *")
    stored = {"nextScheduleTime": iso(1_700_000_080)}
    stuck = plan(schedule=yearly, last_slot=253_388_000_000.0, status=stored)  # the year 9999
    assert stuck.fire is None
    assert stuck.error is not None
    assert stuck.error.reason is schedules.Problem.NOT_COMPUTABLE
    assert stuck.warning is not None
    assert stuck.status["nextScheduleTime"] is None


class Broken(schedules.Schedule):
    def latest_at_or_before(self, now: float) -> float | None:
        raise RecursionError("a fault in the schedule code")


def test_a_fault_in_the_schedule_code_is_not_computable_and_kept() -> None:
    broken = Broken("@every 10s", every_seconds=10)
    faulty = plan(schedule=broken)
    assert isinstance(faulty.fault, RecursionError)
    assert faulty.error is not None
    assert faulty.error.reason is schedules.Problem.NOT_COMPUTABLE
    assert "RecursionError" in faulty.error.message


def test_transition_times_are_kept_while_the_status_does_not_change() -> None:
    first = plan(now=NOW)
    since = first.status["conditions"][0]["lastTransitionTime"]
    later = plan(status=first.status, now=NOW + 3600)
    assert "conditions" not in later.status
    try:
        schedules.parse("61 * * * *")
    except schedules.ScheduleError as error:
        broken = plan(status=first.status, schedule=None, error=error, now=NOW + 7200)
    moved = {c["type"]: c["lastTransitionTime"] for c in broken.status["conditions"]}
    assert moved["ScheduleValid"] != since
    assert moved["ScheduleValid"] == iso(NOW + 7200 - (NOW + 7200) % 1).replace(".000Z", "Z")


def test_status_records_settled_slots_actives_and_the_newest_success() -> None:
    kids = [
        running(1_700_000_100),
        Child("nightly-1700000080", "u80", Phase.SUCCEEDED, 1_700_000_080, 1_700_000_085),
        Child("nightly-1700000090", "u90", Phase.SUCCEEDED, 1_700_000_090, 1_700_000_099),
    ]
    status = plan(children=kids, last_slot=1_700_000_100, scheduled=1_700_000_100).status
    assert status["lastScheduleTime"] == iso(1_700_000_100)
    assert status["active"] == [{"name": "nightly-1700000100", "uid": "uid-1700000100"}]
    assert status["lastSuccessfulTime"] == iso(1_700_000_099)
    assert status["observedGeneration"] == 3
    # Never backwards: an older settled slot or success than stored is not written.
    stored = {
        "lastScheduleTime": "2030-01-01T00:00:00Z",
        "lastSuccessfulTime": "2030-01-01T00:00:00Z",
    }
    again = plan(children=kids, last_slot=1_700_000_100, scheduled=1_700_000_100, status=stored)
    assert "lastScheduleTime" not in again.status
    assert "lastSuccessfulTime" not in again.status


def test_the_child_body_follows_the_contract() -> None:
    template = {
        "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
        "spec": {"type": "echo", "payload": {"k": 1}},
    }
    body = plans.child_body("ns", "nightly", "cron-uid", template, 1_700_000_100)
    meta = body["metadata"]
    assert meta["name"] == "nightly-1700000100"
    assert meta["namespace"] == "ns"
    assert meta["labels"] == {"team": "a", plans.CRONTASK_LABEL: "nightly"}
    assert meta["annotations"] == {"note": "x", plans.SCHEDULED_AT_ANNOTATION: iso(1_700_000_100)}
    (owner,) = meta["ownerReferences"]
    assert owner["uid"] == "cron-uid"
    assert owner["controller"] is True
    assert owner["blockOwnerDeletion"] is True
    assert body["spec"] == template["spec"]
    owned = plans.child_of(body)
    assert owned is not None
    assert owned.owner_uid == "cron-uid"
    assert owned.child.slot == 1_700_000_100
    assert owned.child.phase is Phase.PENDING


def test_a_task_no_crontask_controls_is_no_child() -> None:
    assert plans.child_of({"metadata": {"name": "x"}}) is None
    odd = plans.child_of(
        {
            "metadata": {
                "name": "x",
                "annotations": {plans.SCHEDULED_AT_ANNOTATION: "not a time"},
                "ownerReferences": [
                    {"kind": "CronTask", "name": "c", "uid": "u", "controller": True}
                ],
            },
            "status": {"phase": "Exploded"},
        }
    )
    assert odd is not None
    assert odd.child.slot == 0.0
    assert odd.child.phase is Phase.PENDING


def test_the_create_retry_deadline_is_the_earliest_bound() -> None:
    task = crontask()
    assert plans.retry_deadline(EVERY_10S, task, 100.0) == 110.0  # the next slot
    hourly = schedules.parse("0 * * * *")
    assert plans.retry_deadline(hourly, task, 0.0) == plans.MAX_RETRY_SECONDS
    assert plans.retry_deadline(hourly, crontask(startingDeadlineSeconds=30), 0.0) == 30.0
    assert plans.retry_deadline(None, task, 0.0) == plans.MAX_RETRY_SECONDS


def test_retries_follow_the_backoff_until_the_deadline() -> None:
    policy = BackoffPolicy(initial_seconds=1, factor=2, max_seconds=8, jitter=0)
    assert plans.retry_at(policy, attempt=1, transient=True, now=100, deadline=110) == 101
    assert plans.retry_at(policy, attempt=3, transient=True, now=100, deadline=110) == 104
    assert plans.retry_at(policy, attempt=4, transient=True, now=102, deadline=110) is None
    assert plans.retry_at(policy, attempt=1, transient=False, now=100, deadline=110) is None


PHASES = st.sampled_from(list(Phase))


@st.composite
def children(draw: st.DrawFn) -> list[Child]:
    count = draw(st.integers(0, 25))
    kids = []
    for i in range(count):
        phase = draw(PHASES)
        slot = float(draw(st.integers(0, 10_000)))
        finished = draw(st.none() | st.floats(0, 20_000)) if phase.is_finished else None
        kids.append(Child(f"c-{i}", f"u-{i}", phase, slot, finished))
    return kids


@given(children(), st.integers(0, 5), st.integers(0, 5))
def test_prune_keeps_the_limits_and_never_an_active_child(
    kids: list[Child], keep_ok: int, keep_failed: int
) -> None:
    task = crontask(successfulTasksHistoryLimit=keep_ok, failedTasksHistoryLimit=keep_failed)
    doomed = plans.prune(task, kids)
    assert all(not c.active for c in doomed)
    assert len(set(doomed)) == len(doomed)
    kept = [c for c in kids if c not in doomed]
    succeeded = [c for c in kept if c.phase is Phase.SUCCEEDED]
    failed = [c for c in kept if c.phase in (Phase.DEAD, Phase.CANCELLED)]
    assert len(succeeded) == min(keep_ok, sum(c.phase is Phase.SUCCEEDED for c in kids))
    assert len(failed) == min(
        keep_failed, sum(c.phase in (Phase.DEAD, Phase.CANCELLED) for c in kids)
    )

    # The earliest finished go first, within each kind.
    def finish(c: Child) -> float:
        return c.finished_at or c.slot

    for kind in ({Phase.SUCCEEDED}, {Phase.DEAD, Phase.CANCELLED}):
        gone = [c for c in doomed if c.phase in kind]
        left = [c for c in kept if c.phase in kind]
        assert all(finish(g) <= finish(k) for g in gone for k in left)


@given(st.integers(1_600_000_000, 1_900_000_000), st.integers(0, 100), st.integers(1, 3600))
def test_a_slot_is_fired_at_most_once(last: int, gap: int, every: int) -> None:
    schedule = schedules.parse(f"@every {every}s")
    now = float(last + gap * every)
    first = plan(schedule=schedule, last_slot=float(last), now=now)
    if first.fire is None:
        assert schedule.latest_at_or_before(now) <= last  # type: ignore[operator]
        return
    assert last < first.fire.slot <= now
    again = plan(schedule=schedule, last_slot=first.fire.slot, now=now)
    assert again.fire is None
    assert again.look_again_at is not None
    assert again.look_again_at > now
