"""``spec.schedule``: what the CRD pattern (``SCHEDULE_PATTERN``) lets through.

The same pattern goes into the CRD, so these cases are also what the API
server accepts or refuses at apply time. The pattern checks the shape only;
field values (``61 * * * *``) are checked by the operator.
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
    "@every 1.5h",
    "@every 500ms",
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
]


@pytest.mark.parametrize("schedule", ACCEPTED)
def test_schedule_is_accepted(schedule: str) -> None:
    spec = crontask.CronTaskSpec.model_validate({"schedule": schedule, "taskTemplate": TEMPLATE})
    assert spec.schedule == schedule


@pytest.mark.parametrize("schedule", REFUSED)
def test_schedule_is_refused(schedule: str) -> None:
    with pytest.raises(ValidationError, match="schedule"):
        crontask.CronTaskSpec.model_validate({"schedule": schedule, "taskTemplate": TEMPLATE})
