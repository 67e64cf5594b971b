"""The dispatcher: order, fairness and limits, by example and by property."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import example, given, settings
from hypothesis import strategies as st

from taskmill.dispatch.dispatcher import Candidate, Dispatcher, Limits
from taskmill.dispatch.leases import LeaseInfo


def cand(
    name: str,
    ns: str = "a",
    queue: str = "q",
    type_: str = "t",
    priority: int = 0,
    created: float = 0.0,
    at: float = 0.0,
) -> Candidate:
    return Candidate(
        key=(ns, name), queue=queue, type=type_, priority=priority, created=created, eligible_at=at
    )


def names(taken: list[Candidate]) -> list[str]:
    return [c.key[1] for c in taken]


def test_priority_first_then_fifo_within_a_lane() -> None:
    d = Dispatcher()
    for c in [
        cand("low-old", created=1),
        cand("high", priority=5, created=9),
        cand("low-new", created=2),
    ]:
        d.put(c, now=0)

    assert names(d.take(["t"], 10, now=0)) == ["high", "low-old", "low-new"]


def test_equal_priorities_alternate_between_namespaces() -> None:
    d = Dispatcher()
    for i in range(6):
        d.put(cand(f"busy-{i}", ns="busy", created=i), now=0)
    for i in range(2):
        d.put(cand(f"quiet-{i}", ns="quiet", created=100 + i), now=0)

    order = [c.key[0] for c in d.take(["t"], 8, now=0)]

    assert order[:4] in (["busy", "quiet", "busy", "quiet"], ["quiet", "busy", "quiet", "busy"])
    assert order[4:] == ["busy"] * 4


def test_a_higher_priority_beats_fairness() -> None:
    d = Dispatcher()
    d.put(cand("n1", ns="x", priority=1), now=0)
    d.put(cand("n2", ns="x", priority=1, created=1), now=0)
    d.put(cand("m", ns="y", priority=0), now=0)

    assert names(d.take(["t"], 3, now=0)) == ["n1", "n2", "m"]


def test_a_token_bucket_lets_the_burst_through_then_the_rate() -> None:
    d = Dispatcher()
    d.set_limits(("a", "q"), Limits(rates=(("t", 2.0, 3),)))
    for i in range(10):
        d.put(cand(f"t{i}", created=i), now=0)

    assert len(d.take(["t"], 10, now=100)) == 3
    assert d.take(["t"], 10, now=100.2) == []
    assert d.next_wakeup() == 100.5
    assert len(d.take(["t"], 10, now=100.5)) == 1
    assert len(d.take(["t"], 10, now=101.5)) == 2


def test_concurrency_per_type_and_in_total() -> None:
    d = Dispatcher()
    d.set_limits(("a", "q"), Limits(total=3, per_type=(("x", 1),)))
    for i in range(3):
        d.put(cand(f"x{i}", type_="x", created=i), now=0)
        d.put(cand(f"y{i}", type_="y", created=i), now=0)

    first = d.take(["x", "y"], 10, now=0)
    assert sorted(c.type for c in first) == ["x", "y", "y"]
    assert d.take(["x", "y"], 10, now=0) == []

    d.finished(first[0].key)
    assert len(d.take(["x", "y"], 10, now=0)) == 1


def test_a_paused_queue_holds_its_tasks_until_resumed() -> None:
    d = Dispatcher()
    d.set_limits(("a", "q"), Limits(paused=True))
    d.put(cand("held"), now=0)

    assert d.take(["t"], 1, now=0) == []
    d.set_limits(("a", "q"), Limits())
    assert names(d.take(["t"], 1, now=0)) == ["held"]


def test_a_delayed_task_enters_its_lane_on_time() -> None:
    d = Dispatcher()
    d.put(cand("later", at=50), now=0)

    assert d.take(["t"], 1, now=49) == []
    assert d.next_wakeup() == 50
    assert names(d.take(["t"], 1, now=50)) == ["later"]


def test_a_task_moved_to_another_queue_is_taken_once_from_the_new_one() -> None:
    d = Dispatcher()
    d.put(cand("m", queue="q1"), now=0)
    d.put(cand("m", queue="q2"), now=0)

    taken = d.take(["t"], 5, now=0)

    assert [(c.key[1], c.queue) for c in taken] == [("m", "q2")]


def test_restored_leases_count_against_concurrency() -> None:
    d = Dispatcher()
    d.set_limits(("a", "q"), Limits(total=1))
    lease = LeaseInfo("L", ("a", "was-running"), "u", "w", 1, 0.0, 30.0, 30.0)
    d.restore(cand("was-running"), lease)
    d.put(cand("next"), now=0)

    assert d.take(["t"], 1, now=0) == []
    assert d.leases.for_key(("a", "was-running")) == lease
    assert d.finished(("a", "was-running")) == lease
    assert d.leases.for_key(("a", "was-running")) is None
    assert names(d.take(["t"], 1, now=0)) == ["next"]


def test_a_taken_task_is_claimed_until_finished_and_its_lease_goes_with_it() -> None:
    d = Dispatcher()
    d.put(cand("x"), now=0)
    [taken] = d.take(["t"], 1, now=0)
    assert d.leases.running(taken.key)
    assert d.leases.for_key(taken.key) is None
    lease = LeaseInfo("L", taken.key, "u", "w", 1, 0.0, 30.0, 30.0)
    d.leases.grant(lease)
    assert d.running(("a", "q")) == 1
    assert d.finished(taken.key) == lease
    assert not d.leases.running(taken.key)
    assert d.leases.get("L") is None
    assert d.running() == 0


# --------------------------------------------------------------------- properties

TYPES = ["t1", "t2"]
QUEUES = [("n1", "q"), ("n2", "q")]

limits_st = st.builds(
    Limits,
    total=st.none() | st.integers(1, 4),
    per_type=st.lists(
        st.tuples(st.sampled_from(TYPES), st.integers(0, 3)), max_size=2, unique_by=lambda x: x[0]
    ).map(tuple),
    rates=st.lists(
        st.tuples(st.sampled_from(TYPES), st.sampled_from([0.5, 1.0, 4.0]), st.integers(1, 3)),
        max_size=2,
        unique_by=lambda x: x[0],
    ).map(tuple),
)

put_st = st.tuples(
    st.just("put"),
    st.sampled_from(QUEUES),
    st.sampled_from(TYPES),
    st.integers(-2, 2),
    st.sampled_from([0.0, 0.0, 0.5, 3.0]),
)
take_st = st.tuples(
    st.just("take"), st.lists(st.sampled_from(TYPES), min_size=1, max_size=3), st.integers(1, 4)
)
# Weighted towards puts and takes, where limits are put to the test.
op_st = st.one_of(
    put_st,
    put_st,
    put_st,
    take_st,
    take_st,
    take_st,
    st.tuples(st.just("finish"), st.integers(0, 1000)),
    st.tuples(st.just("tick"), st.sampled_from([0.05, 0.3, 1.0, 2.5])),
)


@settings(max_examples=500, deadline=None)
@given(
    limits=st.fixed_dictionaries({q: limits_st for q in QUEUES}),
    ops=st.lists(op_st, max_size=120),
)
# Known edges, always run: one take spanning two lanes of a queue at its total;
# a bucket asked again within the same instant.
@example(
    limits={("n1", "q"): Limits(total=1), ("n2", "q"): Limits()},
    ops=[
        ("put", ("n1", "q"), "t1", 0, 0.0),
        ("put", ("n1", "q"), "t2", 0, 0.0),
        ("take", ["t1", "t2"], 2),
    ],
)
@example(
    limits={("n1", "q"): Limits(rates=(("t1", 0.5, 1),)), ("n2", "q"): Limits()},
    ops=[("put", ("n1", "q"), "t1", 0, 0.0)] * 3 + [("take", ["t1"], 1)] * 3,
)
def test_no_limit_is_ever_exceeded_and_nothing_is_lost_or_taken_twice(
    limits: dict[tuple[str, str], Limits], ops: list[tuple[object, ...]]
) -> None:
    d = Dispatcher()
    for queue, lim in limits.items():
        d.set_limits(queue, lim)
    now = 0.0
    counter = 0
    put: dict[tuple[str, str], Candidate] = {}
    running: dict[tuple[str, str], Candidate] = {}
    done: set[tuple[str, str]] = set()
    takes: dict[tuple[str, str, str], list[float]] = defaultdict(list)

    def check_limits() -> None:
        per_queue: dict[tuple[str, str], int] = defaultdict(int)
        per_lane: dict[tuple[str, str, str], int] = defaultdict(int)
        for c in running.values():
            per_queue[c.key[0], c.queue] += 1
            per_lane[c.lane] += 1
        for queue, count in per_queue.items():
            total = limits[queue].total
            assert total is None or count <= total
        for lane, count in per_lane.items():
            limit = limits[lane[:2]].type_limit(lane[2])
            assert limit is None or count <= limit

    for op in ops:
        if op[0] == "put":
            (ns, queue), type_, priority, delay = op[1], op[2], op[3], op[4]
            counter += 1
            c = Candidate((ns, f"task{counter}"), queue, type_, priority, now, now + delay)
            put[c.key] = c
            d.put(c, now)
        elif op[0] == "take":
            wanted, count = op[1], op[2]
            taken = d.take(wanted, count, now)
            assert len(taken) <= count
            for c in taken:
                assert c.type in wanted
                assert c.key in put
                assert c.key not in running
                assert c.key not in done
                assert c.eligible_at <= now
                running[c.key] = c
                takes[c.lane].append(now)
            check_limits()
        elif op[0] == "finish" and running:
            key = sorted(running)[op[1] % len(running)]
            del running[key]
            done.add(key)
            d.finished(key)
        elif op[0] == "tick":
            now += op[1]

    # Token buckets: in any window, at most burst + rate * window starts.
    for lane, times in takes.items():
        rate = limits[lane[:2]].rate(lane[2])
        if rate is None:
            continue
        per_second, burst = rate
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                assert j - i + 1 <= burst + per_second * (times[j] - start) + 1e-6

    # Drain: with every limit lifted, every Task not yet taken comes out, once.
    for queue in QUEUES:
        d.set_limits(queue, Limits())
    for key in list(running):
        d.finished(key)
    rest = d.take(TYPES, 10_000, now + 10)
    assert sorted(c.key for c in rest) == sorted(set(put) - set(running) - done)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.integers(-2, 2)), max_size=40))
def test_without_limits_each_pick_has_the_highest_priority_waiting(
    entries: list[tuple[str, int]],
) -> None:
    d = Dispatcher()
    waiting = {}
    for i, (ns, priority) in enumerate(entries):
        c = cand(f"t{i}", ns=ns, priority=priority, created=i)
        waiting[c.key] = c
        d.put(c, now=0)

    while taken := d.take(["t"], 1, now=0):
        best = max(c.priority for c in waiting.values())
        assert taken[0].priority == best
        del waiting[taken[0].key]
    assert not waiting
