"""``python -m taskmill.testing.faults``: the checker on a run's files.

``check LOG TASKS [--run RUN] [--expect PHASE]``
    Judge a run: ``LOG`` is the recorder's JSON lines, ``TASKS`` the final
    Tasks (``kubectl get tasks -o json``), ``RUN`` the lifetimes and outages
    (JSON, :class:`~taskmill.testing.faults.records.RunRecord`). Every Task
    in ``TASKS`` is expected to end in ``PHASE`` (default Succeeded). Prints
    the report; exits 1 if the run fails.
``combine DIR --output FILE``
    Gather the scenario reports in ``DIR`` (``*.json``) into one document
    with the date and the overall verdict; exits 1 if any scenario failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from taskmill.testing.faults.history import check
from taskmill.testing.faults.records import RunRecord, read_executions, read_tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taskmill.testing.faults")
    commands = parser.add_subparsers(dest="command", required=True)
    judge = commands.add_parser("check", help="judge one run")
    judge.add_argument("log", type=Path)
    judge.add_argument("tasks", type=Path)
    judge.add_argument("--run", type=Path, default=None)
    judge.add_argument("--expect", default="Succeeded")
    gather = commands.add_parser("combine", help="gather scenario reports into one")
    gather.add_argument("directory", type=Path)
    gather.add_argument("--output", type=Path, required=True)
    gather.add_argument("--commit", default="")
    args = parser.parse_args(argv)

    if args.command == "check":
        tasks = read_tasks(args.tasks)
        run = RunRecord.from_json(json.loads(args.run.read_text())) if args.run else None
        report = check({t.name: args.expect for t in tasks}, tasks, read_executions(args.log), run)
        print(json.dumps(report.to_json(), indent=2))
        return 0 if report.ok else 1

    scenarios = [json.loads(path.read_text()) for path in sorted(args.directory.glob("*.json"))]
    document = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": args.commit,
        "ok": bool(scenarios) and all(s.get("ok") for s in scenarios),
        "totals": {
            "tasks": sum(s["tasks"]["expected"] for s in scenarios),
            "lost": sum(s["tasks"]["lost"] for s in scenarios),
            "executions": sum(s["executions"] for s in scenarios),
            "duplicates": sum(s["duplicates"]["count"] for s in scenarios),
            "unexplained": sum(s["duplicates"]["unexplained"] for s in scenarios),
            "redone_after_success": sum(s["redone_after_success"]["count"] for s in scenarios),
        },
        "scenarios": scenarios,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: document[k] for k in ("date", "commit", "ok", "totals")}, indent=2))
    return 0 if document["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
