"""Pydantic JSON Schema → Kubernetes structural schema (``openAPIV3Schema``).

Pydantic emits JSON Schema 2020-12: ``$ref``/``$defs`` for nested models,
``anyOf: [X, {type: null}]`` for ``X | None``, ``exclusiveMinimum`` as a
number, ``title`` everywhere. The API server accepts only *structural*
schemas in OpenAPI v3.0 form: every node typed, no references, no unions,
``exclusiveMinimum`` a boolean beside ``minimum``. This module rewrites one
into the other, node by node:

- ``$ref`` is inlined; the referring field's ``description``/``default`` win
  over the referenced model's docstring;
- ``X | None`` becomes X (an optional field is simply not ``required``);
  a real union is refused: the generator fails rather than emit a schema the
  API server would reject or read differently;
- ``Any`` becomes ``x-kubernetes-preserve-unknown-fields`` with no type (any
  JSON value) and ``dict[str, Any]`` the same on ``type: object``;
- ``default: null`` and ``title`` go; descriptions are cut to their first
  paragraph; integers get ``format: int32`` when their bounds fit, else int64;
- everything else (bounds, patterns, enums, ``x-kubernetes-*`` from
  ``json_schema_extra``, CEL rules) is carried over as is. A keyword this
  module does not know is an error, so a new pydantic feature in a model is
  noticed here, not by the API server.

Keys come out in one fixed order, so the rendered YAML is stable. The
neighbour ``render`` wraps these schemas into CRD documents.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

Schema = dict[str, Any]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: Output order of a schema node's keys: what a reader wants first.
KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
)
_RANK = {key: i for i, key in enumerate(KEY_ORDER)}

#: Keywords that carry over unchanged (the rest are rewritten or refused).
_PLAIN = frozenset(KEY_ORDER) - {
    "description",
    "default",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "items",
    "properties",
    "required",
    "additionalProperties",
}
#: Keys of one ``x-kubernetes-validations`` entry, in output order.
_RULE_KEYS = ("rule", "messageExpression", "message", "fieldPath", "reason", "optionalOldSelf")
#: Keywords dropped on purpose: they mean nothing to the API server.
_DROPPED = frozenset({"title", "examples", "$schema"})


class UnsupportedSchema(ValueError):
    """A model uses something a structural schema cannot express."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or '<root>'}: {problem}")
        self.path = path


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of ``model`` as it appears on the wire (camelCase)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: Mapping[str, Schema] = raw.pop("$defs", {})
    return _convert(raw, defs, path="", seen=())


def brief(text: str) -> str:
    """A description for ``kubectl explain``: the first paragraph, on one line.

    Docstrings are reStructuredText; double backticks read as noise there.
    """
    first = text.strip().split("\n\n", 1)[0]
    return " ".join(first.split()).replace("``", "`")


def _convert(
    node: Mapping[str, Any], defs: Mapping[str, Schema], path: str, seen: tuple[str, ...]
) -> Schema:
    node, seen = _resolve(node, defs, path, seen)
    out: Schema = {}
    if not any(k in node for k in ("type", "enum", "x-kubernetes-preserve-unknown-fields")):
        # `Any`: pydantic says nothing about it, so Kubernetes must keep it whole.
        out["x-kubernetes-preserve-unknown-fields"] = True
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "description":
            out[key] = brief(value)
        elif key == "default":
            if value is not None:
                out[key] = value
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema: a number. OpenAPI v3.0: a flag beside minimum/maximum.
            if not isinstance(value, bool):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                value = True
            out[key] = value
        elif key == "properties":
            out[key] = {
                name: _convert(sub, defs, f"{path}.{name}", seen) for name, sub in value.items()
            }
        elif key == "required":
            if value:
                out[key] = list(value)
        elif key == "items":
            if not isinstance(value, Mapping):
                raise UnsupportedSchema(path, "tuple-like items are not structural")
            out[key] = _convert(value, defs, f"{path}[]", seen)
        elif key == "additionalProperties":
            _additional(out, value, defs, path, seen)
        elif key == "x-kubernetes-validations":
            out[key] = [ordered_rule(rule, path) for rule in value]
        elif key in _PLAIN:
            out[key] = value
        else:
            raise UnsupportedSchema(path, f"keyword {key!r} has no structural equivalent")
    if out.get("type") == "integer" and "format" not in out:
        out["format"] = _int_format(out)
    return ordered(out)


def _resolve(
    node: Mapping[str, Any], defs: Mapping[str, Schema], path: str, seen: tuple[str, ...]
) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """Inline ``$ref``s and strip ``| None`` until the node is concrete.

    Keys beside a ``$ref`` or union (the field's description, default, list
    type) stay on top of what they refer to.
    """
    while True:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in seen:
                # A structural schema is a finite tree; a recursive model is not.
                raise UnsupportedSchema(path, f"recursive model {name} cannot be inlined")
            if name not in defs:
                raise UnsupportedSchema(path, f"unknown $ref {node['$ref']!r}")
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node, seen = {**defs[name], **siblings}, (*seen, name)
            continue
        union = next((k for k in ("anyOf", "oneOf", "allOf") if k in node), None)
        if union is None:
            return node, seen
        members = [m for m in node[union] if m != {"type": "null"}]
        if len(members) != 1:
            raise UnsupportedSchema(path, f"{union} of {len(members)} schemas is not structural")
        siblings = {k: v for k, v in node.items() if k != union}
        node = {**members[0], **siblings}


def _additional(
    out: Schema, value: Any, defs: Mapping[str, Schema], path: str, seen: tuple[str, ...]
) -> None:
    if value is False:
        return  # unknown fields are pruned or refused by the API server anyway
    if value is True or value == {}:
        # dict[str, Any]: a free JSON object.
        out["x-kubernetes-preserve-unknown-fields"] = True
        return
    out["additionalProperties"] = _convert(value, defs, f"{path}.*", seen)


def _int_format(node: Schema) -> str:
    """int32 when both bounds fit in it (most counts and limits), else int64."""
    low, high = node.get("minimum"), node.get("maximum")
    if low is None or high is None:
        return "int64"
    return "int32" if low >= INT32_MIN and high <= INT32_MAX else "int64"


def ordered_rule(rule: Mapping[str, Any], path: str) -> Schema:
    """A CEL rule with its keys in the order the API documents them."""
    unknown = set(rule) - set(_RULE_KEYS)
    if "rule" not in rule or unknown:
        raise UnsupportedSchema(path, f"malformed x-kubernetes-validations entry {dict(rule)}")
    return {key: rule[key] for key in _RULE_KEYS if key in rule}


def ordered(node: Schema) -> Schema:
    """``node`` with its keys in ``KEY_ORDER`` (unknown keys last, by name)."""
    return {key: node[key] for key in sorted(node, key=lambda k: (_RANK.get(k, len(_RANK)), k))}


def violations(schema: Mapping[str, Any], path: str = "") -> Iterator[str]:
    """What makes ``schema`` not structural, one line each (nothing if it is)."""
    for key in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "nullable", "title"):
        if key in schema:
            yield f"{path or '<root>'}: has {key}"
    preserved = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "type" not in schema and not preserved and not schema.get("x-kubernetes-int-or-string"):
        yield f"{path or '<root>'}: no type"
    if schema.get("x-kubernetes-list-type") == "map":
        yield from _list_map_violations(schema, path)
    if "properties" in schema and "additionalProperties" in schema:
        yield f"{path or '<root>'}: both properties and additionalProperties"
    for name, sub in schema.get("properties", {}).items():
        yield from violations(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), Mapping):
        yield from violations(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from violations(schema["additionalProperties"], f"{path}.*")


def _list_map_violations(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    """A list-map's keys must always be present: required, or defaulted."""
    items = schema.get("items", {})
    for key in schema.get("x-kubernetes-list-map-keys", ()):
        prop = items.get("properties", {}).get(key)
        if prop is None:
            yield f"{path or '<root>'}: list-map key {key!r} is not a property of the items"
        elif key not in items.get("required", ()) and "default" not in prop:
            yield f"{path or '<root>'}: list-map key {key!r} is neither required nor defaulted"
