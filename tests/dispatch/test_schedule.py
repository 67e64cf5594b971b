"""CronTask schedule math: next fire times, due slots, validation, DST."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from taskmill.dispatch import schedule as schedules
from taskmill.dispatch.clock import FakeClock
from taskmill.models import schedule_syntax as syntax
from taskmill.models.crontask import CronTaskSpec
from tests.dispatch.time_limit import time_limit

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def at(text: str, zone: str = "UTC") -> float:
    """A local wall time in ``zone`` as epoch seconds (``fold=0`` when ambiguous)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


def local(ts: float, zone: str = "UTC") -> str:
    return dt.datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(zone)).isoformat()


# (schedule, time zone, now as local wall time, expected next fire as local ISO with offset)
NEXT_CASES = [
    # plain fields, steps, ranges, lists
    ("* * * * *", None, "2026-05-04T10:00:30", "2026-05-04T10:01:00+00:00"),
    ("*/15 * * * *", None, "2026-05-04T10:16:00", "2026-05-04T10:30:00+00:00"),
    ("5-10 * * * *", None, "2026-05-04T10:10:00", "2026-05-04T11:05:00+00:00"),
    ("0 9-17/4 * * *", None, "2026-05-04T14:00:00", "2026-05-04T17:00:00+00:00"),
    ("1,31,59 * * * *", None, "2026-05-04T10:31:00", "2026-05-04T10:59:00+00:00"),
    ("0 0 1,15 * *", None, "2026-05-02T00:00:00", "2026-05-15T00:00:00+00:00"),
    ("30 4 * * 1-5", None, "2026-05-08T05:00:00", "2026-05-11T04:30:00+00:00"),  # Fri → Mon
    # names
    ("0 12 * * MON", None, "2026-05-04T12:00:00", "2026-05-11T12:00:00+00:00"),
    ("0 12 * * mon-wed", None, "2026-05-07T00:00:00", "2026-05-11T12:00:00+00:00"),
    ("0 0 1 JAN *", None, "2026-05-04T00:00:00", "2027-01-01T00:00:00+00:00"),
    ("0 0 1 jan,jul *", None, "2026-05-04T00:00:00", "2026-07-01T00:00:00+00:00"),
    ("0 6 * JUN-AUG SAT,SUN", None, "2026-05-30T00:00:00", "2026-06-06T06:00:00+00:00"),
    ("0 0 * * 7", None, "2026-05-04T00:00:00", "2026-05-10T00:00:00+00:00"),  # 7 is Sunday
    # macros
    ("@yearly", None, "2026-05-04T00:00:00", "2027-01-01T00:00:00+00:00"),
    ("@annually", None, "2026-12-31T23:59:59", "2027-01-01T00:00:00+00:00"),
    ("@monthly", None, "2026-05-04T00:00:00", "2026-06-01T00:00:00+00:00"),
    ("@weekly", None, "2026-05-04T00:00:00", "2026-05-10T00:00:00+00:00"),
    ("@daily", None, "2026-05-04T00:00:00", "2026-05-05T00:00:00+00:00"),
    ("@midnight", None, "2026-05-04T23:59:59", "2026-05-05T00:00:00+00:00"),
    ("@hourly", None, "2026-05-04T10:59:59", "2026-05-04T11:00:00+00:00"),
    ("@daily", BERLIN, "2026-05-04T00:00:00", "2026-05-05T00:00:00+02:00"),
    # month ends and leap days
    ("0 0 31 * *", None, "2026-04-01T00:00:00", "2026-05-31T00:00:00+00:00"),
    ("0 0 30 * *", None, "2026-01-31T00:00:00", "2026-03-30T00:00:00+00:00"),  # no Feb 30
    ("0 0 29 2 *", None, "2026-03-01T00:00:00", "2028-02-29T00:00:00+00:00"),
    ("0 0 29 2 *", None, "2028-02-28T12:00:00", "2028-02-29T00:00:00+00:00"),
    ("0 0 L * *", None, "2028-02-01T00:00:00", "2028-02-29T00:00:00+00:00"),
    ("59 23 31 12 *", None, "2026-12-31T23:59:00", "2027-12-31T23:59:00+00:00"),
    # time zones without DST changes in the window
    ("0 9 * * *", NY, "2026-06-01T09:00:00", "2026-06-02T09:00:00-04:00"),
    ("0 9 * * *", NY, "2026-01-15T08:00:00", "2026-01-15T09:00:00-05:00"),
    ("0 9 * * *", "Asia/Kolkata", "2026-06-01T08:59:59", "2026-06-01T09:00:00+05:30"),
    # DST: spring forward, the skipped 02:30 runs once, at 03:00
    ("30 2 * * *", NY, "2026-03-07T03:00:00", "2026-03-08T03:00:00-04:00"),
    ("30 2 * * *", NY, "2026-03-08T03:00:00", "2026-03-09T02:30:00-04:00"),
    ("30 2 * * *", BERLIN, "2026-03-28T03:00:00", "2026-03-29T03:00:00+02:00"),
    ("30 2 * * *", BERLIN, "2026-03-29T03:00:00", "2026-03-30T02:30:00+02:00"),
    # DST: fall back, the repeated 01:30 (NY) / 02:30 (Berlin) runs once, the first time
    ("30 1 * * *", NY, "2026-10-31T02:00:00", "2026-11-01T01:30:00-04:00"),
    ("30 2 * * *", BERLIN, "2026-10-24T03:00:00", "2026-10-25T02:30:00+02:00"),
    # hourly jobs follow real time across DST
    ("0 * * * *", NY, "2026-03-08T01:30:00", "2026-03-08T03:00:00-04:00"),
    ("30 * * * *", BERLIN, "2026-10-25T02:00:00", "2026-10-25T02:30:00+02:00"),
]


@pytest.mark.parametrize(("expression", "zone", "now", "expected"), NEXT_CASES)
def test_next_fire_time(expression: str, zone: str | None, now: str, expected: str) -> None:
    clock = FakeClock(at(now, zone or "UTC"))
    schedule = schedules.parse(expression, zone)

    fire = schedule.next_after(clock.now())

    assert local(fire, zone or "UTC") == expected
    assert fire > clock.now()


@pytest.mark.parametrize(
    ("zone", "first_day", "local_time"),
    [
        (NY, "2026-03-07T12:00:00", "02:30"),  # spring forward 2026-03-08
        (NY, "2026-10-31T12:00:00", "01:30"),  # fall back 2026-11-01
        (BERLIN, "2026-03-28T12:00:00", "02:30"),  # spring forward 2026-03-29
        (BERLIN, "2026-10-24T12:00:00", "02:30"),  # fall back 2026-10-25
    ],
)
def test_a_daily_job_runs_once_per_day_across_a_dst_change(
    zone: str, first_day: str, local_time: str
) -> None:
    hour, minute = local_time.split(":")
    schedule = schedules.parse(f"{int(minute)} {int(hour)} * * *", zone)
    start = at(first_day, zone)

    fires = schedule.slots(start, start + 3 * 86400)

    days = [local(ts, zone)[:10] for ts in fires]
    assert len(fires) == 3
    assert len(set(days)) == 3, days


def test_the_repeated_hour_of_a_fall_back_day_does_not_fire_the_daily_job_again() -> None:
    schedule = schedules.parse("30 1 * * *", NY)
    second_130 = (
        dt.datetime(2026, 11, 1, 1, 40, tzinfo=zoneinfo.ZoneInfo(NY)).replace(fold=1).timestamp()
    )

    assert local(schedule.next_after(second_130), NY) == "2026-11-02T01:30:00-05:00"


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        ("@every 2s", 1_700_000_001.0, 1_700_000_002.0),
        ("@every 2s", 1_700_000_002.0, 1_700_000_004.0),
        ("@every 1h30m", 5400.0 * 3 + 1, 5400.0 * 4),
        ("@every 90m", 0.0, 5400.0),
        ("@every 1m", 59.999, 60.0),
        ("@every  30s", 1_700_000_015.5, 1_700_000_040.0),
    ],
)
def test_every_slots_are_multiples_of_the_interval(
    expression: str, now: float, expected: float
) -> None:
    assert schedules.parse(expression, BERLIN).next_after(now) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2s", 2),
        ("1h30m", 5400),
        ("90m", 5400),
        ("1h1s", 3601),
        ("2m30s", 150),
        ("8784h", 31622400),
    ],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert schedules.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("expression", "zone", "reason", "words"),
    [
        ("61 * * * *", None, "InvalidSchedule", "minute"),
        ("* 24 * * *", None, "InvalidSchedule", "hour"),
        ("0 0 30 2 *", None, "InvalidSchedule", "no date"),
        ("0 0 31 4,6,9,11 *", None, "InvalidSchedule", "no date"),
        ("0 0 * FOO *", None, "InvalidSchedule", "month"),
        ("60 * * * *", None, "InvalidSchedule", "minute"),
        ("* * 32 * *", None, "InvalidSchedule", "day-of-month"),
        ("*/0 * * * *", None, "InvalidSchedule", "minute"),
        ("* * * 13 *", None, "InvalidSchedule", "month"),
        ("* * * * 8", None, "InvalidSchedule", "day-of-week"),
        ("30-10 * * * *", None, "InvalidSchedule", "ends before it starts"),
        ("* * * * FRI-MON", None, "InvalidSchedule", "ends before it starts"),
        ("* * * *", None, "InvalidSchedule", "5"),
        ("* * * * * *", None, "InvalidSchedule", "5"),
        ("@fortnightly", None, "InvalidSchedule", "macro"),
        ("@every 500ms", None, "InvalidSchedule", "duration"),
        ("@every 0.5s", None, "InvalidSchedule", "whole"),
        ("@every 0s", None, "InvalidSchedule", "duration"),
        ("@every 2x", None, "InvalidSchedule", "duration"),
        ("@every 400d", None, "InvalidSchedule", "duration"),
        ("@every 8785h", None, "InvalidSchedule", "366 days"),
        ("@daily", "Mars/Olympus_Mons", "InvalidTimeZone", "Mars/Olympus_Mons"),
        ("@daily", "Europe/../etc", "InvalidTimeZone", "time zone"),
    ],
)
def test_invalid_schedules_say_why(
    expression: str, zone: str | None, reason: str, words: str
) -> None:
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.parse(expression, zone)

    assert caught.value.reason == reason
    assert words.lower() in caught.value.message.lower()


def test_a_due_slot_is_the_latest_one_and_older_missed_slots_run_once() -> None:
    schedule = schedules.parse("@every 10s")
    clock = FakeClock(1_000_000_055.0)

    due = schedules.due_slot(
        schedule, last_slot=1_000_000_000.0, now=clock.now(), starting_deadline_seconds=None
    )

    assert due == schedules.Due(slot=1_000_000_050.0, skipped=4, too_late=False)


def test_a_slot_missed_by_more_than_the_deadline_is_too_late() -> None:
    schedule = schedules.parse("0 * * * *")
    now = at("2026-05-04T10:05:00")

    late = schedules.due_slot(
        schedule, last_slot=at("2026-05-04T09:00:00"), now=now, starting_deadline_seconds=60
    )
    in_time = schedules.due_slot(
        schedule, last_slot=at("2026-05-04T09:00:00"), now=now, starting_deadline_seconds=600
    )

    assert late is not None
    assert late.too_late
    assert late.slot == at("2026-05-04T10:00:00")
    assert in_time == schedules.Due(at("2026-05-04T10:00:00"), skipped=0, too_late=False)


def test_nothing_is_due_before_the_next_slot() -> None:
    schedule = schedules.parse("@hourly")
    last = at("2026-05-04T10:00:00")

    assert (
        schedules.due_slot(
            schedule, last_slot=last, now=last + 3599, starting_deadline_seconds=None
        )
        is None
    )
    assert schedules.due_slot(
        schedule, last_slot=last, now=last + 3600, starting_deadline_seconds=None
    ) == schedules.Due(last + 3600, skipped=0, too_late=False)


def test_the_latest_slot_at_or_before_now_counts_now_itself() -> None:
    schedule = schedules.parse("*/5 * * * *")

    assert schedule.latest_at_or_before(at("2026-05-04T10:05:00")) == at("2026-05-04T10:05:00")
    assert schedule.latest_at_or_before(at("2026-05-04T10:09:59")) == at("2026-05-04T10:05:00")


# -- properties --------------------------------------------------------------

FIELDS = st.tuples(
    st.sampled_from(["*", "0", "*/7", "5-20", "1,31,59", "0-59/15"]),
    st.sampled_from(["*", "0", "2", "*/6", "1-3", "2,14"]),
    st.sampled_from(["*", "1", "15", "28", "29", "31", "1-7"]),
    st.sampled_from(["*", "1", "2", "FEB", "*/3", "JAN,JUL"]),
    st.sampled_from(["*", "0", "MON", "1-5", "SAT,SUN"]),
)
ZONES = st.sampled_from([None, NY, BERLIN, "Australia/Lord_Howe", "Asia/Kolkata"])
NOWS = st.floats(min_value=946_684_800, max_value=4_102_444_800, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(fields=FIELDS, zone=ZONES, now=NOWS)
def test_the_next_fire_time_is_after_now_and_matches_the_expression(
    fields: tuple[str, ...], zone: str | None, now: float
) -> None:
    expression = " ".join(fields)
    try:
        schedule = schedules.parse(expression, zone)
    except schedules.ScheduleError:
        return  # e.g. "0 0 31 FEB *"
    with time_limit(2):
        fire = schedule.next_after(now)
        latest = schedule.latest_at_or_before(fire - 1)

    assert fire > now
    assert schedule.is_slot(fire)
    # And there is no slot between now and it.
    assert latest is None or latest <= now


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.integers(min_value=1, max_value=100_000),
    now=NOWS,
)
def test_every_fires_after_now_on_a_multiple_of_the_interval(seconds: int, now: float) -> None:
    schedule = schedules.parse(f"@every {seconds}s")

    fire = schedule.next_after(now)

    assert now < fire <= now + seconds
    assert fire % seconds == 0


# -- regressions: each of these once hung, missed a slot or read a field wrong --

CHATHAM = "Pacific/Chatham"  # 2026-04-05 03:45 +13:45 -> 02:45 +12:45
LORD_HOWE = "Australia/Lord_Howe"  # 2026-10-04 02:00 +10:30 -> 02:30 +11:00


def chatham_second(wall: str) -> float:
    """A wall time of the repeated hour on 2026-04-05 in Chatham, second pass."""
    naive = dt.datetime.fromisoformat(f"2026-04-05T{wall}")
    return naive.replace(tzinfo=zoneinfo.ZoneInfo(CHATHAM), fold=1).timestamp()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Wildcard lines follow real time: the next 03:xx is the second pass.
        ("*/15 3 * * *", "2026-04-05T03:00:00+12:45"),
        ("* 3 * * *", "2026-04-05T03:31:00+13:45"),
        ("* */3 * * *", "2026-04-05T03:31:00+13:45"),
        ("*/5 3-4 * * *", "2026-04-05T03:35:00+13:45"),
    ],
)
def test_next_after_returns_across_a_45_minute_fall_back(expression: str, expected: str) -> None:
    schedule = schedules.parse(expression, CHATHAM)
    now = at("2026-04-05T03:30:00", CHATHAM)

    with time_limit(2):
        fire = schedule.next_after(now)

    assert local(fire, CHATHAM) == expected


def test_the_second_pass_of_a_45_minute_repeat_runs_wildcard_lines_again() -> None:
    schedule = schedules.parse("*/15 3 * * *", CHATHAM)
    start = at("2026-04-05T02:50:00", CHATHAM)

    with time_limit(2):
        fires = schedule.slots(start, start + 3 * 3600)

    assert [local(f, CHATHAM) for f in fires] == [
        "2026-04-05T03:00:00+13:45",
        "2026-04-05T03:15:00+13:45",
        "2026-04-05T03:30:00+13:45",
        "2026-04-05T03:00:00+12:45",
        "2026-04-05T03:15:00+12:45",
        "2026-04-05T03:30:00+12:45",
        "2026-04-05T03:45:00+12:45",
    ]


@pytest.mark.parametrize("minute", ["30", "35", "44"])
def test_latest_at_or_before_returns_in_the_first_pass_of_a_45_minute_repeat(
    minute: str,
) -> None:
    schedule = schedules.parse("* 2 * * *", CHATHAM)

    with time_limit(2):
        latest = schedule.latest_at_or_before(at(f"2026-04-05T03:{minute}:00", CHATHAM))

    # The second pass's 02:45-02:59 comes later in real time: not yet.
    assert latest is not None
    assert local(latest, CHATHAM) == "2026-04-05T02:59:00+13:45"


def test_latest_at_or_before_in_the_second_pass_sees_it() -> None:
    schedule = schedules.parse("* 2 * * *", CHATHAM)

    with time_limit(2):
        latest = schedule.latest_at_or_before(chatham_second("02:50:30"))

    assert latest == chatham_second("02:50:00")


def test_a_fixed_time_in_a_45_minute_repeat_runs_once_the_first_time() -> None:
    schedule = schedules.parse("0 3 * * *", CHATHAM)

    with time_limit(2):
        fires = schedule.slots(
            at("2026-04-04T12:00:00", CHATHAM), at("2026-04-06T12:00:00", CHATHAM)
        )

    assert [local(f, CHATHAM) for f in fires] == [
        "2026-04-05T03:00:00+13:45",
        "2026-04-06T03:00:00+12:45",
    ]


def test_a_30_minute_spring_forward_keeps_the_real_half_hour() -> None:
    schedule = schedules.parse("30 * * * *", LORD_HOWE)
    start, end = at("2026-10-04T00:00:00", LORD_HOWE), at("2026-10-04T04:00:00", LORD_HOWE)

    with time_limit(2):
        fires = schedule.slots(start, end)

    assert [local(f, LORD_HOWE) for f in fires] == [
        "2026-10-04T00:30:00+10:30",
        "2026-10-04T01:30:00+10:30",
        "2026-10-04T02:30:00+11:00",  # 02:00-02:29 are skipped, 02:30 is real
        "2026-10-04T03:30:00+11:00",
    ]


def test_a_fixed_time_in_a_30_minute_gap_runs_at_the_end_of_the_gap() -> None:
    schedule = schedules.parse("15 2 * * *", LORD_HOWE)

    with time_limit(2):
        fire = schedule.next_after(at("2026-10-03T12:00:00", LORD_HOWE))

    assert local(fire, LORD_HOWE) == "2026-10-04T02:30:00+11:00"


@pytest.mark.parametrize(
    ("expression", "weekdays"),
    [
        ("0 0 * * 2-2/2", {2}),  # a step on a one-value range is that value
        ("0 0 * * mon/2", {1, 3, 5}),  # Mon, Wed, Fri: an open step ends at Saturday
        ("0 0 * * 1/3", {1, 4}),
        ("0 0 * * */2", {0, 2, 4, 6}),
        ("0 0 * * 5-7", {5, 6, 0}),  # 7 is Sunday, when named explicitly
        ("0 0 * * 1-7/2", {1, 3, 5, 0}),
        ("0 0 * * 7", {0}),
        ("0 0 * * SUN,sat", {0, 6}),
    ],
)
def test_day_of_week_steps_and_ranges(expression: str, weekdays: set[int]) -> None:
    schedule = schedules.parse(expression)

    assert schedule.fields is not None
    assert schedule.fields.weekdays == weekdays
    fires = schedule.slots(at("2026-05-03T00:00:00"), at("2026-05-17T00:00:00"))  # two weeks
    assert {dt.datetime.fromtimestamp(f, dt.UTC).isoweekday() % 7 for f in fires} == weekdays


@pytest.mark.parametrize(
    ("expression", "minutes"),
    [
        ("5/20 * * * *", [5, 25, 45]),
        ("10-10/5 * * * *", [10]),
        ("50-59/4 * * * *", [50, 54, 58]),
        ("*/25 * * * *", [0, 25, 50]),
        ("1,2-4,*/30 * * * *", [0, 1, 2, 3, 4, 30]),
    ],
)
def test_minute_steps_and_lists(expression: str, minutes: list[int]) -> None:
    schedule = schedules.parse(expression)

    assert schedule.fields is not None
    assert list(schedule.fields.minutes_of_day)[: len(minutes) + 1] == [*minutes, 60 + minutes[0]]


@pytest.mark.parametrize("macro", ["@DAILY", "@Daily", "@daily", " @daily\t"])
def test_macros_are_read_in_any_case(macro: str) -> None:
    assert schedules.parse(macro).cron == "0 0 * * *"


def test_a_search_past_year_9999_is_refused_not_raised_raw() -> None:
    schedule = schedules.parse("0 0 1 1 *")

    with pytest.raises(schedules.ScheduleError) as caught:
        schedule.next_after(dt.datetime(9999, 6, 1, tzinfo=dt.UTC).timestamp())

    assert caught.value.reason == schedules.Problem.NOT_COMPUTABLE


def test_a_leap_day_eight_years_away_is_found() -> None:
    schedule = schedules.parse("0 0 29 2 *")

    with time_limit(2):
        fire = schedule.next_after(at("2096-03-01T00:00:00"))
        back = schedule.latest_at_or_before(at("2104-02-28T00:00:00"))

    assert local(fire) == "2104-02-29T00:00:00+00:00"
    assert back is not None
    assert local(back) == "2096-02-29T00:00:00+00:00"


def test_an_answer_that_fails_its_check_is_replaced_by_the_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schedule = schedules.parse("*/10 * * * *", BERLIN)
    now = at("2026-05-04T10:03:00", BERLIN)
    # A search that answers the wrong thing (before now, then not a slot).
    monkeypatch.setattr(schedules.Schedule, "_search_forward", lambda self, now: now - 60)
    monkeypatch.setattr(schedules.Schedule, "_search_backward", lambda self, now: now - 7)

    assert local(schedule.next_after(now), BERLIN) == "2026-05-04T10:10:00+02:00"
    assert local(schedule.latest_at_or_before(now), BERLIN) == "2026-05-04T10:00:00+02:00"  # type: ignore[arg-type]


def test_a_wrong_answer_the_walk_cannot_replace_is_not_computable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schedule = schedules.parse("0 0 1 1 *")  # next slot further than the walk looks
    monkeypatch.setattr(schedules.Schedule, "_search_forward", lambda self, now: now + 1)

    with pytest.raises(schedules.ScheduleError) as caught:
        schedule.next_after(at("2026-05-04T10:03:00"))

    assert caught.value.reason == schedules.Problem.NOT_COMPUTABLE


# -- the parser and the CRD agree ------------------------------------------------

TOKENS = st.sampled_from(
    ["*", "/", "-", ",", "0", "1", "2", "5", "7", "9", "12", "13", "23", "24", "31", "32",
     "59", "60", "00", "L", "mon", "FRI", "Jan", "dec", "?", "#", "h", "m", "s", ".5", " ", "\t"]
)  # fmt: skip
TEXTS = st.one_of(
    st.lists(TOKENS, min_size=1, max_size=20).map("".join),
    st.lists(st.lists(TOKENS, min_size=1, max_size=4).map("".join), min_size=5, max_size=5).map(
        " ".join
    ),
    st.builds(lambda d: f"@every {d}", st.lists(TOKENS, min_size=1, max_size=5).map("".join)),
    st.sampled_from([*schedules.MACROS, "@DAILY", "@Weekly", "@reboot", "@every", "@"]),
)
#: What the grammar (and so the CRD) cannot tell: the parser refuses it later.
LATE_REFUSALS = ("ends before it starts", "no date", "366 days")


@settings(max_examples=500, deadline=None)
@given(text=TEXTS)
def test_the_parser_accepts_exactly_what_the_crd_rule_accepts(text: str) -> None:
    crd_accepts = syntax.SCHEDULE_RE.fullmatch(text) is not None
    refusal: str | None = None
    try:
        schedules.parse(text)
    except schedules.ScheduleError as exc:
        refusal = exc.message
    if refusal is None:
        assert crd_accepts, text
    else:
        assert not crd_accepts or any(words in refusal for words in LATE_REFUSALS), (text, refusal)
    model_accepts = True
    try:
        CronTaskSpec.model_validate({"schedule": text, "taskTemplate": {"spec": {"type": "a"}}})
    except ValidationError:
        model_accepts = False
    assert model_accepts == crd_accepts, text
