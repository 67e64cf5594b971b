"""``stats``: counts of Tasks by queue and type and phase, from one list call.

Queue depth is Pending + Waiting; Running counts leased Tasks; Dead is the
dead-letter count. Worker utilisation as Taskmill's API can see it: the
Tasks each worker holds a lease on (slots are only known to the worker
itself; its ``/metrics`` has ``taskmill_worker_utilization_ratio``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import click

from taskmill.cli import output as out
from taskmill.cli.kubeopts import (
    all_namespaces_option,
    connection_options,
    make_client,
    output_option,
    selector_option,
    user_errors,
)

PHASES = ("Pending", "Waiting", "Running", "Succeeded", "Dead", "Cancelled")


def compute(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The numbers ``stats`` and ``top`` show."""
    groups: dict[tuple[str, str], Counter[str]] = {}
    workers: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for obj in items:
        spec, status = obj.get("spec") or {}, out.status_of(obj)
        phase = status.get("phase", "Pending")
        key = (spec.get("queue", "default"), spec.get("type", ""))
        groups.setdefault(key, Counter())[phase] += 1
        totals[phase] += 1
        if phase == "Running" and status.get("lease"):
            workers[status["lease"].get("worker", "?")] += 1
    rows = [
        {"queue": q, "type": t, **{p.lower(): c[p] for p in PHASES}}
        for (q, t), c in sorted(groups.items())
    ]
    return {
        "totals": {p.lower(): totals[p] for p in PHASES}
        | {"depth": totals["Pending"] + totals["Waiting"]},
        "byQueueAndType": rows,
        "workers": [{"worker": w, "running": n} for w, n in sorted(workers.items())],
    }


def render_text(stats: Mapping[str, Any]) -> str:
    headers = [
        "QUEUE",
        "TYPE",
        "DEPTH",
        "PENDING",
        "WAITING",
        "RUNNING",
        "SUCCEEDED",
        "DEAD",
        "CANCELLED",
    ]
    rows = [
        [
            r["queue"],
            r["type"],
            str(r["pending"] + r["waiting"]),
            *(str(r[p.lower()]) for p in PHASES),
        ]
        for r in stats["byQueueAndType"]
    ]
    t = stats["totals"]
    rows.append(["TOTAL", "", str(t["depth"]), *(str(t[p.lower()]) for p in PHASES)])
    text = out.table(headers, rows)
    if stats["workers"]:
        worker_rows = [[w["worker"], str(w["running"])] for w in stats["workers"]]
        text += "\n\n" + out.table(["WORKER", "RUNNING"], worker_rows)
    else:
        text += "\n\nNo worker holds a lease."
    return text


@click.command("stats")
@output_option("json", "yaml")
@selector_option
@all_namespaces_option
@connection_options
@user_errors
def stats(
    output: str | None,
    selector: str | None,
    all_namespaces: bool,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """Queue depth, running, succeeded and dead counts per queue and type, and
    the Tasks each worker is running."""
    with make_client(namespace, kubeconfig, kube_context) as client:
        listed = client.list_raw(all_namespaces=all_namespaces, selector=selector)
    numbers = compute(listed["items"])
    if output == "json":
        click.echo(json.dumps(numbers, indent=4))
    elif output == "yaml":
        click.echo(out.dump(numbers, "yaml"))
    else:
        click.echo(render_text(numbers))
