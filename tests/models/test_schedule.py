"""``spec.schedule``: what the CRD pattern (``SCHEDULE_PATTERN``) lets through.

The same pattern goes into the CRD, so these cases are also what the API
server accepts or refuses at apply time: the shape and every field value in
range. What a pattern cannot say (a reversed range ``30-10``, a date that
never comes ``0 0 30 2 *``) is left to the operator.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskmill.models import crontask

TEMPLATE = {"spec": {"type": "noop"}}

ACCEPTED = [
    "* * * * *",
    "0 3 * * *",
    "*/5 * * * *",
    "0 9-17 * * MON-FRI",
    "0 0 1 JAN,APR,JUL,OCT *",
    "15,45 */2 1-10/3 * sun",
    "0 0 * * 0",
    "  0 0 * * *  ",
    "0\t0 * * *",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
    "@every 30s",
    "@every 1h30m",
    "@every 1h",
    "@every 2h5s",
    "@every 1m30s",
    "@DAILY",
    "@Hourly",
    "@EVERY 5m",
    "0 0 L * *",
    "0 0 1,15,L * *",
    "59 23 31 12 7",
    "00 05 01 01 0",
    "*/5 3-4 * * *",
    "1-7/2 * * * *",
    "5/10 * * * *",
    "0 0 * * 2-2/2",
    "0 0 * * mon/2",
    "30-10 * * * *",  # reversed: the pattern cannot tell, the operator refuses it
]

REFUSED = [
    "",
    "* * * *",  # 4 fields
    "0 * * * * *",  # 6 fields (seconds are not supported)
    "@every",
    "@every 30",  # no unit
    "@every s",
    "@every 5d",  # no day unit: say 120h
    "@sometimes",
    "@daily 0",
    "0 0 * * * @daily",
    "@reboot",
    # out of range, refused like a CronJob
    "60 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * 32 * *",
    "* * * 0 *",
    "* * * 13 *",
    "* * * * 8",
    "* * * FOO *",
    "* * * * MONDAY",
    "*/0 * * * *",
    "*/100 * * * *",
    "1-5/0 * * * *",
    "* * ? * *",
    "0 0 * * 5L",
    "0 0 * * MON#2",
    "0 0 LW * *",
    "L * * * *",
    "1,,2 * * * *",
    "1- * * * *",
    "005 * * * *",
    # @every: whole positive h/m/s, largest first
    "@every 0.5s",
    "@every 1.5h",
    "@every 500ms",
    "@every 0s",
    "@every 0h5m",
    "@every 30m1h",
    "@every 1h1h",
    "@every -5s",
    "@every 1h 30m",
    "\u00a00 0 * * *",  # only blanks and tabs separate fields
]


@pytest.mark.parametrize("schedule", ACCEPTED)
def test_schedule_is_accepted(schedule: str) -> None:
    spec = crontask.CronTaskSpec.model_validate({"schedule": schedule, "taskTemplate": TEMPLATE})
    assert spec.schedule == schedule


@pytest.mark.parametrize("schedule", REFUSED)
def test_schedule_is_refused(schedule: str) -> None:
    with pytest.raises(ValidationError, match="schedule"):
        crontask.CronTaskSpec.model_validate({"schedule": schedule, "taskTemplate": TEMPLATE})
