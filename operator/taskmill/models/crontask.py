"""The ``CronTask`` resource: recurring work that a GitOps repository owns.

Only the leader operator fires schedules. Each fire creates a child Task whose
name is derived from the CronTask's name and the slot time, so two replicas,
or one replica restarted, can never run the same slot twice: the second create
is a conflict and a no-op. Children carry an ownerReference to their CronTask,
so deleting the CronTask deletes them. After downtime, missed slots within
``startingDeadlineSeconds`` run once, not once per missed slot.

The operator writes only ``status``; spec and metadata stay exactly as applied,
so ``kubectl diff`` and Argo CD / Flux see no drift.

Child Tasks (the contract; :mod:`taskmill.controller.cron` implements it):

- name ``<crontask>-<slot>``, where ``<slot>`` is the slot time in whole Unix
  seconds (``nightly-1795827600``). A CronTask name too long to leave room
  for the suffix within a DNS subdomain's 253 characters is cut and given
  ``-<8 hex of sha256(name)>``, so the name stays valid and unique.
- labels: ``taskTemplate.metadata.labels`` plus ``taskmill.dev/crontask=<name>``
  (cut and hashed the same way beyond a label value's 63 characters);
  annotations: the template's plus ``taskmill.dev/scheduled-at=<RFC 3339 UTC>``.
- an ownerReference to the CronTask with ``controller: true`` and
  ``blockOwnerDeletion: true``.
- ``concurrencyPolicy``: ``Forbid`` skips a slot while a child is not
  finished; ``Replace`` deletes unfinished children (the operator never
  writes a Task's spec), then creates the new one. Finished children beyond the history limits are
  deleted, oldest first (``Dead`` and ``Cancelled`` count as failed).

Schedules are evaluated by :mod:`taskmill.dispatch.schedule` (daylight-saving
rules there); a schedule or time zone the CRD pattern lets through but that
cannot be used sets ``ScheduleValid=False`` (``InvalidSchedule`` /
``InvalidTimeZone`` / ``ScheduleNotComputable``) and one Warning Event per
generation.
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import AfterValidator, Field

from taskmill.models import schedule_syntax
from taskmill.models.base import ApiModel, Condition, ObjectRef, Timestamp, cel, validations
from taskmill.models.task import TaskSpec, TaskTemplateMeta

#: What ``spec.schedule`` must look like; the CRD refuses anything else at apply
#: time: five fields with every value in range (names, ranges, steps of 1-99,
#: lists, ``L``), a macro in any case, or ``@every`` in whole h/m/s. The grammar
#: lives in :mod:`taskmill.models.schedule_syntax`, shared with the parser.
SCHEDULE_PATTERN = schedule_syntax.SCHEDULE_PATTERN


def _schedule_syntax(value: str) -> str:
    # A validator, not ``pattern``: in the CRD the same check is a CEL rule
    # with a readable message (a pattern would be quoted back whole).
    if not schedule_syntax.SCHEDULE_RE.fullmatch(value):
        raise ValueError(f"schedule {schedule_syntax.SCHEDULE_MESSAGE}")
    return value


class ConcurrencyPolicy(enum.StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class TaskTemplate(ApiModel):
    """The Task each fire creates."""

    metadata: TaskTemplateMeta | None = Field(
        default=None, description="Labels and annotations of each Task."
    )
    spec: TaskSpec


class CronTaskSpec(ApiModel):
    """When to create Tasks, and the Task to create."""

    schedule: Annotated[str, AfterValidator(_schedule_syntax)] = Field(
        max_length=256,
        json_schema_extra=validations(
            cel(schedule_syntax.SCHEDULE_RULE, schedule_syntax.SCHEDULE_MESSAGE)
        ),
        description="5-field cron (minute hour day-of-month month day-of-week), "
        "a macro like @daily, or @every <duration> in whole h/m/s like @every 1h30m.",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$",
        description="IANA time zone of the schedule, e.g. Europe/Berlin. Default UTC.",
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.ALLOW,
        description="Allow overlapping runs, Forbid (skip a slot while one runs), "
        "or Replace (cancel the running one).",
    )
    starting_deadline_seconds: int | None = Field(
        default=None, ge=0, description="A slot missed by more than this is skipped."
    )
    suspend: bool = Field(default=False, description="Stop firing (running children go on).")
    successful_tasks_history_limit: int = Field(
        default=3, ge=0, le=1000, description="Succeeded children kept; older ones are deleted."
    )
    failed_tasks_history_limit: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Dead or Cancelled children kept; older ones are deleted.",
    )
    task_template: TaskTemplate


class CronTaskStatus(ApiModel):
    """Observed state, written only by the operator."""

    last_schedule_time: Timestamp | None = Field(
        default=None, description="The slot of the newest child created."
    )
    last_successful_time: Timestamp | None = Field(
        default=None, description="When the newest Succeeded child finished."
    )
    next_schedule_time: Timestamp | None = Field(
        default=None, description="The next slot, unless suspended or invalid."
    )
    active: list[ObjectRef] | None = Field(default=None, description="Children not finished yet.")
    conditions: list[Condition] | None = Field(
        default=None,
        description=(
            "ScheduleValid; Ready, and Stalled while the schedule cannot be used (kstatus)."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The generation of the spec this status describes."
    )
