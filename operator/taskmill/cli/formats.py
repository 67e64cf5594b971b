"""``-o`` for ``get``/``list``: kubectl's output formats, parsed once.

``json``, ``yaml``, ``wide``, ``name``, ``jsonpath=TEMPLATE`` and
``custom-columns=HEADER:PATH,...`` (see :mod:`taskmill.cli.template` for the
template syntax). A malformed template is a usage error, found before any
request is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from click.shell_completion import CompletionItem

from taskmill.cli.template import Path, Template, TemplateError, compile_path, format_value
from taskmill.cli.template import parse_template as _parse_template

PLAIN = ("json", "yaml", "wide", "name")
WITH_ARGUMENT = ("jsonpath", "custom-columns")


@dataclass(frozen=True)
class Column:
    header: str
    path: Path

    def cell(self, obj: Mapping[str, Any]) -> str:
        values = self.path.find(obj, obj)
        return ",".join(format_value(v) for v in values) if values else "<none>"


@dataclass(frozen=True)
class Format:
    """A parsed ``-o``: ``kind`` is ``table`` when none was given."""

    kind: str = "table"
    template: Template | None = None
    columns: tuple[Column, ...] = field(default_factory=tuple)

    def cells(self, obj: Mapping[str, Any]) -> list[str]:
        return [c.cell(obj) for c in self.columns]


def parse_output(value: str | None) -> Format:
    """``-o`` text to a :class:`Format`; :class:`ValueError` says what is wrong."""
    if value is None or value == "":
        return Format()
    value = value.removeprefix("=")  # `-o=json`, as pflag allows
    if value in PLAIN:
        return Format(value)
    kind, sep, argument = value.partition("=")
    if kind not in WITH_ARGUMENT:
        choices = ", ".join([*PLAIN, *(f"{k}=..." for k in WITH_ARGUMENT)])
        raise ValueError(f"{value!r} is not one of {choices}")
    if not sep or not argument:
        raise ValueError(f"{kind} needs a value: -o {kind}=...")
    if kind == "jsonpath":
        return Format(kind, template=_parse_template(argument))
    return Format(kind, columns=parse_columns(argument))


def parse_columns(spec: str) -> tuple[Column, ...]:
    """``NAME:.metadata.name,PHASE:.status.phase`` (paths may drop the braces
    and the leading dot, as kubectl allows)."""
    columns = []
    for part in _split_top_level(spec):
        header, sep, path = part.partition(":")
        if not sep or not header.strip() or not path.strip():
            raise TemplateError(f"custom-columns wants HEADER:PATH, not {part!r}")
        path = path.strip()
        if path.startswith("{") and path.endswith("}"):
            path = path[1:-1]
        columns.append(Column(header.strip(), compile_path(path)))
    return tuple(columns)


def _split_top_level(spec: str) -> list[str]:
    """Split on commas outside brackets and quotes (unions like ``[0,1]`` stay whole)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(spec):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    parts.append(spec[start:])
    return parts


class OutputFormat(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    name = "FORMAT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Format):
            return value
        try:
            return parse_output(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        names: Sequence[str] = [*PLAIN, *(f"{k}=" for k in WITH_ARGUMENT)]
        return [CompletionItem(n) for n in names if n.startswith(incomplete)]

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[json|yaml|wide|name|jsonpath=...|custom-columns=...]"
