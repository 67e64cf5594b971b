"""Printing Tasks the kubectl way: tables (default and ``-o wide``),
``-o json``/``yaml`` of the objects as the API server returned them (one
object, or a ``List``), ``-o name`` (``task.taskmill.dev/NAME``),
``-o jsonpath=...`` and ``-o custom-columns=...`` (see
:mod:`taskmill.cli.formats`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from taskmill.models.times import parse_time as parse_wire_time

if TYPE_CHECKING:
    from taskmill.cli.formats import Format

RESOURCE = "task.taskmill.dev"


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return parse_wire_time(value)


def age(value: str | None, now: dt.datetime | None = None) -> str:
    """kubectl's short ages: 42s, 5m, 3h, 12d."""
    then = parse_time(value)
    if then is None:
        return "<unknown>"
    seconds = max(0, int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def duration(start: str | None, end: str | None) -> str:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return ""
    return f"{(b - a).total_seconds():.3f}s"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, show_headers: bool = True
) -> str:
    """Columns padded like kubectl's: at least three spaces apart."""
    lines = [list(headers), *rows] if show_headers else list(rows)
    widths = column_widths(lines, len(headers))
    return "\n".join(pad_row(row, widths) for row in lines)


def column_widths(rows: Sequence[Sequence[str]], count: int) -> list[int]:
    widths = [0] * count
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    return widths


def pad_row(row: Sequence[str], widths: Sequence[int]) -> str:
    return "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()


def status_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {"phase": "Pending", "attempts": 0})


def task_row(obj: Mapping[str, Any], *, wide: bool, with_namespace: bool) -> list[str]:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, status_of(obj)
    row = [meta.get("namespace", "")] if with_namespace else []
    row += [
        meta["name"],
        spec.get("type", ""),
        status.get("phase", "Pending"),
        str(status.get("attempts", 0)),
        status.get("reason") or "",
        age(meta.get("creationTimestamp")),
    ]
    if wide:
        lease = status.get("lease") or {}
        row += [
            spec.get("queue", "default"),
            str(spec.get("priority", 0)),
            lease.get("worker", ""),
            (status.get("message") or "").splitlines()[0][:60] if status.get("message") else "",
        ]
    return row


TASK_HEADERS = ["NAME", "TYPE", "PHASE", "ATTEMPTS", "REASON", "AGE"]
WIDE_HEADERS = ["QUEUE", "PRIORITY", "WORKER", "MESSAGE"]


def task_headers(*, wide: bool, with_namespace: bool) -> list[str]:
    headers = (["NAMESPACE"] if with_namespace else []) + TASK_HEADERS
    return headers + WIDE_HEADERS if wide else headers


def dump(value: Any, fmt: str) -> str:
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(value, sort_keys=False).rstrip("\n")
    return json.dumps(value, indent=4, ensure_ascii=False)


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {}}


def as_format(output: Format | str | None) -> Format:
    from taskmill.cli.formats import Format, parse_output

    return output if isinstance(output, Format) else parse_output(output)


def headers_and_rows(
    items: Sequence[Mapping[str, Any]], fmt: Format, *, with_namespace: bool
) -> tuple[list[str], list[list[str]]]:
    """The table of a table format: the default, ``wide`` or ``custom-columns``."""
    if fmt.kind == "custom-columns":
        return [c.header for c in fmt.columns], [fmt.cells(o) for o in items]
    wide = fmt.kind == "wide"
    headers = task_headers(wide=wide, with_namespace=with_namespace)
    return headers, [task_row(o, wide=wide, with_namespace=with_namespace) for o in items]


def print_tasks(
    items: Sequence[Mapping[str, Any]],
    output: Format | str | None,
    *,
    single: bool = False,
    with_namespace: bool = False,
    empty_namespace: str | None = None,
    show_headers: bool = True,
) -> None:
    """Print Tasks in the chosen format; ``single`` prints one object, not a List."""
    fmt = as_format(output)
    value: Any = items[0] if single and len(items) == 1 else as_list(items)
    if fmt.kind in ("json", "yaml"):
        click.echo(dump(value, fmt.kind))
    elif fmt.kind == "name":
        for obj in items:
            click.echo(f"{RESOURCE}/{obj['metadata']['name']}")
    elif fmt.template is not None:
        click.echo(fmt.template.render(value), nl=False)  # kubectl adds no newline
    elif not items:
        where = f" in {empty_namespace} namespace" if empty_namespace else ""
        click.echo(f"No resources found{where}.", err=True)
    else:
        headers, rows = headers_and_rows(items, fmt, with_namespace=with_namespace)
        click.echo(table(headers, rows, show_headers=show_headers))
