"""Whole objects (``Task``, ``CronTask``, ``TaskQueue``) and the facts about
each kind that the CRDs carry: names, short names, printer columns.

``RESOURCES`` is what ``taskmill.crdgen`` turns into ``crds/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import Field
from pydantic.config import JsonDict

from taskmill.models.base import API_VERSION, GROUP, ApiModel, Timestamp, cel
from taskmill.models.crontask import CronTaskSpec, CronTaskStatus
from taskmill.models.task import TaskSpec, TaskStatus
from taskmill.models.taskqueue import TaskQueueSpec, TaskQueueStatus

SpecT = TypeVar("SpecT", bound=ApiModel)
StatusT = TypeVar("StatusT", bound=ApiModel)


class OwnerReference(ApiModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(ApiModel):
    """The parts of ``metadata`` Taskmill reads."""

    name: str = ""
    namespace: str | None = None
    uid: str = ""
    resource_version: str = ""
    generation: int | None = None
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list)


class Resource(ApiModel, Generic[SpecT, StatusT]):
    api_version: str = API_VERSION
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SpecT
    status: StatusT | None = None


class Task(Resource[TaskSpec, TaskStatus]):
    kind: str = "Task"
    RESOURCE_PLURAL: ClassVar[str] = "tasks"


class CronTask(Resource[CronTaskSpec, CronTaskStatus]):
    kind: str = "CronTask"
    RESOURCE_PLURAL: ClassVar[str] = "crontasks"


class TaskQueue(Resource[TaskQueueSpec, TaskQueueStatus]):
    kind: str = "TaskQueue"
    RESOURCE_PLURAL: ClassVar[str] = "taskqueues"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str | None = None


@dataclass(frozen=True)
class ResourceKind:
    """One custom resource kind as the CRD declares it."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[ApiModel]
    status: type[ApiModel]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = ()
    #: Default of the whole ``status`` object, applied by the API server when
    #: an object has none: a new Task reads as Pending with no write.
    status_default: dict[str, Any] | None = None
    categories: tuple[str, ...] = field(default=("taskmill",))
    #: CEL rules on the whole object (see ``base.cel``): the only place a rule
    #: can see ``metadata.name`` (and ``generateName``) next to the spec.
    validations: tuple[JsonDict, ...] = ()
    #: Fields ``kubectl get --field-selector`` can select on (at most 8).
    selectable_fields: tuple[str, ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")

TASK = ResourceKind(
    kind="Task",
    plural="tasks",
    singular="task",
    short_names=("tmt",),
    spec=TaskSpec,
    status=TaskStatus,
    description="A unit of work for Taskmill's workers.",
    printer_columns=(
        PrinterColumn("Type", "string", ".spec.type", "Handler type"),
        PrinterColumn("Phase", "string", ".status.phase"),
        PrinterColumn("Attempts", "integer", ".status.attempts"),
        PrinterColumn("Reason", "string", ".status.reason"),
        AGE,
        PrinterColumn("Queue", "string", ".spec.queue", priority=1),
        PrinterColumn("Priority", "integer", ".spec.priority", priority=1),
        PrinterColumn("Worker", "string", ".status.lease.worker", priority=1),
    ),
    # Pending, and in progress for kstatus, before the operator writes anything.
    status_default=TaskStatus().to_api(),
    selectable_fields=(".spec.type", ".spec.queue", ".status.phase"),
    validations=(
        cel(
            "!has(self.spec) || !has(self.spec.dependsOn)"
            " || self.spec.dependsOn.all(d, d.name != self.metadata.name)",
            "a Task cannot depend on itself",
            field_path=".spec.dependsOn",
        ),
    ),
)

CRON_TASK = ResourceKind(
    kind="CronTask",
    plural="crontasks",
    singular="crontask",
    short_names=("tmc",),
    spec=CronTaskSpec,
    status=CronTaskStatus,
    description="Recurring work: creates a Task on a cron schedule.",
    printer_columns=(
        PrinterColumn("Schedule", "string", ".spec.schedule"),
        PrinterColumn("Suspend", "boolean", ".spec.suspend"),
        PrinterColumn("Last Schedule", "date", ".status.lastScheduleTime"),
        PrinterColumn("Next Schedule", "string", ".status.nextScheduleTime"),
        PrinterColumn(
            "Valid",
            "string",
            '.status.conditions[?(@.type=="ScheduleValid")].status',
            "Whether the schedule and time zone can be used",
        ),
        AGE,
        PrinterColumn("Time Zone", "string", ".spec.timeZone", priority=1),
    ),
)

TASK_QUEUE = ResourceKind(
    kind="TaskQueue",
    plural="taskqueues",
    singular="taskqueue",
    short_names=("tmq",),
    spec=TaskQueueSpec,
    status=TaskQueueStatus,
    description="Limits and defaults for the Tasks that name this queue.",
    printer_columns=(
        # Its settings only: counts per queue are `taskmill stats` and the
        # taskmill_tasks metric, live, at no write to the API server.
        PrinterColumn("Paused", "boolean", ".spec.paused"),
        PrinterColumn("Concurrency", "integer", ".spec.concurrency.total"),
        PrinterColumn("Lease", "integer", ".spec.leaseSeconds", "Lease seconds"),
        AGE,
    ),
)

RESOURCES: tuple[ResourceKind, ...] = (TASK, CRON_TASK, TASK_QUEUE)
