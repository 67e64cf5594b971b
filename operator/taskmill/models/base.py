"""Shared model plumbing: the API group, camelCase field aliases, conditions.

Python code uses snake_case attributes; the Kubernetes objects use camelCase
keys, as API conventions require. ``ApiModel`` maps one to the other, and every
model dumps ``by_alias`` with ``None`` fields left out, so what goes to the API
server carries only what was set.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict, JsonValue

GROUP = "taskmill.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: A DNS-1123 label: the names of queues and namespaces.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A DNS-1123 subdomain: the names of Tasks and other objects.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A handler type: what workers route on, e.g. ``send_email`` or ``billing.invoice``.
HANDLER_TYPE = r"^[A-Za-z_][A-Za-z0-9_.:-]*$"

Timestamp = Annotated[dt.datetime, Field(json_schema_extra={"format": "date-time"})]


def cel(rule: str, message: str, *, field_path: str | None = None) -> JsonDict:
    """One CEL rule the API server checks at apply time (``x-kubernetes-validations``).

    ``self`` is the object the rule sits on; ``field_path`` (e.g. ``.maxSeconds``)
    names the field the error message points at. Rules must stay cheap enough
    for the API server's cost estimator: bound lists and strings they walk.
    """
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: JsonDict) -> JsonDict:
    """``json_schema_extra`` for a model whose CEL rules go into the generated CRD."""
    entries: list[JsonValue] = [*rules]
    return {"x-kubernetes-validations": entries}


class ApiModel(BaseModel):
    """Base of every resource model: camelCase on the wire, unknown keys ignored.

    Unknown keys are ignored when parsing (an older operator reading a newer
    object must not fail); the API server itself refuses unknown fields at
    apply time through the generated structural schema.
    """

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
        ser_json_timedelta="float",
    )

    def to_api(self) -> dict[str, Any]:
        """The JSON-ready dict for the API server: camelCase, ``None`` left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A standard Kubernetes condition (the ``metav1.Condition`` shape)."""

    type: str = Field(max_length=316, description="Type of condition in CamelCase.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="Unknown",
        max_length=1024,
        description="Programmatic identifier of the last transition, in CamelCase.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: Timestamp | None = Field(
        default=None, description="When the status last changed."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The generation this condition was set for."
    )


class ObjectRef(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(description="The object's name.")
    uid: str | None = Field(default=None, description="The object's uid.")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
