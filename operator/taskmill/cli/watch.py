"""``get -w``: print Tasks, then a line (or object) each time one changes.

Like ``kubectl get -w``: one list, printed as usual, then a watch from its
resourceVersion; every ADDED, MODIFIED or DELETED Task that passes the
filters is printed in the same format (table rows without a new header,
aligned to the columns so far). A watch that the server ends is resumed from
the last resourceVersion, one that expired (410) starts over from a fresh
list. Ctrl-C or SIGTERM ends it with exit 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from taskmill.cli import output as out
from taskmill.cli.formats import Format
from taskmill.cli.kubeopts import CommandError


@dataclass
class Filters:
    names: frozenset[str]
    phase: str | None

    def keep(self, obj: Mapping[str, Any]) -> bool:
        if self.names and obj["metadata"]["name"] not in self.names:
            return False
        return self.phase is None or out.status_of(obj).get("phase") == self.phase


class Printer:
    """Prints objects one by one; table rows keep to the widest column so far."""

    def __init__(self, fmt: Format, *, with_namespace: bool, show_headers: bool) -> None:
        self.fmt = fmt
        self.with_namespace = with_namespace
        self.show_headers = show_headers
        self.widths: list[int] | None = None

    def first(self, items: Sequence[Mapping[str, Any]]) -> None:
        if self.fmt.kind in ("table", "wide", "custom-columns"):
            headers, rows = out.headers_and_rows(
                items, self.fmt, with_namespace=self.with_namespace
            )
            lines = [headers, *rows] if self.show_headers else rows
            self.widths = out.column_widths([headers, *rows], len(headers))
            for line in lines:
                click.echo(out.pad_row(line, self.widths))
        else:
            for obj in items:
                self.one(obj)

    def one(self, obj: Mapping[str, Any]) -> None:
        kind = self.fmt.kind
        if kind == "json":
            click.echo(out.dump(obj, "json"))
        elif kind == "yaml":
            click.echo("---\n" + out.dump(obj, "yaml"))
        elif kind == "name":
            click.echo(f"{out.RESOURCE}/{obj['metadata']['name']}")
        elif self.fmt.template is not None:
            click.echo(self.fmt.template.render(obj), nl=False)
        else:
            _, rows = out.headers_and_rows([obj], self.fmt, with_namespace=self.with_namespace)
            row = rows[0]
            widths = self.widths or [0] * len(row)
            self.widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
            click.echo(out.pad_row(row, self.widths))


def watch_tasks(
    *,
    fmt: Format,
    filters: Filters,
    selector: str | None,
    all_namespaces: bool,
    show_headers: bool,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """Run the watch until Ctrl-C/SIGTERM (exit 0) or an error (raised)."""
    from taskmill.client.aio import AsyncClient

    async def follow() -> None:
        async with AsyncClient(
            namespace=namespace, kubeconfig=kubeconfig, context=kube_context
        ) as client:
            printer = Printer(fmt, with_namespace=all_namespaces, show_headers=show_headers)
            listed = await client.list_raw(all_namespaces=all_namespaces, selector=selector)
            items = [o for o in listed["items"] if filters.keep(o)]
            missing = filters.names - {o["metadata"]["name"] for o in listed["items"]}
            if missing:
                raise CommandError(
                    "; ".join(f'tasks.taskmill.dev "{n}" not found' for n in sorted(missing))
                )
            printer.first(items)
            await _follow_events(client, printer, filters, listed, selector, all_namespaces)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await follow()
        except asyncio.CancelledError:
            return  # Ctrl-C or SIGTERM: a watch has no other way to end

    asyncio.run(main())


async def _follow_events(
    client: Any,
    printer: Printer,
    filters: Filters,
    listed: dict[str, Any],
    selector: str | None,
    all_namespaces: bool,
) -> None:
    from taskmill.kube.client import ApiError, path

    url = path("tasks", None if all_namespaces else client.namespace)
    params = {"labelSelector": selector} if selector else {}
    rv = listed["metadata"]["resourceVersion"]
    seen = {_key(o): o["metadata"]["resourceVersion"] for o in listed["items"]}
    while True:
        try:
            async for event in client.kube.watch(url, resource_version=rv, params=params):
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise ApiError(
                        obj.get("code", 410), obj.get("reason", ""), obj.get("message", "")
                    )
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                seen[_key(obj)] = rv
                if filters.keep(obj):
                    printer.one(obj)
        except ApiError as exc:
            if exc.status != 410:
                raise
            # Expired: start over from a list; print what changed in between.
            fresh = await client.list_raw(all_namespaces=all_namespaces, selector=selector)
            rv = fresh["metadata"]["resourceVersion"]
            for obj in fresh["items"]:
                if seen.get(_key(obj)) != obj["metadata"]["resourceVersion"]:
                    seen[_key(obj)] = obj["metadata"]["resourceVersion"]
                    if filters.keep(obj):
                        printer.one(obj)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
