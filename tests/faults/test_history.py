"""The fault checker on hand-made histories: it passes clean runs and fails
lost Tasks, unexplained duplicates and broken lease invariants."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from taskmill.testing.faults.history import check
from taskmill.testing.faults.records import (
    Attempt,
    Execution,
    FinalTask,
    Lifetime,
    Outage,
    RunRecord,
)

T0 = 1_800_000_000.0


def run_of(
    uid: str, attempt: int, worker: str, start: float, end: float, outcome: str
) -> Execution:
    return Execution(
        uid, uid, attempt, worker, pid=100, start=T0 + start, end=T0 + end, outcome=outcome
    )


def entry(attempt: int, worker: str, start: float, end: float, outcome: str) -> Attempt:
    return Attempt(attempt, worker, T0 + start, T0 + end, outcome)


def task(uid: str, phase: str, *history: Attempt) -> FinalTask:
    counted = sum(1 for h in history if h.outcome != "Released")
    return FinalTask(uid=uid, name=uid, phase=phase, attempts=counted, history=history)


def test_a_clean_run_with_retries_passes_with_no_duplicates() -> None:
    tasks = [
        task("a", "Succeeded", entry(1, "w1", 0, 1, "Succeeded")),
        task(
            "b",
            "Succeeded",
            entry(1, "w1", 0, 1, "Failed"),
            entry(2, "w2", 2, 3, "Succeeded"),
        ),
        task("c", "Dead", entry(1, "w1", 0, 1, "Failed"), entry(2, "w1", 2, 3, "Failed")),
    ]
    executions = [
        run_of("a", 1, "w1", 0.1, 0.9, "succeeded"),
        run_of("b", 1, "w1", 0.1, 0.9, "failed"),
        run_of("b", 2, "w2", 2.1, 2.9, "succeeded"),
        run_of("c", 1, "w1", 0.1, 0.9, "failed"),
        run_of("c", 2, "w1", 2.1, 2.9, "failed"),
    ]
    report = check({"a": "Succeeded", "b": "Succeeded", "c": "Dead"}, tasks, executions)
    assert report.ok, report.dumps()
    assert (report.executions, report.accepted, len(report.duplicates)) == (5, 5, 0)
    assert report.succeeded == 2
    assert report.to_json()["tasks"]["lost"] == 0


def test_a_task_that_never_succeeds_is_lost() -> None:
    tasks = [task("a", "Running"), task("b", "Succeeded", entry(1, "w1", 0, 1, "Succeeded"))]
    executions = [run_of("b", 1, "w1", 0.1, 0.9, "succeeded")]
    report = check({"a": "Succeeded", "b": "Succeeded", "gone": "Succeeded"}, tasks, executions)
    assert not report.ok
    assert report.lost == ["a", "gone"]
    assert report.to_json()["tasks"]["by_phase"] == {"Missing": 1, "Running": 1, "Succeeded": 1}
    assert "2 Tasks lost (never Succeeded)" in report.failures


def test_a_duplicate_after_an_expired_lease_of_a_killed_worker_is_explained() -> None:
    tasks = [
        task(
            "a",
            "Succeeded",
            entry(1, "w1", 0, 6, "LeaseExpired"),
            entry(2, "w2", 6.5, 7.5, "Succeeded"),
        )
    ]
    # The killed worker's handler had finished, but its outcome never arrived.
    executions = [
        run_of("a", 1, "w1", 0.1, 0.5, "succeeded"),
        run_of("a", 2, "w2", 6.6, 7.4, "succeeded"),
    ]
    killed = RunRecord(lifetimes=[Lifetime("worker", "w1", 100, T0 - 5, T0 + 0.6, "SIGKILL")])
    report = check({"a": "Succeeded"}, tasks, executions, killed)
    assert report.ok, report.dumps()
    [duplicate] = report.duplicates
    assert duplicate["attempt"] == 1
    assert duplicate["explanation"]["kind"] == "lease-expired"
    assert duplicate["explanation"]["causes"] == [f"worker w1 (pid 100) killed at {T0 + 0.6:.3f}"]
    # The first execution returned success: this one redid finished work.
    assert [r["attempt"] for r in report.redone_after_success] == [2]


def test_a_duplicate_without_an_expired_lease_or_a_fault_is_unexplained() -> None:
    # Attempt 1 is recorded as failed, yet the handler ran it twice on w1.
    tasks = [
        task("a", "Succeeded", entry(1, "w1", 0, 3, "Failed"), entry(2, "w1", 4, 5, "Succeeded"))
    ]
    executions = [
        run_of("a", 1, "w1", 0.1, 1.0, "failed"),
        run_of("a", 1, "w1", 1.5, 2.5, "failed"),
        run_of("a", 2, "w1", 4.1, 4.9, "succeeded"),
    ]
    report = check({"a": "Succeeded"}, tasks, executions)
    assert not report.ok
    assert [d["start"] for d in report.unexplained] == [round(T0 + 1.5, 3)]
    assert "1 duplicate executions unexplained" in report.failures


def test_a_fault_in_the_window_explains_a_duplicate_of_an_unrecorded_attempt() -> None:
    # The operator died before it could record attempt 1 at all.
    tasks = [task("a", "Succeeded", entry(2, "w1", 5, 6, "Succeeded"))]
    tasks = [FinalTask("a", "a", "Succeeded", 1, tasks[0].history)]
    executions = [
        run_of("a", 1, "w1", 0.1, 0.9, "cancelled"),
        run_of("a", 2, "w1", 5.1, 5.9, "succeeded"),
    ]
    crash = RunRecord(lifetimes=[Lifetime("operator", "op", 7, T0 - 9, T0 + 0.5, "SIGKILL")])
    report = check({"a": "Succeeded"}, tasks, executions, crash)
    assert not report.unexplained, report.dumps()
    assert report.duplicates[0]["explanation"]["kind"] == "process-died"


def test_a_paused_worker_explains_its_late_completion() -> None:
    tasks = [
        task(
            "a",
            "Succeeded",
            entry(1, "w1", 0, 6, "LeaseExpired"),
            entry(2, "w2", 6.2, 6.8, "Succeeded"),
        )
    ]
    executions = [
        run_of("a", 1, "w1", 0.1, 9.5, "succeeded"),  # finished after SIGCONT
        run_of("a", 2, "w2", 6.3, 6.7, "succeeded"),
    ]
    paused = RunRecord(outages=[Outage("paused", "worker", "w1", T0 + 0.5, T0 + 9.4, 100)])
    report = check({"a": "Succeeded"}, tasks, executions, paused)
    assert report.ok, report.dumps()
    [duplicate] = report.duplicates
    assert duplicate["explanation"]["kind"] == "lease-expired"
    assert "paused" in duplicate["explanation"]["causes"][0]
    # The executions overlap, which is allowed: attempt 1's lease had ended.
    assert not report.violations


def test_two_leases_of_one_task_at_once_fail_the_run() -> None:
    tasks = [
        task(
            "a",
            "Succeeded",
            entry(1, "w1", 0, 6, "LeaseExpired"),
            entry(2, "w2", 3, 4, "Succeeded"),
        )
    ]
    executions = [
        run_of("a", 1, "w1", 0.1, 5.0, "succeeded"),
        run_of("a", 2, "w2", 3.1, 3.9, "succeeded"),
    ]
    report = check({"a": "Succeeded"}, tasks, executions)
    assert not report.ok
    assert any("while attempt 1's lease was current" in v for v in report.violations)
    assert any("ran under a current lease" in v for v in report.violations)


def test_a_success_without_its_execution_and_a_miscount_fail_the_run() -> None:
    tasks = [FinalTask("a", "a", "Succeeded", 3, (entry(1, "w1", 0, 1, "Succeeded"),))]
    report = check({"a": "Succeeded"}, tasks, [])
    assert any("no execution of it was recorded" in v for v in report.violations)
    assert any("status.attempts is 3, history counts 1" in v for v in report.violations)


def test_a_handed_back_attempt_is_not_counted_and_explains_its_rerun() -> None:
    tasks = [
        task(
            "a",
            "Succeeded",
            entry(1, "w1", 0, 2, "Released"),
            entry(1, "w2", 2.1, 3, "Succeeded"),
        )
    ]
    executions = [
        run_of("a", 1, "w1", 0.1, 1.9, "cancelled"),
        run_of("a", 1, "w2", 2.2, 2.9, "succeeded"),
    ]
    report = check({"a": "Succeeded"}, tasks, executions)
    assert report.ok, report.dumps()
    assert report.duplicates[0]["explanation"]["kind"] == "released"
    assert report.redone_after_success == []


def test_a_single_discarded_execution_is_not_a_duplicate() -> None:
    tasks = [task("a", "Cancelled", entry(1, "w1", 0, 1, "Cancelled"))]
    executions = [run_of("a", 1, "w1", 0.1, 0.9, "cancelled")]
    report = check({"a": "Cancelled"}, tasks, executions)
    assert report.ok, report.dumps()
    assert (len(report.duplicates), len(report.discarded)) == (0, 1)


def test_the_wrong_final_phase_fails_the_run() -> None:
    tasks = [task("a", "Succeeded", entry(1, "w1", 0, 1, "Succeeded"))]
    executions = [run_of("a", 1, "w1", 0.1, 0.9, "succeeded")]
    report = check({"a": "Dead"}, tasks, executions)
    assert report.wrong_phase == [{"task": "a", "expected": "Dead", "phase": "Succeeded"}]
    assert not report.ok


@given(failures=st.integers(0, 6), expired=st.sets(st.integers(0, 6)))
def test_any_chain_of_failures_and_expiries_is_explained(failures: int, expired: set[int]) -> None:
    """Attempts fail, or lose their lease after the handler finished; the
    last one succeeds. Every rerun is then a retry or an explained duplicate,
    and dropping the successful execution from the log is always caught."""
    history, executions, now = [], [], 0.0
    for attempt in range(1, failures + 2):
        last = attempt == failures + 1
        lost = attempt - 1 in expired and not last
        outcome = "Succeeded" if last else ("LeaseExpired" if lost else "Failed")
        history.append(entry(attempt, f"w{attempt % 2}", now, now + 1, outcome))
        ran = "succeeded" if last or lost else "failed"
        executions.append(run_of("a", attempt, f"w{attempt % 2}", now + 0.1, now + 0.5, ran))
        now += 2
    final = [task("a", "Succeeded", *history)]
    report = check({"a": "Succeeded"}, final, executions)
    assert report.ok, report.dumps()
    lost_leases = sum(1 for h in history if h.outcome == "LeaseExpired")
    assert len(report.duplicates) == lost_leases
    first = next(i for i, e in enumerate(executions) if e.outcome == "succeeded")
    assert len(report.redone_after_success) == len(executions) - first - 1
    assert not check({"a": "Succeeded"}, final, executions[:-1]).ok


def test_each_duplicate_says_where_it_lies_against_its_lease() -> None:
    tasks = [
        task(
            name,
            "Succeeded",
            entry(1, "w1", 0, 6, "LeaseExpired"),
            entry(2, "w2", 7, 8, "Succeeded"),
        )
        for name in ("lost", "late", "stale")
    ]
    executions = [
        run_of("lost", 1, "w1", 0.1, 0.5, "succeeded"),  # done, outcome never counted
        run_of("late", 1, "w1", 0.1, 9.0, "succeeded"),  # still running when it expired
        run_of("stale", 1, "w1", 6.5, 6.9, "succeeded"),  # began after it expired
        *(run_of(n, 2, "w2", 7.1, 7.9, "succeeded") for n in ("lost", "late", "stale")),
    ]
    report = check(dict.fromkeys(("lost", "late", "stale"), "Succeeded"), tasks, executions)
    assert {d["task"]: d["timing"] for d in report.duplicates} == {
        "lost": "outcome-not-taken",
        "late": "lease-ended-while-running",
        "stale": "started-after-lease-ended",
    }
    assert report.to_json()["duplicates"]["by_timing"] == {
        "lease-ended-while-running": 1,
        "outcome-not-taken": 1,
        "started-after-lease-ended": 1,
    }
