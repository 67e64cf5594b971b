"""CronTask schedule math: when is the next slot, which slot is due now.

Pure: no I/O, no clock of its own. Every function takes the time it reasons
about as seconds since the epoch (a ``Clock.now()`` value), so tests move time
by hand. The controller (:mod:`taskmill.controller.cron`) arms one timer per
CronTask at :meth:`Schedule.next_after` and, when it rings (or after a
restart), asks :func:`due_slot` which slot to fire.

What a slot is (docs/crontask.md says the same for users). A cron line names
local wall-clock minutes: those whose minute, hour, month and day match
(crontab(5): when both day-of-month and day-of-week are restricted, that is
neither starts with ``*``, either may match; otherwise both must). A slot
is a real instant:

- for a **wildcard** line (its minute or hour field starts with ``*``):
  every instant whose local time matches. Both copies of a repeated hour
  run; times in a skipped hour do not exist and do not run;
- for a **fixed-time** line (neither field starts with ``*``): each matching
  local time runs once: at its instant, the first one if the time is repeated;
  if it was skipped, at the first instant after the gap (all skipped
  matches of one gap are that one slot).

This is the rule of Debian cron as the ``cronsim`` library documents it;
its earlier use here showed three faults that cannot be worked around
from outside: answers that go backwards across a 45-minute change (a
"step until after now" loop then never ends), a real slot missed on a
30-minute change, and a step on a single value read as an open range
(``2-2/2`` as Tue/Thu/Sat). Checking an answer for a missed slot needs an
evaluator of its own anyway, so this module evaluates the five fields
itself and checks each answer:

- the search walks local dates (at most :data:`HORIZON_DAYS`), and on each
  matching date maps wall times to instants: by arithmetic on a day whose
  UTC offset does not change, one wall time at a time on a day around a
  change. Every loop is bounded;
- every answer is checked to be after (or at or before) the instant asked
  and to be a slot by the definition above (:meth:`Schedule.is_slot`). An
  answer that fails is replaced by a plain walk over real minutes
  (:data:`WALK_MINUTES`); if that finds nothing either, the schedule is
  refused with :attr:`Problem.NOT_COMPUTABLE` rather than answered wrong.

``@every`` slots are whole multiples of the interval since the Unix epoch
(UTC), independent of the time zone: a slot is a pure function of the
schedule, so every replica and every restart agrees on it (the child Task's
name is derived from the slot). Intervals are whole seconds, at least 1 s.

The grammar (what the CRD also checks) is in
:mod:`taskmill.models.schedule_syntax`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import math
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from taskmill.models import schedule_syntax as syntax

MACROS = syntax.MACROS
MAX_EVERY_SECONDS = syntax.MAX_EVERY_SECONDS

#: How far a search looks, in local dates. The longest wait between two
#: matching dates is for 29 February: 8 years across 2100 (not a leap year).
HORIZON_DAYS = 8 * 366 + 62
#: How far the fallback walk over real minutes looks.
WALK_MINUTES = 3 * 24 * 60
#: Offset probes cover a day's wall times mapped with any UTC offset (±16 h);
#: offset changes are assumed to be at least this far apart (true of every
#: zone in the tz database since 1970).
_PROBE_SECONDS = 3 * 3600
_DAY = 86400
_EPOCH = dt.date(1970, 1, 1)
_STEP_RE = re.compile(r"^(.*?)(?:/([0-9]+))?$")


class Problem(enum.StrEnum):
    """Why a schedule was refused: the condition reason the controller reports."""

    INVALID_SCHEDULE = "InvalidSchedule"
    INVALID_TIME_ZONE = "InvalidTimeZone"
    #: Valid, but its slots could not be computed (at this time, in this zone).
    NOT_COMPUTABLE = "ScheduleNotComputable"


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; ``reason`` says which."""

    def __init__(self, reason: Problem, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_duration(text: str) -> int:
    """``1h30m`` → 5400 seconds: whole ``h``, ``m``, ``s`` parts, largest first."""
    if not re.fullmatch(syntax.EVERY_DURATION, text):
        raise ScheduleError(
            Problem.INVALID_SCHEDULE,
            f"bad duration {text!r}: expected whole hours, minutes and seconds, "
            "largest first, e.g. 30s, 5m, 1h30m",
        )
    return sum(
        int(number) * syntax.EVERY_UNITS[unit]
        for number, unit in re.findall(r"([0-9]+)([hms])", text)
    )


def parse_zone(name: str | None) -> dt.tzinfo:
    """An IANA time zone (``None`` or empty means UTC)."""
    if not name or name == "UTC":
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            Problem.INVALID_TIME_ZONE, f"unknown time zone {name!r}: expected an IANA name"
        ) from exc


@dataclass(frozen=True)
class CronFields:
    """A cron line's five fields, expanded to the values they match."""

    #: Matching times of day as ``hour * 60 + minute``, ascending.
    minutes_of_day: tuple[int, ...]
    days: frozenset[int]
    #: ``L`` in day-of-month: the month's last day matches too.
    last_day: bool
    months: frozenset[int]
    #: 0 is Sunday (``7`` is read as 0).
    weekdays: frozenset[int]
    #: Both day fields restricted (neither starts with ``*``): either may match.
    days_either: bool
    #: Neither minute nor hour starts with ``*``: a fixed-time line.
    fixed: bool

    def date_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days or (self.last_day and (day + dt.timedelta(1)).day == 1)
        dow = day.isoweekday() % 7 in self.weekdays
        return (dom or dow) if self.days_either else (dom and dow)

    def wall_matches(self, wall: dt.datetime) -> bool:
        minute = wall.hour * 60 + wall.minute
        index = bisect.bisect_left(self.minutes_of_day, minute)
        return (
            wall.second == 0
            and index < len(self.minutes_of_day)
            and self.minutes_of_day[index] == minute
            and self.date_matches(wall.date())
        )


def _field_values(text: str, spec: syntax.FieldSyntax) -> tuple[set[int], bool]:
    """The values one field matches, and whether it holds ``L``."""
    values: set[int] = set()
    last_day = False
    # ``*`` and an open ``a/step`` end at 6 for day-of-week: 7 is Sunday again.
    top = 6 if spec.name == "day-of-week" else spec.high
    for item in text.split(","):
        if item in ("L", "l"):
            last_day = True
            continue
        match = _STEP_RE.match(item)
        assert match is not None  # the grammar matched already
        body, step_text = match.group(1), match.group(2)
        step = int(step_text) if step_text else 1
        if body == "*":
            low, high = spec.low, top
        elif "-" in body:
            first, second = body.split("-")
            low, high = _value(first, spec), _value(second, spec)
            if high < low:
                raise ScheduleError(
                    Problem.INVALID_SCHEDULE,
                    f"{spec.name} range {body!r} ends before it starts",
                )
        else:
            low = _value(body, spec)
            # ``5/15`` is 5 to the top, every 15th; ``5`` alone is just 5.
            high = max(top, low) if step_text else low
        values.update(range(low, high + 1, step))
    if spec.name == "day-of-week" and 7 in values:
        values = (values - {7}) | {0}
    return values, last_day


def _value(text: str, spec: syntax.FieldSyntax) -> int:
    if text.isdigit():
        return int(text)
    return spec.names.index(text.lower()) + spec.first_name_value


def parse_cron_line(line: str) -> CronFields:
    """Five fields (as :data:`syntax.CRON_LINE_RE` reads them) → :class:`CronFields`."""
    match = syntax.CRON_LINE_RE.fullmatch(line)
    if match is None:
        raise ScheduleError(
            Problem.INVALID_SCHEDULE,
            f"bad schedule {line!r}: expected 5 fields (minute 0-59, hour 0-23, "
            "day-of-month 1-31 or L, month 1-12 or JAN-DEC, day-of-week 0-7 or SUN-SAT; "
            "lists, ranges, */steps of 1-99), a macro, or @every <duration>",
        )
    texts = match.groups()
    parsed = [_field_values(text, spec) for text, spec in zip(texts, syntax.FIELDS, strict=True)]
    (minutes, _), (hours, _), (days, last_day), (months, _), (weekdays, _) = parsed
    return CronFields(
        minutes_of_day=tuple(sorted(h * 60 + m for h in hours for m in minutes)),
        days=frozenset(days),
        last_day=last_day,
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        days_either=not texts[2].startswith("*") and not texts[4].startswith("*"),
        fixed=not texts[0].startswith("*") and not texts[1].startswith("*"),
    )


@dataclass(frozen=True)
class Schedule:
    """A validated schedule: a cron line in a zone, or a fixed interval."""

    expression: str
    zone: dt.tzinfo = dt.UTC
    #: The 5-field line (macros expanded); ``None`` for ``@every``.
    cron: str | None = None
    #: The interval of ``@every``, whole seconds; ``None`` for cron lines.
    every_seconds: int | None = None
    fields: CronFields | None = field(default=None, compare=False, repr=False)

    def next_after(self, now: float) -> float:
        """The first slot strictly after ``now`` (epoch seconds)."""
        if self.every_seconds is not None:
            return float((math.floor(now / self.every_seconds) + 1) * self.every_seconds)
        answer = self._guarded(self._search_forward, now)
        if answer is not None and answer > now and self.is_slot(answer):
            return answer
        walked = self._walk(now, forward=True)
        if walked is not None:
            return walked
        if answer is None:
            raise ScheduleError(
                Problem.INVALID_SCHEDULE,
                f"schedule {self.expression!r} matches no date in {HORIZON_DAYS // 365} years",
            )
        raise self._not_computable(now)

    def latest_at_or_before(self, now: float) -> float | None:
        """The last slot at or before ``now``; ``None`` if none within the horizon."""
        if self.every_seconds is not None:
            return float(math.floor(now / self.every_seconds) * self.every_seconds)
        answer = self._guarded(self._search_backward, now)
        if answer is None or (answer <= now and self.is_slot(answer)):
            return answer
        walked = self._walk(now, forward=False)
        if walked is not None:
            return walked
        raise self._not_computable(now)

    def slots(self, after: float, until: float, limit: int = 1000) -> list[float]:
        """Slots in ``(after, until]``, oldest first, at most ``limit``."""
        found: list[float] = []
        current = after
        while len(found) < limit:
            current = self.next_after(current)  # strictly increasing: checked
            if current > until:
                break
            found.append(current)
        return found

    def is_slot(self, instant: float) -> bool:
        """Whether ``instant`` is a slot, straight from the definition (module docs)."""
        if self.every_seconds is not None:
            return instant % self.every_seconds == 0
        fields = self._fields
        try:
            local = dt.datetime.fromtimestamp(instant, self.zone)
        except (OverflowError, OSError, ValueError):
            return False
        wall = local.replace(tzinfo=None)
        if fields.wall_matches(wall) and (not fields.fixed or local.fold == 0):
            return True
        if not fields.fixed:
            return False
        # A fixed-time line also runs at the end of a gap holding one of its times.
        before = dt.datetime.fromtimestamp(instant - 1, self.zone).replace(tzinfo=None)
        skipped = before + dt.timedelta(seconds=1)
        if wall - skipped <= dt.timedelta(0) or wall.second:
            return False
        minute = skipped.replace(second=0, microsecond=0)
        if minute < skipped:
            minute += dt.timedelta(minutes=1)
        while minute < wall:  # a gap is hours long at most: bounded
            if fields.wall_matches(minute):
                return True
            minute += dt.timedelta(minutes=1)
        return False

    # -- the search ----------------------------------------------------------

    @property
    def _fields(self) -> CronFields:
        assert self.fields is not None, "a cron schedule comes from parse()"
        return self.fields

    def _guarded(self, search: Callable[[float], float | None], now: float) -> float | None:
        try:
            return search(now)
        except (OverflowError, OSError, ValueError) as exc:  # dates past 9999, and such
            raise ScheduleError(
                Problem.NOT_COMPUTABLE,
                f"schedule {self.expression!r}: no slot can be computed near {now:.0f}: {exc}",
            ) from exc

    def _not_computable(self, now: float) -> ScheduleError:
        return ScheduleError(
            Problem.NOT_COMPUTABLE,
            f"schedule {self.expression!r}: the slot next to {now:.0f} "
            f"in {self.zone} could not be computed",
        )

    def _search_forward(self, now: float) -> float | None:
        return self._search(now, forward=True)

    def _search_backward(self, now: float) -> float | None:
        return self._search(now, forward=False)

    def _search(self, now: float, *, forward: bool) -> float | None:
        """Walk local dates from ``now``'s, at most :data:`HORIZON_DAYS`."""
        one = dt.timedelta(days=1 if forward else -1)
        day = self._local_date(now) - one
        best: float | None = None
        hit: dt.date | None = None
        for _ in range(HORIZON_DAYS):
            # Around an offset change a later date's slot may come first (a
            # repeated hour across midnight): look two dates past the first hit.
            if hit is not None and abs((day - hit).days) > 2:
                break
            if self._fields.date_matches(day):
                found = self._slots_on(day, now, forward=forward)
                if found:
                    pick = min(found) if forward else max(found)
                    if best is None or (pick < best if forward else pick > best):
                        best = pick
                    hit = hit or day
            day += one
        return best

    def _walk(self, now: float, *, forward: bool) -> float | None:
        """The plain search: real minutes one by one, at most :data:`WALK_MINUTES`."""
        minute = (math.floor(now / 60) + 1) * 60 if forward else math.floor(now / 60) * 60
        step = 60 if forward else -60
        for _ in range(WALK_MINUTES):
            if self.is_slot(minute):
                return float(minute)
            minute += step
        return None

    def _local_date(self, now: float) -> dt.date:
        return dt.datetime.fromtimestamp(now, self.zone).date()

    def _slots_on(self, day: dt.date, now: float, *, forward: bool) -> list[float]:
        """Slots of ``day``'s wall times after ``now`` (forward) or at or before it:
        the nearest by arithmetic on a day whose UTC offset does not change,
        one wall time at a time on a day around a change."""
        minutes = self._fields.minutes_of_day
        day_start = (day - _EPOCH).days * _DAY
        offsets = self._offsets_around(day_start)
        if len(offsets) == 1:
            (offset,) = offsets
            # instant = day_start + minute * 60 - offset, increasing with minute.
            index = bisect.bisect_right(minutes, math.floor((now + offset - day_start) / 60))
            if not forward:
                index -= 1
            if 0 <= index < len(minutes):
                return [day_start + minutes[index] * 60 - offset]
            return []
        # A wall time's slots (its instants, or the end of its gap) lie between
        # it taken with the largest offset and with the smallest.
        low, high = min(offsets), max(offsets)
        found: list[float] = []
        for minute in minutes if forward else reversed(minutes):
            earliest, latest = day_start + minute * 60 - high, day_start + minute * 60 - low
            if forward and (latest <= now):
                continue
            if not forward and earliest > now:
                continue
            if found and (earliest > min(found) if forward else latest < max(found)):
                break
            wall = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60)
            found += [u for u in self._instants(wall) if (u > now if forward else u <= now)]
        return found

    def _offsets_around(self, day_start: int) -> set[float]:
        """The UTC offsets (seconds) in force while a day's wall times pass."""
        if isinstance(self.zone, dt.timezone):
            offset = self.zone.utcoffset(None)
            return {offset.total_seconds()}
        return {
            self._offset(probe)
            for probe in range(day_start - 16 * 3600, day_start + 41 * 3600, _PROBE_SECONDS)
        }

    def _offset(self, instant: float) -> float:
        offset = dt.datetime.fromtimestamp(instant, self.zone).utcoffset()
        assert offset is not None
        return offset.total_seconds()

    def _instants(self, wall: dt.datetime) -> list[float]:
        """The slots one matching wall time makes (module docs: zero, one or two)."""
        first = wall.replace(tzinfo=self.zone).timestamp()
        second = wall.replace(tzinfo=self.zone, fold=1).timestamp()
        if self._wall_of(first) == wall:
            if second != first and self._wall_of(second) == wall and not self._fields.fixed:
                return [first, second]
            return [first]
        if not self._fields.fixed:
            return []
        # Skipped: run at the end of the gap, the first instant with the new
        # offset. ``second`` (the new offset) maps before it, ``first`` after.
        low, high = math.floor(min(first, second)), math.ceil(max(first, second))
        old = self._offset(low)
        while high - low > 1:  # bisection over at most a day of seconds
            middle = (low + high) // 2
            if self._offset(middle) == old:
                low = middle
            else:
                high = middle
        return [float(high)]

    def _wall_of(self, instant: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(instant, self.zone).replace(tzinfo=None)


def parse(expression: str, time_zone: str | None = None) -> Schedule:
    """Validate ``expression`` in ``time_zone``; raises :class:`ScheduleError`."""
    zone = parse_zone(time_zone)
    if not syntax.SCHEDULE_RE.fullmatch(expression):
        _explain_refusal(expression)
    text = " ".join(expression.strip(" \t").split())
    every = syntax.EVERY_RE.fullmatch(expression)
    if every:
        seconds = parse_duration(every.group(1))
        if seconds > MAX_EVERY_SECONDS:
            raise ScheduleError(
                Problem.INVALID_SCHEDULE, "@every is at most 366 days (8784h); use a cron line"
            )
        return Schedule(text, zone, every_seconds=seconds)
    macro = syntax.MACRO_RE.fullmatch(expression)
    line = MACROS[macro.group(1).lower()] if macro else text
    schedule = Schedule(text, zone, cron=line, fields=parse_cron_line(line))
    schedule.next_after(0)  # raises if it never matches, e.g. "0 0 30 2 *"
    return schedule


def _explain_refusal(expression: str) -> NoReturn:
    """Raise the most useful :class:`ScheduleError` for text the grammar refuses."""
    text = expression.strip(" \t")
    if text.lower().startswith("@every"):
        parse_duration(text[len("@every") :].strip(" \t"))  # raises, saying why
        raise ScheduleError(Problem.INVALID_SCHEDULE, f"bad schedule {text!r}: @every <duration>")
    if text.startswith("@"):
        raise ScheduleError(
            Problem.INVALID_SCHEDULE,
            f"unknown macro {text!r}: use one of {', '.join(MACROS)} or @every <duration>",
        )
    parts = text.split()
    if len(parts) != 5:
        raise ScheduleError(
            Problem.INVALID_SCHEDULE,
            f"{text!r} has {len(parts)} fields; a cron line has 5: "
            "minute hour day-of-month month day-of-week",
        )
    for part, spec in zip(parts, syntax.FIELDS, strict=True):
        if not re.fullmatch(spec.pattern, part):
            raise ScheduleError(
                Problem.INVALID_SCHEDULE,
                f"bad {spec.name} {part!r} in {text!r}: expected {spec.low}-{spec.high}"
                + (" or a name" if spec.names else "")
                + (" or L" if spec.last_day else "")
                + ", lists, ranges and /steps of 1-99",
            )
    parse_cron_line(text)  # raises with the whole line
    raise ScheduleError(Problem.INVALID_SCHEDULE, f"bad schedule {text!r}")


@dataclass(frozen=True)
class Due:
    """What to do now: fire ``slot``, or record that it was missed."""

    slot: float
    #: Older slots since the last fire that are dropped (run once, not once per slot).
    skipped: int
    #: The slot is older than ``startingDeadlineSeconds``: do not fire it.
    too_late: bool


def due_slot(
    schedule: Schedule,
    *,
    last_slot: float,
    now: float,
    starting_deadline_seconds: int | None,
) -> Due | None:
    """The slot to act on at ``now``, given the last slot handled.

    Only the most recent slot in ``(last_slot, now]`` is ever fired: after
    downtime, missed slots run once, not once per missed slot. If it is older
    than ``starting_deadline_seconds`` it is reported ``too_late`` and not
    fired. ``None`` when no slot has come since ``last_slot``.
    """
    latest = schedule.latest_at_or_before(now)
    if latest is None or latest <= last_slot:
        return None
    if schedule.every_seconds is not None:
        skipped = int((latest - last_slot) // schedule.every_seconds) - 1
    else:
        skipped = len(schedule.slots(last_slot, latest, limit=100)) - 1
    too_late = starting_deadline_seconds is not None and now - latest > starting_deadline_seconds
    return Due(latest, max(0, skipped), too_late)
