"""CronTask schedule math: when is the next slot, which slot is due now.

Pure: no I/O, no clock of its own. Every function takes the time it reasons
about as seconds since the epoch (a ``Clock.now()`` value), so tests move time
by hand. The controller (:mod:`taskmill.controller.cron`) arms one timer per
CronTask at :meth:`Schedule.next_after` and, when it rings (or after a
restart), asks :func:`due_slot` which slot to fire.

Library: cron expressions are evaluated by **cronsim** (the library behind
Healthchecks.io's cron checks), not croniter. cronsim is small, typed,
actively maintained, and documents and tests its daylight-saving behaviour,
which follows Debian cron — the behaviour people expect from a cron line:

- a job at a fixed local time (minute and hour fields not ``*``-based) that
  falls into the hour skipped on a spring-forward day runs once, at the first
  valid time after it (02:30 → 03:00 in Europe/Berlin and America/New_York);
- the same job on a fall-back day runs once, at the first of the two
  ambiguous instants (02:30 CEST in Berlin, 01:30 EDT in New York);
- jobs that run every minute or every hour (``*`` in those fields) simply
  follow real elapsed time across both changes.

croniter, the other candidate, has had an uncertain maintenance future and
its DST handling has been the subject of many reported bugs.

On top of cronsim this module adds what cron lines do not have: the macros
(``@yearly @annually @monthly @weekly @daily @midnight @hourly``, expanded to
their 5-field forms), ``@every <duration>`` (``@every 2s``, ``@every 1h30m``),
and validation with a reason that says whether the schedule or the time zone
is wrong.

``@every`` slots are whole multiples of the interval since the Unix epoch
(UTC), independent of the time zone: a slot is a pure function of the
schedule, so every replica and every restart agrees on it (the child Task's
name is derived from the slot). Intervals are whole seconds, at least 1 s.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import zoneinfo
from dataclasses import dataclass

import cronsim

#: The macros and the cron lines they stand for.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_EVERY = re.compile(r"^@every\s+(\S+)$")
#: Longest ``@every`` interval: beyond a year a cron line says it better.
MAX_EVERY_SECONDS = 366 * 24 * 3600


class Problem(enum.StrEnum):
    """Why a schedule was refused: the condition reason the controller reports."""

    INVALID_SCHEDULE = "InvalidSchedule"
    INVALID_TIME_ZONE = "InvalidTimeZone"


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; ``reason`` says which."""

    def __init__(self, reason: Problem, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_duration(text: str) -> float:
    """``1h30m`` → 5400.0 seconds. Units ``ms``, ``s``, ``m``, ``h``, concatenated."""
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ScheduleError(
            Problem.INVALID_SCHEDULE,
            f"bad duration {text!r}: expected numbers with units ms, s, m or h, e.g. 30s or 1h30m",
        )
    return total


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
class Schedule:
    """A validated schedule: a cron line in a zone, or a fixed interval."""

    expression: str
    zone: dt.tzinfo = dt.UTC
    #: The 5-field line (macros expanded); ``None`` for ``@every``.
    cron: str | None = None
    #: The interval of ``@every``, whole seconds; ``None`` for cron lines.
    every_seconds: int | None = None

    def next_after(self, now: float) -> float:
        """The first slot strictly after ``now`` (epoch seconds)."""
        if self.every_seconds is not None:
            return float((math.floor(now / self.every_seconds) + 1) * self.every_seconds)
        assert self.cron is not None
        start = dt.datetime.fromtimestamp(math.floor(now), self.zone)
        # cronsim drops the DST fold of its start (it iterates naive local
        # time for fixed-time jobs), so in the repeated hour of a fall-back
        # day it may answer a time before ``now``: step on until it does not.
        for candidate in cronsim.CronSim(self.cron, start):
            ts = candidate.timestamp()
            if ts > now:
                return ts
        # cronsim stops after looking 50 years ahead.
        raise ScheduleError(
            Problem.INVALID_SCHEDULE, f"schedule {self.expression!r} never matches any date"
        )

    def latest_at_or_before(self, now: float) -> float | None:
        """The last slot at or before ``now``; ``None`` if none in 50 years."""
        if self.every_seconds is not None:
            return float(math.floor(now / self.every_seconds) * self.every_seconds)
        assert self.cron is not None
        # Reverse iteration starts one second after ``now`` so ``now`` itself counts.
        start = dt.datetime.fromtimestamp(math.floor(now) + 1, self.zone)
        for candidate in cronsim.CronSim(self.cron, start, reverse=True):
            ts = candidate.timestamp()
            if ts <= now:
                return ts
        return None  # cronsim gives up after 50 years

    def slots(self, after: float, until: float, limit: int = 1000) -> list[float]:
        """Slots in ``(after, until]``, oldest first, at most ``limit``."""
        found: list[float] = []
        current = after
        while len(found) < limit:
            current = self.next_after(current)
            if current > until:
                break
            found.append(current)
        return found


def parse(expression: str, time_zone: str | None = None) -> Schedule:
    """Validate ``expression`` in ``time_zone``; raises :class:`ScheduleError`."""
    text = " ".join(expression.split())
    zone = parse_zone(time_zone)
    every = _EVERY.match(text)
    if every:
        seconds = parse_duration(every.group(1))
        if seconds < 1 or seconds != int(seconds):
            raise ScheduleError(
                Problem.INVALID_SCHEDULE,
                f"@every needs a whole number of seconds, at least 1s (got {every.group(1)})",
            )
        if seconds > MAX_EVERY_SECONDS:
            raise ScheduleError(
                Problem.INVALID_SCHEDULE, "@every is at most 366 days; use a cron line"
            )
        return Schedule(text, zone, every_seconds=int(seconds))
    line = MACROS.get(text.lower(), text)
    if line.startswith("@"):
        raise ScheduleError(
            Problem.INVALID_SCHEDULE,
            f"unknown macro {text!r}: use one of {', '.join(MACROS)} or @every <duration>",
        )
    if len(line.split()) != 5:
        raise ScheduleError(
            Problem.INVALID_SCHEDULE,
            f"{text!r} has {len(line.split())} fields; a cron line has 5: "
            "minute hour day-of-month month day-of-week",
        )
    try:
        cronsim.CronSim(line, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except cronsim.CronSimError as exc:
        raise ScheduleError(Problem.INVALID_SCHEDULE, f"bad schedule {text!r}: {exc}") from exc
    schedule = Schedule(text, zone, cron=line)
    schedule.next_after(0)  # raises if it never matches, e.g. "0 0 30 2 *"
    return schedule


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
