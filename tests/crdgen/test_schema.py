"""The structural conversion (``crdgen.schema``) and the CRD envelope (``crdgen.render``)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from taskmill.crdgen import render, schema
from taskmill.models import base, resources, task

CRDS = {doc["spec"]["names"]["kind"]: doc for doc in render.render_crds()}


def root(kind: str) -> dict[str, Any]:
    result: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def at(node: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The schema node at ``spec.backoff.maxSeconds``; ``[]`` steps into list items."""
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under properties/items/additionalProperties."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural(kind: str) -> None:
    assert list(schema.violations(root(kind))) == []
    for path, node in walk(root(kind)):
        for key in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "nullable", "title"):
            assert key not in node, f"{kind} {path} has {key}"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_property_is_typed_or_preserved(kind: str) -> None:
    for path, node in schema_nodes(root(kind)):
        typed = "type" in node
        preserved = node.get("x-kubernetes-preserve-unknown-fields") is True
        assert typed or preserved, f"{kind} {path} has no type"
        assert node.get("default", ...) is not None, f"{kind} {path} defaults to null"


def test_envelope() -> None:
    doc = CRDS["Task"]
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["metadata"]["name"] == "tasks.taskmill.dev"
    assert doc["spec"]["group"] == "taskmill.dev"
    assert doc["spec"]["scope"] == "Namespaced"
    [version] = doc["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    top = root("Task")
    assert top["required"] == ["spec"]
    assert top["properties"]["metadata"] == {"type": "object"}
    assert list(top["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [
        ("Task", "tasks", "tmt"),
        ("CronTask", "crontasks", "tmc"),
        ("TaskQueue", "taskqueues", "tmq"),
    ],
)
def test_names_short_names_and_category(kind: str, plural: str, short: str) -> None:
    names = CRDS[kind]["spec"]["names"]
    assert names["kind"] == kind
    assert names["listKind"] == f"{kind}List"
    assert names["plural"] == plural
    assert names["singular"] == kind.lower()
    assert names["shortNames"] == [short]
    assert names["categories"] == ["taskmill"]


def test_task_printer_columns() -> None:
    columns = {
        c["name"]: c for c in CRDS["Task"]["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns["Type"]["jsonPath"] == ".spec.type"
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Attempts"] == {
        "name": "Attempts",
        "type": "integer",
        "jsonPath": ".status.attempts",
    }
    assert columns["Age"]["type"] == "date"
    assert columns["Worker"]["priority"] == 1  # only with -o wide


def test_task_defaults() -> None:
    spec = root("Task")["properties"]["spec"]
    assert at(spec, "priority")["default"] == 0
    assert at(spec, "queue")["default"] == "default"
    assert at(spec, "cancel")["default"] is False
    assert at(spec, "dependsOn.[].condition")["default"] == "Succeeded"
    assert "default" not in at(spec, "maxAttempts")  # None: resolved from the queue
    status = root("Task")["properties"]["status"]["default"]
    assert (status["phase"], status["attempts"]) == ("Pending", 0)
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Reconciling"]
    assert "default" not in root("CronTask")["properties"]["status"]


def test_crontask_and_queue_defaults() -> None:
    spec = root("CronTask")["properties"]["spec"]
    assert at(spec, "concurrencyPolicy")["default"] == "Allow"
    assert at(spec, "concurrencyPolicy")["enum"] == ["Allow", "Forbid", "Replace"]
    assert at(spec, "suspend")["default"] is False
    assert at(spec, "successfulTasksHistoryLimit")["default"] == 3
    assert at(spec, "failedTasksHistoryLimit")["default"] == 1
    assert at(spec, "taskTemplate.spec.queue")["default"] == "default"
    queue = root("TaskQueue")["properties"]["spec"]
    assert at(queue, "leaseSeconds")["default"] == 30
    assert at(queue, "rateLimits.[].burst")["default"] == 1


def test_optional_fields_are_not_required_and_required_ones_are() -> None:
    spec = root("Task")["properties"]["spec"]
    assert spec["required"] == ["type"]
    assert at(spec, "dependsOn.[]")["required"] == ["name"]
    assert root("CronTask")["properties"]["spec"]["required"] == ["schedule", "taskTemplate"]
    assert "required" not in root("Task")["properties"]["status"]


def test_free_json() -> None:
    spec = root("Task")["properties"]["spec"]
    payload = at(spec, "payload")
    assert payload["type"] == "object"
    assert payload["x-kubernetes-preserve-unknown-fields"] is True
    assert "64 KiB" in payload["description"]
    result = at(root("Task"), "status.result")
    assert "type" not in result  # any JSON value: a number, a string, a list...
    assert result["x-kubernetes-preserve-unknown-fields"] is True
    labels = at(root("CronTask"), "spec.taskTemplate.metadata.labels")
    assert labels == {
        "description": "Labels of each Task.",
        "type": "object",
        "additionalProperties": {"type": "string"},
    }


def test_bounds_patterns_and_formats() -> None:
    spec = root("Task")["properties"]["spec"]
    assert at(spec, "priority")["minimum"] == -1_000_000
    assert at(spec, "priority")["format"] == "int32"
    assert at(spec, "activeDeadlineSeconds")["format"] == "int64"  # unbounded above
    assert at(spec, "queue")["pattern"] == base.DNS_LABEL
    assert at(spec, "queue")["maxLength"] == 63
    assert at(spec, "dependsOn")["maxItems"] == 64
    assert at(spec, "runAt") == {
        "description": "Earliest start time.",
        "type": "string",
        "format": "date-time",
    }
    assert at(spec, "backoff.jitter")["type"] == "number"
    assert at(root("Task"), "status.history")["maxItems"] == task.HISTORY_LIMIT
    per_second = at(root("TaskQueue"), "spec.rateLimits.[].perSecond")
    # pydantic's gt=0 is JSON Schema's number; OpenAPI v3.0 wants a flag.
    assert (per_second["minimum"], per_second["exclusiveMinimum"]) == (0, True)


def test_list_maps() -> None:
    spec = root("Task")["properties"]["spec"]
    assert at(spec, "dependsOn")["x-kubernetes-list-type"] == "map"
    assert at(spec, "dependsOn")["x-kubernetes-list-map-keys"] == ["name"]
    queue = root("TaskQueue")["properties"]["spec"]
    for path in ("rateLimits", "concurrency.perType"):
        assert at(queue, path)["x-kubernetes-list-map-keys"] == ["type"], path
    assert at(root("Task"), "status.conditions")["x-kubernetes-list-map-keys"] == ["type"]


def rules(node: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in node.get("x-kubernetes-validations", [])]


def test_cel_rules_are_carried_next_to_their_fields() -> None:
    spec = root("Task")["properties"]["spec"]
    assert rules(spec) == ["!has(self.payload) || !has(self.payloadFrom)"]
    assert spec["x-kubernetes-validations"][0]["fieldPath"] == ".payloadFrom"
    assert rules(at(spec, "payloadFrom")) == ["has(self.configMapKeyRef) != has(self.secretKeyRef)"]
    assert "self.maxSeconds >= self.initialSeconds" in rules(at(spec, "backoff"))[0]
    # The same models in other places carry the same rules.
    template = at(root("CronTask"), "spec.taskTemplate.spec")
    assert rules(template) == rules(spec)
    assert rules(at(root("TaskQueue"), "spec.retryPolicy.backoff")) == rules(at(spec, "backoff"))
    # Only a rule on the whole object sees metadata.name.
    assert "d.name != self.metadata.name" in rules(root("Task"))[0]
    for _, node in walk(root("Task")):
        for rule in node.get("x-kubernetes-validations", []):
            assert list(rule)[:2] == ["rule", "message"]


def test_descriptions_are_short_and_untitled() -> None:
    backoff = at(root("Task"), "spec.backoff")
    assert backoff["description"] == "Delay between attempts."  # the field's, not the class's
    attempt = at(root("Task"), "status.history.[]")
    assert attempt["description"] == "One attempt in `status.history`."
    for kind in CRDS:
        for path, node in schema_nodes(root(kind)):
            assert "\n" not in node.get("description", ""), f"{kind} {path}"


# The conversion itself, on small models.


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Leaf(base.ApiModel):
    """A leaf.

    Second paragraph, left out of the CRD.
    """

    size: int = Field(default=1, ge=0, le=10)


class Tree(base.ApiModel):
    colour: Colour = Colour.RED
    leaf: Leaf | None = None
    leaves: list[Leaf] = Field(default_factory=list, max_length=3)
    ratio: float = Field(gt=0, lt=1)
    anything: Any = None
    tags: dict[str, str] | None = None


def test_conversion_of_a_small_model() -> None:
    assert schema.structural_schema(Tree) == {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["red", "blue"], "default": "red"},
            "leaf": {
                "description": "A leaf.",
                "type": "object",
                "properties": {
                    "size": {
                        "type": "integer",
                        "format": "int32",
                        "default": 1,
                        "minimum": 0,
                        "maximum": 10,
                    }
                },
            },
            "leaves": {
                "type": "array",
                "maxItems": 3,
                "items": {
                    "description": "A leaf.",
                    "type": "object",
                    "properties": {
                        "size": {
                            "type": "integer",
                            "format": "int32",
                            "default": 1,
                            "minimum": 0,
                            "maximum": 10,
                        }
                    },
                },
            },
            "ratio": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 1,
                "exclusiveMaximum": True,
            },
            "anything": {"x-kubernetes-preserve-unknown-fields": True},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["ratio"],
    }


class Union(BaseModel):
    value: int | str


class Node(BaseModel):
    children: list[Node] = []


class Fixed(BaseModel):
    value: int = Field(json_schema_extra={"const": 1})


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        (Union, "anyOf of 2 schemas"),
        (Node, "recursive model Node"),
        (Fixed, "keyword 'const'"),
    ],
)
def test_what_a_structural_schema_cannot_say_is_refused(
    model: type[BaseModel], problem: str
) -> None:
    with pytest.raises(schema.UnsupportedSchema, match=problem):
        schema.structural_schema(model)


def test_list_map_keys_must_be_required_or_defaulted() -> None:
    bad = {
        "type": "array",
        "items": {"type": "object", "properties": {"k": {"type": "string"}}},
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["k"],
    }
    assert list(schema.violations(bad)) == [
        "<root>: list-map key 'k' is neither required nor defaulted"
    ]


def test_status_default_must_be_a_valid_status() -> None:
    broken = resources.ResourceKind(
        kind="Task",
        plural="tasks",
        singular="task",
        short_names=(),
        spec=task.TaskSpec,
        status=task.TaskStatus,
        description="x",
        status_default={"phase": "Sleeping"},
    )
    with pytest.raises(ValueError, match="phase"):
        render.render_crd(broken)


def _undescribed(node: dict[str, Any], where: str) -> Iterator[str]:
    for name, child in (node.get("properties") or {}).items():
        if not child.get("description"):
            yield f"{where}.{name}"
        yield from _undescribed(child, f"{where}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _undescribed(node["items"], f"{where}[]")


@pytest.mark.parametrize("kind", ["Task", "TaskQueue", "CronTask"])
def test_every_field_has_a_description_for_kubectl_explain(kind: str) -> None:
    schema = root(kind)
    # The API server allows nothing but the type on metadata: kubectl explain
    # describes it from ObjectMeta.
    fields = {
        **schema,
        "properties": {k: v for k, v in schema["properties"].items() if k != "metadata"},
    }
    assert list(_undescribed(fields, kind)) == []


def test_tasks_can_be_selected_by_type_queue_and_phase() -> None:
    crd = next(d for d in render.render_crds() if d["spec"]["names"]["kind"] == "Task")
    paths = [f["jsonPath"] for f in crd["spec"]["versions"][0]["selectableFields"]]
    assert paths == [".spec.type", ".spec.queue", ".status.phase"]
