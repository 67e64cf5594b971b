"""``dlq list`` and ``dlq retry``: the dead-letter queue is the Tasks whose
phase is ``Dead``. Retrying sets a new ``taskmill.dev/retry`` annotation (no
spec change, so GitOps tools see no drift); the operator starts them again."""

from __future__ import annotations

import sys
from typing import Any

import click

from taskmill.cli import output as out
from taskmill.cli.completion import complete_dead_task_names
from taskmill.cli.kubeopts import (
    CommandError,
    all_namespaces_option,
    connection_options,
    make_client,
    output_option,
    selector_option,
    user_errors,
)


@click.group("dlq")
def dlq() -> None:
    """The dead-letter queue: Dead Tasks, and retrying them."""


def _error_line(obj: dict[str, Any]) -> str:
    error = out.status_of(obj).get("lastError") or {}
    text = f"{error.get('type', '')}: {error.get('message', '')}" if error else ""
    return text.splitlines()[0][:80] if text else ""


@dlq.command("list")
@output_option()
@selector_option
@all_namespaces_option
@connection_options
@user_errors
def dlq_list(
    output: str | None,
    selector: str | None,
    all_namespaces: bool,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """List Dead Tasks with their reason and last error."""
    with make_client(namespace, kubeconfig, kube_context) as client:
        listed = client.list_raw(all_namespaces=all_namespaces, selector=selector)
        ns = client.namespace
    dead = [o for o in listed["items"] if out.status_of(o).get("phase") == "Dead"]
    if output in ("json", "yaml", "name") or not dead:
        out.print_tasks(
            dead,
            output,
            with_namespace=all_namespaces,
            empty_namespace=None if all_namespaces else ns,
        )
        return
    headers = (["NAMESPACE"] if all_namespaces else []) + [
        "NAME",
        "TYPE",
        "ATTEMPTS",
        "REASON",
        "ERROR",
        "AGE",
    ]
    rows = []
    for o in dead:
        status = out.status_of(o)
        row = [o["metadata"]["namespace"]] if all_namespaces else []
        row += [
            o["metadata"]["name"],
            (o.get("spec") or {}).get("type", ""),
            str(status.get("attempts", 0)),
            status.get("reason") or "",
            _error_line(o),
            out.age(status.get("finishedAt") or o["metadata"].get("creationTimestamp")),
        ]
        rows.append(row)
    click.echo(out.table(headers, rows))


@dlq.command("retry")
@click.argument("names", nargs=-1, shell_complete=complete_dead_task_names)
@click.option("--all", "all_dead", is_flag=True, help="Retry every Dead Task (narrow it with -l).")
@selector_option
@all_namespaces_option
@connection_options
@user_errors
def dlq_retry(
    names: tuple[str, ...],
    all_dead: bool,
    selector: str | None,
    all_namespaces: bool,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """Retry the named Dead Tasks, or --all of them (-l to select)."""
    if bool(names) == all_dead:
        raise click.UsageError("name Dead Tasks to retry, or pass --all (with -l to select)")
    if (selector or all_namespaces) and not all_dead:
        raise click.UsageError("-l and -A go with --all")
    failures = 0
    with make_client(namespace, kubeconfig, kube_context) as client:
        if all_dead:
            listed = client.list_raw(all_namespaces=all_namespaces, selector=selector)
            targets = [
                (o["metadata"]["namespace"], o["metadata"]["name"])
                for o in listed["items"]
                if out.status_of(o).get("phase") == "Dead"
            ]
        else:
            targets = [(client.namespace, n) for n in names]
        for ns, name in targets:
            try:
                obj = client.get_raw(name, namespace=ns)
            except LookupError:
                click.echo(f'error: tasks.taskmill.dev "{name}" not found', err=True)
                failures += 1
                continue
            phase = out.status_of(obj).get("phase")
            if phase != "Dead":
                click.echo(f"error: task {ns}/{name} is {phase}, not Dead", err=True)
                failures += 1
                continue
            client.retry(name, namespace=ns)
            click.echo(f"{out.RESOURCE}/{name} retried")
    if all_dead and not targets:
        click.echo("No Dead Tasks found.", err=True)
    if failures:
        sys.exit(1)


__all__ = ["CommandError", "dlq"]
