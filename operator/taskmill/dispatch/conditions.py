"""A Task's conditions, decided by its phase: what ``kubectl wait`` and
GitOps tools read.

Two families, both kept on every write (never a write of their own):

- Job's: ``Complete`` when Succeeded, ``Failed`` when Dead, so
  ``kubectl wait --for=condition=Complete`` works as for a Job;
- kstatus' (Flux, cli-utils, Argo CD through the shipped health checks):
  ``Reconciling`` while the Task is on its way (Pending, Waiting, Running:
  "in progress"), ``Stalled`` when it is Dead (a failure that needs a
  person: "failed"), and ``Ready``, True only once it Succeeded.

A Cancelled Task has ``Cancelled=True`` alone: it ended as someone asked,
which is neither progress nor failure, so kstatus reads it as Current (a
``Ready=False`` would read as in progress forever). A new Task gets
``Reconciling`` and ``Ready=False`` from the CRD's status default, so it
reads as in progress before the operator has written anything.

Transition times change only when a condition's status does.
"""

from __future__ import annotations

from typing import Any

from taskmill.dispatch.clock import to_datetime
from taskmill.models.base import ConditionStatus
from taskmill.models.task import (
    CONDITION_CANCELLED,
    CONDITION_COMPLETE,
    CONDITION_FAILED,
    CONDITION_READY,
    CONDITION_RECONCILING,
    CONDITION_STALLED,
    Phase,
    TaskStatus,
)

_TRUE, _FALSE = ConditionStatus.TRUE.value, ConditionStatus.FALSE.value
_SECONDS = "%Y-%m-%dT%H:%M:%SZ"


def for_phase(
    status: TaskStatus | None, phase: Phase, reason: str, message: str, now: float
) -> list[dict[str, Any]]:
    """The whole ``status.conditions`` list of a Task entering ``phase``.

    Plain dicts, not models: this runs on two writes of every Task, and
    building and dumping pydantic models here measured a few percent of the
    operator's CPU in ``bench/throughput.py``."""
    reason = reason or phase.value
    wanted: tuple[tuple[str, str], ...]
    if phase == Phase.SUCCEEDED:
        wanted = ((CONDITION_READY, _TRUE), (CONDITION_COMPLETE, _TRUE))
    elif phase == Phase.DEAD:
        wanted = ((CONDITION_READY, _FALSE), (CONDITION_STALLED, _TRUE), (CONDITION_FAILED, _TRUE))
    elif phase == Phase.CANCELLED:
        wanted = ((CONDITION_CANCELLED, _TRUE),)
    else:
        wanted = ((CONDITION_READY, _FALSE), (CONDITION_RECONCILING, _TRUE))
    previous = {c.type: c for c in (status.conditions or [])} if status else {}
    stamp = ""
    conditions = []
    for type_, value in wanted:
        old = previous.get(type_)
        if old is not None and old.status == value and old.last_transition_time is not None:
            since = old.last_transition_time.strftime(_SECONDS)
        else:
            # metav1.Condition keeps whole seconds.
            since = stamp = stamp or to_datetime(now).strftime(_SECONDS)
        conditions.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": since,
            }
        )
    return conditions
