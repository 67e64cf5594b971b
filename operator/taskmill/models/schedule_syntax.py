"""The grammar of ``spec.schedule``, as one regular expression per part.

One source for two readers: the CRD's CEL rule on ``spec.schedule``
(:data:`SCHEDULE_RULE`, refused by the API server at apply time with
:data:`SCHEDULE_MESSAGE` rather than a kilobyte of regular expression) and the
parser in :mod:`taskmill.dispatch.schedule`, which matches the same
expressions before it evaluates anything. So what the API server accepts
and what the operator can parse differ only in what a regular expression
cannot say: a reversed range (``30-10``), a date that never comes
(``0 0 30 2 *``), an ``@every`` longer than :data:`MAX_EVERY_SECONDS`.

The expressions use only what both the API server's regular expressions
(Go RE2) and Python's ``re`` read alike: no look-arounds, no back
references, ``[ \\t]`` rather than ``\\s`` (whose meaning differs), and
``(?i:...)`` for the case-insensitive names and macros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
#: Day-of-week names; Sunday is 0 (and 7).
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

#: The macros and the cron lines they stand for; any case (``@DAILY``).
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: ``@every`` units, largest first; each at most once, in this order.
EVERY_UNITS = {"h": 3600, "m": 60, "s": 1}
#: Longest ``@every`` interval: beyond a year a cron line says it better.
MAX_EVERY_SECONDS = 366 * 24 * 3600

#: Between fields, and around the whole schedule.
BLANK = r"[ \t]"
#: A step: a whole number from 1 to 99, no leading zero.
STEP = r"[1-9][0-9]?"


@dataclass(frozen=True)
class FieldSyntax:
    """One of the five fields: its name, bounds and what a value looks like."""

    name: str
    low: int
    high: int
    #: A number within ``low..high`` (one leading zero allowed, as in ``05``).
    number: str
    names: tuple[str, ...] = ()
    #: The value of the first name (``jan`` is 1, ``sun`` is 0).
    first_name_value: int = 0
    #: ``L``, the last day of the month, may stand for an item.
    last_day: bool = False

    @property
    def value(self) -> str:
        if not self.names:
            return f"(?:{self.number})"
        return f"(?:{self.number}|(?i:{'|'.join(self.names)}))"

    @property
    def item(self) -> str:
        """One list item: ``*``, ``5``, ``1-5``, ``*/15``, ``1-30/2``, ``5/10``."""
        ranged = rf"(?:\*|{self.value}(?:-{self.value})?)(?:/{STEP})?"
        return f"(?:{ranged}|[Ll])" if self.last_day else ranged

    @property
    def pattern(self) -> str:
        """The whole field: items separated by commas."""
        return f"(?:{self.item}(?:,{self.item})*)"


FIELDS = (
    FieldSyntax("minute", 0, 59, r"[0-5]?[0-9]"),
    FieldSyntax("hour", 0, 23, r"[01]?[0-9]|2[0-3]"),
    FieldSyntax("day-of-month", 1, 31, r"0?[1-9]|[12][0-9]|3[01]", last_day=True),
    FieldSyntax("month", 1, 12, r"0?[1-9]|1[0-2]", MONTH_NAMES, first_name_value=1),
    FieldSyntax("day-of-week", 0, 7, r"0?[0-7]", DAY_NAMES),
)

#: ``@every 1h30m``: whole hours, minutes and seconds, each part positive
#: (leave a zero part out), largest unit first.
_PART = r"[1-9][0-9]{0,7}"
EVERY_DURATION = rf"(?:{_PART}h(?:{_PART}m)?(?:{_PART}s)?|{_PART}m(?:{_PART}s)?|{_PART}s)"
EVERY = rf"(?i:@every){BLANK}+({EVERY_DURATION})"
MACRO = f"(?i:{'|'.join(sorted(MACROS, key=len, reverse=True))})"
CRON_LINE = f"{BLANK}+".join(f"({f.pattern})" for f in FIELDS)

#: What ``spec.schedule`` must look like: five fields, a macro, or ``@every``.
SCHEDULE_PATTERN = rf"^{BLANK}*(?:{MACRO}|{EVERY}|{CRON_LINE}){BLANK}*$"

#: What the API server says of a schedule that does not match.
SCHEDULE_MESSAGE = (
    "must be 5 cron fields: minute 0-59, hour 0-23, day-of-month 1-31 or L, "
    "month 1-12 or JAN-DEC, day-of-week 0-7 or SUN-SAT, each a list of values, "
    "ranges (a-b) and steps (*/n, a-b/n, a/n; n 1-99); or a macro (@yearly, @annually, "
    "@monthly, @weekly, @daily, @midnight, @hourly, any case); or @every with whole "
    "positive hours, minutes, seconds, largest first (@every 90s, @every 1h30m)"
)
# A CEL raw string holds the pattern as it is; it must not hold its quote.
assert "'" not in SCHEDULE_PATTERN
#: The CRD's rule (RE2, as the API server reads ``matches``). Its cost fits
#: the API server's budget since ``spec.schedule`` is at most 256 characters.
SCHEDULE_RULE = f"self.matches(r'{SCHEDULE_PATTERN}')"

#: The parser's readings: the same pieces, each whole.
MACRO_RE = re.compile(rf"{BLANK}*({MACRO}){BLANK}*")
EVERY_RE = re.compile(rf"{BLANK}*{EVERY}{BLANK}*")
CRON_LINE_RE = re.compile(rf"{BLANK}*{CRON_LINE}{BLANK}*")
SCHEDULE_RE = re.compile(SCHEDULE_PATTERN)
