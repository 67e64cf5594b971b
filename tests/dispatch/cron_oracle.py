"""A brute-force cron matcher, written from crontab(5), to check the schedule code.

It shares nothing with :mod:`taskmill.dispatch.schedule`: it expands the
fields its own way and walks real time one UTC minute at a time, converting
each minute to the zone and matching field by field. Slow and obviously
right is the point.

crontab(5), and where it leaves a choice, the choice Taskmill documents:

- fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 (or names),
  day of week 0-7 (0 and 7 are Sunday, or names); ``*`` is first-last;
  ``a-b`` inclusive; ``/n`` steps through the range before it. ``a/n``
  (not in crontab(5)) is ``a-last/n``, where last is 6 for day of week:
  7 only names Sunday again, it is not a day after Saturday. ``L`` in day
  of month is the last day of the month.
- days: if both day fields are restricted (neither starts with ``*``), a
  day matches if either does; otherwise both must match.
- DST, wildcard lines (minute or hour starts with ``*``): every real minute
  whose local time matches is a slot, so a repeated hour runs twice and a
  skipped one not at all.
- DST, fixed-time lines: a matching local time runs once, at its first
  real occurrence; a matching local time that is skipped runs at the first
  real minute after the gap, once per gap.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from collections.abc import Iterator
from dataclasses import dataclass

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
#: (first, last, names, value of the first name) per field.
BOUNDS = [(0, 59, [], 0), (0, 23, [], 0), (1, 31, [], 0), (1, 12, MONTHS, 1), (0, 7, DAYS, 0)]


def _number(text: str, names: list[str], first_name: int) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + first_name
    return int(text)


@functools.cache
def expand(field: str, index: int) -> tuple[set[int], bool]:
    """The values of one field, and whether it names ``L``."""
    first, last, names, first_name = BOUNDS[index]
    values: set[int] = set()
    has_last = False
    for item in field.split(","):
        if item.upper() == "L":
            has_last = True
            continue
        range_part, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if range_part == "*":
            low, high = first, last
        elif "-" in range_part:
            a, b = range_part.split("-")
            low, high = _number(a, names, first_name), _number(b, names, first_name)
        elif step_text:
            low = _number(range_part, names, first_name)
            high = max(low, 6 if index == 4 else last)
        else:
            low = high = _number(range_part, names, first_name)
        values.update(range(low, high + 1, step))
    if index == 4:
        values = {0 if v == 7 else v for v in values}
    return values, has_last


@dataclass(frozen=True)
class Oracle:
    line: str

    @property
    def fields(self) -> list[str]:
        return self.line.split()

    @property
    def fixed(self) -> bool:
        minute, hour = self.fields[:2]
        return not minute.startswith("*") and not hour.startswith("*")

    def matches(self, wall: dt.datetime) -> bool:
        minute, hour, dom, month, dow = self.fields
        if wall.second or wall.minute not in expand(minute, 0)[0]:
            return False
        if wall.hour not in expand(hour, 1)[0] or wall.month not in expand(month, 3)[0]:
            return False
        days, has_last = expand(dom, 2)
        last_day = calendar.monthrange(wall.year, wall.month)[1]
        dom_ok = wall.day in days or (has_last and wall.day == last_day)
        # Python: Monday is 0; cron: Sunday is 0.
        dow_ok = (wall.weekday() + 1) % 7 in expand(dow, 4)[0]
        if not dom.startswith("*") and not dow.startswith("*"):
            return dom_ok or dow_ok
        return dom_ok and dow_ok

    def slots(self, zone: dt.tzinfo, start: float, end: float, lead: int = 86400) -> list[float]:
        """Every slot in ``(start, end]``, walking real minutes.

        The walk starts ``lead`` seconds early, so a repeated local time's
        first occurrence has been seen before its second comes.
        """
        return [u for u in self._walk(zone, start - lead, end) if start < u <= end]

    def _walk(self, zone: dt.tzinfo, start: float, end: float) -> Iterator[float]:
        minute = int(start // 60) * 60
        seen: set[dt.datetime] = set()
        previous: dt.datetime | None = None
        while minute <= end:
            wall = dt.datetime.fromtimestamp(minute, zone).replace(tzinfo=None)
            if self.fixed:
                hit = self.matches(wall) and wall not in seen
                if not hit and previous is not None and wall - previous > dt.timedelta(minutes=1):
                    skipped = previous + dt.timedelta(minutes=1)
                    while skipped < wall and not hit:
                        hit = self.matches(skipped)
                        skipped += dt.timedelta(minutes=1)
                seen.add(wall)
            else:
                hit = self.matches(wall)
            if hit:
                yield float(minute)
            previous = wall
            minute += 60


def transitions(zone: dt.tzinfo, start: dt.datetime, end: dt.datetime) -> list[int]:
    """The instants (epoch seconds) at which ``zone``'s UTC offset changes."""
    found: list[int] = []
    step = 6 * 3600
    t = int(start.timestamp())
    stop = int(end.timestamp())

    def offset(u: int) -> dt.timedelta | None:
        return dt.datetime.fromtimestamp(u, zone).utcoffset()

    while t < stop:
        if offset(t) != offset(t + step):
            low, high = t, t + step
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == offset(low):
                    low = middle
                else:
                    high = middle
            found.append(high)
        t += step
    return found
