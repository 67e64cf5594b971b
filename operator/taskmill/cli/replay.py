"""``replay``: what would have happened to the Tasks of a namespace under
another order or policy, beside what did (docs/replay.md).

This module reads the Tasks (from the API server, or a file written by
``taskmill get -o json``) and prints; the history, the simulation and the
figures are the pure :mod:`taskmill.replay`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from taskmill.cli import output as out
from taskmill.cli.kubeopts import (
    CommandError,
    all_namespaces_option,
    connection_options,
    make_client,
    output_option,
    selector_option,
    user_errors,
)
from taskmill.replay import chart, policy
from taskmill.replay.history import HistoryError, Record, from_objects, items_of
from taskmill.replay.policy import Order, Policy
from taskmill.replay.report import Figures, Group, Report, build
from taskmill.replay.simulator import replay as run_replay

#: Differing outcomes listed in the table; -o json lists them all.
SHOWN_DIFFERENCES = 20

V = TypeVar("V")


def _parsed(
    parse: Callable[[str], V], option: str
) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback turning each value with ``parse``; its ValueError is a usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            if isinstance(value, tuple):
                return [parse(v) for v in value]
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None

    return callback


@click.command("replay")
@click.option(
    "-f",
    "--filename",
    default=None,
    help="Read the Tasks from a file written by `taskmill get -o json` (- for stdin).",
)
@click.option(
    "--order",
    type=click.Choice([o.value for o in Order]),
    default=Order.PRIORITY.value,
    show_default=True,
    help="Which waiting Task is served first; priority is what the operator does.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=None,
    help="Worker slots over all types (default: the most attempts the history ran at once).",
)
@click.option(
    "--concurrency",
    multiple=True,
    callback=_parsed(policy.parse_concurrency, "--concurrency"),
    help="TYPE=N: at most N of TYPE running; repeatable.",
)
@click.option(
    "--rate",
    multiple=True,
    callback=_parsed(policy.parse_rate, "--rate"),
    help="TYPE=R/s: at most R leases of TYPE per second; repeatable.",
)
@click.option(
    "--backoff",
    default=None,
    callback=_parsed(policy.parse_backoff, "--backoff"),
    help="initial,factor,max seconds between attempts, e.g. 1,2,300.",
)
@click.option("--max-attempts", type=click.IntRange(1, 1000), default=None)
@click.option(
    "--chart",
    "chart_path",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Write completions over time, real and simulated, to FILE (.html or .svg).",
)
@output_option("json")
@selector_option
@all_namespaces_option
@connection_options
@user_errors
def replay(
    filename: str | None,
    order: str,
    workers: int | None,
    concurrency: list[tuple[str, int]],
    rate: list[tuple[str, float]],
    backoff: Any,
    max_attempts: int | None,
    chart_path: str | None,
    output: str | None,
    selector: str | None,
    all_namespaces: bool,
    namespace: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
) -> None:
    """Replay the Tasks that ran under another order or policy, and set the
    simulated wait and completion times beside the real ones.

    \b
      taskmill replay -n jobs --order reverse-chronological
      taskmill replay -n jobs --workers 8 --rate send_email=5/s -o json
      taskmill get -n jobs -o json > tasks.json
      taskmill replay -f tasks.json --max-attempts 5 --chart what-if.html

    The operator's own decision code and dispatcher run on a virtual clock
    with simulated worker slots, each Task's recorded attempts replayed.
    """
    if chart_path is not None and Path(chart_path).suffix.lower() not in (".html", ".htm", ".svg"):
        raise click.BadParameter("write a .html or .svg file", param_hint="--chart")
    chosen = Policy(
        order=Order(order),
        workers=workers,
        concurrency=dict(concurrency or ()),
        rates=dict(rate or ()),
        backoff=backoff,
        max_attempts=max_attempts,
    )
    if filename is not None:
        objects = _read_file(filename)
        if namespace and not all_namespaces:
            objects = [
                o for o in objects if (o.get("metadata") or {}).get("namespace") == namespace
            ]
    else:
        with make_client(namespace, kubeconfig, kube_context) as client:
            objects = list(
                client.list_raw(all_namespaces=all_namespaces, selector=selector)["items"]
            )
    try:
        records = from_objects(objects)
    except HistoryError as exc:
        raise CommandError(str(exc)) from None
    if not records:
        raise CommandError("no Tasks to replay")
    report = build(records, run_replay(records, chosen))
    if chart_path is not None:
        _write_chart(Path(chart_path), report, chosen)
    if output == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(render_text(report, records))


def _read_file(filename: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {filename}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{filename} is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{filename} is not JSON (write it with `taskmill get -o json`): {exc}"
        ) from None
    try:
        return [dict(item) for item in items_of(document)]
    except HistoryError as exc:
        raise CommandError(f"{filename}: {exc}") from None


def _write_chart(path: Path, report: Report, chosen: Policy) -> None:
    title = f"Tasks completed: real vs simulated ({_policy_line(report, chosen)})"
    draw = chart.svg if path.suffix.lower() == ".svg" else chart.page
    try:
        path.write_text(draw(report.real_ends, report.simulated_ends, report.start, title))
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None


def _policy_line(report: Report, chosen: Policy) -> str:
    parts = [f"order={chosen.order.value}", f"workers={report.replay.workers}"]
    parts += [f"concurrency {t}={n}" for t, n in sorted(chosen.concurrency.items())]
    parts += [f"rate {t}={r:g}/s" for t, r in sorted(chosen.rates.items())]
    if chosen.backoff is not None:
        b = chosen.backoff
        parts.append(f"backoff={b.initial_seconds:g},{b.factor:g},{b.max_seconds:g}")
    if chosen.max_attempts is not None:
        parts.append(f"max-attempts={chosen.max_attempts}")
    return ", ".join(parts)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}s" if abs(value) < 100 else f"{value:.0f}s"


def _figure_cells(real: Figures, simulated: Figures) -> list[str]:
    cells = []
    for name in ("p50", "p95", "p99", "max"):
        cells.append(f"{_seconds(getattr(real, name))} → {_seconds(getattr(simulated, name))}")
    return cells


def render_text(report: Report, records: list[Record]) -> str:
    """The side-by-side table: each figure as real → simulated."""
    chosen = report.replay.policy
    lines = [
        f"Replayed {len(records)} Tasks: {_policy_line(report, chosen)}.",
        "Each figure is real → simulated; wait is arrival to first start, "
        "completion arrival to final end.",
        "",
    ]
    rows = []
    groups: list[Group] = [report.overall, *report.by_queue, *report.by_type]
    for g in groups:
        rows.append([g.name, str(g.tasks), "wait", *_figure_cells(g.real_wait, g.simulated_wait)])
        rows.append(
            ["", "", "completion", *_figure_cells(g.real_completion, g.simulated_completion)]
        )
    lines.append(out.table(["GROUP", "TASKS", "FIGURE", "P50", "P95", "P99", "MAX"], rows))
    lines += [
        "",
        f"Makespan: {_seconds(report.real_makespan)} → {_seconds(report.simulated_makespan)}",
    ]
    differing = report.differing
    if not differing:
        lines.append("No Task's outcome would differ.")
        return "\n".join(lines)
    lines += ["", f"Outcomes that would differ: {len(differing)}"]
    diff_rows = [
        [
            f"{r.namespace}/{r.name}",
            _outcome(r.real_phase.value, r.real_reason),
            _outcome(r.simulated_phase.value, r.simulated_reason),
        ]
        for r in differing[:SHOWN_DIFFERENCES]
    ]
    lines.append(out.table(["TASK", "REAL", "SIMULATED"], diff_rows))
    if len(differing) > SHOWN_DIFFERENCES:
        lines.append(f"... and {len(differing) - SHOWN_DIFFERENCES} more (-o json lists them all)")
    return "\n".join(lines)


def _outcome(phase: str, reason: str | None) -> str:
    return f"{phase} ({reason})" if reason else phase
