"""``top``: a live terminal dashboard of Tasks, fed by a watch (rich ``Live``).

One list, then a watch from its resourceVersion keeps an in-memory copy of
the Tasks in scope; the screen redraws a few times a second from that copy
and never polls the API. Shown: totals (queue depth, running, succeeded,
dead, throughput over the last minute from ``finishedAt``), the per-queue
and per-type table of ``stats``, and the running Tasks with their worker,
progress and elapsed time. ``--once`` prints one frame and exits (scripts,
tests). :class:`Board` holds the state and renders it, so it can be tested
headless with ``rich.console.Console(record=True)``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from taskmill.cli import output as out
from taskmill.cli.kubeopts import (
    all_namespaces_option,
    connection_options,
    selector_option,
    user_errors,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

#: Throughput is averaged over this window.
THROUGHPUT_WINDOW_SECONDS = 60


class Board:
    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.objects: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.events = 0

    def load(self, items: list[Mapping[str, Any]]) -> None:
        self.objects = {_key(o): o for o in items}

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        self.events += 1
        if event_type == "DELETED":
            self.objects.pop(_key(obj), None)
        else:
            self.objects[_key(obj)] = obj

    def throughput(self, now: dt.datetime) -> float:
        """Tasks finished (Succeeded or Dead) per second over the window."""
        since = now - dt.timedelta(seconds=THROUGHPUT_WINDOW_SECONDS)
        count = 0
        for obj in list(self.objects.values()):
            finished = out.parse_time(out.status_of(obj).get("finishedAt"))
            if finished is not None and finished >= since:
                count += 1
        return count / THROUGHPUT_WINDOW_SECONDS

    def render(self, now: dt.datetime | None = None) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from taskmill.cli.stats import PHASES, compute

        now = now or dt.datetime.now(dt.UTC)
        items = list(self.objects.values())
        numbers = compute(items)
        t = numbers["totals"]
        header = Text.assemble(
            ("taskmill top", "bold"),
            f"  {self.scope}  ",
            ("depth ", "dim"),
            (str(t["depth"]), "bold cyan"),
            ("  running ", "dim"),
            (str(t["running"]), "bold yellow"),
            ("  succeeded ", "dim"),
            (str(t["succeeded"]), "bold green"),
            ("  dead ", "dim"),
            (str(t["dead"]), "bold red"),
            ("  throughput ", "dim"),
            (f"{self.throughput(now):.2f}/s", "bold"),
            (f"  (last {THROUGHPUT_WINDOW_SECONDS}s)", "dim"),
        )
        queues = Table(title="Queues", title_justify="left", expand=True)
        for column in ("QUEUE", "TYPE", "DEPTH", *(p.upper() for p in PHASES)):
            queues.add_column(column, justify="left" if column in ("QUEUE", "TYPE") else "right")
        for row in numbers["byQueueAndType"]:
            queues.add_row(
                row["queue"],
                row["type"],
                str(row["pending"] + row["waiting"]),
                *(str(row[p.lower()]) for p in PHASES),
            )
        running = Table(title="Running", title_justify="left", expand=True)
        for column in ("NAMESPACE", "NAME", "TYPE", "WORKER", "ATTEMPT", "PROGRESS", "ELAPSED"):
            running.add_column(column)
        live = [o for o in items if out.status_of(o).get("phase") == "Running"]
        live.sort(key=lambda o: out.status_of(o).get("startedAt") or "")
        for obj in live[:20]:
            status = out.status_of(obj)
            progress = status.get("progress") or {}
            percent = progress.get("percent")
            started = out.parse_time(status.get("startedAt"))
            running.add_row(
                obj["metadata"].get("namespace", ""),
                obj["metadata"]["name"],
                (obj.get("spec") or {}).get("type", ""),
                (status.get("lease") or {}).get("worker", ""),
                str(status.get("attempts", "")),
                f"{percent:.0f}%" if percent is not None else "",
                f"{(now - started).total_seconds():.0f}s" if started else "",
            )
        if len(live) > 20:
            running.caption = f"... and {len(live) - 20} more"
        return Group(header, queues, running)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


@click.command("top")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option("--refresh", type=float, default=4.0, show_default=True, help="Redraws per second.")
@selector_option
@all_namespaces_option
@connection_options
@user_errors
def top(
    once: bool,
    refresh: float,
    selector: str | None,
    all_namespaces: bool,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """A live dashboard of queues, throughput, running work and dead Tasks (Ctrl-C quits)."""
    import asyncio

    from taskmill.client.aio import AsyncClient

    async def main() -> None:
        from rich.console import Console
        from rich.live import Live

        from taskmill.kube.client import ApiError, path

        async with AsyncClient(
            namespace=namespace, kubeconfig=kubeconfig, context=kube_context
        ) as client:
            scope = "all namespaces" if all_namespaces else f"namespace {client.namespace}"
            board = Board(scope)
            listed = await client.list_raw(all_namespaces=all_namespaces, selector=selector)
            board.load(listed["items"])
            if once:
                Console().print(board.render())
                return
            url = path("tasks", None if all_namespaces else client.namespace)
            params = {"labelSelector": selector} if selector else {}
            rv = listed["metadata"]["resourceVersion"]
            with Live(get_renderable=board.render, refresh_per_second=refresh, screen=False):
                while True:
                    try:
                        async for event in client.kube.watch(
                            url, resource_version=rv, params=params
                        ):
                            if event["type"] == "BOOKMARK":
                                rv = event["object"]["metadata"]["resourceVersion"]
                                continue
                            if event["type"] == "ERROR":
                                raise ApiError(410, "Expired", "watch expired")
                            rv = event["object"]["metadata"]["resourceVersion"]
                            board.apply(event["type"], event["object"])
                    except ApiError as exc:
                        if exc.status != 410:
                            raise
                        listed = await client.list_raw(
                            all_namespaces=all_namespaces, selector=selector
                        )
                        board.load(listed["items"])
                        rv = listed["metadata"]["resourceVersion"]

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
