"""The schedule code against a brute-force matcher (:mod:`tests.dispatch.cron_oracle`).

Random schedules, in random IANA zones that have DST rules, asked at
instants around their offset changes of 2026-2030; each call under a time
limit, so a search that hangs fails here instead of hanging the run.

The CI run is short (``schedule-ci``: a few hundred examples, seconds). A
long run: ``TASKMILL_SCHEDULE_PROFILE=schedule-long .venv/bin/pytest
tests/dispatch/test_schedule_oracle.py`` (tens of thousands of examples, and
a sweep of every zone's every change 2026-2030 with fixed schedules).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import zoneinfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskmill.dispatch import schedule as schedules
from tests.dispatch.cron_oracle import BOUNDS, DAYS, MONTHS, Oracle, transitions
from tests.dispatch.time_limit import time_limit

settings.register_profile(
    "schedule-ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "schedule-long",
    max_examples=30_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE_NAME = os.environ.get("TASKMILL_SCHEDULE_PROFILE", "schedule-ci")
PROFILE = settings.get_profile(PROFILE_NAME)
LONG = PROFILE_NAME == "schedule-long"

#: How far around ``now`` the oracle walks (it must find the answer there, or
#: the schedule code's answer must lie beyond).
WINDOW = 86400
#: Per call: the code answers in milliseconds; a hang fails at once.
LIMIT = 5.0
START, END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


def _has_dst(name: str) -> bool:
    zone = zoneinfo.ZoneInfo(name)
    offsets = {
        dt.datetime(year, month, 15, tzinfo=dt.UTC).astimezone(zone).utcoffset()
        for year in range(2026, 2031)
        for month in (1, 4, 7, 10)
    }
    return len(offsets) > 1


DST_ZONES = sorted(
    name
    for name in zoneinfo.available_timezones()
    if "/" in name and not name.startswith(("posix/", "right/", "Etc/")) and _has_dst(name)
)


@functools.cache
def changes(name: str) -> list[int]:
    return transitions(zoneinfo.ZoneInfo(name), START, END)


def test_the_zone_list_holds_the_odd_ones() -> None:
    # 30- and 45-minute changes, southern and northern hemispheres.
    for name in ("Australia/Lord_Howe", "Pacific/Chatham", "America/New_York", "Europe/Berlin"):
        assert name in DST_ZONES
    assert len(DST_ZONES) > 50
    assert len(changes("Pacific/Chatham")) == 10


def _field(index: int) -> st.SearchStrategy[str]:
    first, last, names, _ = BOUNDS[index]
    if index == 1:  # hours: changes happen at night, so favour them
        value = st.one_of(st.integers(0, 4), st.integers(first, last))
    else:
        value = st.integers(first, last)
    number = value.map(str)
    if names:
        number = st.one_of(number, st.sampled_from(names).map(lambda n: st_case(n)))
    step = st.integers(1, 40).map(str)
    ordered = st.tuples(value, value).map(sorted).map(lambda ab: f"{ab[0]}-{ab[1]}")
    item = st.one_of(
        st.just("*"),
        number,
        ordered,
        st.builds(lambda s: f"*/{s}", step),
        st.builds(lambda r, s: f"{r}/{s}", ordered, step),
        st.builds(lambda n, s: f"{n}/{s}", value.map(str), step),
    )
    if index == 2:
        item = st.one_of(item, st.just("L"))
    listed = st.lists(item, min_size=1, max_size=3).map(",".join)
    if index in (2, 3):  # restricted days and months match rarely: mostly "*"
        return st.one_of(st.just("*"), st.just("*"), listed)
    return st.one_of(st.just("*"), listed)


def st_case(name: str) -> str:
    return name.upper() if len(name) % 2 else name


LINES = st.tuples(*(_field(i) for i in range(5))).map(" ".join)
MACRO_LINES = st.sampled_from(sorted(schedules.MACROS))


@st.composite
def moments(draw: st.DrawFn) -> tuple[str, float]:
    name = draw(st.sampled_from(DST_ZONES))
    change = draw(st.sampled_from(changes(name)))
    near = draw(st.one_of(st.integers(-3 * 3600, 3 * 3600), st.integers(-WINDOW, WINDOW)))
    fraction = draw(st.sampled_from([0.0, 0.0, 0.5]))
    return name, change + near + fraction


def check(expression: str, zone_name: str, now: float, window: int = WINDOW) -> None:
    refusal: str | None = None
    try:
        schedule = schedules.parse(expression, zone_name)
    except schedules.ScheduleError as exc:
        refusal = exc.message
    if refusal is not None:
        # Only a date that never comes; the grammar made the rest valid.
        assert "no date" in refusal, refusal
        return
    line = schedule.cron
    assert line is not None
    zone = zoneinfo.ZoneInfo(zone_name)
    oracle = Oracle(line)
    # A repeated hour lasts at most 1 h: a 3 h lead sees each first occurrence.
    expected = oracle.slots(zone, now - window, now + window, lead=3 * 3600)
    after = [u for u in expected if u > now]
    at_or_before = [u for u in expected if u <= now]

    with time_limit(LIMIT):
        fire = schedule.next_after(now)
    with time_limit(LIMIT):
        latest = schedule.latest_at_or_before(now)

    if after:
        assert fire == after[0], (expression, zone_name, now, fire, after[0])
    else:
        assert fire > now + window, (expression, zone_name, now, fire)
        assert oracle.slots(zone, fire - 1, fire) == [fire], (expression, zone_name, fire)
    if at_or_before:
        assert latest == at_or_before[-1], (expression, zone_name, now, latest, at_or_before[-1])
    else:
        assert latest is None or latest <= now - window, (expression, zone_name, now, latest)


@PROFILE
@given(expression=LINES, moment=moments())
def test_schedules_agree_with_the_brute_force_matcher(
    expression: str, moment: tuple[str, float]
) -> None:
    check(expression, *moment)


@settings(PROFILE, max_examples=PROFILE.max_examples // 4)
@given(expression=MACRO_LINES, moment=moments())
def test_macros_agree_with_the_brute_force_matcher(
    expression: str, moment: tuple[str, float]
) -> None:
    check(expression, *moment)


SWEEP_LINES = [
    "* * * * *",
    "*/15 * * * *",
    "*/7 0-5 * * *",
    "30 * * * *",
    "0,30 0-4 * * *",
    "15 2 * * *",
    "45 1,2,3 * * *",
    "* 3 * * *",
]


@pytest.mark.skipif(not LONG, reason="long run only: TASKMILL_SCHEDULE_PROFILE=schedule-long")
@pytest.mark.parametrize("zone_name", DST_ZONES)
def test_every_change_2026_to_2030_with_fixed_schedules(zone_name: str) -> None:
    for change in changes(zone_name):
        for line in SWEEP_LINES:
            for near in (-5400, -1800, 0, 1800, 5400):
                check(line, zone_name, change + near, window=4 * 3600)


def test_the_oracle_itself_on_a_known_day() -> None:
    # New York, 2026-03-08: 02:00-02:59 skipped; 2026-11-01: 01:00-01:59 twice.
    zone = zoneinfo.ZoneInfo("America/New_York")
    spring = dt.datetime(2026, 3, 8, tzinfo=zone).timestamp()
    fall = dt.datetime(2026, 11, 1, tzinfo=zone).timestamp()

    def walls(line: str, start: float) -> list[str]:
        found = Oracle(line).slots(zone, start, start + 6 * 3600)
        return [dt.datetime.fromtimestamp(u, zone).strftime("%H:%M%z") for u in found]

    assert walls("30 2 * * *", spring) == ["03:00-0400"]
    assert walls("30 * * * *", spring) == [
        "00:30-0500",
        "01:30-0500",
        "03:30-0400",
        "04:30-0400",
        "05:30-0400",
        "06:30-0400",
    ]
    assert walls("30 1 * * *", fall) == ["01:30-0400"]
    assert walls("30 * * * *", fall) == [
        "00:30-0400",
        "01:30-0400",
        "01:30-0500",
        "02:30-0500",
        "03:30-0500",
        "04:30-0500",
    ]
    assert [d[:3] for d in (MONTHS[0], DAYS[0])] == ["jan", "sun"]
