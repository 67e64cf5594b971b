"""``python -m taskmill.testing.faults``: check a run's files, combine reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskmill.testing.faults.__main__ import main


def task(name: str, phase: str, history: list[dict[str, object]]) -> dict[str, object]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "namespace": "ns"},
        "status": {"phase": phase, "attempts": len(history), "history": history},
    }


def write_run(tmp_path: Path, phase: str) -> tuple[Path, Path]:
    entry = {
        "attempt": 1,
        "worker": "w1",
        "startedAt": "2027-01-15T08:00:00.000Z",
        "finishedAt": "2027-01-15T08:00:01.000Z",
        "outcome": "Succeeded",
    }
    tasks = tmp_path / "tasks.json"
    tasks.write_text(
        json.dumps({"items": [task("a", phase, [entry] if phase == "Succeeded" else [])]})
    )
    log = tmp_path / "executions.jsonl"
    line = {"uid": "uid-a", "name": "a", "attempt": 1, "worker": "w1", "pid": 1}
    start = 1800000000.2 if phase == "Succeeded" else 0
    log.write_text(
        json.dumps({**line, "start": start, "end": start, "outcome": "succeeded"}) + "\n"
    )
    return log, tasks


def test_check_passes_a_clean_run_and_fails_a_lost_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, tasks = write_run(tmp_path, "Succeeded")
    assert main(["check", str(log), str(tasks)]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["succeeded"] == 1
    log, tasks = write_run(tmp_path, "Running")
    assert main(["check", str(log), str(tasks)]) == 1
    assert json.loads(capsys.readouterr().out)["tasks"]["lost"] == 1


def test_combine_gathers_scenarios_and_fails_if_one_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    base = {
        "tasks": {"expected": 10, "lost": 0},
        "executions": 12,
        "duplicates": {"count": 2, "unexplained": 0},
        "redone_after_success": {"count": 1},
    }
    (reports / "a.json").write_text(json.dumps({"scenario": "a", "ok": True, **base}))
    output = tmp_path / "report.json"
    assert main(["combine", str(reports), "--output", str(output), "--commit", "abc"]) == 0
    combined = json.loads(output.read_text())
    assert combined["totals"] == {
        "tasks": 10,
        "lost": 0,
        "executions": 12,
        "duplicates": 2,
        "unexplained": 0,
        "redone_after_success": 1,
    }
    (reports / "b.json").write_text(json.dumps({"scenario": "b", "ok": False, **base}))
    assert main(["combine", str(reports), "--output", str(output)]) == 1
    capsys.readouterr()
