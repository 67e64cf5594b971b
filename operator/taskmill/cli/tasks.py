"""``submit``, ``get``/``list``, ``describe`` and ``cancel``: Tasks from the
command line, with kubectl's options and output formats."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from taskmill.cli import output as out
from taskmill.cli.completion import complete_phases, complete_task_names
from taskmill.cli.formats import Format, OutputFormat
from taskmill.cli.kubeopts import (
    CommandError,
    all_namespaces_option,
    connection_options,
    make_client,
    output_option,
    selector_option,
    user_errors,
)


def _payload(text: str | None, path: str | None) -> dict[str, Any] | None:
    if text is not None and path is not None:
        raise click.UsageError("give the payload as an argument or with --payload-file, not both")
    if path is not None:
        source = "--payload-file"
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    else:
        source = "PAYLOAD"
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{source} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CommandError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


@click.command("submit")
@click.argument("type_", metavar="TYPE")
@click.argument("payload", required=False)
@click.option(
    "-f", "--payload-file", default=None, help="Read the payload JSON from a file (- for stdin)."
)
@click.option("--name", default=None, help="Task name, the idempotency key (default: generated).")
@click.option("--queue", default=None, help="TaskQueue (default: default).")
@click.option("--priority", type=int, default=None, help="Higher runs first (default 0).")
@click.option("--max-attempts", type=click.IntRange(1, 1000), default=None)
@click.option("--timeout-seconds", type=click.IntRange(1), default=None, help="Per-attempt limit.")
@click.option("--run-at", default=None, help="Earliest start, RFC 3339 (2026-12-01T09:00:00Z).")
@click.option(
    "--depends-on",
    multiple=True,
    help="NAME or NAME=Succeeded|Failed|Finished; repeatable.",
)
@click.option("--label", "labels", multiple=True, help="KEY=VALUE label; repeatable.")
@click.option(
    "--wait", is_flag=True, help="Wait for the result and print it (exit 1 if Dead/Cancelled)."
)
@click.option(
    "--timeout", type=float, default=None, help="With --wait: give up after this many seconds."
)
@output_option("json", "yaml", "name")
@connection_options
@user_errors
def submit(
    type_: str,
    payload: str | None,
    payload_file: str | None,
    name: str | None,
    queue: str | None,
    priority: int | None,
    max_attempts: int | None,
    timeout_seconds: int | None,
    run_at: str | None,
    depends_on: tuple[str, ...],
    labels: tuple[str, ...],
    wait: bool,
    timeout: float | None,
    output: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """Create a Task of TYPE with a JSON PAYLOAD.

    \b
      taskmill submit send_email '{"to": "ada@example.com"}' --name welcome-ada
      echo '{"n": 1}' | taskmill submit echo -f - --wait

    A Task of the same --name that exists already is left alone (reported
    "unchanged"): the name is the idempotency key.
    """
    body = _payload(payload, payload_file)
    deps: list[tuple[str, str]] = []
    for dep in depends_on:
        dep_name, _, condition = dep.partition("=")
        deps.append((dep_name, condition or "Succeeded"))
    with make_client(namespace, kubeconfig, kube_context) as client:
        done = client.submit_detailed(
            type_,
            body,
            name=name,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            run_at=run_at,
            depends_on=deps or None,
            labels=_labels(labels) or None,
        )
        task_name = done.task.metadata.name
        if output in ("json", "yaml"):
            click.echo(out.dump(client.get_raw(task_name), output))
        elif output == "name":
            click.echo(f"{out.RESOURCE}/{task_name}")
        else:
            verb = "created" if done.created else "unchanged"
            click.echo(f"{out.RESOURCE}/{task_name} {verb}", err=wait)
        if wait:
            result = client.wait(task_name, timeout=timeout)
            click.echo(json.dumps(result))


@click.command("get")
@click.argument("names", nargs=-1, shell_complete=complete_task_names)
@click.option(
    "--phase",
    default=None,
    shell_complete=complete_phases,
    help="Only Tasks in this phase (e.g. Dead).",
)
@click.option(
    "-o",
    "--output",
    type=OutputFormat(),
    default=None,
    help="json, yaml, wide, name, jsonpath=TEMPLATE or custom-columns=HEADER:PATH,...",
)
@click.option("--no-headers", is_flag=True, help="Tables without their header line.")
@click.option(
    "-w", "--watch", is_flag=True, help="After the list, print each change (Ctrl-C ends)."
)
@selector_option
@all_namespaces_option
@connection_options
@user_errors
def get(
    names: tuple[str, ...],
    phase: str | None,
    output: Format | None,
    no_headers: bool,
    watch: bool,
    selector: str | None,
    all_namespaces: bool,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """List Tasks, or show the named ones.

    \b
      taskmill get -o jsonpath='{.items[*].metadata.name}'
      taskmill get -o custom-columns=NAME:.metadata.name,WORKER:.status.lease.worker
      taskmill get -w
    """
    fmt = output or Format()
    if watch:
        from taskmill.cli.watch import Filters, watch_tasks

        watch_tasks(
            fmt=fmt,
            filters=Filters(frozenset(names), phase),
            selector=selector,
            all_namespaces=all_namespaces,
            show_headers=not no_headers,
            namespace=namespace,
            kubeconfig=kubeconfig,
            kube_context=kube_context,
        )
        return
    with make_client(namespace, kubeconfig, kube_context) as client:
        if names:
            items = []
            missing = []
            for name in names:
                try:
                    items.append(client.get_raw(name))
                except LookupError:
                    missing.append(name)
            if items:
                out.print_tasks(items, fmt, single=len(names) == 1, show_headers=not no_headers)
            if missing:
                raise CommandError(
                    "; ".join(f'tasks.taskmill.dev "{n}" not found' for n in missing)
                )
            return
        listed = client.list_raw(all_namespaces=all_namespaces, selector=selector)
        items = listed["items"]
        if phase:
            items = [o for o in items if out.status_of(o).get("phase") == phase]
        out.print_tasks(
            items,
            fmt,
            with_namespace=all_namespaces,
            empty_namespace=None if all_namespaces else client.namespace,
            show_headers=not no_headers,
        )


list_command = click.Command(
    "list",
    callback=get.callback,
    params=get.params,
    help="List Tasks (the same as get).",
)


@click.command("describe")
@click.argument("names", nargs=-1, shell_complete=complete_task_names)
@selector_option
@connection_options
@user_errors
def describe(
    names: tuple[str, ...],
    selector: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """Show Tasks in detail, with their attempt timelines.

    The named Tasks, or those -l selects, or (with neither) every Task in
    the namespace, as kubectl describe does.
    """
    if names and selector:
        raise click.UsageError("name Tasks or select them with -l, not both")
    failed = False
    shown = 0
    with make_client(namespace, kubeconfig, kube_context) as client:
        if names:
            objects: list[dict[str, Any] | str] = []
            for name in names:
                try:
                    objects.append(client.get_raw(name))
                except LookupError:
                    objects.append(name)
        else:
            objects = list(client.list_raw(selector=selector)["items"])
            if not objects:
                click.echo(f"No resources found in {client.namespace} namespace.", err=True)
    for obj in objects:
        if isinstance(obj, str):
            click.echo(f'error: tasks.taskmill.dev "{obj}" not found', err=True)
            failed = True
            continue
        click.echo(("\n" if shown else "") + describe_text(obj))
        shown += 1
    if failed:
        sys.exit(1)


def describe_text(obj: dict[str, Any]) -> str:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, out.status_of(obj)
    lines = [
        f"Name:          {meta['name']}",
        f"Namespace:     {meta.get('namespace', '')}",
        f"Type:          {spec.get('type', '')}",
        f"Queue:         {spec.get('queue', 'default')}",
        f"Priority:      {spec.get('priority', 0)}",
        f"Created:       {meta.get('creationTimestamp', '')}",
        f"Phase:         {status.get('phase', 'Pending')}",
    ]
    for label, key in (
        ("Reason", "reason"),
        ("Message", "message"),
        ("Started", "startedAt"),
        ("Finished", "finishedAt"),
        ("Next attempt", "nextAttemptAt"),
    ):
        if status.get(key):
            lines.append(f"{label + ':':<15}{status[key]}")
    lines.append(
        f"Attempts:      {status.get('attempts', 0)} of {spec.get('maxAttempts', 'default')}"
    )
    if status.get("lease"):
        lease = status["lease"]
        lines.append(f"Lease:         {lease.get('worker')} until {lease.get('expiresAt')}")
    if status.get("progress"):
        p = status["progress"]
        lines.append(f"Progress:      {p.get('percent', '')}% {p.get('message') or ''}".rstrip())
    if "result" in status:
        lines.append(f"Result:        {json.dumps(status['result'])}")
    error = status.get("lastError")
    if error:
        lines.append("Last Error:")
        lines.append(f"  Type:        {error.get('type', '')}")
        lines.append(f"  Message:     {error.get('message', '')}")
        if error.get("traceback"):
            lines.append("  Traceback:")
            lines += [f"    {line}" for line in error["traceback"].rstrip().splitlines()]
    history = status.get("history") or []
    lines.append("Attempts Timeline:")
    if not history:
        lines.append("  <none>")
    else:
        rows = [
            [
                str(h.get("attempt", "")),
                h.get("worker") or "",
                h.get("startedAt") or "",
                h.get("finishedAt") or "",
                out.duration(h.get("startedAt"), h.get("finishedAt")),
                h.get("outcome", ""),
                (h.get("message") or "").splitlines()[0] if h.get("message") else "",
            ]
            for h in history
        ]
        headers = ["#", "WORKER", "STARTED", "FINISHED", "DURATION", "OUTCOME", "ERROR"]
        lines += ["  " + line for line in out.table(headers, rows).splitlines()]
    return "\n".join(lines)


#: Phases a Task cannot leave: cancelling one changes nothing.
FINISHED = ("Succeeded", "Dead", "Cancelled")


@click.command("cancel")
@click.argument("names", nargs=-1, shell_complete=complete_task_names)
@click.option("--all", "all_tasks", is_flag=True, help="Cancel every unfinished Task.")
@selector_option
@all_namespaces_option
@connection_options
@user_errors
def cancel(
    names: tuple[str, ...],
    all_tasks: bool,
    selector: str | None,
    all_namespaces: bool,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """Cancel Tasks (spec.cancel: true); running attempts are told to stop.

    \b
      taskmill cancel nightly-1 nightly-2
      taskmill cancel -l team=billing        # the unfinished Tasks it selects
      taskmill cancel --all                  # every unfinished Task in the namespace
    """
    by_selection = all_tasks or selector is not None
    if names and by_selection:
        raise click.UsageError("name Tasks, or select them with -l or --all, not both")
    if not names and not by_selection:
        raise click.UsageError("name Tasks to cancel, or select them with -l or --all")
    if all_namespaces and not by_selection:
        raise click.UsageError("-A goes with -l or --all")
    failed = []
    with make_client(namespace, kubeconfig, kube_context) as client:
        if by_selection:
            listed = client.list_raw(all_namespaces=all_namespaces, selector=selector)
            # A Task already asked to stop is on its way to Cancelled: asking
            # again would do nothing.
            targets = [
                (o["metadata"]["namespace"], o["metadata"]["name"])
                for o in listed["items"]
                if out.status_of(o).get("phase") not in FINISHED
                and not (o.get("spec") or {}).get("cancel")
            ]
            if not targets:
                click.echo("No unfinished Tasks found.", err=True)
        else:
            targets = [(client.namespace, n) for n in names]
        for ns, name in targets:
            try:
                client.cancel(name, namespace=ns)
            except LookupError:
                failed.append(name)
                click.echo(f'error: tasks.taskmill.dev "{name}" not found', err=True)
                continue
            click.echo(f"{out.RESOURCE}/{name} cancelled")
    if failed:
        sys.exit(1)
