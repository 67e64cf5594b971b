"""The Task state machine, simulated on a virtual clock with the operator's
own decision code (:mod:`taskmill.dispatch.task_decisions`), dispatcher and
lease book: no API server, no I/O.

Workers take Tasks, and each attempt succeeds, fails (retryably or not), or
its worker vanishes and the lease expires. Whatever happens: every Task ends
Succeeded or Dead, never holds two leases, never makes more attempts than
``maxAttempts``, never starts a retry before its backoff allows, and leaves
no lease or running count behind.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from taskmill.dispatch.clock import to_timestamp
from taskmill.dispatch.keys import TaskKey
from taskmill.dispatch.leases import LeaseInfo
from taskmill.models.lease import CompleteRequest, Outcome, ReportedError
from taskmill.models.task import Phase
from tests.dispatch.simulation import Simulation, task_body

OUTCOMES = ["succeed", "fail", "fail_permanently", "vanish"]
LEASE_SECONDS = 10


@settings(max_examples=150, deadline=None)
@given(
    tasks=st.lists(st.integers(1, 4), min_size=1, max_size=12),
    outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=200),
)
def test_every_task_ends_and_no_invariant_breaks(tasks: list[int], outcomes: list[str]) -> None:
    sim = Simulation()
    sim.set_queue("default", leaseSeconds=LEASE_SECONDS)
    backoff = {"initialSeconds": 1, "factor": 2, "maxSeconds": 8, "jitter": 0.1}
    keys: list[TaskKey] = []
    for i, attempts in enumerate(tasks):
        body = task_body(f"t{i}", maxAttempts=attempts, backoff=backoff)
        keys.append(sim.create(body))
    outcome_of = iter(outcomes * 100)
    live: dict[str, LeaseInfo] = {}

    for _ in range(3000):
        if all(sim.status(k).phase.is_finished for k in keys):
            break
        for lease in sim.lease(["echo"], 3):
            key = lease.key
            status = sim.status(key)
            assert lease.attempt <= tasks[keys.index(key)]
            if status.history:  # a retry: not before its backoff
                last = status.history[-1]
                assert last.finished_at is not None
                assert status.next_attempt_at is None  # cleared by the lease
                assert lease.started_at >= to_timestamp(last.finished_at) + 0.9 - 1e-6
            outcome = next(outcome_of)
            if outcome == "vanish":
                live[lease.id] = lease  # no heartbeat, no completion: it will expire
                continue
            error = ReportedError(message="x", retryable=outcome == "fail")
            request = CompleteRequest(
                lease_id=lease.id,
                outcome=Outcome.SUCCEEDED if outcome == "succeed" else Outcome.FAILED,
                result={"ok": True} if outcome == "succeed" else None,
                error=None if outcome == "succeed" else error,
            )
            sim.complete(lease, request)
        running = [sim.dispatcher.leases.for_key(k) for k in keys]
        assert len({lease.id for lease in running if lease}) == sum(1 for x in running if x)
        wake = [t for t in (sim.dispatcher.next_wakeup(), sim.timers.next_at()) if t is not None]
        sim.run_until(max(sim.clock.now() + 0.01, min(wake)) if wake else sim.clock.now() + 1)

    for i, key in enumerate(keys):
        status = sim.status(key)
        assert status.phase in (Phase.SUCCEEDED, Phase.DEAD), (key, status.phase)
        assert status.attempts <= tasks[i]
        assert status.lease is None
        if status.phase == Phase.DEAD and status.reason == "AttemptsExhausted":
            assert status.attempts == tasks[i]
    assert len(sim.dispatcher.leases) == 0
    assert sim.dispatcher.running() == 0
    assert len(sim.dispatcher) == 0
